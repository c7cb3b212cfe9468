"""Converting files stored as one blob to blocks in place (callfs.convert, ``Engine.convert_blob``), on in-process
nodes over SQLite and PostgreSQL + Redis: the content, size, times and ETag stay (``If-Match`` with the old ETag
still applies), every name of a hard-linked file converts at once, a write during the conversion wins and the file
is converted by a later pass, the background job (``backend.convert_blobs``) converts everything at its byte rate,
and a node restarted carries on with what is left."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from callfs.blocks.layout import BLOCK_SIZE
from callfs.engine import Engine
from callfs.errors import Conflict
from callfs.models import Inode, Layout
from callfs.node import Node
from callfs.permissions import Caller
from support.app_node import AppNode
from support.http import session
from support.node import postgres_redis_sections
from support.waiting import wait_for


@pytest.fixture(params=["sqlite", "postgres"])
def store_sections(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Config sections of a node alone on SQLite, or on PostgreSQL + Redis."""
    return {} if request.param == "sqlite" else postgres_redis_sections(request)


async def put(http: aiohttp.ClientSession, path: str, data: bytes, **headers: str) -> aiohttp.ClientResponse:
    async with http.put(f"/v1/files{path}", data=data, headers=headers) as response:
        await response.read()
        return response


async def head(http: aiohttp.ClientSession, path: str) -> CIMultiDict[str]:
    async with http.head(f"/v1/files{path}") as response:
        assert response.status == 200, response.status
        return response.headers.copy()


async def content(http: aiohttp.ClientSession, path: str) -> bytes:
    async with http.get(f"/v1/files{path}") as response:
        assert response.status == 200, await response.text()
        return await response.read()


def inode(node: AppNode, path: str) -> Inode:
    found = node.run(lambda n: n.store.get(path))
    assert found is not None
    return found


def blob_objects(node: AppNode) -> list[str]:
    """Names of the blobs (32 hex digits, not blocks) on the node's disk."""
    return [p.name for p in (node.data_dir / "blobs" / "objects").glob("*/*") if len(p.name) == 32]


def convert(node: AppNode, path: str) -> Inode | None:
    return node.run(lambda n: n.engine.convert_blob(path))


def counter(node: AppNode, name: str) -> float:
    """The sum of a node's samples of metric attribute ``name`` (a counter's ``_total`` or a gauge)."""
    assert node.node is not None
    metric = getattr(node.node.metrics, name)
    return sum(s.value for family in metric.collect() for s in family.samples
               if not s.name.endswith("_created"))


VISIBLE = ("ETag", "Last-Modified", "X-CallFS-Size", "X-CallFS-MTime", "X-CallFS-CTime", "X-CallFS-Ino",
           "X-CallFS-Mode", "X-CallFS-Nlink")
"""Headers of a file a conversion must not change."""


async def test_a_blob_file_converts_keeping_its_bytes_etag_size_and_times(
    app_node_factory: Callable[..., AppNode], store_sections: dict[str, Any]
) -> None:
    node = app_node_factory(**store_sections)
    data = os.urandom(BLOCK_SIZE + 12345)  # two blocks, the second short
    async with session(node) as http:
        assert (await put(http, "/d/f.bin", data)).status == 201
        assert (await put(http, "/d/empty", b"")).status == 201
        before = await head(http, "/d/f.bin")
        old = inode(node, "/d/f.bin")
        assert old.blob_id is not None
        blob_id = old.blob_id
        node.run(lambda n: n.store.put_attributes(blob_id, {"content-type": "image/png"}))  # as S3 keeps them
        assert old.layout is Layout.BLOB and len(blob_objects(node)) >= 1

        converted = convert(node, "/d/f.bin")
        assert converted is not None and converted.layout is Layout.BLOCKS
        now = inode(node, "/d/f.bin")
        assert now.layout is Layout.BLOCKS and now.blob_id != old.blob_id
        assert (now.size, now.mtime, now.ctime, now.version, now.ino) == (old.size, old.mtime, old.ctime,
                                                                          old.version, old.ino)
        assert len(node.run(lambda n: n.store.file_blocks(now.ino))) == 2
        after = await head(http, "/d/f.bin")
        for header in VISIBLE:
            assert after[header] == before[header], header
        assert now.blob_id is not None
        content_id = now.blob_id
        assert node.run(lambda n: n.store.get_attributes(content_id)) == {"content-type": "image/png"}
        assert node.run(lambda n: n.store.get_attributes(blob_id)) == {}  # moved with the content
        assert await content(http, "/d/f.bin") == data
        assert old.blob_id not in blob_objects(node)  # freed after the commit
        async with http.get("/v1/files/d/f.bin", headers={"Range": "bytes=4194300-4194309"}) as response:
            assert response.status == 206 and await response.read() == data[4194300:4194310]

        assert convert(node, "/d/f.bin") is None  # in blocks already
        assert convert(node, "/d") is None  # a directory
        assert convert(node, "/missing") is None
        empty = convert(node, "/d/empty")
        assert empty is not None and empty.layout is Layout.BLOCKS and await content(http, "/d/empty") == b""

        # A client holding the old ETag still writes conditionally, whole or in part.
        ranged = await put(http, "/d/f.bin", b"XY", **{"If-Match": before["ETag"], "Content-Range": "bytes 0-1/*"})
        assert ranged.status == 200
        etag = ranged.headers["ETag"]
        assert etag != before["ETag"]
        assert (await put(http, "/d/f.bin", b"new", **{"If-Match": before["ETag"]})).status == 412
        assert (await put(http, "/d/f.bin", b"new", **{"If-Match": etag})).status == 200
        assert await content(http, "/d/f.bin") == b"new"


async def test_a_single_use_link_minted_before_the_conversion_still_serves(app_node: AppNode) -> None:
    async with session(app_node) as http:
        assert (await put(http, "/l.txt", b"linked bytes")).status == 201
        async with http.post("/v1/links/generate", json={"path": "/l.txt", "expiry_seconds": 600}) as response:
            assert response.status == 201, await response.text()
            url = (await response.json())["url"]
        assert convert(app_node, "/l.txt") is not None
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as response:
        assert response.status == 200 and await response.read() == b"linked bytes"


async def test_a_hard_linked_file_converts_once_for_all_its_names(
    app_node_factory: Callable[..., AppNode], store_sections: dict[str, Any]
) -> None:
    node = app_node_factory(**store_sections)
    data = os.urandom(100_000)
    async with session(node) as http:
        assert (await put(http, "/a/one", data)).status == 201
        link = {"X-CallFS-Link-To": "/a/one"}
        async with http.post("/v1/files/b/"), http.post("/v1/files/b/two", headers=link) as response:
            assert response.status == 201, await response.text()
        before = await head(http, "/b/two")
        assert node.run(lambda n: n.store.count_blob_files("localfs", n.engine.instance_id)) == (1, len(data))
        written = counter(node, "blocks_written")
        assert convert(node, "/a/one") is not None
        assert counter(node, "blocks_written") == written + 1
        assert inode(node, "/b/two").layout is Layout.BLOCKS
        assert convert(node, "/b/two") is None  # the other name converted with it
        assert node.run(lambda n: n.store.count_blob_files("localfs", n.engine.instance_id)) == (0, 0)
        assert (await head(http, "/b/two"))["ETag"] == before["ETag"]
        assert await content(http, "/b/two") == data and await content(http, "/a/one") == data
        assert blob_objects(node) == []


async def test_a_write_during_the_conversion_wins_and_a_later_pass_converts_it(
    app_node_factory: Callable[..., AppNode], store_sections: dict[str, Any]
) -> None:
    node = app_node_factory(**store_sections)
    async with session(node) as http:
        assert (await put(http, "/a/one", b"old content")).status == 201
        link = {"X-CallFS-Link-To": "/a/one"}
        async with http.post("/v1/files/b/"), http.post("/v1/files/b/two", headers=link) as response:
            assert response.status == 201, await response.text()

    async def racing(n: Node) -> tuple[int, int, int]:
        engine: Engine = n.engine
        real = engine.block_files.write_plan

        async def write_plan_then_a_write(backend: Any, current: Inode, *args: Any, **kwargs: Any) -> Any:
            blocks = await real(backend, current, *args, **kwargs)
            # Through the other name of the file, so under another path lock: this write commits while the
            # conversion runs.
            other = "/b/two" if current.path == "/a/one" else "/a/one"
            await engine.write_file(Caller("root"), other, _body(b"new content!"), create_only=False)
            return blocks

        engine.block_files.write_plan = write_plan_then_a_write  # type: ignore[method-assign]
        try:
            with pytest.raises(Conflict):
                await engine.convert_blob("/a/one")
            await n.converter.run_pass()  # the same race again: skipped
        finally:
            del engine.block_files.write_plan  # type: ignore[method-assign]
        tally = n.converter.tally
        return tally.files, tally.skipped, tally.failures

    assert node.run(racing) == (0, 2, 0)  # each name tried, each time written meanwhile
    async with session(node) as http:
        assert await content(http, "/a/one") == b"new content!"
        etag = (await head(http, "/a/one"))["ETag"]
        assert inode(node, "/a/one").layout is Layout.BLOB  # the write's blob, not converted
        assert node.run(lambda n: n.converter.run_pass()) == 1
        assert inode(node, "/b/two").layout is Layout.BLOCKS
        assert await content(http, "/b/two") == b"new content!"
        assert (await head(http, "/a/one"))["ETag"] == etag


async def test_a_write_or_a_delete_through_the_same_name_is_never_held_up_nor_undone(app_node: AppNode) -> None:
    async with session(app_node) as http:
        for name in ("w", "d"):
            assert (await put(http, f"/{name}", b"old")).status == 201

    async def racing(n: Node) -> list[str]:
        engine: Engine = n.engine
        real = engine.block_files.write_plan
        outcomes = []

        async def write_plan_then_a_change(backend: Any, current: Inode, *args: Any, **kwargs: Any) -> Any:
            blocks = await real(backend, current, *args, **kwargs)
            # The blocks are written before the file's lock is taken: a writer of the same name goes on.
            if current.path == "/w":
                await asyncio.wait_for(engine.write_file(Caller("root"), "/w", _body(b"written"), create_only=False),
                                       5)
            else:
                await asyncio.wait_for(engine.delete(Caller("root"), "/d"), 5)
            return blocks

        engine.block_files.write_plan = write_plan_then_a_change  # type: ignore[method-assign]
        try:
            for path in ("/w", "/d"):
                try:
                    await engine.convert_blob(path)
                except Conflict as exc:
                    outcomes.append(str(exc))
        finally:
            del engine.block_files.write_plan  # type: ignore[method-assign]
        return outcomes

    outcomes = app_node.run(racing)
    assert len(outcomes) == 2 and "replaced" in outcomes[0] and "deleted" in outcomes[1]
    async with session(app_node) as http:
        assert await content(http, "/w") == b"written"
        async with http.get("/v1/files/d") as response:
            assert response.status == 404


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_the_background_job_converts_every_blob_file_at_its_rate_and_resumes_after_a_restart(
    app_node_factory: Callable[..., AppNode], store_sections: dict[str, Any]
) -> None:
    rate = 4 << 20
    backend = {"convert_blobs": True, "convert_bytes_per_second": rate, "convert_interval": 0.3}
    node = app_node_factory(**store_sections, backend=backend)
    files = {f"/job/f{i}": os.urandom(200_000 + i) for i in range(6)}
    async with session(node) as http:
        for path, data in files.items():
            assert (await put(http, path, data)).status == 201
        wait_for(lambda: node.run(lambda n: n.store.count_blob_files("localfs", n.engine.instance_id)) == (0, 0),
                 30, "every blob file converted")
        for path, data in files.items():
            assert await content(http, path) == data
        total = sum(len(d) for d in files.values())
        wait_for(lambda: counter(node, "blob_files_converted") == len(files), 10, "the counters updated")
        assert counter(node, "blob_bytes_converted") == total
        # The pauses add up to the time the bytes take at the rate (the byte rate is kept on average).
        assert counter(node, "blob_conversion_throttled_seconds") == pytest.approx(total / rate)
        assert counter(node, "blob_conversion_failures") == 0
        wait_for(lambda: counter(node, "blob_files_unconverted") == 0, 10, "the remaining gauge at 0")
    async with session(node, "root") as root, root.get("/metrics") as response:
        text = await response.text()
    assert 'callfs_blob_files_converted_total{backend="localfs"} 6.0' in text
    assert 'callfs_background_jobs{job="blob_conversion"} 1.0' in text

    # Files stored as blobs while the job is off (as by an older version) are converted once the node restarts
    # with it on: a pass needs no state, it finds the blob files left.
    set_conversion(node, False)
    node.restart()
    more = os.urandom(300_000)
    async with session(node) as http:
        assert (await put(http, "/job/later", more)).status == 201
        await asyncio.sleep(0.5)
        assert inode(node, "/job/later").layout is Layout.BLOB
    set_conversion(node, True)
    node.restart()
    wait_for(lambda: inode(node, "/job/later").layout is Layout.BLOCKS, 30, "the blob file left converted")
    async with session(node) as http:
        assert await content(http, "/job/later") == more
    report = node.run(lambda n: n.converter.report())
    assert report["remaining_files"] == 0 and report["failures"] == 0 and report["converted_files"] == 1


def set_conversion(node: AppNode, enabled: bool) -> None:
    """Turn ``backend.convert_blobs`` on or off in the node's config file (read at its next start)."""
    config = json.loads(node.config_path.read_text())
    config["backend"]["convert_blobs"] = enabled
    node.config_path.write_text(json.dumps(config))


async def test_without_the_setting_no_job_runs_and_root_alone_starts_a_pass(app_node: AppNode) -> None:
    async with session(app_node) as http, session(app_node, "root") as root:
        assert (await put(http, "/x", b"x" * 1000)).status == 201
        await asyncio.sleep(0.5)
        assert inode(app_node, "/x").layout is Layout.BLOB
        async with http.post("/v1/cluster/convert") as response:
            assert response.status == 403
        async with http.get("/v1/cluster/convert") as response:
            assert response.status == 403
        async with root.get("/v1/cluster/convert") as response:
            assert response.status == 200
            body = await response.json()
        assert body["remaining_files"] == 1 and body["remaining_bytes"] == 1000
        async with root.post("/v1/cluster/convert") as response:
            assert response.status == 202, await response.text()

        async def report() -> dict[str, Any]:
            async with root.get("/v1/cluster/convert") as response:
                return dict(await response.json())

        done = await _until(report, lambda b: b["remaining_files"] == 0 and not b["nodes"][0]["running"])
        assert done["converted_files"] == 1 and done["converted_bytes"] == 1000 and done["failures"] == 0
        (single,) = done["nodes"]
        assert single["reachable"] and single["passes"] == 1
        assert inode(app_node, "/x").layout is Layout.BLOCKS
        async with http.post("/internal/v1/convert") as response:
            assert response.status == 403


async def _until(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30) -> Any:
    """Poll the coroutine ``fetch()`` until ``done`` says yes; its last result."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await fetch()
        if done(found):
            return found
        assert asyncio.get_running_loop().time() < deadline, f"not done after {timeout}s: {found}"
        await asyncio.sleep(0.2)
