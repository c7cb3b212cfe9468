"""Directory entries: the SQL that finds the rows of ``inodes`` by path, and the subtrees below them.

No I/O of its own; statements use PostgreSQL's ``$n`` placeholders (see
:func:`callfs.metadata.rows.sqlite_placeholders`) and run unchanged on both stores. Every statement is assembled
from constant fragments and numbered placeholders, never from a value (hence the ``S608`` exemption below).

Since schema version 16 a row of ``inodes`` is a **directory entry**: its key is ``(parent_ino, name)``, the inode
number of the directory holding it and its name there, and it carries the attributes of the inode it names (the
names of a hard-linked file carry the same ones). The root is the one row with ``parent_ino`` :data:`ROOT_PARENT`
and name ``''``. Nothing is keyed by a whole path, so a rename or move re-keys one row whatever lies below it, and a
path is as long as the API allows (no index entry holds it).

A path is found by walking from the root one component at a time (:func:`walk`): a recursive ``WITH`` query whose
every step is a primary-key lookup, so a path and its ancestors cost one statement whatever their depth. The rows
below a directory are enumerated the same way downwards (:func:`below`), through the ``(parent_ino, type, name)``
index.
"""

# ruff: noqa: S608
from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from callfs import paths

ROOT_PARENT = 0
"""``parent_ino`` of the root's row (no inode has number 0)."""

ENTRY_COLUMNS = (
    "type", "size", "mode", "owner", "grp", "mtime", "ctime", "version", "backend", "blob_id", "instance_id", "ino",
    "layout", "uid", "gid", "atime", "target", "special", "rdev", "nlink",
)
"""The inode's attributes on an entry row, in the order :func:`callfs.metadata.rows.inode_from_row` reads them
after the path."""


def columns(alias: str) -> str:
    """:data:`ENTRY_COLUMNS` qualified by a table alias, comma-separated."""
    return ", ".join(f"{alias}.{column}" for column in ENTRY_COLUMNS)


def numbered(first: int, count: int) -> str:
    """``$first, ..., $(first + count - 1)``."""
    return ", ".join(f"${n}" for n in range(first, first + count))


STEP_PARAMETERS = 4
"""Parameters per step of a walk (:func:`steps`)."""


def first_after(count: int) -> int:
    """The number of the first placeholder after those of a walk of ``count`` steps."""
    return STEP_PARAMETERS * count + 1


def steps(wanted: Iterable[str]) -> list[tuple[int, int, str, str]]:
    """The walk that reaches every path of ``wanted``: each non-root path among them and their ancestors, as
    ``(step, parent step, name, path)``, numbered from 1 in path order (a parent before its children; the root is
    step 0), each once. Its length is the ``count`` of :func:`walk`; flattened, its parameters."""
    found: set[str] = set()
    for path in wanted:
        while path != paths.ROOT and path not in found:
            found.add(path)
            path = paths.parent_of(path) or paths.ROOT
    number = {paths.ROOT: 0} | {path: i for i, path in enumerate(sorted(found), start=1)}
    return [(number[path], number[paths.parent_of(path) or paths.ROOT], paths.name_of(path), path)
            for path in sorted(found)]


def flat(walk_steps: list[tuple[int, int, str, str]]) -> list[int | str]:
    """The parameters of :func:`walk` for ``walk_steps``."""
    return [value for step in walk_steps for value in step]


@lru_cache(maxsize=256)
def walk(count: int) -> str:
    """``WITH RECURSIVE`` defining ``walk(step, path, parent_ino, name, ino)``: the root (step 0) and the entries
    at the ``count`` steps of :func:`steps` given as ``$1..$(4 * count)``, each with its path; ``ino`` is ``NULL``
    for a step that finds nothing, and the steps below it are not taken (only a directory's number is any
    entry's ``parent_ino``). Each step is one primary-key lookup (a subquery, so that no plan can scan by name
    alone) joined to its parent by step number. Statements append more ``WITH`` queries (``, x AS (...)``) or
    their body; their own placeholders start at :func:`first_after`."""
    root = (
        "SELECT 0, CAST('/' AS TEXT), parent_ino, name, ino FROM inodes "
        f"WHERE parent_ino = {ROOT_PARENT} AND name = ''"
    )
    if not count:
        return f"WITH RECURSIVE walk (step, path, parent_ino, name, ino) AS ({root})"
    rows = ", ".join(
        f"(CAST(${n} AS INTEGER), CAST(${n + 1} AS INTEGER), CAST(${n + 2} AS TEXT), CAST(${n + 3} AS TEXT))"
        for n in range(1, STEP_PARAMETERS * count, STEP_PARAMETERS)
    )
    return (
        f"WITH RECURSIVE wanted (step, parent, name, path) AS (VALUES {rows}), "
        f"walk (step, path, parent_ino, name, ino) AS ({root} UNION ALL "
        "SELECT t.step, t.path, w.ino, t.name, "
        "(SELECT e.ino FROM inodes e WHERE e.parent_ino = w.ino AND e.name = t.name) "
        "FROM walk w JOIN wanted t ON t.parent = w.step WHERE w.ino IS NOT NULL)"
    )


def at(first: int, count: int) -> str:
    """``SELECT`` over ``walk`` of the entries at the ``count`` paths ``$first...``, joined to their rows as ``e``:
    ``w.path`` and :func:`columns` of ``e``. Statements add ``ORDER BY`` and a locking clause (``OF e``)."""
    return (
        f"SELECT w.path, {columns('e')} FROM walk w JOIN inodes e ON e.parent_ino = w.parent_ino "
        f"AND e.name = w.name WHERE w.path IN ({numbered(first, count)})"
    )


def key_at(n: int) -> str:
    """Condition: the row (of the statement's ``inodes``) is the entry at path ``$n`` of ``walk``."""
    return f"(parent_ino, name) IN (SELECT parent_ino, name FROM walk WHERE path = ${n})"


def directory_at(n: int) -> str:
    """Scalar subquery: the inode number of the directory at path ``$n`` of ``walk`` (``NULL`` if there is none)."""
    return (
        f"(SELECT d.ino FROM walk w JOIN inodes d ON d.parent_ino = w.parent_ino AND d.name = w.name "
        f"WHERE w.path = ${n} AND d.type = 'directory')"
    )


def below(top: int, depth: int, deepest: int | None = None) -> str:
    """``WITH`` query (to follow :func:`walk`) defining ``below(path, depth, parent_ino, name, ino, type, size,
    nlink)``: every entry strictly below the directory at path ``$top`` of ``walk``, ``$depth`` being the depth of
    its children (the top's depth + 1), each with its path; with ``deepest``, only down to depth ``$deepest``.
    Paths are built by the database, so a subtree costs one statement."""
    limit = f" AND b.depth < ${deepest}" if deepest is not None else ""
    return (
        ", below (path, depth, parent_ino, name, ino, type, size, nlink) AS ("
        f"SELECT rtrim(CAST(${top} AS TEXT), '/') || '/' || e.name, CAST(${depth} AS INTEGER), e.parent_ino, "
        f"e.name, e.ino, e.type, e.size, e.nlink FROM inodes e WHERE e.parent_ino = {directory_at(top)} UNION ALL "
        "SELECT b.path || '/' || e.name, b.depth + 1, e.parent_ino, e.name, e.ino, e.type, e.size, e.nlink "
        f"FROM below b JOIN inodes e ON e.parent_ino = b.ino WHERE b.type = 'directory'{limit})"
    )


def subtree_rows(top: int, depth: int, deepest: int | None = None) -> str:
    """The ``SELECT`` of :func:`below`'s entries joined to their rows: ``b.path`` and :func:`columns` of ``e``
    (``b.depth`` is there to order by). Follows ``walk`` and ``below``."""
    return (
        below(top, depth, deepest)
        + f" SELECT b.path, {columns('e')} FROM below b JOIN inodes e "
        "ON e.parent_ino = b.parent_ino AND e.name = b.name"
    )


DIRECTORY_PATHS = (
    "WITH RECURSIVE up (start, ino, path) AS ("
    "SELECT d.ino, d.parent_ino, '/' || d.name FROM inodes d WHERE d.ino IN ({inos}) AND d.type = 'directory' "
    f"AND d.parent_ino <> {ROOT_PARENT} UNION ALL "
    "SELECT u.start, d.parent_ino, '/' || d.name || u.path FROM up u JOIN inodes d ON d.ino = u.ino "
    f"AND d.type = 'directory' WHERE d.parent_ino <> {ROOT_PARENT}) "
    f"SELECT start, path FROM up WHERE ino = (SELECT ino FROM inodes WHERE parent_ino = {ROOT_PARENT} AND name = '') "
    f"UNION ALL SELECT ino, '/' FROM inodes WHERE parent_ino = {ROOT_PARENT} AND name = '' AND ino IN ({{inos}})"
)


@lru_cache(maxsize=16)
def directory_paths(count: int) -> str:
    """``(ino, path)`` of each of ``count`` directories given by inode number (``$1...``), found by walking up
    from each to the root (the root's own path is ``/``)."""
    return DIRECTORY_PATHS.format(inos=numbered(1, count))
