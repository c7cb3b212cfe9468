"""The files API end to end: a real node (``support.app_node``) over HTTP, on SQLite and on PostgreSQL+Redis."""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp

from support.app_node import AppNode
from support.http import session


async def put(http: aiohttp.ClientSession, path: str, data: bytes) -> aiohttp.ClientResponse:
    async with http.put(f"/v1/files/{path}", data=data) as response:
        await response.read()
        return response


async def test_put_creates_then_overwrites(api_node: AppNode) -> None:
    async with session(api_node) as http:
        first = await put(http, "docs/a.txt", b"one")
        assert first.status == 201
        second = await put(http, "docs/a.txt", b"second version")
        assert second.status == 200
        assert first.headers["ETag"] != second.headers["ETag"]
        async with http.get("/v1/files/docs/a.txt") as response:
            assert response.status == 200
            assert await response.read() == b"second version"
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert response.headers["X-CallFS-Type"] == "file"
            assert response.headers["X-CallFS-Size"] == "14"
            assert response.headers["X-CallFS-Mode"] == "0644"
            assert response.headers["X-CallFS-Owner"] == "api-user-0"
            assert response.headers["X-CallFS-MTime"].endswith("Z")
            assert response.headers["ETag"] == second.headers["ETag"]


async def test_post_creates_parents_and_refuses_existing_file(api_node: AppNode) -> None:
    async with session(api_node) as http:
        async with http.post("/v1/files/x/y/z.bin", data=b"abc") as response:
            assert response.status == 201
        async with http.post("/v1/files/x/y/z.bin", data=b"other") as response:
            assert response.status == 409
            assert (await response.json())["code"] == "FILE_ALREADY_EXISTS"
        async with http.head("/v1/files/x/y/") as response:
            assert response.headers["X-CallFS-Type"] == "directory"
            assert response.headers["X-CallFS-Owner"] == "api-user-0"
        async with http.get("/v1/files/x/y/z.bin") as response:
            assert await response.read() == b"abc"


async def test_directory_create_is_idempotent_and_conflicts_with_files(api_node: AppNode) -> None:
    async with session(api_node) as http:
        async with http.post("/v1/files/d1/") as response:
            assert response.status == 201
        async with http.post("/v1/files/d1/") as response:
            assert response.status == 200
        await put(http, "f1", b"x")
        async with http.post("/v1/files/f1/") as response:
            assert response.status == 409


async def test_post_of_a_file_on_a_directory_is_409(api_node: AppNode) -> None:
    async with session(api_node) as http:
        async with http.post("/v1/files/taken/") as response:
            assert response.status == 201
        async with http.post("/v1/files/taken", data=b"x") as response:
            assert response.status == 409
            body = await response.json()
            assert body["code"] == "CONFLICT"
            assert "is a directory" in body["message"]
        async with http.get("/v1/files/taken") as response:
            assert response.headers["X-CallFS-Type"] == "directory"


async def test_put_on_directory_is_400(api_node: AppNode) -> None:
    async with session(api_node) as http:
        async with http.post("/v1/files/dir/") as response:
            assert response.status == 201
        async with http.put("/v1/files/dir", data=b"x") as response:
            assert response.status == 400
            assert (await response.json())["code"] == "IS_A_DIRECTORY"
        async with http.put("/v1/files/newdir/", data=b"x") as response:
            assert response.status == 400
        async with http.put("/v1/files/", data=b"x") as response:
            assert response.status == 400


async def test_file_under_a_file_is_400(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await put(http, "plain", b"x")
        async with http.put("/v1/files/plain/child", data=b"y") as response:
            assert response.status == 400
            assert (await response.json())["code"] == "NOT_A_DIRECTORY"


async def test_get_directory_returns_json_array_sorted(api_node: AppNode) -> None:
    async with session(api_node) as http:
        for name in ("b.txt", "a.txt", "B.txt"):
            await put(http, f"list/{name}", b"1")
        async with http.post("/v1/files/list/zdir/") as response:
            assert response.status == 201
        async with http.get("/v1/files/list/") as response:
            assert response.status == 200
            assert response.headers["X-CallFS-Type"] == "directory"
            items = await response.json()
        assert [i["name"] for i in items] == ["zdir", "B.txt", "a.txt", "b.txt"]
        assert set(items[0]) >= {"name", "path", "type", "size", "mode", "owner", "mtime"}
        assert items[1]["path"] == "/list/B.txt"


async def test_large_file_streams_intact(api_node: AppNode) -> None:
    payload = os.urandom(8 << 20) + b"tail"

    async def chunks():  # a chunked upload without Content-Length
        for i in range(0, len(payload), 300_000):
            yield payload[i : i + 300_000]

    async with session(api_node) as http:
        async with http.put("/v1/files/big.bin", data=chunks()) as response:
            assert response.status == 201
        digest = hashlib.sha256()
        async with http.get("/v1/files/big.bin") as response:
            assert response.headers["Content-Length"] == str(len(payload))
            async for chunk in response.content.iter_chunked(1 << 20):
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_range_requests(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await put(http, "r.txt", b"0123456789")
        async with http.get("/v1/files/r.txt", headers={"Range": "bytes=2-4"}) as response:
            assert response.status == 206
            assert await response.read() == b"234"
            assert response.headers["Content-Range"] == "bytes 2-4/10"
        async with http.get("/v1/files/r.txt", headers={"Range": "bytes=-3"}) as response:
            assert await response.read() == b"789"
        async with http.get("/v1/files/r.txt", headers={"Range": "bytes=7-100"}) as response:
            assert response.status == 206
            assert await response.read() == b"789"
        async with http.get("/v1/files/r.txt", headers={"Range": "bytes=10-"}) as response:
            assert response.status == 416
            assert response.headers["Content-Range"] == "bytes */10"
            assert (await response.json())["code"] == "RANGE_NOT_SATISFIABLE"
        async with http.get("/v1/files/r.txt") as response:
            assert response.headers["Accept-Ranges"] == "bytes"


async def test_conditional_requests(api_node: AppNode) -> None:
    async with session(api_node) as http:
        created = await put(http, "c.txt", b"v1")
        tag = created.headers["ETag"]
        async with http.get("/v1/files/c.txt", headers={"If-None-Match": tag}) as response:
            assert response.status == 304
        async with http.get("/v1/files/c.txt", headers={"If-Match": '"nope"'}) as response:
            assert response.status == 412
            assert (await response.json())["code"] == "PRECONDITION_FAILED"
        async with http.put("/v1/files/c.txt", data=b"v2", headers={"If-Match": '"stale"'}) as response:
            assert response.status == 412
        async with http.put("/v1/files/c.txt", data=b"v2", headers={"If-Match": tag}) as response:
            assert response.status == 200
        async with http.put("/v1/files/c.txt", data=b"v3", headers={"If-None-Match": "*"}) as response:
            assert response.status == 412
        async with http.get("/v1/files/c.txt") as response:
            assert await response.read() == b"v2"
            last_modified = response.headers["Last-Modified"]
        async with http.get("/v1/files/c.txt", headers={"If-Modified-Since": last_modified}) as response:
            assert response.status == 304


async def test_head_reports_size_without_body(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await put(http, "h.bin", b"x" * 1234)
        async with http.head("/v1/files/h.bin") as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == "1234"
            assert response.headers["X-CallFS-Size"] == "1234"
            assert response.headers["X-CallFS-Instance-ID"]
            assert await response.read() == b""
        async with http.head("/v1/files/missing") as response:
            assert response.status == 404


async def test_delete_file_directory_and_subtree(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await put(http, "t/a/1", b"1")
        await put(http, "t/a/2", b"2")
        await put(http, "t2", b"sibling with a shared prefix")
        async with http.delete("/v1/files/t/a") as response:
            assert response.status == 409
            assert (await response.json())["code"] == "DIRECTORY_NOT_EMPTY"
        async with http.delete("/v1/files/t/a/1") as response:
            assert response.status == 204
        async with http.delete("/v1/files/t/a/1") as response:
            assert response.status == 404
            assert (await response.json())["code"] == "FILE_NOT_FOUND"
        async with http.delete("/v1/files/t?recursive=true") as response:
            assert response.status == 204
        async with http.get("/v1/files/t/a/2") as response:
            assert response.status == 404
        async with http.get("/v1/files/t2") as response:
            assert response.status == 200
        async with http.delete("/v1/files/?recursive=true") as response:
            assert response.status == 400


async def test_deleted_bytes_are_freed(app_node: AppNode) -> None:
    async with session(app_node) as http:
        await put(http, "gone.bin", b"z" * 1000)
        await put(http, "gone.bin", b"y" * 1000)
        async with http.delete("/v1/files/gone.bin") as response:
            assert response.status == 204
    objects = app_node.data_dir / "blobs" / "objects"
    assert [p for p in objects.rglob("*") if p.is_file()] == []


async def test_concurrent_writers_to_one_path_all_succeed(api_node: AppNode) -> None:
    bodies = [bytes([i]) * 200_000 for i in range(12)]
    async with session(api_node) as http:
        statuses = await asyncio.gather(*(put(http, "contended.bin", body) for body in bodies))
        assert sorted(r.status for r in statuses).count(201) == 1
        assert all(r.status in (200, 201) for r in statuses)
        async with http.get("/v1/files/contended.bin") as response:
            final = await response.read()
        assert final in bodies
