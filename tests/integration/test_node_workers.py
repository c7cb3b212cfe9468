"""A node served by two worker processes (``server.workers: 2``) on PostgreSQL + Redis, as a subprocess: the
workers share the listener, background jobs run once, SIGTERM drains every worker, a killed worker is started
again, and ``/metrics`` sums over the workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.node import NodeProcess, postgres_redis_sections
from support.ports import free_port
from support.waiting import wait_for, wait_for_async

WORKERS = 2
JOBS = ("heartbeat", "link_sweep", "backend_retry", "orphan_sweep")


@pytest.fixture
def workers_node(request: pytest.FixtureRequest, node_factory: Callable[..., NodeProcess]) -> NodeProcess:
    sections = postgres_redis_sections(request)
    metrics_port = free_port()
    node = node_factory(server={"workers": WORKERS, "shutdown_timeout": 10},
                        metrics={"listen_addr": f"127.0.0.1:{metrics_port}", "open": True}, **sections)
    # /ready answers once the primary serves; the supervisor announces the node once every worker does.
    wait_for(lambda: "serving at" in node.log_path.read_text(errors="replace"), 30, "every worker to serve")
    return node


def log_lines(node: NodeProcess) -> list[dict[str, Any]]:
    out = []
    for line in node.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def worker_pids(node: NodeProcess) -> dict[int, int]:
    """Worker index → pid of its latest start that serves, from the supervisor's log."""
    pids: dict[int, int] = {}
    for line in log_lines(node):
        if line.get("logger") == "callfs.workers" and "pid" in line and "serving" in line["event"]:
            pids[line["worker"]] = line["pid"]
    return pids


def get(node: NodeProcess, path: str, *, request_id: str | None = None, key: bool = True) -> tuple[int, bytes]:
    """One request on a new connection (so the kernel picks a worker for each)."""
    headers = {"Authorization": f"Bearer {node.api_key}"} if key else {}
    if request_id:
        headers["X-Request-ID"] = request_id
    with urllib.request.urlopen(urllib.request.Request(node.url + path, headers=headers), timeout=10) as response:
        return response.status, response.read()


def metric(node: NodeProcess, name: str, labels: str = "") -> float:
    """The value of the sample ``name{labels}`` at ``/metrics`` (0 when absent)."""
    _, body = get(node, "/metrics")
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in body.decode().splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    return 0.0


def workers_of(node: NodeProcess, prefix: str) -> dict[str, int]:
    """Request ID → worker index of the access lines whose request ID starts with ``prefix``."""
    return {line["request_id"]: line["worker"] for line in log_lines(node)
            if str(line.get("request_id", "")).startswith(prefix) and "duration_ms" in line}


def test_requests_spread_over_every_worker_and_metrics_sum(workers_node: NodeProcess) -> None:
    before = metric(workers_node, "callfs_http_requests_total", 'method="GET",path="/health",status_code="200"')
    for i in range(40):
        assert get(workers_node, "/health", request_id=f"spread-{i}", key=False)[0] == 200
    seen = wait_for(lambda: workers_of(workers_node, "spread-"), 10, "40 access lines",
                    until=lambda seen: len(seen) == 40)
    assert set(seen.values()) == set(range(WORKERS))
    after = metric(workers_node, "callfs_http_requests_total", 'method="GET",path="/health",status_code="200"')
    assert after - before == 40


def test_background_jobs_run_in_one_worker(workers_node: NodeProcess) -> None:
    for job in JOBS:
        assert metric(workers_node, "callfs_background_jobs", f'job="{job}"') == 1
    # The metrics listener (served by the primary) shows the node's totals too.
    listen_addr = json.loads(workers_node.config_path.read_text())["metrics"]["listen_addr"]
    with urllib.request.urlopen(f"http://{listen_addr}/metrics", timeout=10) as response:
        assert f'callfs_background_jobs{{job="{JOBS[0]}"}} 1.0' in response.read().decode()
    status, body = get(workers_node, "/v1/cluster/nodes")
    assert status == 200
    assert sum(1 for n in json.loads(body)["nodes"] if n.get("self")) == 1
    primaries = [line for line in log_lines(workers_node) if line.get("primary") is True]
    assert [line["worker"] for line in primaries] == [0]


async def _open(node: NodeProcess, request_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection on which one ``GET /health`` tagged ``request_id`` was answered."""
    host, port = node.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Request-ID: {request_id}\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    length = 0
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return reader, writer


async def test_sigterm_drains_inflight_uploads_in_every_worker(workers_node: NodeProcess) -> None:
    # Connections whose worker is known (from the access line of a first request), two per worker.
    connections: dict[int, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {i: [] for i in range(WORKERS)}
    extra = []
    for i in range(60):
        if all(len(c) >= 2 for c in connections.values()):
            break
        conn = await _open(workers_node, f"drain-{i}")
        worker = await wait_for_async(
            lambda i=i: asyncio.to_thread(lambda: workers_of(workers_node, f"drain-{i}").get(f"drain-{i}")), 10,
            f"the access line of drain-{i}", 0.02, until=lambda w: w is not None)
        (connections[worker] if len(connections[worker]) < 2 else extra).append(conn)
    assert all(len(c) == 2 for c in connections.values())
    uploads = [(worker, n, conn) for worker, conns in connections.items() for n, conn in enumerate(conns)]
    half = b"x" * 1000
    for worker, n, (_, writer) in uploads:
        writer.write(f"PUT /v1/files/drain-{worker}-{n}.bin HTTP/1.1\r\nHost: node\r\n"
                     f"Authorization: Bearer {workers_node.api_key}\r\nContent-Length: 2000\r\n\r\n".encode() + half)
        await writer.drain()
    await wait_for_async(
        lambda: asyncio.to_thread(metric, workers_node, "callfs_http_requests_in_flight"), 10,
        "the uploads to be in flight", until=lambda v: v >= len(uploads) + 1)
    assert workers_node.process is not None
    workers_node.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)  # every worker has stopped accepting by now and is draining
    for _, _, (_, writer) in uploads:
        writer.write(half)
        await writer.drain()
    statuses = [await reader.readline() for _, _, (reader, _) in uploads]
    assert all(s.startswith(b"HTTP/1.1 201") for s in statuses), statuses
    for _, _, (_, writer) in uploads:
        writer.close()
    for _, writer in extra:
        writer.close()
    assert await asyncio.to_thread(workers_node.process.wait, 30) == 0
    workers_node.process = None
    done = {line["path"]: line["worker"] for line in log_lines(workers_node)
            if str(line.get("path", "")).startswith("/v1/files/drain-") and line.get("status") == 201}
    assert done == {f"/v1/files/drain-{worker}-{n}.bin": worker for worker, n, _ in uploads}


def test_a_killed_worker_is_started_again(workers_node: NodeProcess) -> None:
    first = worker_pids(workers_node)
    assert sorted(first) == list(range(WORKERS))
    for index in (1, 0):  # a secondary, then the primary (its background jobs must come back once)
        old = worker_pids(workers_node)[index]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda index=index: worker_pids(workers_node)[index], 30, f"worker {index} to serve again",
                 until=lambda pid, old=old: pid != old)
        wait_for(lambda: get(workers_node, "/ready", key=False)[0], 30, "the node to be ready", ignoring=(OSError,),
                 until=lambda status: status == 200)
        for job in JOBS:
            assert metric(workers_node, "callfs_background_jobs", f'job="{job}"') == 1
    assert workers_node.process is not None and workers_node.process.poll() is None
    for i in range(20):
        assert get(workers_node, "/health", request_id=f"after-{i}", key=False)[0] == 200
    assert workers_node.stop() == 0


def test_workers_die_with_the_supervisor(workers_node: NodeProcess) -> None:
    pids = list(worker_pids(workers_node).values())
    workers_node.kill()

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in pids)

    wait_for(gone, 10, "the workers to exit")


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"
    return next((line for line in status.splitlines() if line.startswith("State:")), "").lower()
