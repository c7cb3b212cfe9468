"""A file read back from its block list: the :class:`~callfs.backends.base.BlobReader` of a file stored in
blocks, so the HTTP layer serves it like any blob.

A range read fetches only the blocks it overlaps, one at a time (memory: one block plus the chunk being
sent), each verified against its SHA-256 by :meth:`~callfs.blocks.store.BlockStore.get`.
"""

from __future__ import annotations

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
        Raises ``DataCorrupted`` when a block fails its check (the bytes before it were sent)."""
        end = min(offset + length, self.size)
        for index in touched_blocks(offset, max(0, end - offset)):
            data = await self.block(index)
            start = max(offset, index * BLOCK_SIZE) - index * BLOCK_SIZE
            stop = min(end, index * BLOCK_SIZE + len(data)) - index * BLOCK_SIZE
            view = memoryview(data)[start:stop]
            for at in range(0, len(view), chunk_size):
                yield bytes(view[at : at + chunk_size])

    async def close(self) -> None:
        """Nothing to release: blocks are opened and closed one by one."""
        return None
