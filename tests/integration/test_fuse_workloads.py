"""Real software at work inside a ``callfs-mount`` of a node's volume: git, an npm-style tree of symbolic links,
log rotation by ``copytruncate``, SQLite in WAL mode, and a PostgreSQL server keeping its data directory there.

Each runs the real program (git, sqlite3 through Python's module, initdb/postgres/pgbench/pg_amcheck/pg_dump
from the PostgreSQL packages the suite starts its metadata store from) against a real mount of a real node
(``app_node``: SQLite metadata, local disk), and checks the program's own verdict (``git fsck``,
``PRAGMA integrity_check``, ``pg_amcheck``) besides the bytes. No operation may fail with EIO.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support import pg
from support.app_node import AppNode
from support.machine import require_fuse
from support.mount import MountedVolume

MountFactory = Callable[..., MountedVolume]


@pytest.fixture(autouse=True)
def _fuse() -> None:
    require_fuse()


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a program; its stdout. Fails the test with its output when it exits non-zero."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def git_env(home: Path) -> dict[str, str]:
    """An environment in which git reads no user or system configuration and signs commits as a test user."""
    return {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.com"}


def test_git_clone_commit_gc_and_fsck(app_node: AppNode, mount_factory: MountFactory, tmp_path: Path) -> None:
    mount = mount_factory(app_node)
    env = git_env(tmp_path)
    source = tmp_path / "source"
    run(["git", "init", "-q", "-b", "main", str(source)], tmp_path, env)
    for i in range(3):
        (source / f"file{i}.txt").write_text(f"version {i}\n" * 1000)
        (source / "sub").mkdir(exist_ok=True)
        (source / "sub" / "data.bin").write_bytes(os.urandom(50_000))
        run(["git", "add", "-A"], source, env)
        run(["git", "commit", "-q", "-m", f"commit {i}"], source, env)

    clone = mount.path / "clone"
    run(["git", "clone", "-q", str(source), str(clone)], mount.path, env)
    (clone / "file0.txt").write_text("changed inside the mount\n")
    (clone / "link").symlink_to("file1.txt")
    run(["git", "add", "-A"], clone, env)
    run(["git", "commit", "-q", "-m", "commit in the mount"], clone, env)
    run(["git", "gc", "-q", "--aggressive", "--prune=now"], clone, env)
    run(["git", "fsck", "--strict", "--full"], clone, env)
    assert run(["git", "rev-list", "--count", "HEAD"], clone, env).strip() == "4"
    assert run(["git", "status", "--porcelain"], clone, env) == ""
    assert list((clone / ".git" / "objects" / "pack").glob("*.pack"))  # gc packed the loose objects
    # A second clone from the one in the mount reads every object back.
    again = tmp_path / "again"
    run(["git", "clone", "-q", str(clone), str(again)], tmp_path, env)
    assert (again / "file0.txt").read_text() == "changed inside the mount\n"
    assert os.readlink(again / "link") == "file1.txt"


def test_an_npm_style_tree_of_symbolic_links(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    app = mount.path / "app"
    package = app / "node_modules" / "tool"
    (package / "bin").mkdir(parents=True)
    script = package / "bin" / "cli.sh"
    script.write_text("#!/bin/sh\necho \"tool says $1\"\n")
    script.chmod(0o755)
    (app / "node_modules" / ".bin").mkdir()
    (app / "node_modules" / ".bin" / "tool").symlink_to("../tool/bin/cli.sh")  # relative, as npm makes them
    workspace = app / "packages" / "lib"
    workspace.mkdir(parents=True)
    (workspace / "index.js").write_text("module.exports = 42;\n")
    (app / "node_modules" / "@scope").mkdir()
    (app / "node_modules" / "@scope" / "lib").symlink_to("../../packages/lib")  # a workspace: a directory link

    assert run([str(app / "node_modules" / ".bin" / "tool"), "hi"], app).strip() == "tool says hi"
    assert os.path.realpath(app / "node_modules" / ".bin" / "tool") == str(script)
    assert (app / "node_modules" / "@scope" / "lib" / "index.js").read_text() == "module.exports = 42;\n"
    assert stat.S_ISLNK(os.lstat(app / "node_modules" / "@scope" / "lib").st_mode)
    walked = sorted(str(Path(d).relative_to(app)) for d, _, _ in os.walk(app / "node_modules", followlinks=True))
    assert "node_modules/@scope/lib" in walked

    # A copy keeping the links, then removing the tree: links go, their targets stay.
    shutil.copytree(app / "node_modules", mount.path / "copy", symlinks=True)
    assert os.readlink(mount.path / "copy" / ".bin" / "tool") == "../tool/bin/cli.sh"
    shutil.rmtree(app / "node_modules")
    assert (workspace / "index.js").exists()
    assert os.readlink(mount.path / "copy" / "@scope" / "lib") == "../../packages/lib"
    assert not (mount.path / "copy" / "@scope" / "lib").exists()  # dangling now: ../../packages is not there


WRITER = textwrap.dedent("""
    import os, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(int(sys.argv[2])):
        os.write(fd, b"line %06d %s\\n" % (i, b"x" * 60))
        time.sleep(0.002)
    os.close(fd)
""")


def test_log_rotation_by_copytruncate_loses_no_line_shape(app_node: AppNode, mount_factory: MountFactory) -> None:
    """logrotate's ``copytruncate``: copy the live log aside, then truncate it while the program keeps appending
    (``O_APPEND``). Lines written between the copy and the truncation are lost (logrotate says so); everything
    else is whole: no NUL gap where the writer's old offset was, no torn line, nothing twice, in order."""
    mount = mount_factory(app_node)
    log = mount.path / "app.log"
    total = 1500
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(total)])
    rotated = []
    try:
        for n in range(3):
            time.sleep(0.8)
            aside = mount.path / f"app.log.{n + 1}"
            shutil.copyfile(log, aside)
            os.truncate(log, 0)
            rotated.append(aside)
    finally:
        assert writer.wait(timeout=60) == 0
    numbers = []
    for part in [*rotated, log]:
        data = part.read_bytes()
        assert b"\0" not in data, f"{part.name} has a NUL gap"
        for line in data.splitlines():
            assert len(line) == 72 and line.startswith(b"line "), f"{part.name}: torn line {line[:20]!r}"
            numbers.append(int(line.split()[1]))
    assert numbers == sorted(set(numbers)), "lines out of order or written twice"
    assert numbers[-1] == total - 1 and len(numbers) > total * 0.9


WAL_WRITER = textwrap.dedent("""
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    open(sys.argv[2], "w").close()  # the table exists: the reader may start
    for batch in range(20):
        db.execute("BEGIN")
        db.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {batch}-{i} " * 8,) for i in range(250)])
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(db.execute("PRAGMA integrity_check").fetchone()[0])
""")

WAL_READER = textwrap.dedent("""
    import os, sqlite3, sys, time
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    counts = []
    while not counts or counts[-1] < 5000:
        counts.append(db.execute("SELECT count(*) FROM t").fetchone()[0])
    print(" ".join(map(str, counts)))
""")


def test_sqlite_in_wal_mode_with_a_concurrent_reader(
    app_node: AppNode, mount_factory: MountFactory, tmp_path: Path
) -> None:
    """A writer and a reader process share a WAL database (its ``-shm`` index is mapped shared by both): the
    reader sees whole transactions only, and the database checks out."""
    mount = mount_factory(app_node)
    path, ready = mount.path / "wal.db", tmp_path / "table-made"
    reader = subprocess.Popen([sys.executable, "-c", WAL_READER, str(path), str(ready)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert run([sys.executable, "-c", WAL_WRITER, str(path), str(ready)], tmp_path).strip() == "ok"
        out, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    counts = [int(n) for n in out.split()]
    assert counts == sorted(counts) and all(n % 250 == 0 for n in counts) and counts[-1] == 5000
    # The sqlite3 shell, another process again (the node serves in this one: a blocking SQLite call here would
    # hold the interpreter the node needs to answer it).
    checked = run(["sqlite3", str(path), "SELECT count(*) FROM t; PRAGMA quick_check;"], tmp_path)
    assert checked.split() == ["5000", "ok"]


@contextmanager
def reachable_by_others(mount: MountedVolume) -> Iterator[Path]:
    """The mount bind-mounted on a fresh directory outside pytest's temporary tree (which pytest keeps root's
    alone, resetting its mode when a session starts), so another user reaches it; unmounted on exit."""
    outside = Path(tempfile.mkdtemp(prefix="callfs-workload-"))
    outside.chmod(0o755)
    subprocess.run(["mount", "--bind", str(mount.path), str(outside)], check=True, capture_output=True, timeout=30)
    try:
        yield outside
    finally:
        subprocess.run(["umount", "-l", str(outside)], capture_output=True, timeout=30)
        outside.rmdir()


def test_a_postgresql_server_keeps_its_data_directory_in_the_mount(
    app_node: AppNode, mount_factory: MountFactory
) -> None:
    """initdb, a server with its default durability (``fsync``, full page writes), ``pgbench -i`` and a timed
    ``pgbench`` run with no failed transaction, ``pg_amcheck`` of every table and index, a clean restart, and a
    complete ``pg_dump``. Its socket and log stay on local disk."""
    if os.geteuid() != 0:
        pytest.skip("the server runs as the postgres system user, which needs root to switch to")
    mount = mount_factory(app_node)
    with reachable_by_others(mount) as volume, tempfile.TemporaryDirectory(prefix="callfs-pg-run-") as place:
        server = pg.start_server(Path(place), data_dir=volume / "pgdata", durable=True)
        try:
            run_workload(server)
        finally:
            pg.stop_server(server)


def run_workload(server: pg.PostgresServer) -> None:
    """pgbench, pg_amcheck, a restart and pg_dump against ``server`` (programs run in its ``run_dir``)."""
    bin_dir, cwd, dsn = server.bin_dir, server.run_dir, server.admin_dsn
    run([str(bin_dir / "pgbench"), "-i", "-s", "2", "-q", dsn], cwd, timeout=300)
    report = run([str(bin_dir / "pgbench"), "-T", "10", "-c", "4", "-j", "2", dsn], cwd, timeout=120)
    assert "number of failed transactions: 0" in report, report
    print("pgbench in the mount:", *(line for line in report.splitlines() if line.startswith(("tps", "latency"))))
    run([str(bin_dir / "pg_amcheck"), "--install-missing", "--heapallindexed", "--parent-check",
         "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "postgres"], cwd, timeout=300)
    pg.stop_server(server, mode="fast")
    pg.start_again(server)
    count = run([str(bin_dir / "psql"), "-X", "-A", "-t", "-d", dsn, "-c", "SELECT count(*) FROM pgbench_accounts"],
                cwd)
    assert count.strip() == "200000"
    dump = run([str(bin_dir / "pg_dump"), "-d", dsn, "-t", "pgbench_accounts"], cwd, timeout=300)
    assert dump.count("\n") > 200000
