"""The mfusepy ``Operations`` of a CallFS mount: POSIX calls → REST requests on the volume directory.

Paths: FUSE hands paths relative to the mount root (``/a/b``); the server path is ``VOLUME_PATH`` joined with
it (:func:`api_path`). Every call runs on a libfuse worker thread and talks to the server through the
:class:`.bridge.Bridge` loop; errors become ``errno`` values in one place (:func:`.errors.errno_for`).

Semantics (the FUSE client contract, docs/architecture.md):

* Attributes: cached ``attr_timeout`` seconds (HEAD answers and directory listings), invalidated by our own
  changes; ``open`` always revalidates with a HEAD (close-to-open consistency, as NFS), and keeps the kernel
  page cache (``keep_cache``) only when the file's ETag did not change since the last open here.
* Kernel: 1 MiB read and write requests, asynchronous reads, the mount's read-ahead raised after ``init``
  (:mod:`.kernel`); the write-back cache only with ``writeback_cache`` (single-writer volumes).
* Reads: 1 MiB blocks with concurrent read-ahead for sequential readers (:mod:`.readahead`); a cancellation
  inside the client is retried, never answered with ``EIO``.
* Writes: buffered in a sparse local spool file per open file (:mod:`.spool`; nothing is fetched to
  write), the changed ranges recorded (:mod:`.dirty`); reads of a file with changes take written bytes from
  the spool and the rest from the server. On ``flush`` (every ``close``), ``fsync`` and ``release`` the
  changes go as :func:`.dirty.plan_upload` decides: one streamed PUT for a new or rewritten file, else size
  PATCHes and ranged PUTs of the changed spans only, each conditional on the ETag of the version the mount
  read (``If-Match``): a file changed elsewhere meanwhile is not overwritten, the ``close`` fails with
  ESTALE. Upload errors surface on ``close`` (e.g. ENOSPC for a 507 answer); changes refused for good
  (ESTALE, EACCES) are reported once and dropped. A file created here exists on
  the server from its first ``close``; other mounts see it then. ``open(O_TRUNC)`` is atomic
  (``FUSE_CAP_ATOMIC_O_TRUNC``): no separate truncate request. ``truncate`` by path of a file not open here,
  or open without unsent changes, is one ``PATCH {"size"}``.
* ``rename``: ``PATCH {"destination", "overwrite": true}`` — POSIX replaces the target;
  ``RENAME_NOREPLACE`` sends ``overwrite: false`` (EEXIST); ``RENAME_EXCHANGE`` sends ``exchange: true`` (the
  two entries swap atomically; a file created here and not uploaded yet is uploaded first).
* Ownership and modes: each inode's numeric ``uid``/``gid`` and mode (setuid, setgid, sticky included) are
  stored on the server and reported by ``getattr``; an inode whose numeric owner was never set appears owned by
  the mount's ``uid``/``gid``. The kernel checks modes against the caller (``default_permissions``); the server
  checks only what the API key may touch. A new entry gets the caller's uid (``fuse_get_context``) and a group
  as :meth:`CallFSOperations._new_entry` says (the volume's group in directories without a numeric group, the
  directory's in a setgid one, else the caller's), with no request when these are what the server gives.
  ``chown``/``chmod`` are one ``PATCH {"uid", "gid"}`` / ``PATCH {"mode"}``; a chown the server refuses fails
  with EPERM (chown(2)), or succeeds silently with ``--option quiet`` — as vfat does. The server-side owner
  name stays the API key's user.
* Times: ``utimens`` is ``PATCH {"atime", "mtime"}`` (``UTIME_NOW`` → ``"now"``, ``UTIME_OMIT`` → field left
  out; unsent writes of the file are uploaded first, so that they do not move the times set after them); the
  server sets ``mtime`` and ``ctime`` on every write and ``ctime`` on every attribute change; reads do not
  change ``atime`` (as ``noatime``). A file created here is uploaded with the time of its last write here
  (``X-CallFS-MTime``), which the server gives the file it creates: the times shown before the upload stay.
* ``statfs``: the volume quota (:func:`.attrs.statfs_of`), re-read at most once per ``attr_timeout``.
* Symbolic links: ``symlink`` creates a ``symlink`` entry on the server (``POST`` with ``X-CallFS-Target``),
  ``readlink`` and ``lstat`` read it (never followed by the server); the kernel resolves links in paths, and
  ``O_NOFOLLOW`` on a link fails with ELOOP in the kernel.
* Special files: ``mknod`` (FIFOs, sockets, device nodes) makes a ``special`` entry on the server, metadata
  only; the mount is ``nodev``, and a FIFO or socket is a local object of the machine that opens it.
* Unlink of an open file: libfuse renames it aside (``.fuse_hidden…``) through :meth:`rename` and unlinks that
  name at the last close (the mount runs without ``hard_remove``), so open descriptors keep working.
* ``fallocate``: :meth:`CallFSOperations.fallocate`.
* Hard links: :meth:`CallFSOperations.link` makes a second name of the same inode on the server; ``st_nlink``
  counts the names, ``st_ino`` is the server's inode number (``use_ino``), and a change through one name has
  the kernel drop the attributes it caches for the others (:mod:`.links`).
* Locks: ``flock`` and ``fcntl``/``lockf`` record locks are the cluster's (:meth:`CallFSOperations.flock`,
  :meth:`CallFSOperations.lock`, :mod:`.locking`): every mount of the volume, on any node, sees them; a conflict
  is EAGAIN, a blocking wait polls the server and ends with EINTR on a signal. Closing any descriptor of a file
  drops the closing process's record locks on it, the last close of an open file description its ``flock``
  lock, and the unmount (or the mount's death, after ``dlm.lock_session_ttl``) all the mount's locks.
* Extended attributes: ``user.*`` ones live on the server (``/v1/xattrs``), shared by every name of an inode and
  read fresh on every call; ``security.*``/``trusted.*`` queries are answered ENODATA by the mount itself (no
  request), other namespaces ENOTSUP. With them the kernel asks for ``security.capability`` before every
  ``write(2)`` (FUSE sets no ``SB_NOSEC``): one more round trip into this process per write, which
  ``--option xattr=false`` avoids (every xattr call then fails with ENOTSUP in the kernel).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import fcntl
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, ParamSpec, TypeVar

import mfusepy

from callfs.client import CallFSClient, FileInfo, QuotaInfo, WriteAnswer
from callfs.errors import CallFSError, IsADirectory, NotFound, PermissionDenied, PreconditionFailed

from .attrs import NAME_MAX, SPECIAL_TYPES, UNKNOWN_INO, file_type, ns_to_datetime, stat_of, statfs_of
from .bridge import Bridge
from .cache import AttrCache
from .dirty import MAX_RANGES, Range, UploadKind, plan_upload, read_sources, server_limit
from .errors import errno_for
from .handles import Handle, HandleTable, OpenFile
from .kernel import invalidate_path, negotiate, set_read_ahead
from .links import LinkNames
from .locking import LockKeeper, owner_token
from .options import MountSettings
from .readahead import BlockReader
from .spool import Spool

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_FILE_MODE: Final = 0o644
"""Mode the server gives a new file (docs/rest-api.md, "Permissions")."""
DEFAULT_DIR_MODE: Final = 0o755
"""Mode the server gives a new directory."""
PATH_MAX: Final = 4096
"""Bytes of a path (a symlink's target) with its terminating NUL (POSIX ``PATH_MAX`` on Linux)."""
SMALL_UPLOAD: Final = 1024 * 1024
"""Spans up to this many bytes are uploaded from memory (one spool read); larger ones stream from the spool."""
RENAME_NOREPLACE: Final = 1
RENAME_EXCHANGE: Final = 2
UTIME_NOW: Final = (1 << 30) - 1
"""``utimensat``'s "now": libfuse hands it as ``tv_nsec`` with ``tv_sec`` 0, so mfusepy's nanoseconds equal it."""
UTIME_OMIT: Final = (1 << 30) - 2
"""``utimensat``'s "leave unchanged", handed like :data:`UTIME_NOW`."""
FALLOC_FL_KEEP_SIZE: Final = 0x01
FALLOC_FL_PUNCH_HOLE: Final = 0x02
FALLOC_FL_ZERO_RANGE: Final = 0x10
"""``fallocate(2)`` mode bits (``linux/falloc.h``)."""
ZERO_PIECE: Final = 1024 * 1024
"""Bytes of zeros written at a time when ``fallocate`` zeroes a range."""
XATTR_CREATE: Final = 1
XATTR_REPLACE: Final = 2
"""``setxattr(2)`` flags (``sys/xattr.h``)."""
XATTR_OPERATIONS: Final = ("getxattr", "listxattr", "setxattr", "removexattr")
"""The callbacks left out with ``--option xattr=false``."""
USER_XATTRS: Final = "user."
"""The one namespace of extended attributes the mount keeps on the server (the others: see :meth:`getxattr`)."""
NO_ID: Final = (1 << 32) - 1
"""``(uid_t) -1``: ``chown`` leaves that id unchanged (also seen as ``-1``)."""
LOCK_TYPES: Final[dict[int, Literal["read", "write", "unlock"]]] = {
    fcntl.F_RDLCK: "read", fcntl.F_WRLCK: "write", fcntl.F_UNLCK: "unlock",
}
"""``struct flock``'s ``l_type`` → the lock API's ``type``."""


def _interrupted() -> bool:
    """libfuse's ``fuse_interrupted()``: the process waiting in the current request got a signal (the kernel
    sent ``INTERRUPT``). Only meaningful on a libfuse worker thread; False when it cannot be asked."""
    try:
        return bool(mfusepy._libfuse.fuse_interrupted())
    except Exception:
        return False


def time_change(ns: int) -> datetime | Literal["now"] | None:
    """A ``utimens`` time in nanoseconds → the PATCH value: ``"now"``, ``None`` (omit), or a UTC datetime
    (microsecond resolution, the server's; rounded down; clamped to the years 1 to 9999 the server keeps, as
    Linux clamps a time to a filesystem's range).

    >>> time_change(UTIME_NOW), time_change(UTIME_OMIT)
    ('now', None)
    >>> time_change(1_500_000_000_123_456_789).isoformat()
    '2017-07-14T02:40:00.123456+00:00'
    """
    if ns == UTIME_NOW:
        return "now"
    if ns == UTIME_OMIT:
        return None
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    try:
        return epoch + timedelta(microseconds=ns // 1000)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if ns > 0 else datetime.min.replace(tzinfo=UTC)


def api_path(volume: str, path: str) -> str:
    """The server path of the mount-relative ``path`` (``/`` is the volume itself).

    >>> api_path("/volumes/v1", "/a/b")
    '/volumes/v1/a/b'
    >>> api_path("/", "/a")
    '/a'
    """
    if path in ("", "/"):
        return volume
    return volume.rstrip("/") + "/" + path.lstrip("/")


def mount_path(volume: str, api: str) -> str:
    """The mount-relative path of the server path ``api`` below ``volume`` (the inverse of :func:`api_path`).

    >>> mount_path("/volumes/v1", "/volumes/v1/a/b"), mount_path("/volumes/v1", "/volumes/v1")
    ('/a/b', '/')
    >>> mount_path("/", "/a")
    '/a'
    """
    if volume == "/":
        return api
    return api[len(volume.rstrip("/")):] or "/"


def parent_of(path: str) -> str:
    """The parent of a canonical API path (``/`` for top-level entries and for ``/`` itself)."""
    head = path.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


def _fuse_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Turn every exception of an operation into ``FuseOSError(errno)`` (one translation point); unexpected
    ones are logged with their traceback first."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except mfusepy.FuseOSError:
            raise
        except (Exception, asyncio.CancelledError) as exc:  # a BaseException escaping would stop the mount
            code = errno_for(exc)
            if code == errno.EIO:
                log.warning("%s%r failed: %r", method.__name__, args[1:3], exc)
            else:
                log.debug("%s%r: %s", method.__name__, args[1:3], exc)
            raise mfusepy.FuseOSError(code) from exc

    return wrapper


def _fail(code: int) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(code)


def _xattr_namespace(name: str) -> str | None:
    """The namespace prefix of an extended attribute name the mount knows (``user.``, ``security.``,
    ``trusted.``), or ``None`` (``system.``, anything else).

    >>> [_xattr_namespace(n) for n in ("user.x", "security.capability", "system.posix_acl_access")]
    ['user.', 'security.', None]
    """
    return next((prefix for prefix in (USER_XATTRS, "security.", "trusted.") if name.startswith(prefix)), None)


class CallFSOperations(mfusepy.Operations):  # type: ignore[misc]
    """Operations over one volume directory.

    Args:
        settings: the validated mount settings (volume path, uid/gid, timeouts, read-ahead, spool dir).
        bridge: a started :class:`.bridge.Bridge`.
        on_ready: called once from ``init``, when the kernel has the mount (the readiness signal).
    """

    use_ns = True
    """Times are integer nanoseconds (mfusepy's non-deprecated mode)."""

    def __init__(self, settings: MountSettings, bridge: Bridge, on_ready: Callable[[], None] | None = None) -> None:
        self._settings = settings
        self._volume = settings.volume_path
        self._bridge = bridge
        self._on_ready = on_ready
        self._cache = AttrCache(settings.attr_timeout, settings.negative_timeout)
        self._handles = HandleTable()
        self._etags: dict[str, str | None] = {}
        self._etags_lock = threading.Lock()
        self._quota: tuple[float, QuotaInfo | None] | None = None
        self._links = LinkNames()
        self._locks = LockKeeper(bridge)
        self._flocks: dict[int, str] = {}
        """File handle → owner of the ``flock`` lock taken through it (released with the handle)."""
        self._flocks_lock = threading.Lock()
        if not settings.xattr:
            # No callbacks at all: libfuse answers ENOSYS, after which the kernel stops asking (every xattr call
            # fails with ENOTSUP at once, and writes no longer ask for security.capability first).
            for name in XATTR_OPERATIONS:
                setattr(self, name, None)

    # ---- helpers -----------------------------------------------------------------------------------

    def _api(self, path: str) -> str:
        """The server path of ``path``; ENAMETOOLONG when a component is longer than ``NAME_MAX`` (255) bytes,
        the limit ``statfs`` reports (POSIX: the error of every call given such a name)."""
        if any(len(os.fsencode(name)) > NAME_MAX for name in path.split("/")):
            raise _fail(errno.ENAMETOOLONG)
        return api_path(self._volume, path)

    def _writable(self) -> None:
        if self._settings.read_only:
            raise _fail(errno.EROFS)

    def _stat(self, api: str, *, fresh: bool = False) -> FileInfo:
        if not fresh:
            hit = self._cache.get(api)
            if hit is not None:
                if hit.info is None:
                    raise _fail(errno.ENOENT)
                return hit.info
        try:
            info = self._bridge.call(lambda c: c.stat(api))
        except NotFound:
            self._cache.put_missing(api)
            raise
        self._cache.put(info)
        self._links.note(info)
        return info

    def _changed(self, *paths: str) -> None:
        """Forget cached attributes of ``paths`` and of their parents (their mtime/listing changed), and those of
        the other names of a hard-linked inode among them, here and in the kernel (:mod:`.links`)."""
        siblings = set().union(*(self._links.siblings(p) for p in paths)) - set(paths)
        self._cache.invalidate(*paths, *(parent_of(p) for p in paths), *siblings)
        for path in siblings:
            invalidate_path(mount_path(self._volume, path))

    def _local_attrs(self, file: OpenFile) -> dict[str, Any] | None:
        """Attributes of an open file whose size or existence only this mount knows yet."""
        size = file.local_size()
        if file.remote and size is None:
            return None
        info: FileInfo | None = None
        if file.remote:
            hit = self._cache.get(file.path)
            info = hit.info if hit is not None else None
            if info is None:
                try:
                    info = self._stat(file.path)
                except NotFound:
                    info = None
        if info is None:
            now = datetime.now(UTC)
            info = FileInfo(path=file.path, name="", type="file", size=0, mode=DEFAULT_FILE_MODE, owner="",
                            mtime=now, atime=now, ctime=now)
        if file.mode is not None or file.uid is not None or file.gid is not None or file.local_ino is not None:
            info = dataclasses.replace(info, mode=info.mode if file.mode is None else file.mode,
                                       uid=info.uid if file.uid is None else file.uid,
                                       gid=info.gid if file.gid is None else file.gid,
                                       ino=info.ino if file.local_ino is None else file.local_ino)
        return stat_of(info, uid=self._settings.uid, gid=self._settings.gid, size=size,
                       mtime_ns=file.changed_ns if file.dirty else None)

    def _ensure_spool(self, file: OpenFile) -> Spool:
        """The spool of ``file``, created on first use as long as the server version (sparse: nothing is
        fetched). Caller holds ``file.lock``."""
        if file.spool is None:
            size = 0
            if file.remote:
                if file.remote_size is None:
                    info = self._stat(file.path, fresh=True)
                    file.remote_size, file.etag = info.size, info.etag
                size = file.remote_size or 0
            spool = Spool(self._settings.spool_dir)
            spool.truncate(size)
            file.spool = spool
        return file.spool

    def _rebase(self, file: OpenFile, size: int | None, etag: str | None) -> None:
        """A clean open file now stands on the server version ``size``/``etag`` (a later open saw it); its
        spool, if any, starts again from nothing. Caller holds ``file.lock``."""
        file.remote_size, file.etag = size, etag
        if file.spool is not None and size is not None:
            file.spool.truncate(0)
            file.spool.truncate(size)

    def _upload(self, file: OpenFile) -> None:
        """Send ``file``'s unsaved changes as :func:`.dirty.plan_upload` decides, then apply a pending mode.

        Every request of a file the server has is conditional on the ETag of the version the mount's view
        stands on (``If-Match``), which each answer advances; progress is recorded request by request, so a
        failed upload leaves exactly the unsent changes dirty for a retry (ENOSPC for 507, EIO when the server
        stays unreachable). Changes to a file the server has that it refuses for good — ESTALE (412: the
        version they were made on is gone) and EACCES (403) — are dropped once reported (:meth:`_drop_changes`).
        """
        with file.lock:
            if file.unlinked or file.spool is None:
                return
            try:
                self._send_changes(file)
            except (PreconditionFailed, PermissionDenied):
                if file.remote:
                    self._drop_changes(file)
                raise

    def _send_changes(self, file: OpenFile) -> None:
        """The requests of :meth:`_upload`. Caller holds ``file.lock``; ``file.spool`` is set."""
        assert file.spool is not None
        spool = file.spool
        plan = plan_upload(file.ranges, changed=file.dirty, size=spool.size(),
                           base_size=(file.remote_size or 0) if file.remote else None)
        path = file.path
        if plan.kind is UploadKind.WHOLE:
            answer = self._send_span(file, (0, plan.size), whole=True)
            file.remote, file.remote_size, file.etag = True, plan.size, answer.etag
        elif plan.kind is UploadKind.RANGES:
            self._fill(file, plan.fills)
            if plan.cut_to is not None:
                self._resize(file, plan.cut_to)
                file.ranges.cut_to = None  # the server's size now says where its bytes end
            for span in plan.spans:
                file.etag = self._send_span(file, span, whole=False).etag
                file.ranges.discard(*span)
                file.remote_size = max(file.remote_size or 0, span[1])
            if plan.extend_to is not None:
                self._resize(file, plan.extend_to)
        file.dirty = False
        file.ranges.clear()
        if plan.kind is UploadKind.NONE:
            return
        file.shown_local = True
        self._apply_pending(file)
        self._changed(path)
        with self._etags_lock:
            self._etags.pop(path, None)

    def _apply_pending(self, file: OpenFile) -> None:
        """One ``PATCH`` of the mode and numeric owner a file created here was given (:meth:`create`, or a
        ``chmod`` before its first upload), once the server has it. Caller holds ``file.lock``."""
        self._give(file.path, file.mode, file.uid, file.gid, default_mode=DEFAULT_FILE_MODE)
        file.mode = file.uid = file.gid = None

    def _give(self, api: str, mode: int | None, uid: int | None, gid: int | None, *, default_mode: int) -> None:
        """One ``PATCH`` giving the new entry ``api`` its ``mode`` and ids (``None``: leave as the server made
        it; a mode equal to ``default_mode``, the one the server gave it, is left too); no request when nothing
        is left to give."""
        if mode == default_mode:
            mode = None
        if mode is not None or uid is not None or gid is not None:
            self._bridge.call(lambda c: c.set_attributes(api, mode=mode, uid=uid, gid=gid))

    def _drop_changes(self, file: OpenFile) -> None:
        """Forget the unsent changes of ``file`` (the server has it) after the server refused them for good.

        The error reaches the process that closes or syncs once, as a local disk reports a failed write-back
        once (fsync(2)); after it the open file stands on the server's current version again, so that a later
        open here (the kernel releases a closed handle asynchronously) or another handle does not inherit bytes
        that will never land. The kernel's cached pages of the file are not kept at the next open. Caller holds
        ``file.lock``.
        """
        size: int | None = None
        etag: str | None = None
        try:
            info = self._stat(file.path, fresh=True)
            size, etag = info.size, info.etag
        except (CallFSError, OSError):
            pass  # gone or unreachable: the next write or truncate asks again (_ensure_spool)
        file.dirty = False
        file.ranges.clear()
        file.mode = file.uid = file.gid = None
        if size is None and file.spool is not None:
            file.spool.close()
            file.spool = None
        self._rebase(file, size, etag)  # a spool kept sends reads past any read-ahead blocks, to the server
        self._changed(file.path)
        with self._etags_lock:
            self._etags.pop(file.path, None)

    def _send_span(self, file: OpenFile, span: Range, *, whole: bool) -> WriteAnswer:
        """One PUT of the spool's bytes ``span``: the whole file (``whole``), else with ``Content-Range``;
        conditional on ``file.etag`` when the server has the file. Caller holds ``file.lock``."""
        assert file.spool is not None
        path, (start, end) = file.path, span
        etag = file.etag if file.remote else None
        # A file made here gets, on the server, the times this mount has shown for it (its last write here).
        made = None if file.remote else ns_to_datetime(file.changed_ns)
        length = end - start
        if length <= SMALL_UPLOAD:
            # One read here instead of a file object read chunk by chunk on worker threads of the loop.
            body = file.spool.read(start, length)
            if whole:
                return self._bridge.call(lambda c: c.put_file(path, body, size=length, if_match=etag,
                                                              created_at=made))
            return self._bridge.call(lambda c: c.write_range(path, body, start, length, if_match=etag))
        source = file.spool.slice(start, length)
        try:
            async def put(client: CallFSClient) -> WriteAnswer:
                source.seek(0)  # a retry starts again from the first byte
                if whole:
                    return await client.put_file(path, source, size=length, if_match=etag, created_at=made)
                return await client.write_range(path, source, start, length, if_match=etag)

            return self._bridge.call(put)
        finally:
            source.close()

    def _resize(self, file: OpenFile, size: int) -> None:
        """``PATCH {"size"}`` of the server version (conditional on ``file.etag``). Caller holds the lock."""
        path, etag = file.path, file.etag
        file.etag = self._bridge.call(lambda c: c.resize(path, size, if_match=etag)).etag
        file.remote_size = size

    def _fill(self, file: OpenFile, fills: tuple[Range, ...]) -> None:
        """Copy the server version's bytes ``fills`` into the spool (a GET pinned to ``file.etag``), so that
        spans joined across them send what the server holds there. Caller holds ``file.lock``."""
        assert file.spool is not None
        spool, path, etag = file.spool, file.path, file.etag
        for start, end in fills:
            async def fetch(client: CallFSClient, start: int = start, end: int = end) -> int:
                offset = start
                async for chunk in client.iter_read(path, offset=start, length=end - start, if_match=etag):
                    offset += spool.write(chunk, offset)
                return offset

            if self._bridge.call(fetch) != end:
                raise PreconditionFailed(f"{path} is shorter on the server than the version this mount read")

    def _quota_info(self) -> QuotaInfo | None:
        now = time.monotonic()
        if self._quota is not None and now < self._quota[0]:
            return self._quota[1]
        try:
            quota: QuotaInfo | None = self._bridge.call(lambda c: c.get_quota(self._volume))
        except NotFound:
            quota = None
        self._quota = (now + max(self._settings.attr_timeout, 0.5), quota)
        return quota

    # ---- extended attributes ------------------------------------------------------------------------

    def _xattr_target(self, path: str) -> tuple[str, bool]:
        """The server path of ``path`` and whether it exists on the server yet (a file created here and not
        uploaded has no attributes there)."""
        api = self._api(path)
        file = self._handles.file(api)
        return api, file is None or file.remote

    def _user_xattr(self, path: str, name: str) -> str:
        """The server path holding the ``user.*`` attribute ``name`` of ``path``, for reading or removing it:
        ENODATA for ``security.*``/``trusted.*`` names (the mount keeps none) and for a file not on the server
        yet, ENOTSUP for other namespaces."""
        namespace = _xattr_namespace(name)
        if namespace != USER_XATTRS:
            raise _fail(errno.ENODATA if namespace is not None else errno.ENOTSUP)
        api, remote = self._xattr_target(path)
        if not remote:
            raise _fail(errno.ENODATA)
        return api

    @_fuse_errors
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        """getxattr(2): ``GET /v1/xattrs/{path}?name=`` for a ``user.*`` name; ENODATA when there is none.
        ``security.*`` and ``trusted.*`` names are answered ENODATA here without a request (the kernel asks for
        ``security.capability`` before writes, ``ls`` for ``security.selinux``); other namespaces → ENOTSUP.
        mfusepy answers a size query (size 0) and ERANGE for a value larger than the caller's buffer."""
        api = self._user_xattr(path, name)
        value: bytes = self._bridge.call(lambda c: c.getxattr(api, name))
        return value

    @_fuse_errors
    def listxattr(self, path: str) -> list[str]:
        """listxattr(2): the entry's ``user.*`` names (``GET /v1/xattrs/{path}``); mfusepy answers a size query
        and ERANGE for a short buffer."""
        api, remote = self._xattr_target(path)
        if not remote:
            return []
        names: list[str] = self._bridge.call(lambda c: c.listxattr(api))
        return [name for name in names if name.startswith(USER_XATTRS)]

    @_fuse_errors
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> None:
        """setxattr(2): ``PUT /v1/xattrs/{path}?name=&mode=`` for a ``user.*`` name (``XATTR_CREATE`` → EEXIST
        when it exists, ``XATTR_REPLACE`` → ENODATA when not, both → EINVAL; over 64 KiB → E2BIG, no room left on
        the inode → ENOSPC). Other namespaces are not kept by the mount → ENOTSUP (``cp -a`` then goes on
        without them). A file created here and not uploaded yet goes to the server first."""
        self._writable()
        if _xattr_namespace(name) != USER_XATTRS:
            raise _fail(errno.ENOTSUP)
        if options & XATTR_CREATE and options & XATTR_REPLACE:
            raise _fail(errno.EINVAL)
        mode: Literal["any", "create", "replace"] = (
            "create" if options & XATTR_CREATE else "replace" if options & XATTR_REPLACE else "any"
        )
        api = self._api(path)
        self._on_server(api)
        self._bridge.call(lambda c: c.setxattr(api, name, value, mode=mode), retry=mode != "create")
        self._changed(api)  # its ctime moved, under every name

    @_fuse_errors
    def removexattr(self, path: str, name: str) -> None:
        """removexattr(2): ``DELETE /v1/xattrs/{path}?name=`` for a ``user.*`` name (ENODATA when there is none);
        ``security.*``/``trusted.*`` → ENODATA (the mount keeps none), other namespaces → ENOTSUP."""
        self._writable()
        api = self._user_xattr(path, name)
        self._bridge.call(lambda c: c.removexattr(api, name))
        self._changed(api)

    # ---- lifecycle ---------------------------------------------------------------------------------

    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        """libfuse ``init``: capabilities and 1 MiB requests (:func:`.kernel.negotiate`); then, in a thread once
        the kernel has the answer, the mount's read-ahead and the readiness signal (the mount is live)."""
        if conn_info is not None:
            wanted = negotiate(conn_info.capable, conn_info.want, writeback_cache=self._settings.writeback_cache)
            conn_info.want = wanted.want
            conn_info.max_write = wanted.max_write
            conn_info.max_readahead = wanted.max_readahead
            log.info("FUSE init: capable=%#x want=%#x", conn_info.capable, conn_info.want)
        log.info("mounted %s at %s", self._settings.fsname, self._settings.mountpoint)
        threading.Thread(target=self._after_init, name="callfs-init", daemon=True).start()

    def _after_init(self) -> None:
        if self._settings.kernel_read_ahead:
            set_read_ahead(self._settings.mountpoint, self._settings.kernel_read_ahead)
            self._quota = None  # its statfs probe is not an answer a caller saw: the first df asks again
        if self._on_ready is not None:
            self._on_ready()

    def destroy(self, path: str) -> None:
        """libfuse ``destroy`` (unmount): nothing is buffered any more — every file was released; the lock
        session ends (whatever locks remain are released)."""
        self._locks.close()
        log.info("unmounted %s", self._settings.mountpoint)

    # ---- metadata ----------------------------------------------------------------------------------

    @_fuse_errors
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        """``stat``: from the open file when it has local bytes, else the cache, else a HEAD."""
        api = self._api(path)
        file = self._handles.file(api)
        if file is not None:
            local = self._local_attrs(file)
            if local is not None:
                return local
        info = self._stat(api)
        return stat_of(info, uid=self._settings.uid, gid=self._settings.gid)

    @_fuse_errors
    def readdir(self, path: str, fh: int) -> Iterator[tuple[str, dict[str, int], int]]:
        """One listing request; every child's attributes go to the cache (the ``ls -l`` that follows is free)."""
        api = self._api(path)
        items = self._bridge.call(lambda c: c.list_dir(api))
        hit = self._cache.get(api)
        own = hit.info.ino if hit is not None and hit.info is not None and hit.info.ino else UNKNOWN_INO
        entries: list[tuple[str, dict[str, int], int]] = [
            (".", {"st_mode": stat.S_IFDIR, "st_ino": own}, 0),
            ("..", {"st_mode": stat.S_IFDIR, "st_ino": UNKNOWN_INO}, 0)]
        seen = set()
        for info in items:
            self._cache.put(info)
            self._links.note(info)
            seen.add(info.name)
            entries.append((info.name, {"st_mode": file_type(info), "st_ino": info.ino or UNKNOWN_INO}, 0))
        for file in self._handles.local_children(api):
            name = file.path.rsplit("/", 1)[-1]
            if name not in seen:
                entries.append((name, {"st_mode": stat.S_IFREG, "st_ino": file.local_ino or UNKNOWN_INO}, 0))
        return iter(entries)

    @_fuse_errors
    def statfs(self, path: str) -> dict[str, int]:
        """The volume quota as the filesystem size (bytes and inodes)."""
        return statfs_of(self._quota_info())

    @_fuse_errors
    def mkdir(self, path: str, mode: int) -> None:
        """``POST /v1/files/{path}/``, then one PATCH of the mode and the caller's ids unless they are the
        server's defaults (:meth:`_new_entry`)."""
        self._writable()
        api = self._api(path)
        wanted, uid, gid = self._new_entry(api, mode & 0o1777, directory=True)
        self._bridge.call(lambda c: c.mkdir(api, exist_ok=False), retry=False)
        self._changed(api)
        self._give(api, wanted, uid, gid, default_mode=DEFAULT_DIR_MODE)

    def _new_entry(self, api: str, mode: int, *, directory: bool) -> tuple[int, int | None, int | None]:
        """``(mode, uid, gid)`` to give a new entry made by the calling process (``None``: nothing to set).

        The uid is the caller's (``None`` when it is the mount's own, which an entry without ids shows). The
        group follows the directory it is made in: a directory without a numeric group belongs to the volume's
        group (the mount's ``gid``, Kubernetes' fsGroup), which its new entries inherit as in a setgid directory
        — kubelet makes fsGroup volumes' directories setgid for the same effect; a setgid directory gives its
        group and, to a new directory, its setgid bit (POSIX mkdir(2)); in any other directory the entry takes
        the caller's gid. POSIX allows either group for a new entry (the caller's or the directory's)."""
        uid, gid, _ = mfusepy.fuse_get_context()
        parent = self._stat(parent_of(api))
        owner = self._own_or_none(uid, self._settings.uid)
        if parent.mode & stat.S_ISGID:  # the server gives the same group; a file not uploaded yet shows it
            return (mode | stat.S_ISGID if directory else mode), owner, parent.gid
        if parent.gid is None:
            return mode, owner, None
        return mode, owner, self._own_or_none(gid, self._settings.gid)

    @staticmethod
    def _own_or_none(value: int, own: int) -> int | None:
        return None if value == own else value

    @_fuse_errors
    def symlink(self, path: str, target: str) -> None:
        """symlink(2): ``POST /v1/files/{path}`` with ``X-CallFS-Target: target`` (stored as given; the kernel
        resolves it), then the caller's ids as for :meth:`mkdir`. A target of ``PATH_MAX`` bytes or more →
        ENAMETOOLONG."""
        self._writable()
        api = self._api(path)
        if len(os.fsencode(target)) >= PATH_MAX:
            raise _fail(errno.ENAMETOOLONG)
        _, uid, gid = self._new_entry(api, 0o777, directory=False)
        self._bridge.call(lambda c: c.symlink(api, target), retry=False)
        self._changed(api)
        self._give(api, None, uid, gid, default_mode=0o777)

    @_fuse_errors
    def link(self, target: str, source: str) -> None:
        """link(2): ``target`` becomes a second name of ``source`` (``POST /v1/files/{target}`` with
        ``X-CallFS-Link-To``); both names are then one inode on the server, whose ``nlink`` counts them. A file
        created here and not uploaded yet, or with unsaved writes, goes to the server first. A directory →
        EPERM (Linux); names under different quota roots → EXDEV (``ln`` reports it, ``mv`` copies)."""
        self._writable()
        new, old = self._api(target), self._api(source)
        file = self._handles.file(old)
        if file is not None:
            self._upload(file)
        try:
            self._bridge.call(lambda c: c.link(old, new), retry=False)
        except IsADirectory:
            raise _fail(errno.EPERM) from None
        self._changed(old, new)
        info = self._stat(old, fresh=True)  # the inode's number, and its new link count for the old name
        if info.ino is not None:
            self._links.add(info.ino, old, new)
        for path in {old} | self._links.siblings(old):
            invalidate_path(mount_path(self._volume, path))

    @_fuse_errors
    def mknod(self, path: str, mode: int, dev: int) -> None:
        """mknod(2), mkfifo(3), a socket's bind(2): a FIFO, socket or device node is a ``special`` entry on the
        server (``POST`` with ``X-CallFS-Special``, ``X-CallFS-Rdev``), then one PATCH of its mode and the
        caller's ids as for :meth:`mkdir`. Nothing is stored for it: the kernel makes a FIFO or socket a local
        object of the machine that opens it, and the mount is ``nodev``. Regular files come through
        :meth:`create`; another type → EPERM (the kernel checks the privilege device nodes need first)."""
        self._writable()
        api = self._api(path)
        kind = next((name for name, bits in SPECIAL_TYPES.items() if bits == stat.S_IFMT(mode)), None)
        if kind is None:
            raise _fail(errno.EPERM)
        wanted, uid, gid = self._new_entry(api, mode & 0o7777, directory=False)
        rdev = dev if kind in ("char", "block") else 0
        self._bridge.call(lambda c: c.mknod(api, kind, rdev), retry=False)
        self._changed(api)
        self._give(api, wanted, uid, gid, default_mode=DEFAULT_FILE_MODE)

    @_fuse_errors
    def readlink(self, path: str) -> str:
        """readlink(2): the target of the link (from the cached attributes or a HEAD); EINVAL for anything else."""
        info = self._stat(self._api(path))
        if not info.is_symlink or info.target is None:
            raise _fail(errno.EINVAL)
        return info.target

    @_fuse_errors
    def rmdir(self, path: str) -> None:
        """``DELETE`` of an empty directory (ENOTEMPTY otherwise)."""
        self._writable()
        api = self._api(path)
        self._bridge.call(lambda c: c.delete(api))
        self._cache.invalidate_tree(api)
        self._changed(api)

    @_fuse_errors
    def unlink(self, path: str) -> None:
        """``DELETE`` of a file; a file created here and never uploaded only disappears locally."""
        self._writable()
        api = self._api(path)
        file = self._handles.file(api)
        if file is None or file.remote:
            self._bridge.call(lambda c: c.delete(api))
        if file is not None:
            file.unlinked = True
            self._handles.detach(api)
        self._changed(api)
        self._links.forget(api)

    def rename(self, old: str, new: str) -> None:
        """POSIX ``rename`` (replaces the target)."""
        self.rename_with_flags(old, new, 0)

    @_fuse_errors
    def rename_with_flags(self, old: str, new: str, flags: int) -> None:
        """``renameat2``: ``PATCH {"destination", "overwrite"}``; see the module docstring for the flags."""
        self._writable()
        src, dst = self._api(old), self._api(new)
        if flags & RENAME_EXCHANGE:
            if flags & RENAME_NOREPLACE:
                raise _fail(errno.EINVAL)  # renameat2(2)
            self._exchange(src, dst)
            return
        noreplace = bool(flags & RENAME_NOREPLACE)
        file = self._handles.file(src)
        if file is not None and not file.remote:
            if noreplace and (self._handles.file(dst) is not None or self._exists(dst)):
                raise _fail(errno.EEXIST)
        else:
            self._bridge.call(lambda c: c.move(src, dst, overwrite=not noreplace), retry=False)
        self._handles.rename(src, dst)
        self._links.rename(src, dst)
        self._cache.invalidate_tree(src)
        self._cache.invalidate_tree(dst)
        self._changed(src, dst)
        with self._etags_lock:
            self._etags.pop(src, None)
            self._etags.pop(dst, None)

    def _exchange(self, src: str, dst: str) -> None:
        """``RENAME_EXCHANGE``: files created here and not uploaded yet go to the server first (both entries must
        be there to swap), then one ``PATCH {"exchange": true}``; open files swap their paths with the entries."""
        for path in (src, dst):
            file = self._handles.file(path)
            if file is not None and not file.remote:
                self._upload(file)
        self._bridge.call(lambda c: c.exchange(src, dst), retry=False)
        self._handles.exchange(src, dst)
        self._links.forget(src)
        self._links.forget(dst)
        for path in (src, dst):
            self._cache.invalidate_tree(path)
        self._changed(src, dst)
        with self._etags_lock:
            self._etags.pop(src, None)
            self._etags.pop(dst, None)

    def _exists(self, api: str) -> bool:
        try:
            self._stat(api, fresh=True)
        except NotFound:
            return False
        return True

    @_fuse_errors
    def chmod(self, path: str, mode: int) -> None:
        """``PATCH {"mode"}`` (owner or root only on the server → EACCES otherwise)."""
        self._writable()
        api = self._api(path)
        bits = mode & 0o7777
        file = self._handles.file(api)
        if file is not None and not file.remote:
            file.mode = bits
            return
        self._bridge.call(lambda c: c.set_attributes(api, mode=bits))
        if file is not None and file.mode is not None:
            file.mode = None
        self._changed(api)

    @_fuse_errors
    def chown(self, path: str, uid: int, gid: int) -> None:
        """``PATCH {"uid", "gid"}`` (``-1``: that id unchanged); a refusal → EPERM (chown(2)), or success with
        ``quiet``. A file created here and not uploaded yet keeps the ids for its upload."""
        self._writable()
        api = self._api(path)
        new_uid = None if uid in (-1, NO_ID) else uid
        new_gid = None if gid in (-1, NO_ID) else gid
        file = self._handles.file(api)
        if file is not None and not file.remote:
            with file.lock:
                file.uid = file.uid if new_uid is None else new_uid
                file.gid = file.gid if new_gid is None else new_gid
            return
        if new_uid is None and new_gid is None:
            self._stat(api)  # ENOENT for a missing path
            return
        try:
            self._bridge.call(lambda c: c.set_attributes(api, uid=new_uid, gid=new_gid))
        except PermissionDenied:
            if not self._settings.quiet:
                raise _fail(errno.EPERM) from None
        self._changed(api)

    @_fuse_errors
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        """``PATCH {"atime", "mtime"}`` (:func:`time_change`; no ``times``: both now). Unsent writes of the
        file are uploaded first, so that their upload does not set ``mtime`` after this call."""
        self._writable()
        api = self._api(path)
        atime, mtime = ("now", "now") if times is None else (time_change(times[0]), time_change(times[1]))
        file = self._handles.file(api)
        if file is not None and (file.dirty or not file.remote):
            self._upload(file)
        if atime is None and mtime is None:
            self._stat(api)  # ENOENT for a missing path
            return
        self._bridge.call(lambda c: c.set_attributes(api, atime=atime, mtime=mtime))
        self._changed(api)

    @_fuse_errors
    def truncate(self, path: str, length: int, fh: Any = None) -> None:
        """Cut or extend a file: in the open file's spool when it is open here with changes, or when ``fh``
        names a handle (``ftruncate``; uploaded on close); else directly with one ``PATCH {"size"}`` (errors
        such as EACCES or ENOSPC return here), an open file here then standing on the new version."""
        self._writable()
        api = self._api(path)
        file = self._handles.file(api)
        if file is not None:
            with file.lock:
                if fh is None and file.remote and not file.dirty:
                    answer = self._bridge.call(lambda c: c.resize(api, length))
                    self._rebase(file, length, answer.etag)
                    self._ensure_spool(file)  # reads go to the server, past blocks read ahead before the cut
                    self._changed(api)
                    with self._etags_lock:
                        self._etags.pop(api, None)
                    return
                spool = self._ensure_spool(file)
                spool.truncate(length)
                file.ranges.truncate(length)
                file.touch()
            return
        self._bridge.call(lambda c: c.resize(api, length))
        self._changed(api)

    # ---- files -------------------------------------------------------------------------------------

    @_fuse_errors
    def open(self, path: str, fi: Any) -> int:
        """Revalidate with a HEAD, set ``keep_cache`` when the ETag is unchanged, start a handle."""
        flags = fi.flags
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        if writable:
            self._writable()
        api = self._api(path)
        file = self._handles.file(api)
        keep_cache = False
        fresh: FileInfo | None = None
        if file is not None and (not file.remote or file.dirty):
            keep_cache = True  # the kernel cache and the spool were written together
            size, etag = file.local_size(), file.etag
        else:
            fresh = self._stat(api, fresh=True)
            if fresh.is_dir:
                raise _fail(errno.EISDIR)
            with self._etags_lock:
                keep_cache = fresh.etag is not None and self._etags.get(api) == fresh.etag
                self._etags[api] = fresh.etag
            size, etag = fresh.size, fresh.etag
        fh, handle = self._handles.open(api, writable=writable, remote=True, remote_size=size, etag=etag)
        if fresh is not None:
            with handle.file.lock:
                if handle.file.remote and not handle.file.dirty:
                    self._rebase(handle.file, fresh.size, fresh.etag)  # close-to-open: the version seen now
        if writable and flags & os.O_TRUNC:
            try:
                with handle.file.lock:
                    self._ensure_spool(handle.file).truncate(0)
                    handle.file.ranges.truncate(0)
                    handle.file.touch()
            except BaseException:
                self._release_handle(fh)
                raise
            keep_cache = False
        fi.fh = fh
        fi.keep_cache = 1 if keep_cache else 0
        return 0

    @_fuse_errors
    def create(self, path: str, mode: int, fi: Any) -> int:
        """A new file, local until its first ``close`` uploads it (with ``mode`` applied after)."""
        self._writable()
        api = self._api(path)
        bits, uid, gid = self._new_entry(api, mode & 0o7777, directory=False)
        fh, handle = self._handles.open(api, writable=True, remote=False, remote_size=0)
        file = handle.file
        with file.lock:
            self._ensure_spool(file)
            file.touch()
            if not file.remote:
                file.mode, file.uid, file.gid = bits, uid, gid
                file.give_local_ino()
        self._cache.invalidate(api)
        fi.fh = fh
        return 0

    @_fuse_errors
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        """A file with a spool (written here): written bytes from the spool, the rest from the server
        (:func:`.dirty.read_sources`); otherwise from the server in 1 MiB blocks with read-ahead."""
        handle = self._handles.get(fi.fh)
        file = handle.file
        if file.spool is not None:
            return self._read_changed(file, offset, size)
        reader = handle.reader
        if reader is None:
            reader = handle.reader = BlockReader(self._fetcher(file), self._settings.read_ahead, file.remote_size)
        return reader.read(offset, size)

    def _read_changed(self, file: OpenFile, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of a file with a spool: the spool's pieces are read under the lock, the
        server's afterwards (one ranged GET each; zeros where the server's file turned out shorter)."""
        with file.lock:
            spool = file.spool
            if spool is None:
                return b""  # the last handle went meanwhile: nothing reads through it any more
            limit = server_limit(file.ranges, file.remote_size or 0) if file.remote else 0
            pieces = read_sources(file.ranges, limit=limit, size=spool.size(), offset=offset, length=size)
            parts: list[bytes | None] = [spool.read(p.start, p.end - p.start) if p.local else None for p in pieces]
            path = file.path
        for index, piece in enumerate(pieces):
            if parts[index] is None:
                async def fetch(client: CallFSClient, start: int = piece.start, end: int = piece.end) -> bytes:
                    return await client.read(path, offset=start, length=end - start)

                parts[index] = self._bridge.call(fetch).ljust(piece.end - piece.start, b"\0")
        return b"".join(part or b"" for part in parts)

    def _fetcher(self, file: OpenFile) -> Callable[[int, int], Any]:
        def fetch(offset: int, length: int) -> Any:
            path = file.path
            return self._bridge.submit(lambda c: c.read(path, offset=offset, length=length))

        return fetch

    @_fuse_errors
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        """Into the spool, the range recorded; ENOSPC early when the volume quota cannot hold the growth (the
        server still decides on upload). A file with more than :data:`.dirty.MAX_RANGES` changed ranges is
        uploaded at once (the record stays bounded)."""
        handle = self._handles.get(fi.fh)
        file = handle.file
        with file.lock:
            spool = self._ensure_spool(file)
            end = offset + len(data)
            before = spool.size()
            if end > before:
                # Bytes the volume gains once uploaded, relative to what the server holds for this file now.
                growth = end - ((file.remote_size or 0) if file.remote else 0)
                quota = self._quota_info() if growth > 0 else None
                if (quota is not None and quota.bytes_limit is not None
                        and growth > quota.bytes_limit - quota.bytes_used):
                    raise _fail(errno.ENOSPC)
            written = spool.write(data, offset)
            file.ranges.add(offset, written)
            file.touch()
            if len(file.ranges) > MAX_RANGES:
                self._upload(file)
        if handle.reader is not None:
            handle.reader.forget()
        return written

    @_fuse_errors
    def fallocate(self, path: str, mode: int, offset: int, size: int, fi: Any) -> int:
        """``fallocate(2)`` / ``posix_fallocate(3)`` on an open file, ``size`` bytes from ``offset``:

        * mode 0: the file grows to ``offset + size`` bytes when shorter (new bytes read as zeros, checked
          against the volume quota like a write: ENOSPC). Nothing is reserved ahead: blocks are stored when
          written, and a block of zeros is stored once;
        * ``FALLOC_FL_KEEP_SIZE`` alone: nothing to reserve, nothing to do;
        * ``FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`` and ``FALLOC_FL_ZERO_RANGE`` (with or without
          ``KEEP_SIZE``): the range reads as zeros from now on, written as zeros like any write (clipped to the
          size with ``KEEP_SIZE``);
        * anything else (collapse, insert, unshare, a hole punched without ``KEEP_SIZE``): EOPNOTSUPP, as
          Linux answers for a filesystem without that mode.

        EINVAL for a negative offset or a size that is not positive (POSIX), EBADF for a handle opened read-only.
        """
        if offset < 0 or size <= 0:
            raise _fail(errno.EINVAL)
        handle = self._handles.get(fi.fh)
        if not handle.writable:
            raise _fail(errno.EBADF)
        keep_size = bool(mode & FALLOC_FL_KEEP_SIZE)
        zeroing = mode & ~FALLOC_FL_KEEP_SIZE
        if zeroing not in (0, FALLOC_FL_ZERO_RANGE) and mode != FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
            raise _fail(errno.EOPNOTSUPP)
        file = handle.file
        with file.lock:
            current = file.local_size()
            if current is None:
                current = file.remote_size or 0
        end = offset + size
        if zeroing:
            stop = min(end, current) if keep_size else end
            for start in range(offset, stop, ZERO_PIECE):
                self.write(path, bytes(min(ZERO_PIECE, stop - start)), start, fi)
        elif not keep_size and end > current:
            self.truncate(path, end, fi)
        return 0

    @_fuse_errors
    def flush(self, path: str, fi: Any) -> None:
        """Every ``close``: upload unsaved bytes (errors reach the closing process), then
        :meth:`_show_server_attributes`."""
        file = self._handles.get(fi.fh).file
        self._upload(file)
        self._show_server_attributes(file)

    def _show_server_attributes(self, file: OpenFile, *, last: bool = False) -> None:
        """After an upload, the kernel drops the attributes it cached for the file while only this mount had its
        changes (the times of its writes), so that a ``stat`` after ``close`` shows the server's, which stay;
        after the ``last`` close of a file created here, so is its local inode number. Done at ``flush`` and
        ``release`` only: ``fsync`` runs with the kernel inode locked, and an upload there shows at the next
        ``close``."""
        if (file.shown_local or (last and file.local_ino is not None)) and not file.unlinked:
            file.shown_local = False
            invalidate_path(mount_path(self._volume, file.path))

    @_fuse_errors
    def fsync(self, path: str, datasync: int, fi: Any) -> None:
        """Upload unsaved bytes; the server has them durably when the PUT answers."""
        self._upload(self._handles.get(fi.fh).file)

    @_fuse_errors
    def release(self, path: str, fi: Any) -> None:
        """Last close of a handle: a final upload attempt (its error can only be logged), then forget it; a
        ``flock`` lock taken through it is released (the open file description is gone)."""
        handle = self._handles.get(fi.fh)
        try:
            self._upload(handle.file)
        except Exception as exc:
            log.error("upload of %s on release failed, bytes lost: %r", handle.file.path, exc)
        finally:
            _, last = self._release_handle(fi.fh)
            self._release_flock(path, fi.fh, handle.file.path)
            self._show_server_attributes(handle.file, last=last)

    # ---- locks -------------------------------------------------------------------------------------

    def _on_server(self, api: str) -> None:
        """A file created here and not uploaded yet goes to the server first: locks and extended attributes
        belong to its inode there."""
        file = self._handles.file(api)
        if file is not None and not file.remote:
            self._upload(file)

    def _release_flock(self, path: str | None, fh: int, fallback: str) -> None:
        with self._flocks_lock:
            owner = self._flocks.pop(fh, None)
        if owner is None:
            return
        api = api_path(self._volume, path) if path else fallback
        try:
            self._locks.set(api, kind="flock", action="unlock", owner=owner)
        except Exception as exc:
            log.warning("releasing the flock lock on %s failed (it goes with the lock session): %r", api, exc)

    @_fuse_errors
    def flock(self, path: str, fi: Any, op: int) -> int:
        """``flock(2)``: ``LOCK_SH``/``LOCK_EX`` (shared or exclusive, whole file), ``LOCK_UN``, ``LOCK_NB`` for no
        wait; held by the open file description (the kernel's ``lock_owner``) until unlocked or its last close.
        EAGAIN when held elsewhere with ``LOCK_NB``; EINTR when a wait is interrupted by a signal."""
        api = self._api(path)
        owner = owner_token(fi.lock_owner)
        if op & fcntl.LOCK_UN:
            action: Literal["read", "write", "unlock"] = "unlock"
        elif op & fcntl.LOCK_EX:
            action = "write"
        elif op & fcntl.LOCK_SH:
            action = "read"
        else:
            raise _fail(errno.EINVAL)
        if action != "unlock":
            self._on_server(api)
        self._locks.set(api, kind="flock", action=action, owner=owner, pid=mfusepy.fuse_get_context()[2],
                        wait=not op & fcntl.LOCK_NB, interrupted=_interrupted)
        with self._flocks_lock:
            if action == "unlock":
                self._flocks.pop(fi.fh, None)
            else:
                self._flocks[fi.fh] = owner
        return 0

    @_fuse_errors
    def lock(self, path: str, fi: Any, cmd: int, lock: Any) -> int:
        """``fcntl(2)`` record locks (``lockf(3)`` too): ``F_GETLK`` answers the first conflicting lock (its
        ``l_pid`` when held through this mount, else 0) or ``F_UNLCK``; ``F_SETLK`` takes, converts or releases
        (EAGAIN on a conflict); ``F_SETLKW`` waits (EINTR on a signal). libfuse hands the range absolute
        (``l_whence`` ``SEEK_SET``, ``l_len`` 0: to the end of the file) and calls ``F_SETLK``/``F_UNLCK`` of the
        whole file with the closing process's owner on every ``flush`` (POSIX: any close drops its locks)."""
        api = self._api(path)
        owner = owner_token(fi.lock_owner)
        flk = lock.contents
        kind = LOCK_TYPES.get(flk.l_type)
        if kind is None or flk.l_start < 0 or flk.l_len < 0:
            raise _fail(errno.EINVAL)
        if cmd == fcntl.F_GETLK:
            if kind == "unlock":
                raise _fail(errno.EINVAL)
            self._on_server(api)
            found = self._locks.test(api, kind="posix", action="read" if kind == "read" else "write", owner=owner,
                                     start=flk.l_start, length=flk.l_len)
            if found is None:
                flk.l_type = fcntl.F_UNLCK
            else:
                flk.l_type = fcntl.F_WRLCK if found.type == "write" else fcntl.F_RDLCK
                flk.l_whence = os.SEEK_SET
                flk.l_start, flk.l_len = found.start, found.length
                flk.l_pid = found.pid if found.session == self._locks.session_id else 0
            return 0
        if cmd not in (fcntl.F_SETLK, fcntl.F_SETLKW):
            raise _fail(errno.EINVAL)
        if kind != "unlock":
            self._on_server(api)
        self._locks.set(api, kind="posix", action=kind, owner=owner, start=flk.l_start, length=flk.l_len,
                        pid=mfusepy.fuse_get_context()[2], wait=cmd == fcntl.F_SETLKW, interrupted=_interrupted)
        return 0

    def _release_handle(self, fh: int) -> tuple[Handle, bool]:
        """Forget the handle ``fh``; ``(handle, last)``, ``last`` when it was its file's last one here."""
        handle, last = self._handles.release(fh)
        if handle.reader is not None:
            handle.reader.forget()
        if last and handle.file.spool is not None:
            handle.file.spool.close()
            handle.file.spool = None
        return handle, last


class CallFSFuse(mfusepy.FUSE):  # type: ignore[misc]
    """mfusepy's FUSE runner, passing ``renameat2`` flags through (mfusepy 3 drops them)."""

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        ops = self.operations
        result: int = ops.rename_with_flags(old.decode(self.encoding, self.errors),
                                            new.decode(self.encoding, self.errors), flags) or 0
        return result
