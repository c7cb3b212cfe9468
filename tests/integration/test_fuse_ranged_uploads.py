"""A FUSE mount uploads only what writes touched: proven by the bytes the node received (``/metrics``).

Real mounts (``support.mount``) of an in-process node (``support.app_node``), as in ``test_fuse_mount.py``.
Large files are put on the node through the API first, so the figures count only what the mount sends.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from callfs.blocks.layout import BLOCK_SIZE
from callfs.client import CallFSClient
from support.app_node import AppNode
from support.machine import require_fuse
from support.mount import MountedVolume

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
