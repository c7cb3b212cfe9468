"""Blocks on a byte backend: each block is one object named by its SHA-256 (64 hex digits).

On the local-disk backend a block is a file ``objects/<hash[:2]>/<hash>`` written like every blob: temp file,
``fsync``, rename into place, ``fsync`` of the directory, so once :meth:`BlockStore.put` returns the block
survives a crash or power loss. On S3 it is an object ``blobs/<hash>``; the object store provides durability.

Blocks are write-once: the bytes under a name never change (a name is the hash of its plaintext), so writing a
block that exists already replaces it with identical bytes, which is harmless and refreshes its age (the
garbage collector never frees a block written within its grace period). Every read decodes and re-hashes the
block (:func:`callfs.blocks.codec.decode`): a damaged or missing block raises
:class:`~callfs.blocks.codec.CorruptBlock`, never returns wrong bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from callfs.backends.base import Backend
from callfs.blocks import codec
from callfs.blocks.layout import BLOCK_SIZE
from callfs.metrics import Metrics

STORED_OVERHEAD = 1 << 16
"""Bytes a stored block may exceed :data:`BLOCK_SIZE` by (codec header; a zstd frame is only kept when smaller)."""


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A block written to a backend: its ``hash``, plaintext ``size`` and ``stored_size`` (bytes on the
    backend, header included), all in bytes."""

    hash: str
    size: int
    stored_size: int


class BlockStore:
    """The blocks of one backend. ``compress`` enables zstd (kept per block only when it saves space)."""

    def __init__(self, backend: Backend, metrics: Metrics, *, compress: bool = True) -> None:
        self.backend = backend
        self.metrics = metrics
        self.compress = compress

    async def put(self, plaintext: bytes | bytearray | memoryview) -> StoredBlock:
        """Store one block of at most :data:`BLOCK_SIZE` bytes durably; returns its name and sizes.

        Raises ``ValueError`` for an oversized block, and whatever the backend raises (``InsufficientStorage``
        on a full disk, ``OSError``); nothing is visible under the name unless the whole block was written.
        """
        if len(plaintext) > BLOCK_SIZE:
            raise ValueError(f"a block holds at most {BLOCK_SIZE} bytes, not {len(plaintext)}")
        encoded = await asyncio.to_thread(codec.encode, plaintext, compress=self.compress)
        await self.write(encoded)
        return StoredBlock(encoded.hash, encoded.size, len(encoded.stored))

    async def write(self, encoded: codec.Encoded) -> None:
        """Store an encoded block durably under its name (see :meth:`put`)."""
        name = self.backend.name
        with self.metrics.time_backend(name, "create"):
            writer = await self.backend.create(encoded.hash)
        try:
            with self.metrics.time_backend(name, "write"):
                await writer.write(encoded.stored)
            with self.metrics.time_backend(name, "commit"):
                await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        self.metrics.block_plain_bytes.labels(name).inc(encoded.size)
        self.metrics.block_stored_bytes.labels(name).inc(len(encoded.stored))
        self.metrics.blocks_written.labels(name, codec.CODEC_NAMES[encoded.codec]).inc()

    async def read_stored(self, block_hash: str) -> bytes:
        """The stored form of block ``block_hash`` as it lies on the backend (codec header and payload),
        unverified. Raises ``FileNotFoundError`` when absent, :class:`~callfs.blocks.codec.CorruptBlock` when
        larger than any block can be."""
        name = self.backend.name
        with self.metrics.time_backend(name, "open"):
            reader = await self.backend.open(block_hash)
        try:
            if reader.size > BLOCK_SIZE + STORED_OVERHEAD:
                raise codec.CorruptBlock(f"block {block_hash} is {reader.size} bytes on disk, too large")
            parts = [chunk async for chunk in reader.iter_range(0, reader.size, reader.size or 1)]
        finally:
            await reader.close()
        return b"".join(parts)

    async def get(self, block_hash: str) -> bytes:
        """The verified plaintext of block ``block_hash`` (at most :data:`BLOCK_SIZE` bytes).

        Raises :class:`~callfs.blocks.codec.CorruptBlock` when the block is missing, oversized, undecodable
        or fails its SHA-256 check (counted in ``callfs_block_read_errors``).
        """
        name = self.backend.name
        try:
            try:
                stored = await self.read_stored(block_hash)
            except FileNotFoundError:
                raise codec.CorruptBlock(f"block {block_hash} is missing from backend {name}") from None
            return await asyncio.to_thread(codec.decode, stored, block_hash, max_size=BLOCK_SIZE)
        except codec.CorruptBlock:
            self.metrics.block_read_errors.labels(name).inc()
            raise

    async def delete(self, block_hash: str) -> None:
        """Delete a block (absent: no-op)."""
        with self.metrics.time_backend(self.backend.name, "delete"):
            await self.backend.delete(block_hash)

    async def list(self, min_age: float = 0.0) -> AsyncIterator[str]:
        """Every stored block name written at least ``min_age`` seconds ago (blobs of whole files, whose ids
        are not block names, are left out)."""
        async for name in self.backend.list_blobs(min_age):
            if codec.is_block_hash(name):
                yield name
