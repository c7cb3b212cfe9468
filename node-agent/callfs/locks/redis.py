"""Cluster-wide path locks in Redis (``dlm.type: redis``), shared by every storage node.

Redis layout:

- ``callfs:lock:<key>``: the lock; value = the holder's random owner token, expiry = ``lease_ttl``.
- ``callfs:lock-waiting:<key>``: set (expiring after ``lease_ttl``) by every attempt that found ``<key>`` held,
  so that the release knows whether anyone waits.
- ``callfs:fence``: one cluster-wide counter the fencing tokens are drawn from (see :data:`FENCE_KEY`).
- channel ``callfs:lock-released:<key>``: a message is published on it when ``<key>`` is released while a
  waiter is marked.

Cost: an uncontended :meth:`RedisLockService.hold` is two round trips and four commands: one script to acquire
(``SET NX PX`` and ``INCR`` of the fencing counter, atomically) and one to release (``GET`` and ``DEL`` of
the lock and the waiter mark: a compare-and-delete). Only when the ``DEL`` found a waiter mark does the release
``PUBLISH``; only a task that has to wait subscribes to the release channel. Renewal of all leases a node holds
is one round trip every ``lease_ttl / 3`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from callfs.locks.base import Lease, LockUnavailable
from callfs.locks.local import KeyedFifoLock, lock_timeout

log = logging.getLogger(__name__)

LOCK_KEY_PREFIX = "callfs:lock:"
"""Redis key of a lock is this prefix + the lock key (``file:<path>`` / ``dir:<path>``)."""

WAITING_KEY_PREFIX = "callfs:lock-waiting:"
"""Redis key marking that an attempt found a lock held is this prefix + the lock key."""

RELEASE_CHANNEL_PREFIX = "callfs:lock-released:"
"""Pub/sub channel announcing the release of a lock key is this prefix + the lock key."""

FENCE_KEY = "callfs:fence"
"""The counter fencing tokens are drawn from. One counter for all keys: a token that increases for every
acquisition in the cluster increases strictly per key too, and unlike a counter per key it does not leave a
Redis key behind for every path ever locked. When missing (``INCR`` answers 1) it is seeded from the Redis server
clock (microseconds), so tokens keep increasing even if a Redis without persistence restarts empty."""

IO_TIMEOUT = 2.0
"""Seconds to connect to Redis or wait for one reply before the service counts as unavailable."""

_FIRST_POLL = 0.01
_MAX_POLL = 0.2
"""A waiter re-tries every 10 ms, doubling up to 200 ms, and sooner when the holder's lease runs out: the
release message normally wakes it first; polling covers a missed message and a lease that simply expired."""

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  if token == 1 then
    local now = redis.call('TIME')
    token = tonumber(now[1] .. string.format('%06d', tonumber(now[2])))
    redis.call('SET', KEYS[2], token)
  end
  return {1, token}
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return {0, redis.call('PTTL', KEYS[1])}
"""
"""KEYS: lock, fence counter, waiter mark; ARGV: owner, ttl ms. Returns ``{1, fencing token}`` or, after marking
that someone waits, ``{0, holder's PTTL}`` (ms). A counter that was missing starts at the server clock in
microseconds (the seed is taken as the token itself)."""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if redis.call('DEL', KEYS[1], KEYS[2]) > 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[1])
  end
  return 1
end
return 0
"""
"""KEYS: lock, waiter mark; ARGV: owner, release channel. Deletes only the caller's own lock (and the mark), and
announces the release only when a waiter had marked the key: 1 released, 0 not ours."""

_RENEW = """
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
"""
"""KEYS: locks; ARGV: ttl ms, then one owner per key. Extends each lock still owned: 1 per key, 0 if lost."""


def _waiting_key(lock_key: str) -> str:
    """The waiter mark of the Redis lock key ``lock_key``."""
    return WAITING_KEY_PREFIX + lock_key.removeprefix(LOCK_KEY_PREFIX)


class _ReleaseNotices:
    """Wakes this node's waiters when a key they wait for is released anywhere in the cluster.

    One pub/sub connection per service, subscribed to the release channels of the keys that have a waiter
    on this node (at most one per key: the node queues its own waiters first), read by one listener task.
    Best effort: when the connection is down the waiters' events are set so that they poll.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._events: dict[str, asyncio.Event] = {}

    async def watch(self, key: str) -> asyncio.Event:
        """Subscribe to the release of ``key``; the returned event is set on each release message."""
        channel = RELEASE_CHANNEL_PREFIX + key
        event = asyncio.Event()
        self._events[channel] = event
        try:
            if self._pubsub is None:
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(channel)
            if self._listener is None:
                self._listener = asyncio.create_task(self._listen(self._pubsub))
        except (RedisError, OSError) as exc:
            log.debug("cannot subscribe to %s, falling back to polling: %s", channel, exc)
        return event

    async def unwatch(self, key: str) -> None:
        """Stop waking for ``key``."""
        channel = RELEASE_CHANNEL_PREFIX + key
        self._events.pop(channel, None)
        if self._pubsub is not None and self._pubsub.connection is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(channel)

    async def _listen(self, pubsub: PubSub) -> None:
        pause = 0.05
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except Exception as exc:  # the listener must outlive any failure; waiters poll meanwhile
                log.debug("release notices interrupted: %s", exc, exc_info=not isinstance(exc, RedisError))
                for event in self._events.values():
                    event.set()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            pause = 0.05
            if message is not None and message.get("type") == "message":
                woken = self._events.get(message["channel"])
                if woken is not None:
                    woken.set()

    async def close(self) -> None:
        """Stop the listener and close the pub/sub connection."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None
        for event in self._events.values():
            event.set()


class RedisLockService:
    """The :class:`~callfs.locks.base.LockService` shared by all nodes of a cluster, in Redis.

    ``url`` is a redis-py URL, e.g. ``redis://:password@127.0.0.1:6379/0``. ``wait_timeout`` (seconds) bounds
    a wait for a held key (:class:`callfs.errors.LockTimeout` after it, naming the key and the time waited);
    ``lease_ttl`` (seconds) is how long a lease outlives its last renewal, so a crashed node's locks are free
    again at most ``lease_ttl`` after it stopped renewing. While a node holds leases it renews them all every
    ``lease_ttl / 3`` seconds (compare-and-``PEXPIRE``); a lease found taken over or expired is logged as a
    warning and reported by :meth:`is_lost` until it is released.

    Waiting: a node queues its own waiters for a key in arrival order (FIFO, in process), and only the
    oldest contends in Redis, woken by the release message or by polling with capped backoff. Across nodes
    there is no ordering.

    Redis unreachable, refusing the password or not answering within :data:`IO_TIMEOUT` seconds raises
    :class:`~callfs.locks.base.LockUnavailable` at once rather than after the wait. Raises
    :class:`ValueError` for a negative ``wait_timeout`` or a ``lease_ttl`` under 3 ms.
    """

    def __init__(self, *, url: str, wait_timeout: float = 30.0, lease_ttl: float = 15.0) -> None:
        if wait_timeout < 0:
            raise ValueError(f"wait_timeout must be >= 0 seconds, got {wait_timeout}")
        if lease_ttl < 0.003:
            raise ValueError(f"lease_ttl must be >= 0.003 seconds, got {lease_ttl}")
        self.wait_timeout = wait_timeout
        self.lease_ttl = lease_ttl
        self._url = url
        self._ttl_ms = max(3, round(lease_ttl * 1000))
        self._renew_every = lease_ttl / 3
        self._client: aioredis.Redis | None = None
        self._acquire_script: AsyncScript | None = None
        self._release_script: AsyncScript | None = None
        self._renew_script: AsyncScript | None = None
        self._notices: _ReleaseNotices | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._queue = KeyedFifoLock()
        self._held: dict[str, Lease] = {}
        self._lost: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect, check the credentials and load the scripts; start the renewal task. Idempotent.

        Raises :class:`~callfs.locks.base.LockUnavailable` (within about :data:`IO_TIMEOUT` seconds) when
        Redis cannot be reached or refuses the password; the service is then left unstarted.
        """
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=IO_TIMEOUT,
            socket_timeout=IO_TIMEOUT,
            # One immediate retry replaces a pooled connection that went stale (e.g. Redis restarted);
            # more would turn "Redis is down" into a slow answer.
            retry=Retry(NoBackoff(), 1),
        )
        scripts = [client.register_script(source) for source in (_ACQUIRE, _RELEASE, _RENEW)]
        try:
            await client.ping()
            for script in scripts:  # so that the first hold() is one round trip, not three
                await client.script_load(script.script)
        except (RedisError, OSError) as exc:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
            raise LockUnavailable(f"lock service unavailable: {exc}") from exc
        self._client = client
        self._acquire_script, self._release_script, self._renew_script = scripts
        self._notices = _ReleaseNotices(client)
        self._renewer = asyncio.create_task(self._renew_forever())

    async def close(self) -> None:
        """Stop renewing (leases still held expire after ``lease_ttl``) and disconnect. Idempotent."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._notices is not None:
            await self._notices.close()
            self._notices = None
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()
            self._client = None

    async def ping(self) -> bool:
        """``True`` when Redis answers ``PING`` with this URL's credentials (I/O bounded by :data:`IO_TIMEOUT`)."""
        if self._client is None:
            return False
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    def is_lost(self, lease: Lease) -> bool:
        """``True`` when renewal found ``lease`` expired or taken over while its holder still holds it.

        A holder that must not act on a lost lock (e.g. before committing an upload) checks this; the
        fencing token remains the authoritative guard against a stale holder.
        """
        return lease.owner in self._lost

    @asynccontextmanager
    async def hold(self, key: str, *, wait_timeout: float | None = None) -> AsyncIterator[Lease]:
        """Wait for ``key`` across the cluster, yield its :class:`Lease`, release it (owner-checked) on exit.

        ``wait_timeout`` (seconds) overrides the service default. Raises
        :class:`callfs.errors.LockTimeout` when the wait exceeds it, :class:`LockUnavailable` when Redis
        cannot be used, :class:`RuntimeError` before :meth:`start`. A failed release (Redis down) is logged,
        not raised: the lease then expires after ``lease_ttl``.
        """
        if self._client is None:
            raise RuntimeError("RedisLockService.hold() before start()")
        timeout = self.wait_timeout if wait_timeout is None else wait_timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._queue.acquire(key, timeout)
        except TimeoutError:
            raise lock_timeout(key, loop.time() - started, timeout) from None
        try:
            lease = await self._acquire(key, started, timeout)
            self._held[lease.owner] = lease
            try:
                yield lease
            finally:
                del self._held[lease.owner]
                self._lost.discard(lease.owner)
                release = self._spawn(self._release(lease))
                # Shielded: a holder cancelled during release must still free the key for the others.
                await asyncio.shield(release)
        finally:
            self._queue.release(key)

    async def _acquire(self, key: str, started: float, max_wait: float) -> Lease:
        """Take ``key`` in Redis, waiting until ``started + max_wait`` (loop time, seconds)."""
        owner = secrets.token_hex(16)
        lock_key = LOCK_KEY_PREFIX + key
        granted, value = await self._try_acquire(lock_key, owner)
        if granted:
            return Lease(key=key, owner=owner, fencing_token=value)
        assert self._notices is not None
        loop = asyncio.get_running_loop()
        deadline = started + max_wait
        try:
            released = await self._notices.watch(key)
            delay = _FIRST_POLL
            while True:
                released.clear()
                granted, value = await self._try_acquire(lock_key, owner)
                if granted:
                    return Lease(key=key, owner=owner, fencing_token=value)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise lock_timeout(key, loop.time() - started, max_wait)
                pause = min(delay, remaining)
                if value > 0:  # the holder's lease ends in `value` ms unless renewed
                    pause = min(pause, value / 1000 + 0.001)
                delay = min(delay * 2, _MAX_POLL)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await released.wait()
        finally:
            await self._notices.unwatch(key)

    async def _try_acquire(self, lock_key: str, owner: str) -> tuple[bool, int]:
        """One attempt: ``(True, fencing token)`` or ``(False, the holder's remaining lease in ms)``."""
        assert self._acquire_script is not None
        try:
            granted, value = await self._acquire_script(
                keys=[lock_key, FENCE_KEY, _waiting_key(lock_key)], args=[owner, self._ttl_ms]
            )
        except BaseException as exc:
            # Redis may have granted the lock before the reply got lost (cancellation, timeout): free it now
            # rather than leaving it blocked for a whole lease_ttl. Owner-checked, so harmless otherwise.
            self._spawn(self._delete_if_owner(lock_key, owner))
            if isinstance(exc, RedisError | OSError):
                raise LockUnavailable(f"lock service unavailable: {exc}") from exc
            raise
        return bool(granted), int(value)

    async def _release(self, lease: Lease) -> None:
        """Compare-and-delete ``lease`` and announce it; logs instead of raising."""
        try:
            released = await self._delete_if_owner(LOCK_KEY_PREFIX + lease.key, lease.owner)
        except (RedisError, OSError) as exc:
            log.warning(
                "could not release lock %r (it expires within %g s): %s", lease.key, self.lease_ttl, exc
            )
            return
        if not released:
            log.warning(
                "lock %r (fencing token %d) had expired or been taken over before its release; "
                "the current holder's lock was left alone",
                lease.key,
                lease.fencing_token,
            )

    async def _delete_if_owner(self, lock_key: str, owner: str) -> bool:
        assert self._release_script is not None
        channel = RELEASE_CHANNEL_PREFIX + lock_key.removeprefix(LOCK_KEY_PREFIX)
        return bool(await self._release_script(keys=[lock_key, _waiting_key(lock_key)], args=[owner, channel]))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                await self._renew_held()
            except Exception:  # the renewer must outlive any single failure
                log.exception("lock renewal failed")

    async def _renew_held(self) -> None:
        """Extend every lease this node holds, in one round trip; mark the ones found lost."""
        leases = [lease for lease in self._held.values() if lease.owner not in self._lost]
        if not leases:
            return
        assert self._renew_script is not None
        try:
            renewed = await self._renew_script(
                keys=[LOCK_KEY_PREFIX + lease.key for lease in leases],
                args=[self._ttl_ms, *(lease.owner for lease in leases)],
            )
        except (RedisError, OSError) as exc:
            log.warning(
                "could not renew %d lock lease(s), retrying in %g s: %s", len(leases), self._renew_every, exc
            )
            return
        for lease, ok in zip(leases, renewed, strict=True):
            if not ok and lease.owner in self._held:  # not released while the script ran
                self._lost.add(lease.owner)
                log.warning(
                    "lease on lock %r (fencing token %d) was lost: it expired or was taken over",
                    lease.key,
                    lease.fencing_token,
                )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[None]:
        """Run ``coro`` as a task that :meth:`close` waits for; its errors are logged at debug level."""

        async def run() -> None:
            try:
                await coro
            except (RedisError, OSError) as exc:
                log.debug("background lock operation failed: %s", exc)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

