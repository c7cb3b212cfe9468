"""Records shared by the engine and the metadata stores."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from callfs import paths


class InodeType(StrEnum):
    """What an inode is. A ``symlink`` holds its target path in :attr:`Inode.target` and no bytes; a ``special``
    file (a FIFO, a socket or a device node, :class:`Special`) is an entry only: no bytes, nothing served."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    SPECIAL = "special"


class Special(StrEnum):
    """The kind of a ``special`` inode, as mknod(2) makes them (``S_IFIFO``, ``S_IFSOCK``, ``S_IFCHR``, ``S_IFBLK``)."""

    FIFO = "fifo"
    SOCKET = "socket"
    CHAR = "char"
    BLOCK = "block"


class Layout(StrEnum):
    """How a file's bytes are stored: one immutable ``blob``, or a list of content-addressed ``blocks``."""

    BLOB = "blob"
    BLOCKS = "blocks"


def new_ino() -> int:
    """A fresh inode number: random in ``1..2**63-1`` (fits a signed 64-bit column; unique index enforced)."""
    return secrets.randbelow((1 << 63) - 1) + 1


CONTENT_ID_PREFIX = "k"
"""First character of the content id of a file stored in blocks; blob ids are hex, so never start with it."""


def new_content_id() -> str:
    """A fresh content id for a version of a file stored in blocks: :data:`CONTENT_ID_PREFIX` and 31 hex digits."""
    return CONTENT_ID_PREFIX + secrets.token_hex(16)[:31]


CONVERTED_MARK = "x"
"""Second character of the content id of a file converted from one blob to blocks (:func:`converted_content_id`);
a fresh content id has a hex digit there."""

ETAG_ID_CHARS = 20
"""Characters of a content's id an ETag shows (:func:`etag_id`)."""


def converted_content_id(blob_id: str) -> str:
    """The content id of a file whose blob ``blob_id`` was converted to blocks without a change of content:
    :data:`CONTENT_ID_PREFIX`, :data:`CONVERTED_MARK`, the blob id's first :data:`ETAG_ID_CHARS` characters and 10
    random hex digits (32 characters). Its :func:`etag_id` is the blob's, so the file keeps its ETag; it differs
    from the blob id, so the blob is no longer named and can be freed."""
    return CONTENT_ID_PREFIX + CONVERTED_MARK + blob_id[:ETAG_ID_CHARS] + secrets.token_hex(5)


def etag_id(blob_id: str | None) -> str:
    """The part of a content's id its ETag shows: the first :data:`ETAG_ID_CHARS` characters, or for a content
    converted from a blob (:func:`converted_content_id`) the blob's."""
    if blob_id is not None and blob_id.startswith(CONTENT_ID_PREFIX + CONVERTED_MARK):
        return blob_id[2:2 + ETAG_ID_CHARS]
    return (blob_id or "")[:ETAG_ID_CHARS]


def same_content(current: str | None, minted: str | None) -> bool:
    """True when the content id ``current`` is the content ``minted`` named: the same id, or the blob ``minted``
    converted to blocks since (same bytes, same ETag)."""
    if current == minted:
        return True
    return (current is not None and minted is not None and current.startswith(CONTENT_ID_PREFIX + CONVERTED_MARK)
            and not minted.startswith(CONTENT_ID_PREFIX) and etag_id(current) == minted[:ETAG_ID_CHARS])


def path_ino(path: str) -> int:
    """The inode number schema version 4 gives an existing row on PostgreSQL: 60 bits of the MD5 of its path,
    plus one. Schema version 16 gives the same to a row a node of an earlier version inserted without a number."""
    return int(hashlib.md5(path.encode(), usedforsecurity=False).hexdigest()[:15], 16) + 1


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, truncated to microseconds (what both stores keep)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Inode:
    """One file or directory.

    ``path`` is canonical (``/`` for the root) and is the primary key; ``parent`` is the canonical parent path
    (``None`` only for the root). ``size`` is in bytes (0 for directories). ``mode`` holds the permission bits
    including the sticky bit (``0o1777`` for the root). ``version`` starts at 1 and increases on every content
    change (it feeds the ETag and fences concurrent writers). For files, ``backend`` names the byte backend,
    ``blob_id`` the object holding the bytes there and ``instance_id`` the node that owns them (``None`` for
    backends every node can reach, such as S3).

    ``ino`` is the inode number: stable for the life of the entry, kept across renames and moves (block lists
    are keyed by it). ``layout`` says how the bytes are stored: :attr:`Layout.BLOB` (``blob_id`` names one
    object) or :attr:`Layout.BLOCKS` (the metadata store lists the file's blocks under ``ino``; ``blob_id`` is
    then a fresh content id per version (:func:`new_content_id`), naming no object, so that ETags and links
    still tell versions apart).

    ``owner``/``group`` are the user names the API's permission checks use; ``uid``/``gid`` the numeric ids a
    mount shows and its kernel checks modes against (POSIX ``st_uid``/``st_gid``, ``0..2**32-2``; ``None``: not
    set, a mount shows its own ids). ``mode`` holds the permission bits with setuid, setgid and sticky
    (``0..0o7777``). ``atime`` is the last access time set by ``utimensat`` (``None``: the ``mtime``); ``ctime``
    changes with every change of content or attributes. ``target`` is a symlink's target (``None`` otherwise);
    ``special`` the kind of a special file and ``rdev`` a device node's device number (Linux ``dev_t``; 0 for
    FIFOs and sockets), both ``None`` for other types.

    ``nlink`` is the number of names (hard links) the inode has: every name is one row carrying the same ``ino``
    and the same attributes and content, kept equal by the metadata store (a change through one name is
    written to every row of the inode). 1 for directories, whose link count a mount derives.
    """

    path: str
    type: InodeType
    size: int = 0
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    mtime: datetime = field(default_factory=utcnow)
    ctime: datetime = field(default_factory=utcnow)
    version: int = 1
    backend: str | None = None
    blob_id: str | None = None
    instance_id: str | None = None
    ino: int = field(default_factory=new_ino)
    layout: Layout = Layout.BLOB
    uid: int | None = None
    gid: int | None = None
    atime: datetime | None = None
    target: str | None = None
    special: Special | None = None
    rdev: int | None = None
    nlink: int = 1

    @property
    def parent(self) -> str | None:
        return paths.parent_of(self.path)

    @property
    def name(self) -> str:
        return paths.name_of(self.path)

    @property
    def depth(self) -> int:
        return paths.depth_of(self.path)

    @property
    def is_dir(self) -> bool:
        return self.type is InodeType.DIRECTORY

    @property
    def is_symlink(self) -> bool:
        return self.type is InodeType.SYMLINK

    @property
    def is_entry_only(self) -> bool:
        """A symlink or a special file: an entry without bytes or children, which the server never opens."""
        return self.type in (InodeType.SYMLINK, InodeType.SPECIAL)

    @property
    def accessed(self) -> datetime:
        """The access time: :attr:`atime`, or the :attr:`mtime` when none was set."""
        return self.mtime if self.atime is None else self.atime

    def evolve(self, **changes: Any) -> Inode:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class ListingPage:
    """One page of a directory listing: at most ``limit`` entries (>= 1), those after the entry of type
    ``after_type`` at path ``after`` in listing order (``after`` ``None``: from the start).

    Listing order is directories first, then by name, bytewise; a recursive listing orders by depth first and
    breaks ties between equal names in different directories by path. Pages are keyed by their last entry, not
    counted, so a page boundary stays right while entries are added or removed elsewhere in the directory.
    """

    limit: int
    after: str | None = None
    after_type: InodeType = InodeType.FILE

    def after_key(self) -> tuple[int, str, str, str]:
        """``(depth, type, name, path)`` of the entry the page starts after. Raises ``ValueError`` without one."""
        if self.after is None:
            raise ValueError("the first page starts after no entry")
        return paths.depth_of(self.after), self.after_type.value, paths.name_of(self.after), self.after


@dataclass(frozen=True, slots=True)
class FileBlock:
    """Block ``index`` of a file (bytes ``[index * BLOCK_SIZE, ...)``): its SHA-256 ``hash`` and plaintext
    ``size`` in bytes."""

    index: int
    hash: str
    size: int


@dataclass(frozen=True, slots=True)
class SingleUseLink:
    """A single-use download link.

    ``token_id`` is the random part of the token (base64url); ``status`` is ``active`` or ``used``.
    ``expires_at``/``created_at``/``used_at`` are UTC datetimes; ``used_by_ip`` records who consumed it.
    ``blob_id`` and ``version`` are those of the file when the link was minted: the link serves only that
    content (``None`` for links minted before links were bound to content; they are refused).
    """

    token_id: str
    path: str
    created_by: str
    expires_at: datetime
    created_at: datetime = field(default_factory=utcnow)
    status: str = "active"
    used_at: datetime | None = None
    used_by_ip: str | None = None
    blob_id: str | None = None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """A directory quota. Usage counts everything strictly below ``path``: ``bytes_used`` is the sum of file
    sizes (bytes), ``inodes_used`` the number of files and directories. A ``None`` limit is unlimited."""

    path: str
    bytes_limit: int | None
    inodes_limit: int | None
    bytes_used: int = 0
    inodes_used: int = 0


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An API key registered at run time (``POST /v1/keys``), kept in the metadata store as its SHA-256.

    ``key_hash``: hex SHA-256 of the key; ``user``: who requests with it act as; ``scope``: the canonical path
    those requests are confined to (the path and everything below it); ``created`` (UTC).
    """

    key_hash: str
    user: str
    scope: str
    created: datetime


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A storage node as registered in the shared metadata store.

    ``url`` is where peers reach it; ``capacity_bytes``/``free_bytes`` describe its local backend;
    ``last_heartbeat`` is refreshed every few seconds while it runs (UTC).
    """

    instance_id: str
    url: str
    version: str
    capacity_bytes: int
    free_bytes: int
    started_at: datetime
    last_heartbeat: datetime


NULL_VERSION = "null"
"""The version id of an object written while its bucket's versioning was never enabled or is suspended (Amazon
S3 User Guide, "Working with objects in a versioning-suspended bucket")."""


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """A noncurrent version of the file at ``path``, or a delete marker (S3 bucket versioning; the current
    version is the file itself).

    ``version_id`` is unique per path (32 hex digits, or :data:`NULL_VERSION`); ``seq`` orders the versions of a
    path (higher: newer). A version keeps what the file was: ``size`` (bytes), ``mode``, ``owner``, ``group``,
    ``mtime``, its inode ``version`` (so that it keeps its entity tag) and its content (``backend``, ``blob_id``
    or the content id of the blocks layout, ``instance_id``, ``layout``, and for the blocks layout a block list
    of its own keyed by ``ino``), shared with the files and versions naming the same content. A
    ``delete_marker`` has no content (``blob_id`` ``None``, size 0).
    """

    path: str
    version_id: str
    seq: int
    delete_marker: bool
    size: int
    mode: int
    owner: str
    group: str
    mtime: datetime
    version: int = 1
    backend: str | None = None
    blob_id: str | None = None
    instance_id: str | None = None
    ino: int = field(default_factory=new_ino)
    layout: Layout = Layout.BLOB

    def as_inode(self) -> Inode:
        """The file this version names (for permission checks, reads and releasing its content)."""
        return Inode(path=self.path, type=InodeType.FILE, size=self.size, mode=self.mode, owner=self.owner,
                     group=self.group, mtime=self.mtime, ctime=self.mtime, version=self.version, backend=self.backend,
                     blob_id=self.blob_id, instance_id=self.instance_id, ino=self.ino, layout=self.layout)
