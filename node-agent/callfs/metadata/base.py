"""The metadata store protocol.

The engine holds all filesystem semantics; a store only persists :class:`~callfs.models.Inode` and
:class:`~callfs.models.SingleUseLink` records with transactions. Both implementations (SQLite, PostgreSQL)
must behave identically; the shared test suite in ``tests/integration/test_metadata.py`` runs on both.

Ordering rule for every listing: directories before files, then by name in byte order of the UTF-8 name
(PostgreSQL ``COLLATE "C"``; SQLite's default BINARY collation), so both stores list identically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from callfs.errors import AlreadyExists, ServiceUnavailable
from callfs.models import (
    AccessKey,
    FileBlock,
    Inode,
    ListingPage,
    NodeRecord,
    ObjectVersion,
    Quota,
    SingleUseLink,
)

EntryKey = tuple[int, str]
"""The key of a directory entry, ``(parent_ino, name)``: where a keyset scan of entries continues."""


class MetadataUnavailable(ServiceUnavailable):
    """The store cannot be reached (connection refused, pool closed, timeout): HTTP 503."""


class CommitUncertain(MetadataUnavailable):
    """The connection broke while the store was committing: the transaction may or may not have committed.

    A caller must not undo what it did before the transaction on the belief that it failed (the engine keeps
    a new blob then; the orphan sweep removes it if the commit did not land). HTTP 503.
    """


class TransactionConflict(MetadataUnavailable):
    """The store aborted the transaction to break a deadlock or a serialization conflict with a concurrent one:
    nothing was committed, and running the transaction again may succeed. HTTP 503."""


class UniqueViolation(Exception):
    """A statement would give a key (a path) a second row: a concurrent transaction committed that key first."""


class TargetExists(AlreadyExists, ValueError):
    """A rename target (or an entry below it) exists, possibly created by a concurrent transaction: HTTP 409.

    A ``ValueError`` too, as :meth:`MetadataTxn.rename_subtree` documents.
    """


class BlockNotReserved(MetadataUnavailable):
    """A block about to be referenced has no live row: never reserved, or claimed by the garbage collector
    (its bytes may be gone). Nothing was committed; writing the blocks again succeeds. HTTP 503."""


class MetadataTxn(Protocol):
    """Operations inside one transaction; all or nothing is committed.

    Transactions are serialisable with respect to the rows they read ``for_update`` (PostgreSQL:
    ``SELECT ... FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE`` serialises all writers).
    """

    async def get(self, path: str, *, for_update: bool = False) -> Inode | None:
        """The inode at canonical ``path``, or ``None``."""
        ...

    async def get_many(self, paths: Sequence[str]) -> list[Inode]:
        """The inodes existing at any of the canonical ``paths``, ordered by path (a path's ancestors come root
        first), in one round trip; paths without an inode are left out. Used to read a path's whole ancestor
        chain at once."""
        ...

    async def get_chain(self, paths: Sequence[str]) -> tuple[list[Inode], list[Quota]]:
        """Like :meth:`get_many`, with the quotas set on those of the ``paths`` that have one (ordered by path) from
        the same query: a path's ancestors and the quotas governing it in one round trip."""
        ...

    async def insert(self, inode: Inode, *, parent: Inode | None = None) -> bool:
        """Insert a new inode; ``False`` (and no change) when the path already exists. ``parent`` is the directory
        holding it, when the caller read it in this transaction and holds it locked (the store then need not
        find it again)."""
        ...

    async def lock(
        self, paths: Collection[str], *, exclusive: Collection[str] = (), read: Collection[str] = ()
    ) -> dict[str, Inode]:
        """Lock the inodes at ``paths`` until the transaction ends, in path order; those that exist, by path.
        Paths only in ``read`` are read in the same statement without a lock (e.g. the root, never renamed).

        Paths in ``exclusive`` are locked for update (PostgreSQL ``FOR UPDATE``), the others only against
        being renamed or deleted (``FOR KEY SHARE``: many transactions share it, so writers of one directory
        do not wait for each other). A row renamed or deleted by a transaction this one waited for is not
        returned. Taking a transaction's row locks in one call, in one global order, rules out deadlocks
        between transactions that do the same. SQLite serialises writers, so it only reads.
        """
        ...

    async def update(self, inode: Inode) -> None:
        """Replace every field of the existing inode at ``inode.path``."""
        ...

    async def delete(self, path: str) -> None:
        """Delete exactly one inode (no descendants)."""
        ...

    async def touch_directory(self, path: str, at: datetime) -> None:
        """Set the ``mtime`` and ``ctime`` of the directory at ``path`` to ``at`` unless its ``mtime`` is as
        late already (an entry was added, removed or renamed in it); nothing when it is absent. A store may
        apply it right after the transaction commits, in a statement of its own (PostgreSQL does, so that no
        transaction holds a busy directory's row); a rolled-back transaction applies none."""
        ...

    async def has_children(self, path: str) -> bool:
        """True when the directory at ``path`` has at least one entry."""
        ...

    async def delete_subtree(self, path: str) -> list[Inode]:
        """Delete ``path`` and every descendant, and the quotas set on them; return every deleted inode
        (``path`` first), so the caller can free file bytes and account usage."""
        ...

    async def rename_subtree(self, src: str, dst: str) -> int:
        """Re-key ``src`` and all descendants under ``dst`` (``dst`` must not exist), quotas set on them
        included; return the number of inodes moved. Raises :class:`TargetExists` when ``dst`` or a path
        below it exists, also when a concurrent transaction committed it meanwhile."""
        ...

    async def list_subtree(self, path: str, *, lock: bool = False) -> list[Inode]:
        """Every descendant of ``path`` (not ``path`` itself), in listing order per depth. ``lock`` locks them
        until the transaction ends against being renamed, deleted or rewritten (PostgreSQL ``FOR KEY SHARE``,
        which a writer's ``FOR UPDATE`` waits for), in one statement whatever their number."""
        ...

    async def file_blocks(self, ino: int, *, start: int = 0) -> list[FileBlock]:
        """The block list of the file numbered ``ino`` from index ``start`` on, by index (holes absent)."""
        ...

    async def reserve_block(self, backend: str, location: str, block_hash: str, size: int,
                            stored_size: int) -> int | None:
        """Announce a block before writing its bytes (row created unreferenced, or its time refreshed); the
        references it already had (``> 0``: stored already), or ``None`` while the collector claims it."""
        ...

    async def replace_blocks(self, inode: Inode, changed: Sequence[FileBlock], count: int) -> None:
        """Put ``changed`` into the block list of ``inode`` and drop the blocks at index ``count`` and above,
        moving block reference counts along (a count reaching zero records the time, for the collector).
        Raises ``ValueError`` when a changed block lies at or past ``count``, :class:`BlockNotReserved` when an
        entering block has no live row."""
        ...

    async def share_blocks(self, source: Inode, target: Inode, *, at: int = 0) -> int:
        """Give the file ``target`` the block list of ``source``, block ``i`` becoming block ``at + i``, and one
        more reference on each of its blocks (copy-on-write); the number of entries shared (0 for the blob
        layout). ``target`` has no block at ``at`` or above yet. Raises :class:`BlockNotReserved` when a block of
        ``source`` has no live row, ``ValueError`` when the two files are on different backends or locations
        or ``at`` is negative."""
        ...

    async def blob_referenced(self, backend: str, blob_id: str) -> bool:
        """True when a file still names the blob ``blob_id`` on ``backend`` (copies share blobs)."""
        ...

    async def release_blocks(self, inode: Inode) -> None:
        """Drop the whole block list of ``inode`` (a no-op for the blob layout)."""
        ...

    async def claim_blocks(self, backend: str, location: str, before: datetime, limit: int) -> list[str]:
        """Claim for collection up to ``limit`` blocks unreferenced since ``before`` or earlier (and those of a
        collection cut short); their hashes."""
        ...

    async def forget_block(self, backend: str, location: str, block_hash: str) -> bool:
        """Delete the row of a claimed block (once its bytes are deleted); ``True`` when there was one."""
        ...

    async def block_known(self, backend: str, location: str, block_hash: str) -> bool:
        """True when the block has a row (referenced, or awaiting collection)."""
        ...

    async def block_totals(self, backend: str, location: str) -> tuple[int, int, int]:
        """``(blocks, plaintext bytes, stored bytes)`` over the block rows of ``backend``/``location``."""
        ...

    async def add_block_replica(self, backend: str, location: str, block_hash: str, node: str) -> None:
        """Record that ``node`` holds (or is about to hold) a copy of the block; idempotent."""
        ...

    async def drop_block_replica(self, backend: str, location: str, block_hash: str, node: str) -> bool:
        """Forget the copy of the block on ``node``; ``True`` when there was a row."""
        ...

    async def block_replicas(self, backend: str, location: str, block_hash: str) -> list[str]:
        """The nodes recorded as holding a copy of the block, sorted (empty: none recorded)."""
        ...

    async def replicas_on_node(
        self, backend: str, node: str, after: tuple[str, str], limit: int
    ) -> list[tuple[str, str]]:
        """Up to ``limit`` referenced, uncollected blocks with a copy on ``node`` as ``(location, hash)``,
        ordered, after ``after`` (``("", "")`` for the first page)."""
        ...

    async def count_under_replicated(self, backend: str, live_since: datetime, want: int) -> int:
        """Referenced blocks of ``backend`` with fewer than ``want`` copies on nodes whose last heartbeat is at
        ``live_since`` or later."""
        ...

    async def insert_link(self, link: SingleUseLink) -> None:
        """Store a new single-use link."""
        ...

    async def put_attributes(self, blob_id: str, attributes: Mapping[str, str]) -> None:
        """Store ``attributes`` (string names and values, e.g. an S3 object's content type and user metadata)
        with the content ``blob_id``, replacing any: they live and die with that content."""
        ...

    async def get_attributes(self, blob_id: str) -> dict[str, str]:
        """The attributes stored with the content ``blob_id`` (none: empty)."""
        ...

    async def delete_attributes(self, blob_id: str) -> None:
        """Forget the attributes of the content ``blob_id`` (none: no-op)."""
        ...

    async def xattrs(self, ino: int) -> dict[str, bytes]:
        """The extended attributes of the inode numbered ``ino`` (shared by all its names): values by name, in
        name order (bytewise); none: empty."""
        ...

    async def xattr_sizes(self, ino: int) -> dict[str, int]:
        """The value sizes (bytes) of the extended attributes of the inode numbered ``ino``, by name, in name
        order."""
        ...

    async def get_xattr(self, ino: int, name: str) -> bytes | None:
        """The value of the extended attribute ``name`` of the inode numbered ``ino``, or ``None``."""
        ...

    async def put_xattr(self, ino: int, name: str, value: bytes, *, create: bool = False) -> bool:
        """Set the extended attribute ``name`` of the inode numbered ``ino`` to ``value``, replacing any; with
        ``create`` only when there is none (``False``: there was one, nothing changed; a concurrent creation is
        waited for). Attributes are deleted with the inode's last name (a trigger on ``inodes``), never by a
        rename."""
        ...

    async def delete_xattr(self, ino: int, name: str) -> bool:
        """Remove the extended attribute ``name`` of the inode numbered ``ino``; ``False`` when absent."""
        ...

    async def copy_xattrs(self, source: int, target: int, *, user_only: bool = False) -> None:
        """Give the new inode numbered ``target`` every extended attribute of the inode numbered ``source``
        (``user_only``: only its ``user.*`` ones)."""
        ...

    async def quotas_for(self, paths: Sequence[str], *, for_update: bool = False) -> list[Quota]:
        """The quotas set on any of ``paths`` (typically a path's ancestors), ordered by path.

        ``for_update`` locks those quota rows until the transaction ends (PostgreSQL ``FOR UPDATE``), so
        concurrent writers on different nodes serialise their usage checks.
        """
        ...

    async def quotas_within(self, path: str) -> list[Quota]:
        """The quotas set on ``path`` itself or anywhere below it, ordered by path."""
        ...

    async def put_quota(self, quota: Quota) -> None:
        """Insert or replace the quota at ``quota.path`` (limits and usage)."""
        ...

    async def delete_quota(self, path: str) -> bool:
        """Remove the quota at ``path``; ``False`` when there was none."""
        ...

    async def add_usage(self, path: str, bytes_delta: int, inodes_delta: int) -> None:
        """Add the deltas (may be negative) to the usage of the quota at ``path``."""
        ...

    async def settle(
        self, quota_paths: Sequence[str], bytes_delta: int, inodes_delta: int, released: Sequence[Inode] = ()
    ) -> tuple[list[Quota], list[Inode]]:
        """The end of a write, in one round trip where the database allows: add the deltas to the quotas on
        ``quota_paths`` and return them as they are now (by path; the caller checks their limits), and return
        the files of ``released`` whose blob no file names any more (their attributes deleted), whose bytes the
        caller frees after the commit. Runs after the statements that changed the inodes."""
        ...

    async def subtree_usage(self, path: str) -> tuple[int, int]:
        """``(bytes, inodes)`` strictly below ``path``: sum of file sizes and count of entries."""
        ...

    async def linked_below(self, path: str) -> bool:
        """True when a hard-linked file (``nlink`` > 1) lies below the directory ``path``."""
        ...

    async def subdirectory_counts(self, directories: Collection[int]) -> dict[int, int]:
        """The number of child directories of each of ``directories`` (inode numbers) that has any (absent:
        none)."""
        ...

    async def consume_link(self, token_id: str, *, now: datetime, client_ip: str | None) -> SingleUseLink | None:
        """Atomically flip an ``active``, unexpired link to ``used`` (compare-and-set).

        Returns the link as it was before the flip, or ``None`` when no active unexpired link has that id.
        """
        ...

    async def next_version_seq(self, path: str) -> int:
        """The ``seq`` a new version of ``path`` gets: one more than its newest kept version's (1 for the first)."""
        ...

    async def insert_version(self, version: ObjectVersion) -> None:
        """Store a noncurrent version or delete marker of ``version.path`` (S3 bucket versioning). The caller
        takes its content references (:meth:`share_blocks` for a block list; a blob is named by the row) and
        charges the quotas."""
        ...

    async def get_version(self, path: str, version_id: str, *, for_update: bool = False) -> ObjectVersion | None:
        """The kept version ``version_id`` of ``path`` (not the file: that is the current version), or ``None``."""
        ...

    async def versions_of(self, path: str) -> list[ObjectVersion]:
        """The kept versions and delete markers of ``path``, newest first."""
        ...

    async def versions_under(self, path: str) -> list[ObjectVersion]:
        """The kept versions and delete markers of the paths strictly below ``path``, by path, newest first."""
        ...

    async def has_versions_under(self, path: str) -> bool:
        """True when a path strictly below ``path`` has a kept version or delete marker."""
        ...

    async def delete_version(self, path: str, version_id: str) -> ObjectVersion | None:
        """Forget one kept version; the row deleted (``None``: none). The caller releases its content."""
        ...

    async def get_versioning(self, path: str) -> str | None:
        """The versioning status of the bucket directory ``path``: ``Enabled``, ``Suspended`` or ``None``."""
        ...

    async def put_versioning(self, path: str, status: str) -> None:
        """Set the versioning status of the bucket directory ``path`` (``Enabled`` or ``Suspended``)."""
        ...


class MetadataStore(MetadataTxn, Protocol):
    """A metadata store. Its own methods run each in their own short transaction (autocommit reads)."""

    async def start(self) -> None:
        """Connect, apply schema migrations, and create the root directory (``/``, ``0o1777``) if absent.

        Raises:
            MetadataUnavailable: the store cannot be reached.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> bool:
        """True when the store answers a trivial query within about a second."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[MetadataTxn]:
        """Open a read-write transaction; commit on normal exit, roll back on exception."""
        ...

    async def list_children(self, path: str, page: ListingPage | None = None) -> list[Inode]:
        """Direct children of directory ``path`` in listing order; with ``page``, one page of them."""
        ...

    async def list_tree(self, path: str, max_depth: int, page: ListingPage | None = None) -> list[Inode]:
        """Descendants of ``path`` down to ``max_depth`` levels below its children (0 = children only).

        Ordered by (depth, directories first, name, path); with ``page``, one page of them.
        """
        ...

    async def get_link(self, token_id: str) -> SingleUseLink | None:
        """The link with that token id, whatever its state."""
        ...

    async def sweep_links(self, *, now: datetime, used_before: datetime) -> int:
        """Delete expired links and used links used before ``used_before``; return how many."""
        ...

    async def upsert_node(self, record: NodeRecord) -> None:
        """Register or refresh a storage node (keyed by ``instance_id``)."""
        ...

    async def list_nodes(self) -> list[NodeRecord]:
        """Every registered node, ordered by ``instance_id``."""
        ...

    async def mark_leaving(self, instance_id: str, since: datetime) -> bool:
        """Record that node ``instance_id`` is leaving (being drained, :mod:`callfs.drain`) since ``since``;
        ``False`` when it was already."""
        ...

    async def unmark_leaving(self, instance_id: str) -> bool:
        """Forget that node ``instance_id`` is leaving; ``True`` when it was. A lost node stays leaving."""
        ...

    async def leaving_nodes(self) -> list[str]:
        """The instance ids of the nodes being drained, sorted."""
        ...

    async def mark_lost(self, instance_id: str, since: datetime) -> bool:
        """Record that node ``instance_id`` is lost for good (:mod:`callfs.drain`) since ``since``, and leaving
        if it was not; ``False`` when it was lost already."""
        ...

    async def lost_nodes(self) -> dict[str, datetime]:
        """``{instance_id: since}`` of the nodes declared lost for good."""
        ...

    async def count_node_replicas(self, backend: str, node: str) -> int:
        """How many ``block_replicas`` rows of ``backend`` name ``node`` as a holder."""
        ...

    async def blocks_relying_on(self, backend: str, node: str, live_since: datetime, want: int) -> int:
        """Referenced blocks of ``backend`` with a copy on ``node`` (or none recorded and ``node`` their
        location) and fewer than ``want`` copies on nodes live since ``live_since`` that are not leaving."""
        ...

    async def unrecorded_blocks(self, backend: str, location: str, limit: int) -> list[str]:
        """Up to ``limit`` referenced blocks of ``backend``/``location`` without any replica row, by hash."""
        ...

    async def node_blob_files(self, node: str, after: EntryKey | None, limit: int) -> list[tuple[str, str, EntryKey]]:
        """Up to ``limit`` files whose bytes are one blob on ``node``'s local disk, ``(path, backend, key)`` in
        entry order after the key ``after`` (``None``: from the first)."""
        ...

    async def count_node_blob_files(self, node: str) -> int:
        """How many files have their bytes as one blob on ``node``'s local disk."""
        ...

    async def blob_files(self, backend: str, node: str | None, after: EntryKey | None,
                         limit: int) -> list[tuple[str, int, EntryKey]]:
        """Up to ``limit`` files of ``backend`` whose bytes are one blob owned by ``node`` (``None``: on a shared
        backend), ``(path, size in bytes, key)`` in entry order after the key ``after`` (``None``: from the
        first)."""
        ...

    async def count_blob_files(self, backend: str, node: str | None) -> tuple[int, int]:
        """``(files, bytes)`` of ``backend`` whose bytes are one blob owned by ``node`` (``None``: shared)."""
        ...

    async def put_access_key(self, key: AccessKey) -> tuple[AccessKey, bool]:
        """Register ``key`` unless its hash is known; ``(stored record, inserted)`` (the existing one when known)."""
        ...

    async def get_access_key(self, key_hash: str) -> AccessKey | None:
        """The registered key with that SHA-256 (hex), or ``None``."""
        ...

    async def delete_access_keys(self, user: str) -> int:
        """Forget every registered key of ``user``; returns how many there were."""
        ...

    def blob_ids(self, backend: str, instance_id: str | None) -> AsyncIterator[str]:
        """Every ``blob_id`` referenced by a file on ``backend`` owned by ``instance_id`` (streamed)."""
        ...
