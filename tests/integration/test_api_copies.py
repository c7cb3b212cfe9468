"""Server-side copies (``POST /v1/copies``) on both metadata stores: a copy shares the source's blocks and blobs
(no byte copied), diverges from it on the first write to either, survives the deletion of its source, keeps its
bytes until the last file naming them goes, and is charged to the destination's quotas exactly."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

import aiohttp

from callfs.blocks.layout import BLOCK_SIZE
from support.app_node import AppNode
from support.http import session

MIB = 1 << 20


async def put(http: aiohttp.ClientSession, path: str, data: bytes, **headers: str) -> aiohttp.ClientResponse:
    async with http.put(f"/v1/files/{path}", data=data, headers=headers) as response:
        await response.read()
        assert response.status in (200, 201), await response.text()
        return response


async def put_range(http: aiohttp.ClientSession, path: str, offset: int, data: bytes) -> None:
    headers = {"Content-Range": f"bytes {offset}-{offset + len(data) - 1}/*"}
    async with http.put(f"/v1/files/{path}", data=data, headers=headers) as response:
        assert response.status == 200, await response.text()


async def content(http: aiohttp.ClientSession, path: str) -> bytes:
    async with http.get(f"/v1/files/{path}") as response:
        assert response.status == 200, await response.text()
        return await response.read()


async def digest(http: aiohttp.ClientSession, path: str) -> str:
    sha = hashlib.sha256()
    async with http.get(f"/v1/files/{path}") as response:
        assert response.status == 200, await response.text()
        async for chunk in response.content.iter_chunked(MIB):
            sha.update(chunk)
    return sha.hexdigest()


async def copy(http: aiohttp.ClientSession, status: int = 201, **body: Any) -> dict[str, Any]:
    async with http.post("/v1/copies", json=body) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == status, answer
        return answer


def block_totals(node: AppNode) -> tuple[int, int, int]:
    assert node.node is not None
    engine = node.node.engine
    return node.run(lambda _: engine.store.block_totals(engine.default_backend, engine.instance_id))


def stored_files(node: AppNode) -> list[str]:
    """Every stored object (blobs and blocks) under the node's data directory."""
    return sorted(p.name for p in node.data_dir.rglob("objects/*/*"))


def collect(node: AppNode) -> None:
    assert node.node is not None
    node.node.engine.block_files.grace = 0
    node.sweep_orphans()


async def test_a_snapshot_of_256_mib_in_blocks_adds_no_block_and_takes_milliseconds(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        sources = {}
        for name in ("a", "b", "c", "d"):
            data = os.urandom(64 * MIB)
            await put(http, f"vol/{name}.bin", b"")
            await put_range(http, f"vol/{name}.bin", 0, data)  # stored in blocks from the start
            sources[name] = hashlib.sha256(data).hexdigest()
        before, files_before = block_totals(api_node), stored_files(api_node)
        assert before[:2] == (64, 256 * MIB)
        started = time.perf_counter()
        answer = await copy(http, source="/vol", destination="/snap/one", recursive=True)
        elapsed = time.perf_counter() - started
        assert answer == {"path": "/snap/one", "files": 4, "directories": 1, "bytes": 256 * MIB}
        assert elapsed < 1.0, f"the copy took {elapsed:.3f}s"
        assert block_totals(api_node) == before
        assert stored_files(api_node) == files_before
        for name, expected in sources.items():
            assert await digest(http, f"snap/one/{name}.bin") == expected


async def test_a_copy_diverges_without_touching_its_source_and_back(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        await put(http, "src/blocks.bin", b"")
        await put_range(http, "src/blocks.bin", 0, b"x" * (BLOCK_SIZE + 10))
        await put(http, "src/blob.txt", b"a blob of bytes")
        await copy(http, source="/src", destination="/clone", recursive=True)
        await put_range(http, "clone/blocks.bin", 0, b"CLONE")
        await put_range(http, "clone/blob.txt", 2, b"CLONE")
        assert await content(http, "src/blocks.bin") == b"x" * (BLOCK_SIZE + 10)
        assert await content(http, "src/blob.txt") == b"a blob of bytes"
        await put_range(http, "src/blocks.bin", BLOCK_SIZE, b"SOURCE")
        await put(http, "src/blob.txt", b"replaced")
        assert await content(http, "clone/blocks.bin") == b"CLONE" + b"x" * (BLOCK_SIZE + 5)
        assert await content(http, "clone/blob.txt") == b"a CLONEof bytes"
        assert await content(http, "src/blocks.bin") == b"x" * BLOCK_SIZE + b"SOURCE" + b"x" * 4


async def test_bytes_are_freed_only_when_the_last_file_naming_them_goes(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        await put(http, "src/blocks.bin", b"")
        await put_range(http, "src/blocks.bin", 0, os.urandom(2 * BLOCK_SIZE))
        await put(http, "src/blob.bin", os.urandom(1000))
        expected = {name: await content(http, f"src/{name}") for name in ("blocks.bin", "blob.bin")}
        await copy(http, source="/src", destination="/snap", recursive=True)
        stored = stored_files(api_node)
        assert len(stored) == 3  # two blocks, one blob
        async with http.delete("/v1/files/src", params={"recursive": "true"}) as response:
            assert response.status == 204
        collect(api_node)
        assert stored_files(api_node) == stored
        for name, data in expected.items():
            assert await content(http, f"snap/{name}") == data
        async with http.delete("/v1/files/snap/blocks.bin") as response:
            assert response.status == 204
        collect(api_node)
        assert len(stored_files(api_node)) == 1
        assert block_totals(api_node)[0] == 0
        async with http.delete("/v1/files/snap/blob.bin") as response:
            assert response.status == 204
        collect(api_node)
        assert stored_files(api_node) == []


async def test_a_copy_is_charged_to_the_destination_quota_exactly(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        await put(http, "src/d/one.bin", b"1" * 300)
        await put(http, "src/two.bin", b"")
        await put_range(http, "src/two.bin", 0, b"2" * 700)
        async with http.post("/v1/files/vol/") as response:
            assert response.status == 201, await response.text()
        async with http.put("/v1/quotas/vol", json={"bytes_limit": 1500, "inodes_limit": 10}) as response:
            assert response.status in (200, 201), await response.text()
        await copy(http, source="/src", destination="/vol", recursive=True, into=True)
        async with http.get("/v1/quotas/vol") as response:
            used = await response.json()
        assert (used["bytes_used"], used["inodes_used"]) == (1000, 3)
        totals = block_totals(api_node)
        refused = await copy(http, 507, source="/src", destination="/vol/again", recursive=True)
        assert refused["code"] == "QUOTA_EXCEEDED"
        async with http.get("/v1/files/vol/again") as response:
            assert response.status == 404
        async with http.get("/v1/quotas/vol") as response:
            assert (await response.json())["bytes_used"] == 1000
        assert block_totals(api_node) == totals
        collect(api_node)
        assert await content(http, "vol/two.bin") == b"2" * 700


async def test_copy_refusals_leave_nothing_behind(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        await put(http, "src/f.txt", b"data")
        await put(http, "taken/x.txt", b"x")
        assert (await copy(http, 400, source="/src", destination="/dst"))["code"] == "BAD_REQUEST"
        assert (await copy(http, 400, source="/src", destination="/src/in", recursive=True))["code"] == "BAD_REQUEST"
        assert (await copy(http, 404, source="/nope", destination="/dst"))["code"] == "FILE_NOT_FOUND"
        assert (await copy(http, 409, source="/src", destination="/taken", recursive=True))["code"] == (
            "FILE_ALREADY_EXISTS")
        answer = await copy(http, 409, source="/src", destination="/taken", recursive=True, into=True)
        assert answer["code"] == "DIRECTORY_NOT_EMPTY"
        assert (await copy(http, 400, source="/src", destination="/d", bogus=1))["code"] == "BAD_REQUEST"
        async with http.get("/v1/files/dst") as response:
            assert response.status == 404
    async with session(api_node, "alice") as http:
        await put(http, "mine/readable.txt", b"r")
        await put(http, "mine/secret.txt", b"s")
        async with http.patch("/v1/files/mine/secret.txt", json={"mode": "0200"}) as response:
            assert response.status == 200
        async with session(api_node, "api-user-0") as other:
            refused = await copy(other, 403, source="/mine", destination="/theirs", recursive=True)
            assert refused["code"] == "PERMISSION_DENIED"
            async with other.get("/v1/files/theirs") as response:
                assert response.status == 404
            await copy(other, source="/mine/readable.txt", destination="/theirs/r.txt")
            async with other.get("/v1/files/theirs/r.txt") as response:
                assert response.status == 200
                assert response.headers["X-CallFS-Owner"] == "api-user-0"


async def test_copies_racing_writes_each_hold_one_version_and_keep_exact_references(api_node: AppNode) -> None:
    writes = 12
    async with session(api_node, "root") as http:
        await put(http, "src/f.bin", b"")
        await put_range(http, "src/f.bin", 0, b"a" * (3 * BLOCK_SIZE))

        async def write() -> None:
            for i in range(writes):
                await put_range(http, "src/f.bin", BLOCK_SIZE + i, bytes([i]))

        async def snapshot() -> None:
            for i in range(writes):
                await copy(http, source="/src", destination=f"/snap/{i}", recursive=True)

        await asyncio.gather(write(), snapshot())
        collect(api_node)  # no grace: a block whose count went wrong would be freed under a copy now
        for i in range(writes):
            data = await content(http, f"snap/{i}/f.bin")
            assert data[:BLOCK_SIZE] == data[2 * BLOCK_SIZE:] == b"a" * BLOCK_SIZE
            window = data[BLOCK_SIZE:BLOCK_SIZE + writes]
            assert any(window == bytes(range(k)) + b"a" * (writes - k) for k in range(writes + 1)), window
        assert await content(http, "src/f.bin") == b"a" * BLOCK_SIZE + bytes(range(writes)) + b"a" * (
            2 * BLOCK_SIZE - writes)
        for top in ("src", "snap"):
            async with http.delete(f"/v1/files/{top}", params={"recursive": "true"}) as response:
                assert response.status == 204
        collect(api_node)
        assert block_totals(api_node) == (0, 0, 0)
        assert stored_files(api_node) == []
