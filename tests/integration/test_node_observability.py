"""Request IDs in logs, ``metrics.enabled`` and ``server.read_timeout``, on an in-process node (``support.app_node``:
SQLite, local disk, in-process locks, or PostgreSQL + Redis) served over real TCP, with its logs captured as JSON
lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
import pytest
import structlog

from callfs.logs import configure_logging
from callfs.node import Node
from support.app_node import AppNode
from support.node import postgres_redis_sections
from support.waiting import wait_for_async

READ_TIMEOUT = 0.5


@dataclass
class LocalNode:
    """An in-process node and the JSON log lines of this process."""

    served: AppNode
    logs: io.StringIO

    @property
    def node(self) -> Node:
        assert self.served.node is not None, "the node is not running"
        return self.served.node

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def api_key(self) -> str:
        return self.served.api_key

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines()]

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(self.url, headers={"Authorization": f"Bearer {self.api_key}"})


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def start_node(app_node_factory: Callable[..., AppNode], logs: io.StringIO, **sections: Any) -> LocalNode:
    """A node with ``server.read_timeout`` = :data:`READ_TIMEOUT` and ``sections``; ``app_node_factory`` stops it."""
    return LocalNode(app_node_factory(server={"read_timeout": READ_TIMEOUT}, **sections), logs)


@pytest.fixture
def local_node(json_logs: io.StringIO, app_node_factory: Callable[..., AppNode]) -> LocalNode:
    return start_node(app_node_factory, json_logs)


@pytest.fixture(params=["sqlite", "postgres"])
def stores_node(
    request: pytest.FixtureRequest, json_logs: io.StringIO, app_node_factory: Callable[..., AppNode]
) -> LocalNode:
    """:func:`local_node` on SQLite + in-process locks, and on PostgreSQL + Redis (the Redis path lock)."""
    sections = postgres_redis_sections(request) if request.param == "postgres" else {}
    return start_node(app_node_factory, json_logs, **sections)


async def test_a_500_names_a_request_id_that_the_failure_log_line_carries(
    local_node: LocalNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_stat(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("injected metadata fault")

    monkeypatch.setattr(local_node.node.engine, "stat", failing_stat)
    async with local_node.session() as http, http.get("/v1/files/docs/a.txt") as response:
        assert response.status == 500
        body = await response.json()
    assert body["code"] == "INTERNAL_ERROR"
    request_id = body["message"].rsplit(" ", 1)[-1]
    assert response.headers["X-Request-ID"] == request_id
    lines = [line for line in local_node.log_lines() if line.get("request_id") == request_id]
    failure = next(line for line in lines if line["level"] == "error")
    assert failure["event"] == "unhandled error"
    assert (failure["method"], failure["path"], failure["status"]) == ("GET", "/v1/files/docs/a.txt", 500)
    assert "RuntimeError: injected metadata fault" in failure["exception"]
    access = next(line for line in lines if line["level"] == "info")
    assert (access["logger"], access["method"], access["status"]) == ("callfs.http", "GET", 500)
    assert access["path"] == "/v1/files/docs/a.txt"
    assert access["duration_ms"] >= 0


async def test_every_request_gets_an_access_line_with_its_request_id(local_node: LocalNode) -> None:
    async with local_node.session() as http:
        async with http.put("/v1/files/a.txt", data=b"abc", headers={"X-Request-ID": "client-7.a:b_c"}) as response:
            assert response.status == 201
            assert response.headers["X-Request-ID"] == "client-7.a:b_c"
        async with http.get("/v1/files/missing") as response:
            assert response.status == 404
            generated = response.headers["X-Request-ID"]
    by_id = {line["request_id"]: line for line in local_node.log_lines() if "status" in line}
    assert (by_id["client-7.a:b_c"]["method"], by_id["client-7.a:b_c"]["status"]) == ("PUT", 201)
    assert (by_id[generated]["path"], by_id[generated]["status"]) == ("/v1/files/missing", 404)


@pytest.mark.parametrize("incoming", ["has space", "x" * 129, "semi;colon", "naïve"])
async def test_a_malformed_request_id_is_replaced(local_node: LocalNode, incoming: str) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"X-Request-ID": incoming.encode("utf-8").decode("latin-1")}
        async with http.get(local_node.url + "/health", headers=headers) as response:
            assert response.status == 200
            echoed = response.headers["X-Request-ID"]
    assert echoed != incoming
    assert len(echoed) == 32 and all(c in "0123456789abcdef" for c in echoed)
    assert any(line.get("request_id") == echoed for line in local_node.log_lines())


async def test_metrics_are_served_when_enabled(local_node: LocalNode) -> None:
    async with local_node.session() as http, http.get("/metrics") as response:
        assert response.status == 200
        assert "callfs" in await response.text()


async def test_metrics_disabled_answers_404(
    json_logs: io.StringIO, app_node_factory: Callable[..., AppNode]
) -> None:
    started = start_node(app_node_factory, json_logs, metrics={"enabled": False})
    async with started.session() as http, http.get("/metrics") as response:
        assert response.status == 404
        assert (await response.json())["code"] == "FILE_NOT_FOUND"


async def stalled_put(node: LocalNode, path: str, declared: int, sent: bytes) -> tuple[asyncio.StreamReader,
                                                                                       asyncio.StreamWriter]:
    """Start a PUT declaring ``declared`` body bytes, send only ``sent``, then go silent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(
        f"PUT /v1/files/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {node.api_key}\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode() + sent
    )
    await writer.drain()
    return reader, writer


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return status, json.loads(await reader.readexactly(length))


async def test_a_stalled_upload_times_out_writes_nothing_and_releases_the_lock(stores_node: LocalNode) -> None:
    local_node = stores_node
    reader, writer = await stalled_put(local_node, "big.bin", 1 << 20, b"x" * 1000)
    try:
        started = time.monotonic()

        async def stalled_upload_streaming() -> bool:  # its temp file exists only while it holds the path lock
            return any((local_node.served.data_dir / "blobs" / "tmp").iterdir())

        # The node runs on a thread of its own: the stalled writer holds the lock before the second one comes.
        await wait_for_async(stalled_upload_streaming, 5, "the stalled upload to take the lock", 0.01)
        async with local_node.session() as http:
            # A second writer of the same path waits for the stalled one's lock, and gets it once that times out.
            second = asyncio.create_task(http.put("/v1/files/big.bin", data=b"second writer"))
            await asyncio.sleep(0.1)
            async with http.get("/v1/files/big.bin") as response:
                assert response.status == 404  # nothing half-written is visible meanwhile
            status, body = await asyncio.wait_for(read_response(reader), 5)
            assert status == 408
            assert body["code"] == "REQUEST_TIMEOUT"
            assert time.monotonic() - started >= READ_TIMEOUT * 0.9
            async with await asyncio.wait_for(second, 5) as response:
                assert response.status == 201
            async with http.get("/v1/files/big.bin") as response:
                assert await response.read() == b"second writer"
    finally:
        writer.close()


async def test_a_stalled_overwrite_keeps_the_old_content(stores_node: LocalNode) -> None:
    local_node = stores_node
    async with local_node.session() as http:
        async with http.put("/v1/files/keep.txt", data=b"version one") as response:
            assert response.status == 201
        reader, writer = await stalled_put(local_node, "keep.txt", 100, b"partial")
        try:
            status, body = await asyncio.wait_for(read_response(reader), 5)
        finally:
            writer.close()
        assert (status, body["code"]) == (408, "REQUEST_TIMEOUT")
        async with http.get("/v1/files/keep.txt") as response:
            assert await response.read() == b"version one"
    lines = [line for line in local_node.log_lines() if line.get("status") == 408]
    assert lines and lines[0]["method"] == "PUT"


async def test_a_connection_that_never_completes_its_headers_is_closed(local_node: LocalNode) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", local_node.port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: headers never end
        await writer.drain()
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
        assert time.monotonic() - started >= READ_TIMEOUT * 0.5
    finally:
        writer.close()
