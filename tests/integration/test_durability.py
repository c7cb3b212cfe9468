"""Crash safety and graceful shutdown: kill -9 and SIGTERM of a node process mid-upload, the orphan sweep at start."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from callfs.backends.dirsync import DirectorySyncs, fsync_directory
from callfs.backends.localfs import LocalFSBackend
from callfs.engine import new_blob_id
from support.app_node import AppNode
from support.http import session
from support.node import NodeProcess, NodeSpec, postgres_redis_sections
from support.waiting import wait_for_async


def blob_files(node: NodeSpec) -> list[Path]:
    return [p for p in (node.data_dir / "blobs" / "objects").rglob("*") if p.is_file()]


def temp_files(node: NodeSpec) -> list[Path]:
    return list((node.data_dir / "blobs" / "tmp").iterdir())


def streaming(node: NodeSpec) -> Callable[[], Awaitable[list[Path] | None]]:
    """A condition for ``wait_for_async``: the node's temp files, once there are any."""

    async def temp() -> list[Path] | None:
        return temp_files(node) or None

    return temp


async def slow_body(total_chunks: int, started: asyncio.Event, pause: float) -> AsyncIterator[bytes]:
    for i in range(total_chunks):
        yield b"N" * (256 * 1024)
        if i == 3:
            started.set()
        await asyncio.sleep(pause)


async def test_kill_9_mid_overwrite_keeps_the_old_version_and_no_orphans(api_node_process: NodeProcess) -> None:
    async with session(api_node_process) as http:
        async with http.put("/v1/files/precious.bin", data=b"OLD" * 1000) as response:
            assert response.status == 201
        started = asyncio.Event()

        async def upload() -> None:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.put("/v1/files/precious.bin", data=slow_body(400, started, 0.02)) as response:
                    await response.read()

        task = asyncio.create_task(upload())
        await asyncio.wait_for(started.wait(), 20)
        await wait_for_async(streaming(api_node_process), 20, "the upload to stream into a temp file", 0.02)
        api_node_process.kill()
        await task
    api_node_process.start()
    async with session(api_node_process) as http, http.get("/v1/files/precious.bin") as response:
        assert response.status == 200
        assert await response.read() == b"OLD" * 1000
    assert temp_files(api_node_process) == []
    assert len(blob_files(api_node_process)) == 1


async def test_kill_9_mid_create_leaves_nothing(node: NodeProcess) -> None:
    async with session(node) as http:
        started = asyncio.Event()

        async def upload() -> None:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.put("/v1/files/new/partial.bin", data=slow_body(400, started, 0.02)) as r:
                    await r.read()

        task = asyncio.create_task(upload())
        await asyncio.wait_for(started.wait(), 20)
        await wait_for_async(streaming(node), 20, "the upload to stream into a temp file", 0.02)
        node.kill()
        await task
    node.start()
    async with session(node) as http, http.get("/v1/files/new/partial.bin") as response:
        assert response.status == 404
    assert temp_files(node) == [] and blob_files(node) == []


async def test_orphan_blobs_are_swept_at_start(app_node: AppNode) -> None:
    async with session(app_node) as http, http.put("/v1/files/kept.bin", data=b"k") as response:
        assert response.status == 201
    app_node.stop()
    orphan_dir = app_node.data_dir / "blobs" / "objects" / "ff"
    orphan_dir.mkdir(exist_ok=True)
    (orphan_dir / ("ff" * 16)).write_bytes(b"orphan")
    (app_node.data_dir / "blobs" / "tmp" / "leftover.tmp").write_bytes(b"partial")
    app_node.start()
    assert [p.name for p in blob_files(app_node)] != [] and not (orphan_dir / ("ff" * 16)).exists()
    assert temp_files(app_node) == []
    async with session(app_node) as http, http.get("/v1/files/kept.bin") as response:
        assert await response.read() == b"k"


async def test_sigterm_lets_an_inflight_upload_finish(node: NodeProcess) -> None:
    async with session(node) as http:
        started = asyncio.Event()
        result: dict[str, int] = {}

        async def upload() -> None:
            async with http.put("/v1/files/graceful.bin", data=slow_body(40, started, 0.05)) as response:
                result["status"] = response.status

        task = asyncio.create_task(upload())
        await asyncio.wait_for(started.wait(), 20)
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(task, 30)
        assert result["status"] == 201
        assert node.process.wait(30) == 0
    node.process = None
    node.start()
    async with session(node) as http, http.head("/v1/files/graceful.bin") as response:
        assert response.headers["X-CallFS-Size"] == str(40 * 256 * 1024)


def fail_commits(monkeypatch: pytest.MonkeyPatch, error: Exception, *, after_commit: bool = False,
                 times: int = 1) -> list[int]:
    """Make the next ``times`` PostgreSQL COMMITs raise ``error``, after the server committed (``after_commit``)
    or instead of committing; returns a list that counts the faults injected."""
    original = asyncpg.transaction.Transaction.commit
    injected: list[int] = []

    async def commit(self: asyncpg.transaction.Transaction) -> None:
        if len(injected) == times:
            return await original(self)
        injected.append(1)
        if after_commit:
            await original(self)
        raise error

    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", commit)
    return injected


def connection_lost() -> Exception:
    return asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")


def serialization_failure() -> Exception:
    return asyncpg.exceptions.SerializationError("could not serialize access due to concurrent update")


@pytest.fixture
async def pg_node(app_node_factory: Callable[..., AppNode], request: pytest.FixtureRequest) -> AppNode:
    """A node on PostgreSQL + Redis holding ``/doc.txt`` = ``old``."""
    node = app_node_factory(**postgres_redis_sections(request))
    async with session(node) as http, http.put("/v1/files/doc.txt", data=b"old") as response:
        assert response.status == 201
    return node


async def test_a_commit_whose_outcome_is_unknown_keeps_the_new_bytes(
    pg_node: AppNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection breaks after the server committed an overwrite: the node cannot know, answers 503, and
    must not delete the bytes the committed inode now points at."""
    node = pg_node
    async with session(node) as http:
        injected = fail_commits(monkeypatch, connection_lost(), after_commit=True)
        async with http.put("/v1/files/doc.txt", data=b"new content") as response:
            assert response.status == 503, await response.text()
            assert (await response.json())["code"] == "SERVICE_UNAVAILABLE"
        assert injected == [1]
        async with http.get("/v1/files/doc.txt") as response:
            assert response.status == 200, await response.text()
            assert await response.read() == b"new content"
    assert len(blob_files(node)) == 2, "the new blob is kept; the replaced one waits for the sweep"
    assert node.sweep_orphans() == 1
    async with session(node) as http, http.get("/v1/files/doc.txt") as response:
        assert await response.read() == b"new content"


async def test_a_commit_that_did_not_land_leaves_an_orphan_the_sweep_removes(
    pg_node: AppNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = pg_node
    async with session(node) as http:
        fail_commits(monkeypatch, connection_lost())
        async with http.put("/v1/files/doc.txt", data=b"new content") as response:
            assert response.status == 503
        async with http.get("/v1/files/doc.txt") as response:
            assert await response.read() == b"old"
    assert len(blob_files(node)) == 2, "the uncommitted blob is kept until the sweep"
    assert node.sweep_orphans() == 1
    assert len(blob_files(node)) == 1


async def test_a_write_aborted_by_a_conflict_runs_its_transaction_again(
    pg_node: AppNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL aborts a transaction to break a deadlock or a serialization conflict; the bytes are written
    already, so the node runs the metadata transaction again instead of failing the upload."""
    node = pg_node
    async with session(node) as http:
        injected = fail_commits(monkeypatch, serialization_failure(), times=2)
        async with http.put("/v1/files/doc.txt", data=b"new content") as response:
            assert response.status == 200, await response.text()
        assert injected == [1, 1]
        async with http.get("/v1/files/doc.txt") as response:
            assert await response.read() == b"new content"
    assert len(blob_files(node)) == 1


async def test_a_write_aborted_by_conflicts_every_time_is_503_and_writes_nothing(
    pg_node: AppNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = pg_node
    async with session(node) as http:
        fail_commits(monkeypatch, serialization_failure(), times=3)
        async with http.put("/v1/files/doc.txt", data=b"new content") as response:
            assert response.status == 503, await response.text()
            assert (await response.json())["code"] == "SERVICE_UNAVAILABLE"
        async with http.get("/v1/files/doc.txt") as response:
            assert await response.read() == b"old"
    assert len(blob_files(node)) == 1, "the refused write's blob is deleted at once"


async def test_concurrent_blob_commits_share_directory_fsyncs_that_cover_their_renames(tmp_path: Path) -> None:
    """Group commit keeps the local backend's promise: a blob's commit returns only after an fsync of its
    directory that began once the blob was renamed into it (the directory already named it), and concurrent
    commits share those fsyncs. The fsync is slowed (a slow disk) so that commits overlap."""
    backend = LocalFSBackend(tmp_path / "blobs")
    await backend.start()
    clock = itertools.count()
    guard = threading.Lock()
    syncs: list[tuple[set[str], int]] = []  # (names in the directory when the fsync began, when it ended)

    def slow_fsync(directory: Path) -> None:
        names = set(os.listdir(directory))
        fsync_directory(directory)
        time.sleep(0.03)
        with guard:
            syncs.append((names, next(clock)))

    backend.directory_syncs = DirectorySyncs(slow_fsync)

    async def commit(blob_id: str) -> int:
        writer = await backend.create(blob_id)
        await writer.write(b"x" * 4096)
        await writer.commit()
        with guard:
            return next(clock)

    now = time.time()
    blob_ids = [new_blob_id(now) for _ in range(24)]
    returned = await asyncio.gather(*(commit(blob_id) for blob_id in blob_ids))
    for blob_id, answered in zip(blob_ids, returned, strict=True):
        assert backend.blob_path(blob_id).read_bytes() == b"x" * 4096
        assert any(blob_id in names and ended < answered for names, ended in syncs), blob_id
    assert len(syncs) < len(blob_ids) / 2, f"{len(syncs)} directory fsyncs for {len(blob_ids)} blobs"


async def test_the_blob_directories_exist_from_the_start(tmp_path: Path) -> None:
    backend = LocalFSBackend(tmp_path / "blobs")
    await backend.start()
    shards = sorted(p.name for p in (tmp_path / "blobs" / "objects").iterdir())
    assert shards == [f"{n:02x}" for n in range(256)]
    (tmp_path / "blobs" / "objects" / "7f").rmdir()  # removed by hand: a commit recreates it
    writer = await backend.create("7f" + "0" * 30)
    await writer.write(b"x")
    await writer.commit()
    assert backend.blob_path("7f" + "0" * 30).read_bytes() == b"x"
