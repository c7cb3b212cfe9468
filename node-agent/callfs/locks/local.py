"""In-process path locks (``dlm.type: local``): one asyncio FIFO queue per key, for a single storage node.

:class:`KeyedFifoLock` is the primitive (also used by the Redis service to queue a node's own waiters
before they contend in Redis); :class:`LocalLockService` puts the :class:`~callfs.locks.base.LockService`
protocol on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from callfs.errors import LockTimeout
from callfs.locks.base import Lease


def lock_timeout(key: str, waited: float, timeout: float) -> LockTimeout:
    """The error for a wait on ``key`` that gave up after ``waited`` seconds (limit ``timeout`` seconds)."""
    return LockTimeout(
        f"timed out waiting for lock {key!r} after {waited:.3f} s (wait_timeout {timeout:g} s)"
    )


class _Slot:
    """One held key: the FIFO of futures of the tasks waiting for it."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: deque[asyncio.Future[None]] = deque()


class KeyedFifoLock:
    """Mutual exclusion per string key, granted in arrival order (FIFO), with bounded waits.

    Ownership is handed directly from the releasing task to the oldest waiter, so a task arriving later can
    never overtake one that is already waiting. State exists only for keys that are held: the entry of a key
    is dropped when its last holder releases it with nobody waiting, so memory is bounded by the number of
    keys held and tasks waiting, not by the number of keys ever used. Not thread-safe: one event loop.
    """

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def __len__(self) -> int:
        """Number of keys currently held (a key with waiters is always held)."""
        return len(self._slots)

    def waiting(self, key: str) -> int:
        """Number of tasks waiting for ``key`` (not counting its holder)."""
        slot = self._slots.get(key)
        return 0 if slot is None else sum(1 for fut in slot.waiters if not fut.done())

    async def acquire(self, key: str, max_wait: float) -> None:
        """Wait up to ``max_wait`` seconds for ``key`` and take it.

        Raises :class:`TimeoutError` when the wait exceeds ``max_wait`` (nothing is held then). Cancellation
        while waiting leaves nothing held either. The caller must call :meth:`release` exactly once after a
        successful return.
        """
        slot = self._slots.get(key)
        if slot is None:
            self._slots[key] = _Slot()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.waiters.append(fut)
        try:
            async with asyncio.timeout(max_wait):
                await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                # The key was handed to us in the same loop iteration as the timeout or the cancellation
                # fired: we own it but are not going to use it, so pass it on.
                self.release(key)
            else:
                fut.cancel()
                # A release in between may already have dropped our cancelled future while looking for a
                # live waiter; otherwise take it out now so a long-held key does not collect dead futures.
                with contextlib.suppress(ValueError):
                    slot.waiters.remove(fut)
            raise

    def release(self, key: str) -> None:
        """Give ``key`` to its oldest waiter, or forget it when nobody waits.

        Raises :class:`KeyError` when ``key`` is not held (a bug in the caller).
        """
        slot = self._slots[key]
        while slot.waiters:
            fut = slot.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        del self._slots[key]


class LocalLockService:
    """The :class:`~callfs.locks.base.LockService` for one node: in-process asyncio locks per key.

    - Waiting is FIFO-fair per key and bounded by ``wait_timeout`` seconds (the constructor's default, or the
      ``wait_timeout`` passed to :meth:`hold`); a longer wait raises :class:`callfs.errors.LockTimeout` naming
      the key and the time waited.
    - Fencing tokens come from one counter of the service, so they increase strictly per key (and across
      keys). The counter starts at the wall clock in microseconds, so tokens also keep increasing across
      restarts of the node (fewer than a million acquisitions per second and a clock that does not jump
      back), like the Redis service's; a token recorded before a restart never exceeds a later one.
    - ``lease_ttl`` (seconds) is accepted for configuration symmetry with the Redis service, but an
      in-process lease cannot outlive its holder: a holder whose task is cancelled or fails leaves its
      ``async with`` block and releases at once, and a process crash frees every lock with the process. So
      leases here never expire and need no renewal; :meth:`is_lost` is always ``False``.

    Raises :class:`ValueError` for a negative ``wait_timeout`` or a non-positive ``lease_ttl``.
    """

    def __init__(self, *, wait_timeout: float = 30.0, lease_ttl: float = 15.0) -> None:
        if wait_timeout < 0:
            raise ValueError(f"wait_timeout must be >= 0 seconds, got {wait_timeout}")
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {lease_ttl}")
        self.wait_timeout = wait_timeout
        self.lease_ttl = lease_ttl
        self._locks = KeyedFifoLock()
        self._fence = itertools.count(time.time_ns() // 1000)

    async def start(self) -> None:
        """Nothing to set up: the locks live in this process."""

    async def close(self) -> None:
        """Nothing to tear down: there are no renewals or connections."""

    async def ping(self) -> bool:
        """Always ``True``: the service is this process."""
        return True

    def held_keys(self) -> int:
        """Number of keys currently held (waiters only exist for held keys); 0 when idle."""
        return len(self._locks)

    def is_lost(self, lease: Lease) -> bool:
        """Always ``False``: an in-process lease lasts until its holder releases it."""
        return False

    @asynccontextmanager
    async def hold(self, key: str, *, wait_timeout: float | None = None) -> AsyncIterator[Lease]:
        """Wait (FIFO) for ``key``, yield its :class:`Lease`, release it on exit.

        ``wait_timeout`` (seconds) overrides the service default. Raises
        :class:`callfs.errors.LockTimeout` when the wait exceeds it.
        """
        timeout = self.wait_timeout if wait_timeout is None else wait_timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._locks.acquire(key, timeout)
        except TimeoutError:
            raise lock_timeout(key, loop.time() - started, timeout) from None
        try:
            yield Lease(key=key, owner=secrets.token_hex(16), fencing_token=next(self._fence))
        finally:
            self._locks.release(key)
