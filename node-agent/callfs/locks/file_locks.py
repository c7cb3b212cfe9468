"""The file lock table: ``flock`` and ``fcntl`` locks per inode, held under expiring lock sessions.

One table per cluster (docs/architecture.md, "File locks"): in this process (:class:`LocalFileLockTable`,
``dlm.type: local``) or in Redis (:class:`callfs.locks.redis_file_locks.RedisFileLockTable`), so that every
mount of a volume, on any node, sees the same locks. The range rules are :mod:`callfs.locks.ranges`'.

* Locks are keyed by the inode number (``ino``), so all hard-link names of a file share them.
* A lock session (one per mount) is opened with a TTL in seconds, renewed by its holder's heartbeat, and ended
  by it; ending it releases every lock held under it, and a session not renewed within its TTL is gone
  together with its locks (a killed mount). Each session belongs to the user who opened it: another user
  naming it gets :class:`~callfs.errors.LockSessionNotFound`, as for an unknown one.
* Every operation is atomic and never waits: a conflict is reported, the caller retries (blocking locks are
  the client's loop).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from callfs.errors import LockSessionNotFound
from callfs.locks import ranges
from callfs.locks.ranges import FileLock, LockRequest

MIN_SESSION_TTL = 1.0
MAX_SESSION_TTL = 3600.0
"""Bounds of a lock session's TTL in seconds."""


@dataclass(frozen=True, slots=True)
class LockSession:
    """An open session: ``id`` (random, 32 hex digits), ``user`` who opened it, ``ttl`` in seconds."""

    id: str
    user: str
    ttl: float


def new_session_id() -> str:
    """A fresh random session id (128 bits, hex)."""
    return secrets.token_hex(16)


def session_not_found(session_id: str) -> LockSessionNotFound:
    """The error for a session that is unknown, ended, expired or another user's."""
    return LockSessionNotFound(f"lock session {session_id!r} not found (ended or expired)", session=session_id)


def check_ttl(ttl: float) -> float:
    """``ttl`` when within [:data:`MIN_SESSION_TTL`, :data:`MAX_SESSION_TTL`] seconds, else :class:`ValueError`."""
    if not MIN_SESSION_TTL <= ttl <= MAX_SESSION_TTL:
        raise ValueError(f"a lock session ttl must be {MIN_SESSION_TTL:g} to {MAX_SESSION_TTL:g} seconds, got {ttl}")
    return ttl


class FileLockTable(Protocol):
    """The operations of a file lock table (see the module docstring). All raise
    :class:`~callfs.locks.base.LockUnavailable` when the service cannot be reached."""

    async def start(self) -> None:
        """Connect (Redis) or nothing (in-process)."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def open_session(self, user: str, ttl: float) -> LockSession:
        """A new session of ``user`` living ``ttl`` seconds unless renewed (:func:`check_ttl` first)."""
        ...

    async def renew_session(self, session_id: str, user: str) -> LockSession:
        """Restart the session's TTL. Raises :class:`~callfs.errors.LockSessionNotFound`."""
        ...

    async def close_session(self, session_id: str, user: str) -> int:
        """End the session and release its locks; returns how many inodes had locks of it. Raises
        :class:`~callfs.errors.LockSessionNotFound`."""
        ...

    async def set_lock(self, ino: int, wanted: LockRequest, user: str) -> FileLock | None:
        """Apply ``wanted`` (take, convert or unlock) on inode ``ino``: ``None`` when done, else the conflicting
        lock (nothing changed). Raises :class:`~callfs.errors.LockSessionNotFound` when ``wanted.session`` is
        not a live session of ``user``."""
        ...

    async def test_lock(self, ino: int, wanted: LockRequest) -> FileLock | None:
        """``F_GETLK``: the lock of a live session that would conflict with ``wanted``, else ``None``."""
        ...

    async def locks(self, ino: int) -> list[FileLock]:
        """Every lock of a live session on inode ``ino``, sorted by (kind, start)."""
        ...


class LocalFileLockTable:
    """The in-process :class:`FileLockTable` (one node). Session expiry follows ``clock`` (monotonic seconds);
    expired sessions and their locks are dropped whenever the table is used."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sessions: dict[str, tuple[LockSession, float]] = {}
        self._locks: dict[int, list[FileLock]] = {}
        self._mutex = asyncio.Lock()

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    def _expire(self) -> None:
        now = self._clock()
        gone = [sid for sid, (_, deadline) in self._sessions.items() if deadline <= now]
        if not gone:
            return
        for sid in gone:
            del self._sessions[sid]
        for ino in list(self._locks):
            kept = ranges.without_sessions(self._locks[ino], gone)
            if kept:
                self._locks[ino] = kept
            else:
                del self._locks[ino]

    def _session(self, session_id: str, user: str) -> LockSession:
        self._expire()
        found = self._sessions.get(session_id)
        if found is None or found[0].user != user:
            raise session_not_found(session_id)
        return found[0]

    async def open_session(self, user: str, ttl: float) -> LockSession:
        session = LockSession(id=new_session_id(), user=user, ttl=check_ttl(ttl))
        async with self._mutex:
            self._expire()
            self._sessions[session.id] = (session, self._clock() + ttl)
        return session

    async def renew_session(self, session_id: str, user: str) -> LockSession:
        async with self._mutex:
            session = self._session(session_id, user)
            self._sessions[session_id] = (session, self._clock() + session.ttl)
        return session

    async def close_session(self, session_id: str, user: str) -> int:
        async with self._mutex:
            self._session(session_id, user)
            del self._sessions[session_id]
            touched = 0
            for ino in list(self._locks):
                kept = ranges.without_sessions(self._locks[ino], [session_id])
                if len(kept) != len(self._locks[ino]):
                    touched += 1
                if kept:
                    self._locks[ino] = kept
                else:
                    del self._locks[ino]
        return touched

    async def set_lock(self, ino: int, wanted: LockRequest, user: str) -> FileLock | None:
        async with self._mutex:
            self._session(wanted.session, user)
            held, blocking = ranges.apply(self._locks.get(ino, []), wanted)
            if blocking is None:
                if held:
                    self._locks[ino] = held
                else:
                    self._locks.pop(ino, None)
        return blocking

    async def test_lock(self, ino: int, wanted: LockRequest) -> FileLock | None:
        async with self._mutex:
            self._expire()
            return ranges.conflict(self._locks.get(ino, []), wanted)

    async def locks(self, ino: int) -> list[FileLock]:
        async with self._mutex:
            self._expire()
            return list(self._locks.get(ino, []))
