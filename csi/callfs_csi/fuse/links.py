"""The names of each hard-linked inode this mount has seen (pure; thread-safe).

libfuse's high-level API gives every path its own kernel inode, so two names of one hard-linked file are two
kernel inodes, each with attributes the kernel caches for ``attr_timeout`` seconds. A change made through one
name (``link``, ``unlink``, ``chmod``, ``chown``, ``utimens``, a write) changes the one inode all its names
share; the mount then drops the attributes cached for every other name it knows (:meth:`LinkNames.siblings`),
in its own cache and in the kernel. Names only other mounts have looked up show the change after at most
``attr_timeout``, as any change made elsewhere does.

Only inodes with more than one name (``nlink > 1``) are recorded, keyed by the server's inode number.
"""

from __future__ import annotations

import threading
from typing import Final

from callfs.client import FileInfo

MAX_INODES: Final = 50_000
"""Bound on recorded inodes; past it the record starts again empty (a forgotten name only costs freshness)."""


class LinkNames:
    """Inode number → the API paths of its names seen here, and back."""

    def __init__(self, limit: int = MAX_INODES) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._names: dict[int, set[str]] = {}
        self._ino: dict[str, int] = {}

    def note(self, info: FileInfo) -> None:
        """Record ``info.path`` as a name of ``info.ino`` when the inode has several names; forget the path when
        it has one (or is a directory, or the server sent no inode number)."""
        if info.ino is None or info.is_dir or info.nlink <= 1:
            self.forget(info.path)
            return
        self.add(info.ino, info.path)

    def add(self, ino: int, *paths: str) -> None:
        """Record ``paths`` as names of ``ino`` (a link just made)."""
        with self._lock:
            if len(self._names) >= self._limit and ino not in self._names:
                self._names.clear()
                self._ino.clear()
            for path in paths:
                self._drop(path)
                self._names.setdefault(ino, set()).add(path)
                self._ino[path] = ino

    def siblings(self, path: str) -> set[str]:
        """The other recorded names of the inode ``path`` names (empty when none is recorded)."""
        with self._lock:
            ino = self._ino.get(path)
            if ino is None:
                return set()
            return self._names[ino] - {path}

    def forget(self, path: str) -> None:
        """``path`` no longer names a recorded inode (unlinked, or replaced)."""
        with self._lock:
            self._drop(path)

    def rename(self, old: str, new: str) -> None:
        """The name ``old`` is now ``new``, and so is everything below ``old`` (a directory moved); a name that
        ``new`` replaced is forgotten."""
        prefix = old.rstrip("/") + "/"
        with self._lock:
            self._drop(new)
            moved = [path for path in self._ino if path == old or path.startswith(prefix)]
            for path in moved:
                ino = self._ino.pop(path)
                names = self._names[ino]
                names.discard(path)
                renamed = new + path[len(old):]
                names.add(renamed)
                self._ino[renamed] = ino

    def _drop(self, path: str) -> None:
        ino = self._ino.pop(path, None)
        if ino is None:
            return
        names = self._names[ino]
        names.discard(path)
        if not names:
            del self._names[ino]
