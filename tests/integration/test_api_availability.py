"""Availability under hostile or unlucky conditions: deep paths, idle connections, malformed HTTP, a full disk,
and permission checks before forwarding to a dead node."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.app_node import AppNode
from support.http import session
from support.machine import tmpfs_mount
from support.node import NodeProcess
from support.waiting import wait_for_async

# --- path depth ----------------------------------------------------------------------------------------------


async def test_a_path_deeper_than_256_segments_is_400_and_creates_nothing(api_node: AppNode) -> None:
    async with session(api_node) as http:
        async with http.put("/v1/files/" + "d/" * 300 + "f.txt", data=b"x") as response:
            assert response.status == 400
            body = await response.json()
            assert body["code"] == "BAD_REQUEST"
            assert "256" in body["message"]
        async with http.get("/v1/directories/d") as response:
            assert response.status == 404


async def test_creating_256_levels_of_parents_is_quick_and_does_not_block_other_writes(api_node: AppNode) -> None:
    async with session(api_node) as http:
        started = time.monotonic()
        deep = asyncio.create_task(http.put("/v1/files/" + "d/" * 255 + "f.txt", data=b"deep"))
        async with http.put("/v1/files/other.txt", data=b"other") as response:
            assert response.status == 201
        async with await deep as response:
            assert response.status == 201, await response.text()
        assert time.monotonic() - started < 5
        async with http.get("/v1/files/" + "d/" * 255 + "f.txt") as response:
            assert await response.read() == b"deep"


# --- connections ---------------------------------------------------------------------------------------------


async def read_raw_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def test_connections_beyond_the_cap_are_refused_and_service_resumes_when_idle_ones_time_out(
    app_node_factory: Callable[..., AppNode], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cap, extra, idle_timeout = 8, 20, 4.0
    node = app_node_factory(server={"max_connections": cap, "read_timeout": idle_timeout})
    port = int(node.url.rsplit(":", 1)[1])
    idle = []
    try:
        for _ in range(cap):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.2)
        refused = []
        for _ in range(extra):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            refused.append(writer)
            status, headers, body = await asyncio.wait_for(read_raw_response(reader), 5)
            assert status == 503
            assert headers["retry-after"] == "1"
            assert json.loads(body)["code"] == "SERVICE_UNAVAILABLE"
            assert await asyncio.wait_for(reader.read(), 5) == b""  # and closed
        for writer in refused:
            writer.close()
        # The idle connections are closed after server.read_timeout; then a fresh connection is served.
        for reader, _ in idle:
            assert await asyncio.wait_for(reader.read(), idle_timeout * 4) == b""

        async def healthy() -> bool:
            async with session(node) as http, http.get("/health") as response:
                return response.status == 200

        assert await healthy()
    finally:
        for _, writer in idle:
            writer.close()
    refusal_lines = [r for r in caplog.records if "refus" in r.getMessage()]
    assert 1 <= len(refusal_lines) <= 2, [r.getMessage() for r in refusal_lines]


# --- malformed HTTP ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", id="huge-header"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
                     + b"\r\n", id="too-many-headers"),
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="huge-request-line"),
        pytest.param(b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n", id="bad-method"),
        pytest.param(b"PUT /v1/files/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n", id="content-length-and-chunked"),
        pytest.param(b"PUT /v1/files/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
        pytest.param(b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", id="bad-version"),
    ],
)
async def test_requests_the_http_parser_rejects_get_a_json_400(
    app_node: AppNode, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    port = int(app_node.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes)
        await writer.drain()
        status, headers, body = await asyncio.wait_for(read_raw_response(reader), 5)
    finally:
        writer.close()
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)
    assert error["code"] == "BAD_REQUEST"
    assert error["message"]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback logged for a client's mistake


# --- forwarding ----------------------------------------------------------------------------------------------


async def test_permission_is_checked_before_forwarding_to_a_dead_owner(
    cluster_factory: Callable[..., list[NodeProcess]],
) -> None:
    owner, other = cluster_factory(2, backend={"whole_files_in_blocks": False})  # one blob, on its owner
    async with session(owner, "alice") as http, http.put("/v1/files/alice/f.txt", data=b"alice's") as response:
        assert response.status == 201
    owner.kill()
    async with session(other, "bob") as bob, session(other, "root") as root:
        async with bob.delete("/v1/files/alice/f.txt") as response:
            assert response.status == 403
            assert (await response.json())["code"] == "PERMISSION_DENIED"
        async with bob.put("/v1/files/alice/f.txt", data=b"bob's") as response:
            assert response.status == 403
        async with bob.patch("/v1/files/alice/f.txt",
                             json={"destination": "/alice/f.txt", "backend": "localfs"}) as response:
            assert response.status == 403
        async with root.delete("/v1/files/alice/f.txt") as response:
            assert response.status == 502  # allowed, but the owner is down
        async with root.head("/v1/files/alice/f.txt") as response:
            assert response.status == 200


# --- a full disk ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (needs root and the right to mount)."""
    with tmpfs_mount(tmp_path / "small-disk", "2m") as mount_point:
        yield mount_point


def fill(path: Path) -> None:
    """Write ``path`` until its filesystem has no space left."""
    with path.open("wb", buffering=0) as out:
        chunk = b"\0" * 4096
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


async def test_a_full_disk_answers_507_writes_nothing_and_recovers_by_itself(
    app_node_factory: Callable[..., AppNode], small_disk: Path
) -> None:
    node = app_node_factory(backend={"localfs_root_path": str(small_disk / "blobs")})
    async with session(node) as http:
        async with http.put("/v1/files/keep.txt", data=b"old content") as response:
            assert response.status == 201
        fill(small_disk / "filler")
        for path in ("new.bin", "keep.txt"):
            async with http.put(f"/v1/files/{path}", data=b"x" * (256 << 10)) as response:
                assert response.status == 507, await response.text()
                assert (await response.json())["code"] == "INSUFFICIENT_STORAGE"
        async with http.get("/v1/files/keep.txt") as response:
            assert await response.read() == b"old content"
        async with http.get("/v1/files/new.bin") as response:
            assert response.status == 404
        assert os.listdir(small_disk / "blobs" / "tmp") == []  # no temp file left behind
        async with http.get("/ready") as response:
            assert response.status == 503
            body = await response.json()
            assert body["checks"]["backend:localfs"] is False
            assert "full" in body["errors"]["backend:localfs"]

        (small_disk / "filler").unlink()

        async def ready() -> bool:
            async with http.get("/ready") as response:
                return response.status == 200

        await wait_for_async(ready, 10, "the node ready again once space is freed", 0.1)
        async with http.put("/v1/files/new.bin", data=b"x" * (256 << 10)) as response:
            assert response.status == 201
