"""The file lock table in Redis (``dlm.type: redis``): one table for every node of the cluster.

Redis layout:

- ``callfs:flock-session:<id>``: a lock session; value ``{"user", "ttl"}`` (JSON), expiring after its TTL unless
  renewed (``PEXPIRE``).
- ``callfs:flock-inos:<id>``: set of the inode numbers the session has (or had) locks on, expiring with it, so
  that ending the session finds its locks.
- ``callfs:flocks:<ino>``: the inode's locks, a JSON list of :meth:`~callfs.locks.ranges.FileLock.to_json`.

Every change of an inode's locks is an optimistic transaction (``WATCH`` the inode's key, read it and the
sessions it names, compute with :func:`callfs.locks.ranges.apply`, ``MULTI``/``EXEC``; retried when another
node changed it meanwhile), so the range arithmetic lives in one place, in Python. Locks of sessions that
expired are dropped by the next transaction on the inode and never reported meanwhile.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from callfs.locks import ranges
from callfs.locks.base import LockUnavailable
from callfs.locks.file_locks import LockSession, check_ttl, new_session_id, session_not_found
from callfs.locks.ranges import FileLock, LockRequest
from callfs.locks.redis import IO_TIMEOUT

SESSION_PREFIX = "callfs:flock-session:"
SESSION_INOS_PREFIX = "callfs:flock-inos:"
LOCKS_PREFIX = "callfs:flocks:"

MAX_ATTEMPTS = 64
"""Transactions retried this many times when other nodes keep changing the same inode, then 503."""


def _unavailable(exc: BaseException) -> LockUnavailable:
    return LockUnavailable(f"lock service unavailable: {exc}")


class RedisFileLockTable:
    """The :class:`~callfs.locks.file_locks.FileLockTable` in Redis at ``url`` (``redis://...``).

    Raises :class:`~callfs.locks.base.LockUnavailable` when Redis cannot be reached (I/O bounded by
    :data:`callfs.locks.redis.IO_TIMEOUT` seconds) and :class:`RuntimeError` before :meth:`start`.
    """

    def __init__(self, *, url: str) -> None:
        self._url = url
        self._client: aioredis.Redis | None = None

    async def start(self) -> None:
        """Connect and check the credentials. Idempotent. Raises ``LockUnavailable``."""
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(self._url, decode_responses=True, socket_connect_timeout=IO_TIMEOUT,
                                         socket_timeout=IO_TIMEOUT, retry=Retry(NoBackoff(), 1))
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
            raise _unavailable(exc) from exc
        self._client = client

    async def close(self) -> None:
        """Disconnect. Idempotent."""
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()
            self._client = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisFileLockTable used before start()")
        return self._client

    async def open_session(self, user: str, ttl: float) -> LockSession:
        session = LockSession(id=new_session_id(), user=user, ttl=check_ttl(ttl))
        try:
            await self.client.set(SESSION_PREFIX + session.id, json.dumps({"user": user, "ttl": ttl}),
                                  px=round(ttl * 1000))
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return session

    async def _session(self, session_id: str, user: str) -> LockSession:
        try:
            raw = await self.client.get(SESSION_PREFIX + session_id)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        if raw is None:
            raise session_not_found(session_id)
        data = json.loads(raw)
        if data.get("user") != user:
            raise session_not_found(session_id)
        return LockSession(id=session_id, user=user, ttl=float(data["ttl"]))

    async def renew_session(self, session_id: str, user: str) -> LockSession:
        session = await self._session(session_id, user)
        ttl_ms = round(session.ttl * 1000)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.pexpire(SESSION_PREFIX + session_id, ttl_ms)
                pipe.pexpire(SESSION_INOS_PREFIX + session_id, ttl_ms)
                renewed, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        if not renewed:  # expired between the read and the renewal
            raise session_not_found(session_id)
        return session

    async def close_session(self, session_id: str, user: str) -> int:
        await self._session(session_id, user)
        try:
            inos = sorted(str(ino) for ino in await self.client.smembers(SESSION_INOS_PREFIX + session_id))
            stored = await self.client.mget([LOCKS_PREFIX + ino for ino in inos]) if inos else []
            # Gone first: no lock can be taken under it any more, and its locks stop counting at once.
            await self.client.delete(SESSION_PREFIX + session_id, SESSION_INOS_PREFIX + session_id)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        touched = 0
        for ino, raw in zip(inos, stored, strict=True):
            if raw is None or not any(lock.session == session_id for lock in ranges.decode(json.loads(raw))):
                continue
            touched += 1
            await self._transact(int(ino), lambda locks: (ranges.without_sessions(locks, [session_id]), None))
        return touched

    async def _live(self, pipe: aioredis.Redis, sessions: Sequence[str]) -> set[str]:
        """Which of ``sessions`` still exist (one ``MGET`` on the watching connection)."""
        if not sessions:
            return set()
        values = await pipe.mget([SESSION_PREFIX + sid for sid in sessions])
        return {sid for sid, value in zip(sessions, values, strict=True) if value is not None}

    async def _read(self, pipe: aioredis.Redis, ino: int) -> list[FileLock]:
        """The inode's locks of live sessions (``pipe``: the client, or a pipeline in ``WATCH`` mode, which
        executes at once)."""
        raw = await pipe.get(LOCKS_PREFIX + str(ino))
        if raw is None:
            return []
        locks = ranges.decode(json.loads(raw))
        sessions = sorted({lock.session for lock in locks})
        live = await self._live(pipe, sessions)
        return ranges.without_sessions(locks, set(sessions) - live)

    async def _transact(
        self, ino: int, change: Callable[[list[FileLock]], tuple[list[FileLock], FileLock | None]],
        *, session: LockSession | None = None,
    ) -> FileLock | None:
        """Read the inode's live locks, apply ``change`` → ``(new locks, conflict)``, write them back atomically
        unless ``conflict``; with ``session``, record the inode in the session's set. Returns the conflict."""
        key = LOCKS_PREFIX + str(ino)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for _ in range(MAX_ATTEMPTS):
                    try:
                        await pipe.watch(key)
                        current = await self._read(pipe, ino)
                        new, blocking = change(current)
                        if blocking is not None:
                            await pipe.unwatch()  # type: ignore[no-untyped-call]
                            return blocking
                        pipe.multi()  # type: ignore[no-untyped-call]
                        if new:
                            pipe.set(key, json.dumps(ranges.encode(new)))
                        else:
                            pipe.delete(key)
                        if session is not None and new:
                            inos = SESSION_INOS_PREFIX + session.id
                            pipe.sadd(inos, str(ino))
                            pipe.pexpire(inos, round(session.ttl * 1000))
                        await pipe.execute()
                        return None
                    except WatchError:
                        continue
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        raise LockUnavailable(f"the locks of inode {ino} kept changing: gave up after {MAX_ATTEMPTS} attempts")

    async def set_lock(self, ino: int, wanted: LockRequest, user: str) -> FileLock | None:
        session = await self._session(wanted.session, user)
        return await self._transact(ino, lambda locks: ranges.apply(locks, wanted), session=session)

    async def test_lock(self, ino: int, wanted: LockRequest) -> FileLock | None:
        return ranges.conflict(await self.locks(ino), wanted)

    async def locks(self, ino: int) -> list[FileLock]:
        try:
            return await self._read(self.client, ino)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
