"""Attribute cache with a time-to-live, shared by all FUSE threads of one mount (pure; thread-safe).

Entries are API paths → :class:`~callfs.client.FileInfo` (positive) or "does not exist" (negative). They come
from ``HEAD`` answers and from directory listings (one listing caches every child). Positive entries live
``ttl`` seconds, negative ones ``negative_ttl`` seconds; our own changes invalidate the entries they touch
(the path, its parent, and for renames/deletes of directories the whole subtree), so a process on this mount
never sees its own writes late. Other mounts' writes show after at most the TTL — the same bound the kernel's
``attr_timeout``/``entry_timeout`` gives (close-to-open consistency is added by the open path, which always
revalidates).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from callfs.client import FileInfo

MAX_ENTRIES: Final = 100_000
"""Bound on cached paths; past it expired entries are swept, then the oldest half is dropped."""


@dataclass(frozen=True, slots=True)
class CachedAttr:
    """A cache hit: ``info`` is ``None`` when the path is known not to exist."""

    info: FileInfo | None


class AttrCache:
    """TTL cache of path → attributes.

    Args:
        ttl: seconds a positive entry is trusted (0 disables positive caching).
        negative_ttl: seconds a "no such path" entry is trusted (0 disables negative caching).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, ttl: float, negative_ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, FileInfo | None]] = {}

    def get(self, path: str) -> CachedAttr | None:
        """The live entry for ``path``, or ``None`` when there is none (or it expired)."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                return None
            expires, info = entry
            if self._clock() >= expires:
                del self._entries[path]
                return None
            return CachedAttr(info)

    def put(self, info: FileInfo) -> None:
        """Remember ``info`` under ``info.path`` for ``ttl`` seconds."""
        if self._ttl <= 0:
            return
        with self._lock:
            self._make_room()
            self._entries[info.path] = (self._clock() + self._ttl, info)

    def put_missing(self, path: str) -> None:
        """Remember that ``path`` does not exist, for ``negative_ttl`` seconds."""
        if self._negative_ttl <= 0:
            return
        with self._lock:
            self._make_room()
            self._entries[path] = (self._clock() + self._negative_ttl, None)

    def invalidate(self, *paths: str) -> None:
        """Forget ``paths`` (exact entries only)."""
        with self._lock:
            for path in paths:
                self._entries.pop(path, None)

    def invalidate_tree(self, path: str) -> None:
        """Forget ``path`` and everything below it (a renamed or deleted directory)."""
        prefix = path.rstrip("/") + "/"
        with self._lock:
            for key in [k for k in self._entries if k == path or k.startswith(prefix)]:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _make_room(self) -> None:
        if len(self._entries) < MAX_ENTRIES:
            return
        now = self._clock()
        for key in [k for k, (exp, _) in self._entries.items() if exp <= now]:
            del self._entries[key]
        if len(self._entries) >= MAX_ENTRIES:
            oldest = sorted(self._entries.items(), key=lambda item: item[1][0])[: len(self._entries) // 2]
            for key, _ in oldest:
                del self._entries[key]
