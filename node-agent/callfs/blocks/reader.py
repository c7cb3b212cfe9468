"""A file read back from its block list: the :class:`~callfs.backends.base.BlobReader` of a file stored in
blocks, so the HTTP layer serves it like any blob.

A range read fetches only the blocks it overlaps, in order, the next while the current one is sent (memory:
two blocks plus the chunk being sent), each verified against its SHA-256 by the block source.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import BinaryIO, Protocol

from callfs.blocks.codec import CorruptBlock
from callfs.blocks.layout import BLOCK_SIZE, block_length, touched_blocks
from callfs.errors import DataCorrupted
from callfs.models import FileBlock


class BlockSource(Protocol):
    """Where a reader gets blocks: a :class:`~callfs.blocks.store.BlockStore`, or the copies of a replicated
    block (:class:`callfs.replication.ReplicaSource`)."""

    async def get(self, block_hash: str) -> bytes:
        """The verified plaintext of a block. Raises :class:`~callfs.blocks.codec.CorruptBlock`."""
        ...


class BlockFileReader:
    """An open file of ``size`` bytes made of ``blocks`` (ordered by index; a missing index reads as zeros),
    whose blocks come from ``store``."""

    def __init__(self, store: BlockSource, blocks: Sequence[FileBlock], size: int) -> None:
        self._store = store
        self._blocks = {b.index: b for b in blocks}
        self.size = size

    def local_file(self) -> BinaryIO | None:
        """Always ``None``: the bytes are decoded and checked, not sent from a file as they lie on disk."""
        return None

    async def block(self, index: int) -> bytes:
        """The verified plaintext of block ``index`` (zeros for a hole). Raises ``DataCorrupted``."""
        length = block_length(index, self.size)
        ref = self._blocks.get(index)
        if ref is None:
            return bytes(length)
        try:
            data = await self._store.get(ref.hash)
        except CorruptBlock as exc:
            raise DataCorrupted(f"{exc}; the read was refused") from exc
        if len(data) != ref.size:
            raise DataCorrupted(f"block {ref.hash} holds {len(data)} bytes, its file expects {ref.size}")
        return data[:length] if len(data) >= length else data + bytes(length - len(data))

    async def iter_range(self, offset: int, length: int, chunk_size: int) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes from ``offset`` (clipped to the file) in chunks of at most ``chunk_size``.
        The next block is fetched while the current one is sent (memory: two blocks), so reading a copy from a
        peer or decoding overlaps sending. Raises ``DataCorrupted`` when a block fails its check (the bytes
        before it were sent)."""
        end = min(offset + length, self.size)
        indexes = touched_blocks(offset, max(0, end - offset))
        if not indexes:
            return
        ahead: asyncio.Task[bytes] = asyncio.ensure_future(self.block(indexes[0]))
        try:
            for position, index in enumerate(indexes):
                data = await ahead
                if position + 1 < len(indexes):
                    ahead = asyncio.ensure_future(self.block(indexes[position + 1]))
                start = max(offset, index * BLOCK_SIZE) - index * BLOCK_SIZE
                stop = min(end, index * BLOCK_SIZE + len(data)) - index * BLOCK_SIZE
                view = memoryview(data)[start:stop]
                for at in range(0, len(view), chunk_size):
                    yield bytes(view[at : at + chunk_size])
        finally:
            # The consumer stopped early (or a block failed): drop the read-ahead; its outcome is retrieved so
            # that a failure after the consumer left is not reported as an unhandled task error.
            ahead.cancel()
            ahead.add_done_callback(_retrieve)

    async def close(self) -> None:
        """Nothing to release: blocks are opened and closed one by one."""
        return None


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark the outcome of a finished read-ahead as seen."""
    if not task.cancelled():
        task.exception()
