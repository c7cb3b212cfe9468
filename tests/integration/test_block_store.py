"""Blocks on the real backends: local disk (write-once files, verified reads) and S3 (objects)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callfs.backends.localfs import LocalFSBackend
from callfs.backends.s3 import S3Backend
from callfs.blocks.codec import CorruptBlock
from callfs.blocks.layout import BLOCK_SIZE
from callfs.blocks.reader import BlockFileReader
from callfs.blocks.store import BlockStore
from callfs.config import BackendConfig
from callfs.errors import DataCorrupted
from callfs.metrics import Metrics
from callfs.models import FileBlock


@pytest.fixture
async def local_blocks(tmp_path: Path) -> AsyncIterator[BlockStore]:
    backend = LocalFSBackend(tmp_path / "data")
    await backend.start()
    yield BlockStore(backend, Metrics())
    await backend.close()


async def test_a_block_is_a_file_named_by_its_hash_and_reads_back(local_blocks: BlockStore, tmp_path: Path) -> None:
    data = b"hello blocks\n" * 1000
    stored = await local_blocks.put(data)
    assert stored.hash == hashlib.sha256(data).hexdigest()
    on_disk = tmp_path / "data" / "objects" / stored.hash[:2] / stored.hash
    assert on_disk.stat().st_size == stored.stored_size < len(data)  # compressed
    assert await local_blocks.get(stored.hash) == data
    assert [name async for name in local_blocks.list()] == [stored.hash]


async def test_writing_a_block_again_is_harmless(local_blocks: BlockStore) -> None:
    data = os.urandom(100_000)
    first = await local_blocks.put(data)
    assert await local_blocks.put(data) == first
    assert await local_blocks.get(first.hash) == data


async def test_a_flipped_byte_on_disk_fails_the_read(local_blocks: BlockStore, tmp_path: Path) -> None:
    data = os.urandom(200_000)  # incompressible: stored raw, so the flip hits plaintext
    stored = await local_blocks.put(data)
    path = tmp_path / "data" / "objects" / stored.hash[:2] / stored.hash
    damaged = bytearray(path.read_bytes())
    damaged[1000] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptBlock, match="SHA-256"):
        await local_blocks.get(stored.hash)
    reader = BlockFileReader(local_blocks, [FileBlock(0, stored.hash, len(data))], len(data))
    with pytest.raises(DataCorrupted):
        [chunk async for chunk in reader.iter_range(0, 10, 1 << 20)]
    assert local_blocks.metrics.block_read_errors.labels("localfs")._value.get() == 2


async def test_a_missing_block_fails_the_read(local_blocks: BlockStore) -> None:
    with pytest.raises(CorruptBlock, match="missing"):
        await local_blocks.get("ab" * 32)


async def test_an_oversized_block_is_refused(local_blocks: BlockStore) -> None:
    with pytest.raises(ValueError):
        await local_blocks.put(bytes(BLOCK_SIZE + 1))


async def test_a_range_read_fetches_only_the_blocks_it_overlaps(local_blocks: BlockStore) -> None:
    parts = [bytes([i]) * BLOCK_SIZE for i in range(3)]
    stored = [await local_blocks.put(p) for p in parts]
    size = 3 * BLOCK_SIZE
    reader = BlockFileReader(local_blocks, [FileBlock(i, s.hash, BLOCK_SIZE) for i, s in enumerate(stored)], size)
    opened = local_blocks.metrics.backend_ops.labels("localfs", "open")
    before = opened._value.get()
    got = b"".join([c async for c in reader.iter_range(BLOCK_SIZE - 2, 4, 1 << 20)])
    assert got == b"\x00\x00\x01\x01"
    assert opened._value.get() - before == 2  # blocks 0 and 1, never block 2


async def test_a_hole_in_the_block_list_reads_as_zeros(local_blocks: BlockStore) -> None:
    tail = await local_blocks.put(b"end")
    reader = BlockFileReader(local_blocks, [FileBlock(1, tail.hash, 3)], BLOCK_SIZE + 3)
    got = b"".join([c async for c in reader.iter_range(BLOCK_SIZE - 3, 6, 1 << 20)])
    assert got == b"\x00\x00\x00end"


async def test_blocks_are_objects_on_s3(backend_config: BackendConfig) -> None:
    backend = S3Backend(backend_config)
    await backend.start()
    try:
        blocks = BlockStore(backend, Metrics())
        data = b"s3 block " * 50_000
        stored = await blocks.put(data)
        assert await blocks.get(stored.hash) == data
        assert [name async for name in blocks.list()] == [stored.hash]
        await blocks.delete(stored.hash)
        with pytest.raises(CorruptBlock, match="missing"):
            await blocks.get(stored.hash)
    finally:
        await backend.close()
