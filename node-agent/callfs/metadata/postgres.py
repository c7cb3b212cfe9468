"""The PostgreSQL metadata store (``metadata_store.type: postgres``), shared by every node of a cluster.

asyncpg with a connection pool. Transactions run at READ COMMITTED; rows read ``for_update`` are locked
with ``SELECT ... FOR UPDATE`` until the transaction ends, which is what serialises concurrent writers of
the same inode. Text keys use ``COLLATE "C"`` so ordering and prefix ranges are bytewise, as in SQLite.

Schema migrations are applied by :meth:`PostgresStore.start`, each in its own transaction under a
transaction-scoped advisory lock, so several nodes starting at once apply each migration exactly once.
Operations come from :class:`~callfs.metadata.rows.Queries`; this module manages the pool and maps
connection failures to :class:`~callfs.metadata.base.MetadataUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import asyncpg

from callfs.errors import PathTooLong
from callfs.metadata.autocommit import AutocommitOperations
from callfs.metadata.base import (
    CommitUncertain,
    MetadataTxn,
    MetadataUnavailable,
    TransactionConflict,
    UniqueViolation,
)
from callfs.metadata.rows import (
    INSERT_MIGRATION,
    SELECT_MIGRATIONS,
    Migration,
    Queries,
    Row,
    pending_migrations,
    require_utc,
    root_inode,
)
from callfs.models import utcnow

log = logging.getLogger(__name__)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="inodes and single-use links",
        statements=(
            """CREATE TABLE inodes (
                path text COLLATE "C" PRIMARY KEY,
                parent text COLLATE "C",
                name text COLLATE "C" NOT NULL,
                depth integer NOT NULL,
                type text COLLATE "C" NOT NULL CHECK (type IN ('file', 'directory')),
                size bigint NOT NULL CHECK (size >= 0),
                mode integer NOT NULL,
                owner text NOT NULL,
                grp text NOT NULL,
                mtime timestamptz NOT NULL,
                ctime timestamptz NOT NULL,
                version bigint NOT NULL,
                backend text,
                blob_id text,
                instance_id text
            )""",
            "CREATE INDEX inodes_listing ON inodes (parent, type, name)",
            "CREATE INDEX inodes_blobs ON inodes (backend, instance_id, path) WHERE type = 'file'",
            """CREATE TABLE single_use_links (
                token_id text PRIMARY KEY,
                path text NOT NULL,
                created_by text NOT NULL,
                created_at timestamptz NOT NULL,
                expires_at timestamptz NOT NULL,
                status text NOT NULL CHECK (status IN ('active', 'used')),
                used_at timestamptz,
                used_by_ip text
            )""",
            "CREATE INDEX links_expiry ON single_use_links (expires_at)",
            "CREATE INDEX links_used ON single_use_links (used_at) WHERE status = 'used'",
        ),
    ),
    Migration(
        version=2,
        description="directory quotas and cluster nodes",
        statements=(
            """CREATE TABLE quotas (
                path text COLLATE "C" PRIMARY KEY,
                bytes_limit bigint CHECK (bytes_limit > 0),
                inodes_limit bigint CHECK (inodes_limit > 0),
                bytes_used bigint NOT NULL,
                inodes_used bigint NOT NULL
            )""",
            """CREATE TABLE cluster_nodes (
                instance_id text PRIMARY KEY,
                url text NOT NULL,
                version text NOT NULL,
                capacity_bytes bigint NOT NULL,
                free_bytes bigint NOT NULL,
                started_at timestamptz NOT NULL,
                last_heartbeat timestamptz NOT NULL
            )""",
        ),
    ),
    Migration(
        version=3,
        description="single-use links bound to the content they were minted for",
        statements=(
            "ALTER TABLE single_use_links ADD COLUMN blob_id text",
            "ALTER TABLE single_use_links ADD COLUMN version bigint",
        ),
    ),
    Migration(
        version=4,
        description="inode numbers, block lists and block reference counts",
        statements=(
            # Existing inodes get a number derived from the MD5 of their path (60 bits; unique index below);
            # new ones get theirs from the engine. Existing files keep the blob layout, readable as they are.
            "ALTER TABLE inodes ADD COLUMN ino bigint",
            # The same number as callfs.models.path_ino.
            "UPDATE inodes SET ino = ('x' || substr(md5(path), 1, 15))::bit(60)::bigint + 1",
            "CREATE UNIQUE INDEX inodes_ino ON inodes (ino)",
            "ALTER TABLE inodes ADD COLUMN layout text NOT NULL DEFAULT 'blob' CHECK (layout IN ('blob', 'blocks'))",
            """CREATE TABLE file_blocks (
                ino bigint NOT NULL,
                idx bigint NOT NULL CHECK (idx >= 0),
                hash text NOT NULL,
                size integer NOT NULL CHECK (size >= 0),
                PRIMARY KEY (ino, idx)
            )""",
            """CREATE TABLE blocks (
                backend text NOT NULL,
                location text NOT NULL,
                hash text NOT NULL,
                size integer NOT NULL,
                stored_size integer NOT NULL,
                refs bigint NOT NULL CHECK (refs >= 0),
                unreferenced_since timestamptz,
                collecting integer NOT NULL DEFAULT 0 CHECK (collecting IN (0, 1)),
                PRIMARY KEY (backend, location, hash)
            )""",
            "CREATE INDEX blocks_unreferenced ON blocks (backend, location, unreferenced_since) WHERE refs = 0",
        ),
    ),
    Migration(
        version=5,
        description="attributes stored with a file's content (S3 content type and user metadata)",
        statements=(
            """CREATE TABLE blob_attributes (
                blob_id text PRIMARY KEY,
                attributes text NOT NULL
            )""",
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
                key_hash text PRIMARY KEY,
                user_name text NOT NULL,
                scope text COLLATE "C" NOT NULL,
                created_at timestamptz NOT NULL
            )""",
            "CREATE INDEX access_keys_user ON access_keys (user_name)",
        ),
    ),
    Migration(
        version=8,
        description="S3 bucket versioning: noncurrent object versions and delete markers, bucket status",
        statements=(
            # One row per noncurrent version or delete marker of the file at ``path`` (the current version is the
            # file itself). A version names the content it shares with the file it was (blob or block list).
            """CREATE TABLE object_versions (
                path text COLLATE "C" NOT NULL,
                version_id text COLLATE "C" NOT NULL,
                seq bigint NOT NULL,
                delete_marker integer NOT NULL CHECK (delete_marker IN (0, 1)),
                size bigint NOT NULL CHECK (size >= 0),
                mode integer NOT NULL,
                owner text NOT NULL,
                grp text NOT NULL,
                mtime timestamptz NOT NULL,
                version bigint NOT NULL,
                backend text,
                blob_id text,
                instance_id text,
                ino bigint NOT NULL,
                layout text NOT NULL CHECK (layout IN ('blob', 'blocks')),
                PRIMARY KEY (path, version_id)
            )""",
            "CREATE INDEX object_versions_order ON object_versions (path, seq)",
            "CREATE INDEX object_versions_blobs ON object_versions (backend, blob_id)",
            """CREATE TABLE bucket_versioning (
                path text COLLATE "C" PRIMARY KEY,
                status text NOT NULL CHECK (status IN ('Enabled', 'Suspended'))
            )""",
        ),
    ),
    Migration(
        version=9,
        description="numeric owner and group, access time, symbolic links (type symlink, target) and special "
                    "files (type special: FIFOs, sockets, device nodes)",
        statements=(
            "ALTER TABLE inodes DROP CONSTRAINT inodes_type_check",
            "ALTER TABLE inodes ADD CONSTRAINT inodes_type_check "
            "CHECK (type IN ('file', 'directory', 'symlink', 'special'))",
            "ALTER TABLE inodes ADD COLUMN uid bigint CHECK (uid BETWEEN 0 AND 4294967294), "
            "ADD COLUMN gid bigint CHECK (gid BETWEEN 0 AND 4294967294), ADD COLUMN atime timestamptz, "
            "ADD COLUMN target text, ADD COLUMN special text CHECK (special IN ('fifo', 'socket', 'char', 'block')), "
            "ADD COLUMN rdev bigint CHECK (rdev >= 0)",
        ),
    ),
    Migration(
        version=10,
        description="block replicas: which nodes hold a copy of each block of a node-local backend",
        statements=(
            """CREATE TABLE block_replicas (
                backend text NOT NULL,
                location text NOT NULL,
                hash text NOT NULL,
                node text NOT NULL,
                PRIMARY KEY (backend, location, hash, node)
            )""",
            "CREATE INDEX block_replicas_node ON block_replicas (backend, node, location, hash)",
        ),
    ),
    Migration(
        version=11,
        description="leaving nodes: storage nodes being drained before they are removed",
        statements=(
            """CREATE TABLE leaving_nodes (
                instance_id text PRIMARY KEY,
                since timestamptz NOT NULL
            )""",
        ),
    ),
    Migration(
        version=13,
        description="hard links: several names (rows) share one inode number; nlink counts them",
        statements=(
            "DROP INDEX inodes_ino",
            "CREATE INDEX inodes_ino ON inodes (ino)",
            "ALTER TABLE inodes ADD COLUMN nlink integer CHECK (nlink >= 1)",
        ),
    ),
    Migration(
        version=14,
        description="extended attributes: names and byte values of an inode, gone with its last name",
        statements=(
            """CREATE TABLE xattrs (
                ino bigint NOT NULL,
                name text COLLATE "C" NOT NULL,
                value bytea NOT NULL,
                PRIMARY KEY (ino, name)
            )""",
            # An inode's attributes go when its last name does (every delete of rows, whatever the path): once
            # per statement, over the numbers of the rows it deleted.
            """CREATE FUNCTION xattrs_of_gone_inodes() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM xattrs x WHERE x.ino IN (SELECT g.ino FROM gone g)
                    AND NOT EXISTS (SELECT 1 FROM inodes i WHERE i.ino = x.ino);
                RETURN NULL;
            END $$""",
            """CREATE TRIGGER inodes_xattrs_last_name AFTER DELETE ON inodes REFERENCING OLD TABLE AS gone
                FOR EACH STATEMENT EXECUTE FUNCTION xattrs_of_gone_inodes()""",
        ),
    ),
    Migration(
        version=15,
        description="lost nodes: a node declared gone for good (its disk with it) is leaving and lost",
        statements=("ALTER TABLE leaving_nodes ADD COLUMN lost_since timestamptz",),
    ),
    Migration(
        version=16,
        description="directory entries: inodes keyed by (parent_ino, name) instead of their path",
        statements=(
            # Rows a node of an earlier version inserted without a number get the one it read them with.
            "UPDATE inodes SET ino = ('x' || substr(md5(path), 1, 15))::bit(60)::bigint + 1 WHERE ino IS NULL",
            "ALTER TABLE inodes ADD COLUMN parent_ino bigint",
            # Each row under the number of the directory its parent path named; the root under 0, named ''.
            "UPDATE inodes c SET parent_ino = p.ino FROM inodes p WHERE p.path = c.parent",
            "UPDATE inodes SET parent_ino = 0, name = '' WHERE parent IS NULL",
            "ALTER TABLE inodes ALTER COLUMN parent_ino SET NOT NULL, ALTER COLUMN ino SET NOT NULL",
            "DROP INDEX inodes_listing",
            "DROP INDEX inodes_blobs",
            "ALTER TABLE inodes DROP CONSTRAINT inodes_pkey",
            "ALTER TABLE inodes DROP COLUMN path, DROP COLUMN parent, DROP COLUMN depth",
            "ALTER TABLE inodes ADD PRIMARY KEY (parent_ino, name)",
            "CREATE INDEX inodes_listing ON inodes (parent_ino, type, name)",
            "CREATE INDEX inodes_blobs ON inodes (backend, instance_id, parent_ino, name) WHERE type = 'file'",
        ),
    ),
)
"""Schema versions in order; a new table or index is one more entry (and its twin in ``sqlite.py``)."""

_SCHEMA_MIGRATIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL
)"""

CLOSE_TIMEOUT = 10.0
"""Seconds ``close()`` waits for borrowed connections before terminating them."""

MIGRATION_LOCK_KEY = 0x43616C6C4653  # "CallFS": the advisory lock every node takes while migrating

# Failures meaning "the database cannot be reached / used right now", as opposed to a wrong statement.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # wrong user/password: cannot connect
    asyncpg.exceptions.InvalidCatalogNameError,  # the database does not exist
)


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    # asyncpg reports a closed pool or connection as a plain InterfaceError (a pooled connection the server
    # terminated is detached: "released back to the pool"), and a termination arriving between two
    # statements can surface as an InternalClientError about the protocol state.
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and any(
        phrase in str(exc) for phrase in ("closed", "released back to the pool")
    )


@contextmanager
def _connection_errors() -> Iterator[None]:
    """Turn connection failures raised in the block into :class:`MetadataUnavailable`, a duplicate key into
    :class:`UniqueViolation`, a deadlock or serialization failure into :class:`TransactionConflict`, and an
    index entry over the B-tree limit into ``PathTooLong`` (entries hold names only, but quotas, object versions
    and bucket settings are keyed by path: one of more than about 2,700 bytes there).

    A context manager rather than a wrapper of awaitables: asyncpg raises some of them while *building* the
    call (a detached pool connection), before there is anything to await.
    """
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(f"PostgreSQL: {exc}") from exc
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        raise TransactionConflict(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
    except asyncpg.ProgramLimitExceededError as exc:
        if "index row" not in str(exc):
            raise
        # A path too long for a B-tree entry: the client's path, not the server, is at fault.
        raise PathTooLong(f"path too long for the PostgreSQL metadata store: {exc}") from exc
    except Exception as exc:
        if _is_unavailable(exc):
            raise MetadataUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
        raise


def _rowcount(status: str) -> int:
    """Rows affected from a command status such as ``INSERT 0 1``, ``UPDATE 3`` or ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])


class _Times:
    """Time columns are ``timestamptz``: asyncpg takes and returns aware datetimes."""

    for_update_suffix = " FOR UPDATE"
    for_share_suffix = " FOR KEY SHARE"
    writable_ctes = True

    def encode_time(self, value: datetime) -> Any:
        return require_utc(value)

    def decode_time(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


class _Connection(_Times):
    """An :class:`~callfs.metadata.rows.Executor` on one acquired connection (inside a transaction)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        with _connection_errors():
            rows: list[Row] = await self._conn.fetch(sql, *params)
        return rows

    async def count(self, sql: str, params: Sequence[Any]) -> int:
        with _connection_errors():
            return _rowcount(await self._conn.execute(sql, *params))


class _Pool(_Times):
    """An :class:`~callfs.metadata.rows.Executor` running each statement on any pooled connection."""

    def __init__(self, acquire: Callable[[], Any]) -> None:
        self._acquire = acquire

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        with _connection_errors():
            async with self._acquire() as conn:
                rows: list[Row] = await conn.fetch(sql, *params)
                return rows

    async def count(self, sql: str, params: Sequence[Any]) -> int:
        with _connection_errors():
            async with self._acquire() as conn:
                return _rowcount(await conn.execute(sql, *params))


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's reset step on release: nothing beyond asyncpg's own (it rolls back an open transaction).

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every
    release, one extra round trip per statement outside a transaction. This store never leaves session state
    behind: no session settings, no LISTEN, no session advisory locks (only ``pg_advisory_xact_lock``) and no
    cursors outside a transaction, so there is nothing to reset.
    """


class PostgresStore(AutocommitOperations):
    """The :class:`~callfs.metadata.base.MetadataStore` on the PostgreSQL database at ``dsn``.

    ``min_size``/``max_size`` bound the pool (connections). ``connect_timeout`` (seconds) bounds each
    connection attempt, ``acquire_timeout`` (seconds) the wait for a free pooled connection and
    ``command_timeout`` (seconds) each statement; exceeding any of them raises
    :class:`~callfs.metadata.base.MetadataUnavailable` rather than hanging a request.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 20,
        connect_timeout: float = 5.0,
        acquire_timeout: float = 10.0,
        command_timeout: float = 60.0,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("pool sizes must satisfy 0 <= min_size <= max_size and max_size >= 1")
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._any_connection = _Pool(self._acquire)
        self._ops = Queries(self._any_connection)

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, apply pending migrations and create the root directory if absent.

        Calling it again on a started store only re-checks migrations and the root.

        Raises:
            MetadataUnavailable: the server cannot be reached, refuses the login, or the database is missing.
        """
        if self._pool is None:
            try:
                with _connection_errors():
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        timeout=self._connect_timeout,
                        command_timeout=self._command_timeout,
                        reset=_keep_session,
                    )
            except asyncpg.PostgresError as exc:  # e.g. the server refuses this client
                raise MetadataUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
        try:
            with _connection_errors():
                await self._migrate()
            await self._ops.insert(root_inode())
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        async with self._acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                await conn.execute(_SCHEMA_MIGRATIONS)
                applied = {row[0] for row in await conn.fetch(SELECT_MIGRATIONS)}
            for migration in pending_migrations(MIGRATIONS, applied):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                    # Another node may have applied it while this one waited for the lock.
                    done = await conn.fetchval(
                        "SELECT count(*) FROM schema_migrations WHERE version = $1", migration.version
                    )
                    if done:
                        continue
                    for statement in migration.statements:
                        await conn.execute(statement)
                    await conn.execute(INSERT_MIGRATION, migration.version, migration.description, utcnow())

    async def close(self) -> None:
        """Close the pool, waiting up to :data:`CLOSE_TIMEOUT` seconds for connections in use to be
        released, then terminating the rest (their open transactions roll back). Safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pool.terminate()

    async def ping(self) -> bool:
        """True when the server answers ``SELECT 1`` within one second."""
        try:
            await asyncio.wait_for(self._any_connection.fetch("SELECT 1", ()), timeout=1.0)
        except (MetadataUnavailable, TimeoutError):
            return False
        return True

    # --- connections -------------------------------------------------------------------------------------

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise MetadataUnavailable("the PostgreSQL store is not started or already closed")
        return self._pool

    def _acquire(self) -> Any:
        """``async with`` a pooled connection (``acquire_timeout`` bounds the wait)."""
        return self._require_pool().acquire(timeout=self._acquire_timeout)

    def _autocommit_reader(self) -> Queries:
        return self._ops

    @asynccontextmanager
    async def _autocommit_writer(self) -> AsyncIterator[Queries]:
        """A single self-contained statement autocommits on a pooled connection."""
        yield self._ops

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MetadataTxn]:
        """A transaction on one pooled connection; commit on normal exit, roll back on any exception.

        Raises:
            MetadataUnavailable: no connection could be had, or it broke before COMMIT.
            CommitUncertain: the connection broke during COMMIT (the outcome is unknown).
        """
        pool = self._require_pool()
        with _connection_errors():
            conn = await pool.acquire(timeout=self._acquire_timeout)
        try:
            txn = conn.transaction()
            with _connection_errors():
                await txn.start()
            # Directory times (Queries.touch_directory) move after the commit, each in its own statement: a row
            # lock on a busy directory taken inside the transaction would wait behind (and deadlock with) a
            # rename of that directory queued for its row, and hold every other create there until the commit.
            queries = Queries(_Connection(conn), defer_touches=True)
            try:
                yield queries
            except BaseException:
                # A broken connection cannot roll back; the server rolls back when it goes away, and the
                # pool resets (rolls back) a connection released inside a transaction.
                with suppress(Exception):
                    await txn.rollback()
                raise
            try:
                with _connection_errors():
                    await txn.commit()
            except TransactionConflict:
                raise  # the server refused to commit: nothing was
            except MetadataUnavailable as exc:
                # COMMIT was sent, or was about to be, when the connection went: the server may have committed.
                raise CommitUncertain(f"{exc.message}; the transaction may have committed") from exc
            try:
                with _connection_errors():
                    await queries.run_deferred_touches()
            except Exception as exc:  # the change committed: a directory's times must not turn it into a failure
                log.warning("could not move the times of a changed directory: %s", exc)
        finally:
            # Releasing resets the connection; on one the server dropped (a restart) that fails, and the pool
            # has already discarded it. The failure must not replace the outcome of the transaction: after a
            # commit it would make a committed write look failed (and its new bytes be deleted).
            with suppress(Exception):
                await pool.release(conn)
