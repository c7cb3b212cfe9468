"""A FUSE mount uploads only what writes touched: proven by the bytes the node received (``/metrics``).

Real mounts (``support.mount``) of an in-process node (``support.app_node``), as in ``test_fuse_mount.py``.
Large files are put on the node through the API first, so the figures count only what the mount sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from callfs.blocks.layout import BLOCK_SIZE
from callfs.client import CallFSClient
from support.app_node import AppNode
from support.machine import require_fuse
from support.mount import MountedVolume, wait_for_exit
from support.waiting import wait_for

MountFactory = Callable[..., MountedVolume]
MIB = 1024 * 1024
BIG = 64 * MIB


@pytest.fixture(autouse=True)
def _fuse() -> None:
    require_fuse()


def server(node: AppNode, operation: Callable[[CallFSClient], object]) -> object:
    async def run() -> object:
        async with CallFSClient(node.url, node.key_for("root")) as client:
            return await operation(client)  # type: ignore[misc]

    return asyncio.run(run())


def counters(node: AppNode) -> dict[str, float]:
    """Bytes the node received and sent in request/response bodies, and blocks it wrote, so far."""
    text = str(server(node, lambda c: c.metrics()))
    samples = [line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {
        "received": sum(float(v) for k, v in samples if k == "callfs_http_received_bytes_total"),
        "sent": sum(float(v) for k, v in samples if k == "callfs_http_sent_bytes_total"),
        "blocks": sum(float(v) for k, v in samples if k.startswith("callfs_blocks_written_total{")),
    }


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


def server_sha256(node: AppNode, path: str) -> str:
    async def digest(client: CallFSClient) -> str:
        hasher = hashlib.sha256()
        async for chunk in client.iter_read(path):
            hasher.update(chunk)
        return hasher.hexdigest()

    return str(server(node, digest))


@pytest.fixture
def big_file(app_node: AppNode, tmp_path: Path) -> Callable[[str], Path]:
    """``put(path)``: a 64 MiB file of random bytes stored at ``path`` on the node; returns the local copy."""

    def put(path: str) -> Path:
        local = tmp_path / f"big-{hashlib.sha256(path.encode()).hexdigest()[:8]}"
        with local.open("wb") as out:
            for _ in range(BIG // MIB):
                out.write(os.urandom(MIB))
        server(app_node, lambda c: c.upload(path, local))
        return local

    return put


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(MIB):
            hasher.update(chunk)
    return hasher.hexdigest()


def test_append_to_a_large_file_sends_only_the_new_bytes(app_node: AppNode, mount_factory: MountFactory,
                                                         big_file: Callable[[str], Path]) -> None:
    mount = mount_factory(app_node)
    local = big_file(f"{mount.volume}/log.bin")
    tail = os.urandom(MIB + 123)
    before = counters(app_node)
    with (mount.path / "log.bin").open("ab") as out:
        out.write(tail)
    moved = delta(before, counters(app_node))
    assert moved["received"] == len(tail)
    assert moved["sent"] < MIB  # the mount did not fetch the file to append to it
    with local.open("ab") as out:
        out.write(tail)
    assert server_sha256(app_node, f"{mount.volume}/log.bin") == sha256_of(local)


def test_random_4k_writes_send_4k_each_and_rewrite_only_their_blocks(
        app_node: AppNode, mount_factory: MountFactory, big_file: Callable[[str], Path]) -> None:
    mount = mount_factory(app_node)
    local = big_file(f"{mount.volume}/data.bin")
    chooser = random.Random(7)
    blocks = chooser.sample(range(BIG // BLOCK_SIZE), 8)
    writes = [(block * BLOCK_SIZE + chooser.randrange(0, BLOCK_SIZE - 4096, 4096), os.urandom(4096))
              for block in blocks]
    fd = os.open(mount.path / "data.bin", os.O_RDWR)
    try:
        offset, data = writes[0]
        os.pwrite(fd, data, offset)
        os.fsync(fd)  # the first partial write converts the file to blocks on the node
        before = counters(app_node)
        for offset, data in writes[1:]:
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        moved = delta(before, counters(app_node))
    finally:
        os.close(fd)
    assert moved["received"] == 4096 * (len(writes) - 1)
    assert moved["blocks"] == len(writes) - 1  # one 4 MiB block rewritten per write, not the file
    with local.open("r+b") as model:
        for offset, data in writes:
            model.seek(offset)
            model.write(data)
    assert server_sha256(app_node, f"{mount.volume}/data.bin") == sha256_of(local)


def test_a_file_open_for_writing_reads_its_changes_over_the_server_bytes(app_node: AppNode,
                                                                         mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    original = os.urandom(64 * 1024)
    server(app_node, lambda c: c.upload(f"{mount.volume}/f", original))
    expected = bytearray(original[:1000]) + bytes(4000) + b"x"
    expected[10:13] = b"abc"
    fd = os.open(mount.path / "f", os.O_RDWR)
    try:
        os.ftruncate(fd, 1000)
        os.pwrite(fd, b"x", 5000)  # past the end: a hole of zeros, not the old bytes
        os.pwrite(fd, b"abc", 10)
        assert os.pread(fd, 10_000, 0) == bytes(expected)
    finally:
        os.close(fd)
    assert server(app_node, lambda c: c.read(f"{mount.volume}/f")) == bytes(expected)


def test_a_change_made_elsewhere_while_open_is_not_overwritten(app_node: AppNode,
                                                               mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    server(app_node, lambda c: c.upload(f"{mount.volume}/f", b"a" * 100))
    fd = os.open(mount.path / "f", os.O_RDWR)
    os.pwrite(fd, b"X", 10)
    server(app_node, lambda c: c.upload(f"{mount.volume}/f", b"b" * 100))
    with pytest.raises(OSError) as caught:
        os.close(fd)
    assert caught.value.errno == errno.ESTALE
    assert server(app_node, lambda c: c.read(f"{mount.volume}/f")) == b"b" * 100


SQLITE_WORKLOAD = """
import os, random, sqlite3, sys
database = sys.argv[1]
chooser = random.Random(11)
with sqlite3.connect(database) as db:
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, payload BLOB, n INTEGER)")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, item INTEGER, body TEXT)")
db.close()
db = sqlite3.connect(database)
for round_number in range(5):
    with db:
        db.executemany("INSERT INTO items (name, payload, n) VALUES (?, ?, ?)",
                       [(f"item {round_number}-{i}", os.urandom(chooser.randrange(10, 3000)), i) for i in range(400)])
        db.executemany("INSERT INTO notes (item, body) VALUES (?, ?)",
                       [(chooser.randrange(1, 2000), "note " * chooser.randrange(1, 50)) for _ in range(200)])
    with db:
        db.execute("UPDATE items SET n = n * 2, payload = randomblob(500) WHERE id % 7 = ?", (round_number,))
        db.execute("DELETE FROM notes WHERE id % 5 = ?", (round_number,))
with db:
    db.execute("CREATE INDEX items_by_n ON items (n)")
    db.execute("DELETE FROM items WHERE id % 3 = 0")
db.execute("VACUUM")
db.close()
db = sqlite3.connect(database)
with db:
    db.execute("UPDATE items SET name = 'renamed' WHERE id < 100")
print(db.execute("PRAGMA integrity_check").fetchall(), db.execute("SELECT count(*) FROM items").fetchone()[0])
db.close()
"""
"""Creates, inserts, updates and deletes in several transactions, an index, a vacuum, a reopen; prints the
integrity check and the row count. Run in a process of its own: the node here shares this process's GIL,
which the sqlite3 module holds across some of its file operations (closing a database)."""


def test_sqlite_database_on_the_mount_passes_integrity_check(app_node: AppNode, mount_factory: MountFactory,
                                                             tmp_path: Path) -> None:
    mount = mount_factory(app_node)
    result = subprocess.run([sys.executable, "-c", SQLITE_WORKLOAD, str(mount.path / "app.db")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[('ok',)]", str(2000 - 2000 // 3)]
    copy = tmp_path / "copy.db"
    server(app_node, lambda c: c.download(f"{mount.volume}/app.db", copy))  # the server's bytes, not the mount's
    db = sqlite3.connect(copy)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT count(*) FROM items WHERE name = 'renamed'").fetchone()[0] == 99 - 99 // 3
    finally:
        db.close()


def test_cuts_extensions_and_writes_past_the_end_send_only_the_written_bytes(
        app_node: AppNode, mount_factory: MountFactory, big_file: Callable[[str], Path]) -> None:
    mount = mount_factory(app_node)
    local = big_file(f"{mount.volume}/sparse.bin")
    before = counters(app_node)
    os.truncate(mount.path / "sparse.bin", 10 * MIB + 5)  # not open here: one PATCH {"size"}
    cut = delta(before, counters(app_node))
    assert (cut["received"], cut["blocks"]) == (0, 3)  # the node keeps 10 MiB as blocks: no byte sent
    assert cut["sent"] < MIB
    before = counters(app_node)
    fd = os.open(mount.path / "sparse.bin", os.O_RDWR)
    try:
        os.ftruncate(fd, 100 * MIB)  # an extension: a hole of zeros
        os.pwrite(fd, b"w" * 4096, 80 * MIB + 123)  # inside the hole
        os.pwrite(fd, b"end", 120 * MIB)  # past the end: another hole before it
        os.fsync(fd)
        assert os.fstat(fd).st_size == 120 * MIB + 3
        assert os.pread(fd, 8, 10 * MIB + 1) == local.read_bytes()[10 * MIB + 1:10 * MIB + 5] + bytes(4)
    finally:
        os.close(fd)
    moved = delta(before, counters(app_node))
    assert moved["received"] == 4096 + 3
    assert moved["sent"] < MIB
    assert moved["blocks"] <= 4  # the written ones and the old end's, zero-filled: the holes stay holes
    with local.open("r+b") as model:
        model.truncate(10 * MIB + 5)
        model.truncate(100 * MIB)
        model.seek(80 * MIB + 123)
        model.write(b"w" * 4096)
        model.seek(120 * MIB)
        model.write(b"end")
    assert server_sha256(app_node, f"{mount.volume}/sparse.bin") == sha256_of(local)
    assert sha256_of(mount.path / "sparse.bin") == sha256_of(local)


def test_two_mounts_writing_one_file_keep_every_change_or_refuse_the_stale_one(
        app_node: AppNode, mount_factory: MountFactory) -> None:
    first = mount_factory(app_node)
    second = mount_factory(app_node, first.volume, create=False)
    server(app_node, lambda c: c.upload(f"{first.volume}/shared", b"." * 100_000))
    for mount, offset, data in ((first, 10, b"A"), (second, 20, b"B"), (first, 99_999, b"C")):
        fd = os.open(mount.path / "shared", os.O_RDWR)
        os.pwrite(fd, data, offset)
        os.close(fd)  # the next open, on either mount, sees this change
    expected = bytearray(b"." * 100_000)
    expected[10:11], expected[20:21], expected[99_999:] = b"A", b"B", b"C"
    assert server(app_node, lambda c: c.read(f"{first.volume}/shared")) == bytes(expected)

    early = os.open(first.path / "shared", os.O_RDWR)
    late = os.open(second.path / "shared", os.O_RDWR)
    os.pwrite(early, b"a", 30)
    os.pwrite(late, b"b" * 10, 100_000)  # an append: still based on the version it opened
    os.close(early)
    with pytest.raises(OSError) as caught:
        os.close(late)
    assert caught.value.errno == errno.ESTALE  # never a silent overwrite of the first writer's change
    expected[30:31] = b"a"
    assert server(app_node, lambda c: c.read(f"{first.volume}/shared")) == bytes(expected)
    assert (second.path / "shared").read_bytes() == bytes(expected)


def test_a_mount_killed_mid_upload_leaves_the_old_version_whole(
        app_node: AppNode, mount_factory: MountFactory, big_file: Callable[[str], Path]) -> None:
    """The fault: the node stalls after storing the first block of a 40 MiB span while the mount's daemon is
    SIGKILLed; the node then sees the body end early and commits nothing."""
    assert app_node.node is not None
    block_files = app_node.node.engine.block_files
    mount = mount_factory(app_node)
    local = big_file(f"{mount.volume}/victim.bin")
    etag = server(app_node, lambda c: c.stat(f"{mount.volume}/victim.bin")).etag  # type: ignore[attr-defined]
    stored, release = threading.Event(), threading.Event()
    store_block = block_files.store_block

    async def stalling_store_block(*args: object, **kwargs: object) -> tuple[str, int]:
        result = await store_block(*args, **kwargs)  # type: ignore[arg-type]
        stored.set()
        await asyncio.to_thread(release.wait, 60)
        return result

    block_files.store_block = stalling_store_block  # type: ignore[method-assign]
    fd = os.open(mount.path / "victim.bin", os.O_RDWR)
    outcome: list[BaseException | None] = []

    def sync() -> None:
        try:
            os.fsync(fd)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    syncer = threading.Thread(target=sync)
    try:
        os.pwrite(fd, os.urandom(40 * MIB), 8 * MIB + 1)
        syncer.start()
        assert stored.wait(60), "the node never stored a block of the upload"
        os.kill(mount.pid(), signal.SIGKILL)
        wait_for_exit(mount.pid())
    finally:
        release.set()
        syncer.join(60)
        del block_files.store_block
        with contextlib.suppress(OSError):
            os.close(fd)
    assert outcome and isinstance(outcome[0], OSError)  # the fsync did not claim success
    wait_for(lambda: server(app_node, lambda c: c.stat(f"{mount.volume}/victim.bin")).etag == etag,  # type: ignore[attr-defined]
             10, "the file to keep its version")
    assert server_sha256(app_node, f"{mount.volume}/victim.bin") == sha256_of(local)


def test_quota_refusing_a_ranged_upload_fails_fsync_and_close_with_enospc(app_node: AppNode,
                                                                          mount_factory: MountFactory) -> None:
    """The mount's early check uses a cached usage figure; the node's 507 for a ranged PUT or a size PATCH is
    the last word, and the file keeps its bytes."""
    mount = mount_factory(app_node, options=["attr_timeout=30"])
    original = os.urandom(MIB)
    server(app_node, lambda c: c.upload(f"{mount.volume}/grow", original))
    server(app_node, lambda c: c.set_quota(mount.volume, bytes_limit=4 * MIB))
    os.statvfs(mount.path)  # cache the usage: 1 MiB
    server(app_node, lambda c: c.upload(f"{mount.volume}/other", b"o" * (2 * MIB + MIB // 2)))  # not seen here
    fd = os.open(mount.path / "grow", os.O_RDWR)
    try:
        os.pwrite(fd, b"g" * MIB, MIB)  # an append the cached figure allows
        with pytest.raises(OSError) as by_fsync:
            os.fsync(fd)
        assert by_fsync.value.errno == errno.ENOSPC
    finally:
        with pytest.raises(OSError) as by_close:
            os.close(fd)
    assert by_close.value.errno == errno.ENOSPC
    fd = os.open(mount.path / "grow", os.O_RDWR)
    try:
        os.ftruncate(fd, 8 * MIB)  # a size PATCH past the quota
    finally:
        with pytest.raises(OSError) as by_resize:
            os.close(fd)
    assert by_resize.value.errno == errno.ENOSPC
    assert server(app_node, lambda c: c.read(f"{mount.volume}/grow")) == original
    usage = server(app_node, lambda c: c.get_quota(mount.volume))
    assert usage.bytes_used == MIB + 2 * MIB + MIB // 2  # type: ignore[attr-defined]


def test_a_user_without_write_permission_gets_eacces_and_changes_nothing(app_node: AppNode,
                                                                         mount_factory: MountFactory) -> None:
    volume = f"/volumes/pvc-{os.urandom(4).hex()}"
    server(app_node, lambda c: c.mkdir(volume))
    server(app_node, lambda c: c.chmod(volume, 0o777))
    server(app_node, lambda c: c.upload(f"{volume}/roots", b"r" * 10_000))  # root's, mode 0644
    mount = mount_factory(app_node, volume, user="alice", create=False)
    fd = os.open(mount.path / "roots", os.O_RDWR)
    try:
        os.pwrite(fd, b"alice", 100)
    finally:
        with pytest.raises(OSError) as by_write:
            os.close(fd)
    assert by_write.value.errno == errno.EACCES
    with pytest.raises(OSError) as by_truncate:
        os.truncate(mount.path / "roots", 10)
    assert by_truncate.value.errno == errno.EACCES
    assert server(app_node, lambda c: c.read(f"{volume}/roots")) == b"r" * 10_000
