"""File lock tables (``callfs.locks.file_locks``): the same behaviour in process and in a real Redis, then what
only Redis gives (two nodes' tables agreeing, atomic changes under contention, an unreachable server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from callfs.errors import LockSessionNotFound
from callfs.locks import ranges
from callfs.locks.base import LockUnavailable
from callfs.locks.file_locks import FileLockTable, LocalFileLockTable
from callfs.locks.ranges import TO_EOF
from callfs.locks.redis_file_locks import LOCKS_PREFIX, RedisFileLockTable
from support.ports import free_port

MakeTable = Callable[[], Awaitable[Any]]


@pytest.fixture(params=["local", "redis"])
async def make_table(request: pytest.FixtureRequest) -> AsyncIterator[MakeTable]:
    """``await make_table()`` → a started table of the parameter's kind (Redis: all on one server)."""
    tables: list[LocalFileLockTable | RedisFileLockTable] = []
    local: LocalFileLockTable | None = None

    async def make() -> LocalFileLockTable | RedisFileLockTable:
        nonlocal local
        if request.param == "local":
            if local is None:  # one process: every "node" is the same table
                local = LocalFileLockTable()
                tables.append(local)
            return local
        table = RedisFileLockTable(url=request.getfixturevalue("redis_url"))
        await table.start()
        tables.append(table)
        return table

    yield make
    for table in tables:
        await table.close()


def posix(session: str, owner: str, action: ranges.Action, start: int = 0, length: int = 0) -> ranges.LockRequest:
    return ranges.request(session, owner, "posix", action, start, length)


async def test_sessions_locks_and_release(make_table: MakeTable) -> None:
    table: FileLockTable = await make_table()
    one = await table.open_session("alice", 30)
    two = await table.open_session("alice", 30)
    assert await table.set_lock(7, posix(one.id, "p", "write", 0, 10), "alice") is None
    blocking = await table.set_lock(7, posix(two.id, "p", "read", 5, 1), "alice")
    assert blocking is not None and (blocking.session, blocking.start, blocking.end) == (one.id, 0, 10)
    assert await table.test_lock(7, posix(two.id, "p", "read", 10, 0)) is None
    assert await table.set_lock(7, posix(two.id, "p", "read", 10, 0), "alice") is None
    assert await table.set_lock(8, ranges.request(one.id, "fd", "flock", "write"), "alice") is None
    assert [(lock.session, lock.start, lock.end) for lock in await table.locks(7)] == [
        (one.id, 0, 10), (two.id, 10, TO_EOF)]
    assert await table.close_session(one.id, "alice") == 2
    assert [lock.session for lock in await table.locks(7)] == [two.id]
    assert await table.locks(8) == []
    with pytest.raises(LockSessionNotFound):
        await table.set_lock(7, posix(one.id, "p", "write"), "alice")
    assert await table.set_lock(7, posix(two.id, "p", "unlock"), "alice") is None
    assert await table.locks(7) == []


async def test_a_session_is_its_users(make_table: MakeTable) -> None:
    table: FileLockTable = await make_table()
    session = await table.open_session("alice", 30)
    for attempt in (table.renew_session(session.id, "bob"), table.close_session(session.id, "bob"),
                    table.set_lock(1, posix(session.id, "o", "write"), "bob")):
        with pytest.raises(LockSessionNotFound):
            await attempt
    assert (await table.renew_session(session.id, "alice")).ttl == 30
    with pytest.raises(ValueError):
        await table.open_session("alice", 0.5)


async def test_an_expired_session_loses_its_locks(make_table: MakeTable) -> None:
    table: FileLockTable = await make_table()
    short = await table.open_session("u", 1)
    kept = await table.open_session("u", 30)
    assert await table.set_lock(3, posix(short.id, "o", "write"), "u") is None
    await asyncio.sleep(0.6)
    await table.renew_session(short.id, "u")  # renewal keeps it past its first TTL
    await asyncio.sleep(0.6)
    assert await table.set_lock(3, posix(kept.id, "o", "read"), "u") is not None
    await asyncio.sleep(1.2)
    assert await table.locks(3) == []
    assert await table.set_lock(3, posix(kept.id, "o", "write"), "u") is None
    with pytest.raises(LockSessionNotFound):
        await table.renew_session(short.id, "u")


async def test_two_nodes_agree(make_table: MakeTable) -> None:
    first: FileLockTable = await make_table()
    second: FileLockTable = await make_table()
    on_first = await first.open_session("u", 30)
    on_second = await second.open_session("u", 30)
    assert await first.set_lock(9, posix(on_first.id, "o", "write", 0, 100), "u") is None
    assert await second.set_lock(9, posix(on_second.id, "o", "write", 50, 1), "u") is not None
    await second.renew_session(on_first.id, "u")
    await second.close_session(on_first.id, "u")
    assert await second.set_lock(9, posix(on_second.id, "o", "write", 50, 1), "u") is None


async def test_concurrent_writers_one_winner(make_table: MakeTable) -> None:
    tables: list[FileLockTable] = [await make_table() for _ in range(3)]
    sessions = [await tables[i % 3].open_session("u", 30) for i in range(12)]
    results = await asyncio.gather(*(
        tables[i % 3].set_lock(11, posix(session.id, "o", "write", 0, 0), "u") for i, session in enumerate(sessions)
    ))
    assert sum(result is None for result in results) == 1
    assert len(await tables[0].locks(11)) == 1


async def test_shared_locks_from_many_sessions_all_land(make_table: MakeTable) -> None:
    tables: list[FileLockTable] = [await make_table() for _ in range(3)]
    sessions = [await tables[i % 3].open_session("u", 30) for i in range(15)]
    results = await asyncio.gather(*(
        tables[i % 3].set_lock(12, posix(session.id, "o", "read", i, 1), "u") for i, session in enumerate(sessions)
    ))
    assert all(result is None for result in results)
    assert len(await tables[0].locks(12)) == 15  # no change overwrote another


async def test_redis_layout_and_lazy_cleanup(redis_url: str) -> None:
    import redis.asyncio as aioredis

    table = RedisFileLockTable(url=redis_url)
    await table.start()
    try:
        session = await table.open_session("u", 30)
        await table.set_lock(5, posix(session.id, "o", "write"), "u")
        raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert await raw.exists(LOCKS_PREFIX + "5") == 1
            await table.set_lock(5, posix(session.id, "o", "unlock"), "u")
            assert await raw.exists(LOCKS_PREFIX + "5") == 0  # no key left for a file without locks
        finally:
            await raw.aclose()
    finally:
        await table.close()


async def test_redis_unreachable() -> None:
    table = RedisFileLockTable(url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(LockUnavailable):
        await table.start()
