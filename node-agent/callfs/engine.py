"""Filesystem semantics of the storage node: create, overwrite, read, list, move, delete, chmod/chown, links.

The engine knows nothing of HTTP. Every operation takes the :class:`~callfs.permissions.Caller` and canonical
paths, enforces the permission model, and follows one durability rule: **bytes first, then metadata**. A write
streams into a new blob, makes it durable, then commits metadata pointing at it in one transaction; the blob it
replaced is deleted only after that commit. A crash at any point leaves the old version or the new one, never a
partial file, and :meth:`Engine.sweep_orphans` removes unreferenced blobs at start.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from callfs import copies, joins, links, paths, quota, xattrs
from callfs.backends.base import Backend, BlobReader
from callfs.block_files import DEFAULT_GRACE, BlockFiles
from callfs.blocks.codec import is_block_hash
from callfs.blocks.layout import BlockPlan, block_count, plan_resize, plan_write
from callfs.copies import CopyResult
from callfs.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    CrossesQuotaRoot,
    DirectoryNotEmpty,
    IsADirectory,
    LinkContentChanged,
    LinkExpired,
    LockTimeout,
    NotADirectory,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    QuotaRootProtected,
    ServiceUnavailable,
    XattrExists,
    XattrNotFound,
)
from callfs.locks.base import Lease, LockService
from callfs.metadata.base import CommitUncertain, MetadataStore, MetadataTxn, TransactionConflict
from callfs.metadata.rows import block_location
from callfs.metrics import Metrics
from callfs.models import (
    FileBlock,
    Inode,
    InodeType,
    Layout,
    ListingPage,
    Quota,
    SingleUseLink,
    Special,
    converted_content_id,
    new_content_id,
    same_content,
    utcnow,
)
from callfs.permissions import (
    DEFAULT_DIR_MODE,
    DEFAULT_FILE_MODE,
    EXECUTE,
    READ,
    WRITE,
    Caller,
    allows,
    check_id,
    chmod_mode,
    inherited,
    require,
    require_chown,
    require_entry_change,
    require_in_scope,
    require_search,
    require_set_times,
    validate_name,
)

if TYPE_CHECKING:
    from callfs.replication import Replication

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Precondition = Callable[[Inode | None], None]
"""Called with the current inode (or ``None``) before a write; raises ``PreconditionFailed`` to refuse it."""

# Times to re-read metadata when a blob vanished under a reader because an overwrite just replaced it.
_OPEN_RETRIES = 3
COMMIT_ATTEMPTS = 3
"""Times a write's metadata transaction runs when the store keeps aborting it to break deadlocks."""

SYSTEM_DIRECTORIES = (
    "/volumes", "/volumes/.csi", "/snapshots", "/snapshots/.csi", "/snapshots/.csi/groups", "/archive",
)
"""Directories the CSI driver writes in as root, parents first: volumes, snapshots, their records and the archive
of retained volumes. Each node makes them ``root:root`` mode 0755 at start (docs/rest-api.md, "Permissions")."""

SYSTEM_DIRECTORY_MODE = 0o755
SYMLINK_MODE = 0o777
"""Mode of a symbolic link: Linux reports 0777 and never checks it (symlink(7))."""
MAX_RDEV = 2**32 - 1
"""Largest device number of a device node (FUSE's ``mknod`` carries a 32-bit ``dev_t``)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of a file write: the committed ``inode`` and whether it was ``created`` (vs overwritten)."""

    inode: Inode
    created: bool


@dataclass(frozen=True, slots=True)
class OpenFile:
    """A readable file: its ``inode`` and an open ``reader`` (close it when done)."""

    inode: Inode
    reader: BlobReader


@dataclass(frozen=True, slots=True)
class Resolved:
    """A path looked up with its ancestors: ``ancestors`` are the existing ones, root first, up to the first
    missing one or file; ``complete`` is true when they are all there and all directories; ``inode`` is the
    entry at the path (``None``: absent)."""

    ancestors: list[Inode]
    complete: bool
    inode: Inode | None
    quotas: list[Quota] = field(default_factory=list)
    """The quotas set on the ancestors (those governing the path), when asked for."""

    @property
    def parent(self) -> Inode | None:
        """The parent directory when every ancestor exists as a directory (``None`` for the root)."""
        return self.ancestors[-1] if self.complete and self.ancestors else None


@dataclass(frozen=True, slots=True)
class Kept:
    """What a :data:`Keeper` did inside a write's or a delete's transaction: the ``bytes`` and ``inodes`` it
    added to the usage at the file's path (versions kept, less those it dropped) and the ``released`` files
    (versions dropped) whose content it let go of: their bytes are freed after the commit when nothing names
    them any more."""

    bytes: int = 0
    inodes: int = 0
    released: tuple[Inode, ...] = ()


Keeper = Callable[[MetadataTxn, Inode | None], Awaitable[Kept]]
"""Called inside the transaction of a whole write or a delete with the file about to be replaced or deleted
(``None``: no file is there) before it changes: may keep the file's content as an object version
(:mod:`callfs.versions`), sharing it. The engine charges what it returns with the change."""


class RemoteBytes(Exception):
    """The bytes of ``inode`` live on another node's local disk: the request must be forwarded there.

    ``burn``, set for a single-use link, uses the link up: await it once the owner answered (the bytes are
    reachable), before streaming; it raises ``LinkExpired`` when a concurrent download used the link first.
    """

    def __init__(self, inode: Inode) -> None:
        super().__init__(f"the bytes of {inode.path} live on node {inode.instance_id}")
        self.inode = inode
        self.burn: Callable[[], Awaitable[None]] | None = None


RemoteFree = Callable[[str, str, str], Awaitable[None]]
"""``(instance_id, backend, blob_id)`` → ask that node to delete a blob it owns."""

RemoteRead = Callable[[str, str, str], AsyncIterator[bytes]]
"""``(instance_id, backend, blob_id)`` → stream a blob from the node that owns it."""

RemoteReadRange = Callable[[Inode, int, int], AsyncIterator[bytes]]
"""``(inode, offset, length)`` → stream ``length`` bytes from ``offset`` of a file stored in blocks on another
node, from that node; raises ``FileNotFoundError`` when the file there is no longer that version."""


DIRECTORY_TIME_SKIP = 0.1
"""Default seconds within which a directory's ``mtime``/``ctime`` is not moved again (:meth:`Engine._touch`)."""

BLOB_ID_WINDOW = 1.0
"""Seconds during which new blob ids share their first two hex characters (see :func:`new_blob_id`)."""


def new_blob_id(now: float | None = None) -> str:
    """A fresh, unguessable blob id: 32 hex characters, the first two naming the :data:`BLOB_ID_WINDOW` of
    ``now`` (default: the wall clock) modulo 256, the other 30 random (120 bits).

    The local backend stores a blob in the directory named by those two characters, so the blobs written close
    together in time share one directory and the fsync of that directory after their renames (group commit);
    over 256 windows the directories are used in turn.
    """
    window = int((time.time() if now is None else now) / BLOB_ID_WINDOW) % 256
    return f"{window:02x}{secrets.token_hex(15)}"


class Engine:
    """The filesystem. ``backends`` maps backend names to started backends; ``instance_id`` is this node's."""

    def __init__(
        self,
        *,
        store: MetadataStore,
        locks: LockService,
        backends: Mapping[str, Backend],
        default_backend: str,
        instance_id: str,
        metrics: Metrics,
        link_secret: str,
        max_file_bytes: int,
        remote_free: RemoteFree | None = None,
        remote_read: RemoteRead | None = None,
        remote_read_range: RemoteReadRange | None = None,
        clock: links.Clock = time.time,
        block_grace: float = DEFAULT_GRACE,
        replication: Replication | None = None,
        whole_files_in_blocks: bool | None = None,
        directory_time_skip: float = DIRECTORY_TIME_SKIP,
    ) -> None:
        if default_backend not in backends:
            raise ValueError(f"default backend {default_backend!r} is not configured")
        self.store = store
        self.locks = locks
        self.backends = dict(backends)
        self.default_backend = default_backend
        self.instance_id = instance_id
        self.metrics = metrics
        self._link_secret = link_secret
        self.max_file_bytes = max_file_bytes
        self.remote_free = remote_free
        self.remote_read = remote_read
        self.remote_read_range = remote_read_range
        self.clock = clock
        """The time single-use links are created, expire and are swept by."""
        self.unavailable: dict[str, str] = {}
        """Backends that could not be started, with the reason (requests for them get 503)."""
        self.block_files = BlockFiles(store, metrics, grace=block_grace, replication=replication)
        """Block I/O of the files stored in blocks (partial writes store files that way)."""
        self.whole_files_in_blocks = whole_files_in_blocks
        """Whole writes to the replicated local backend are stored in blocks too (``backend.whole_files_in_blocks``;
        ``None``: when writes need two copies or more)."""
        self.directory_time_skip = directory_time_skip
        """Seconds within which a directory's times are not moved again by a change of its entries
        (``server.directory_time_skip``, see :meth:`_touch`)."""

    # ---------------------------------------------------------------- helpers

    def backend(self, name: str | None) -> Backend:
        """The backend called ``name`` (``None``: the default). Raises ``BadRequest`` for an unknown name and
        ``ServiceUnavailable`` for one that could not be started."""
        key = name or self.default_backend
        if key not in self.backends:
            raise BadRequest(f"unknown backend {key!r}; configured: {', '.join(sorted(self.backends))}")
        if key in self.unavailable:
            raise ServiceUnavailable(f"backend {key} is unavailable: {self.unavailable[key]}")
        return self.backends[key]

    def reads_copies(self, inode: Inode) -> bool:
        """True when this node reads ``inode`` itself from the copies of its blocks (a file in blocks on the
        node-local backend of a replicating node), wherever the file's owner is."""
        if inode.layout is not Layout.BLOCKS or inode.backend is None or self.block_files.replication is None:
            return False
        backend = self.backends.get(inode.backend)
        return backend is not None and self.block_files.replicated(backend) is not None

    def is_remote(self, inode: Inode) -> bool:
        """True when ``inode``'s bytes can only be reached through another node: a blob on another node's local
        disk, or blocks of another node when this node keeps no copies. A file in blocks on the local backend of a
        replicating node is read and written here, from and to the copies of its blocks, whoever its owner is
        (:meth:`reads_copies`): its owner being down stops neither."""
        if inode.is_dir or inode.backend is None:
            return False
        backend = self.backends.get(inode.backend)
        node_local = backend.node_local if backend is not None else inode.instance_id is not None
        return node_local and inode.instance_id not in (None, self.instance_id) and not self.reads_copies(inode)

    async def _resolve(
        self, caller: Caller, path: str, txn: MetadataTxn | None = None, *, with_quotas: bool = False
    ) -> Resolved:
        """Read ``path`` and all its ancestors in one query (``with_quotas``: and the quotas governing it, from the
        same query) and check search (``x``) permission on the ancestors (POSIX path resolution). Raises
        ``PermissionDenied``."""
        chain = paths.ancestors(path)
        quotas: list[Quota] = []
        with self.metrics.time_metadata("get"):
            if with_quotas:
                inodes, quotas = await (txn or self.store).get_chain([*chain, path])
                quotas = [q for q in quotas if q.path != path]
            else:
                inodes = await (txn or self.store).get_many([*chain, path])
        return self._resolved_chain(caller, path, {i.path: i for i in inodes}, quotas)

    @staticmethod
    def _resolved_chain(caller: Caller, path: str, found: Mapping[str, Inode], quotas: list[Quota]) -> Resolved:
        """:class:`Resolved` from the inodes ``found`` at ``path`` and its ancestors, after checking search
        permission on the ancestors. Raises ``PermissionDenied`` (also for a path outside a scoped caller's
        scope)."""
        require_in_scope(caller, path)
        chain = paths.ancestors(path)
        ancestors: list[Inode] = []
        for ancestor in chain:
            inode = found.get(ancestor)
            if inode is None:
                break
            ancestors.append(inode)
            if not inode.is_dir:
                break
        require_search(caller, ancestors)
        complete = len(ancestors) == len(chain) and (not ancestors or ancestors[-1].is_dir)
        return Resolved(ancestors, complete, found.get(path) if complete else None, quotas)

    async def _resolved(self, caller: Caller, path: str) -> Inode:
        """The inode at ``path`` after :meth:`_resolve`; raises ``NotFound`` or ``PermissionDenied``."""
        inode = (await self._resolve(caller, path)).inode
        if inode is None:
            raise NotFound(f"{path} does not exist")
        return inode

    async def _get(self, path: str) -> Inode:
        with self.metrics.time_metadata("get"):
            inode = await self.store.get(path)
        if inode is None:
            raise NotFound(f"{path} does not exist")
        return inode

    @asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[Lease]:
        """Hold the path lock ``key``; the acquisition (its wait) and the release go to the lock metrics."""
        start = time.perf_counter()
        acquired = False
        failure: BaseException | None = None
        try:
            async with self.locks.hold(key) as lease:
                acquired = True
                self.metrics.lock_acquired(time.perf_counter() - start)
                try:
                    yield lease
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    start = time.perf_counter()  # the release starts
        except BaseException as exc:
            if not acquired:
                self.metrics.lock_failed(time.perf_counter() - start, timeout=isinstance(exc, LockTimeout))
            else:  # the body failed (the release went well), or the release did
                self.metrics.lock_released(time.perf_counter() - start, ok=exc is failure)
            raise
        self.metrics.lock_released(time.perf_counter() - start, ok=True)

    @asynccontextmanager
    async def hold_file(self, path: str) -> AsyncIterator[None]:
        """Hold the write lock of the file ``path`` for the ``async with`` body, waiting like a writer (up to
        ``dlm.wait_timeout`` seconds): while it is held no write can change the file or move its bytes to
        another node. Raises ``LockTimeout``."""
        async with self._lock(f"file:{path}"):
            yield

    @asynccontextmanager
    async def _lock_all(self, *keys: str) -> AsyncIterator[None]:
        """Hold the path locks ``keys`` (duplicates once), taken in sorted order so that two holders of
        overlapping sets never wait for each other in a cycle."""
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self._lock(key))
            yield

    async def _charge(
        self, txn: MetadataTxn, path: str, bytes_delta: int, inodes_delta: int, released: Sequence[Inode] = ()
    ) -> list[Inode]:
        """Account a change at ``path`` to every quota governing it, and let go of the content of the files in
        ``released`` (:meth:`MetadataTxn.settle`, one statement); the released files whose bytes are to be freed
        once the transaction commits (no copy names their blob). Raises ``QuotaExceeded`` on growth past a limit
        (the transaction then rolls back, so nothing is half-written)."""
        charged, unnamed = await txn.settle(quota.governing_paths(path), bytes_delta, inodes_delta, released)
        quota.check_charged(charged, bytes_delta, inodes_delta)
        return unnamed

    @staticmethod
    def _chain_locks(path: str, *, exclusive: bool) -> tuple[list[str], list[str], list[str]]:
        """``(shared, exclusive, read)`` arguments of :meth:`MetadataTxn.lock` for a change at ``path``: its
        ancestors locked against a rename or delete (the root, never renamed, only read), and ``path`` itself
        locked for update when ``exclusive``."""
        chain = paths.ancestors(path)
        return [a for a in chain if a != paths.ROOT], [path] if exclusive else [], [paths.ROOT]

    async def _touch(self, txn: MetadataTxn, *directories: Inode | None) -> None:
        """Move the ``mtime`` and ``ctime`` of ``directories`` (``None`` and files skipped) to now: POSIX moves a
        directory's times when an entry is added to it, removed from it or renamed in or out of it.

        Called in the transaction of the change (the store applies it with the commit, see
        :meth:`~callfs.metadata.base.MetadataTxn.touch_directory`). A directory whose ``mtime`` moved less than
        ``directory_time_skip`` seconds ago (as read in the transaction) is left alone, as JuiceFS's
        ``skip-dir-mtime`` does: a busy directory's row is written at most that often, not by every create in it.
        """
        now = utcnow()
        cutoff = now - timedelta(seconds=self.directory_time_skip)
        wanted = {d.path: d for d in directories if d is not None and d.is_dir}
        for path in sorted(wanted):
            if wanted[path].mtime <= cutoff:
                await txn.touch_directory(path, now)

    async def _ensure_parents(
        self, txn: MetadataTxn, caller: Caller, path: str, *, create: bool, held: Mapping[str, Inode] | None = None,
        touch: bool = True,
    ) -> Inode:
        """The parent directory of ``path``, creating missing ancestors (owned by ``caller``) when ``create``.

        ``held`` is what the transaction's :meth:`_chain_locks` statement returned, when it ran already. Checks
        ``w`` on the directory an entry is created in. With ``touch`` (an entry is being added at ``path``),
        the directory that gains an entry gets its times moved (:meth:`_touch`). Raises ``NotFound`` (missing
        parent and not ``create``) or ``NotADirectory`` (an ancestor is a file).
        """
        require_in_scope(caller, path)
        parent_path = paths.parent_of(path)
        assert parent_path is not None
        chain = [*paths.ancestors(path)]
        # The ancestors stay locked against a rename or delete until the transaction ends (the root is never
        # renamed), so no entry is ever inserted below a directory that is moving away: a rename committed
        # first leaves the old path absent here, and one waiting for this transaction moves the new entry too.
        if held is None:
            shared, _, read = self._chain_locks(path, exclusive=False)
            held = await txn.lock(shared, read=read)
        require_search(caller, [held[a] for a in chain if a in held])
        parent = held.get(parent_path)
        if parent is not None:
            if not parent.is_dir:
                raise NotADirectory(f"{parent_path} is not a directory")
            if touch:
                await self._touch(txn, parent)
            return parent
        if not create:
            raise NotFound(f"parent directory {parent_path} does not exist")
        existing: Inode | None = None
        missing: list[str] = []
        for ancestor in reversed(chain):
            found = held.get(ancestor)
            if found is not None:
                existing = found
                break
            missing.append(ancestor)
        assert existing is not None, "the root always exists"
        if not existing.is_dir:
            raise NotADirectory(f"{existing.path} is not a directory")
        require(caller, existing, WRITE, "create entries in")
        if touch:
            await self._touch(txn, existing)
        now = utcnow()
        made = existing
        inserted = 0
        for directory in reversed(missing):
            holder = made
            made = Inode(
                path=directory, type=InodeType.DIRECTORY, owner=caller.user, mtime=now, ctime=now,
                **inherited(made, directory=True, mode=DEFAULT_DIR_MODE, group=caller.user),
            )
            if not await txn.insert(made, parent=holder):
                found = (await txn.lock([directory])).get(directory)
                if found is None or not found.is_dir:
                    raise NotADirectory(f"{directory} is not a directory")
                made = found
            else:
                inserted += 1
        # One quota charge for the whole chain: the quotas governing the topmost new directory govern every
        # directory below it too (the new ones have no quotas of their own yet).
        await self._charge(txn, missing[-1], 0, inserted)
        return made

    # ---------------------------------------------------------------- reads

    def _backend_type(self, inode: Inode) -> str:
        """The backend ``inode`` is stored with (a directory: the default backend), for metrics."""
        return inode.backend or self.default_backend

    async def stat(self, caller: Caller, path: str) -> Inode:
        """The inode at ``path`` (like POSIX ``stat``: no read permission on it, search permission on every
        ancestor), a directory with its link count (:meth:`_counted`). Raises ``NotFound``,
        ``PermissionDenied``."""
        inode = await self._resolved(caller, path)
        if inode.is_dir:
            inode = (await self._counted([inode]))[0]
        return inode

    async def _counted(self, inodes: list[Inode]) -> list[Inode]:
        """``inodes`` with each directory's ``nlink`` set to 2 plus its number of subdirectories (its name, its
        ``.``, and each child's ``..``: the count POSIX file systems report), counted in one statement per
        :data:`~callfs.metadata.rows.SUBDIRECTORY_BATCH` directories; other entries as they are."""
        directories = [inode.ino for inode in inodes if inode.is_dir]
        if not directories:
            return inodes
        counts = await self.store.subdirectory_counts(directories)
        return [inode.evolve(nlink=2 + counts.get(inode.ino, 0)) if inode.is_dir else inode for inode in inodes]

    async def open_file(self, caller: Caller, path: str, *, resolved: Inode | None = None) -> OpenFile:
        """Open a file for reading (needs ``r``). ``resolved`` is the inode :meth:`stat` just returned for
        ``path`` to this caller, if any: it is used instead of reading it again (once; a blob replaced meanwhile
        is read again).

        Raises ``NotFound``, ``IsADirectory``, ``PermissionDenied``, and :class:`RemoteBytes` when the bytes
        live on another node (checked after the permission check).
        """
        for _ in range(_OPEN_RETRIES):
            inode, resolved = resolved or await self._resolved(caller, path), None
            if inode.is_dir:
                raise IsADirectory(f"{path} is a directory")
            if inode.is_entry_only:
                raise BadRequest(f"{path} is a {inode.type.value} entry without bytes: the server does not open it")
            require(caller, inode, READ, "read")
            try:
                return OpenFile(inode, await self._open_blob(inode))
            except FileNotFoundError:
                continue  # an overwrite replaced the blob between our two reads; read metadata again
        raise ServiceUnavailable(f"{path} keeps changing while being opened; retry")

    async def _open_blob(self, inode: Inode, *, pinned: bool = False) -> BlobReader:
        if self.is_remote(inode):
            raise RemoteBytes(inode)
        backend = self.backend(inode.backend)
        if inode.layout is Layout.BLOCKS:
            blocks = await self.block_files.open(backend, inode)
            if pinned:  # an object version: its block list never changes
                self.metrics.file_operation("read", backend.name)
                return blocks
            now = await self.store.get(inode.path)
            if now is None or (now.ino, now.version) != (inode.ino, inode.version):
                raise FileNotFoundError(inode.path)  # changed between the two reads: read both again
            self.metrics.file_operation("read", backend.name)
            return blocks
        assert inode.blob_id is not None
        with self.metrics.time_backend(backend.name, "open"):
            reader = await backend.open(inode.blob_id)
        self.metrics.file_operation("read", backend.name)
        return reader

    async def list_directory(
        self, caller: Caller, path: str, *, recursive: bool = False, max_depth: int = 0
    ) -> tuple[Inode, list[Inode]]:
        """The directory at ``path`` and all its entries: :meth:`list_page` without a page."""
        directory, entries, _ = await self.list_page(caller, path, recursive=recursive, max_depth=max_depth)
        return directory, entries

    async def list_page(
        self,
        caller: Caller,
        path: str,
        *,
        recursive: bool = False,
        max_depth: int = 0,
        page: ListingPage | None = None,
    ) -> tuple[Inode, list[Inode], ListingPage | None]:
        """The directory at ``path`` (needs ``r``), its entries in listing order (with ``page``: one page of
        them) and the page that follows (``None`` after the last one).

        Recursive listings go ``max_depth`` levels below the children (0 = children only) and leave out the
        contents of subdirectories the caller may not read; such a page may hold fewer than ``page.limit``
        entries, even none, and still be followed by another. Raises ``NotFound``, ``NotADirectory``,
        ``PermissionDenied``.
        """
        directory = await self._resolved(caller, path)
        if not directory.is_dir:
            raise NotADirectory(f"{path} is not a directory")
        require(caller, directory, READ, "list")
        self.metrics.file_operation("list", self._backend_type(directory))
        # One entry more than the page holds tells whether another page follows.
        probe = None if page is None else ListingPage(page.limit + 1, page.after, page.after_type)
        with self.metrics.time_metadata("list"):
            if recursive:
                entries = await self.store.list_tree(path, max_depth, probe)
            else:
                entries = await self.store.list_children(path, probe)
        following = None
        if page is not None and len(entries) > page.limit:
            del entries[page.limit :]
            last = entries[-1]
            following = ListingPage(page.limit, last.path, last.type)
        if recursive and not allows(caller, directory, EXECUTE):  # names of the children, but no way below them
            entries = [e for e in entries if e.depth == directory.depth + 1]
        elif recursive:
            entries = await self._readable_entries(caller, directory, entries)
        directory, *entries = await self._counted([directory, *entries])
        return directory, entries, following

    async def _readable_entries(self, caller: Caller, directory: Inode, entries: list[Inode]) -> list[Inode]:
        """``entries`` of a recursive listing of ``directory`` without those below a subdirectory the caller may
        not read and search. Subdirectories the entries lie in that are not among them (an earlier page of the
        listing held them) are read in one query."""
        known = {e.path: e for e in entries if e.is_dir}
        top = directory.path
        between = {a for e in entries for a in paths.ancestors(e.path) if a != top and paths.is_within(a, top)}
        missing = sorted(between - known.keys())
        if missing:
            with self.metrics.time_metadata("get"):
                known.update({i.path: i for i in await self.store.get_many(missing)})
        unreadable = {a for a in between if a in known and not allows(caller, known[a], READ | EXECUTE)}
        if not unreadable:
            return entries
        return [e for e in entries if unreadable.isdisjoint(paths.ancestors(e.path))]

    # ---------------------------------------------------------------- writes

    async def write_file(
        self,
        caller: Caller,
        path: str,
        body: AsyncIterator[bytes],
        *,
        create_only: bool,
        backend: str | None = None,
        precondition: Precondition | None = None,
        expected_size: int | None = None,
        local: bool = False,
        attributes: Mapping[str, str] | None = None,
        keep: Keeper | None = None,
        created_at: datetime | None = None,
    ) -> WriteResult:
        """Create (``create_only``: POST) or create-or-overwrite (PUT) the file at ``path`` from ``body``.

        ``created_at`` (timezone-aware) is the time a client created and last wrote the file before it sent it
        (a FUSE mount uploads a new file at its first ``close``): a file this write creates gets it as its
        ``mtime``, ``atime`` and ``ctime`` (never later than now), the times the client already showed. An
        overwrite ignores it: it moves the times to now.

        ``local`` writes the new bytes on this node even when the current ones live on another (for a request
        a peer forwarded here, which is never forwarded again); the file then moves to this node.

        Missing parents are created, owned by the caller. A second writer of the same path waits for the first
        (path lock). Raises ``IsADirectory`` (root or an existing directory, without ``create_only``),
        ``Conflict`` (the same with ``create_only``), ``AlreadyExists`` (``create_only`` and a file exists),
        ``NotADirectory``, ``PermissionDenied``, ``PayloadTooLarge`` (more than
        ``max_file_bytes``), ``PreconditionFailed`` (from ``precondition``), ``LockTimeout``, ``QuotaExceeded``
        (checked against ``expected_size`` bytes before reading the body, while streaming, and finally in the
        metadata transaction — a refused write leaves no byte behind), and :class:`RemoteBytes` when an
        overwrite targets bytes on another node. An overwrite keeps the file's backend unless ``backend``
        names another. ``attributes`` (string names and values) are committed with the new content in the same
        transaction (:meth:`attributes` reads them back); a later whole write of the file starts without them,
        a partial one (:meth:`write_range`, :meth:`resize_file`) keeps them. ``keep`` runs in the transaction
        before the file changes (S3 versioning keeps the replaced content as a noncurrent version).
        """
        if path == paths.ROOT:
            if create_only:
                raise Conflict("the root is a directory; a file cannot be created there")
            raise IsADirectory("the root is a directory")
        # Search permission is checked here, when the write starts (as POSIX checks it at open()).
        resolved = await self._resolve(caller, path, with_quotas=True)
        current = resolved.inode
        self._check_write(caller, path, current, create_only, precondition)
        target = self.backend(backend or (current.backend if current is not None else None))
        if current is not None and target.node_local and self.is_remote(current) and not local:
            raise RemoteBytes(current)
        if current is None:  # fail fast, before reading any byte; the transaction checks again
            parent = resolved.parent
            if parent is not None:
                if not parent.is_dir:
                    raise NotADirectory(f"{parent.path} is not a directory")
                require_entry_change(caller, parent, None, "create")
        room = self._headroom(current, resolved.quotas)
        if expected_size is not None and room is not None and expected_size > room:
            raise QuotaExceeded(f"writing {expected_size} bytes to {path} would exceed a quota ({room} bytes left)")
        async with self._lock(f"file:{path}") as lease:
            if await self._whole_in_blocks(target):
                result, unnamed = await self._write_file_in_blocks(
                    caller, path, target, self._limited(path, body, room), lease, create_only, precondition,
                    attributes, existing=current is not None, keep=keep, created_at=created_at,
                )
                for replaced in unnamed:
                    await self._free_bytes(replaced)
                self.metrics.file_operation("create" if result.created else "update", target.name)
                return result
            blob_id = new_blob_id()
            with self.metrics.time_backend(target.name, "create"):
                writer = await target.create(blob_id)
            try:
                async for chunk in self._limited(path, body, room):
                    with self.metrics.time_backend(target.name, "write"):
                        await writer.write(chunk)
                if self.locks.is_lost(lease):
                    raise ServiceUnavailable(f"lost the lock on {path} during the upload; nothing was written")
                with self.metrics.time_backend(target.name, "commit"):
                    await writer.commit()
            except BaseException:
                await writer.abort()
                raise
            try:
                with self.metrics.time_metadata("write_file"):
                    result, unnamed = await self._commit_write_retrying(
                        caller, path, target, blob_id, writer.bytes_written, create_only, precondition, attributes,
                        existing=current is not None, keep=keep, created_at=created_at,
                    )
            except CommitUncertain:
                raise  # the inode may point at the new blob now: keep it (the orphan sweep frees it if not)
            except BaseException:
                await self._delete_blob(target.name, blob_id)
                raise
        for replaced in unnamed:
            await self._free_bytes(replaced)
        self.metrics.file_operation("create" if result.created else "update", target.name)
        return result

    async def _whole_in_blocks(self, target: Backend) -> bool:
        """True when a whole write to ``target`` is stored in blocks, so that its blocks get their copies like a
        partial write's: on the node-local backend of a replicating node, when ``backend.whole_files_in_blocks``
        says so or, unset, when writes need two copies or more (a node alone keeps one blob, served with
        ``sendfile``)."""
        replication = self.block_files.replicated(target)
        if replication is None:
            return False
        if self.whole_files_in_blocks is not None:
            return self.whole_files_in_blocks
        return await replication.target() >= 2

    async def _limited(self, path: str, body: AsyncIterator[bytes], room: int | None) -> AsyncIterator[bytes]:
        """``body`` passed through, raising ``PayloadTooLarge`` past ``max_file_bytes`` and ``QuotaExceeded``
        past ``room`` bytes (``None``: no quota) before the chunk that would cross the limit."""
        total = 0
        async for chunk in body:
            if total + len(chunk) > self.max_file_bytes:
                raise PayloadTooLarge(f"file larger than the limit of {self.max_file_bytes} bytes")
            if room is not None and total + len(chunk) > room:
                raise QuotaExceeded(f"writing to {path} exceeds a quota ({room} bytes left)")
            total += len(chunk)
            yield chunk

    async def _write_file_in_blocks(
        self, caller: Caller, path: str, target: Backend, body: AsyncIterator[bytes], lease: Lease,
        create_only: bool, precondition: Precondition | None, attributes: Mapping[str, str] | None, *,
        existing: bool, keep: Keeper | None, created_at: datetime | None = None,
    ) -> tuple[WriteResult, list[Inode]]:
        """The blocks part of :meth:`write_file`: store ``body`` as blocks (each with its copies, see
        :mod:`callfs.replication`), then commit the file naming them (``keep`` as for :meth:`write_file`). A
        write that fails leaves its blocks unreferenced, for the collector; nothing else was changed."""
        blocks, size = await self.block_files.write_stream(target, block_location(self.instance_id), body)
        if self.locks.is_lost(lease):
            raise ServiceUnavailable(f"lost the lock on {path} during the upload; nothing was written")
        with self.metrics.time_metadata("write_file"):
            return await self._commit_write_retrying(
                caller, path, target, new_content_id(), size, create_only, precondition, attributes,
                existing=existing, blocks=blocks, keep=keep, created_at=created_at,
            )

    async def _write_headroom(self, path: str, current: Inode | None) -> int | None:
        """Bytes a write of ``path`` may hold under the governing quotas (``None``: unlimited), read now.
        Advisory: the transaction charges the quotas and checks them again."""
        with self.metrics.time_metadata("quotas"):
            quotas = await self.store.quotas_for(quota.governing_paths(path))
        return self._headroom(current, quotas)

    @staticmethod
    def _headroom(current: Inode | None, quotas: list[Quota]) -> int | None:
        """Bytes a write replacing ``current`` may hold under the governing ``quotas`` (``None``: unlimited)."""
        room = quota.headroom_bytes(quotas)
        if room is None:
            return None
        return room + (current.size if current is not None else 0)

    def _check_write(
        self, caller: Caller, path: str, current: Inode | None, create_only: bool, precondition: Precondition | None
    ) -> None:
        if precondition is not None:
            precondition(current)
        if current is None:
            return
        if current.is_dir:
            if create_only:
                raise Conflict(f"{path} is a directory; a file cannot be created there")
            raise IsADirectory(f"{path} is a directory")
        if current.is_entry_only and not create_only:
            raise BadRequest(f"{path} is a {current.type.value} entry without bytes: the server does not write it")
        if create_only:
            raise AlreadyExists(f"{path} already exists; use PUT to update it")
        require(caller, current, WRITE, "write")

    @staticmethod
    async def _retrying_conflicts(commit: Callable[[], Awaitable[_T]], what: str) -> _T:
        """``commit()``, run again (up to :data:`COMMIT_ATTEMPTS` times in all) when the store aborted its
        transaction to break a deadlock with a concurrent one; ``what`` names it in the log. Raises
        ``TransactionConflict`` when every attempt was aborted."""
        for _ in range(COMMIT_ATTEMPTS - 1):
            try:
                return await commit()
            except TransactionConflict:
                log.info("%s aborted by a conflict; running it again", what)
        return await commit()

    async def _commit_write_retrying(
        self, caller: Caller, path: str, target: Backend, blob_id: str, size: int, create_only: bool,
        precondition: Precondition | None, attributes: Mapping[str, str] | None = None, *, existing: bool,
        keep: Keeper | None = None,
        blocks: list[FileBlock] | None = None,
        created_at: datetime | None = None,
    ) -> tuple[WriteResult, list[Inode]]:
        """:meth:`_commit_write`, run again (up to :data:`COMMIT_ATTEMPTS` times in all) when the store aborted it
        to break a deadlock with a concurrent transaction: the bytes are written already and the transaction
        reads everything it decides on afresh. Raises ``TransactionConflict`` when every attempt was aborted."""
        return await self._retrying_conflicts(
            lambda: self._commit_write(caller, path, target, blob_id, size, create_only, precondition, attributes,
                                       existing=existing, keep=keep, blocks=blocks, created_at=created_at),
            f"metadata transaction for {path}")

    async def _commit_write(
        self,
        caller: Caller,
        path: str,
        target: Backend,
        blob_id: str,
        size: int,
        create_only: bool,
        precondition: Precondition | None,
        attributes: Mapping[str, str] | None = None,
        *,
        existing: bool,
        keep: Keeper | None = None,
        blocks: list[FileBlock] | None = None,
        created_at: datetime | None = None,
    ) -> tuple[WriteResult, list[Inode]]:
        """One transaction: lock (the file for update; for a new file its ancestors too, in the same statement),
        write the inode, then charge the quotas and let go of the replaced content (one statement). ``existing``:
        the file was there when the write started (its ancestors need no lock then: the row lock on the file
        keeps a rename from moving it). ``blocks``: the new content is this block list (``blob_id`` is then a
        content id), referenced in the same transaction. Returns the result and the replaced files whose bytes
        to free."""
        layout = Layout.BLOB if blocks is None else Layout.BLOCKS
        now = utcnow()
        instance = self.instance_id if target.node_local else None
        async with self.store.transaction() as txn:
            if attributes:
                await txn.put_attributes(blob_id, attributes)
            if existing:
                held = await txn.lock((), exclusive=[path])
            else:
                shared, exclusive, read = self._chain_locks(path, exclusive=True)
                held = await txn.lock(shared, exclusive=exclusive, read=read)
            current = held.get(path)
            self._check_write(caller, path, current, create_only, precondition)
            kept = await keep(txn, current) if keep is not None else Kept()
            if current is not None:
                updated = current.evolve(
                    size=size, mtime=now, ctime=now, version=current.version + 1, backend=target.name,
                    blob_id=blob_id, instance_id=instance, layout=layout,
                )
                await txn.update(updated)
                await txn.release_blocks(current)
                if blocks is not None:
                    await txn.replace_blocks(updated, blocks, block_count(size))
                unnamed = await self._charge(txn, path, size - current.size + kept.bytes, kept.inodes,
                                             [current, *kept.released])
                return WriteResult(updated, created=False), unnamed
            parent = await self._ensure_parents(txn, caller, path, create=True, held=None if existing else held)
            require_entry_change(caller, parent, None, "create")
            made = now if created_at is None else min(created_at, now)
            inode = Inode(
                path=path, type=InodeType.FILE, size=size, owner=caller.user, mtime=made, ctime=made,
                backend=target.name, blob_id=blob_id, instance_id=instance, layout=layout,
                **inherited(parent, directory=False, mode=DEFAULT_FILE_MODE, group=caller.user),
            )
            if not await txn.insert(inode, parent=parent):
                raise AlreadyExists(f"{path} already exists")
            if blocks is not None:
                await txn.replace_blocks(inode, blocks, block_count(size))
            unnamed = await self._charge(txn, path, size + kept.bytes, 1 + kept.inodes, kept.released)
            return WriteResult(inode, created=True), unnamed

    async def write_range(
        self,
        caller: Caller,
        path: str,
        offset: int,
        length: int,
        body: AsyncIterator[bytes],
        *,
        precondition: Precondition | None = None,
        local: bool = False,
    ) -> WriteResult:
        """Write ``length`` bytes of ``body`` at byte ``offset`` of the existing file ``path`` (a partial PUT,
        RFC 9110 §14.5): at the current size it appends, past it the gap reads as zeros.

        Only the blocks the range touches are written; a file still stored as one blob is converted to blocks
        first (once). Same rules as an overwrite by :meth:`write_file`: ``w`` on the file, the path lock,
        ``precondition`` (``If-Match``...), quotas on the growth, ``max_file_bytes``; the version (ETag)
        changes. Raises ``NotFound``, ``IsADirectory``, ``PermissionDenied``, ``PreconditionFailed``,
        ``PayloadTooLarge``, ``QuotaExceeded``, ``BadRequest`` (a body shorter or longer than ``length``),
        ``Conflict`` (the file was replaced meanwhile), ``DataCorrupted``, ``LockTimeout`` and
        :class:`RemoteBytes` (the file's bytes live on another node). Nothing changes unless it succeeds.
        """
        if offset < 0 or length < 0:
            raise BadRequest("offset and length must be >= 0")
        return await self._change_blocks(
            caller, path, lambda inode: plan_write(inode.size, offset, length,
                                                   convert=inode.layout is Layout.BLOB),
            body, precondition=precondition, local=local,
        )

    async def resize_file(
        self, caller: Caller, path: str, size: int, *, precondition: Precondition | None = None,
        local: bool = False,
    ) -> WriteResult:
        """Truncate or extend the file ``path`` to ``size`` bytes (POSIX ``ftruncate``: new bytes read as
        zeros). Rules and errors as :meth:`write_range`; a size equal to the current one changes nothing."""
        if size < 0:
            raise BadRequest("size must be >= 0")
        return await self._change_blocks(
            caller, path, lambda inode: plan_resize(inode.size, size, convert=inode.layout is Layout.BLOB),
            None, precondition=precondition, local=local,
        )

    async def _change_blocks(
        self,
        caller: Caller,
        path: str,
        plan_for: Callable[[Inode], BlockPlan],
        body: AsyncIterator[bytes] | None,
        *,
        precondition: Precondition | None,
        local: bool,
    ) -> WriteResult:
        if path == paths.ROOT:
            raise IsADirectory("the root is a directory")
        current = (await self._resolve(caller, path)).inode
        if current is None:
            raise NotFound(f"{path} does not exist; a partial write needs an existing file")
        self._check_write(caller, path, current, False, precondition)
        if self.is_remote(current):
            if local:
                raise Conflict(f"the bytes of {path} moved to node {current.instance_id} meanwhile; retry")
            raise RemoteBytes(current)
        self._check_growth(path, plan_for(current).new_size, current, await self._write_headroom(path, current))
        async with self._lock(f"file:{path}") as lease:
            current = await self._get(path)
            self._check_write(caller, path, current, False, precondition)
            if self.is_remote(current):
                raise Conflict(f"the bytes of {path} moved to node {current.instance_id} meanwhile; retry")
            plan = plan_for(current)
            if plan.new_size == current.size and not plan.length:
                return WriteResult(current, created=False)
            self._check_growth(path, plan.new_size, current, await self._write_headroom(path, current))
            backend = self.backend(current.backend)
            changed = await self.block_files.write_plan(backend, current, plan, body)
            if self.locks.is_lost(lease):
                raise ServiceUnavailable(f"lost the lock on {path} during the write; nothing was written")
            with self.metrics.time_metadata("write_range"):
                updated = await self._retrying_conflicts(
                    lambda: self._commit_blocks(caller, path, current, plan, changed, precondition),
                    f"metadata transaction for {path}")
        if current.layout is Layout.BLOB:
            await self._free(current)  # converted: the blob is no longer referenced
        self.metrics.file_operation("update", backend.name)
        return WriteResult(updated, created=False)

    async def convert_blob(self, path: str, *, pace: Callable[[int], Awaitable[None]] | None = None) -> Inode | None:
        """Convert the file ``path`` from one blob to blocks without changing it (an upgrade of how it is
        stored, :mod:`callfs.convert`): the conversion of a first partial write (:meth:`write_range`) with nothing
        written. The blocks are written (with their copies) from the blob, which is immutable, before the file's
        lock is taken, so writers of the file never wait for the reading; then, under the lock, one transaction
        swaps the layout if the file is still that blob at that version. Size, times, version, owner and mode
        stay; the content id is derived from the blob id, so the ETag stays; the attributes move with the
        content. Every name of a hard-linked file converts at once (they share the inode). The blob is freed
        after the commit unless a copy or an object version still names it. ``pace`` is awaited with the byte
        count of each block read (a rate limit; it may sleep).

        Returns the converted inode, or ``None`` when there is nothing to convert here (gone, not a file, in
        blocks already, or its blob is on another node's disk). Raises ``Conflict`` when the file changed while
        its blocks were written (nothing changed; its new blocks are collected: try again later),
        ``DataCorrupted``, ``ServiceUnavailable`` (too few nodes for the copies, backend down), ``LockTimeout``.
        """
        with self.metrics.time_metadata("get"):
            current = await self.store.get(path)
        if (current is None or current.type is not InodeType.FILE or current.layout is not Layout.BLOB
                or current.blob_id is None or current.backend is None or self.is_remote(current)):
            return None
        backend = self.backend(current.backend)
        plan = plan_resize(current.size, current.size, convert=True)
        try:
            changed = await self.block_files.write_plan(backend, current, plan, None, pace=pace)
        except FileNotFoundError:
            raise Conflict(f"{path} was rewritten while being converted; nothing changed") from None
        admin = Caller("root")
        async with self._lock(f"file:{path}"):
            with self.metrics.time_metadata("convert"):
                updated = await self._retrying_conflicts(
                    lambda: self._commit_blocks(admin, path, current, plan, changed, None, conversion=True),
                    f"metadata transaction converting {path}")
        await self._free(current)  # converted: the blob is no longer referenced (unless a copy names it)
        return updated

    def _check_growth(self, path: str, new_size: int, current: Inode, room: int | None) -> None:
        if new_size > self.max_file_bytes:
            raise PayloadTooLarge(f"file larger than the limit of {self.max_file_bytes} bytes")
        if room is not None and new_size > room:
            raise QuotaExceeded(f"growing {path} to {new_size} bytes would exceed a quota ({room} bytes allowed)")

    async def _commit_blocks(
        self, caller: Caller, path: str, current: Inode, plan: BlockPlan, changed: list[FileBlock],
        precondition: Precondition | None, *, conversion: bool = False,
    ) -> Inode:
        """Commit a block change of ``current`` in one transaction: the inode (size, version, a new content
        id), its block list and the block references, the quota usage, and the attributes of the content, which
        move to the new content id (a partial write keeps them, as S3 changes an object's metadata only on a
        whole PUT or copy). ``conversion``: the content is the same (:meth:`convert_blob`), so size, times and
        version stay and the content id is derived from the blob's (the ETag stays). Raises ``Conflict`` when
        the file changed since ``current`` was read (another version or content)."""
        async with self.store.transaction() as txn:
            now = await txn.get(path, for_update=True)
            if now is None:
                raise Conflict(f"{path} was deleted while the write ran; nothing changed")
            self._check_write(caller, path, now, False, precondition)
            if (now.ino, now.version, now.blob_id) != (current.ino, current.version, current.blob_id):
                raise Conflict(f"{path} was replaced while the write ran; nothing changed")
            if conversion:
                assert now.blob_id is not None and plan.new_size == now.size
                updated = now.evolve(blob_id=converted_content_id(now.blob_id), layout=Layout.BLOCKS)
            else:
                moment = utcnow()
                updated = now.evolve(
                    size=plan.new_size, mtime=moment, ctime=moment, version=now.version + 1,
                    blob_id=new_content_id(), layout=Layout.BLOCKS,
                )
                await self._charge(txn, path, plan.new_size - now.size, 0)
            await txn.update(updated)
            await txn.replace_blocks(updated, changed, plan.count)
            if now.blob_id is not None:
                kept = await txn.get_attributes(now.blob_id)
                if kept:
                    assert updated.blob_id is not None
                    await txn.put_attributes(updated.blob_id, kept)
                    shared = now.backend is not None and await txn.blob_referenced(now.backend, now.blob_id)
                    if not shared:  # a copy naming the same blob keeps its attributes
                        await txn.delete_attributes(now.blob_id)
        return updated

    async def make_directory(self, caller: Caller, path: str) -> tuple[Inode, bool]:
        """Create the directory ``path`` and missing parents; ``(inode, created)``; idempotent for directories.

        Raises ``AlreadyExists`` (a file is there), ``NotADirectory``, ``PermissionDenied``.
        """
        existing = (await self._resolve(caller, path)).inode
        if existing is not None:
            if not existing.is_dir:
                raise AlreadyExists(f"{path} exists and is a file")
            return existing, False
        with self.metrics.time_metadata("mkdir"):
            async with self.store.transaction() as txn:
                parent = await self._ensure_parents(txn, caller, path, create=True)
                require_entry_change(caller, parent, None, "create")
                now = utcnow()
                inode = Inode(
                    path=path, type=InodeType.DIRECTORY, owner=caller.user, mtime=now, ctime=now,
                    **inherited(parent, directory=True, mode=DEFAULT_DIR_MODE, group=caller.user),
                )
                if await txn.insert(inode):
                    await self._charge(txn, path, 0, 1)
                    self.metrics.file_operation("create", self._backend_type(inode))
                    return inode, True
                found = await txn.get(path)
        if found is None or not found.is_dir:
            raise AlreadyExists(f"{path} exists and is a file")
        return found, False

    async def make_symlink(self, caller: Caller, path: str, target: str) -> Inode:
        """Create the symbolic link ``path`` whose target is ``target`` (POSIX symlink(2)): mode 0777, no bytes,
        never followed by the server — every request on ``path`` acts on the link (lstat semantics); a FUSE
        mount's kernel resolves it. See :meth:`_make_entry` for the parent, group and quota rules.

        Raises what :meth:`_make_entry` raises, and ``BadRequest`` for a bad target
        (:func:`callfs.paths.validate_target`).
        """
        paths.validate_target(target)
        return await self._make_entry(caller, path, InodeType.SYMLINK, SYMLINK_MODE, target=target)

    async def make_special(self, caller: Caller, path: str, special: Special, rdev: int = 0) -> Inode:
        """Create the special file ``path`` (POSIX mknod(2)/mkfifo(3), a socket's bind(2)): an entry only, mode
        0644 (the caller sets its own), nothing stored or served — a FUSE mount's kernel makes a FIFO or a
        socket a local object of the machine that opens it, and the mount is ``nodev``. ``rdev`` is a device
        node's device number (Linux's encoding, ``0..2**32-1``: FUSE carries 32 bits); FIFOs and sockets have 0.
        See :meth:`_make_entry` for the parent, group and quota rules.

        Raises what :meth:`_make_entry` raises, and ``BadRequest`` for ``rdev`` out of range or non-zero on a
        FIFO or socket.
        """
        if not 0 <= rdev <= MAX_RDEV or (rdev and special in (Special.FIFO, Special.SOCKET)):
            raise BadRequest(f"rdev must be 0..{MAX_RDEV} for a device node and 0 for a FIFO or a socket")
        return await self._make_entry(caller, path, InodeType.SPECIAL, DEFAULT_FILE_MODE, special=special,
                                      rdev=rdev)

    async def make_hard_link(self, caller: Caller, source: str, path: str) -> Inode:
        """Give the file, symlink or special file ``source`` a second name ``path`` (POSIX link(2)): both names
        are one inode — same number, content, attributes and ``nlink`` (one more), whichever name a change goes
        through; the content lives until its last name goes. Its ``ctime`` and the new parent's times move.

        Rules: search permission on both paths; ``w`` on the new name's directory, which must exist (no parents
        are made); the caller owns ``source`` or may read and write it (Linux ``protected_hardlinks``); both
        names lie under the same quota roots (a linked file is charged once, to those quotas; no byte or
        inode is added). Returns the inode as the new name sees it.

        Raises ``NotFound`` (``source`` or the new name's directory), ``AlreadyExists`` (anything at ``path``),
        ``IsADirectory`` (``source`` is a directory: POSIX lets a filesystem refuse it, as Linux does),
        ``NotADirectory``, ``PermissionDenied``, ``CrossesQuotaRoot``.
        """
        if path == paths.ROOT:
            raise AlreadyExists("the root exists")
        require_in_scope(caller, source)
        require_in_scope(caller, path)
        with self.metrics.time_metadata("create_link"):
            async with self.store.transaction() as txn:
                held = await txn.lock(
                    {*paths.ancestors(source), *paths.ancestors(path)} - {paths.ROOT}, exclusive={source, path},
                    read=[paths.ROOT],
                )
                resolved = self._resolved_chain(caller, source, held, [])
                existing = resolved.inode
                if existing is None:
                    raise NotFound(f"{source} does not exist")
                if existing.is_dir:
                    raise IsADirectory(f"{source} is a directory; a directory cannot be hard-linked")
                if not caller.is_superuser and caller.user != existing.owner:
                    require(caller, existing, READ | WRITE, "hard-link")
                if held.get(path) is not None:
                    raise AlreadyExists(f"{path} already exists")
                parent = await self._ensure_parents(txn, caller, path, create=False, held=held)
                require_entry_change(caller, parent, None, "create")
                governing = sorted(set(quota.governing_paths(source)) | set(quota.governing_paths(path)))
                roots = {q.path for q in await txn.quotas_for(governing)}
                if roots & set(quota.governing_paths(source)) != roots & set(quota.governing_paths(path)):
                    raise CrossesQuotaRoot(f"{source} and {path} lie under different quota roots")
                linked = existing.evolve(nlink=existing.nlink + 1, ctime=utcnow())
                if not await txn.insert(linked.evolve(path=path)):
                    raise AlreadyExists(f"{path} already exists")
                await txn.update(linked)
        self.metrics.file_operation("create", self._backend_type(linked))
        return linked.evolve(path=path)

    async def _make_entry(self, caller: Caller, path: str, kind: InodeType, mode: int, **fields: Any) -> Inode:
        """Insert a new entry of ``kind`` without bytes or children (a symlink, a special file) at ``path`` with
        ``mode`` and ``fields``: owned by ``caller``, one inode against quotas, no bytes. The parent must exist
        (no missing parents are made) and be writable by ``caller``; in a setgid directory the entry takes its
        group (:func:`~callfs.permissions.inherited`).

        Raises ``AlreadyExists`` (anything is at ``path``, the root included), ``NotFound`` (no parent),
        ``NotADirectory``, ``PermissionDenied``, ``QuotaExceeded`` (inodes).
        """
        if path == paths.ROOT:
            raise AlreadyExists("the root exists")
        with self.metrics.time_metadata(f"create_{kind.value}"):
            async with self.store.transaction() as txn:
                parent = await self._ensure_parents(txn, caller, path, create=False)
                require_entry_change(caller, parent, None, "create")
                now = utcnow()
                inode = Inode(
                    path=path, type=kind, owner=caller.user, mtime=now, ctime=now, **fields,
                    **inherited(parent, directory=False, mode=mode, group=caller.user),
                )
                if not await txn.insert(inode):
                    raise AlreadyExists(f"{path} already exists")
                await self._charge(txn, path, 0, 1)
        self.metrics.file_operation("create", self.default_backend)
        return inode

    async def delete(self, caller: Caller, path: str, *, recursive: bool = False, keep: Keeper | None = None) -> None:
        """Delete a file or directory (a non-empty one only with ``recursive``).

        ``keep`` runs in the transaction before the entry goes (S3 versioning keeps a deleted file's content as
        a noncurrent version and adds a delete marker); a file whose bytes another node holds is then deleted
        here (its bytes stay named, or are freed by asking that node).

        Raises ``BadRequest`` (the root), ``NotFound``, ``DirectoryNotEmpty``, ``PermissionDenied``, and
        :class:`RemoteBytes` for a file whose bytes live on another node (that node deletes it), unless that
        node was declared lost for good (:mod:`callfs.drain`): its bytes went with it, the metadata goes here.
        Files of other nodes inside a deleted subtree are freed by asking their nodes.
        """
        if path == paths.ROOT:
            raise BadRequest("the root directory cannot be deleted")
        inode = await self._resolved(caller, path)
        if self.is_remote(inode) and keep is None and not await self._owner_lost(inode):
            # Refuse here what the owner would refuse, so that a caller without permission gets 403 whether or
            # not the owner can be reached.
            parent_path = paths.parent_of(path)
            assert parent_path is not None
            require_entry_change(caller, await self._get(parent_path), inode, "delete")
            raise RemoteBytes(inode)
        lock = f"file:{path}" if not inode.is_dir else f"dir:{path}"
        async with self._lock(lock):
            with self.metrics.time_metadata("delete"):
                async with self.store.transaction() as txn:
                    shared, exclusive, read = self._chain_locks(path, exclusive=True)
                    held = await txn.lock(shared, exclusive=exclusive, read=read)
                    inode_now = held.get(path)
                    if inode_now is None:
                        raise NotFound(f"{path} does not exist")
                    parent = self._resolved_chain(caller, path, held, []).parent
                    if parent is None:
                        raise NotFound(f"{path} does not exist")
                    require_entry_change(caller, parent, inode_now, "delete")
                    await self._protect_quota_roots(txn, caller, inode_now, "delete")
                    await self._touch(txn, parent)
                    if inode_now.is_dir and await txn.has_children(path):
                        if not recursive:
                            raise DirectoryNotEmpty(f"{path} is not empty; use ?recursive=true")
                        self._check_subtree_change(caller, inode_now, await txn.list_subtree(path), "delete")
                    kept = await keep(txn, inode_now) if keep is not None else Kept()
                    # A hard-linked file named elsewhere too keeps its content and its charge.
                    freed = [e for e in await txn.delete_subtree(path) if not e.nlink]
                    files = [e for e in freed if not e.is_dir]
                    unnamed = await self._charge(txn, path, kept.bytes - sum(e.size for e in files),
                                                 kept.inodes - len(freed), [*files, *kept.released])
        for file in unnamed:
            await self._free_bytes(file)
        self.metrics.file_operation("delete", self._backend_type(inode))

    def _check_subtree_change(self, caller: Caller, top: Inode, entries: list[Inode], action: str) -> None:
        """Removing every entry of a subtree needs ``w`` (and the sticky rule) on each entry's directory."""
        if caller.is_superuser:
            return
        directories = {top.path: top} | {e.path: e for e in entries if e.is_dir}
        for entry in entries:
            parent = directories[paths.parent_of(entry.path) or paths.ROOT]
            require(caller, parent, READ | EXECUTE, "descend into")
            require_entry_change(caller, parent, entry, action)

    async def _protect_quota_roots(self, txn: MetadataTxn, caller: Caller, entry: Inode, action: str) -> None:
        """Only a superuser may delete, move away or replace a directory that is or holds a quota root: its
        owner could otherwise drop a quota by re-creating the directory. Raises ``QuotaRootProtected``."""
        if caller.is_superuser or not entry.is_dir:
            return
        found = await txn.quotas_within(entry.path)
        if found:
            raise QuotaRootProtected(
                f"only root may {action} {entry.path}: it holds the quota root {found[0].path}",
                quota_path=found[0].path,
            )

    async def move(
        self, caller: Caller, src: str, dst: str, *, overwrite: bool = False, create_parents: bool = False
    ) -> Inode:
        """Rename/move ``src`` (file or whole subtree) to ``dst`` atomically; returns the moved inode.

        POSIX ``rename(2)`` rules for replacing: a file may replace a file, a directory an empty directory. The
        moved entry's ``ctime`` moves to now, as Linux file systems do (POSIX allows it).
        Raises ``BadRequest`` (root, into itself), ``NotFound``, ``AlreadyExists`` (``dst`` exists and not
        ``overwrite``), ``IsADirectory``/``NotADirectory``/``DirectoryNotEmpty`` (replacement type rules),
        ``PermissionDenied``.
        """
        if src == paths.ROOT:
            raise BadRequest("the root directory cannot be moved")
        if dst == paths.ROOT:
            raise BadRequest("cannot move onto the root directory")
        if paths.is_within(dst, src) and dst != src:
            raise BadRequest(f"cannot move {src} into itself ({dst})")
        require_in_scope(caller, src)
        require_in_scope(caller, dst)
        replaced: list[Inode] = []
        async with self._lock_all(f"dir:{src}", f"dir:{dst}"):
            with self.metrics.time_metadata("move"):
                async with self.store.transaction() as txn:
                    # Every row lock of the move in one call and one order: the source and the target for
                    # update, their directories against a concurrent rename or delete.
                    held = await txn.lock(
                        {*paths.ancestors(src), *paths.ancestors(dst)} - {paths.ROOT}, exclusive={src, dst}
                    )
                    source = held.get(src)
                    if source is None:
                        raise NotFound(f"{src} does not exist")
                    if src == dst:
                        return source
                    src_parent = await txn.get(paths.parent_of(src) or paths.ROOT)
                    assert src_parent is not None
                    # Search on the ancestors of the source (the root is read here only as its parent).
                    require_search(caller, [held[a] for a in paths.ancestors(src) if a in held] or [src_parent])
                    require_entry_change(caller, src_parent, source, "move")
                    await self._protect_quota_roots(txn, caller, source, "move")
                    target = held.get(dst)
                    if target is not None and not target.is_dir and target.ino == source.ino:
                        return target  # two names of one inode: POSIX rename(2) does nothing
                    dst_parent_path = paths.parent_of(dst) or paths.ROOT
                    await self._touch(txn, src_parent, held.get(dst_parent_path) or await txn.get(dst_parent_path))
                    dst_parent = await self._ensure_parents(txn, caller, dst, create=create_parents, touch=False)
                    require_entry_change(caller, dst_parent, target, "create" if target is None else "replace")
                    if target is not None:
                        if not overwrite:
                            raise AlreadyExists(f"{dst} already exists; set overwrite to replace it")
                        if source.is_dir and not target.is_dir:
                            raise NotADirectory(f"cannot replace file {dst} with a directory")
                        if not source.is_dir and target.is_dir:
                            raise IsADirectory(f"cannot replace directory {dst} with a file")
                        if target.is_dir and await txn.has_children(dst):
                            raise DirectoryNotEmpty(f"{dst} is not empty")
                        await self._protect_quota_roots(txn, caller, target, "replace")
                        replaced = [e for e in await txn.delete_subtree(dst) if not e.nlink]
                        await self._charge(
                            txn, dst, -sum(e.size for e in replaced if not e.is_dir), -len(replaced)
                        )
                    await self._move_usage(txn, source, dst)
                    await txn.rename_subtree(src, dst)
                    moved = await txn.get(dst)
                    assert moved is not None
                    moved = moved.evolve(ctime=utcnow())  # as Linux file systems do (POSIX leaves it open)
                    await txn.update(moved)
        for file in replaced:
            await self._free(file)
        self.metrics.file_operation("move", self._backend_type(moved))
        return moved

    async def exchange(self, caller: Caller, src: str, dst: str) -> Inode:
        """Swap the entries ``src`` and ``dst`` (files or whole subtrees, of any types) atomically, as Linux
        ``renameat2(RENAME_EXCHANGE)`` does: both must exist; each parent needs ``w``, and the sticky rule holds
        for the entry that leaves it. Quotas are charged as two moves, each
        checked before the other's usage leaves; both entries' ``ctime`` moves to now. Returns the entry now at
        ``dst``.

        Raises ``BadRequest`` (the root, or one inside the other), ``NotFound`` (either missing),
        ``PermissionDenied``, ``QuotaRootProtected``, ``QuotaExceeded``.
        """
        if paths.ROOT in (src, dst):
            raise BadRequest("the root directory cannot be exchanged")
        if src != dst and (paths.is_within(dst, src) or paths.is_within(src, dst)):
            raise BadRequest(f"cannot exchange {src} with {dst}: one is inside the other")
        require_in_scope(caller, src)
        require_in_scope(caller, dst)
        async with self._lock_all(f"dir:{src}", f"dir:{dst}"):
            with self.metrics.time_metadata("move"):
                async with self.store.transaction() as txn:
                    held = await txn.lock(
                        {*paths.ancestors(src), *paths.ancestors(dst)} - {paths.ROOT}, exclusive={src, dst}
                    )
                    entries = [held.get(src), held.get(dst)]
                    if entries[0] is None or entries[1] is None:
                        raise NotFound(f"{src if entries[0] is None else dst} does not exist")
                    source, target = entries[0], entries[1]
                    if src == dst:
                        return source
                    parents = [await txn.get(paths.parent_of(e.path) or paths.ROOT) for e in (source, target)]
                    await self._touch(txn, *parents)
                    for (entry, other), parent in zip(((source, target), (target, source)), parents, strict=True):
                        assert parent is not None
                        require_search(caller, [held[a] for a in paths.ancestors(entry.path) if a in held]
                                       or [parent])
                        require_entry_change(caller, parent, entry, "exchange")  # moved away and replaced
                        await self._protect_quota_roots(txn, caller, entry, "move")
                        await self._move_usage(txn, entry, other.path)
                    aside = f"{src}.callfs-exchange-{secrets.token_hex(8)}"
                    await txn.rename_subtree(src, aside)
                    await txn.rename_subtree(dst, src)
                    await txn.rename_subtree(aside, dst)
                    now = utcnow()
                    for path in (src, dst):
                        swapped = await txn.get(path)
                        assert swapped is not None
                        await txn.update(swapped.evolve(ctime=now))
                    swapped = await txn.get(dst)
        assert swapped is not None
        self.metrics.file_operation("move", self._backend_type(swapped))
        return swapped

    async def copy(
        self, caller: Caller, src: str, dst: str, *, recursive: bool = False, into: bool = False,
        owner: str | None = None,
    ) -> CopyResult:
        """Copy the file or subtree ``src`` to ``dst`` without copying bytes (copy-on-write, see
        :mod:`callfs.copies`): one metadata transaction whatever the sizes, O(entries) statements.

        ``recursive`` is required to copy a directory (as ``cp -r``). ``into`` copies the entries of the
        directory ``src`` into the existing, empty directory ``dst``, which keeps its own attributes and quota;
        otherwise ``dst`` must not exist and missing parents are created (as for a new file). Copies keep mode
        and times; their owner and group are the caller's unless the caller is a superuser (who preserves them,
        or gives every copy to ``owner``, owner and group: a CSI clone belongs to its new volume's user). Each copy
        gets its source's extended attributes (a superuser's copy all of them, anyone else's the ``user.*`` ones).

        Rules: search permission on both paths, ``r`` on every file and ``r``/``x`` on every directory copied,
        the right to create entries in the destination's directory; the quotas governing the destination are
        charged for every entry and byte created (all or nothing); the same path locks as a move. Raises
        ``BadRequest`` (the root, into itself, a directory without ``recursive``, ``into`` with a file),
        ``NotFound``, ``AlreadyExists`` (``dst`` exists), ``NotADirectory``, ``DirectoryNotEmpty`` (``into``
        a non-empty directory), ``PermissionDenied``, ``QuotaExceeded``, ``LockTimeout``.
        """
        if paths.ROOT in (src, dst):
            raise BadRequest("the root directory cannot be copied, nor replaced by a copy")
        if paths.is_within(dst, src):
            raise BadRequest(f"cannot copy {src} into itself ({dst})")
        require_in_scope(caller, src)
        require_in_scope(caller, dst)
        if owner is not None:
            self._require_superuser(caller, "give copies to another user")
            validate_name(owner)
        async with self._lock_all(f"dir:{src}", f"dir:{dst}"):
            with self.metrics.time_metadata("copy"):
                result = await self._retrying_conflicts(
                    lambda: self._commit_copy(caller, src, dst, recursive=recursive, into=into, owner=owner),
                    f"copy of {src}")
        self.metrics.file_operation("copy", self._backend_type(result.inode))
        return result

    async def _commit_copy(
        self, caller: Caller, src: str, dst: str, *, recursive: bool, into: bool, owner: str | None
    ) -> CopyResult:
        async with self.store.transaction() as txn:
            # Every source row is locked against a writer (who locks it for update) and a rename or delete
            # until the commit, so each file's block list and blob stay the ones copied here.
            held = await txn.lock({*paths.ancestors(src), src, *paths.ancestors(dst)} - {paths.ROOT},
                                  exclusive={dst})
            top = held.get(src)
            if top is None:
                raise NotFound(f"{src} does not exist")
            require_search(caller, [held[a] for a in paths.ancestors(src) if a in held])
            if top.is_dir and not recursive:
                raise BadRequest(f"{src} is a directory; copying it needs recursive")
            if into and not top.is_dir:
                raise BadRequest(f"{src} is a file; into copies the entries of a directory")
            entries = await txn.list_subtree(src, lock=True) if top.is_dir else []
            for entry in [top, *entries]:
                require(caller, entry, (READ | EXECUTE) if entry.is_dir else READ, "copy")
            target = held.get(dst)
            if into:
                if target is None:
                    raise NotFound(f"{dst} does not exist")
                if not target.is_dir:
                    raise NotADirectory(f"{dst} is not a directory")
                require_search(caller, [held[a] for a in paths.ancestors(dst) if a in held])
                if await txn.has_children(dst):
                    raise DirectoryNotEmpty(f"{dst} is not empty")
                require_entry_change(caller, target, None, "create")
            else:
                if target is not None:
                    raise AlreadyExists(f"{dst} already exists")
                parent = await self._ensure_parents(txn, caller, dst, create=True)
                require_entry_change(caller, parent, None, "create")
            plan = copies.plan_copy(top, entries, dst, into=into,
                                    owner=owner if caller.is_superuser else caller.user, now=utcnow())
            files = [p.copy for p in plan if not p.copy.is_dir]
            copied_bytes = sum(f.size for f in files)
            for step in plan:
                if not await txn.insert(step.copy):
                    raise AlreadyExists(f"{step.copy.path} already exists")
                await txn.share_blocks(step.source, step.copy)
                # Extended attributes go with a copy (cp --preserve=xattr); a superuser's copy keeps the
                # trusted.* and security.* ones too, anyone else's only user.* (those it could read and set).
                await txn.copy_xattrs(step.source.ino, step.copy.ino, user_only=not caller.is_superuser)
                if step.copy.blob_id is not None and step.copy.blob_id != step.source.blob_id:
                    # A copy in blocks has a content id of its own: its attributes go with it.
                    assert step.source.blob_id is not None
                    kept = await txn.get_attributes(step.source.blob_id)
                    if kept:
                        await txn.put_attributes(step.copy.blob_id, kept)
            if plan:
                await self._charge(txn, plan[0].copy.path, copied_bytes, len(plan))
            made = target if into else plan[0].copy
            assert made is not None
        return CopyResult(made, files=len(files), directories=len(plan) - len(files), bytes=copied_bytes)

    async def join_files(
        self,
        caller: Caller,
        path: str,
        sources: Sequence[Inode],
        *,
        reader: Caller,
        create_only: bool,
        precondition: Precondition | None = None,
        attributes: Mapping[str, str] | None = None,
        keep: Keeper | None = None,
    ) -> WriteResult | None:
        """Create or overwrite the file ``path`` with the bytes of the files ``sources`` end to end, without
        copying a byte where the blocks allow (see :mod:`callfs.joins`): one metadata transaction gives the file
        the sources' block lists, re-indexed, with one more reference on each block, whatever the sizes. The
        sources are left as they are (delete them to let go of their references; the blocks stay with the
        file).

        Returns ``None``, having changed nothing, when the sources' bytes must be copied instead
        (:func:`callfs.joins.plan_join` refuses them, or they are not stored where a whole write of ``path``
        would store its bytes: the file's backend, or the default one, on this node): write the file with
        :meth:`write_file` then. ``reader`` must be allowed to read every source (``r``); the sources are the
        inodes as read before, and must still be those versions when the transaction runs.

        The rules of a whole write by :meth:`write_file` apply: ``caller`` needs ``w`` on the file or the right
        to create it (missing parents are created), the path lock, ``create_only``, ``precondition``,
        ``max_file_bytes``, the quotas governing ``path`` (charged for the joined size less the replaced
        file's, all or nothing), ``attributes`` committed with the new content, ``keep`` (S3 versioning) run in
        the transaction before the file changes. Raises what :meth:`write_file` raises, and ``Conflict`` when a
        source changed or vanished since it was read (nothing changed).
        """
        plan = joins.plan_join(sources)
        if plan is None:
            return None
        if path == paths.ROOT:
            if create_only:
                raise Conflict("the root is a directory; a file cannot be created there")
            raise IsADirectory("the root is a directory")
        current = (await self._resolve(caller, path)).inode
        self._check_write(caller, path, current, create_only, precondition)
        target = self.backend(current.backend if current is not None else None)
        if plan.backend != target.name or (target.node_local and plan.instance_id != self.instance_id):
            return None
        if plan.size > self.max_file_bytes:
            raise PayloadTooLarge(f"file larger than the limit of {self.max_file_bytes} bytes")
        async with self._lock(f"file:{path}"):
            with self.metrics.time_metadata("join"):
                result, unnamed = await self._retrying_conflicts(
                    lambda: self._commit_join(caller, path, plan, reader=reader, create_only=create_only,
                                              precondition=precondition, attributes=attributes, keep=keep),
                    f"join into {path}")
        for replaced in unnamed:
            await self._free_bytes(replaced)
        self.metrics.file_operation("create" if result.created else "update", target.name)
        return result

    async def _commit_join(
        self, caller: Caller, path: str, plan: joins.JoinPlan, *, reader: Caller, create_only: bool,
        precondition: Precondition | None, attributes: Mapping[str, str] | None, keep: Keeper | None,
    ) -> tuple[WriteResult, list[Inode]]:
        """The transaction of :meth:`join_files`: lock the file for update, its ancestors and the sources against
        a rename or delete (one statement), check the sources are the versions planned, keep the replaced file
        (``keep``), write the inode and its block list, charge the quotas. Returns the result and the replaced
        files whose bytes to free."""
        now = utcnow()
        shared, exclusive, read = self._chain_locks(path, exclusive=True)
        planned = [p.source for p in plan.sources]
        async with self.store.transaction() as txn:
            held = await txn.lock({*shared, *(s.path for s in planned)} - {path}, exclusive=exclusive, read=read)
            for source in planned:
                found = held.get(source.path)
                if found is None or (found.ino, found.version) != (source.ino, source.version):
                    raise Conflict(f"{source.path} changed while {path} was being joined from it; nothing changed")
                require(reader, found, READ, "read")
            current = held.get(path)
            self._check_write(caller, path, current, create_only, precondition)
            kept = await keep(txn, current) if keep is not None else Kept()
            content = new_content_id()
            if current is not None:
                joined = current.evolve(
                    size=plan.size, mtime=now, ctime=now, version=current.version + 1, backend=plan.backend,
                    blob_id=content, instance_id=plan.instance_id, layout=Layout.BLOCKS,
                )
                await txn.release_blocks(current)
                await txn.update(joined)
                bytes_delta, inodes_delta, released = plan.size - current.size, 0, [current]
            else:
                parent = await self._ensure_parents(txn, caller, path, create=True, held=held)
                require_entry_change(caller, parent, None, "create")
                joined = Inode(
                    path=path, type=InodeType.FILE, size=plan.size, mode=DEFAULT_FILE_MODE, owner=caller.user,
                    group=caller.user, mtime=now, ctime=now, backend=plan.backend, blob_id=content,
                    instance_id=plan.instance_id, layout=Layout.BLOCKS,
                )
                if not await txn.insert(joined):
                    raise AlreadyExists(f"{path} already exists")
                bytes_delta, inodes_delta, released = plan.size, 1, []
            for part in plan.sources:
                await txn.share_blocks(part.source, joined, at=part.first)
            if attributes:
                await txn.put_attributes(content, attributes)
            unnamed = await self._charge(txn, path, bytes_delta + kept.bytes, inodes_delta + kept.inodes,
                                         [*released, *kept.released])
            return WriteResult(joined, created=current is None), unnamed

    async def _move_usage(self, txn: MetadataTxn, source: Inode, dst: str) -> None:
        """Move the usage of the subtree at ``source`` from the quotas it leaves to the ones it enters."""
        governing = sorted(set(quota.governing_paths(source.path)) | set(quota.governing_paths(dst)))
        quotas = await txn.quotas_for(governing, for_update=True)
        losing, gaining = quota.split_for_move(source.path, dst, quotas)
        if not losing and not gaining:
            return
        if source.nlink > 1 or (source.is_dir and await txn.linked_below(source.path)):
            raise CrossesQuotaRoot(
                f"{source.path} is or holds a hard-linked file; its names cannot be split between quota roots"
            )
        moved_bytes, moved_inodes = source.size, 1
        if source.is_dir:
            below_bytes, below_inodes = await txn.subtree_usage(source.path)
            moved_bytes, moved_inodes = below_bytes, below_inodes + 1
        quota.check(gaining, moved_bytes, moved_inodes)
        for q in losing:
            await txn.add_usage(q.path, -moved_bytes, -moved_inodes)
        for q in gaining:
            await txn.add_usage(q.path, moved_bytes, moved_inodes)

    # ---------------------------------------------------------------- quotas

    async def get_quota(self, caller: Caller, path: str) -> Quota:
        """The quota on directory ``path`` with its usage. Raises ``NotFound`` (no such directory or quota),
        ``NotADirectory``, ``PermissionDenied`` (no search permission on an ancestor)."""
        if not (await self._resolved(caller, path)).is_dir:
            raise NotADirectory(f"{path} is not a directory")
        found = await self.store.quotas_for([path])
        if not found:
            raise NotFound(f"no quota is set on {path}")
        return found[0]

    async def quota_of(self, path: str) -> Quota | None:
        """The quota set on ``path``, if any (for response headers)."""
        found = await self.store.quotas_for([path])
        return found[0] if found else None

    async def set_quota(
        self, caller: Caller, path: str, bytes_limit: int | None, inodes_limit: int | None
    ) -> tuple[Quota, bool]:
        """Set (or change) the limits on directory ``path``; ``(quota, created)``. Superusers only.

        A new quota starts with the current usage of the subtree; limits below it are allowed (like
        ``setquota``) and only block further growth. Raises ``PermissionDenied``, ``NotFound``,
        ``NotADirectory``.
        """
        self._require_superuser(caller, "set quotas")
        with self.metrics.time_metadata("set_quota"):
            async with self.store.transaction() as txn:
                directory = await txn.get(path, for_update=True)
                if directory is None:
                    raise NotFound(f"{path} does not exist")
                if not directory.is_dir:
                    raise NotADirectory(f"quotas are set on directories; {path} is a file")
                existing = await txn.quotas_for([path], for_update=True)
                if existing:
                    updated = Quota(path, bytes_limit, inodes_limit, existing[0].bytes_used, existing[0].inodes_used)
                else:
                    used_bytes, used_inodes = await txn.subtree_usage(path)
                    updated = Quota(path, bytes_limit, inodes_limit, used_bytes, used_inodes)
                await txn.put_quota(updated)
        return updated, not existing

    async def remove_quota(self, caller: Caller, path: str) -> None:
        """Remove the quota on ``path``. Superusers only. Raises ``PermissionDenied``, ``NotFound``."""
        self._require_superuser(caller, "remove quotas")
        async with self.store.transaction() as txn:
            if not await txn.delete_quota(path):
                raise NotFound(f"no quota is set on {path}")

    def _require_superuser(self, caller: Caller, action: str) -> None:
        if not caller.is_superuser:
            raise PermissionDenied(f"only root may {action}")

    async def relocate(self, caller: Caller, path: str, backend: str | None) -> Inode:
        """Move the bytes of the file at ``path`` to ``backend`` (``None``: its current one) on this node (or
        to the shared backend), then switch its metadata in one transaction and free the old bytes.

        Content, size and path stay the same; the ETag changes. Needs ``w`` on the file. Raises ``NotFound``,
        ``BadRequest`` (a directory, an unknown backend), ``PermissionDenied``, ``Conflict`` (the file was
        rewritten meanwhile; nothing changed), ``BadGateway`` (the owning node cannot be read).
        """
        inode = await self._resolved(caller, path)
        if inode.type is not InodeType.FILE:
            raise BadRequest("backend and instance apply to files, not directories or symbolic links")
        require(caller, inode, WRITE, "move the bytes of")
        target = self.backend(backend or inode.backend)
        if inode.backend == target.name and (not target.node_local or inode.instance_id == self.instance_id):
            return inode
        async with self._lock(f"file:{path}") as lease:
            current = await self._get(path)
            blob_id = new_blob_id()
            writer = await target.create(blob_id)
            try:
                async for chunk in self._read_blob(current):
                    await writer.write(chunk)
                if writer.bytes_written != current.size:
                    raise Conflict(f"{path} changed size while its bytes were moved; nothing changed")
                if self.locks.is_lost(lease):
                    raise ServiceUnavailable(f"lost the lock on {path} while moving its bytes; nothing changed")
                await writer.commit()
            except BaseException:
                await writer.abort()
                raise
            try:
                async with self.store.transaction() as txn:
                    now = await txn.get(path, for_update=True)
                    if now is None or now.blob_id != current.blob_id:
                        raise Conflict(f"{path} was rewritten while its bytes were moved; nothing changed")
                    moved = now.evolve(
                        backend=target.name, blob_id=blob_id, version=now.version + 1, ctime=utcnow(),
                        instance_id=self.instance_id if target.node_local else None, layout=Layout.BLOB,
                    )
                    await txn.update(moved)
                    await txn.release_blocks(now)
                    assert now.blob_id is not None
                    kept = await txn.get_attributes(now.blob_id)
                    if kept:
                        await txn.put_attributes(blob_id, kept)
            except CommitUncertain:
                raise  # the inode may point at the new blob now: keep it (the orphan sweep frees it if not)
            except BaseException:
                await self._delete_blob(target.name, blob_id)
                raise
        await self._free(current)
        return moved

    async def _read_blob(self, inode: Inode) -> AsyncIterator[bytes]:
        """The bytes of a file wherever they are (this node, the shared backend, or a peer)."""
        assert inode.blob_id is not None and inode.backend is not None
        if inode.layout is Layout.BLOCKS:
            if self.is_remote(inode):
                raise Conflict(f"{inode.path} is stored in blocks on node {inode.instance_id}: move its bytes from "
                               "that node")
            blocks = await self.block_files.open(self.backend(inode.backend), inode)
            async for chunk in blocks.iter_range(0, inode.size, 1 << 20):
                yield chunk
            return
        if self.is_remote(inode):
            if self.remote_read is None or inode.instance_id is None:
                raise ServiceUnavailable(f"cannot reach node {inode.instance_id} holding {inode.path}")
            async for chunk in self.remote_read(inode.instance_id, inode.backend, inode.blob_id):
                yield chunk
            return
        reader = await self.backend(inode.backend).open(inode.blob_id)
        try:
            async for chunk in reader.iter_range(0, reader.size, 1 << 20):
                yield chunk
        finally:
            await reader.close()

    async def read_range(self, inode: Inode, offset: int, length: int, chunk_bytes: int, *,
                         pinned: bool = False) -> AsyncIterator[bytes]:
        """``length`` bytes from ``offset`` of the file ``inode`` (opened or stat-ed by a caller allowed to read
        it), wherever its bytes are, in pieces of at most ``chunk_bytes``: this node's backends or the shared
        backend (a file in blocks through the block reader, which fetches only the blocks the range overlaps), or
        a peer: a blob is streamed from its start and skipped to ``offset`` (the peer protocol serves whole
        blobs); a file in blocks is read by range from its owner (which reads only those blocks). Raises
        ``ServiceUnavailable``/``BadGateway`` (the owner cannot be reached), ``FileNotFoundError`` (the content
        was replaced meanwhile), ``DataCorrupted``. ``pinned``: ``inode`` is an object version (not the file at
        its path), whose content never changes."""
        if not self.is_remote(inode):
            reader = await self._open_blob(inode, pinned=pinned)
            try:
                async for chunk in reader.iter_range(offset, length, chunk_bytes):
                    yield chunk
            finally:
                await reader.close()
            return
        if length <= 0:
            return
        if inode.layout is Layout.BLOCKS:
            if self.remote_read_range is None:
                raise ServiceUnavailable(f"cannot reach node {inode.instance_id} holding {inode.path}")
            source = self.remote_read_range(inode, offset, length)
            skip = 0
        else:
            source, skip = self._read_blob(inode), offset
        left = length
        async for chunk in source:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            piece = chunk[skip:skip + left]
            skip = 0
            left -= len(piece)
            for start in range(0, len(piece), chunk_bytes):
                yield piece[start:start + chunk_bytes]
            if left <= 0:
                return

    async def open_local_blob(self, caller: Caller, backend: str, blob_id: str) -> BlobReader:
        """Open one of this node's blobs for a peer (internal only). Raises ``PermissionDenied``,
        ``BadRequest`` (bad id or shared backend), ``NotFound``."""
        target = self._internal_blob_access(caller, backend, blob_id)
        try:
            return await target.open(blob_id)
        except FileNotFoundError:
            raise NotFound(f"no blob {blob_id} on this node") from None

    def _internal_blob_access(self, caller: Caller, backend: str, blob_id: str) -> Backend:
        if caller.user != "internal-proxy":
            raise PermissionDenied("only peers may access blobs directly")
        target = self.backend(backend)
        if not target.node_local:
            raise BadRequest(f"backend {backend} is shared; its blobs are not served per node")
        if len(blob_id) != 32 or any(c not in "0123456789abcdef" for c in blob_id):
            raise BadRequest(f"invalid blob id {blob_id!r}")
        return target

    async def change_attributes(
        self, caller: Caller, path: str, *, mode: int | None = None, owner: str | None = None,
        group: str | None = None, uid: int | None = None, gid: int | None = None,
        atime: datetime | Literal["now"] | None = None, mtime: datetime | Literal["now"] | None = None,
    ) -> Inode:
        """chmod, chown and utimensat in one transaction (``None``: that attribute is left as it is).

        ``mode`` in ``0..0o7777`` (setuid, setgid, sticky included; the setgid bit is cleared as POSIX chmod
        says when the caller is not in the entry's group, :func:`~callfs.permissions.chmod_mode`). ``owner``/
        ``group`` are user and group names: only a superuser gives an entry to another user; the owner may set
        the group to its own name or to a group it belongs to (POSIX ``chown``). ``uid``/``gid`` are the numeric
        ids a mount shows (``0..2**32-2``), set by the owner or a superuser: the API does not check modes
        against them, a mount's kernel does. ``atime``/``mtime`` are UTC datetimes or ``"now"`` (the server's
        clock): given values need the owner or a superuser, ``"now"`` also write permission (POSIX
        utimensat). Every change sets ``ctime`` to now (POSIX: chmod, chown and utimensat mark it for update).

        Raises ``NotFound``, ``PermissionDenied``, ``BadRequest`` (an invalid name, mode or id).
        """
        if owner is not None:
            validate_name(owner, "owner")
        if group is not None:
            validate_name(group, "group")
        if uid is not None:
            check_id(uid, "uid")
        if gid is not None:
            check_id(gid, "gid")
        with self.metrics.time_metadata("setattr"):
            async with self.store.transaction() as txn:
                if (await self._resolve(caller, path, txn)).inode is None:
                    raise NotFound(f"{path} does not exist")
                inode = await txn.get(path, for_update=True)
                if inode is None:
                    raise NotFound(f"{path} does not exist")
                now = utcnow()
                changes: dict[str, object] = {"ctime": now}
                if mode is not None or owner is not None or group is not None or uid is not None or gid is not None:
                    require_chown(caller, inode, owner, group)
                if mode is not None:
                    changes["mode"] = chmod_mode(caller, inode, mode)
                if owner is not None:
                    changes["owner"] = owner
                if group is not None:
                    changes["group"] = group
                if uid is not None:
                    changes["uid"] = uid
                if gid is not None:
                    changes["gid"] = gid
                for name, value in (("atime", atime), ("mtime", mtime)):
                    if value is not None:
                        require_set_times(caller, inode, explicit=value != "now")
                        changes[name] = now if value == "now" else value
                updated = inode.evolve(**changes)
                await txn.update(updated)
        return updated

    # ---------------------------------------------------------------- extended attributes

    async def list_xattrs(self, caller: Caller, path: str) -> dict[str, int]:
        """The names of the extended attributes of the entry at ``path`` that ``caller`` may see, with their value
        sizes in bytes, in name order (rules: :mod:`callfs.xattrs`; no permission on the entry itself is needed,
        as for ``listxattr(2)``). Raises ``NotFound``, ``PermissionDenied`` (search, scope)."""
        inode = await self._resolved(caller, path)
        with self.metrics.time_metadata("listxattr"):
            sizes = await self.store.xattr_sizes(inode.ino)
        return {name: size for name, size in sizes.items() if xattrs.visible(caller, inode, name)}

    async def read_xattrs(self, caller: Caller, path: str) -> dict[str, bytes]:
        """The extended attributes of the entry at ``path`` that ``caller`` may see, values by name in name order;
        needs ``r`` on the entry when it has any. Raises ``NotFound``, ``PermissionDenied``."""
        inode = await self._resolved(caller, path)
        with self.metrics.time_metadata("listxattr"):
            values = await self.store.xattrs(inode.ino)
        out = {name: value for name, value in values.items() if xattrs.visible(caller, inode, name)}
        for name in out:
            xattrs.require_read(caller, inode, name)
        return out

    async def get_xattr(self, caller: Caller, path: str, name: str) -> bytes:
        """The value of the extended attribute ``name`` of the entry at ``path`` (``getxattr(2)``).

        Raises ``BadXattrName``, ``XattrNotSupported``, ``NotFound`` (no entry), ``XattrNotFound`` (no such
        attribute, or one the caller may not see), ``PermissionDenied`` (no ``r`` on the entry, search, scope).
        """
        xattrs.check_name(name)
        inode = await self._resolved(caller, path)
        xattrs.require_read(caller, inode, name)
        with self.metrics.time_metadata("getxattr"):
            value = await self.store.get_xattr(inode.ino, name)
        if value is None:
            raise XattrNotFound(f"{path} has no extended attribute {name}")
        return value

    async def set_xattr(
        self, caller: Caller, path: str, name: str, value: bytes, *, mode: xattrs.SetMode = xattrs.SetMode.ANY
    ) -> bool:
        """Set the extended attribute ``name`` of the entry at ``path`` to ``value`` (``setxattr(2)``; ``mode``
        ``create``/``replace`` as ``XATTR_CREATE``/``XATTR_REPLACE``) and the entry's ``ctime`` to now, in one
        transaction; every name of a hard-linked file sees it. True when the attribute was created.

        Raises ``BadXattrName``, ``XattrNotSupported``, ``XattrTooLarge`` (over 64 KiB), ``XattrsFull`` (no room
        left on the inode), ``NotFound``, ``XattrExists`` (``create``), ``XattrNotFound`` (``replace``),
        ``PermissionDenied`` (rules: :mod:`callfs.xattrs`).
        """
        xattrs.check_name(name)
        xattrs.check_value(value)
        with self.metrics.time_metadata("setxattr"):
            async with self.store.transaction() as txn:
                inode = await self._xattr_target(txn, caller, path, name)
                sizes = await txn.xattr_sizes(inode.ino)
                xattrs.check_mode(name, name in sizes, mode)
                xattrs.check_room(sizes, name, len(value))
                if not await txn.put_xattr(inode.ino, name, value, create=mode is xattrs.SetMode.CREATE):
                    raise XattrExists(f"extended attribute {name} exists already")
                await txn.update(inode.evolve(ctime=utcnow()))
        return name not in sizes

    async def remove_xattr(self, caller: Caller, path: str, name: str) -> None:
        """Remove the extended attribute ``name`` of the entry at ``path`` (``removexattr(2)``) and set its
        ``ctime`` to now. Raises ``BadXattrName``, ``XattrNotSupported``, ``NotFound``, ``XattrNotFound``,
        ``PermissionDenied``."""
        xattrs.check_name(name)
        with self.metrics.time_metadata("removexattr"):
            async with self.store.transaction() as txn:
                inode = await self._xattr_target(txn, caller, path, name)
                if not await txn.delete_xattr(inode.ino, name):
                    raise XattrNotFound(f"{path} has no extended attribute {name}")
                await txn.update(inode.evolve(ctime=utcnow()))

    async def _xattr_target(self, txn: MetadataTxn, caller: Caller, path: str, name: str) -> Inode:
        """The entry at ``path`` locked for update, after path resolution and :func:`callfs.xattrs.require_write`.
        Raises ``NotFound``, ``PermissionDenied``."""
        if (await self._resolve(caller, path, txn)).inode is None:
            raise NotFound(f"{path} does not exist")
        inode = await txn.get(path, for_update=True)
        if inode is None:
            raise NotFound(f"{path} does not exist")
        xattrs.require_write(caller, inode, name)
        return inode

    async def attributes(self, inode: Inode) -> dict[str, str]:
        """The attributes committed with the content of the file ``inode`` (see :meth:`write_file`)."""
        if inode.blob_id is None:
            return {}
        with self.metrics.time_metadata("get_attributes"):
            return await self.store.get_attributes(inode.blob_id)

    async def _free(self, inode: Inode) -> None:
        """Delete the bytes of a file whose metadata is gone, and the attributes of that content; failures leave
        an orphan for the sweep. A file stored in blocks let go of them in its transaction: the collector frees
        them (its attributes are keyed by its content id, never by a block, so the two never meet)."""
        if inode.blob_id is None:
            return
        if inode.backend is not None and await self.store.blob_referenced(inode.backend, inode.blob_id):
            return  # a copy still names it, with its attributes (copies share blobs)
        try:
            await self.store.delete_attributes(inode.blob_id)
        except Exception:
            log.warning("could not delete the attributes of blob %s", inode.blob_id, exc_info=True)
        await self._free_bytes(inode)

    async def _free_bytes(self, inode: Inode) -> None:
        """Delete the blob of a file whose metadata is gone and that no file names any more (its attributes gone
        too): on this node, or by asking the node that holds it. Failures leave an orphan for the sweep; a file
        stored in blocks has nothing to free here (the collector frees unreferenced blocks)."""
        if inode.backend is None or inode.blob_id is None or inode.layout is Layout.BLOCKS:
            return
        if self.is_remote(inode):
            if self.remote_free is not None and inode.instance_id is not None and not await self._owner_lost(inode):
                await self.remote_free(inode.instance_id, inode.backend, inode.blob_id)
            return
        if inode.backend in self.backends:
            await self._delete_blob(inode.backend, inode.blob_id)

    async def _owner_lost(self, inode: Inode) -> bool:
        """True when the node holding ``inode``'s bytes was declared lost for good (its disk went with it)."""
        return inode.instance_id is not None and inode.instance_id in await self.store.lost_nodes()

    async def free_local_blob(self, caller: Caller, backend: str, blob_id: str) -> None:
        """Delete a blob of this node on request of a peer that removed its metadata (internal only).

        Raises ``PermissionDenied`` (not the internal user), ``BadRequest`` (unknown or shared backend).
        """
        self._internal_blob_access(caller, backend, blob_id)
        if await self.store.blob_referenced(backend, blob_id):
            return  # a copy still names it (copies share blobs)
        await self._delete_blob(backend, blob_id)

    async def _delete_blob(self, backend_name: str, blob_id: str) -> None:
        backend = self.backends[backend_name]
        try:
            with self.metrics.time_backend(backend_name, "delete"):
                await backend.delete(blob_id)
        except Exception:
            log.warning("could not delete blob %s on %s; the orphan sweep will retry", blob_id, backend_name,
                        exc_info=True)

    # ---------------------------------------------------------------- links

    async def create_link(self, caller: Caller, path: str, expiry_seconds: int) -> tuple[str, datetime]:
        """Mint a single-use download link for a file (needs ``r``); returns ``(token, expires_at)``.

        Raises ``BadRequest`` (expiry outside 1..86400 s, or a directory), ``NotFound``, ``PermissionDenied``.
        """
        if not links.MIN_EXPIRY_SECONDS <= expiry_seconds <= links.MAX_EXPIRY_SECONDS:
            raise BadRequest(
                f"expiry_seconds must be between {links.MIN_EXPIRY_SECONDS} and {links.MAX_EXPIRY_SECONDS}"
            )
        inode = await self._resolved(caller, path)
        if inode.type is not InodeType.FILE:
            raise BadRequest(f"{path} is a {inode.type.value}; links are for files")
        require(caller, inode, READ, "read")
        assert inode.blob_id is not None
        # The link serves these bytes only: the file's blob and version are stored with it and signed.
        token_id, token = links.mint(self._link_secret, path, (inode.blob_id, inode.version))
        now = links.now(self.clock)
        expires = now + timedelta(seconds=expiry_seconds)
        with self.metrics.time_metadata("insert_link"):
            await self.store.insert_link(
                SingleUseLink(token_id=token_id, path=path, created_by=caller.user, expires_at=expires,
                              created_at=now, blob_id=inode.blob_id, version=inode.version)
            )
        self.metrics.link_generated()
        return token, expires

    async def open_link(self, token: str, client_ip: str | None) -> OpenFile:
        """Open the file of a single-use link and burn the link (compare-and-set ``active`` → ``used``).

        The file is opened before the link is burnt, so a link is never used up by a download that could not
        start. Only the content the link was minted for is served (same blob and version). Raises ``NotFound``
        (unknown token or file gone), ``LinkExpired`` (bad signature, expired, already used),
        ``LinkContentChanged`` (the file at the path is other content now; the link is not used up), and
        :class:`RemoteBytes` (the link still unused: its ``burn``
        uses it up) when another node holds the bytes.
        """
        result, status = "ok", "success"
        try:
            parts = links.split(token)
            if parts is None:
                raise NotFound("unknown link")
            token_id, signature = parts
            link = await self.store.get_link(token_id)
            if link is None:
                raise NotFound("unknown link")
            if link.blob_id is None or link.version is None:
                raise LinkContentChanged("link minted before links were bound to content; mint a new one")
            content = (link.blob_id, link.version)
            if not links.verify(self._link_secret, token_id, signature, link.path, content):
                raise LinkExpired("invalid link signature")
            now = links.now(self.clock)
            if link.status != "active":
                raise LinkExpired("link already used")
            if link.expires_at <= now:
                status = "expired"
                raise LinkExpired("link expired")
            try:
                opened = await self.open_file(Caller("internal-proxy"), link.path)
            except RemoteBytes as remote:
                self._check_link_content(link, remote.inode)
                remote.burn = functools.partial(self._consume_link, token_id, now, client_ip)
                raise
            try:
                self._check_link_content(link, opened.inode)
            except LinkContentChanged:
                await opened.reader.close()
                raise
            try:
                await self._consume_link(token_id, now, client_ip)
            except LinkExpired:
                await opened.reader.close()
                raise
            return opened
        except (NotFound, LinkExpired) as exc:
            result = type(exc).__name__
            if status == "success":
                status = "not_found" if isinstance(exc, NotFound) else "invalid"
            raise
        finally:
            self.metrics.link_consumed(result, status)

    @staticmethod
    def _check_link_content(link: SingleUseLink, inode: Inode) -> None:
        if inode.version != link.version or not same_content(inode.blob_id, link.blob_id):
            raise LinkContentChanged(f"{link.path} has changed since the link was minted; the link no longer applies")

    async def _consume_link(self, token_id: str, now: datetime, client_ip: str | None) -> None:
        with self.metrics.time_metadata("consume_link"):
            consumed = await self.store.consume_link(token_id, now=now, client_ip=client_ip)
        if consumed is None:
            raise LinkExpired("link already used")

    async def sweep_links(self) -> int:
        """Delete expired links and links used more than a day ago; returns how many."""
        now = links.now(self.clock)
        with self.metrics.time_metadata("sweep_links"):
            return await self.store.sweep_links(now=now, used_before=now - timedelta(days=1))

    # ---------------------------------------------------------------- system directories

    async def ensure_system_directories(self) -> list[str]:
        """Make every :data:`SYSTEM_DIRECTORIES` entry a ``root:root`` directory with mode 0755; idempotent.

        Missing ones are created. One owned by another user, or with another mode, is taken back (owner, group
        and mode reset; its contents untouched) and logged as a warning with the previous attributes, as are
        entries directly inside it not owned by root. A *file* at a system path is left alone and logged as an
        error (nothing below it is created): the CSI driver then fails on it instead of following a user's
        path, and root can move it away. Returns the paths taken back.
        """
        taken: list[str] = []
        skipped: list[str] = []
        async with self.store.transaction() as txn:
            for path in SYSTEM_DIRECTORIES:
                if any(paths.is_within(path, s) for s in skipped):
                    continue
                current = await txn.get(path, for_update=True)
                if current is None:
                    now = utcnow()
                    made = Inode(path=path, type=InodeType.DIRECTORY, mode=SYSTEM_DIRECTORY_MODE, owner="root",
                                 group="root", mtime=now, ctime=now)
                    if await txn.insert(made):
                        await self._charge(txn, path, 0, 1)
                        continue
                    current = await txn.get(path, for_update=True)
                    assert current is not None
                if not current.is_dir:
                    log.error("system path %s is a file owned by %s; move it away (as root) so that the node can "
                              "create the directory at its next start", path, current.owner)
                    skipped.append(path)
                    continue
                if (current.owner, current.group, current.mode) == ("root", "root", SYSTEM_DIRECTORY_MODE):
                    continue
                log.warning("taking back system directory %s: was %s:%s mode %04o, now root:root mode %04o",
                            path, current.owner, current.group, current.mode, SYSTEM_DIRECTORY_MODE)
                await txn.update(current.evolve(owner="root", group="root", mode=SYSTEM_DIRECTORY_MODE,
                                                ctime=utcnow()))
                taken.append(path)
        for path in taken:
            for child in await self.store.list_children(path):
                if child.owner != "root" and child.path not in SYSTEM_DIRECTORIES:
                    log.warning("%s inside system directory %s is owned by %s, not root; check it",
                                child.path, path, child.owner)
        return taken

    # ---------------------------------------------------------------- recovery

    async def sweep_orphans(self, *, at_start: bool = True, min_age: float = 0.0) -> int:
        """Remove blobs that no inode references on this node's local backends, and (``at_start``) leftovers
        of interrupted writes. At start nothing is in flight; a periodic sweep passes ``min_age`` seconds so
        that blobs of writes about to commit are left alone. Returns the number of files removed.
        """
        removed = 0
        for backend in self.backends.values():
            if not backend.node_local:
                continue
            swept = await backend.sweep_incomplete() if at_start else 0
            referenced = {b async for b in self.store.blob_ids(backend.name, self.instance_id)}
            async for blob_id in backend.list_blobs(min_age):
                if blob_id not in referenced and not is_block_hash(blob_id):
                    with contextlib.suppress(FileNotFoundError):
                        await backend.delete(blob_id)
                    swept += 1
            self.metrics.orphans_swept.labels(backend.name).inc(swept)
            removed += swept
        return removed + await self.collect_blocks()

    async def collect_blocks(self) -> int:
        """Delete the blocks no file has referenced for the grace period, on every started backend (this
        node's blocks on node-local ones, everyone's on shared ones; with replication, also those of the
        drained nodes gone down that this node adopted, :meth:`~callfs.replication.Replication.adopted_locations`);
        returns how many."""
        freed = 0
        for name, backend in self.backends.items():
            if name in self.unavailable:
                continue
            locations = [block_location(self.instance_id if backend.node_local else None)]
            replication = self.block_files.replicated(backend)
            if replication is not None:
                locations += await replication.adopted_locations()
            for location in locations:
                freed += await self.block_files.collect(backend, location)
        return freed
