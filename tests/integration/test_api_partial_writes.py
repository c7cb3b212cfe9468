"""Partial writes through the API (``PUT`` with ``Content-Range``, ``PATCH {"size"}``) on both metadata stores:
semantics, the rules an overwrite follows (permissions, preconditions, quotas, ETags), concurrent writers, block
accounting, integrity and collection of the blocks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp

from callfs.blocks.layout import BLOCK_SIZE
from support.app_node import AppNode
from support.http import session

MIB = 1 << 20


async def put(http: aiohttp.ClientSession, path: str, data: bytes, **headers: str) -> aiohttp.ClientResponse:
    async with http.put(f"/v1/files/{path}", data=data, headers=headers) as response:
        await response.read()
        return response


async def put_range(
    http: aiohttp.ClientSession, path: str, offset: int, data: bytes, **headers: str
) -> aiohttp.ClientResponse:
    headers["Content-Range"] = f"bytes {offset}-{offset + len(data) - 1}/*"
    return await put(http, path, data, **headers)


async def resize(http: aiohttp.ClientSession, path: str, size: object, **headers: str) -> aiohttp.ClientResponse:
    async with http.patch(f"/v1/files/{path}", json={"size": size}, headers=headers) as response:
        await response.read()
        return response


async def content(http: aiohttp.ClientSession, path: str) -> bytes:
    async with http.get(f"/v1/files/{path}") as response:
        assert response.status == 200, await response.text()
        return await response.read()


def blocks_written(node: AppNode) -> float:
    assert node.node is not None
    metric = node.node.metrics.blocks_written
    return sum(sample.value for family in metric.collect() for sample in family.samples
               if sample.name.endswith("_total"))


def block_files(node: AppNode) -> list[Path]:
    return [p for p in node.data_dir.rglob("objects/*/*") if len(p.name) == 64]


async def test_a_range_overwrites_appends_and_zero_fills_a_gap(api_node: AppNode) -> None:
    async with session(api_node) as http:
        created = await put(http, "f.txt", b"hello world")
        middle = await put_range(http, "f.txt", 6, b"WORLD")
        assert middle.status == 200, middle
        assert middle.headers["ETag"] != created.headers["ETag"]
        assert await content(http, "f.txt") == b"hello WORLD"
        assert (await put_range(http, "f.txt", 11, b"!")).status == 200  # at the size: appends
        assert (await put_range(http, "f.txt", 15, b"end")).status == 200  # past it: a gap of zeros
        assert await content(http, "f.txt") == b"hello WORLD!\0\0\0end"
        async with http.head("/v1/files/f.txt") as response:
            assert response.headers["X-CallFS-Size"] == "18"
        async with http.get("/v1/files/f.txt", headers={"Range": "bytes=10-14"}) as response:
            assert response.status == 206
            assert await response.read() == b"D!\0\0\0"


async def test_patch_size_truncates_and_extends_with_zeros(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await put(http, "t.bin", b"0123456789")
        shorter = await resize(http, "t.bin", 4)
        assert shorter.status == 200
        assert await content(http, "t.bin") == b"0123"
        longer = await resize(http, "t.bin", 8)
        assert await content(http, "t.bin") == b"0123\0\0\0\0"
        same = await resize(http, "t.bin", 8)
        assert same.status == 200
        assert same.headers["ETag"] == longer.headers["ETag"]  # nothing changed
        assert (await resize(http, "t.bin", 0)).status == 200
        assert await content(http, "t.bin") == b""


async def test_bad_partial_writes_are_refused_and_change_nothing(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await put(http, "keep", b"original")
        for header in ("bytes 5-2/*", "bytes=0-1", "items 0-1/*", "bytes 0-1/7", "bytes -1-2/*"):
            response = await put(http, "keep", b"xy", **{"Content-Range": header})
            assert response.status == 400, header
        response = await put(http, "keep", b"xyz", **{"Content-Range": "bytes 0-1/*"})  # body longer than range
        assert response.status == 400
        for size in (-1, "3", 1.5, True, None):
            assert (await resize(http, "keep", size)).status == 400, size
        async with http.patch("/v1/files/keep", json={"size": 3, "mode": "0600"}) as patched:
            assert patched.status == 400
        assert await content(http, "keep") == b"original"
        assert (await put_range(http, "missing", 0, b"x")).status == 404
        assert (await resize(http, "missing", 3)).status == 404
        async with http.post("/v1/files/dir/") as response:
            assert response.status == 201
        assert (await put_range(http, "dir", 0, b"x")).status == 400
        assert (await resize(http, "dir", 0)).status == 400


async def test_if_match_and_permissions_apply_as_to_an_overwrite(api_node: AppNode) -> None:
    async with session(api_node) as http, session(api_node, "alice") as other:
        first = await put(http, "guarded", b"aaaa")
        assert (await put_range(http, "guarded", 0, b"b", **{"If-Match": '"stale"'})).status == 412
        assert (await resize(http, "guarded", 1, **{"If-Match": '"stale"'})).status == 412
        ok = await put_range(http, "guarded", 0, b"b", **{"If-Match": first.headers["ETag"]})
        assert ok.status == 200
        assert (await put_range(http, "guarded", 0, b"c", **{"If-Match": first.headers["ETag"]})).status == 412
        assert (await put_range(other, "guarded", 0, b"x")).status == 403
        assert (await resize(other, "guarded", 0)).status == 403
        assert await content(http, "guarded") == b"baaa"


async def test_quota_usage_follows_partial_writes_exactly(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        async with http.post("/v1/files/q/") as response:
            assert response.status == 201
        async with http.put("/v1/quotas/q", json={"bytes_limit": 100}) as response:
            assert response.status == 201
        await put(http, "q/f", b"x" * 40)
        await put_range(http, "q/f", 40, b"y" * 20)  # append 20
        await put_range(http, "q/f", 0, b"z" * 10)  # overwrite: no growth
        refused = await put_range(http, "q/f", 90, b"w" * 20)  # would reach 110 bytes
        assert refused.status == 507
        assert (await resize(http, "q/f", 101)).status == 507
        async with http.get("/v1/quotas/q") as response:
            assert (await response.json())["bytes_used"] == 60
        await resize(http, "q/f", 25)
        async with http.get("/v1/quotas/q") as response:
            assert (await response.json())["bytes_used"] == 25
        assert await content(http, "q/f") == b"z" * 10 + b"x" * 15


async def test_concurrent_writers_of_disjoint_ranges_all_land(api_node: AppNode) -> None:
    pieces = {i: bytes([65 + i]) * 1000 for i in range(12)}
    async with session(api_node) as http:
        await put(http, "shared.bin", b"")
        results = await asyncio.gather(*(put_range(http, "shared.bin", i * 1000, data) for i, data in pieces.items()))
        assert [r.status for r in results] == [200] * len(pieces)
        assert len({r.headers["ETag"] for r in results}) == len(pieces)  # each write made its own version
        assert await content(http, "shared.bin") == b"".join(pieces[i] for i in range(12))


async def test_only_the_touched_blocks_are_written(app_node: AppNode) -> None:
    size = 2 * BLOCK_SIZE + MIB  # three blocks
    data = bytearray(os.urandom(size))
    async with session(app_node) as http:
        await put(http, "big.bin", bytes(data))
        before = blocks_written(app_node)
        await put_range(http, "big.bin", 5, b"converted")  # first partial write: the blob becomes 3 blocks
        data[5:14] = b"converted"
        assert blocks_written(app_node) - before == 3
        before = blocks_written(app_node)
        await put_range(http, "big.bin", BLOCK_SIZE + 4096, b"\x01" * 4096)  # one 4 KiB page of block 1
        data[BLOCK_SIZE + 4096 : BLOCK_SIZE + 8192] = b"\x01" * 4096
        assert blocks_written(app_node) - before == 1
        before = blocks_written(app_node)
        await put_range(http, "big.bin", size, b"tail")  # append into the short last block
        data += b"tail"
        assert blocks_written(app_node) - before == 1
        assert await content(http, "big.bin") == bytes(data)


async def test_a_corrupt_block_is_an_error_never_wrong_bytes(app_node: AppNode) -> None:
    async with session(app_node) as http:
        await put(http, "c.bin", os.urandom(10_000))
        await put_range(http, "c.bin", 0, b"now in blocks")
        [stored] = block_files(app_node)
        damaged = bytearray(stored.read_bytes())
        damaged[-1] ^= 0xFF
        stored.write_bytes(bytes(damaged))
        async with http.get("/v1/files/c.bin") as response:
            assert response.status == 500
            assert (await response.json())["code"] == "DATA_CORRUPTED"


async def test_blocks_of_deleted_files_are_collected_after_the_grace_period(app_node: AppNode) -> None:
    assert app_node.node is not None
    async with session(app_node) as http:
        await put(http, "a.bin", b"a" * 1000)
        await put_range(http, "a.bin", 1000, b"b")
        assert len(block_files(app_node)) == 1
        await put_range(http, "a.bin", 0, b"c")  # the old block is unreferenced now, but within its grace
        async with http.delete("/v1/files/a.bin") as response:
            assert response.status == 204
    assert app_node.sweep_orphans() == 0
    assert len(block_files(app_node)) == 2
    app_node.node.engine.block_files.grace = 0
    assert app_node.sweep_orphans() == 2
    assert block_files(app_node) == []


async def test_a_whole_put_replaces_a_file_stored_in_blocks(app_node: AppNode) -> None:
    assert app_node.node is not None
    app_node.node.engine.block_files.grace = 0
    async with session(app_node) as http:
        await put(http, "w.bin", b"first")
        await put_range(http, "w.bin", 5, b" second")
        assert (await put(http, "w.bin", b"whole again")).status == 200
        assert await content(http, "w.bin") == b"whole again"
    app_node.sweep_orphans()
    assert block_files(app_node) == []


async def test_a_write_failing_before_its_commit_leaves_the_old_version(app_node: AppNode) -> None:
    assert app_node.node is not None
    engine = app_node.node.engine
    async with session(app_node) as http:
        await put(http, "d.bin", b"0123456789")
        before = await put_range(http, "d.bin", 0, b"ab")
        assert len(block_files(app_node)) == 1

        async def metadata_down(*args: object, **kwargs: object) -> None:
            raise ConnectionResetError("metadata store went away")  # the fault: the commit never happens

        engine._commit_blocks = metadata_down  # type: ignore[method-assign]
        try:
            failed = await put_range(http, "d.bin", 5, b"XYZ")
            assert failed.status == 500
        finally:
            del engine._commit_blocks
        async with http.head("/v1/files/d.bin") as response:
            assert response.headers["ETag"] == before.headers["ETag"]
        assert await content(http, "d.bin") == b"ab23456789"
    assert len(block_files(app_node)) == 2  # the new block was stored but nothing references it
    engine.block_files.grace = 0
    assert app_node.sweep_orphans() == 1
    assert len(block_files(app_node)) == 1
    async with session(app_node) as http:
        assert await content(http, "d.bin") == b"ab23456789"
