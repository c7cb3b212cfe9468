"""One operation at a time per volume: a lock per key, dropped when nobody holds or waits for it.

The CSI spec lets a plugin answer ``ABORTED`` while another operation on the same volume is in flight; serialising
instead gives the same safety (no two RPCs mount, unmount or resize one volume at once) without making the CO
retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """``async with locks.hold(key):`` runs one holder per key at a time."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]

    def __len__(self) -> int:
        """Keys currently held or waited for."""
        return len(self._locks)
