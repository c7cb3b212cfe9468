"""Chaos: the metadata database, the lock service, the disk or a node itself fails under load, and nothing that
was acknowledged is lost or half-written.

Every test ends with the same audit (:func:`audit`): each acknowledged write reads back byte-exact (SHA-256),
a refused write left the previous content or, when the refusal may have come after the commit, the complete
new content and never a part of it; the recursive listing names exactly the files that read back, with their
sizes; the backend holds one blob per file and no temp file; and ``/ready`` says the node serves again, by
itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from support.app_node import AppNode
from support.http import session
from support.machine import tmpfs_mount
from support.node import NodeProcess, NodeSpec, postgres_redis_sections
from support.pg import PostgresServer, create_database, start_again, start_server, stop_server
from support.redis_server import RedisServer, running_redis_server
from support.waiting import wait_for_async

WRITERS = 8
"""Concurrent writer tasks of the load tests."""

MAX_SMALL_FILE = 64 * 1024


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# --- what was written, and what may be read back ----------------------------------------------------------------


@dataclass
class Ledger:
    """Per path, the contents a read may return: after an acknowledged write exactly that one; after a refused
    write the previous candidates or the refused content (a reply lost after the commit), ``None`` being
    "absent"."""

    candidates: dict[str, list[bytes | None]] = field(default_factory=dict)
    acked: int = 0
    refused: int = 0

    def acknowledge(self, path: str, content: bytes) -> None:
        self.candidates[path] = [content]
        self.acked += 1

    def refuse(self, path: str, content: bytes) -> None:
        self.candidates.setdefault(path, [None]).append(content)
        self.refused += 1

    def describe(self, path: str) -> list[str | None]:
        return [None if c is None else f"{len(c)} bytes {digest(c)}" for c in self.candidates[path]]


async def reached(count: Callable[[], int], at_least: int, what: str, timeout: float = 15) -> None:
    async def enough() -> bool:
        return count() >= at_least

    await wait_for_async(enough, timeout, what, 0.02)


async def writer(
    http: aiohttp.ClientSession, ledger: Ledger, prefix: str, seed: int, stop: asyncio.Event,
    unavailable: list[tuple[str, int, str]], *, node_may_die: bool = False,
) -> None:
    """Create and overwrite files under ``prefix`` until ``stop``; read each acknowledged write back.

    A 503 (with ``Retry-After``, honoured) is an expected refusal while a dependency is down; any other status,
    or a 503 without ``Retry-After``, fails the test. ``unavailable`` collects the refusals (path, status, code).
    With ``node_may_die``, a broken connection ends the writer (the write in flight may or may not have landed).
    """
    rng = random.Random(seed)
    mine: list[str] = []
    while not stop.is_set():
        if mine and rng.random() < 0.3:
            path = rng.choice(mine)
        else:
            path = f"{prefix}/f{len(mine)}"
            mine.append(path)
        content = rng.randbytes(rng.randint(1, MAX_SMALL_FILE))
        try:
            async with http.put(f"/v1/files{path}", data=content) as response:
                body = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except aiohttp.ClientError:
            if not node_may_die:
                raise
            ledger.refuse(path, content)  # the node died: written or not, never in part
            return
        if status in (200, 201):
            ledger.acknowledge(path, content)
            try:
                async with http.get(f"/v1/files{path}") as response:
                    read = await response.read()
                    if response.status == 200:
                        assert digest(read) == digest(content), f"{path} reads back other bytes than acknowledged"
                    else:  # a read may be refused while a dependency is down, the same way
                        assert response.status == 503 and response.headers.get("Retry-After"), (
                            response.status, read)
            except aiohttp.ClientError:
                if not node_may_die:
                    raise
                return
            continue
        assert status == 503 and retry_after, f"PUT {path}: {status} {body[:300]!r} (Retry-After: {retry_after})"
        ledger.refuse(path, content)
        unavailable.append((path, status, str((await _json(body)).get("code"))))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), float(retry_after))


async def _json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return {str(k): v for k, v in parsed.items()} if isinstance(parsed, dict) else {}


@contextlib.asynccontextmanager
async def load(
    node: NodeSpec, ledger: Ledger, root: str, *, node_may_die: bool = False
) -> AsyncIterator[list[tuple[str, int, str]]]:
    """:data:`WRITERS` writer tasks under ``root`` for the duration of the block; their failures are raised."""
    stop = asyncio.Event()
    refusals: list[tuple[str, int, str]] = []
    async with session(node) as http:
        tasks = [asyncio.create_task(writer(http, ledger, f"{root}/w{i}", 1000 + i, stop, refusals,
                                                node_may_die=node_may_die))
                 for i in range(WRITERS)]
        try:
            yield refusals
        finally:
            stop.set()
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        for result in results:
            if isinstance(result, BaseException):
                raise result


async def ready_status(node: NodeSpec) -> tuple[int, dict[str, Any]]:
    async with session(node, None) as http, http.get("/ready") as response:
        return response.status, await _json(await response.read())


async def wait_ready(node: NodeSpec, status: int, what: str, timeout: float = 15) -> dict[str, Any]:
    async def check() -> tuple[int, dict[str, Any]]:
        return await ready_status(node)

    found = await wait_for_async(check, timeout, what, 0.05, until=lambda s: s is not None and s[0] == status,
                                 ignoring=(aiohttp.ClientError,))
    return found[1]


def blob_files(blobs: Path) -> list[Path]:
    return [p for p in (blobs / "objects").rglob("*") if p.is_file()]


def temp_files(blobs: Path) -> list[Path]:
    return list((blobs / "tmp").iterdir())


async def read_all(http: aiohttp.ClientSession, paths: list[str]) -> dict[str, bytes | None]:
    """The content at each path (``None``: 404). Anything else fails."""
    out: dict[str, bytes | None] = {}
    for path in paths:
        async with http.get(f"/v1/files{path}") as response:
            body = await response.read()
            assert response.status in (200, 404), f"GET {path}: {response.status} {body[:300]!r}"
            out[path] = body if response.status == 200 else None
    return out


async def listed_files(http: aiohttp.ClientSession, root: str) -> dict[str, int]:
    """Path → size of every file below ``root`` (recursive listing); empty when ``root`` is absent."""
    async with http.get(f"/v1/directories{root}?recursive=true&max_depth=20") as response:
        if response.status == 404:
            return {}
        assert response.status == 200, await response.text()
        items = (await response.json())["items"]
    return {item["path"]: item["size"] for item in items if item["type"] == "file"}


async def audit(node: NodeSpec, ledger: Ledger, root: str, blobs: Path | None, *, other_files: int = 0) -> None:
    """Nothing lost or half-written below ``root``, the listing agrees with the reads, and (``blobs``: the local
    backend root of a node holding only these files and ``other_files`` more) no temp file, and no orphan blob
    once the node's orphan sweep has run (a write whose COMMIT lost its connection keeps its blob, as the commit
    may have landed; the sweep frees it otherwise)."""
    await wait_ready(node, 200, "the node to be ready")
    if blobs is not None and isinstance(node, AppNode):
        await asyncio.to_thread(node.sweep_orphans)  # a subprocess node swept at its restart
    async with session(node) as http:
        found = await read_all(http, sorted(ledger.candidates))
        listing = await listed_files(http, root)
    for path, content in found.items():
        allowed = ledger.candidates[path]
        assert content in allowed, (
            f"{path} holds {None if content is None else f'{len(content)} bytes {digest(content)}'}, "
            f"expected one of {ledger.describe(path)}"
        )
    present = {path: len(content) for path, content in found.items() if content is not None}
    assert listing == present, "the listing disagrees with the reads"
    if blobs is not None:
        assert temp_files(blobs) == [], "temp files left behind"
        assert len(blob_files(blobs)) == len(present) + other_files, "orphan or missing blobs"


# --- 1. PostgreSQL restart under load ---------------------------------------------------------------------------


@pytest.fixture
def restartable_postgres() -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL server of this test's own (it is stopped and started again) and the DSN of a database
    whose commits survive an immediate stop (``synchronous_commit`` on)."""
    base = Path(tempfile.mkdtemp(prefix="callfs-pg-chaos-"))
    try:
        server = start_server(base)
        try:
            dsn = create_database(server.admin_dsn)
            name = dsn.rsplit("/", 1)[1]
            subprocess.run(
                [str(server.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.admin_dsn,
                 "-c", f'ALTER DATABASE "{name}" SET synchronous_commit = on'],
                check=True, capture_output=True, timeout=30,
            )
            yield server, dsn
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.postgres
@pytest.mark.redis
async def test_postgres_restart_under_load_loses_nothing(
    restartable_postgres: tuple[PostgresServer, str], redis_url: str, redis_server: RedisServer,
    app_node_factory: Callable[..., AppNode],
) -> None:
    server, dsn = restartable_postgres
    node = app_node_factory(
        metadata_store={"type": "postgres", "dsn": dsn},
        dlm={"type": "redis", "redis_addr": f"{redis_server.host}:{redis_server.port}",
             "redis_password": redis_server.password},
    )
    ledger = Ledger()
    async with load(node, ledger, "/load") as refusals:
        await reached(lambda: ledger.acked, 40, "writes acknowledged before the outage")
        await asyncio.to_thread(stop_server, server)
        await reached(lambda: ledger.refused, WRITERS, "writes refused during the outage")
        body = await wait_ready(node, 503, "/ready to report the outage")
        assert body["checks"]["metadata"] is False
        acked_before_restart = ledger.acked
        await asyncio.to_thread(start_again, server)
        await wait_ready(node, 200, "/ready to recover by itself")
        await reached(lambda: ledger.acked, acked_before_restart + 40, "writes acknowledged after the restart")
    assert {code for _, _, code in refusals} <= {"SERVICE_UNAVAILABLE"}, refusals
    await audit(node, ledger, "/load", node.data_dir / "blobs")


# --- 2. Redis restart under load --------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
async def test_redis_restart_under_load_loses_nothing(
    postgres_dsn: str, tmp_path: Path, app_node_factory: Callable[..., AppNode]
) -> None:
    (tmp_path / "redis-before").mkdir()
    with contextlib.ExitStack() as outage:
        redis = outage.enter_context(running_redis_server(tmp_path / "redis-before"))
        node = app_node_factory(
            metadata_store={"type": "postgres", "dsn": postgres_dsn},
            dlm={"type": "redis", "redis_addr": f"{redis.host}:{redis.port}", "redis_password": redis.password,
                 "lease_ttl": 3},
        )
        ledger = Ledger()
        async with load(node, ledger, "/load") as refusals:
            await reached(lambda: ledger.acked, 40, "writes acknowledged before the outage")
            await asyncio.to_thread(outage.close)
            await reached(lambda: ledger.refused, WRITERS, "writes refused during the outage")
            body = await wait_ready(node, 503, "/ready to report the outage")
            assert body["checks"]["locks"] is False and body["checks"]["metadata"] is True
            acked_before_restart = ledger.acked
            (tmp_path / "redis-after").mkdir()
            again = running_redis_server(tmp_path / "redis-after", port=redis.port, password=redis.password)
            await asyncio.to_thread(outage.enter_context, again)
            await wait_ready(node, 200, "/ready to recover by itself")
            await reached(lambda: ledger.acked, acked_before_restart + 40, "writes acknowledged after the restart")
        assert {code for _, _, code in refusals} <= {"SERVICE_UNAVAILABLE"}, refusals
        await audit(node, ledger, "/load", node.data_dir / "blobs")


# --- 3. a full disk -----------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted after the test (needs root)."""
    with tmpfs_mount(tmp_path / "small-disk", "4m") as disk:
        yield disk


async def put(http: aiohttp.ClientSession, path: str, data: Any) -> tuple[int, dict[str, Any]]:
    async with http.put(f"/v1/files{path}", data=data) as response:
        return response.status, await _json(await response.read())


async def test_a_full_disk_refuses_writes_whole_and_serves_again_once_space_is_freed(
    small_disk: Path, app_node_factory: Callable[..., AppNode]
) -> None:
    node = app_node_factory(backend={"localfs_root_path": str(small_disk)})
    rng = random.Random(3)
    ledger = Ledger()
    size = 600 * 1024  # below the write buffer: the disk fills when the blob is committed
    async with session(node) as http:
        # Large files until one is refused, then small ones until the disk is full to the last few pages.
        refusals: list[tuple[int, object]] = []
        for i in range(80):
            content = rng.randbytes(size if not refusals else 64 * 1024)
            status, body = await put(http, f"/full/f{i}", content)
            if status == 201:
                ledger.acknowledge(f"/full/f{i}", content)
                continue
            ledger.refuse(f"/full/f{i}", content)
            refusals.append((status, body.get("code")))
            if len(refusals) == 2:
                break
        assert ledger.acked >= 5 and refusals == [(507, "INSUFFICIENT_STORAGE")] * 2, (ledger.acked, refusals)
        ready = await wait_ready(node, 503, "/ready to report the full disk")
        assert ready["checks"]["backend:localfs"] is False and "full" in ready["errors"]["backend:localfs"]
        # an overwrite that does not fit keeps the old content
        status, body = await put(http, "/full/f0", rng.randbytes(900 * 1024))
        assert (status, body.get("code")) == (507, "INSUFFICIENT_STORAGE"), body
        # a streamed upload larger than the disk is cut off: nothing of it stays
        chunks = [rng.randbytes(256 * 1024) for _ in range(16)]

        async def stream() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        try:
            status, body = await put(http, "/full/huge", stream())
            assert (status, body.get("code")) == (507, "INSUFFICIENT_STORAGE"), body
        except aiohttp.ClientError:
            pass  # the node answered before reading the whole body and closed the connection
        ledger.refuse("/full/huge", b"".join(chunks))
    await wait_ready(node, 503, "/ready to still report the full disk")
    async with session(node) as http:  # reads are served meanwhile
        found = await read_all(http, sorted(ledger.candidates))
    assert all(found[p] in ledger.candidates[p] for p in found)
    assert temp_files(small_disk) == [], "a refused write left a temp file"
    assert len(blob_files(small_disk)) == ledger.acked, "a refused write left a blob"
    # free space: deleting files makes room, /ready recovers by itself and writes succeed again
    async with session(node) as http:
        for path in ("/full/f1", "/full/f2"):
            async with http.delete(f"/v1/files{path}") as response:
                assert response.status == 204
            ledger.candidates[path] = [None]
        await wait_ready(node, 200, "/ready to recover once space is freed")
        content = rng.randbytes(size)
        assert (await put(http, "/full/after", content))[0] == 201
        ledger.acknowledge("/full/after", content)
        content = rng.randbytes(size // 2)
        assert (await put(http, "/full/f0", content))[0] == 200
        ledger.acknowledge("/full/f0", content)
    await audit(node, ledger, "/full", small_disk)


# --- 4. kill -9 mid-upload and mid-rename -------------------------------------------------------------------------


def fast_lease(request: pytest.FixtureRequest) -> dict[str, Any]:
    """PostgreSQL + Redis sections with 2 s leases: a killed node's path locks free up quickly."""
    sections = postgres_redis_sections(request)
    sections["dlm"]["lease_ttl"] = 2
    return sections


async def big_upload(
    http: aiohttp.ClientSession, path: str, content: bytes, release: asyncio.Event, outcome: dict[str, object]
) -> None:
    """PUT ``content``: the first 1.5 MiB at once, the rest only after ``release``."""
    head = 6 * 256 * 1024

    async def body() -> AsyncIterator[bytes]:
        yield content[:head]
        await release.wait()
        for offset in range(head, len(content), 256 * 1024):
            yield content[offset:offset + 256 * 1024]

    try:
        async with http.put(f"/v1/files{path}", data=body()) as response:
            outcome[path] = response.status
    except aiohttp.ClientError as exc:
        outcome[path] = exc


def big_temp_files(blobs: Path) -> int:
    return sum(1 for p in temp_files(blobs) if p.stat().st_size >= 1 << 20)


@pytest.mark.postgres
@pytest.mark.redis
async def test_kill_9_mid_upload_keeps_old_or_new_whole(
    request: pytest.FixtureRequest, node_factory: Callable[..., NodeProcess]
) -> None:
    node = node_factory(**fast_lease(request))
    blobs = node.data_dir / "blobs"
    rng = random.Random(4)
    old, new, created = rng.randbytes(3 << 20), rng.randbytes(5 << 20), rng.randbytes(4 << 20)
    ledger = Ledger()
    async with session(node) as http:
        assert (await put(http, "/up/big.bin", old))[0] == 201
    ledger.acknowledge("/up/big.bin", old)
    release = asyncio.Event()
    outcome: dict[str, object] = {}
    async with load(node, ledger, "/up/small", node_may_die=True), session(node) as http:
        uploads = [asyncio.create_task(big_upload(http, "/up/big.bin", new, release, outcome)),
                   asyncio.create_task(big_upload(http, "/up/created.bin", created, release, outcome))]
        await reached(lambda: ledger.acked, 30, "small writes acknowledged")

        async def both_streaming() -> bool:
            return big_temp_files(blobs) == 2

        await wait_for_async(both_streaming, 15, "both large uploads to stream into temp files", 0.02)
        await asyncio.to_thread(node.kill)
        release.set()
        await asyncio.gather(*uploads)
    assert all(isinstance(v, aiohttp.ClientError) for v in outcome.values()), outcome
    ledger.refuse("/up/created.bin", created)
    ledger.candidates["/up/created.bin"] = [None]  # killed mid-body: it cannot have been committed
    await asyncio.to_thread(node.start)
    await audit(node, ledger, "/up", blobs)
    async with session(node) as http:  # the killed node's lock on the path has expired; the upload succeeds
        assert (await put(http, "/up/big.bin", new))[0] == 200
    ledger.acknowledge("/up/big.bin", new)
    await audit(node, ledger, "/up", blobs)


BLOCKED = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND wait_event_type = 'Lock'"
)
"""Sessions waiting for a lock: only the rename can wait for the observer's transaction."""
IN_TRANSACTION = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND state <> 'idle'"
)


@pytest.mark.postgres
@pytest.mark.redis
async def test_kill_9_mid_rename_leaves_the_subtree_whole_at_one_place(
    request: pytest.FixtureRequest, postgres_dsn: str, node_factory: Callable[..., NodeProcess]
) -> None:
    node = node_factory(**fast_lease(request))
    rng = random.Random(5)
    tree = {f"/tree/d{d}/s/f{f}": rng.randbytes(rng.randint(1, 20_000)) for d in range(4) for f in range(8)}
    async with session(node) as http:
        statuses = await asyncio.gather(*(put(http, path, content) for path, content in tree.items()))
    assert {s for s, _ in statuses} == {201}
    observer = await asyncpg.connect(postgres_dsn)
    try:
        # An entry inserted here (uncommitted) at the name the rename moves the tree to makes the rename's UPDATE
        # wait for this transaction: the node is killed while its transaction is open.
        blocker = observer.transaction()
        await blocker.start()
        try:
            await observer.execute(
                "INSERT INTO inodes (parent_ino, name, type, size, mode, owner, grp, mtime, ctime, version, ino) "
                "VALUES ((SELECT ino FROM inodes WHERE parent_ino = 0 AND name = ''), 'renamed', 'directory', 0, "
                "493, 'nobody', 'nobody', now(), now(), 1, $1)",
                4242,
            )
            async with session(node) as http:
                rename = asyncio.create_task(http.patch("/v1/files/tree", json={"destination": "/renamed"}))

                async def blocked() -> bool:
                    return bool(await observer.fetchval(BLOCKED))

                await wait_for_async(blocked, 15, "the rename to be blocked inside its transaction", 0.02)
                await asyncio.to_thread(node.kill)
                with pytest.raises(aiohttp.ClientError):
                    async with await rename:
                        pass
        finally:
            await blocker.rollback()

        async def rename_gone() -> bool:
            return not await observer.fetchval(IN_TRANSACTION)

        await wait_for_async(rename_gone, 15, "the killed node's transaction to end", 0.02)
    finally:
        await observer.close()
    await asyncio.to_thread(node.start)
    at_old = Ledger({path: [content] for path, content in tree.items()})
    await audit(node, at_old, "/tree", node.data_dir / "blobs")
    async with session(node) as http:
        assert await listed_files(http, "/renamed") == {}
        async with http.patch("/v1/files/tree", json={"destination": "/renamed"}) as response:
            assert response.status == 200, await response.text()
        assert await listed_files(http, "/tree") == {}
    at_new = Ledger({"/renamed" + path.removeprefix("/tree"): [content] for path, content in tree.items()})
    await audit(node, at_new, "/renamed", node.data_dir / "blobs")


# --- 5. a cluster node killed while links are downloaded and moves run elsewhere ---------------------------------


async def node_states(node: NodeSpec) -> dict[str, str]:
    async with session(node) as http, http.get("/v1/cluster/nodes") as response:
        body = await response.json()
    return {n["instance_id"]: n["state"] for n in body["nodes"] if n["instance_id"]}


async def download(node: NodeSpec, token: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(node.url) as anonymous, anonymous.get(f"/download/{token}") as response:
        return response.status, await response.read()


async def move(http: aiohttp.ClientSession, src: str, dst: str) -> tuple[int, dict[str, Any]]:
    async with http.patch(f"/v1/files{src}", json={"destination": dst, "create_parents": True}) as response:
        return response.status, await _json(await response.read())


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_killed_cluster_node_burns_no_link_and_leaves_moves_whole(  # type: ignore[no-untyped-def]
    cluster_factory,
) -> None:
    a, b, c = cluster_factory(3, dlm={"lease_ttl": 2}, backend={"whole_files_in_blocks": False})
    rng = random.Random(6)
    files = {f"/on-{name}/{kind}{i}": rng.randbytes(rng.randint(1, 200_000))
             for name in ("a", "b") for kind in ("link", "move") for i in range(4)}
    files.update({f"/on-a/tree/f{i}": rng.randbytes(50_000) for i in range(4)})
    big = rng.randbytes(24 << 20)
    async with session(a) as on_a, session(b) as on_b:
        for path, content in files.items():
            assert (await put(on_a if path.startswith("/on-a/") else on_b, path, content))[0] == 201
        assert (await put(on_a, "/on-a/big.bin", big))[0] == 201
    tokens: dict[str, str] = {}
    async with session(c) as on_c:
        for path in [p for p in files if "/link" in p] + ["/on-a/big.bin"]:
            async with on_c.post("/v1/links/generate", json={"path": path, "expiry_seconds": 600}) as response:
                assert response.status == 201
                tokens[path] = (await response.json())["token"]

    # A download streaming through the second node when the owner dies: the client sees it cut, never a short
    # body passed off as the file.
    async with aiohttp.ClientSession(b.url) as anonymous, anonymous.get(f"/download/{tokens['/on-a/big.bin']}") as r:
        assert r.status == 200 and r.content_length == len(big)
        first = await r.content.readexactly(64 * 1024)
        await asyncio.to_thread(a.kill)
        try:
            rest = await r.read()
        except aiohttp.ClientError:
            pass
        else:
            assert first + rest == big, "a cut download ended without an error"

    # With the owner down: links and moves through the other nodes.
    async def run_moves(http: aiohttp.ClientSession, pairs: list[tuple[str, str]]) -> list[tuple[int, dict[str, Any]]]:
        return [await move(http, src, dst) for src, dst in pairs]

    moves = [(p, "/moved" + p) for p in files if "/move" in p] + [("/on-a/tree", "/moved/on-a/tree")]
    link_paths = [p for p in files if "/link" in p]
    async with session(b) as on_b, session(c) as on_c:
        downloads, moved_b, moved_c = await asyncio.gather(
            asyncio.gather(*(download(b if i % 2 else c, tokens[p]) for i, p in enumerate(link_paths))),
            run_moves(on_b, moves[0::2]),
            run_moves(on_c, moves[1::2]),
        )
    failed_tokens = []
    for path, (status, body) in zip(link_paths, downloads, strict=True):
        if path.startswith("/on-b/"):
            assert (status, body) == (200, files[path]), (path, status, body[:200])
        else:
            assert status == 502 and json.loads(body)["code"] == "BAD_GATEWAY", (path, status, body[:200])
            failed_tokens.append(path)
    outcomes = dict(zip(moves[0::2], moved_b, strict=True)) | dict(zip(moves[1::2], moved_c, strict=True))
    for (src, dst), (status, body) in outcomes.items():
        assert status == 200 or (status >= 400 and body.get("code")), (src, dst, status, body)

    await asyncio.to_thread(a.start)

    async def everyone_up() -> bool:
        seen = [await node_states(n) for n in (b, c)]
        return all(states == {"node-0": "up", "node-1": "up", "node-2": "up"} for states in seen)

    await wait_for_async(everyone_up, 15, "node-0 seen up again by the other nodes", 0.1)

    # Every file whole at exactly one place; the listing agrees; one blob per file, on the node that owns it.
    expected: dict[str, bytes] = {}
    done = [(src, dst) for (src, dst), (status, _) in outcomes.items() if status == 200]
    for path, content in files.items():
        to = next((dst + path.removeprefix(src) for src, dst in done if path == src or path.startswith(src + "/")),
                  path)
        expected[to] = content
    expected["/on-a/big.bin"] = big
    ledger = Ledger({path: [content] for path, content in expected.items()})
    ledger.candidates.update({path: [None] for path in files if path not in expected})
    for node in (b, c):  # reads forwarded to the node that came back, and its own bytes
        await audit(node, ledger, "/", None)
    on_a, on_b = (sum(1 for p in files if p.startswith(f"/on-{name}/")) for name in ("a", "b"))
    assert [len(blob_files(n.data_dir / "blobs")) for n in (a, b, c)] == [on_a + 1, on_b, 0]
    assert all(temp_files(n.data_dir / "blobs") == [] for n in (a, b, c))

    # The links downloaded while their owner was down are used up; the ones that failed serve their file once.
    for path in link_paths:
        if path not in failed_tokens:
            assert (await download(c, tokens[path]))[0] == 410
    retried = {path: await download(b, tokens[path]) for path in failed_tokens}
    burned = [path for path, (status, _) in retried.items() if status == 410]
    assert not burned, f"links burned by a download that failed while the owner was down: {burned}"
    for path, (status, body) in retried.items():
        assert (status, body) == (200, files[path]), (path, status, body[:200])
        assert (await download(c, tokens[path]))[0] == 410
