"""Per-endpoint rate limits over HTTP: 429 with ``Retry-After`` and ``RateLimit-*`` headers, refill, buckets
per key and per IP, in-process (SQLite node) and in Redis (PostgreSQL+Redis node, and shared by a cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from support.app_node import AppNode
from support.http import session
from support.node import NodeProcess, postgres_redis_sections

OFF = {"rate": 0}


def limits(**classes: dict[str, Any]) -> dict[str, Any]:
    """A ``rate_limits`` section enabling ``classes`` (others off, unless named)."""
    return {"enabled": True, "classes": {"links": OFF, "downloads": OFF, **classes}}


@pytest.fixture(params=["sqlite", "postgres"])
def limited_node(
    request: pytest.FixtureRequest, app_node_factory: Callable[..., AppNode]
) -> Callable[..., AppNode]:
    """``limited_node(**classes)``: a node whose ``rate_limits`` enables ``classes``; in-process buckets
    (SQLite, local locks) or Redis buckets (PostgreSQL + Redis)."""
    sections = {} if request.param == "sqlite" else postgres_redis_sections(request)

    def make(**classes: dict[str, Any]) -> AppNode:
        return app_node_factory(rate_limits=limits(**classes), **sections)

    return make


async def statuses(http: aiohttp.ClientSession, method: str, path: str, count: int) -> list[int]:
    out = []
    for _ in range(count):
        async with http.request(method, path) as response:
            await response.read()
            out.append(response.status)
    return out


async def refused(http: aiohttp.ClientSession, method: str, path: str, count: int) -> list[bool]:
    """For each of ``count`` requests in turn: was it refused (429)?"""
    return [status == 429 for status in await statuses(http, method, path, count)]


async def test_burst_beyond_the_limit_is_refused_with_headers_then_refills(
    limited_node: Callable[..., AppNode],
) -> None:
    node = limited_node(reads={"rate": 2, "burst": 2, "per": "key"})
    async with session(node) as http:
        async with http.get("/v1/directories/") as response:
            assert response.status == 200
            assert response.headers["RateLimit-Limit"] == "2"
            assert response.headers["RateLimit-Remaining"] == "1"
            assert response.headers["RateLimit-Reset"] == "1"
            assert "Retry-After" not in response.headers
        async with http.head("/v1/files/") as response:
            assert response.status == 200
            assert response.headers["RateLimit-Remaining"] == "0"
        async with http.get("/v1/directories/") as response:
            assert response.status == 429
            assert await response.json() == {
                "code": "RATE_LIMIT_EXCEEDED", "message": "rate limit exceeded: at most 2 requests at once; "
                "retry in 1 s",
            }
            assert response.headers["Retry-After"] == "1"
            assert response.headers["RateLimit-Limit"] == "2"
            assert response.headers["RateLimit-Remaining"] == "0"
            assert response.headers["RateLimit-Reset"] == "1"
            assert response.headers["Cache-Control"] == "no-store"
        # One request's worth of refill at 2/s; checked first, as anything done meanwhile refills the bucket too.
        await asyncio.sleep(0.6)
        assert await statuses(http, "GET", "/v1/directories/", 2) == [200, 429]
        # Writes, health and metrics have no limit here.
        async with http.put("/v1/files/w.txt", data=b"x") as response:
            assert response.status == 201
            assert "RateLimit-Limit" not in response.headers
        assert await statuses(http, "GET", "/health", 3) == [200] * 3
        async with http.get("/metrics") as response:
            assert 'callfs_rate_limit_refusals_total{class="reads"} 2.0' in await response.text()


async def test_buckets_per_key_are_separate(limited_node: Callable[..., AppNode]) -> None:
    node = limited_node(writes={"rate": 0.5, "burst": 2, "per": "key"})
    async with session(node, "alice") as alice, session(node, "bob") as bob:
        assert await refused(alice, "PUT", "/v1/files/tmp/a", 3) == [False, False, True]
        assert await refused(bob, "DELETE", "/v1/files/tmp/a", 3) == [False, False, True]


async def test_buckets_per_ip_are_shared_by_keys(limited_node: Callable[..., AppNode]) -> None:
    node = limited_node(writes={"rate": 0.5, "burst": 2, "per": "ip"})
    async with session(node, "alice") as alice, session(node, "bob") as bob:
        assert await refused(alice, "PUT", "/v1/files/tmp/b", 2) == [False, False]
        assert await refused(bob, "PUT", "/v1/files/tmp/c", 1) == [True]


async def test_links_and_downloads_keep_their_original_defaults(app_node_factory: Callable[..., AppNode]) -> None:
    node = app_node_factory(rate_limits={"enabled": True})
    async with session(node) as http, session(node, None) as anonymous:
        async with http.put("/v1/files/d.txt", data=b"data") as response:
            assert response.status == 201
        async with http.post("/v1/links/generate", json={"path": "/d.txt", "expiry_seconds": 60}) as response:
            assert response.status == 201
            assert response.headers["RateLimit-Limit"] == "1"
            token = (await response.json())["token"]
        # links: 100/s with a burst of 1 — of five requests sent at once, some come within 10 ms of another.
        results = await asyncio.gather(*(http.post("/v1/links/generate", json={"path": "/d.txt"}) for _ in range(5)))
        codes = [r.status for r in results]
        for r in results:
            r.release()
        assert 429 in codes
        # downloads: 10/s with a burst of 5, per IP, without any key.
        paths = [f"/download/{token}"] + ["/download/not-a-token"] * 7
        results = await asyncio.gather(*(anonymous.get(p) for p in paths))
        codes = [r.status for r in results]
        for r in results:
            assert r.headers["RateLimit-Limit"] == "5"
            r.release()
        assert codes.count(429) >= 2
        refused = next(r for r in results if r.status == 429)
        assert refused.headers["Retry-After"] == "1"


async def test_trusted_proxy_forwarded_for_selects_the_bucket(app_node_factory: Callable[..., AppNode]) -> None:
    section = limits(writes={"rate": 0.5, "burst": 1, "per": "ip"})
    trusted = app_node_factory(rate_limits={**section, "trusted_proxies": ["127.0.0.0/8"]})
    untrusted = app_node_factory(rate_limits=section)
    for node, expected in ((trusted, [201, 201, 429]), (untrusted, [201, 429, 429])):
        async with session(node) as http:
            out = []
            for client in ("198.51.100.1", "198.51.100.2", "198.51.100.1"):
                async with http.put(f"/v1/files/{client}-{len(out)}", data=b"x",
                                    headers={"X-Forwarded-For": f"{client}, 127.0.0.9"}) as response:
                    out.append(response.status)
            assert out == expected


async def test_unavailable_redis_fails_open(app_node_factory: Callable[..., AppNode],
                                            request: pytest.FixtureRequest) -> None:
    sections = postgres_redis_sections(request)
    node = app_node_factory(rate_limits=limits(reads={"rate": 0.5, "burst": 1}), **sections)
    async with session(node) as http:
        assert await statuses(http, "GET", "/v1/directories/", 2) == [200, 429]
        # Redis stops answering for 1.5 s: the checks time out (0.5 s) and allow, and never answer 500.
        request.getfixturevalue("redis_server").client().execute_command("CLIENT", "PAUSE", "1500", "ALL")
        assert await statuses(http, "GET", "/v1/directories/", 3) == [200, 200, 200]


async def test_cluster_shares_the_budget(cluster_factory: Callable[..., list[NodeProcess]]) -> None:
    a, b = cluster_factory(2, rate_limits=limits(writes={"rate": 0.2, "burst": 4, "per": "key"}))
    async with session(a) as on_a, session(b) as on_b:
        out = []
        for i in range(6):
            http = on_a if i % 2 == 0 else on_b
            async with http.post(f"/v1/files/shared-{i}/") as response:
                out.append(response.status)
                if response.status == 429:
                    assert response.headers["Retry-After"] in {"4", "5"}
        assert out == [201, 201, 201, 201, 429, 429]
