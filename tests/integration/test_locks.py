"""Lock services (``callfs.locks``): the shared behaviour of the in-process and the Redis service, then the
Redis-only guarantees (lease expiry, owner-checked release, two nodes, unreachable server).

The Redis tests run against a real ``redis-server`` (fixture ``redis_url``); faults (a node that stops renewing,
a lease that expires under its holder) are injected by patching the renewal step or deleting the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis

from callfs.errors import LockTimeout
from callfs.locks import redis as redis_locks
from callfs.locks.base import Lease, LockService, LockUnavailable
from callfs.locks.local import KeyedFifoLock, LocalLockService
from callfs.locks.redis import FENCE_KEY, LOCK_KEY_PREFIX, WAITING_KEY_PREFIX, RedisLockService
from support.ports import free_port
from support.redis_server import RedisServer, running_redis_server
from support.waiting import wait_for_async

TTL = 0.3
"""Lease time-to-live for the tests, seconds: short so expiry and renewal are observable quickly."""

WAIT = 5.0
"""Default wait_timeout of the services under test, seconds: long enough never to fire by accident."""

MakeLocks = Callable[..., Awaitable[Any]]


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


@pytest.fixture
async def make_locks(request: pytest.FixtureRequest) -> AsyncIterator[MakeLocks]:
    """Factory ``await make_locks(kind, **options)`` → a started service, closed after the test."""
    services: list[LocalLockService | RedisLockService] = []

    async def make(kind: str, **options: Any) -> LocalLockService | RedisLockService:
        options.setdefault("wait_timeout", WAIT)
        options.setdefault("lease_ttl", TTL)
        service: LocalLockService | RedisLockService
        if kind == "local":
            service = LocalLockService(**options)
        else:
            options.setdefault("url", request.getfixturevalue("redis_url"))
            service = RedisLockService(**options)
        await service.start()
        services.append(service)
        return service

    yield make
    for service in services:
        await service.close()


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def lock_kind(request: pytest.FixtureRequest) -> str:
    """Which implementation a shared-behaviour test runs against."""
    return str(request.param)


@pytest.fixture
async def lock_service(lock_kind: str, make_locks: MakeLocks) -> LockService:
    """A started service of each kind (lease_ttl 0.3 s, wait_timeout 5 s)."""
    service: LocalLockService | RedisLockService = await make_locks(lock_kind)
    protocol: LockService = service  # both implement the protocol (checked by mypy)
    return protocol


@pytest.fixture
def redis_client(redis_server: RedisServer, redis_url: str) -> redis.Redis:
    """A synchronous client on the (flushed) test database, to inspect and tamper with Redis directly."""
    return redis_server.client()


# --- shared behaviour -------------------------------------------------------------------------------------


async def test_twenty_concurrent_holders_exclude_each_other(lock_service: LockService) -> None:
    counter = 0
    inside = 0
    most_inside = 0

    async def increment() -> None:
        nonlocal counter, inside, most_inside
        async with lock_service.hold("file:/counter"):
            inside += 1
            most_inside = max(most_inside, inside)
            seen = counter
            await asyncio.sleep(0.002)  # another holder would run here and be overwritten below
            counter = seen + 1
            inside -= 1

    await asyncio.gather(*(increment() for _ in range(20)))
    assert counter == 20
    assert most_inside == 1


async def test_second_holder_waits_for_the_first_and_then_gets_the_lock(lock_service: LockService) -> None:
    loop = asyncio.get_running_loop()

    async def second() -> tuple[Lease, float]:
        started = loop.time()
        async with lock_service.hold("file:/a") as lease:
            return lease, loop.time() - started

    async with lock_service.hold("file:/a") as first:
        waiter = asyncio.create_task(second())
        done, _ = await asyncio.wait({waiter}, timeout=0.3)
        assert not done, "the second holder got the lock while the first held it"
    lease, waited = await asyncio.wait_for(waiter, timeout=WAIT)
    assert waited >= 0.3
    assert lease.key == "file:/a"
    assert lease.owner != first.owner
    assert lease.fencing_token > first.fencing_token


async def test_waiting_longer_than_wait_timeout_raises_lock_timeout(lock_service: LockService) -> None:
    loop = asyncio.get_running_loop()
    async with lock_service.hold("file:/busy"):
        started = loop.time()
        with pytest.raises(LockTimeout) as raised:
            async with lock_service.hold("file:/busy", wait_timeout=0.4):
                pytest.fail("got a held lock")
        waited = loop.time() - started
    assert 0.4 <= waited < 2.0
    assert "file:/busy" in raised.value.message
    assert "0.4" in raised.value.message
    assert raised.value.status == 503
    assert raised.value.code == "LOCK_TIMEOUT"


async def test_default_wait_timeout_comes_from_the_service(lock_kind: str, make_locks: MakeLocks) -> None:
    locks = await make_locks(lock_kind, wait_timeout=0.2)
    async with locks.hold("file:/d"):
        with pytest.raises(LockTimeout):
            async with locks.hold("file:/d"):
                pytest.fail("got a held lock")


async def test_different_keys_do_not_block_each_other(lock_service: LockService) -> None:
    async with lock_service.hold("file:/one") as one, lock_service.hold("file:/two", wait_timeout=0.5) as two:
        assert (one.key, two.key) == ("file:/one", "file:/two")
        async with lock_service.hold("dir:/one", wait_timeout=0.5) as directory:
            assert directory.key == "dir:/one"


async def test_fencing_tokens_strictly_increase_per_key(lock_service: LockService) -> None:
    tokens: dict[str, list[int]] = {"file:/f": [], "file:/g": []}
    for _ in range(5):
        for key, seen in tokens.items():
            async with lock_service.hold(key) as lease:
                seen.append(lease.fencing_token)
    for seen in tokens.values():
        assert all(earlier < later for earlier, later in itertools.pairwise(seen))


async def test_concurrent_holders_get_increasing_tokens_in_the_order_they_hold(
    lock_service: LockService,
) -> None:
    order: list[int] = []

    async def take() -> None:
        async with lock_service.hold("file:/fenced") as lease:
            order.append(lease.fencing_token)
            await asyncio.sleep(0)

    await asyncio.gather(*(take() for _ in range(10)))
    assert order == sorted(order)
    assert len(set(order)) == 10


async def test_waiters_on_one_node_get_the_lock_in_arrival_order(lock_service: LockService) -> None:
    order: list[int] = []

    async def take(number: int) -> None:
        async with lock_service.hold("file:/queue"):
            order.append(number)

    async with lock_service.hold("file:/queue"):
        tasks = []
        for number in range(8):
            tasks.append(asyncio.create_task(take(number)))
            await asyncio.sleep(0.01)  # let it queue before the next one arrives
    await asyncio.gather(*tasks)
    assert order == list(range(8))


async def test_lease_is_kept_while_held_three_times_its_ttl(lock_service: LockService) -> None:
    async with lock_service.hold("file:/long") as lease:
        with pytest.raises(LockTimeout):
            async with lock_service.hold("file:/long", wait_timeout=3 * TTL):
                pytest.fail("a competitor got a lock whose holder is still renewing it")
    async with lock_service.hold("file:/long", wait_timeout=0.5) as after:
        assert after.fencing_token > lease.fencing_token


async def test_cancelled_holder_frees_the_lock(lock_service: LockService) -> None:
    entered = asyncio.Event()

    async def holder() -> None:
        async with lock_service.hold("file:/cancel"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(holder())
    await entered.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    async with lock_service.hold("file:/cancel", wait_timeout=0.5) as lease:
        assert lease.key == "file:/cancel"


async def test_a_failing_body_releases_and_propagates(lock_service: LockService) -> None:
    with pytest.raises(ZeroDivisionError):
        async with lock_service.hold("file:/boom"):
            _ = 1 / 0
    async with lock_service.hold("file:/boom", wait_timeout=0.5):
        pass


async def test_waiter_that_times_out_does_not_block_later_waiters(lock_service: LockService) -> None:
    later = None
    async with lock_service.hold("file:/t"):
        with pytest.raises(LockTimeout):
            async with lock_service.hold("file:/t", wait_timeout=0.05):
                pass

        async def take() -> Lease:
            async with lock_service.hold("file:/t") as lease:
                return lease

        later = asyncio.create_task(take())
        await asyncio.sleep(0.05)
    lease = await asyncio.wait_for(later, timeout=2.0)
    assert lease.key == "file:/t"


async def test_ping_answers(lock_service: LockService) -> None:
    assert await lock_service.ping()


# --- in-process specifics ---------------------------------------------------------------------------------


async def test_local_service_keeps_no_state_for_idle_keys(make_locks: MakeLocks) -> None:
    locks: LocalLockService = await make_locks("local")
    for number in range(100):
        async with locks.hold(f"file:/{number}"):
            assert locks.held_keys() == 1
    async with locks.hold("file:/x"):
        with pytest.raises(LockTimeout):
            async with locks.hold("file:/x", wait_timeout=0.01):
                pass
        cancelled = asyncio.create_task(locks.hold("file:/x").__aenter__())
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
    assert locks.held_keys() == 0


@pytest.mark.parametrize("release_first", [True, False], ids=["release-then-cancel", "cancel-then-release"])
async def test_waiter_giving_up_as_it_is_handed_the_key_passes_it_on(release_first: bool) -> None:
    locks = KeyedFifoLock()
    await locks.acquire("k", max_wait=1.0)
    waiter = asyncio.create_task(locks.acquire("k", max_wait=1.0))
    await wait_until(lambda: locks.waiting("k") == 1)
    if release_first:
        locks.release("k")  # hands the key to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs again
    else:
        waiter.cancel()
        locks.release("k")
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(locks) == 0
    await asyncio.wait_for(locks.acquire("k", max_wait=0), timeout=1.0)
    locks.release("k")


async def test_local_fencing_tokens_keep_increasing_across_a_restart(make_locks: MakeLocks) -> None:
    before: LocalLockService = await make_locks("local")
    async with before.hold("file:/r") as old:
        pass
    after: LocalLockService = await make_locks("local")  # a fresh process's service
    async with after.hold("file:/r") as new:
        assert new.fencing_token > old.fencing_token


def test_local_service_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="wait_timeout"):
        LocalLockService(wait_timeout=-1)
    with pytest.raises(ValueError, match="lease_ttl"):
        LocalLockService(lease_ttl=0)


# --- Redis specifics --------------------------------------------------------------------------------------


def stop_renewing(service: RedisLockService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault: ``service``'s node keeps running but never renews its leases again (a hung or partitioned node)."""

    async def no_renewal() -> None:
        return None

    monkeypatch.setattr(service, "_renew_held", no_renewal)


@pytest.mark.redis
async def test_redis_lock_lives_under_its_documented_key_and_is_renewed(
    make_locks: MakeLocks, redis_client: redis.Redis
) -> None:
    locks: RedisLockService = await make_locks("redis")
    async with locks.hold("file:/doc.txt") as lease:
        await asyncio.sleep(3 * TTL)
        assert redis_client.get(LOCK_KEY_PREFIX + "file:/doc.txt") == lease.owner
        assert 0 < redis_client.pttl(LOCK_KEY_PREFIX + "file:/doc.txt") <= TTL * 1000
        assert not locks.is_lost(lease)
    assert redis_client.exists(LOCK_KEY_PREFIX + "file:/doc.txt") == 0


@pytest.mark.redis
async def test_redis_uncontended_hold_is_one_round_trip_each_way_and_publishes_nothing(
    make_locks: MakeLocks, redis_client: redis.Redis
) -> None:
    locks: RedisLockService = await make_locks("redis", lease_ttl=30.0)
    async with locks.hold("file:/first"):  # the very first acquisition also seeds the fencing counter
        pass
    redis_client.config_resetstat()
    async with locks.hold("file:/cheap"):
        pass
    stats = redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    # Two scripts sent; the rest are the commands they ran inside Redis (commandstats counts those too): no
    # release message when nobody waits.
    assert calls == {"evalsha": 2, "set": 1, "incr": 1, "get": 1, "del": 1}


@pytest.mark.redis
async def test_redis_release_announces_itself_only_when_someone_waits(
    make_locks: MakeLocks, redis_client: redis.Redis
) -> None:
    holder: RedisLockService = await make_locks("redis", lease_ttl=30.0)
    waiter: RedisLockService = await make_locks("redis", lease_ttl=30.0)
    mark = WAITING_KEY_PREFIX + "file:/wanted"

    async def take_in_turn() -> None:
        async with waiter.hold("file:/wanted"):
            pass

    async def marked() -> bool | None:
        return redis_client.exists(mark) == 1 or None

    async with holder.hold("file:/wanted"):
        task = asyncio.create_task(take_in_turn())
        await wait_for_async(marked, 5.0, "the waiter to mark the key")
        redis_client.config_resetstat()
    await asyncio.wait_for(task, timeout=5.0)
    # The holder's release found the mark and announced itself; the waiter's, with nobody behind it, did not.
    assert redis_client.info("commandstats")["cmdstat_publish"]["calls"] == 1
    assert redis_client.exists(mark) == 0


@pytest.mark.redis
async def test_redis_every_waiter_across_nodes_is_woken_in_turn(
    make_locks: MakeLocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release consumes the waiter mark; a waiter that lost the race to the woken one marks the key again,
    so the next release wakes it too, without waiting for a poll."""
    monkeypatch.setattr(redis_locks, "_MAX_POLL", 5.0)  # polling alone would now take seconds
    holder, first, second = [await make_locks("redis", lease_ttl=30.0) for _ in range(3)]
    loop = asyncio.get_running_loop()
    acquired: list[float] = []

    async def wait_for_it(service: RedisLockService) -> None:
        async with service.hold("file:/queue"):
            acquired.append(loop.time())
            await asyncio.sleep(0.3)

    async with holder.hold("file:/queue"):
        tasks = [asyncio.create_task(wait_for_it(service)) for service in (first, second)]
        await asyncio.sleep(0.5)  # both waiters are in poll intervals of seconds
        released_at = loop.time()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=3.0)
    assert acquired[0] - released_at < 0.1
    assert acquired[1] - acquired[0] < 0.3 + 0.1


@pytest.mark.redis
async def test_redis_holder_crashed_without_renewing_frees_the_lock_after_ttl(
    make_locks: MakeLocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed: RedisLockService = await make_locks("redis")
    other: RedisLockService = await make_locks("redis")
    stop_renewing(crashed, monkeypatch)
    abandoned = crashed.hold("file:/crash")
    stale = await abandoned.__aenter__()  # the holder never leaves: it crashed
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with other.hold("file:/crash", wait_timeout=3.0) as lease:
        waited = loop.time() - started
        assert lease.fencing_token > stale.fencing_token
    assert waited < TTL + 0.5
    await abandoned.__aexit__(None, None, None)


@pytest.mark.redis
async def test_redis_release_never_frees_somebody_elses_lock(
    make_locks: MakeLocks, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="callfs.locks.redis")
    first_node: RedisLockService = await make_locks("redis")
    second_node: RedisLockService = await make_locks("redis")
    key = LOCK_KEY_PREFIX + "file:/shared"
    second_holds = asyncio.Event()
    first_may_leave = asyncio.Event()

    async with first_node.hold("file:/shared") as first:
        redis_client.delete(key)  # fault: the first lease expires under its holder
        await wait_until(lambda: first_node.is_lost(first))

        async def second_holder() -> Lease:
            async with second_node.hold("file:/shared", wait_timeout=2.0) as lease:
                second_holds.set()
                await first_may_leave.wait()
                assert redis_client.get(key) == lease.owner, "the first holder's release freed this lock"
                return lease

        task = asyncio.create_task(second_holder())
        await asyncio.wait_for(second_holds.wait(), timeout=2.0)
    assert redis_client.get(key) is not None
    assert any("taken over before its release" in record.getMessage() for record in caplog.records)
    first_may_leave.set()
    second = await asyncio.wait_for(task, timeout=2.0)
    assert second.fencing_token > first.fencing_token
    assert redis_client.exists(key) == 0


@pytest.mark.redis
async def test_redis_two_nodes_contending_on_one_key_exclude_each_other(make_locks: MakeLocks) -> None:
    nodes: list[RedisLockService] = [await make_locks("redis"), await make_locks("redis")]
    counter = 0
    inside = 0
    most_inside = 0
    tokens: list[int] = []

    async def increment(node: RedisLockService) -> None:
        nonlocal counter, inside, most_inside
        async with node.hold("file:/contended") as lease:
            inside += 1
            most_inside = max(most_inside, inside)
            tokens.append(lease.fencing_token)
            seen = counter
            await asyncio.sleep(0.002)
            counter = seen + 1
            inside -= 1

    await asyncio.gather(*(increment(nodes[number % 2]) for number in range(20)))
    assert counter == 20
    assert most_inside == 1
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 20


@pytest.mark.redis
async def test_redis_waiter_on_another_node_is_woken_by_the_release(
    make_locks: MakeLocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_locks, "_MAX_POLL", 5.0)  # polling alone would now take seconds
    holder: RedisLockService = await make_locks("redis", lease_ttl=30.0)
    waiter: RedisLockService = await make_locks("redis", lease_ttl=30.0)
    loop = asyncio.get_running_loop()

    async def wait_for_it() -> float:
        async with waiter.hold("file:/wake"):
            return loop.time()

    async with holder.hold("file:/wake"):
        task = asyncio.create_task(wait_for_it())
        await asyncio.sleep(0.5)  # the waiter is now in a poll interval of seconds
        released_at = loop.time()
    acquired_at = await asyncio.wait_for(task, timeout=2.0)
    assert acquired_at - released_at < 0.1


@pytest.mark.redis
async def test_redis_waiter_that_misses_the_release_message_still_gets_the_lock_soon(
    make_locks: MakeLocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder: RedisLockService = await make_locks("redis", lease_ttl=30.0)
    waiter: RedisLockService = await make_locks("redis", lease_ttl=30.0)

    async def deaf(self: object, key: str) -> asyncio.Event:
        return asyncio.Event()  # fault: no release message ever arrives

    monkeypatch.setattr(redis_locks._ReleaseNotices, "watch", deaf)
    loop = asyncio.get_running_loop()

    async def wait_for_it() -> float:
        async with waiter.hold("file:/deaf"):
            return loop.time()

    async with holder.hold("file:/deaf"):
        task = asyncio.create_task(wait_for_it())
        await asyncio.sleep(1.0)  # an uncapped backoff would be sleeping 0.8 s at a time by now
        released_at = loop.time()
    acquired_at = await asyncio.wait_for(task, timeout=5.0)
    assert acquired_at - released_at <= redis_locks._MAX_POLL + 0.1


@pytest.mark.redis
async def test_redis_fencing_continues_above_an_existing_counter(
    make_locks: MakeLocks, redis_client: redis.Redis
) -> None:
    locks: RedisLockService = await make_locks("redis")
    async with locks.hold("file:/seeded") as first:
        assert first.fencing_token > 1_600_000_000 * 1_000_000  # seeded from the server clock, microseconds
    redis_client.set(FENCE_KEY, first.fencing_token + 1000)
    async with locks.hold("file:/seeded") as second:
        assert second.fencing_token == first.fencing_token + 1001


@pytest.mark.redis
async def test_redis_wrong_password_is_unavailable_quickly(redis_server: RedisServer) -> None:
    locks = RedisLockService(url=f"redis://:wrong@{redis_server.host}:{redis_server.port}/0")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LockUnavailable, match=r"(?i)password"):
        await locks.start()
    assert loop.time() - started < 1.0
    assert not await locks.ping()
    with pytest.raises(RuntimeError, match="start"):
        async with locks.hold("file:/x"):
            pytest.fail("got a lock without authenticating")


@pytest.mark.redis
async def test_redis_closed_port_is_unavailable_quickly() -> None:
    locks = RedisLockService(url=f"redis://:pw@127.0.0.1:{free_port()}/0")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LockUnavailable):
        await locks.start()
    assert loop.time() - started < 1.0
    assert not await locks.ping()


@pytest.mark.redis
async def test_redis_outage_while_held_is_survived_and_recovered_from(
    make_locks: MakeLocks, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="callfs.locks.redis")
    with contextlib.ExitStack() as outage:
        server = outage.enter_context(running_redis_server(tmp_path_factory.mktemp("redis-outage")))
        locks: RedisLockService = await make_locks("redis", url=server.url)
        async with locks.hold("file:/outage"):
            outage.close()  # Redis goes away while the lock is held
        # Leaving the block did not raise: the release failure was logged (the lease expires by itself).
        assert any("could not release lock 'file:/outage'" in r.getMessage() for r in caplog.records)
        assert not await locks.ping()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LockUnavailable):
            async with locks.hold("file:/other"):
                pytest.fail("got a lock while Redis is down")
        assert loop.time() - started < 1.0
    again = tmp_path_factory.mktemp("redis-again")
    with running_redis_server(again, port=server.port, password=server.password):
        assert await locks.ping()
        async with locks.hold("file:/outage", wait_timeout=1.0) as lease:
            assert lease.key == "file:/outage"


@pytest.mark.redis
async def test_redis_hold_before_start_is_an_error() -> None:
    locks = RedisLockService(url="redis://127.0.0.1:1/0")
    with pytest.raises(RuntimeError, match="start"):
        async with locks.hold("file:/x"):
            pass
