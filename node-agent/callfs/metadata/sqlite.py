"""The embedded SQLite metadata store (the default; ``metadata_store.type: sqlite``).

One file, WAL journal, ``synchronous=FULL`` so a committed write survives power loss once the call returns.
Connections (each one an aiosqlite worker thread):

* one **writer**, guarded by an :class:`asyncio.Lock`: transactions and single-statement writes run on it
  one at a time, so no statement ever lands inside another coroutine's transaction. Transactions that
  finish while others wait share one ``BEGIN IMMEDIATE`` ... ``COMMIT`` (group commit, each in its own
  ``SAVEPOINT``), which turns many fsyncs into one; every caller still returns only after its commit;
* a few **readers** (``PRAGMA query_only``) for the store's autocommit reads: in WAL mode each read sees
  the last committed state and never another coroutine's uncommitted transaction.

Operations come from :class:`~callfs.metadata.rows.Queries`; this module only manages connections.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from callfs.metadata.autocommit import AutocommitOperations
from callfs.metadata.base import MetadataTxn, MetadataUnavailable, UniqueViolation
from callfs.metadata.rows import (
    INSERT_MIGRATION,
    SELECT_MIGRATIONS,
    Migration,
    Queries,
    Row,
    from_micros,
    pending_migrations,
    root_inode,
    sqlite_placeholders,
    to_micros,
)
from callfs.models import utcnow

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="inodes and single-use links",
        statements=(
            # WITHOUT ROWID: the text primary key is the table's only B-tree, so a lookup by path is one
            # search and secondary indexes carry the path.
            """CREATE TABLE inodes (
                path TEXT NOT NULL PRIMARY KEY,
                parent TEXT,
                name TEXT NOT NULL,
                depth INTEGER NOT NULL,
                type TEXT NOT NULL CHECK (type IN ('file', 'directory')),
                size INTEGER NOT NULL CHECK (size >= 0),
                mode INTEGER NOT NULL,
                owner TEXT NOT NULL,
                grp TEXT NOT NULL,
                mtime INTEGER NOT NULL,
                ctime INTEGER NOT NULL,
                version INTEGER NOT NULL,
                backend TEXT,
                blob_id TEXT,
                instance_id TEXT
            ) WITHOUT ROWID""",
            "CREATE INDEX inodes_listing ON inodes (parent, type, name)",
            "CREATE INDEX inodes_blobs ON inodes (backend, instance_id, path) WHERE type = 'file'",
            """CREATE TABLE single_use_links (
                token_id TEXT NOT NULL PRIMARY KEY,
                path TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('active', 'used')),
                used_at INTEGER,
                used_by_ip TEXT
            ) WITHOUT ROWID""",
            "CREATE INDEX links_expiry ON single_use_links (expires_at)",
            "CREATE INDEX links_used ON single_use_links (used_at) WHERE status = 'used'",
        ),
    ),
    Migration(
        version=2,
        description="directory quotas and cluster nodes",
        statements=(
            """CREATE TABLE quotas (
                path TEXT NOT NULL PRIMARY KEY,
                bytes_limit INTEGER CHECK (bytes_limit > 0),
                inodes_limit INTEGER CHECK (inodes_limit > 0),
                bytes_used INTEGER NOT NULL,
                inodes_used INTEGER NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE cluster_nodes (
                instance_id TEXT NOT NULL PRIMARY KEY,
                url TEXT NOT NULL,
                version TEXT NOT NULL,
                capacity_bytes INTEGER NOT NULL,
                free_bytes INTEGER NOT NULL,
                started_at INTEGER NOT NULL,
                last_heartbeat INTEGER NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        version=3,
        description="single-use links bound to the content they were minted for",
        statements=(
            "ALTER TABLE single_use_links ADD COLUMN blob_id TEXT",
            "ALTER TABLE single_use_links ADD COLUMN version INTEGER",
        ),
    ),
    Migration(
        version=4,
        description="inode numbers, block lists and block reference counts",
        statements=(
            # Existing inodes get a number derived from random bits (unique index below); new ones get theirs
            # from the engine. Existing files keep the blob layout and stay readable as they are.
            "ALTER TABLE inodes ADD COLUMN ino INTEGER",
            "UPDATE inodes SET ino = (random() & 4611686018427387903) + 1",
            "CREATE UNIQUE INDEX inodes_ino ON inodes (ino)",
            "ALTER TABLE inodes ADD COLUMN layout TEXT NOT NULL DEFAULT 'blob' CHECK (layout IN ('blob', 'blocks'))",
            """CREATE TABLE file_blocks (
                ino INTEGER NOT NULL,
                idx INTEGER NOT NULL CHECK (idx >= 0),
                hash TEXT NOT NULL,
                size INTEGER NOT NULL CHECK (size >= 0),
                PRIMARY KEY (ino, idx)
            ) WITHOUT ROWID""",
            """CREATE TABLE blocks (
                backend TEXT NOT NULL,
                location TEXT NOT NULL,
                hash TEXT NOT NULL,
                size INTEGER NOT NULL,
                stored_size INTEGER NOT NULL,
                refs INTEGER NOT NULL CHECK (refs >= 0),
                unreferenced_since INTEGER,
                collecting INTEGER NOT NULL DEFAULT 0 CHECK (collecting IN (0, 1)),
                PRIMARY KEY (backend, location, hash)
            ) WITHOUT ROWID""",
            "CREATE INDEX blocks_unreferenced ON blocks (backend, location, unreferenced_since) WHERE refs = 0",
        ),
    ),
    Migration(
        version=5,
        description="attributes stored with a file's content (S3 content type and user metadata)",
        statements=(
            """CREATE TABLE blob_attributes (
                blob_id TEXT NOT NULL PRIMARY KEY,
                attributes TEXT NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        version=6,
        description="files sharing a blob (copies): find whether any file still names a blob",
        statements=("CREATE INDEX inodes_blob_refs ON inodes (backend, blob_id) WHERE type = 'file'",),
    ),
    Migration(
        version=7,
        description="API keys registered at run time (hashed), each confined to a path",
        statements=(
            """CREATE TABLE access_keys (
                key_hash TEXT NOT NULL PRIMARY KEY,
                user_name TEXT NOT NULL,
                scope TEXT NOT NULL,
                created_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX access_keys_user ON access_keys (user_name)",
        ),
    ),
    Migration(
        version=8,
        description="S3 bucket versioning: noncurrent object versions and delete markers, bucket status",
        statements=(
            """CREATE TABLE object_versions (
                path TEXT NOT NULL,
                version_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                delete_marker INTEGER NOT NULL CHECK (delete_marker IN (0, 1)),
                size INTEGER NOT NULL CHECK (size >= 0),
                mode INTEGER NOT NULL,
                owner TEXT NOT NULL,
                grp TEXT NOT NULL,
                mtime INTEGER NOT NULL,
                version INTEGER NOT NULL,
                backend TEXT,
                blob_id TEXT,
                instance_id TEXT,
                ino INTEGER NOT NULL,
                layout TEXT NOT NULL CHECK (layout IN ('blob', 'blocks')),
                PRIMARY KEY (path, version_id)
            ) WITHOUT ROWID""",
            "CREATE INDEX object_versions_order ON object_versions (path, seq)",
            "CREATE INDEX object_versions_blobs ON object_versions (backend, blob_id)",
            """CREATE TABLE bucket_versioning (
                path TEXT NOT NULL PRIMARY KEY,
                status TEXT NOT NULL CHECK (status IN ('Enabled', 'Suspended'))
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        version=9,
        description="numeric owner and group, access time, symbolic links (type symlink, target) and special "
                    "files (type special: FIFOs, sockets, device nodes)",
        statements=(
            # SQLite cannot change a CHECK constraint in place: the table is rebuilt with the new type, the
            # rows copied, and the indexes made again.
            """CREATE TABLE inodes_v9 (
                path TEXT NOT NULL PRIMARY KEY,
                parent TEXT,
                name TEXT NOT NULL,
                depth INTEGER NOT NULL,
                type TEXT NOT NULL CHECK (type IN ('file', 'directory', 'symlink', 'special')),
                size INTEGER NOT NULL CHECK (size >= 0),
                mode INTEGER NOT NULL,
                owner TEXT NOT NULL,
                grp TEXT NOT NULL,
                mtime INTEGER NOT NULL,
                ctime INTEGER NOT NULL,
                version INTEGER NOT NULL,
                backend TEXT,
                blob_id TEXT,
                instance_id TEXT,
                ino INTEGER,
                layout TEXT NOT NULL DEFAULT 'blob' CHECK (layout IN ('blob', 'blocks')),
                uid INTEGER CHECK (uid BETWEEN 0 AND 4294967294),
                gid INTEGER CHECK (gid BETWEEN 0 AND 4294967294),
                atime INTEGER,
                target TEXT,
                special TEXT CHECK (special IN ('fifo', 'socket', 'char', 'block')),
                rdev INTEGER CHECK (rdev >= 0)
            ) WITHOUT ROWID""",
            "INSERT INTO inodes_v9 (path, parent, name, depth, type, size, mode, owner, grp, mtime, ctime, version, "
            "backend, blob_id, instance_id, ino, layout) SELECT path, parent, name, depth, type, size, mode, owner, "
            "grp, mtime, ctime, version, backend, blob_id, instance_id, ino, layout FROM inodes",
            "DROP TABLE inodes",
            "ALTER TABLE inodes_v9 RENAME TO inodes",
            "CREATE INDEX inodes_listing ON inodes (parent, type, name)",
            "CREATE INDEX inodes_blobs ON inodes (backend, instance_id, path) WHERE type = 'file'",
            "CREATE UNIQUE INDEX inodes_ino ON inodes (ino)",
            "CREATE INDEX inodes_blob_refs ON inodes (backend, blob_id) WHERE type = 'file'",
        ),
    ),
    Migration(
        version=10,
        description="block replicas: which nodes hold a copy of each block of a node-local backend",
        statements=(
            """CREATE TABLE block_replicas (
                backend TEXT NOT NULL,
                location TEXT NOT NULL,
                hash TEXT NOT NULL,
                node TEXT NOT NULL,
                PRIMARY KEY (backend, location, hash, node)
            ) WITHOUT ROWID""",
            "CREATE INDEX block_replicas_node ON block_replicas (backend, node, location, hash)",
        ),
    ),
    Migration(
        version=11,
        description="leaving nodes: storage nodes being drained before they are removed",
        statements=(
            """CREATE TABLE leaving_nodes (
                instance_id TEXT NOT NULL PRIMARY KEY,
                since INTEGER NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        version=13,
        description="hard links: several names (rows) share one inode number; nlink counts them",
        statements=(
            "DROP INDEX inodes_ino",
            "CREATE INDEX inodes_ino ON inodes (ino)",
            "ALTER TABLE inodes ADD COLUMN nlink INTEGER CHECK (nlink >= 1)",
        ),
    ),
    Migration(
        version=14,
        description="extended attributes: names and byte values of an inode, gone with its last name",
        statements=(
            """CREATE TABLE xattrs (
                ino INTEGER NOT NULL,
                name TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (ino, name)
            ) WITHOUT ROWID""",
            # An inode's attributes go when its last name does (every delete of rows, whatever the path).
            """CREATE TRIGGER inodes_xattrs_last_name AFTER DELETE ON inodes
                WHEN NOT EXISTS (SELECT 1 FROM inodes WHERE ino = OLD.ino)
                BEGIN DELETE FROM xattrs WHERE ino = OLD.ino; END""",
        ),
    ),
    Migration(
        version=15,
        description="lost nodes: a node declared gone for good (its disk with it) is leaving and lost",
        statements=("ALTER TABLE leaving_nodes ADD COLUMN lost_since INTEGER",),
    ),
    Migration(
        version=16,
        description="directory entries: inodes keyed by (parent_ino, name) instead of their path",
        statements=(
            # Rows a node of an earlier version inserted without a number get one (as schema version 4 did).
            "UPDATE inodes SET ino = (random() & 4611686018427387903) + 1 WHERE ino IS NULL",
            """CREATE TABLE inodes_v16 (
                parent_ino INTEGER NOT NULL,
                name TEXT NOT NULL,
                type TEXT NOT NULL CHECK (type IN ('file', 'directory', 'symlink', 'special')),
                size INTEGER NOT NULL CHECK (size >= 0),
                mode INTEGER NOT NULL,
                owner TEXT NOT NULL,
                grp TEXT NOT NULL,
                mtime INTEGER NOT NULL,
                ctime INTEGER NOT NULL,
                version INTEGER NOT NULL,
                backend TEXT,
                blob_id TEXT,
                instance_id TEXT,
                ino INTEGER NOT NULL,
                layout TEXT NOT NULL DEFAULT 'blob' CHECK (layout IN ('blob', 'blocks')),
                uid INTEGER CHECK (uid BETWEEN 0 AND 4294967294),
                gid INTEGER CHECK (gid BETWEEN 0 AND 4294967294),
                atime INTEGER,
                target TEXT,
                special TEXT CHECK (special IN ('fifo', 'socket', 'char', 'block')),
                rdev INTEGER CHECK (rdev >= 0),
                nlink INTEGER CHECK (nlink >= 1),
                PRIMARY KEY (parent_ino, name)
            ) WITHOUT ROWID""",
            # Each row under the number of the directory its parent path named; the root under 0, named ''.
            "INSERT INTO inodes_v16 (parent_ino, name, type, size, mode, owner, grp, mtime, ctime, version, backend, "
            "blob_id, instance_id, ino, layout, uid, gid, atime, target, special, rdev, nlink) "
            "SELECT CASE WHEN c.parent IS NULL THEN 0 ELSE p.ino END, CASE WHEN c.parent IS NULL THEN '' "
            "ELSE c.name END, c.type, c.size, c.mode, c.owner, c.grp, c.mtime, c.ctime, c.version, c.backend, "
            "c.blob_id, c.instance_id, c.ino, c.layout, c.uid, c.gid, c.atime, c.target, c.special, c.rdev, c.nlink "
            "FROM inodes c LEFT JOIN inodes p ON p.path = c.parent",
            "DROP TABLE inodes",
            "ALTER TABLE inodes_v16 RENAME TO inodes",
            "CREATE INDEX inodes_listing ON inodes (parent_ino, type, name)",
            "CREATE INDEX inodes_blobs ON inodes (backend, instance_id, parent_ino, name) WHERE type = 'file'",
            "CREATE INDEX inodes_ino ON inodes (ino)",
            "CREATE INDEX inodes_blob_refs ON inodes (backend, blob_id) WHERE type = 'file'",
            """CREATE TRIGGER inodes_xattrs_last_name AFTER DELETE ON inodes
                WHEN NOT EXISTS (SELECT 1 FROM inodes WHERE ino = OLD.ino)
                BEGIN DELETE FROM xattrs WHERE ino = OLD.ino; END""",
        ),
    ),
)
"""Schema versions in order; a new table or index is one more entry (and its twin in ``postgres.py``)."""

_SCHEMA_MIGRATIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)"""

# Error codes meaning "the database cannot be used right now" rather than "this statement is wrong".
_UNAVAILABLE_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR}
)

# Extended result codes of a statement that would duplicate a primary key or unique index entry.
_UNIQUE_CODES = frozenset({sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE})

FILE_MODE = 0o600
"""Mode of the database file and its ``-wal``/``-shm`` companions: metadata is for the node's user only."""

MAX_GROUP = 256
"""Most transactions sharing one ``COMMIT`` (bounds the latency the first member waits for)."""

_in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar("callfs_sqlite_txn", default=False)


def _unavailable(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _UNAVAILABLE_CODES


class _Connection:
    """An :class:`~callfs.metadata.rows.Executor` on one aiosqlite connection (times: epoch microseconds)."""

    for_update_suffix = ""
    for_share_suffix = ""
    writable_ctes = False

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    def encode_time(self, value: datetime) -> Any:
        return to_micros(value)

    def decode_time(self, value: Any) -> datetime:
        return from_micros(value)

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        try:
            return list(await self.conn.execute_fetchall(sqlite_placeholders(sql), tuple(params)))
        except sqlite3.Error as exc:
            if _unavailable(exc):
                raise MetadataUnavailable(f"SQLite: {exc}") from exc
            if getattr(exc, "sqlite_errorcode", 0) in _UNIQUE_CODES:
                raise UniqueViolation(f"SQLite: {exc}") from exc
            raise
        except ValueError as exc:  # aiosqlite: "no active connection" after close()
            raise MetadataUnavailable(f"SQLite: {exc}") from exc

    async def count(self, sql: str, params: Sequence[Any]) -> int:
        try:
            cursor = await self.conn.execute(sqlite_placeholders(sql), tuple(params))
            rowcount = cursor.rowcount
            await cursor.close()
            return rowcount
        except sqlite3.Error as exc:
            if _unavailable(exc):
                raise MetadataUnavailable(f"SQLite: {exc}") from exc
            if getattr(exc, "sqlite_errorcode", 0) in _UNIQUE_CODES:
                raise UniqueViolation(f"SQLite: {exc}") from exc
            raise
        except ValueError as exc:
            raise MetadataUnavailable(f"SQLite: {exc}") from exc

    async def run(self, sql: str) -> None:
        """Run a parameterless statement (``BEGIN IMMEDIATE``, ``COMMIT``, DDL)."""
        await self.count(sql, ())


class SQLiteStore(AutocommitOperations):
    """The :class:`~callfs.metadata.base.MetadataStore` on the SQLite database file at ``path``.

    ``readers`` is the number of read-only connections serving autocommit reads (round-robin);
    ``busy_timeout`` (seconds) is how long a statement waits for another process's lock before
    :class:`~callfs.metadata.base.MetadataUnavailable`. The parent directory is created if missing.

    Do not call the store's own write methods (or open a second transaction) inside
    :meth:`transaction`: the writer lock is not reentrant, so that raises ``RuntimeError`` instead of
    deadlocking.
    """

    def __init__(self, path: Path, *, readers: int = 2, busy_timeout: float = 5.0) -> None:
        if readers < 1:
            raise ValueError("readers must be >= 1")
        self._path = path
        self._reader_count = readers
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._lock = asyncio.Lock()  # the writer connection: one logical transaction at a time
        self._queued = 0  # coroutines waiting for self._lock
        self._group_open = False  # a BEGIN IMMEDIATE is open on the writer
        self._group: list[asyncio.Future[None]] = []  # finished members awaiting the group's COMMIT
        self._flush: asyncio.Task[None] | None = None
        self._writer: _Connection | None = None
        self._writer_ops: Queries | None = None
        self._readers: list[_Connection] = []
        self._reader_ops: list[Queries] = []
        self._next_reader = itertools.count()

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connections, apply pending migrations and create the root directory if absent.

        Calling it again on a started store only re-checks migrations and the root.

        Raises:
            MetadataUnavailable: the file cannot be opened or put into WAL mode.
        """
        try:
            if self._writer is None:
                await asyncio.to_thread(self._secure_files)
                writer = await self._connect()
                try:
                    await self._enable_wal(writer)
                    await writer.execute("PRAGMA synchronous = FULL")
                except BaseException:
                    await writer.close()
                    raise
                self._writer = _Connection(writer)
                self._writer_ops = Queries(self._writer)
            await self._migrate()
            async with self._write() as ops:
                await ops.insert(root_inode())
            while len(self._readers) < self._reader_count:
                reader = await self._connect()
                await reader.execute("PRAGMA query_only = ON")
                self._readers.append(_Connection(reader))
                self._reader_ops.append(Queries(self._readers[-1]))
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise MetadataUnavailable(f"SQLite at {self._path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    def _secure_files(self) -> None:
        """Create the database file (and a missing parent directory) private to the node's user: the file mode
        0600, the directory 0700; tighten an existing file and its ``-wal``/``-shm`` companions to 0600. SQLite
        gives the companions it creates the mode of the database file."""
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        for path in (self._path, Path(f"{self._path}-wal"), Path(f"{self._path}-shm")):
            with suppress(FileNotFoundError):
                if path.stat().st_mode & 0o777 != FILE_MODE:
                    path.chmod(FILE_MODE)

    async def _enable_wal(self, conn: aiosqlite.Connection) -> None:
        """Switch the file to WAL (persistent). Retries until ``busy_timeout``: SQLite answers ``BUSY`` at
        once, without its busy handler, while another process switches a fresh file at the same time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout_ms / 1000
        delay = 0.005
        while True:
            try:
                mode = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if not _unavailable(exc) or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        if str(next(iter(mode))[0]).lower() != "wal":
            raise MetadataUnavailable(f"SQLite at {self._path} cannot use WAL mode")

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self._path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms:d}")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _migrate(self) -> None:
        async with self._lock:
            await self._commit_group()
            writer = self._require_writer()
            await writer.run("BEGIN IMMEDIATE")  # also serialises nodes starting on the same file
            try:
                await writer.run(_SCHEMA_MIGRATIONS)
                applied = {row[0] for row in await writer.fetch(SELECT_MIGRATIONS, ())}
                for migration in pending_migrations(MIGRATIONS, applied):
                    for statement in migration.statements:
                        await writer.run(statement)
                    await writer.count(
                        INSERT_MIGRATION,
                        (migration.version, migration.description, writer.encode_time(utcnow())),
                    )
            except BaseException:
                with suppress(sqlite3.Error, MetadataUnavailable):
                    await writer.run("ROLLBACK")
                raise
            await writer.run("COMMIT")

    async def close(self) -> None:
        """Close every connection (pending statements on them finish first). Safe to call twice."""
        if self._writer is not None:
            async with self._lock:
                await self._commit_group()
        readers, self._readers, self._reader_ops = self._readers, [], []
        writer, self._writer, self._writer_ops = self._writer, None, None
        for conn in readers:
            await conn.conn.close()
        if writer is not None:
            await writer.conn.close()

    async def ping(self) -> bool:
        """True when a reader answers ``SELECT 1`` within one second."""
        if not self._readers:
            return False
        try:
            await asyncio.wait_for(self._readers[0].fetch("SELECT 1", ()), timeout=1.0)
        except (MetadataUnavailable, sqlite3.Error, TimeoutError):
            return False
        return True

    # --- connection selection ----------------------------------------------------------------------------

    def _require_writer(self) -> _Connection:
        if self._writer is None:
            raise MetadataUnavailable("the SQLite store is not started or already closed")
        return self._writer

    def _read(self) -> Queries:
        if not self._reader_ops:
            raise MetadataUnavailable("the SQLite store is not started or already closed")
        return self._reader_ops[next(self._next_reader) % len(self._reader_ops)]

    @asynccontextmanager
    async def _turn(self, *, savepoint: bool) -> AsyncIterator[Queries]:
        """Hold the writer for one logical transaction of the current commit group.

        The group's ``BEGIN IMMEDIATE`` is issued by its first member; each member runs inside a
        ``SAVEPOINT`` (``savepoint=False`` for one statement, which SQLite makes atomic by itself), so a
        member that fails rolls back only its own work. When the member ends and nobody waits for the writer
        the group commits at once; otherwise the commit is left to a flush queued behind the waiters (group
        commit: one fsync for many writers). Either way a successful member returns only once its group's
        ``COMMIT`` has succeeded, so a write is durable when the call returns.
        """
        if _in_transaction.get():
            raise RuntimeError("write or transaction inside a transaction of the same SQLite store")
        self._queued += 1
        try:
            await self._lock.acquire()
        finally:
            self._queued -= 1
        committed: asyncio.Future[None] | None = None
        token = _in_transaction.set(True)
        try:
            writer = self._require_writer()
            assert self._writer_ops is not None
            if not self._group_open:
                await writer.run("BEGIN IMMEDIATE")
                self._group_open = True
            # The group's first member needs no savepoint: on failure the whole (empty) group rolls back.
            savepoint = savepoint and bool(self._group)
            if savepoint:
                await writer.run("SAVEPOINT member")
            try:
                yield self._writer_ops
            except BaseException:
                with suppress(sqlite3.Error, MetadataUnavailable):
                    if savepoint:
                        await writer.run("ROLLBACK TO member")
                        await writer.run("RELEASE member")
                    elif not self._group:
                        self._group_open = False
                        await writer.run("ROLLBACK")
                raise
            finally:
                if self._group_open and not writer.conn.in_transaction:
                    # Some errors (I/O, disk full) make SQLite roll back the whole transaction: the group
                    # members already done lost their work and must hear so.
                    self._fail_group(MetadataUnavailable("SQLite rolled the transaction back"))
            if savepoint:
                await writer.run("RELEASE member")
            committed = asyncio.get_running_loop().create_future()
            self._group.append(committed)
        finally:
            _in_transaction.reset(token)
            try:
                await self._end_turn()
            finally:
                self._lock.release()
        await committed

    async def _end_turn(self) -> None:
        """With the lock held: commit the group now, or make sure a flush will (never raises)."""
        if not self._group_open:
            return
        if self._queued == 0 or len(self._group) >= MAX_GROUP:
            await self._commit_group()
        elif self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._flush_group())

    async def _flush_group(self) -> None:
        async with self._lock:
            await self._commit_group()

    async def _commit_group(self) -> None:
        """With the lock held: ``COMMIT`` the open group and settle its members (never raises).

        The commit runs in its own task so that a member cancelled while waiting for it neither aborts the
        bookkeeping nor leaves its peers unanswered; the statement is queued on the connection before any
        later one, so the next group's ``BEGIN`` cannot overtake it.
        """
        if not self._group_open or self._writer is None:
            return
        members, self._group = self._group, []
        self._group_open = False
        await asyncio.shield(asyncio.create_task(self._commit(self._writer, members)))

    @staticmethod
    async def _commit(writer: _Connection, members: list[asyncio.Future[None]]) -> None:
        try:
            await writer.run("COMMIT")
        except Exception as exc:
            with suppress(sqlite3.Error, MetadataUnavailable):
                await writer.run("ROLLBACK")
            error = exc if isinstance(exc, MetadataUnavailable) else MetadataUnavailable(f"SQLite: {exc}")
            for member in members:
                if not member.done():
                    member.set_exception(error)
            return
        for member in members:
            if not member.done():
                member.set_result(None)

    def _fail_group(self, error: MetadataUnavailable) -> None:
        members, self._group = self._group, []
        self._group_open = False
        for member in members:
            if not member.done():
                member.set_exception(error)

    def _autocommit_reader(self) -> Queries:
        return self._read()

    def _autocommit_writer(self) -> AbstractAsyncContextManager[Queries]:
        return self._write()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[Queries]:
        """The writer for one statement that is atomic on its own (joins the current commit group)."""
        async with self._turn(savepoint=False) as ops:
            yield ops

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MetadataTxn]:
        """A read-write transaction: commit on normal exit (durable on return), roll back on any exception.

        Transactions run one at a time on the writer (they see each other's effects in order); several
        finishing close together share one ``COMMIT``. A failure of that commit raises
        :class:`~callfs.metadata.base.MetadataUnavailable` after the block.

        Raises:
            RuntimeError: called inside another transaction of this store (it would deadlock).
            MetadataUnavailable: the database is locked by another process beyond ``busy_timeout``, or the
                commit failed.
        """
        async with self._turn(savepoint=True) as ops:
            yield ops
