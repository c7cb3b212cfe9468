"""How many times one request waits for PostgreSQL and Redis: the per-operation budgets of
docs/architecture.md ("Round trips per request"), measured on the wire.

The node runs on PostgreSQL + Redis. Its PostgreSQL connections go through a counting relay
(:mod:`support.pg_wire`: every ``Sync``, ``Flush`` and simple ``Query`` the client sends is one round trip),
and it has a Redis server of its own, whose ``INFO commandstats`` (reset with ``CONFIG RESETSTAT`` before each
request) counts the commands, those run inside a script included. A request over its budget fails the test
and prints the statements it ran.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.app_node import AppNode
from support.http import session
from support.pg_wire import PgWireCounter, pg_wire_counter
from support.redis_server import RedisServer, running_redis_server

BODY = b"x" * 4096
"""A 4 KiB file."""

# What the test's own Redis client sends, not the node.
_OWN_COMMANDS = {"info", "config|resetstat", "auth", "hello", "client|setinfo", "ping"}

LOCK_COMMANDS = {"evalsha": 2, "set": 1, "incr": 1, "get": 1, "del": 1}
"""A write's lock on the uncontended path: two scripts (round trips); acquire = SET NX PX + INCR of the fencing
counter, release = GET + DEL (compare-and-delete). No PUBLISH, EXISTS or PTTL."""


@dataclass(frozen=True)
class Budget:
    """At most ``pg`` PostgreSQL round trips; exactly the Redis ``commands`` (name → calls)."""

    pg: int
    commands: dict[str, int]


BUDGETS = {
    "put_new": Budget(pg=7, commands=LOCK_COMMANDS),  # 6 + the directory's times
    "put_new_under_quota": Budget(pg=7, commands=LOCK_COMMANDS),  # 6 + the directory's times
    "overwrite": Budget(pg=6, commands=LOCK_COMMANDS),
    "overwrite_under_quota": Budget(pg=6, commands=LOCK_COMMANDS),
    "get": Budget(pg=1, commands={}),
    "head": Budget(pg=1, commands={}),
    "delete": Budget(pg=7, commands=LOCK_COMMANDS),  # 6 + the directory's times
    "mkdir": Budget(pg=7, commands={}),  # 6 + the directory's times
}


class Meter:
    """Counts what one request costs: PostgreSQL round trips (with their SQL) and Redis commands."""

    def __init__(self, pg: PgWireCounter, redis_server: RedisServer) -> None:
        self._pg = pg
        self._redis = redis_server.client()
        self.report: list[str] = []
        """One line per request measured."""
        self.over: list[str] = []
        """What went over its budget, with the statements it ran."""

    def reset(self) -> None:
        self._redis.config_resetstat()
        self._pg.reset()

    def redis_commands(self) -> dict[str, int]:
        stats: dict[str, Any] = self._redis.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
        return {name: n for name, n in calls.items() if name not in _OWN_COMMANDS}

    def check(self, operation: str) -> None:
        """Record what ``operation`` (the request since :meth:`reset`) cost against its budget."""
        budget = BUDGETS[operation]
        round_trips, statements, commands = self._pg.round_trips, self._pg.statements, self.redis_commands()
        self.report.append(
            f"{operation}: {round_trips} PostgreSQL round trips, {len(statements)} statements; Redis {commands}"
        )
        if round_trips > budget.pg:
            shown = "\n    ".join(statements)
            self.over.append(f"{operation}: {round_trips} PostgreSQL round trips > {budget.pg}:\n    {shown}")
        if commands != budget.commands:
            self.over.append(f"{operation}: Redis commands {commands}, expected {budget.commands}")

    def close(self) -> None:
        self._redis.close()


@pytest.fixture
def metered_node(
    request: pytest.FixtureRequest, tmp_path: Path, app_node_factory: Callable[..., AppNode]
) -> Iterator[tuple[AppNode, Meter]]:
    """A PostgreSQL + Redis node whose round trips are counted; background jobs are too rare to interfere."""
    postgres_dsn: str = request.getfixturevalue("postgres_dsn")
    host, port, database = re.fullmatch(r"postgresql://[^@]+@([^:]+):(\d+)/(\w+)", postgres_dsn).groups()  # type: ignore[union-attr]
    (tmp_path / "redis").mkdir()
    with running_redis_server(tmp_path / "redis") as redis_server, pg_wire_counter(host, int(port)) as pg:
        node = app_node_factory(
            metadata_store={"type": "postgres",
                            "dsn": f"postgresql://postgres@127.0.0.1:{pg.port}/{database}?sslmode=disable"},
            dlm={"type": "redis", "redis_addr": f"{redis_server.host}:{redis_server.port}",
                 "redis_password": redis_server.password},
            instance_discovery={"heartbeat_interval": 3600, "orphan_sweep_interval": 3600},
            # Every create and delete moves its directory's times (no skip window): the budgets count it.
            server={"directory_time_skip": 0},
            links={"sweep_interval": 3600},
        )
        meter = Meter(pg, redis_server)
        try:
            yield node, meter
        finally:
            meter.close()
            node.stop()


async def _expect(response: aiohttp.ClientResponse, status: int) -> None:
    assert response.status == status, await response.text()
    await response.read()


async def test_requests_stay_within_their_round_trip_budgets(metered_node: tuple[AppNode, Meter]) -> None:
    node, meter = metered_node
    async with session(node) as http, session(node, "root") as root:
        # Warm up: every statement asyncpg has to prepare is prepared once per pooled connection.
        for _ in range(3):
            async with http.post("/v1/files/warm/sub/") as response:
                await response.read()
            async with http.put("/v1/files/warm/f", data=BODY) as response:
                await response.read()
            async with http.put("/v1/files/warm/f", data=BODY) as response:
                await response.read()
            async with http.get("/v1/files/warm/f") as response:
                await response.read()
            async with http.head("/v1/files/warm/f") as response:
                await response.read()
            async with http.delete("/v1/files/warm/f") as response:
                await response.read()
            async with http.delete("/v1/files/warm/sub") as response:
                await response.read()
        async with http.post("/v1/files/data/") as response:
            await _expect(response, 201)
        async with root.post("/v1/files/limited/") as response:
            await _expect(response, 201)
        async with root.put("/v1/quotas/limited", json={"bytes_limit": 1 << 30}) as response:
            await _expect(response, 201)
        async with root.put("/v1/files/limited/warm", data=BODY) as response:
            await _expect(response, 201)

        meter.reset()
        async with http.put("/v1/files/data/new", data=BODY) as response:
            await _expect(response, 201)
        meter.check("put_new")

        meter.reset()
        async with http.put("/v1/files/data/new", data=BODY) as response:
            await _expect(response, 200)
        meter.check("overwrite")

        meter.reset()
        async with root.put("/v1/files/limited/new", data=BODY) as response:
            await _expect(response, 201)
        meter.check("put_new_under_quota")

        meter.reset()
        async with root.put("/v1/files/limited/new", data=BODY) as response:
            await _expect(response, 200)
        meter.check("overwrite_under_quota")

        meter.reset()
        async with http.get("/v1/files/data/new") as response:
            assert response.status == 200
            assert await response.read() == BODY
        meter.check("get")

        meter.reset()
        async with http.head("/v1/files/data/new") as response:
            await _expect(response, 200)
        meter.check("head")

        meter.reset()
        async with http.delete("/v1/files/data/new") as response:
            await _expect(response, 204)
        meter.check("delete")

        meter.reset()
        async with http.post("/v1/files/data/dir/") as response:
            await _expect(response, 201)
        meter.check("mkdir")

        print("\n".join(meter.report))  # shown with -s: the figures docs/architecture.md quotes
        assert not meter.over, "\n".join(meter.report + meter.over)
