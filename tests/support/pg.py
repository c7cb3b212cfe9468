"""A real PostgreSQL server for the test session, fresh databases per test, and the metadata store fixtures.

The server comes from the Debian ``postgresql`` package (``hack/install.sh``): ``initdb`` + ``pg_ctl`` on a
throwaway data directory, listening on a free loopback TCP port only, stopped and removed at session end.
``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` system user.

Fixtures:

* ``postgres_server`` (session): the admin DSN (database ``postgres``, user ``postgres``, trust auth).
* ``postgres_dsn`` (function): the DSN of a fresh empty database, dropped after the test.
* ``metadata_kind`` (function, params ``sqlite``/``postgres``): parametrise a test over both stores.
* ``metadata_store`` (function): a started store of ``metadata_kind``, closed after the test.

Other fixtures can reuse :func:`create_database` / :func:`drop_database` (plain synchronous functions, no
event loop needed) to give, e.g., a storage-node subprocess its own database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callfs.metadata.base import MetadataStore
from callfs.metadata.postgres import PostgresStore
from callfs.metadata.sqlite import SQLiteStore
from support.ports import free_port

METADATA_KINDS = ("sqlite", "postgres")
"""Parameter values of ``metadata_kind``; reuse them to parametrise other fixtures over both stores."""

PG_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT = 180  # seconds for initdb / pg_ctl start (a data directory in a FUSE mount on a loaded machine is slow)


@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``bin_dir`` holds its binaries, ``port`` is on 127.0.0.1, ``admin_dsn`` connects as
    the superuser to the ``postgres`` database. ``run_dir`` holds its socket and log; ``durable``: PostgreSQL's
    default durability (``fsync``, full page writes) instead of none."""

    bin_dir: Path
    data_dir: Path
    port: int
    run_dir: Path
    durable: bool = False

    @property
    def admin_dsn(self) -> str:
        return dsn_for(self.port, "postgres")


def dsn_for(port: int, database: str) -> str:
    """The loopback DSN of ``database`` as the ``postgres`` superuser (trust authentication)."""
    return f"postgresql://postgres@127.0.0.1:{port}/{database}"


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb`` (``$CALLFS_PG_BIN`` overrides).

    Fails the test session with an explanation when PostgreSQL is not installed.
    """
    override = os.environ.get("CALLFS_PG_BIN")
    candidates = [Path(override)] if override else []
    if PG_ROOT.is_dir():
        majors = sorted((p for p in PG_ROOT.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates += [p / "bin" for p in majors]
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    where = "CI" if os.environ.get("CI") == "true" else "this machine"
    pytest.fail(
        f"PostgreSQL server binaries not found on {where} (looked in {PG_ROOT}/<version>/bin"
        + (f" and {override}" if override else "")
        + "); install them with hack/install.sh (Debian package postgresql)",
        pytrace=False,
    )


def as_server_user(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` system user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    if done.returncode != 0:
        detail = done.stdout + done.stderr
        if log is not None and log.exists():
            detail += "\n--- server log ---\n" + log.read_text(errors="replace")
        raise RuntimeError(f"{what} failed ({done.returncode}): {detail}")


def start_server(base: Path, *, data_dir: Path | None = None, durable: bool = False) -> PostgresServer:
    """initdb + start a server with its socket and log under ``base`` (a directory we may chown), its data in
    ``data_dir`` (default ``base/data``; one given is made here, the server user's, mode 0700).

    Durability is switched off (``fsync=off``, the data directory is thrown away) unless ``durable``.
    """
    bin_dir = find_bin_dir()
    data = data_dir or base / "data"
    if data_dir is not None:
        data.mkdir(exist_ok=True)
        data.chmod(0o700)
    if os.geteuid() == 0:
        for directory in {base, data} if data_dir is not None else {base}:
            shutil.chown(directory, user="postgres", group="postgres")
    _run(
        as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                *([] if durable else ["--no-sync"]),
            ]
        ),
        "initdb",
    )
    # The port is free when picked but may be taken before the server binds it: try a few.
    for attempt in range(3):
        server = PostgresServer(bin_dir=bin_dir, data_dir=data, port=free_port(), run_dir=base, durable=durable)
        try:
            start_again(server)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    return server


def start_again(server: PostgresServer) -> None:
    """Start ``server`` (again, after :func:`stop_server`) on its data directory and port; the data is kept.

    A server stopped with ``-m immediate`` recovers from its WAL, like after a crash: transactions committed
    with ``synchronous_commit`` on are all there (it is off by default; ``ALTER DATABASE ... SET
    synchronous_commit = on`` for a database whose commits must survive the stop).
    """
    log = server.run_dir / "server.log"
    undurable = [] if server.durable else ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-c port={server.port}",
            f"-c unix_socket_directories={server.run_dir}",
            *undurable,
            "-c max_connections=300",
        ]
    )
    argv = [str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(log), "-o", options, "-w"]
    _run(as_server_user([*argv, "-t", str(START_TIMEOUT), "start"]), "pg_ctl start", log)


def stop_server(server: PostgresServer, mode: str = "immediate") -> None:
    """Stop the server: at once (``-m immediate``, nothing to keep) or as ``mode`` says (``fast``: a clean
    shutdown)."""
    subprocess.run(
        as_server_user([str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", mode, "-w", "stop"]),
        capture_output=True,
        timeout=START_TIMEOUT,
        check=False,
    )


def _psql(admin_dsn: str, sql: str) -> None:
    bin_dir = find_bin_dir()
    _run([str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin_dsn, "-c", sql], "psql")


def create_database(admin_dsn: str) -> str:
    """Create a fresh empty database on the server of ``admin_dsn``; its DSN (same user, host and port)."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    _psql(admin_dsn, f'CREATE DATABASE "{name}"')
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop the database of ``dsn`` (made by :func:`create_database`), disconnecting its sessions."""
    name = dsn.rsplit("/", 1)[1]
    _psql(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Admin DSN of a PostgreSQL server running for the whole session."""
    base = Path(tempfile.mkdtemp(prefix="callfs-pg-"))
    try:
        server = start_server(base)
        try:
            yield server.admin_dsn
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    """DSN of a fresh empty database, dropped after the test."""
    dsn = create_database(postgres_server)
    try:
        yield dsn
    finally:
        drop_database(postgres_server, dsn)


@pytest.fixture(params=METADATA_KINDS)
def metadata_kind(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``: tests using it run once per metadata store."""
    kind: str = request.param
    return kind


def new_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    """An unstarted store of ``kind``; the PostgreSQL one gets this test's fresh database."""
    if kind == "postgres":
        return PostgresStore(request.getfixturevalue("postgres_dsn"))
    return SQLiteStore(tmp_path / "metadata.db")


@pytest.fixture
async def metadata_store(
    metadata_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MetadataStore]:
    """A started store of each kind (SQLite in ``tmp_path``, PostgreSQL on a fresh database), closed after."""
    store = new_store(metadata_kind, request, tmp_path)
    await store.start()
    try:
        yield store
    finally:
        await store.close()
