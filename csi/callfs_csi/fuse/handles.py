"""Open files and their handles: who has which path open, with which write buffer (pure bookkeeping).

One :class:`OpenFile` per path open on this mount, shared by all its handles, so that every handle sees the
bytes written through the others (the kernel page cache is per inode; our buffer must be too). A handle
(``fh``, the number FUSE passes back) points at its OpenFile and owns its read-ahead state. Renames through
the mount re-key open files, so a file renamed while open is uploaded under its new name.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

from .attrs import LOCAL_INO_BASE
from .dirty import DirtyRanges
from .readahead import BlockReader
from .spool import Spool

_local_inos = itertools.count(LOCAL_INO_BASE)


@dataclass(eq=False)
class OpenFile:
    """The shared state of one open path.

    ``path``: current API path. ``remote``: the file exists on the server (``False`` for a file created here
    and not uploaded yet). ``remote_size`` and ``etag``: size in bytes and ETag of the server version the
    mount's view is based on (from the ``open`` HEAD, then from the answer to each upload; ``etag`` ``None``:
    unknown, writes go unconditionally). ``spool``: the file's changed bytes (:mod:`.spool`; ``None`` until
    the first write or truncate), as long as the file. ``ranges``: what changed since the last upload
    (:mod:`.dirty`). ``dirty``: the mount has something the server has not; ``changed_ns``: when it last
    changed here (nanoseconds since the epoch: the ``mtime`` and ``ctime`` the mount shows until the upload).
    ``mode``: permission bits to apply after the upload of a file created here (``None``: server default);
    ``uid``/``gid``: its numeric owner and group, set with them (``None``: not set, the server's).
    ``unlinked``: deleted while open — never uploaded again. ``local_ino``: the inode number a file created
    here shows as long as it stays open here (:meth:`give_local_ino`; ``None`` for a file opened from the
    server).
    ``shown_local``: an upload happened since the kernel was last told to drop the attributes it caches for the
    file, which this mount made up before the server had them (times of local writes, a local inode number).
    ``lock`` serialises writes, truncates, spool reads and uploads.
    """

    path: str
    remote: bool
    remote_size: int | None = None
    etag: str | None = None
    spool: Spool | None = None
    dirty: bool = False
    changed_ns: int = 0
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    unlinked: bool = False
    shown_local: bool = False
    refs: int = 0
    ranges: DirtyRanges = field(default_factory=DirtyRanges)
    local_ino: int | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    def give_local_ino(self) -> None:
        """Give a file created here its inode number: from :data:`.attrs.LOCAL_INO_BASE` up (the server's are
        below), unique in this process. The file shows it while it stays open here, also after its upload,
        because a program that created it may compare the ``st_ino`` of its descriptor with the path's (SQLite
        does, and takes a change for a moved database)."""
        if self.local_ino is None:
            self.local_ino = next(_local_inos)

    def touch(self) -> None:
        """Record a change made here (a write, a truncate, a new file): dirty, changed now."""
        self.dirty = True
        self.changed_ns = time.time_ns() // 1000 * 1000  # microseconds: what the server keeps of a time

    def local_size(self) -> int | None:
        """Bytes the file has as seen through this mount, when the spool decides it; else ``None``."""
        if self.spool is not None:
            return self.spool.size()
        return None


@dataclass(eq=False)
class Handle:
    """One FUSE file handle: its open file, its read-ahead reader (``None`` until the first remote read),
    and whether it was opened for writing."""

    file: OpenFile
    writable: bool
    reader: BlockReader | None = None


class HandleTable:
    """``fh`` → :class:`Handle` and path → :class:`OpenFile`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[int, Handle] = {}
        self._files: dict[str, OpenFile] = {}
        self._numbers = itertools.count(1)

    def open(self, path: str, *, writable: bool, remote: bool, remote_size: int | None,
             etag: str | None = None) -> tuple[int, Handle]:
        """A new handle on ``path``, joining the path's OpenFile or creating it (with ``remote``,
        ``remote_size`` and ``etag`` as given); returns ``(fh, handle)``."""
        with self._lock:
            file = self._files.get(path)
            if file is None:
                file = OpenFile(path=path, remote=remote, remote_size=remote_size, etag=etag)
                self._files[path] = file
            file.refs += 1
            fh = next(self._numbers)
            handle = Handle(file=file, writable=writable)
            self._handles[fh] = handle
            return fh, handle

    def get(self, fh: int) -> Handle:
        """The handle ``fh``. Raises ``KeyError`` for an unknown number."""
        with self._lock:
            return self._handles[fh]

    def release(self, fh: int) -> tuple[Handle, bool]:
        """Forget ``fh``; returns the handle and whether it was the last one of its file (which is then
        forgotten too: the caller closes its spool). Raises ``KeyError`` for an unknown number."""
        with self._lock:
            handle = self._handles.pop(fh)
            file = handle.file
            file.refs -= 1
            last = file.refs == 0
            if last and self._files.get(file.path) is file:
                del self._files[file.path]
            return handle, last

    def file(self, path: str) -> OpenFile | None:
        """The OpenFile of ``path`` if it is open here."""
        with self._lock:
            return self._files.get(path)

    def detach(self, path: str) -> OpenFile | None:
        """Take ``path``'s OpenFile out of the path index (unlinked while open); its handles keep it."""
        with self._lock:
            return self._files.pop(path, None)

    def rename(self, old: str, new: str) -> None:
        """Re-key open files at ``old`` or below it to ``new``; an OpenFile already at a target path is
        detached (it was replaced)."""
        prefix = old.rstrip("/") + "/"
        with self._lock:
            moved = [(p, f) for p, f in self._files.items() if p == old or p.startswith(prefix)]
            for path, _ in moved:
                del self._files[path]
            for path, file in moved:
                target = new + path[len(old):]
                replaced = self._files.pop(target, None)
                if replaced is not None:
                    replaced.unlinked = True
                file.path = target
                self._files[target] = file

    def exchange(self, first: str, second: str) -> None:
        """Swap the keys of the open files at or below ``first`` and ``second`` (neither inside the other), as
        ``renameat2(RENAME_EXCHANGE)`` swaps the entries."""
        prefixes = (first.rstrip("/") + "/", second.rstrip("/") + "/")
        with self._lock:
            moved = [(p, f) for p, f in self._files.items()
                     if p in (first, second) or p.startswith(prefixes)]
            for path, _ in moved:
                del self._files[path]
            for path, file in moved:
                old, new = (first, second) if path == first or path.startswith(prefixes[0]) else (second, first)
                file.path = new + path[len(old):]
                self._files[file.path] = file

    def local_children(self, directory: str) -> list[OpenFile]:
        """Open files directly in ``directory`` that do not exist on the server yet (created here)."""
        prefix = directory.rstrip("/") + "/"
        with self._lock:
            return [f for p, f in self._files.items()
                    if not f.remote and p.startswith(prefix) and "/" not in p[len(prefix):]]
