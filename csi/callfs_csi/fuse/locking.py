"""``flock`` and ``fcntl`` locks of a mount: its lock session, the heartbeat that keeps it, the owner mapping.

The locks live in the cluster's lock table (docs/architecture.md, "File locks"), so every mount of a volume, on
any node, sees them. This module is the mount's end:

* :class:`LockKeeper` opens the mount's lock session at the first lock (``POST /v1/lock-sessions``; its TTL is
  the server's ``dlm.lock_session_ttl``), renews it from a heartbeat thread every third of the TTL, and ends it
  at unmount (every lock of the mount is released at once). A mount killed stops renewing: its locks go when the
  TTL runs out. A heartbeat that finds the session gone (the mount was frozen longer than the TTL) logs that
  this mount's locks were lost and the next lock opens a new session.
* Owners: the kernel's ``lock_owner`` — for ``fcntl`` the process's file table (so closing any descriptor of the
  file drops the process's record locks: libfuse sends an unlock of the whole file with that owner on every
  ``flush``), for ``flock`` the open file description (the mount releases its ``flock`` lock at ``release``).
  The keeper remembers which owners may hold record locks, so the unlock of every ``close`` costs a request only
  for those.
* Blocking waits (``F_SETLKW``, ``flock`` without ``LOCK_NB``): the libfuse worker thread retries after 10 ms,
  doubling up to 500 ms, until granted; a signal to the waiting process (the kernel's ``INTERRUPT``, seen
  through libfuse's ``fuse_interrupted()``) ends the wait with ``EINTR``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final, Literal

from callfs.client import CallFSClient, FileLockInfo
from callfs.errors import LockConflict, LockSessionNotFound

from .bridge import Bridge

log = logging.getLogger(__name__)

WAIT_FIRST: Final = 0.01
WAIT_MAX: Final = 0.5
"""Seconds between two attempts of a blocking lock: 10 ms, doubling up to 500 ms."""

Kind = Literal["flock", "posix"]
Action = Literal["read", "write", "unlock"]


class Interrupted(Exception):
    """A blocking wait ended by a signal to the waiting process (``EINTR``)."""


def owner_token(lock_owner: int) -> str:
    """The owner string of a kernel ``lock_owner`` (64-bit): 16 hex digits."""
    return f"{lock_owner & (1 << 64) - 1:016x}"


class LockKeeper:
    """The mount's lock session and its locks (see the module docstring).

    Args:
        bridge: the mount's started :class:`.bridge.Bridge`.
        ttl: the session TTL to ask for in seconds (``None``: the server's default).
    """

    def __init__(self, bridge: Bridge, *, ttl: float | None = None) -> None:
        self._bridge = bridge
        self._ttl = ttl
        self._mutex = threading.Lock()
        self._session: str | None = None
        self._session_ttl = 0.0
        self._posix_owners: set[str] = set()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # ---- the session --------------------------------------------------------------------------------

    def session(self) -> str:
        """The live session's id, opened (and its heartbeat started) when there is none."""
        with self._mutex:
            if self._session is not None:
                return self._session
            ttl = self._ttl
            info = self._bridge.call(lambda c: c.open_lock_session(ttl))
            self._session, self._session_ttl = info.id, info.ttl
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="callfs-lock-heartbeat", daemon=True)
                self._heartbeat.start()
            log.info("lock session %s opened (ttl %g s)", info.id, info.ttl)
            return info.id

    def _lost(self, session: str) -> None:
        with self._mutex:
            if self._session == session:
                self._session = None
                self._posix_owners.clear()
        log.error("lock session %s expired: the flock/fcntl locks held through this mount were lost", session)

    def _beat(self) -> None:
        while not self._stop.wait(max(self._session_ttl / 3, 0.1)):
            session = self._session
            if session is None:
                continue
            try:
                self._bridge.call(lambda c, session=session: c.renew_lock_session(session))  # type: ignore[misc]
            except LockSessionNotFound:
                self._lost(session)
            except Exception as exc:  # the heartbeat must outlive one failure; the TTL leaves room for retries
                log.warning("renewing lock session %s failed: %r", session, exc)

    def close(self) -> None:
        """Stop the heartbeat and end the session (releasing the mount's locks). Idempotent; never raises."""
        self._stop.set()
        with self._mutex:
            session, self._session = self._session, None
        if session is None:
            return
        try:
            self._bridge.call(lambda c: c.close_lock_session(session), retry=False)
            log.info("lock session %s ended", session)
        except Exception as exc:
            log.warning("ending lock session %s failed (its locks go when it expires): %r", session, exc)

    # ---- locks --------------------------------------------------------------------------------------

    def may_hold(self, kind: Kind, owner: str) -> bool:
        """False when ``owner`` certainly holds no ``posix`` lock through this mount (its unlock is a no-op);
        always True for ``flock`` (the caller tracks those per open file)."""
        with self._mutex:
            return kind == "flock" or owner in self._posix_owners

    def set(self, path: str, *, kind: Kind, action: Action, owner: str, start: int = 0, length: int = 0,
            pid: int = 0, wait: bool = False, interrupted: Callable[[], bool] = lambda: False) -> None:
        """Take, convert or release a lock on the server path ``path`` for ``owner``.

        Raises:
            LockConflict: another owner holds a conflicting lock (not waiting).
            Interrupted: a blocking wait ended by a signal.
            whatever the request raises otherwise (``NotFound``, ``CallFSUnavailable``...).
        """
        if action == "unlock" and not self.may_hold(kind, owner):
            return
        delay = WAIT_FIRST
        renewed_session = False
        while True:
            session = self.session()

            async def send(client: CallFSClient, session: str = session) -> None:
                await client.lock_file(path, session=session, owner=owner, kind=kind, type=action, start=start,
                                       length=length, pid=pid)

            try:
                self._bridge.call(send)
            except LockSessionNotFound:
                self._lost(session)
                if renewed_session:
                    raise
                renewed_session = True
                continue
            except LockConflict:
                if not wait:
                    raise
                if interrupted():
                    raise Interrupted(f"wait for a {kind} lock on {path} interrupted") from None
                time.sleep(delay)
                delay = min(delay * 2, WAIT_MAX)
                continue
            if kind == "posix" and action != "unlock":
                with self._mutex:
                    self._posix_owners.add(owner)
            return

    def test(self, path: str, *, kind: Kind, action: Literal["read", "write"], owner: str, start: int = 0,
             length: int = 0) -> FileLockInfo | None:
        """``F_GETLK``: the lock of another owner that would conflict, else ``None``."""
        session = self._session or ""

        async def probe(client: CallFSClient) -> FileLockInfo | None:
            return await client.test_file_lock(path, type=action, kind=kind, start=start, length=length,
                                               session=session, owner=owner)

        return self._bridge.call(probe)

    @property
    def session_id(self) -> str | None:
        """The live session's id, if any (for ``F_GETLK`` answers: is the holder this mount?)."""
        return self._session
