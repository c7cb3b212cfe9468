"""Rows of the metadata schema and the statements that read and write them, shared by both stores.

No I/O of its own. The SQL here is written once in PostgreSQL's positional form (``$1``, ``$2``...) and used
by the SQLite store after :func:`sqlite_placeholders` turns it into SQLite's equivalent ``?1``, ``?2``...;
only the DDL (column types), time encoding and connection handling differ between the stores.
:class:`Queries` implements every :class:`~callfs.metadata.base.MetadataTxn` operation once, on top of the
two primitives a store supplies through an :class:`Executor` (run a query for rows, run a statement for a
row count).

Schema: an ``inodes`` table of directory entries keyed by ``(parent_ino, name)``, found by path through the
walks of :mod:`callfs.metadata.entries`; quotas, object versions and links keyed by path.

Ordering rule (``callfs.metadata.base``): directories before files, then by name in byte order. Both stores
compare text bytewise (SQLite's BINARY collation, PostgreSQL ``COLLATE "C"``) and ``'directory' < 'file'``
bytewise, so ``ORDER BY type, name`` is the listing order and the ``(parent_ino, type, name)`` index serves it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any, Protocol

from callfs import paths
from callfs.metadata import entries
from callfs.metadata.base import BlockNotReserved, EntryKey, TargetExists, UniqueViolation
from callfs.models import (
    CONTENT_ID_PREFIX,
    AccessKey,
    FileBlock,
    Inode,
    InodeType,
    Layout,
    ListingPage,
    NodeRecord,
    ObjectVersion,
    Quota,
    SingleUseLink,
    Special,
    utcnow,
)

ROOT_MODE = 0o1777
"""Permission bits of the root directory created by ``start()`` (world-writable, sticky)."""

BLOB_PAGE_SIZE = 1000
"""Rows fetched per round trip while streaming ``blob_ids`` (keyset pagination on ``path``)."""

# The listing order relies on this: directories sort before files bytewise.
assert InodeType.DIRECTORY.value.encode() < InodeType.FILE.value.encode()


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: ``version`` (strictly increasing, recorded in ``schema_migrations``) and the
    ``statements`` that apply it, run in order inside one transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Raise ``ValueError`` unless versions are positive and strictly increasing (a programming error)."""
    previous = 0
    for migration in migrations:
        if migration.version <= previous:
            raise ValueError(f"migration versions must increase: {migration.version} after {previous}")
        previous = migration.version


# --- Time encoding -----------------------------------------------------------------------------------------


def require_utc(value: datetime) -> datetime:
    """``value`` converted to UTC; naive datetimes are refused (``ValueError``) rather than guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: metadata times must be timezone-aware")
    return value.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (SQLite's time column encoding)."""
    delta = require_utc(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    """The aware UTC datetime for integer microseconds since the Unix epoch (inverse of :func:`to_micros`)."""
    return _EPOCH + timedelta(microseconds=value)


TimeEncoder = Callable[[datetime], Any]
TimeDecoder = Callable[[Any], datetime]


# --- Subtree ranges ----------------------------------------------------------------------------------------


def subtree_bounds(path: str) -> tuple[str, str]:
    """Half-open range ``[low, high)`` of the paths strictly below canonical ``path``.

    Descendants of ``/a`` are exactly the paths starting with ``/a/``; in byte order they lie in
    ``['/a/', '/a0')`` because ``'0'`` is the byte after ``'/'``; ``/a-b`` (``'-'`` < ``'/'``) and ``/a0``
    fall outside. For the root the range is every path except ``/`` itself.
    """
    if path == paths.ROOT:
        return ("/\x01", "0")  # every canonical path but "/" starts with "/" followed by a non-NUL byte
    return (path + "/", path + "0")


def check_rename(src: str, dst: str) -> None:
    """Refuse moves a store cannot express (``ValueError``): the root, or ``dst`` at or below ``src``."""
    if src == paths.ROOT or dst == paths.ROOT:
        raise ValueError("the root cannot be renamed")
    if paths.is_within(dst, src):
        raise ValueError(f"cannot move {src!r} into itself ({dst!r})")


# --- Inode rows --------------------------------------------------------------------------------------------

INODE_SELECT = "path, " + ", ".join(entries.ENTRY_COLUMNS)
"""Columns of an inode read back (the path from the walk that found it), in the order :func:`inode_from_row`
expects."""


def inode_from_row(row: Sequence[Any], decode_time: TimeDecoder) -> Inode:
    """An :class:`Inode` from a row of :data:`INODE_SELECT` columns."""
    return Inode(
        path=row[0],
        type=InodeType(row[1]),
        size=row[2],
        mode=row[3],
        owner=row[4],
        group=row[5],
        mtime=decode_time(row[6]),
        ctime=decode_time(row[7]),
        version=row[8],
        backend=row[9],
        blob_id=row[10],
        instance_id=row[11],
        ino=int(row[12]),
        # Until schema version 16 a node of an earlier version could overwrite a file stored in blocks with a
        # blob id while the layout column still said blocks: such a row reads as what was written, a blob.
        layout=Layout.BLOCKS if row[13] == Layout.BLOCKS.value and is_content_id(row[10]) else Layout.BLOB,
        # Rows written before schema version 9, or since by a node of an earlier version, have no numeric
        # owner, no atime (it reads as the mtime), no target and are no special files.
        uid=None if row[14] is None else int(row[14]),
        gid=None if row[15] is None else int(row[15]),
        atime=None if row[16] is None else decode_time(row[16]),
        target=row[17],
        special=None if row[18] is None else Special(row[18]),
        rdev=None if row[19] is None else int(row[19]),
        # Rows written before schema version 13 (or since by a node of an earlier version) have one name.
        nlink=1 if row[20] is None else int(row[20]),
    )


def is_content_id(blob_id: str | None) -> bool:
    """True for the content id of a file stored in blocks (see :func:`callfs.models.new_content_id`)."""
    return blob_id is not None and blob_id.startswith(CONTENT_ID_PREFIX)


def inode_params(inode: Inode, encode_time: TimeEncoder) -> tuple[Any, ...]:
    """Statement parameters for the :data:`~callfs.metadata.entries.ENTRY_COLUMNS` of ``inode``."""
    return (
        inode.type.value,
        inode.size,
        inode.mode,
        inode.owner,
        inode.group,
        encode_time(inode.mtime),
        encode_time(inode.ctime),
        inode.version,
        inode.backend,
        inode.blob_id,
        inode.instance_id,
        inode.ino,
        inode.layout.value,
        inode.uid,
        inode.gid,
        None if inode.atime is None else encode_time(inode.atime),
        inode.target,
        None if inode.special is None else inode.special.value,
        inode.rdev,
        inode.nlink,
    )


def root_inode() -> Inode:
    """The root directory ``start()`` creates when absent: ``/``, owner ``root``, mode ``0o1777``."""
    now = utcnow()
    return Inode(
        path=paths.ROOT,
        type=InodeType.DIRECTORY,
        mode=ROOT_MODE,
        owner="root",
        group="root",
        mtime=now,
        ctime=now,
    )


# --- Link rows ---------------------------------------------------------------------------------------------

LINK_COLUMNS = "token_id, path, created_by, created_at, expires_at, status, used_at, used_by_ip, blob_id, version"
"""Columns of ``single_use_links`` in the order :func:`link_from_row` and :func:`link_params` use."""


def link_from_row(row: Sequence[Any], decode_time: TimeDecoder) -> SingleUseLink:
    """A :class:`SingleUseLink` from a row of :data:`LINK_COLUMNS`."""
    return SingleUseLink(
        token_id=row[0],
        path=row[1],
        created_by=row[2],
        created_at=decode_time(row[3]),
        expires_at=decode_time(row[4]),
        status=row[5],
        used_at=None if row[6] is None else decode_time(row[6]),
        used_by_ip=row[7],
        blob_id=row[8],
        version=None if row[9] is None else int(row[9]),
    )


def link_params(link: SingleUseLink, encode_time: TimeEncoder) -> tuple[Any, ...]:
    """Statement parameters for the :data:`LINK_COLUMNS` of ``link``."""
    return (
        link.token_id,
        link.path,
        link.created_by,
        encode_time(link.created_at),
        encode_time(link.expires_at),
        link.status,
        None if link.used_at is None else encode_time(link.used_at),
        link.used_by_ip,
        link.blob_id,
        link.version,
    )


# --- Statements (PostgreSQL placeholders; see sqlite_placeholders) -----------------------------------------

# Entries (see callfs.metadata.entries): every statement that finds a row by path starts with the walk to it. In
# the docstrings below, ``$n`` is the first placeholder after the walk's (entries.first_after).
_WIDTH = len(entries.ENTRY_COLUMNS)


@lru_cache(maxsize=256)
def select_inodes(walk: int, count: int, lock: str = "") -> str:
    """The inodes at ``count`` paths (``$n...``) reached by a walk of ``walk`` steps, ordered by
    path (the order ``lock``, a locking suffix, locks them in)."""
    return f"{entries.walk(walk)} {entries.at(entries.first_after(walk), count)} ORDER BY w.path{_of_entries(lock)}"


def _of_entries(lock: str) -> str:
    """A locking suffix applied to the entry rows (``e``) of a statement that also reads the walk."""
    return f"{lock} OF e" if lock else ""


@lru_cache(maxsize=256)
def select_chain(walk: int, count: int) -> str:
    """:func:`select_inodes` with the quota set on each (:data:`QUOTA_COLUMNS` but the path after the inode's,
    ``NULL`` without a quota): a path's ancestors, the quotas governing it and the path itself in one query.
    Quotas only exist on existing directories."""
    first = entries.first_after(walk)
    return (
        f"{entries.walk(walk)} SELECT w.path, {entries.columns('e')}, "  # noqa: S608
        "q.bytes_limit, q.inodes_limit, q.bytes_used, q.inodes_used FROM walk w JOIN inodes e "
        "ON e.parent_ino = w.parent_ino AND e.name = w.name LEFT JOIN quotas q ON q.path = w.path "
        f"WHERE w.path IN ({entries.numbered(first, count)}) ORDER BY w.path"
    )


@lru_cache(maxsize=64)
def lock_runs(walk: int, kinds: tuple[str, ...], sizes: tuple[int, ...]) -> str:
    """One statement locking consecutive runs of paths in path order, each run with its own row lock (``kinds``:
    a locking suffix such as ``" FOR UPDATE"``, or ``""`` for a plain read), ``sizes[i]`` paths per run,
    placeholders numbered across the runs in order after those of a walk of ``walk`` steps.

    Each run is a ``WITH`` query and their results are appended in order (``UNION ALL``), which PostgreSQL
    executes run after run: rows are locked in the order of the runs, as by one statement per run.
    """
    ctes, selects, first = [], [], entries.first_after(walk)
    for i, (kind, size) in enumerate(zip(kinds, sizes, strict=True)):
        ctes.append(f"r{i} AS MATERIALIZED ({entries.at(first, size)} ORDER BY w.path{_of_entries(kind)})")
        selects.append(f"SELECT * FROM r{i}")  # noqa: S608
        first += size
    return entries.walk(walk) + ", " + ", ".join(ctes) + " " + " UNION ALL ".join(selects)


@lru_cache(maxsize=128)
def insert_inode(walk: int) -> str:
    """Insert the entry named ``$(n + 1)`` in the directory at path ``$n`` (the walk goes to that directory),
    with the :data:`~callfs.metadata.entries.ENTRY_COLUMNS` after them; returns a row unless the name is taken.
    A parent that is no directory leaves ``parent_ino`` ``NULL``: the statement fails."""
    n = entries.first_after(walk)
    return (
        f"{entries.walk(walk)} INSERT INTO inodes (parent_ino, name, {', '.join(entries.ENTRY_COLUMNS)}) "  # noqa: S608
        f"VALUES ({entries.directory_at(n)}, ${n + 1}, {entries.numbered(n + 2, _WIDTH)}) "
        "ON CONFLICT (parent_ino, name) DO NOTHING RETURNING name"
    )


INSERT_ROOT = (
    f"INSERT INTO inodes (parent_ino, name, {', '.join(entries.ENTRY_COLUMNS)}) "  # noqa: S608
    f"VALUES ({entries.ROOT_PARENT}, '', {entries.numbered(1, _WIDTH)}) "
    "ON CONFLICT (parent_ino, name) DO NOTHING RETURNING name"
)


INSERT_ENTRY = (
    f"INSERT INTO inodes (parent_ino, name, {', '.join(entries.ENTRY_COLUMNS)}) "  # noqa: S608
    f"VALUES ($1, $2, {entries.numbered(3, _WIDTH)}) ON CONFLICT (parent_ino, name) DO NOTHING RETURNING name"
)
"""Insert the entry named ``$2`` in the directory numbered ``$1``, with the columns after them."""


@lru_cache(maxsize=128)
def update_inode(walk: int) -> str:
    """Set every :data:`~callfs.metadata.entries.ENTRY_COLUMNS` of the entry at path ``$n`` to ``$(n + 1)...``;
    returns a row when it exists."""
    n = entries.first_after(walk)
    assignments = ", ".join(f"{column} = ${n + 1 + i}" for i, column in enumerate(entries.ENTRY_COLUMNS))
    return f"{entries.walk(walk)} UPDATE inodes SET {assignments} WHERE {entries.key_at(n)} RETURNING name"  # noqa: S608


@lru_cache(maxsize=128)
def delete_inode(walk: int) -> str:
    """Delete the one entry at path ``$n`` (rows below it untouched)."""
    return f"{entries.walk(walk)} DELETE FROM inodes WHERE {entries.key_at(entries.first_after(walk))}"  # noqa: S608


@lru_cache(maxsize=128)
def touch_directory(walk: int) -> str:
    """Move ``mtime`` and ``ctime`` of the directory at path ``$n`` to ``$(n + 1)`` unless its ``mtime`` is as
    late."""
    n = entries.first_after(walk)
    return (
        f"{entries.walk(walk)} UPDATE inodes SET mtime = ${n + 1}, ctime = ${n + 1} "  # noqa: S608
        f"WHERE {entries.key_at(n)} AND type = 'directory' AND mtime < ${n + 1}"
    )


@lru_cache(maxsize=128)
def has_children(walk: int) -> str:
    """A row when the directory at path ``$n`` holds an entry."""
    return (
        f"{entries.walk(walk)} SELECT 1 FROM inodes "  # noqa: S608
        f"WHERE parent_ino = {entries.directory_at(entries.first_after(walk))} LIMIT 1"
    )


@lru_cache(maxsize=128)
def list_children(walk: int, page: bool) -> str:
    """The entries of the directory at path ``$n`` as ``name`` and
    :func:`~callfs.metadata.entries.columns`, directories first then by name; with ``page``, those after
    ``($(n + 1), $(n + 2))`` in that order, at most ``$(n + 3)`` (the ``(parent_ino, type, name)`` index)."""
    n = entries.first_after(walk)
    after = f" AND (e.type, e.name) > (${n + 1}, ${n + 2})" if page else ""
    return (
        f"{entries.walk(walk)} SELECT e.name, {entries.columns('e')} FROM inodes e "  # noqa: S608
        f"WHERE e.parent_ino = {entries.directory_at(n)}{after} ORDER BY e.type, e.name"
        + (f" LIMIT ${n + 3}" if page else "")
    )


@lru_cache(maxsize=128)
def list_subtree(walk: int, lock: str = "") -> str:
    """Every entry below the directory at path ``$n`` (``$(n + 1)`` the depth of its children) by (depth,
    directories first, name, path); ``lock`` locks them (a locking suffix)."""
    n = entries.first_after(walk)
    return (
        entries.walk(walk) + entries.subtree_rows(n, n + 1)
        + f" ORDER BY b.depth, e.type, e.name, b.path{_of_entries(lock)}"
    )


@lru_cache(maxsize=128)
def list_tree(walk: int, page: bool) -> str:
    """Entries below the directory at path ``$n`` (``$(n + 1)`` the depth of its children) down to depth
    ``$(n + 2)``, by (depth, directories first, name, path); with ``page``, those after
    ``($(n + 3)...$(n + 6))`` in that order, at most ``$(n + 7)``."""
    n = entries.first_after(walk)
    after = f" WHERE (b.depth, e.type, e.name, b.path) > (${n + 3}, ${n + 4}, ${n + 5}, ${n + 6})" if page else ""
    return (
        entries.walk(walk) + entries.subtree_rows(n, n + 1, n + 2) + after
        + " ORDER BY b.depth, e.type, e.name, b.path" + (f" LIMIT ${n + 7}" if page else "")
    )


@lru_cache(maxsize=128)
def delete_subtree(walk: int) -> str:
    """Delete the entry at path ``$n`` (``$(n + 1)`` the depth of its children) and every entry below it,
    returning each as ``parent_ino, name`` and :data:`~callfs.metadata.entries.ENTRY_COLUMNS` (the rows removed:
    nothing a concurrent insert adds is returned without being deleted)."""
    n = entries.first_after(walk)
    return (
        entries.walk(walk) + entries.below(n, n + 1)  # noqa: S608
        + " DELETE FROM inodes WHERE (parent_ino, name) IN (SELECT parent_ino, name FROM below UNION ALL "  # noqa: S608
        f"SELECT parent_ino, name FROM walk WHERE path = ${n}) "
        f"RETURNING parent_ino, name, {', '.join(entries.ENTRY_COLUMNS)}"
    )


@lru_cache(maxsize=128)
def subtree_usage(walk: int) -> str:
    """``(bytes, inodes)`` below the directory at path ``$n`` (``$(n + 1)`` the depth of its children): file
    sizes and entries, a hard-linked inode counted once."""
    n = entries.first_after(walk)
    return (
        entries.walk(walk) + entries.below(n, n + 1)  # noqa: S608
        + " SELECT COALESCE(SUM(CASE WHEN type = 'file' THEN size ELSE 0 END), 0), COUNT(*) "
        "FROM (SELECT DISTINCT ino, type, size FROM below) AS i"
    )


@lru_cache(maxsize=128)
def linked_below(walk: int) -> str:
    """A row when a hard-linked file (``nlink`` > 1) lies below the directory at path ``$n``
    (``$(n + 1)`` the depth of its children)."""
    n = entries.first_after(walk)
    return entries.walk(walk) + entries.below(n, n + 1) + " SELECT 1 FROM below WHERE nlink > 1 LIMIT 1"  # noqa: S608


RENAME_ENTRY = "UPDATE inodes SET parent_ino = $3, name = $4 WHERE parent_ino = $1 AND name = $2 RETURNING name"
"""Move the entry ``($1, $2)`` to ``($3, $4)`` (directory inode number, name); returns a row when it moved."""


# The names of a hard-linked inode take the attributes and content just written through one of them (the name
# written included, to the same values; parameters: ino, then the :data:`SHARED_COLUMNS` of :func:`shared_params`).
SHARED_COLUMNS = tuple(column for column in entries.ENTRY_COLUMNS if column != "ino")
UPDATE_OTHER_NAMES = (
    "UPDATE inodes SET "  # noqa: S608 - constant column list
    + ", ".join(f"{column} = ${n}" for n, column in enumerate(SHARED_COLUMNS, start=2))
    + " WHERE ino = $1"
)


def shared_params(inode: Inode, encode_time: TimeEncoder) -> tuple[Any, ...]:
    """Parameters of :data:`UPDATE_OTHER_NAMES` for ``inode``: its number, then its :data:`SHARED_COLUMNS`."""
    written = dict(zip(entries.ENTRY_COLUMNS, inode_params(inode, encode_time), strict=True))
    return (inode.ino, *(written[column] for column in SHARED_COLUMNS))


# The names an inode keeps after some of its rows were deleted: their count, ctime moved (POSIX unlink).
UNLINK_NAMES = (
    "UPDATE inodes SET nlink = (SELECT COUNT(*) FROM inodes n WHERE n.ino = $1), ctime = $2 WHERE ino = $1 "
    "RETURNING nlink"
)
FIRST_ENTRY: EntryKey = (-1, "")
"""An entry key before every other."""
# Keyset pages of the files of one backend by entry.
BLOB_IDS_PAGE = (
    "SELECT parent_ino, name, blob_id FROM inodes WHERE type = 'file' AND backend = $1 AND instance_id = $2 "
    "AND blob_id IS NOT NULL AND (parent_ino, name) > ($3, $4) ORDER BY parent_ino, name LIMIT $5"
)
BLOB_IDS_PAGE_SHARED = (
    "SELECT parent_ino, name, blob_id FROM inodes WHERE type = 'file' AND backend = $1 AND instance_id IS NULL "
    "AND blob_id IS NOT NULL AND (parent_ino, name) > ($2, $3) ORDER BY parent_ino, name LIMIT $4"
)

INSERT_LINK = (
    f"INSERT INTO single_use_links ({LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"  # noqa: S608
)
UPSERT_ATTRIBUTES = (
    "INSERT INTO blob_attributes (blob_id, attributes) VALUES ($1, $2) "
    "ON CONFLICT (blob_id) DO UPDATE SET attributes = excluded.attributes"
)
SELECT_ATTRIBUTES = "SELECT attributes FROM blob_attributes WHERE blob_id = $1"
DELETE_ATTRIBUTES = "DELETE FROM blob_attributes WHERE blob_id = $1"
# Extended attributes (schema version 14): one row per name of an inode number, so every name of a hard-linked
# file sees them; a trigger on ``inodes`` deletes them with the inode's last name.
SELECT_XATTRS = "SELECT name, value FROM xattrs WHERE ino = $1 ORDER BY name"
SELECT_XATTR_SIZES = "SELECT name, length(value) FROM xattrs WHERE ino = $1 ORDER BY name"
SELECT_XATTR = "SELECT value FROM xattrs WHERE ino = $1 AND name = $2"
UPSERT_XATTR = (
    "INSERT INTO xattrs (ino, name, value) VALUES ($1, $2, $3) "
    "ON CONFLICT (ino, name) DO UPDATE SET value = excluded.value"
)
INSERT_XATTR = (
    "INSERT INTO xattrs (ino, name, value) VALUES ($1, $2, $3) ON CONFLICT (ino, name) DO NOTHING RETURNING name"
)
DELETE_XATTR = "DELETE FROM xattrs WHERE ino = $1 AND name = $2 RETURNING name"
COPY_XATTRS = "INSERT INTO xattrs (ino, name, value) SELECT $2, name, value FROM xattrs WHERE ino = $1"
COPY_USER_XATTRS = COPY_XATTRS + " AND substr(name, 1, 5) = 'user.'"
SELECT_LINK = f"SELECT {LINK_COLUMNS} FROM single_use_links WHERE token_id = $1"  # noqa: S608
CONSUME_LINK = (
    "UPDATE single_use_links SET status = 'used', used_at = $2, used_by_ip = $3 "  # noqa: S608
    f"WHERE token_id = $1 AND status = 'active' AND expires_at > $2 RETURNING {LINK_COLUMNS}"
)
SWEEP_LINKS = "DELETE FROM single_use_links WHERE expires_at <= $1 OR (status = 'used' AND used_at < $2)"

QUOTA_COLUMNS = "path, bytes_limit, inodes_limit, bytes_used, inodes_used"
QUOTAS_WITHIN = (
    f"SELECT {QUOTA_COLUMNS} FROM quotas WHERE path = $1 OR (path >= $2 AND path < $3) ORDER BY path"  # noqa: S608
)
UPSERT_QUOTA = (
    f"INSERT INTO quotas ({QUOTA_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (path) DO UPDATE SET "  # noqa: S608
    "bytes_limit = excluded.bytes_limit, inodes_limit = excluded.inodes_limit, "
    "bytes_used = excluded.bytes_used, inodes_used = excluded.inodes_used"
)
DELETE_QUOTA = "DELETE FROM quotas WHERE path = $1 RETURNING path"
ADD_USAGE = "UPDATE quotas SET bytes_used = bytes_used + $2, inodes_used = inodes_used + $3 WHERE path = $1"
SUBTREE_VERSIONS_USAGE = "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM object_versions WHERE path >= $1 AND path < $2"
DELETE_QUOTAS_SUBTREE = "DELETE FROM quotas WHERE path = $1 OR (path >= $2 AND path < $3)"
RENAME_QUOTA_TOP = "UPDATE quotas SET path = $2 WHERE path = $1"
RENAME_QUOTA_DESCENDANTS = (
    "UPDATE quotas SET path = $2 || substr(path, length(CAST($1 AS TEXT)) + 1) WHERE path >= $3 AND path < $4"
)

NODE_COLUMNS = "instance_id, url, version, capacity_bytes, free_bytes, started_at, last_heartbeat"
UPSERT_NODE = (
    f"INSERT INTO cluster_nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "  # noqa: S608
    "ON CONFLICT (instance_id) DO UPDATE SET url = excluded.url, version = excluded.version, "
    "capacity_bytes = excluded.capacity_bytes, free_bytes = excluded.free_bytes, "
    "started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat"
)
LIST_NODES = f"SELECT {NODE_COLUMNS} FROM cluster_nodes ORDER BY instance_id"  # noqa: S608

ACCESS_KEY_COLUMNS = "key_hash, user_name, scope, created_at"
INSERT_ACCESS_KEY = (
    f"INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4) "  # noqa: S608
    "ON CONFLICT (key_hash) DO NOTHING"
)
SELECT_ACCESS_KEY = f"SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE key_hash = $1"  # noqa: S608
DELETE_ACCESS_KEYS = "DELETE FROM access_keys WHERE user_name = $1"


SUBDIRECTORY_BATCH = 500
"""Directories whose subdirectories one statement counts (:func:`count_subdirectories`)."""


@lru_cache(maxsize=8)
def count_subdirectories(count: int) -> str:
    """``(parent_ino, n)`` for each of ``count`` given directory inode numbers (``$1..$count``) with ``n`` > 0
    child directories (the ``(parent_ino, type, name)`` index answers it)."""
    return (f"SELECT parent_ino, count(*) FROM inodes WHERE parent_ino IN ({entries.numbered(1, count)}) "  # noqa: S608
            "AND type = 'directory' GROUP BY parent_ino")


@lru_cache(maxsize=64)
def select_quotas(count: int) -> str:
    """``SELECT`` of the quotas on ``count`` given paths (``$1..$count``), ordered by path."""
    return f"SELECT {QUOTA_COLUMNS} FROM quotas WHERE path IN ({entries.numbered(1, count)}) ORDER BY path"  # noqa: S608


@lru_cache(maxsize=64)
def charge_quotas(count: int) -> str:
    """``UPDATE`` adding ``$1`` bytes and ``$2`` inodes to the usage of the quotas on ``count`` paths
    (``$3``...), returning each changed quota as it is now (:data:`QUOTA_COLUMNS`). Locks the rows it changes."""
    return (
        "UPDATE quotas SET bytes_used = bytes_used + $1, inodes_used = inodes_used + $2 "  # noqa: S608
        f"WHERE path IN ({entries.numbered(3, count)}) RETURNING {QUOTA_COLUMNS}"
    )


@lru_cache(maxsize=64)
def unnamed_blobs(count: int, first: int = 1) -> str:
    """``SELECT`` of the ``count`` (backend, blob id) pairs given as parameters from ``$first`` on that no file
    and no object version names any more, as ``backend, blob_id``."""
    pairs = ", ".join(f"(CAST(${n} AS TEXT), CAST(${n + 1} AS TEXT))" for n in range(first, first + 2 * count, 2))
    return (
        f"WITH g (backend, blob_id) AS (VALUES {pairs}) SELECT g.backend, g.blob_id FROM g "  # noqa: S608
        "WHERE NOT EXISTS (SELECT 1 FROM inodes i WHERE i.backend = g.backend AND i.blob_id = g.blob_id "
        "AND i.type = 'file') AND NOT EXISTS (SELECT 1 FROM object_versions v WHERE v.backend = g.backend "
        "AND v.blob_id = g.blob_id)"
    )


@lru_cache(maxsize=64)
def settle_all(quota_count: int, blob_count: int) -> str:
    """PostgreSQL's one statement for :meth:`Queries.settle`: :func:`charge_quotas` on ``quota_count`` paths and
    :func:`unnamed_blobs` of ``blob_count`` pairs (after the paths), whose attributes it deletes.

    Rows: ``(0, quota columns, NULL)`` per charged quota, then ``(1, backend, NULL, NULL, NULL, NULL, blob_id)``
    per blob no file names any more.
    """
    parts, selects = [], []
    if quota_count:
        parts.append(f"usage AS ({charge_quotas(quota_count)})")
        selects.append(
            "SELECT 0, path, bytes_limit, inodes_limit, bytes_used, inodes_used, CAST(NULL AS TEXT) FROM usage"
        )
    if blob_count:
        parts.append(f"unnamed AS MATERIALIZED ({unnamed_blobs(blob_count, 3 + quota_count if quota_count else 1)})")
        parts.append("dropped AS (DELETE FROM blob_attributes WHERE blob_id IN (SELECT blob_id FROM unnamed))")
        selects.append("SELECT 1, backend, NULL, NULL, NULL, NULL, blob_id FROM unnamed")
    return "WITH " + ", ".join(parts) + " " + " UNION ALL ".join(selects)


def quota_from_row(row: Sequence[Any]) -> Quota:
    return Quota(path=row[0], bytes_limit=row[1], inodes_limit=row[2], bytes_used=int(row[3]),
                 inodes_used=int(row[4]))


# Object versions (S3 bucket versioning): noncurrent versions and delete markers of the file at ``path``, and
# the versioning status of a bucket directory. A version counts against the quotas governing its path as one
# inode and its size, as the file it was did.
VERSION_COLUMNS = (
    "path, version_id, seq, delete_marker, size, mode, owner, grp, mtime, version, backend, blob_id, instance_id, "
    "ino, layout"
)
INSERT_VERSION = (
    f"INSERT INTO object_versions ({VERSION_COLUMNS}) "  # noqa: S608
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
)
SELECT_VERSION = f"SELECT {VERSION_COLUMNS} FROM object_versions WHERE path = $1 AND version_id = $2"  # noqa: S608
DELETE_VERSION = (
    f"DELETE FROM object_versions WHERE path = $1 AND version_id = $2 RETURNING {VERSION_COLUMNS}"  # noqa: S608
)
VERSIONS_OF = f"SELECT {VERSION_COLUMNS} FROM object_versions WHERE path = $1 ORDER BY seq DESC"  # noqa: S608
VERSIONS_UNDER = (
    f"SELECT {VERSION_COLUMNS} FROM object_versions WHERE path >= $1 AND path < $2 "  # noqa: S608
    "ORDER BY path, seq DESC"
)
NEXT_VERSION_SEQ = "SELECT COALESCE(MAX(seq), 0) + 1 FROM object_versions WHERE path = $1"
VERSIONS_EXIST_UNDER = "SELECT 1 FROM object_versions WHERE path >= $1 AND path < $2 LIMIT 1"
DELETE_VERSIONS_SUBTREE = (
    f"DELETE FROM object_versions WHERE path >= $1 AND path < $2 RETURNING {VERSION_COLUMNS}"  # noqa: S608
)
RENAME_VERSIONS_DESCENDANTS = (
    "UPDATE object_versions SET path = $2 || substr(path, length(CAST($1 AS TEXT)) + 1) "
    "WHERE path >= $3 AND path < $4"
)
VERSION_BLOBS_PAGE = (
    "SELECT path, version_id, blob_id FROM object_versions WHERE backend = $1 AND instance_id = $2 "
    "AND blob_id IS NOT NULL AND (path, version_id) > ($3, $4) ORDER BY path, version_id LIMIT $5"
)
VERSION_BLOBS_PAGE_SHARED = (
    "SELECT path, version_id, blob_id FROM object_versions WHERE backend = $1 AND instance_id IS NULL "
    "AND blob_id IS NOT NULL AND (path, version_id) > ($2, $3) ORDER BY path, version_id LIMIT $4"
)
SELECT_VERSIONING = "SELECT status FROM bucket_versioning WHERE path = $1"
UPSERT_VERSIONING = (
    "INSERT INTO bucket_versioning (path, status) VALUES ($1, $2) "
    "ON CONFLICT (path) DO UPDATE SET status = excluded.status"
)
DELETE_VERSIONING_SUBTREE = "DELETE FROM bucket_versioning WHERE path = $1 OR (path >= $2 AND path < $3)"
RENAME_VERSIONING_TOP = "UPDATE bucket_versioning SET path = $2 WHERE path = $1"
RENAME_VERSIONING_DESCENDANTS = (
    "UPDATE bucket_versioning SET path = $2 || substr(path, length(CAST($1 AS TEXT)) + 1) "
    "WHERE path >= $3 AND path < $4"
)


def version_from_row(row: Sequence[Any], decode_time: TimeDecoder) -> ObjectVersion:
    """An :class:`ObjectVersion` from a row of :data:`VERSION_COLUMNS`."""
    return ObjectVersion(
        path=row[0], version_id=row[1], seq=int(row[2]), delete_marker=bool(row[3]), size=int(row[4]),
        mode=int(row[5]), owner=row[6], group=row[7], mtime=decode_time(row[8]), version=int(row[9]), backend=row[10],
        blob_id=row[11], instance_id=row[12], ino=int(row[13]), layout=Layout(row[14]),
    )


def version_params(version: ObjectVersion, encode_time: TimeEncoder) -> tuple[Any, ...]:
    """Statement parameters for the :data:`VERSION_COLUMNS` of ``version``."""
    return (
        version.path, version.version_id, version.seq, int(version.delete_marker), version.size, version.mode,
        version.owner, version.group, encode_time(version.mtime), version.version, version.backend, version.blob_id,
        version.instance_id, version.ino, version.layout.value,
    )


# Blocks: a file's block list (``file_blocks``, keyed by inode number) and one reference-counted row per stored
# block (``blocks``, keyed by backend, location and SHA-256). ``location`` is the owning node's instance id for a
# node-local backend and '' for a shared one; ``unreferenced_since`` is when ``refs`` last dropped to zero (or a
# writer reserved the block); ``collecting`` is 1 once the garbage collector has claimed the block: from then on
# nobody may reference it, and its object and row are deleted (see callfs.blocks.collector).
SELECT_FILE_BLOCKS = "SELECT idx, hash, size FROM file_blocks WHERE ino = $1 ORDER BY idx"
SELECT_FILE_BLOCKS_FROM = "SELECT idx, hash, size FROM file_blocks WHERE ino = $1 AND idx >= $2 ORDER BY idx"
DELETE_FILE_BLOCK = "DELETE FROM file_blocks WHERE ino = $1 AND idx = $2"
DELETE_FILE_BLOCKS_FROM = "DELETE FROM file_blocks WHERE ino = $1 AND idx >= $2"
INSERT_FILE_BLOCK = "INSERT INTO file_blocks (ino, idx, hash, size) VALUES ($1, $2, $3, $4)"
RESERVE_BLOCK = (
    "INSERT INTO blocks (backend, location, hash, size, stored_size, refs, unreferenced_since, collecting) "
    "VALUES ($1, $2, $3, $4, $5, 0, $6, 0) ON CONFLICT (backend, location, hash) DO UPDATE SET "
    "unreferenced_since = CASE WHEN blocks.refs = 0 THEN excluded.unreferenced_since "
    "ELSE blocks.unreferenced_since END WHERE blocks.collecting = 0 RETURNING refs"
)
LIVE_BLOCK = "SELECT hash FROM blocks WHERE backend = $1 AND location = $2 AND hash = $3 AND collecting = 0"
ACQUIRE_BLOCK = (
    "UPDATE blocks SET refs = refs + $4, unreferenced_since = NULL "
    "WHERE backend = $1 AND location = $2 AND hash = $3 AND collecting = 0"
)
RELEASE_BLOCK = (
    "UPDATE blocks SET refs = refs - $4, "
    "unreferenced_since = CASE WHEN refs - $4 = 0 THEN $5 ELSE unreferenced_since END "
    "WHERE backend = $1 AND location = $2 AND hash = $3"
)
CLAIM_BLOCKS = (
    "UPDATE blocks SET collecting = 1 WHERE backend = $1 AND location = $2 AND refs = 0 AND hash IN ("
    "SELECT hash FROM blocks WHERE backend = $1 AND location = $2 AND refs = 0 "
    "AND (collecting = 1 OR unreferenced_since <= $3) ORDER BY hash LIMIT $4) RETURNING hash"
)
FORGET_BLOCK = (
    "DELETE FROM blocks WHERE backend = $1 AND location = $2 AND hash = $3 AND collecting = 1 RETURNING hash"
)
SHARE_FILE_BLOCKS = (
    "INSERT INTO file_blocks (ino, idx, hash, size) SELECT $2, idx + $3, hash, size FROM file_blocks WHERE ino = $1"
)
ACQUIRE_FILE_BLOCKS = (
    "UPDATE blocks SET refs = refs + (SELECT COUNT(*) FROM file_blocks f WHERE f.ino = $3 AND f.idx >= $4 "
    "AND f.hash = blocks.hash), unreferenced_since = NULL WHERE backend = $1 AND location = $2 AND collecting = 0 "
    "AND hash IN (SELECT hash FROM file_blocks WHERE ino = $3 AND idx >= $4)"
)
COUNT_FILE_BLOCK_HASHES = "SELECT COUNT(DISTINCT hash) FROM file_blocks WHERE ino = $1 AND idx >= $2"
BLOB_REFERENCED = (
    "SELECT 1 WHERE EXISTS (SELECT 1 FROM inodes WHERE backend = $1 AND blob_id = $2 AND type = 'file') "
    "OR EXISTS (SELECT 1 FROM object_versions WHERE backend = $1 AND blob_id = $2)"
)
BLOCK_KNOWN = "SELECT 1 FROM blocks WHERE backend = $1 AND location = $2 AND hash = $3"
BLOCK_TOTALS = (
    "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(stored_size), 0) FROM blocks "
    "WHERE backend = $1 AND location = $2"
)

# Replicas of the blocks of a node-local backend: one row per node holding a copy of the block (backend, location,
# hash), the owner's own copy included. A row is written before the copy's bytes (like a block's reservation), so
# every copy that may exist is known to the collector; a block without rows (written before replication) lives on
# its location's node only.
ADD_BLOCK_REPLICA = (
    "INSERT INTO block_replicas (backend, location, hash, node) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (backend, location, hash, node) DO NOTHING"
)
DROP_BLOCK_REPLICA = "DELETE FROM block_replicas WHERE backend = $1 AND location = $2 AND hash = $3 AND node = $4"
SELECT_BLOCK_REPLICAS = (
    "SELECT node FROM block_replicas WHERE backend = $1 AND location = $2 AND hash = $3 ORDER BY node"
)
REPLICAS_ON_NODE = (
    "SELECT r.location, r.hash FROM block_replicas r JOIN blocks b ON b.backend = r.backend "
    "AND b.location = r.location AND b.hash = r.hash WHERE r.backend = $1 AND r.node = $2 AND b.refs > 0 "
    "AND b.collecting = 0 AND (r.location > $3 OR (r.location = $3 AND r.hash > $4)) "
    "ORDER BY r.location, r.hash LIMIT $5"
)
UNDER_REPLICATED = (
    "SELECT COUNT(*) FROM blocks b WHERE b.backend = $1 AND b.refs > 0 AND b.collecting = 0 AND ("
    "SELECT COUNT(*) FROM block_replicas r WHERE r.backend = b.backend AND r.location = b.location "
    "AND r.hash = b.hash AND r.node IN (SELECT instance_id FROM cluster_nodes WHERE last_heartbeat >= $2)) < $3"
)

# Nodes being drained (see callfs.drain): they take no new copies, and every block with a copy there is copied
# until ``replicas`` copies exist on nodes that stay.
MARK_LEAVING = "INSERT INTO leaving_nodes (instance_id, since) VALUES ($1, $2) ON CONFLICT (instance_id) DO NOTHING"
UNMARK_LEAVING = "DELETE FROM leaving_nodes WHERE instance_id = $1 AND lost_since IS NULL"
LIST_LEAVING = "SELECT instance_id FROM leaving_nodes ORDER BY instance_id"
# Nodes declared lost for good (see callfs.drain): leaving for ever, and their copies gone with their disk.
MARK_LOST = (
    "INSERT INTO leaving_nodes (instance_id, since, lost_since) VALUES ($1, $2, $3) ON CONFLICT (instance_id) "
    "DO UPDATE SET lost_since = excluded.lost_since WHERE leaving_nodes.lost_since IS NULL"
)
LIST_LOST = "SELECT instance_id, lost_since FROM leaving_nodes WHERE lost_since IS NOT NULL ORDER BY instance_id"
COUNT_NODE_REPLICAS = "SELECT COUNT(*) FROM block_replicas WHERE backend = $1 AND node = $2"
# Referenced blocks that rely on node $2: a copy there (or no recorded copy at all, then the block's only copy is
# its location's), and fewer than $4 copies on nodes that are live (heartbeat at $3 or later) and not leaving.
BLOCKS_RELYING_ON = (
    "SELECT COUNT(*) FROM blocks b WHERE b.backend = $1 AND b.refs > 0 AND b.collecting = 0 AND ("
    "EXISTS (SELECT 1 FROM block_replicas r WHERE r.backend = b.backend AND r.location = b.location "
    "AND r.hash = b.hash AND r.node = $2) OR (b.location = $2 AND NOT EXISTS (SELECT 1 FROM block_replicas r "
    "WHERE r.backend = b.backend AND r.location = b.location AND r.hash = b.hash))) AND ("
    "SELECT COUNT(*) FROM block_replicas r WHERE r.backend = b.backend AND r.location = b.location "
    "AND r.hash = b.hash AND r.node IN (SELECT instance_id FROM cluster_nodes WHERE last_heartbeat >= $3) "
    "AND r.node NOT IN (SELECT instance_id FROM leaving_nodes)) < $4"
)
UNRECORDED_BLOCKS = (
    "SELECT b.hash FROM blocks b WHERE b.backend = $1 AND b.location = $2 AND b.refs > 0 AND b.collecting = 0 "
    "AND NOT EXISTS (SELECT 1 FROM block_replicas r WHERE r.backend = b.backend AND r.location = b.location "
    "AND r.hash = b.hash) ORDER BY b.hash LIMIT $3"
)
# Files whose bytes are one blob on node $1's local disk (a file in blocks is read from the copies of its blocks),
# by entry key after ($2, $3).
NODE_BLOB_FILES = (
    "SELECT parent_ino, name, backend FROM inodes WHERE type = 'file' AND layout = 'blob' AND instance_id = $1 "
    "AND blob_id IS NOT NULL AND (parent_ino, name) > ($2, $3) ORDER BY parent_ino, name LIMIT $4"
)
COUNT_NODE_BLOB_FILES = (
    "SELECT COUNT(*) FROM inodes WHERE type = 'file' AND layout = 'blob' AND instance_id = $1 AND blob_id IS NOT NULL"
)

# Files of one backend whose bytes are one blob owned by node $2 (NULL: a shared backend), for their conversion to
# blocks (callfs.convert); counted once per inode (hard links share one).
_BLOB_FILES_WHERE = "type = 'file' AND layout = 'blob' AND backend = $1 AND blob_id IS NOT NULL AND "
BLOB_FILES = (
    f"SELECT parent_ino, name, size FROM inodes WHERE {_BLOB_FILES_WHERE}instance_id = $2 "  # noqa: S608
    "AND (parent_ino, name) > ($3, $4) ORDER BY parent_ino, name LIMIT $5"
)
BLOB_FILES_SHARED = (
    f"SELECT parent_ino, name, size FROM inodes WHERE {_BLOB_FILES_WHERE}instance_id IS NULL "  # noqa: S608
    "AND (parent_ino, name) > ($2, $3) ORDER BY parent_ino, name LIMIT $4"
)
COUNT_BLOB_FILES = (
    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (SELECT DISTINCT ino, size FROM inodes "  # noqa: S608
    f"WHERE {_BLOB_FILES_WHERE}instance_id = $2) AS f"
)
COUNT_BLOB_FILES_SHARED = (
    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (SELECT DISTINCT ino, size FROM inodes "  # noqa: S608
    f"WHERE {_BLOB_FILES_WHERE}instance_id IS NULL) AS f"
)


def block_location(instance_id: str | None) -> str:
    """The ``location`` column of a block: the owning node's instance id, ``''`` on a shared backend."""
    return instance_id or ""


INSERT_MIGRATION = "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)"
SELECT_MIGRATIONS = "SELECT version FROM schema_migrations"


def link_before_consume(consumed: SingleUseLink) -> SingleUseLink:
    """The link as it was before :data:`CONSUME_LINK` flipped it (``RETURNING`` yields the new row).

    The statement only matches ``active`` links, and an active link has never been used.
    """
    return replace(consumed, status="active", used_at=None, used_by_ip=None)


_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=256)
def sqlite_placeholders(sql: str) -> str:
    """``sql`` with PostgreSQL's ``$n`` placeholders rewritten to SQLite's numbered ``?n`` form."""
    return _PLACEHOLDER.sub(r"?\1", sql)


def pending_migrations(migrations: Sequence[Migration], applied: set[int]) -> list[Migration]:
    """The migrations whose version is not in ``applied``, in order."""
    check_migrations(migrations)
    return [m for m in migrations if m.version not in applied]


# --- Operations --------------------------------------------------------------------------------------------

Row = Sequence[Any]


class Executor(Protocol):
    """What a store supplies to :class:`Queries`: one connection's (or pool's) way to run the shared SQL.

    ``sql`` uses ``$n`` placeholders; ``params`` are positional. ``for_update_suffix`` is appended to a
    ``SELECT`` that locks its row (``" FOR UPDATE"`` on PostgreSQL, empty on SQLite whose ``BEGIN IMMEDIATE``
    already serialises writers), ``for_share_suffix`` to one that only keeps its rows from being re-keyed or
    deleted (``" FOR KEY SHARE"``; empty on SQLite). Implementations raise
    :class:`~callfs.metadata.base.MetadataUnavailable` when the database cannot be reached and
    :class:`~callfs.metadata.base.UniqueViolation` when a statement would duplicate a key.
    """

    for_update_suffix: str
    for_share_suffix: str
    writable_ctes: bool
    """True when the database runs data-changing ``WITH`` queries (PostgreSQL): :meth:`Queries.settle` is then one
    statement; SQLite runs its parts one after the other."""

    def encode_time(self, value: datetime) -> Any:
        """An aware datetime as the column value this database stores."""
        ...

    def decode_time(self, value: Any) -> datetime:
        """A stored time column value as an aware UTC datetime."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """Every row of a query (``[]`` for a statement returning nothing; the cheapest way to run one)."""
        ...

    async def count(self, sql: str, params: Sequence[Any]) -> int:
        """Run a data-changing statement; the number of rows it changed."""
        ...


def _whole_chains(wanted: Collection[str], found: list[Inode]) -> list[Inode]:
    """``found`` (a locking read of the paths ``wanted``) without the entries below a wanted directory that is not
    among them.

    The walk of a locking read sees the tree as the statement started; an entry re-keyed (renamed, moved, deleted)
    by a transaction it then waited for is left out when its lock is granted, but the entries below it, whose own
    rows did not change, are found through the old path. They are not at that path any more: they go too, as
    they would have had the rename re-keyed them.
    """
    requested, present = set(wanted), {inode.path for inode in found}
    return [inode for inode in found
            if all(a in present for a in paths.ancestors(inode.path) if a in requested)]


class Queries:
    """The :class:`~callfs.metadata.base.MetadataTxn` operations (plus the store-level reads) on one executor.

    Atomicity of the multi-statement operations (``delete_subtree``, ``rename_subtree``) is the caller's
    job: stores only call them on an executor bound to an open transaction.
    """

    __slots__ = ("_deferred_touches", "_x")

    def __init__(self, executor: Executor, *, defer_touches: bool = False) -> None:
        self._x = executor
        self._deferred_touches: dict[str, datetime] | None = {} if defer_touches else None
        """With ``defer_touches``: the directory times :meth:`touch_directory` moves once the transaction has
        committed (:meth:`run_deferred_touches`), by path."""

    def _inode(self, row: Row) -> Inode:
        return inode_from_row(row, self._x.decode_time)

    async def _at(self, sql_for_walk: Callable[[int], str], path: str, *extra: Any) -> Sequence[Row]:
        """Run the statement ``sql_for_walk(steps)`` about the entry at ``path``: the walk to it, the path, then
        ``extra`` parameters."""
        steps = entries.steps([path])
        return await self._x.fetch(sql_for_walk(len(steps)), [*entries.flat(steps), path, *extra])

    async def _select(self, wanted: Collection[str], lock: str = "") -> list[Inode]:
        """The inodes at the paths ``wanted`` that exist, ordered by path, locked by ``lock``, in one statement."""
        ordered = sorted(set(wanted))
        if not ordered:
            return []
        steps = entries.steps(ordered)
        rows = await self._x.fetch(select_inodes(len(steps), len(ordered), lock), [*entries.flat(steps), *ordered])
        found = [self._inode(row) for row in rows]
        return _whole_chains(ordered, found) if lock else found

    async def get(self, path: str, *, for_update: bool = False) -> Inode | None:
        """The inode at ``path`` or ``None``; ``for_update`` locks the row until the transaction ends, and its
        ancestors but the root against a rename or delete (which would move the row away from ``path`` without
        changing it)."""
        if for_update:
            return (await self.lock(set(paths.ancestors(path)) - {paths.ROOT}, exclusive=[path])).get(path)
        found = await self._select([path])
        return found[0] if found else None

    async def get_many(self, paths: Sequence[str]) -> list[Inode]:
        """The inodes that exist at any of ``paths`` (typically a path and its ancestors), root first, in one
        query; absent paths are simply missing from the result."""
        return await self._select(paths)

    async def get_chain(self, paths: Sequence[str]) -> tuple[list[Inode], list[Quota]]:
        """The inodes at any of ``paths`` (root first) and the quotas set on them, ordered by path, in one query."""
        wanted = sorted(set(paths))
        if not wanted:
            return [], []
        steps = entries.steps(wanted)
        rows = await self._x.fetch(select_chain(len(steps), len(wanted)), [*entries.flat(steps), *wanted])
        width = 1 + _WIDTH
        quotas = [quota_from_row((row[0], *row[width:])) for row in rows if row[width + 2] is not None]
        return [self._inode(row) for row in rows], quotas

    async def insert(self, inode: Inode, *, parent: Inode | None = None) -> bool:
        """Insert ``inode`` in its parent directory, which must exist (or as the root); ``False`` (nothing changed)
        when its name is taken there. ``parent``: that directory as read (and locked) in this transaction, whose
        number then needs no walk."""
        params = inode_params(inode, self._x.encode_time)
        holder = inode.parent
        if holder is None:  # the root, which the store creates when it starts
            return bool(await self._x.fetch(INSERT_ROOT, params))
        if parent is not None:
            if parent.path != holder or not parent.is_dir:
                raise ValueError(f"{parent.path!r} is not the directory holding {inode.path!r}")
            return bool(await self._x.fetch(INSERT_ENTRY, (parent.ino, inode.name, *params)))
        steps = entries.steps([holder])
        return bool(await self._x.fetch(insert_inode(len(steps)), [*entries.flat(steps), holder, inode.name, *params]))

    async def lock(
        self, paths: Collection[str], *, exclusive: Collection[str] = (), read: Collection[str] = ()
    ) -> dict[str, Inode]:
        """Lock the inodes at ``paths`` in path order (``exclusive`` ones for update, the others against
        re-keying and deletion) until the transaction ends, and read those at ``read`` without a lock; the ones
        that exist, by path. One statement (:func:`lock_runs` when the kinds of lock differ)."""
        runs: list[tuple[str, list[str]]] = []
        for path in sorted(set(paths) | set(exclusive) | set(read)):
            if path in exclusive:
                kind = self._x.for_update_suffix
            elif path in paths:
                kind = self._x.for_share_suffix
            else:
                kind = ""
            if runs and runs[-1][0] == kind:
                runs[-1][1].append(path)
            else:
                runs.append((kind, [path]))
        if not runs:
            return {}
        if len(runs) == 1:
            found = await self._select(runs[0][1], runs[0][0])
        else:
            wanted = [path for _, run in runs for path in run]
            steps = entries.steps(wanted)
            sql = lock_runs(len(steps), tuple(kind for kind, _ in runs), tuple(len(run) for _, run in runs))
            found = [self._inode(row) for row in await self._x.fetch(sql, [*entries.flat(steps), *wanted])]
            found = _whole_chains(wanted, found)
        return {inode.path: inode for inode in found}

    async def update(self, inode: Inode) -> None:
        """Replace every field of the inode at ``inode.path``; the other names of a hard-linked inode
        (``nlink`` > 1) take the same attributes and content.

        Raises:
            LookupError: no inode exists at that path (the caller must have read it first).
        """
        if not await self._at(update_inode, inode.path, *inode_params(inode, self._x.encode_time)):
            raise LookupError(f"no inode at {inode.path!r} to update")
        if inode.nlink > 1:
            await self._x.count(UPDATE_OTHER_NAMES, shared_params(inode, self._x.encode_time))

    async def delete(self, path: str) -> None:
        """Delete the one inode at ``path`` (descendants untouched); nothing happens when it is absent."""
        await self._at(delete_inode, path)

    async def touch_directory(self, path: str, at: datetime) -> None:
        """Move the directory's ``mtime`` and ``ctime`` to ``at`` unless its ``mtime`` is as late already: now,
        or, on an executor made with ``defer_touches``, by :meth:`run_deferred_touches` after the commit."""
        if self._deferred_touches is not None:
            self._deferred_touches[path] = max(at, self._deferred_touches.get(path, at))
            return
        await self._at(touch_directory, path, self._x.encode_time(at))

    async def run_deferred_touches(self) -> None:
        """The directory times deferred by :meth:`touch_directory`, one autocommitted statement each, in path
        order (each row lock held for its own statement only)."""
        touches, self._deferred_touches = self._deferred_touches or {}, {}
        for path in sorted(touches):
            await self._at(touch_directory, path, self._x.encode_time(touches[path]))

    async def has_children(self, path: str) -> bool:
        """True when the directory at ``path`` holds an entry."""
        return bool(await self._at(has_children, path))

    async def delete_subtree(self, path: str) -> list[Inode]:
        """Delete ``path``, its descendants and their quotas; return every deleted inode ordered by path
        (``path`` first), each with ``nlink`` the number of names its inode keeps elsewhere (0: gone, its
        content let go; more: a hard-linked file whose content stays). The object versions below a deleted
        directory go with it, returned as the files they name (a delete marker: a file without content), as
        does the versioning status of the buckets there.

        One ``DELETE ... RETURNING``: the files returned are exactly the rows removed, even if another
        transaction adds a file below ``path`` meanwhile (no blob can be orphaned by a race here). The block
        lists of the deleted files are released in the same transaction.
        """
        rows = await self._at(delete_subtree, path, paths.depth_of(path) + 1)
        deleted = self._paths_of_removed(path, rows)
        if any(inode.is_dir for inode in deleted):  # quotas and versions lie below directories only
            low, high = subtree_bounds(path)
            await self._x.count(DELETE_QUOTAS_SUBTREE, (path, low, high))
            await self._x.count(DELETE_VERSIONING_SUBTREE, (path, low, high))
            deleted += [version_from_row(row, self._x.decode_time).as_inode()
                        for row in await self._x.fetch(DELETE_VERSIONS_SUBTREE, (low, high))]
        deleted = await self._unlink(deleted)
        for inode in deleted:
            if not inode.nlink:
                await self.release_blocks(inode)
        return sorted(deleted, key=lambda inode: inode.path)

    def _paths_of_removed(self, top: str, rows: Sequence[Row]) -> list[Inode]:
        """The inodes of the entry rows :func:`delete_subtree` returned (``parent_ino, name`` then the columns),
        each with its path: ``top`` for the one row no other removed directory holds, the others below it."""
        ino_at = 2 + entries.ENTRY_COLUMNS.index("ino")
        held: dict[int, list[Row]] = {}
        for row in rows:
            held.setdefault(int(row[0]), []).append(row)
        directories = {int(row[ino_at]) for row in rows if row[2] == InodeType.DIRECTORY.value}
        pending = [(top, row) for row in rows if int(row[0]) not in directories]
        out: list[Inode] = []
        while pending:
            path, row = pending.pop()
            inode = self._inode((path, *row[2:]))
            out.append(inode)
            if inode.is_dir:
                pending.extend((paths.join(path, child[1]), child) for child in held.get(inode.ino, ()))
        return out

    async def _unlink(self, deleted: list[Inode]) -> list[Inode]:
        """``deleted`` (rows just removed) with ``nlink`` set to the names each inode has left: 0 when it is
        gone (its content is let go), more for a hard-linked file named elsewhere (its other names count one
        fewer link and their ``ctime`` moves; its content stays)."""
        left: dict[int, int] = {}
        moment = self._x.encode_time(utcnow())
        for ino in sorted({inode.ino for inode in deleted if inode.nlink > 1 and not inode.is_dir}):
            rows = await self._x.fetch(UNLINK_NAMES, (ino, moment))
            left[ino] = int(rows[0][0]) if rows else 0
        return [inode.evolve(nlink=left.get(inode.ino, 0)) for inode in deleted]

    async def rename_subtree(self, src: str, dst: str) -> int:
        """Move the entry ``src`` to ``dst`` (one row, whatever lies below it) and the quotas, object versions
        and bucket versioning status at and below it; 1 when it moved, 0 when ``src`` is absent.

        Raises:
            ValueError: ``src`` or ``dst`` is the root, or ``dst`` lies within ``src``.
            TargetExists: ``dst`` already exists, or a concurrent transaction created it first (a ``ValueError``
                too; the transaction must be rolled back).
            LookupError: the parent of ``dst`` is no directory.
        """
        check_rename(src, dst)
        src_parent, dst_parent = paths.parent_of(src) or paths.ROOT, paths.parent_of(dst) or paths.ROOT
        found = {inode.path: inode for inode in await self._select([src, src_parent, dst_parent, dst])}
        if dst in found:
            raise TargetExists(f"rename target {dst} already exists")
        if src not in found:
            return 0
        holder = found.get(dst_parent)
        if holder is None or not holder.is_dir:
            raise LookupError(f"no directory at {dst_parent!r} to move {src!r} into")
        try:
            moved = await self._x.fetch(RENAME_ENTRY, (found[src_parent].ino, paths.name_of(src), holder.ino,
                                                         paths.name_of(dst)))
        except UniqueViolation as exc:
            raise TargetExists(f"rename target {dst} already exists (created concurrently)") from exc
        if not moved:
            return 0
        low, high = subtree_bounds(src)
        await self._x.count(RENAME_QUOTA_TOP, (src, dst))
        await self._x.count(RENAME_QUOTA_DESCENDANTS, (src, dst, low, high))
        await self._x.count(RENAME_VERSIONING_TOP, (src, dst))
        await self._x.count(RENAME_VERSIONING_DESCENDANTS, (src, dst, low, high))
        await self._x.count(RENAME_VERSIONS_DESCENDANTS, (src, dst, low, high))
        return 1

    async def file_blocks(self, ino: int, *, start: int = 0) -> list[FileBlock]:
        """The block list of the file numbered ``ino`` from block index ``start`` on, ordered by index (holes,
        which read as zeros, are simply absent)."""
        sql, params = (SELECT_FILE_BLOCKS, (ino,)) if start == 0 else (SELECT_FILE_BLOCKS_FROM, (ino, start))
        return [FileBlock(int(r[0]), r[1], int(r[2])) for r in await self._x.fetch(sql, params)]

    async def reserve_block(self, backend: str, location: str, block_hash: str, size: int,
                            stored_size: int) -> int | None:
        """Announce a block about to be written (before its bytes): create its row unreferenced, or refresh
        the time of an unreferenced one, so the collector leaves it alone for its grace period.

        Returns the references the block already had (``> 0``: its bytes are stored and need not be written
        again), or ``None`` when the collector has claimed it (wait for the collection to end and retry).
        """
        rows = await self._x.fetch(RESERVE_BLOCK, (
            backend, location, block_hash, size, stored_size, self._x.encode_time(utcnow()),
        ))
        return int(rows[0][0]) if rows else None

    async def replace_blocks(self, inode: Inode, changed: Sequence[FileBlock], count: int) -> None:
        """Make the block list of ``inode`` (by its ``ino``) hold ``changed`` and drop every block at index
        ``count`` or above; other blocks stay. Each block entering the list gains a reference on the
        ``blocks`` row of the inode's backend and location, each leaving it loses one; a row whose count
        reaches zero records when, for the garbage collector.

        Raises ``ValueError`` when a changed block lies at or past ``count``, and :class:`BlockNotReserved`
        when a block entering the list has no row (never reserved, or already collected) or is being
        collected: its bytes may be gone, so the transaction must not commit.
        """
        if any(b.index >= count for b in changed):
            raise ValueError("a changed block lies past the new end of the file")
        backend, location = inode.backend or "", block_location(inode.instance_id)
        indexes = sorted({b.index for b in changed})
        leaving: dict[str, int] = {}
        for index in indexes:
            for row in await self._x.fetch(DELETE_FILE_BLOCK + " RETURNING hash", (inode.ino, index)):
                leaving[row[0]] = leaving.get(row[0], 0) + 1
        for row in await self._x.fetch(DELETE_FILE_BLOCKS_FROM + " RETURNING hash", (inode.ino, count)):
            leaving[row[0]] = leaving.get(row[0], 0) + 1
        entering: dict[str, int] = {}
        for block in sorted(changed, key=lambda b: b.index):
            await self._x.count(INSERT_FILE_BLOCK, (inode.ino, block.index, block.hash, block.size))
            entering[block.hash] = entering.get(block.hash, 0) + 1
        for block_hash in sorted(entering):
            net = entering[block_hash] - leaving.pop(block_hash, 0)
            if net > 0:
                # Locked until the transaction ends, so the collector cannot claim it before the commit.
                live = await self._x.fetch(LIVE_BLOCK + self._x.for_update_suffix, (backend, location, block_hash))
                if not live:
                    raise BlockNotReserved(f"block {block_hash} is not reserved, or is being collected")
                await self._x.count(ACQUIRE_BLOCK, (backend, location, block_hash, net))
            elif net < 0:
                leaving[block_hash] = -net
        now = self._x.encode_time(utcnow())
        for block_hash in sorted(leaving):
            await self._x.count(RELEASE_BLOCK, (backend, location, block_hash, leaving[block_hash], now))

    async def share_blocks(self, source: Inode, target: Inode, *, at: int = 0) -> int:
        """Give the file ``target`` the block list of ``source`` (same backend and location), each block index
        moved up by ``at`` (block ``i`` of ``source`` becomes block ``at + i`` of ``target``), and one more
        reference on each of those blocks: three statements, whatever the file's size. Returns the number of
        block entries shared.

        ``target`` must have no block at index ``at`` or above yet (a new file, or a file whose list is being
        built in ascending order, as when joining files end to end). Raises ``ValueError`` for a negative
        ``at``, :class:`BlockNotReserved` when a block of ``source`` has no live row (a broken invariant: a
        referenced block is never collected); nothing must then commit. Needs ``source`` locked against
        changes of its block list until the transaction ends (its inode row, as a writer locks it).
        """
        if source.layout is not Layout.BLOCKS:
            return 0
        if at < 0:
            raise ValueError("blocks are shared at a non-negative index")
        if (source.backend, source.instance_id) != (target.backend, target.instance_id):
            raise ValueError("a file shares blocks only with a file on the same backend and location")
        backend, location = source.backend or "", block_location(source.instance_id)
        shared = await self._x.count(SHARE_FILE_BLOCKS, (source.ino, target.ino, at))
        if not shared:
            return 0
        distinct = int((await self._x.fetch(COUNT_FILE_BLOCK_HASHES, (target.ino, at)))[0][0])
        acquired = await self._x.count(ACQUIRE_FILE_BLOCKS, (backend, location, target.ino, at))
        if acquired != distinct:
            raise BlockNotReserved(f"a block of {source.path} has no live row; nothing was copied")
        return shared

    async def blob_referenced(self, backend: str, blob_id: str) -> bool:
        """True when a file or an object version still names the blob ``blob_id`` on ``backend`` (copies and
        versions share blobs)."""
        return bool(await self._x.fetch(BLOB_REFERENCED, (backend, blob_id)))

    async def release_blocks(self, inode: Inode) -> None:
        """Drop the whole block list of ``inode`` (its references go; the bytes stay until collected)."""
        if inode.layout is Layout.BLOCKS:
            await self.replace_blocks(inode, (), 0)

    async def claim_blocks(self, backend: str, location: str, before: datetime, limit: int) -> list[str]:
        """Claim for collection up to ``limit`` blocks of ``backend``/``location`` unreferenced since ``before``
        or earlier, plus those claimed by a collection that did not finish; their hashes. A claimed block can
        no longer be reserved or referenced."""
        rows = await self._x.fetch(CLAIM_BLOCKS, (backend, location, self._x.encode_time(before), limit))
        return sorted(r[0] for r in rows)

    async def forget_block(self, backend: str, location: str, block_hash: str) -> bool:
        """Delete the row of a claimed block (after its bytes); ``True`` when there was one."""
        return bool(await self._x.fetch(FORGET_BLOCK, (backend, location, block_hash)))

    async def block_known(self, backend: str, location: str, block_hash: str) -> bool:
        """True when a ``blocks`` row exists for the block (referenced or awaiting collection)."""
        return bool(await self._x.fetch(BLOCK_KNOWN, (backend, location, block_hash)))

    async def block_totals(self, backend: str, location: str) -> tuple[int, int, int]:
        """``(blocks, plaintext bytes, stored bytes)`` of the block rows of ``backend``/``location``."""
        rows = await self._x.fetch(BLOCK_TOTALS, (backend, location))
        return int(rows[0][0]), int(rows[0][1]), int(rows[0][2])

    async def add_block_replica(self, backend: str, location: str, block_hash: str, node: str) -> None:
        """Record that node ``node`` holds (or is about to hold) a copy of the block; idempotent."""
        await self._x.count(ADD_BLOCK_REPLICA, (backend, location, block_hash, node))

    async def drop_block_replica(self, backend: str, location: str, block_hash: str, node: str) -> bool:
        """Forget the copy of the block on ``node``; ``True`` when there was a row."""
        return bool(await self._x.count(DROP_BLOCK_REPLICA, (backend, location, block_hash, node)))

    async def block_replicas(self, backend: str, location: str, block_hash: str) -> list[str]:
        """The nodes recorded as holding a copy of the block, by instance id (empty: none recorded)."""
        return [r[0] for r in await self._x.fetch(SELECT_BLOCK_REPLICAS, (backend, location, block_hash))]

    async def replicas_on_node(
        self, backend: str, node: str, after: tuple[str, str], limit: int
    ) -> list[tuple[str, str]]:
        """Up to ``limit`` referenced, uncollected blocks with a copy on ``node``, as ``(location, hash)``
        ordered after ``after`` (keyset pagination: pass the last pair of the previous page, ``("", "")`` first)."""
        rows = await self._x.fetch(REPLICAS_ON_NODE, (backend, node, after[0], after[1], limit))
        return [(r[0], r[1]) for r in rows]

    async def count_under_replicated(self, backend: str, live_since: datetime, want: int) -> int:
        """Referenced blocks of ``backend`` with fewer than ``want`` copies on nodes whose last heartbeat is at
        ``live_since`` or later (a block without replica rows counts none). One scan of the block rows."""
        rows = await self._x.fetch(UNDER_REPLICATED, (backend, self._x.encode_time(live_since), want))
        return int(rows[0][0])

    async def list_subtree(self, path: str, *, lock: bool = False) -> list[Inode]:
        """Every descendant of ``path`` ordered by (depth, directories first, name); ``lock`` locks them against
        a rename, a delete or a writer until the transaction ends."""
        rows = await self._at(partial(list_subtree, lock=self._x.for_share_suffix if lock else ""), path,
                              paths.depth_of(path) + 1)
        return [self._inode(row) for row in rows]

    async def list_children(self, path: str, page: ListingPage | None = None) -> list[Inode]:
        """Direct children of ``path``: directories first, then by name (bytewise); with ``page``, at most
        ``page.limit`` of them, those after ``page.after`` in that order."""
        if page is None:
            rows = await self._at(partial(list_children, page=False), path)
        else:
            _, after_type, after_name, _ = page.after_key() if page.after is not None else (0, "", "", "")
            rows = await self._at(partial(list_children, page=True), path, after_type, after_name, page.limit)
        return [self._inode((paths.join(path, row[0]), *row[1:])) for row in rows]

    async def list_tree(self, path: str, max_depth: int, page: ListingPage | None = None) -> list[Inode]:
        """Descendants at most ``max_depth`` levels below the children of ``path`` (``0``: children only), by
        (depth, directories first, name, path); with ``page``, at most ``page.limit`` of them, those after
        ``page.after`` in that order.

        Raises:
            ValueError: ``max_depth`` is negative.
        """
        if max_depth < 0:
            raise ValueError("max_depth must be >= 0")
        depth = paths.depth_of(path) + 1
        if page is None:
            rows = await self._at(partial(list_tree, page=False), path, depth, depth + max_depth)
        else:
            key = page.after_key() if page.after is not None else (-1, "", "", "")
            rows = await self._at(partial(list_tree, page=True), path, depth, depth + max_depth, *key, page.limit)
        return [self._inode(row) for row in rows]

    async def put_attributes(self, blob_id: str, attributes: Mapping[str, str]) -> None:
        """Store ``attributes`` (names and values: strings) with the content ``blob_id``, replacing any."""
        await self._x.fetch(UPSERT_ATTRIBUTES, (blob_id, json.dumps(dict(attributes), sort_keys=True)))

    async def get_attributes(self, blob_id: str) -> dict[str, str]:
        """The attributes stored with the content ``blob_id`` (none: empty)."""
        rows = await self._x.fetch(SELECT_ATTRIBUTES, (blob_id,))
        return dict(json.loads(rows[0][0])) if rows else {}

    async def delete_attributes(self, blob_id: str) -> None:
        """Forget the attributes of the content ``blob_id`` (none: no-op)."""
        await self._x.count(DELETE_ATTRIBUTES, (blob_id,))

    async def xattrs(self, ino: int) -> dict[str, bytes]:
        """The extended attributes of the inode numbered ``ino``: values by name, in name order (none: empty)."""
        return {str(row[0]): bytes(row[1]) for row in await self._x.fetch(SELECT_XATTRS, (ino,))}

    async def xattr_sizes(self, ino: int) -> dict[str, int]:
        """The sizes in bytes of the extended attribute values of the inode numbered ``ino``, by name, in name
        order (the values themselves are not read)."""
        return {str(row[0]): int(row[1]) for row in await self._x.fetch(SELECT_XATTR_SIZES, (ino,))}

    async def get_xattr(self, ino: int, name: str) -> bytes | None:
        """The value of the extended attribute ``name`` of the inode numbered ``ino``, or ``None``."""
        rows = await self._x.fetch(SELECT_XATTR, (ino, name))
        return bytes(rows[0][0]) if rows else None

    async def put_xattr(self, ino: int, name: str, value: bytes, *, create: bool = False) -> bool:
        """Set the extended attribute ``name`` of the inode numbered ``ino`` to ``value``, replacing any; with
        ``create`` only when it has none (``False``: it had one, nothing changed)."""
        if create:
            return bool(await self._x.fetch(INSERT_XATTR, (ino, name, value)))
        await self._x.fetch(UPSERT_XATTR, (ino, name, value))
        return True

    async def delete_xattr(self, ino: int, name: str) -> bool:
        """Remove the extended attribute ``name`` of the inode numbered ``ino``; ``False`` when it had none."""
        return bool(await self._x.fetch(DELETE_XATTR, (ino, name)))

    async def copy_xattrs(self, source: int, target: int, *, user_only: bool = False) -> None:
        """Give the inode numbered ``target`` (which has none yet) the extended attributes of ``source`` (with
        ``user_only``: its ``user.*`` ones)."""
        await self._x.count(COPY_USER_XATTRS if user_only else COPY_XATTRS, (source, target))

    async def insert_link(self, link: SingleUseLink) -> None:
        """Store a new link (a duplicate ``token_id`` is an integrity error of the database driver)."""
        await self._x.fetch(INSERT_LINK, link_params(link, self._x.encode_time))

    async def get_link(self, token_id: str) -> SingleUseLink | None:
        """The link with ``token_id`` in whatever state, or ``None``."""
        rows = await self._x.fetch(SELECT_LINK, (token_id,))
        return link_from_row(rows[0], self._x.decode_time) if rows else None

    async def consume_link(self, token_id: str, *, now: datetime, client_ip: str | None) -> SingleUseLink | None:
        """Flip an active link expiring after ``now`` to ``used`` in one statement (compare-and-set).

        Returns the link as it was before, or ``None`` when no active unexpired link has that id.
        """
        rows = await self._x.fetch(CONSUME_LINK, (token_id, self._x.encode_time(now), client_ip))
        return link_before_consume(link_from_row(rows[0], self._x.decode_time)) if rows else None

    async def sweep_links(self, *, now: datetime, used_before: datetime) -> int:
        """Delete links expired at ``now`` and used links used before ``used_before``; how many."""
        params = (self._x.encode_time(now), self._x.encode_time(used_before))
        return await self._x.count(SWEEP_LINKS, params)

    async def quotas_for(self, paths: Sequence[str], *, for_update: bool = False) -> list[Quota]:
        """The quotas on any of ``paths``, ordered by path; ``for_update`` locks them (PostgreSQL)."""
        wanted = sorted(set(paths))
        if not wanted:
            return []
        sql = select_quotas(len(wanted)) + (self._x.for_update_suffix if for_update else "")
        return [quota_from_row(row) for row in await self._x.fetch(sql, wanted)]

    async def quotas_within(self, path: str) -> list[Quota]:
        """The quotas on ``path`` and below, ordered by path."""
        low, high = subtree_bounds(path)
        return [quota_from_row(row) for row in await self._x.fetch(QUOTAS_WITHIN, (path, low, high))]

    async def put_quota(self, quota: Quota) -> None:
        """Insert or replace the quota at ``quota.path``."""
        await self._x.count(
            UPSERT_QUOTA, (quota.path, quota.bytes_limit, quota.inodes_limit, quota.bytes_used, quota.inodes_used)
        )

    async def delete_quota(self, path: str) -> bool:
        """Remove the quota at ``path``; ``False`` when none was set."""
        return bool(await self._x.fetch(DELETE_QUOTA, (path,)))

    async def add_usage(self, path: str, bytes_delta: int, inodes_delta: int) -> None:
        """Add (possibly negative) deltas to the usage of the quota at ``path``."""
        await self._x.count(ADD_USAGE, (path, bytes_delta, inodes_delta))

    async def settle(
        self, quota_paths: Sequence[str], bytes_delta: int, inodes_delta: int, released: Sequence[Inode] = ()
    ) -> tuple[list[Quota], list[Inode]]:
        """Finish a write in one statement (PostgreSQL; SQLite: one per part): add the deltas to the usage of the
        quotas on ``quota_paths`` and return them as they are now (ordered by path; the caller checks the limits
        and rolls back), and of the files in ``released`` (whose content the transaction let go) return those
        whose blob no file names any more, after deleting the attributes of that content. A blob a copy still
        names keeps its bytes and attributes.

        Nothing is sent when there are no deltas and nothing released. Must run after the statements that
        changed the inodes, in their transaction: it sees them.
        """
        paths = sorted(set(quota_paths)) if bytes_delta or inodes_delta else []
        blobs = sorted({(i.backend, i.blob_id) for i in released if i.backend is not None and i.blob_id is not None})
        if not paths and not blobs:
            return [], []
        flat = [value for pair in blobs for value in pair]
        charged: list[Quota] = []
        unnamed: set[tuple[str, str]] = set()
        if self._x.writable_ctes:
            params = [bytes_delta, inodes_delta, *paths, *flat] if paths else flat
            for row in await self._x.fetch(settle_all(len(paths), len(blobs)), params):
                if row[0] == 0:
                    charged.append(quota_from_row(row[1:6]))
                else:
                    unnamed.add((row[1], row[6]))
        else:
            if paths:
                charged = [quota_from_row(row) for row in
                           await self._x.fetch(charge_quotas(len(paths)), [bytes_delta, inodes_delta, *paths])]
            if blobs:
                unnamed = {(row[0], row[1]) for row in await self._x.fetch(unnamed_blobs(len(blobs)), flat)}
                for _, blob_id in sorted(unnamed):
                    await self._x.count(DELETE_ATTRIBUTES, (blob_id,))
        return sorted(charged, key=lambda q: q.path), [i for i in released if (i.backend, i.blob_id) in unnamed]

    async def subtree_usage(self, path: str) -> tuple[int, int]:
        """``(bytes, inodes)`` strictly below ``path``, object versions included (each one inode)."""
        rows = await self._at(subtree_usage, path, paths.depth_of(path) + 1)
        kept = await self._x.fetch(SUBTREE_VERSIONS_USAGE, subtree_bounds(path))
        return int(rows[0][0]) + int(kept[0][0]), int(rows[0][1]) + int(kept[0][1])

    async def linked_below(self, path: str) -> bool:
        """True when a hard-linked file (``nlink`` > 1) lies below the directory ``path``."""
        return bool(await self._at(linked_below, path, paths.depth_of(path) + 1))

    async def subdirectory_counts(self, directories: Collection[int]) -> dict[int, int]:
        """The number of child directories of each of ``directories`` (inode numbers) that has any (absent:
        none), in statements of :data:`SUBDIRECTORY_BATCH` directories."""
        wanted = sorted(set(directories))
        counts: dict[int, int] = {}
        for start in range(0, len(wanted), SUBDIRECTORY_BATCH):
            batch = wanted[start:start + SUBDIRECTORY_BATCH]
            for parent, count in await self._x.fetch(count_subdirectories(len(batch)), batch):
                counts[int(parent)] = int(count)
        return counts

    async def upsert_node(self, record: NodeRecord) -> None:
        """Register or refresh a node."""
        await self._x.count(UPSERT_NODE, (
            record.instance_id, record.url, record.version, record.capacity_bytes, record.free_bytes,
            self._x.encode_time(record.started_at), self._x.encode_time(record.last_heartbeat),
        ))

    async def list_nodes(self) -> list[NodeRecord]:
        """Every registered node ordered by instance id."""
        decode = self._x.decode_time
        return [
            NodeRecord(instance_id=r[0], url=r[1], version=r[2], capacity_bytes=int(r[3]), free_bytes=int(r[4]),
                       started_at=decode(r[5]), last_heartbeat=decode(r[6]))
            for r in await self._x.fetch(LIST_NODES, ())
        ]

    async def mark_leaving(self, instance_id: str, since: datetime) -> bool:
        """Record that node ``instance_id`` is leaving (being drained) since ``since``; ``False`` when it was
        already (its ``since`` stays)."""
        return bool(await self._x.count(MARK_LEAVING, (instance_id, self._x.encode_time(since))))

    async def unmark_leaving(self, instance_id: str) -> bool:
        """Forget that node ``instance_id`` is leaving; ``True`` when it was. A lost node stays leaving."""
        return bool(await self._x.count(UNMARK_LEAVING, (instance_id,)))

    async def leaving_nodes(self) -> list[str]:
        """The instance ids of the nodes being drained, sorted."""
        return [r[0] for r in await self._x.fetch(LIST_LEAVING, ())]

    async def mark_lost(self, instance_id: str, since: datetime) -> bool:
        """Record that node ``instance_id`` is lost for good since ``since`` (and leaving, if it was not);
        ``False`` when it was lost already (its ``since`` stays)."""
        when = self._x.encode_time(since)
        return bool(await self._x.count(MARK_LOST, (instance_id, when, when)))

    async def lost_nodes(self) -> dict[str, datetime]:
        """``{instance_id: since}`` of the nodes declared lost for good."""
        return {r[0]: self._x.decode_time(r[1]) for r in await self._x.fetch(LIST_LOST, ())}

    async def count_node_replicas(self, backend: str, node: str) -> int:
        """How many ``block_replicas`` rows of ``backend`` name ``node`` as a holder."""
        return int((await self._x.fetch(COUNT_NODE_REPLICAS, (backend, node)))[0][0])

    async def blocks_relying_on(self, backend: str, node: str, live_since: datetime, want: int) -> int:
        """Referenced blocks of ``backend`` that still rely on ``node``: with a copy there (or no recorded copy
        and ``node`` as their location) and fewer than ``want`` copies on nodes whose last heartbeat is at
        ``live_since`` or later and that are not leaving. One scan of the block rows."""
        rows = await self._x.fetch(BLOCKS_RELYING_ON, (backend, node, self._x.encode_time(live_since), want))
        return int(rows[0][0])

    async def unrecorded_blocks(self, backend: str, location: str, limit: int) -> list[str]:
        """Up to ``limit`` referenced blocks of ``backend``/``location`` without any replica row (stored before
        replication: their one copy is the location's node's), by hash."""
        return [r[0] for r in await self._x.fetch(UNRECORDED_BLOCKS, (backend, location, limit))]

    async def node_blob_files(self, node: str, after: EntryKey | None, limit: int) -> list[tuple[str, str, EntryKey]]:
        """Up to ``limit`` files whose bytes are one blob on ``node``'s local disk, as ``(path, backend, key)`` in
        entry order after the ``key`` of the last one of the page before (``None`` first)."""
        rows = await self._x.fetch(NODE_BLOB_FILES, (node, *(after or FIRST_ENTRY), limit))
        return [(path, row[2], key) for path, key, row in await self._file_paths(rows)]

    async def count_node_blob_files(self, node: str) -> int:
        """How many files have their bytes as one blob on ``node``'s local disk."""
        return int((await self._x.fetch(COUNT_NODE_BLOB_FILES, (node,)))[0][0])

    async def blob_files(self, backend: str, node: str | None, after: EntryKey | None,
                         limit: int) -> list[tuple[str, int, EntryKey]]:
        """Up to ``limit`` files of ``backend`` whose bytes are one blob owned by ``node`` (``None``: on a shared
        backend), as ``(path, size in bytes, key)`` in entry order after the ``key`` of the last one of the page
        before (``None`` first)."""
        if node is None:
            rows = await self._x.fetch(BLOB_FILES_SHARED, (backend, *(after or FIRST_ENTRY), limit))
        else:
            rows = await self._x.fetch(BLOB_FILES, (backend, node, *(after or FIRST_ENTRY), limit))
        return [(path, int(row[2]), key) for path, key, row in await self._file_paths(rows)]

    async def _file_paths(self, rows: Sequence[Row]) -> list[tuple[str, EntryKey, Row]]:
        """Each of ``rows`` (``parent_ino, name, ...``) with the path of its entry and its key, the paths of the
        directories holding them found in one statement."""
        holders = sorted({int(row[0]) for row in rows})
        if not holders:
            return []
        found = {int(ino): path for ino, path in await self._x.fetch(entries.directory_paths(len(holders)), holders)}
        return [(paths.join(found[int(row[0])], row[1]), (int(row[0]), row[1]), row) for row in rows
                if int(row[0]) in found]

    async def count_blob_files(self, backend: str, node: str | None) -> tuple[int, int]:
        """``(files, bytes)`` of ``backend`` whose bytes are one blob owned by ``node`` (``None``: shared), each
        inode once."""
        if node is None:
            rows = await self._x.fetch(COUNT_BLOB_FILES_SHARED, (backend,))
        else:
            rows = await self._x.fetch(COUNT_BLOB_FILES, (backend, node))
        return int(rows[0][0]), int(rows[0][1])

    async def put_access_key(self, key: AccessKey) -> tuple[AccessKey, bool]:
        """Insert ``key`` unless its hash is registered; ``(stored record, inserted)``."""
        inserted = await self._x.count(
            INSERT_ACCESS_KEY, (key.key_hash, key.user, key.scope, self._x.encode_time(key.created))
        )
        stored = await self.get_access_key(key.key_hash)
        assert stored is not None, "inserted or already there"
        return stored, inserted > 0

    async def get_access_key(self, key_hash: str) -> AccessKey | None:
        """The registered key with SHA-256 ``key_hash``, or ``None``."""
        rows = await self._x.fetch(SELECT_ACCESS_KEY, (key_hash,))
        if not rows:
            return None
        row = rows[0]
        return AccessKey(key_hash=row[0], user=row[1], scope=row[2], created=self._x.decode_time(row[3]))

    async def delete_access_keys(self, user: str) -> int:
        """Delete every key of ``user``; how many rows went."""
        return await self._x.count(DELETE_ACCESS_KEYS, (user,))

    async def blob_ids(self, backend: str, instance_id: str | None) -> AsyncIterator[str]:
        """Stream the ``blob_id`` of every file on ``backend`` owned by ``instance_id`` (``None``: shared).

        Pages of :data:`BLOB_PAGE_SIZE` rows by entry (keyset pagination), so no read transaction or
        connection is held while the consumer works between pages. One id per file: ids shared by several
        files repeat. The blobs object versions name follow those of the files.
        """
        after = FIRST_ENTRY
        while True:
            if instance_id is None:
                rows = await self._x.fetch(BLOB_IDS_PAGE_SHARED, (backend, *after, BLOB_PAGE_SIZE))
            else:
                rows = await self._x.fetch(BLOB_IDS_PAGE, (backend, instance_id, *after, BLOB_PAGE_SIZE))
            for row in rows:
                yield row[2]
            if len(rows) < BLOB_PAGE_SIZE:
                break
            after = (int(rows[-1][0]), rows[-1][1])
        after_path, after_version = "", ""
        while True:
            if instance_id is None:
                rows = await self._x.fetch(VERSION_BLOBS_PAGE_SHARED, (backend, after_path, after_version,
                                                                       BLOB_PAGE_SIZE))
            else:
                rows = await self._x.fetch(VERSION_BLOBS_PAGE, (backend, instance_id, after_path, after_version,
                                                                BLOB_PAGE_SIZE))
            for row in rows:
                yield row[2]
            if len(rows) < BLOB_PAGE_SIZE:
                return
            after_path, after_version = rows[-1][0], rows[-1][1]

    async def next_version_seq(self, path: str) -> int:
        """The ``seq`` a new version of ``path`` gets: one more than the newest one's (1 for the first)."""
        return int((await self._x.fetch(NEXT_VERSION_SEQ, (path,)))[0][0])

    async def insert_version(self, version: ObjectVersion) -> None:
        """Store a noncurrent version or delete marker (a duplicate ``(path, version_id)`` raises
        :class:`~callfs.metadata.base.UniqueViolation`). Its content references are the caller's to take."""
        await self._x.count(INSERT_VERSION, version_params(version, self._x.encode_time))

    async def get_version(self, path: str, version_id: str, *, for_update: bool = False) -> ObjectVersion | None:
        """The version ``version_id`` of ``path`` kept in ``object_versions``, or ``None``."""
        sql = SELECT_VERSION + self._x.for_update_suffix if for_update else SELECT_VERSION
        rows = await self._x.fetch(sql, (path, version_id))
        return version_from_row(rows[0], self._x.decode_time) if rows else None

    async def versions_of(self, path: str) -> list[ObjectVersion]:
        """The kept versions and delete markers of ``path``, newest first."""
        return [version_from_row(r, self._x.decode_time) for r in await self._x.fetch(VERSIONS_OF, (path,))]

    async def versions_under(self, path: str) -> list[ObjectVersion]:
        """The kept versions and delete markers of every path strictly below ``path``, by path, newest first."""
        low, high = subtree_bounds(path)
        return [version_from_row(r, self._x.decode_time) for r in await self._x.fetch(VERSIONS_UNDER, (low, high))]

    async def has_versions_under(self, path: str) -> bool:
        """True when some path strictly below ``path`` has a kept version or delete marker."""
        low, high = subtree_bounds(path)
        return bool(await self._x.fetch(VERSIONS_EXIST_UNDER, (low, high)))

    async def delete_version(self, path: str, version_id: str) -> ObjectVersion | None:
        """Forget the version ``version_id`` of ``path``; the row deleted (``None``: there was none). Its block
        list and blob are the caller's to release (:meth:`release_blocks`, :meth:`settle`)."""
        rows = await self._x.fetch(DELETE_VERSION, (path, version_id))
        return version_from_row(rows[0], self._x.decode_time) if rows else None

    async def get_versioning(self, path: str) -> str | None:
        """The versioning status of the bucket directory ``path``: ``Enabled``, ``Suspended``, or ``None``
        (never set)."""
        rows = await self._x.fetch(SELECT_VERSIONING, (path,))
        return str(rows[0][0]) if rows else None

    async def put_versioning(self, path: str, status: str) -> None:
        """Set the versioning status (``Enabled`` or ``Suspended``) of the bucket directory ``path``."""
        await self._x.count(UPSERT_VERSIONING, (path, status))
