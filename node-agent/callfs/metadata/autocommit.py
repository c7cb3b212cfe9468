"""The store-level (autocommit) operations of :class:`~callfs.metadata.base.MetadataStore`, written once.

A store supplies how to read outside a transaction (:meth:`AutocommitOperations._autocommit_reader`), how to run one
self-contained write (:meth:`AutocommitOperations._autocommit_writer`) and :meth:`transaction` for multi-statement work;
this mixin maps every protocol method onto them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from callfs.metadata.base import EntryKey, MetadataTxn
from callfs.metadata.rows import Queries
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


class AutocommitOperations:
    """Mixin: each method runs in its own short transaction (or a single autocommitted statement)."""

    def _autocommit_reader(self) -> Queries:
        raise NotImplementedError

    def _autocommit_writer(self) -> AbstractAsyncContextManager[Queries]:
        raise NotImplementedError

    def transaction(self) -> AbstractAsyncContextManager[MetadataTxn]:
        raise NotImplementedError

    async def get(self, path: str, *, for_update: bool = False) -> Inode | None:
        """The committed inode at ``path`` or ``None`` (``for_update`` is moot outside a transaction)."""
        return await self._autocommit_reader().get(path)

    async def get_many(self, paths: Sequence[str]) -> list[Inode]:
        """The committed inodes at any of ``paths``, root first (one query)."""
        return await self._autocommit_reader().get_many(paths)

    async def get_chain(self, paths: Sequence[str]) -> tuple[list[Inode], list[Quota]]:
        """The committed inodes at any of ``paths`` and their quotas, root first (one query)."""
        return await self._autocommit_reader().get_chain(paths)

    async def lock(
        self, paths: Collection[str], *, exclusive: Collection[str] = (), read: Collection[str] = ()
    ) -> dict[str, Inode]:
        """The committed inodes at ``paths``, ``exclusive`` and ``read``, by path (locks are moot outside a
        transaction)."""
        return await self._autocommit_reader().lock([*paths, *exclusive, *read])

    async def insert(self, inode: Inode, *, parent: Inode | None = None) -> bool:
        """Insert ``inode``; ``False`` when its path exists."""
        async with self._autocommit_writer() as ops:
            return await ops.insert(inode, parent=parent)

    async def update(self, inode: Inode) -> None:
        """Replace the inode at ``inode.path``. Raises ``LookupError`` when absent."""
        async with self._autocommit_writer() as ops:
            await ops.update(inode)

    async def delete(self, path: str) -> None:
        """Delete the one inode at ``path`` (absent: no-op)."""
        async with self._autocommit_writer() as ops:
            await ops.delete(path)

    async def touch_directory(self, path: str, at: datetime) -> None:
        """Move the directory's ``mtime`` and ``ctime`` to ``at`` (see :class:`MetadataTxn`)."""
        async with self._autocommit_writer() as ops:
            await ops.touch_directory(path, at)

    async def has_children(self, path: str) -> bool:
        """True when ``path`` has at least one committed child."""
        return await self._autocommit_reader().has_children(path)

    async def delete_subtree(self, path: str) -> list[Inode]:
        """Delete ``path``, every descendant and their quotas in one transaction; the deleted inodes."""
        async with self.transaction() as txn:
            return await txn.delete_subtree(path)

    async def rename_subtree(self, src: str, dst: str) -> int:
        """Move ``src`` and its descendants (and quotas) to ``dst`` in one transaction; rows moved."""
        async with self.transaction() as txn:
            return await txn.rename_subtree(src, dst)

    async def list_subtree(self, path: str, *, lock: bool = False) -> list[Inode]:
        """Every committed descendant of ``path`` ordered by (depth, directories first, name) (``lock`` is moot
        outside a transaction)."""
        return await self._autocommit_reader().list_subtree(path)

    async def file_blocks(self, ino: int, *, start: int = 0) -> list[FileBlock]:
        """The committed block list of the file numbered ``ino`` from index ``start`` on."""
        return await self._autocommit_reader().file_blocks(ino, start=start)

    async def reserve_block(self, backend: str, location: str, block_hash: str, size: int,
                            stored_size: int) -> int | None:
        """Announce a block before writing its bytes (one statement)."""
        async with self._autocommit_writer() as ops:
            return await ops.reserve_block(backend, location, block_hash, size, stored_size)

    async def replace_blocks(self, inode: Inode, changed: Sequence[FileBlock], count: int) -> None:
        """Change a block list and its reference counts in one transaction."""
        async with self.transaction() as txn:
            await txn.replace_blocks(inode, changed, count)

    async def release_blocks(self, inode: Inode) -> None:
        """Drop a file's block list in one transaction."""
        async with self.transaction() as txn:
            await txn.release_blocks(inode)

    async def claim_blocks(self, backend: str, location: str, before: datetime, limit: int) -> list[str]:
        """Claim unreferenced blocks for collection (one statement)."""
        async with self._autocommit_writer() as ops:
            return await ops.claim_blocks(backend, location, before, limit)

    async def forget_block(self, backend: str, location: str, block_hash: str) -> bool:
        """Delete the row of a claimed block (one statement)."""
        async with self._autocommit_writer() as ops:
            return await ops.forget_block(backend, location, block_hash)

    async def block_known(self, backend: str, location: str, block_hash: str) -> bool:
        """True when the block has a committed row."""
        return await self._autocommit_reader().block_known(backend, location, block_hash)

    async def share_blocks(self, source: Inode, target: Inode, *, at: int = 0) -> int:
        """Share the block list of ``source`` with ``target`` (from block index ``at``) in one short
        transaction."""
        async with self._autocommit_writer() as ops:
            return await ops.share_blocks(source, target, at=at)

    async def blob_referenced(self, backend: str, blob_id: str) -> bool:
        """True when a committed file names the blob ``blob_id`` on ``backend``."""
        return await self._autocommit_reader().blob_referenced(backend, blob_id)

    async def block_totals(self, backend: str, location: str) -> tuple[int, int, int]:
        """``(blocks, plaintext bytes, stored bytes)`` of the committed block rows."""
        return await self._autocommit_reader().block_totals(backend, location)

    async def add_block_replica(self, backend: str, location: str, block_hash: str, node: str) -> None:
        """Record a copy of a block on ``node`` (one statement)."""
        async with self._autocommit_writer() as ops:
            await ops.add_block_replica(backend, location, block_hash, node)

    async def drop_block_replica(self, backend: str, location: str, block_hash: str, node: str) -> bool:
        """Forget the copy of a block on ``node`` (one statement)."""
        async with self._autocommit_writer() as ops:
            return await ops.drop_block_replica(backend, location, block_hash, node)

    async def block_replicas(self, backend: str, location: str, block_hash: str) -> list[str]:
        """The nodes recorded as holding a copy of a block (committed rows)."""
        return await self._autocommit_reader().block_replicas(backend, location, block_hash)

    async def replicas_on_node(
        self, backend: str, node: str, after: tuple[str, str], limit: int
    ) -> list[tuple[str, str]]:
        """A page of the referenced blocks with a copy on ``node`` (committed rows)."""
        return await self._autocommit_reader().replicas_on_node(backend, node, after, limit)

    async def count_under_replicated(self, backend: str, live_since: datetime, want: int) -> int:
        """Referenced blocks with fewer than ``want`` copies on live nodes (committed rows)."""
        return await self._autocommit_reader().count_under_replicated(backend, live_since, want)

    async def list_children(self, path: str, page: ListingPage | None = None) -> list[Inode]:
        """Direct children of ``path`` in listing order (one page of them with ``page``)."""
        return await self._autocommit_reader().list_children(path, page)

    async def list_tree(self, path: str, max_depth: int, page: ListingPage | None = None) -> list[Inode]:
        """Descendants down to ``max_depth`` levels below the children (depth, dirs first, name, path order;
        one page of them with ``page``)."""
        return await self._autocommit_reader().list_tree(path, max_depth, page)

    async def insert_link(self, link: SingleUseLink) -> None:
        """Store a new single-use link."""
        async with self._autocommit_writer() as ops:
            await ops.insert_link(link)

    async def put_attributes(self, blob_id: str, attributes: Mapping[str, str]) -> None:
        """Store ``attributes`` with the content ``blob_id``, replacing any."""
        async with self._autocommit_writer() as ops:
            await ops.put_attributes(blob_id, attributes)

    async def get_attributes(self, blob_id: str) -> dict[str, str]:
        """The committed attributes of the content ``blob_id`` (none: empty)."""
        return await self._autocommit_reader().get_attributes(blob_id)

    async def delete_attributes(self, blob_id: str) -> None:
        """Forget the attributes of the content ``blob_id``."""
        async with self._autocommit_writer() as ops:
            await ops.delete_attributes(blob_id)

    async def xattrs(self, ino: int) -> dict[str, bytes]:
        """The committed extended attributes of the inode numbered ``ino``, by name."""
        return await self._autocommit_reader().xattrs(ino)

    async def xattr_sizes(self, ino: int) -> dict[str, int]:
        """The committed value sizes of the extended attributes of the inode numbered ``ino``, by name."""
        return await self._autocommit_reader().xattr_sizes(ino)

    async def get_xattr(self, ino: int, name: str) -> bytes | None:
        """The committed value of the extended attribute ``name`` of the inode numbered ``ino``, or ``None``."""
        return await self._autocommit_reader().get_xattr(ino, name)

    async def put_xattr(self, ino: int, name: str, value: bytes, *, create: bool = False) -> bool:
        """Set the extended attribute ``name`` of the inode numbered ``ino``, replacing any (``create``: only
        when there is none; ``False`` otherwise)."""
        async with self._autocommit_writer() as ops:
            return await ops.put_xattr(ino, name, value, create=create)

    async def delete_xattr(self, ino: int, name: str) -> bool:
        """Remove the extended attribute ``name`` of the inode numbered ``ino``; ``False`` when absent."""
        async with self._autocommit_writer() as ops:
            return await ops.delete_xattr(ino, name)

    async def copy_xattrs(self, source: int, target: int, *, user_only: bool = False) -> None:
        """Give the inode numbered ``target`` the extended attributes of ``source`` (``user_only``: ``user.*``)."""
        async with self._autocommit_writer() as ops:
            await ops.copy_xattrs(source, target, user_only=user_only)

    async def get_link(self, token_id: str) -> SingleUseLink | None:
        """The link with ``token_id`` in any state, or ``None``."""
        return await self._autocommit_reader().get_link(token_id)

    async def consume_link(self, token_id: str, *, now: datetime, client_ip: str | None) -> SingleUseLink | None:
        """Flip an active unexpired link to ``used`` (one ``UPDATE``); the link as it was, or ``None``."""
        async with self._autocommit_writer() as ops:
            return await ops.consume_link(token_id, now=now, client_ip=client_ip)

    async def sweep_links(self, *, now: datetime, used_before: datetime) -> int:
        """Delete expired links and links used before ``used_before``; how many were deleted."""
        async with self._autocommit_writer() as ops:
            return await ops.sweep_links(now=now, used_before=used_before)

    async def quotas_for(self, paths: Sequence[str], *, for_update: bool = False) -> list[Quota]:
        """The committed quotas on any of ``paths`` (``for_update`` is moot outside a transaction)."""
        return await self._autocommit_reader().quotas_for(paths)

    async def quotas_within(self, path: str) -> list[Quota]:
        """The committed quotas on ``path`` and below."""
        return await self._autocommit_reader().quotas_within(path)

    async def put_quota(self, quota: Quota) -> None:
        """Insert or replace a quota."""
        async with self._autocommit_writer() as ops:
            await ops.put_quota(quota)

    async def delete_quota(self, path: str) -> bool:
        """Remove the quota at ``path``; ``False`` when none was set."""
        async with self._autocommit_writer() as ops:
            return await ops.delete_quota(path)

    async def add_usage(self, path: str, bytes_delta: int, inodes_delta: int) -> None:
        """Add deltas to a quota's usage."""
        async with self._autocommit_writer() as ops:
            await ops.add_usage(path, bytes_delta, inodes_delta)

    async def settle(
        self, quota_paths: Sequence[str], bytes_delta: int, inodes_delta: int, released: Sequence[Inode] = ()
    ) -> tuple[list[Quota], list[Inode]]:
        """Charge quotas and let go of released content in one transaction (see ``MetadataTxn.settle``)."""
        async with self.transaction() as txn:
            return await txn.settle(quota_paths, bytes_delta, inodes_delta, released)

    async def subtree_usage(self, path: str) -> tuple[int, int]:
        """``(bytes, inodes)`` strictly below ``path``."""
        return await self._autocommit_reader().subtree_usage(path)

    async def linked_below(self, path: str) -> bool:
        """True when a committed hard-linked file lies below ``path``."""
        return await self._autocommit_reader().linked_below(path)

    async def subdirectory_counts(self, directories: Collection[int]) -> dict[int, int]:
        """The number of committed child directories of each of ``directories`` that has any."""
        return await self._autocommit_reader().subdirectory_counts(directories)

    async def upsert_node(self, record: NodeRecord) -> None:
        """Register or refresh a node."""
        async with self._autocommit_writer() as ops:
            await ops.upsert_node(record)

    async def mark_leaving(self, instance_id: str, since: datetime) -> bool:
        """Record that node ``instance_id`` is leaving since ``since``; ``False`` when it was already."""
        async with self._autocommit_writer() as ops:
            return await ops.mark_leaving(instance_id, since)

    async def unmark_leaving(self, instance_id: str) -> bool:
        """Forget that node ``instance_id`` is leaving; ``True`` when it was."""
        async with self._autocommit_writer() as ops:
            return await ops.unmark_leaving(instance_id)

    async def leaving_nodes(self) -> list[str]:
        """The instance ids of the nodes being drained, sorted."""
        return await self._autocommit_reader().leaving_nodes()

    async def mark_lost(self, instance_id: str, since: datetime) -> bool:
        """Record that node ``instance_id`` is lost for good since ``since``; ``False`` when it was already."""
        async with self._autocommit_writer() as ops:
            return await ops.mark_lost(instance_id, since)

    async def lost_nodes(self) -> dict[str, datetime]:
        """``{instance_id: since}`` of the nodes declared lost for good."""
        return await self._autocommit_reader().lost_nodes()

    async def count_node_replicas(self, backend: str, node: str) -> int:
        """How many ``block_replicas`` rows of ``backend`` name ``node`` as a holder."""
        return await self._autocommit_reader().count_node_replicas(backend, node)

    async def blocks_relying_on(self, backend: str, node: str, live_since: datetime, want: int) -> int:
        """Referenced blocks that still rely on ``node`` for their ``want`` copies (see :mod:`callfs.drain`)."""
        return await self._autocommit_reader().blocks_relying_on(backend, node, live_since, want)

    async def unrecorded_blocks(self, backend: str, location: str, limit: int) -> list[str]:
        """Up to ``limit`` referenced blocks of ``backend``/``location`` without any replica row."""
        return await self._autocommit_reader().unrecorded_blocks(backend, location, limit)

    async def node_blob_files(self, node: str, after: EntryKey | None, limit: int) -> list[tuple[str, str, EntryKey]]:
        """Up to ``limit`` files whose bytes are one blob on ``node``, ``(path, backend)`` after ``after``."""
        return await self._autocommit_reader().node_blob_files(node, after, limit)

    async def count_node_blob_files(self, node: str) -> int:
        """How many files have their bytes as one blob on ``node``'s local disk."""
        return await self._autocommit_reader().count_node_blob_files(node)

    async def blob_files(self, backend: str, node: str | None, after: EntryKey | None,
                         limit: int) -> list[tuple[str, int, EntryKey]]:
        """Up to ``limit`` blob files of ``backend`` owned by ``node`` (``None``: shared), ``(path, size)``."""
        return await self._autocommit_reader().blob_files(backend, node, after, limit)

    async def count_blob_files(self, backend: str, node: str | None) -> tuple[int, int]:
        """``(files, bytes)`` of ``backend`` whose bytes are one blob owned by ``node`` (``None``: shared)."""
        return await self._autocommit_reader().count_blob_files(backend, node)

    async def list_nodes(self) -> list[NodeRecord]:
        """Every registered node."""
        return await self._autocommit_reader().list_nodes()

    async def put_access_key(self, key: AccessKey) -> tuple[AccessKey, bool]:
        """Register a run-time API key (idempotent by hash); ``(stored record, inserted)``."""
        async with self._autocommit_writer() as ops:
            return await ops.put_access_key(key)

    async def get_access_key(self, key_hash: str) -> AccessKey | None:
        """The registered key with that hash, or ``None``."""
        return await self._autocommit_reader().get_access_key(key_hash)

    async def delete_access_keys(self, user: str) -> int:
        """Forget every registered key of ``user``; how many there were."""
        async with self._autocommit_writer() as ops:
            return await ops.delete_access_keys(user)

    async def blob_ids(self, backend: str, instance_id: str | None) -> AsyncIterator[str]:
        """Stream the blob ids of the files on ``backend`` owned by ``instance_id`` (page by page)."""
        async for blob_id in self._autocommit_reader().blob_ids(backend, instance_id):
            yield blob_id

    async def next_version_seq(self, path: str) -> int:
        """The ``seq`` a new version of ``path`` would get now."""
        return await self._autocommit_reader().next_version_seq(path)

    async def insert_version(self, version: ObjectVersion) -> None:
        """Store a noncurrent version or delete marker."""
        async with self._autocommit_writer() as ops:
            await ops.insert_version(version)

    async def get_version(self, path: str, version_id: str, *, for_update: bool = False) -> ObjectVersion | None:
        """The committed version ``version_id`` of ``path``, or ``None``."""
        return await self._autocommit_reader().get_version(path, version_id)

    async def versions_of(self, path: str) -> list[ObjectVersion]:
        """The committed versions of ``path``, newest first."""
        return await self._autocommit_reader().versions_of(path)

    async def versions_under(self, path: str) -> list[ObjectVersion]:
        """The committed versions of the paths strictly below ``path``, by path, newest first."""
        return await self._autocommit_reader().versions_under(path)

    async def has_versions_under(self, path: str) -> bool:
        """True when a path strictly below ``path`` has a committed version."""
        return await self._autocommit_reader().has_versions_under(path)

    async def delete_version(self, path: str, version_id: str) -> ObjectVersion | None:
        """Forget one version; the row deleted, or ``None``."""
        async with self._autocommit_writer() as ops:
            return await ops.delete_version(path, version_id)

    async def get_versioning(self, path: str) -> str | None:
        """The committed versioning status of the bucket directory ``path``, or ``None``."""
        return await self._autocommit_reader().get_versioning(path)

    async def put_versioning(self, path: str, status: str) -> None:
        """Set the versioning status of the bucket directory ``path``."""
        async with self._autocommit_writer() as ops:
            await ops.put_versioning(path, status)
