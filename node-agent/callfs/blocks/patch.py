"""Building the blocks a :class:`~callfs.blocks.layout.BlockPlan` rewrites, from the old bytes and the body.

Blocks are built one at a time in ascending order while the body streams in, so memory stays at about two
blocks whatever the file or range size. Old bytes are read only for blocks the body covers partially.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from callfs.blocks.layout import BLOCK_SIZE, BlockPlan, block_length
from callfs.blocks.pipeline import Pipeline
from callfs.errors import BadRequest
from callfs.models import FileBlock

OldBlock = Callable[[int], Awaitable[bytes]]
"""``index`` → the old plaintext of that block (shorter or empty where the old file ends)."""

PutBlock = Callable[[bytes], Awaitable[tuple[str, int]]]
"""plaintext → ``(hash, size)`` once the block is durably stored."""


class BodyReader:
    """Exact-length reads from a stream of body chunks (the range of a partial write)."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body
        self._pending = bytearray()

    async def _next(self) -> bytes | None:
        try:
            return await self._body.__anext__()
        except StopAsyncIteration:
            return None

    async def read_exactly(self, length: int) -> bytes:
        """The next ``length`` bytes. Raises ``BadRequest`` when the body ends before."""
        while len(self._pending) < length:
            chunk = await self._next()
            if chunk is None:
                raise BadRequest("the body is shorter than the range it is written to (Content-Range); nothing "
                                 "was written")
            self._pending += chunk
        data = bytes(self._pending[:length])
        del self._pending[:length]
        return data

    async def expect_end(self) -> None:
        """Raises ``BadRequest`` when the body holds more bytes than were read."""
        if self._pending or await self._next():
            raise BadRequest("the body is longer than the range it is written to (Content-Range); nothing was "
                             "written")


async def build_blocks(
    plan: BlockPlan, old_block: OldBlock, body: AsyncIterator[bytes] | None, put: PutBlock
) -> list[FileBlock]:
    """Write every block of ``plan.rewrite``: old bytes (zero-padded to the block's new length, clipped at the
    old end), overlaid with the body's bytes for ``[plan.offset, plan.offset + plan.length)``; the new block
    list entries, by index. Up to :data:`~callfs.blocks.pipeline.STORE_AHEAD` blocks are being ``put`` while
    the next is assembled.

    Raises ``BadRequest`` when ``body`` is shorter or longer than ``plan.length`` (nothing is committed then;
    the blocks already stored are collected later as unreferenced).
    """
    source = BodyReader(body) if body is not None else None
    if plan.length and source is None:
        raise ValueError("a plan with a range needs a body")
    async with Pipeline[tuple[str, int]]() as pipeline:
        for index in plan.rewrite:
            start = index * BLOCK_SIZE
            buffer = bytearray(block_length(index, plan.new_size))
            if not plan.covers(index) and start < plan.old_size:
                old = await old_block(index)
                keep = min(len(old), plan.old_size - start, len(buffer))
                buffer[:keep] = old[:keep]
            low, high = max(plan.offset, start), min(plan.offset + plan.length, start + len(buffer))
            if high > low:
                assert source is not None
                buffer[low - start : high - start] = await source.read_exactly(high - low)
            await pipeline.submit(put(bytes(buffer)))
        if source is not None:
            await source.expect_end()
        stored = await pipeline.results()
    return [FileBlock(index, block_hash, size) for index, (block_hash, size) in zip(plan.rewrite, stored, strict=True)]
