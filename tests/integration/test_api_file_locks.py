"""File locks through the API (``/v1/lock-sessions``, ``/v1/file-locks/{path}``) and the client, on SQLite with
in-process locks and on PostgreSQL with Redis; then two nodes sharing one Redis agree on the locks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from callfs.client import CallFSClient
from callfs.errors import BadRequest, LockConflict, LockSessionNotFound, NotFound, PermissionDenied
from support.app_node import AppNode
from support.http import session as http_session
from support.node import new_auth_section, postgres_redis_sections


async def test_sessions_and_posix_locks(api_node: AppNode) -> None:
    async with CallFSClient(api_node.url, api_node.key_for("root")) as client:
        await client.put_file("/locks/f", b"hello")
        one = await client.open_lock_session(ttl=30)
        two = await client.open_lock_session()
        assert one.ttl == 30 and two.ttl == 30.0 and one.id != two.id
        await client.lock_file("/locks/f", session=one.id, owner="p1", type="write", start=0, length=10)
        await client.lock_file("/locks/f", session=two.id, owner="p1", type="write", start=10, length=10)
        with pytest.raises(LockConflict) as caught:
            await client.lock_file("/locks/f", session=two.id, owner="p1", type="read", start=5, length=1)
        conflict = caught.value.extra["conflict"]
        assert (conflict["session"], conflict["owner"], conflict["start"], conflict["length"]) == (one.id, "p1", 0, 10)
        found = await client.test_file_lock("/locks/f", type="read", start=9, length=2, session=two.id, owner="p1")
        assert found is not None and found.session == one.id and found.type == "write"
        assert await client.test_file_lock("/locks/f", type="read", start=9, length=2, session=one.id,
                                           owner="p1") is not None  # [10, 20) is two's
        assert await client.test_file_lock("/locks/f", type="write", start=20, length=0) is None
        # flock locks are independent of the record locks
        await client.lock_file("/locks/f", session=two.id, owner="fd", kind="flock", type="write")
        assert len(await client.file_locks("/locks/f")) == 3
        await client.lock_file("/locks/f", session=one.id, owner="p1", type="unlock", start=0, length=5)
        await client.lock_file("/locks/f", session=two.id, owner="p2", type="read", start=0, length=5)
        await client.close_lock_session(one.id)
        await client.lock_file("/locks/f", session=two.id, owner="p2", type="write", start=0, length=10)
        with pytest.raises(LockSessionNotFound):
            await client.lock_file("/locks/f", session=one.id, owner="p1", type="write", start=100, length=1)
        with pytest.raises(LockSessionNotFound):
            await client.renew_lock_session(one.id)
        with pytest.raises(LockSessionNotFound):
            await client.close_lock_session(one.id)
        await client.renew_lock_session(two.id)


async def test_locks_belong_to_the_inode(api_node: AppNode) -> None:
    async with CallFSClient(api_node.url, api_node.key_for("root")) as client:
        await client.put_file("/hl/a", b"x")
        await client.link("/hl/a", "/hl/b")
        one, two = await client.open_lock_session(), await client.open_lock_session()
        await client.lock_file("/hl/a", session=one.id, owner="o", kind="flock", type="write")
        with pytest.raises(LockConflict):
            await client.lock_file("/hl/b", session=two.id, owner="o", kind="flock", type="read")
        await client.move("/hl/a", "/hl/c")
        with pytest.raises(LockConflict):
            await client.lock_file("/hl/c", session=two.id, owner="o", kind="flock", type="read")


async def test_expired_session_loses_its_locks(api_node: AppNode) -> None:
    async with CallFSClient(api_node.url, api_node.key_for("root")) as client:
        await client.put_file("/exp/f", b"x")
        short = await client.open_lock_session(ttl=1)
        other = await client.open_lock_session()
        await client.lock_file("/exp/f", session=short.id, owner="o", type="write")
        with pytest.raises(LockConflict):
            await client.lock_file("/exp/f", session=other.id, owner="o", type="write")
        started = time.monotonic()
        await client.lock_file("/exp/f", session=other.id, owner="o", type="write", wait=True, wait_timeout=10)
        assert 0.3 < time.monotonic() - started < 5
        with pytest.raises(LockSessionNotFound):
            await client.renew_lock_session(short.id)


async def test_blocking_wait_is_granted_at_release(api_node: AppNode) -> None:
    async with CallFSClient(api_node.url, api_node.key_for("root")) as client:
        await client.put_file("/wait/f", b"x")
        one, two = await client.open_lock_session(), await client.open_lock_session()
        await client.lock_file("/wait/f", session=one.id, owner="o", kind="flock", type="write")
        waiter = asyncio.create_task(client.lock_file("/wait/f", session=two.id, owner="o", kind="flock",
                                                      type="write", wait=True, wait_timeout=10))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        await client.lock_file("/wait/f", session=one.id, owner="o", kind="flock", type="unlock")
        await asyncio.wait_for(waiter, 5)
        with pytest.raises(LockConflict):
            await client.lock_file("/wait/f", session=one.id, owner="o", kind="flock", type="read", wait=True,
                                   wait_timeout=0.2)


async def test_sessions_are_their_users(api_node: AppNode) -> None:
    async with CallFSClient(api_node.url, api_node.key_for("root")) as root, \
            CallFSClient(api_node.url, api_node.key_for("alice")) as alice:
        await root.put_file("/own/f", b"x")
        await root.chmod("/own/f", 0o600)
        mine = await root.open_lock_session()
        with pytest.raises(LockSessionNotFound):
            await alice.renew_lock_session(mine.id)
        hers = await alice.open_lock_session()
        with pytest.raises(PermissionDenied):
            await alice.lock_file("/own/f", session=hers.id, owner="o")
        await root.chmod("/own/f", 0o644)
        with pytest.raises(LockSessionNotFound):
            await alice.lock_file("/own/f", session=mine.id, owner="o")
        await alice.lock_file("/own/f", session=hers.id, owner="o", type="read")
        with pytest.raises(NotFound):
            await alice.lock_file("/own/missing", session=hers.id, owner="o")


async def test_bad_requests(api_node: AppNode) -> None:
    async with CallFSClient(api_node.url, api_node.key_for("root")) as client:
        await client.put_file("/bad/f", b"x")
        good = await client.open_lock_session()
        for fields in ({"type": "grab"}, {"kind": "lockf"}, {"start": -1}, {"length": -5}, {"start": "x"},
                       {"owner": ""}):
            arguments: dict[str, Any] = {"session": good.id, "owner": "o", "type": "write", **fields}
            with pytest.raises(BadRequest):
                await client.lock_file("/bad/f", **arguments)
        for ttl in (0, 0.5, 4000):
            with pytest.raises(BadRequest):
                await client.open_lock_session(ttl=ttl)
    async with http_session(api_node, "root") as http:
        async with http.post("/v1/lock-sessions", json={"ttl": "long"}) as response:
            assert response.status == 400
        async with http.post("/v1/file-locks/bad/f", json={"owner": "o", "type": "write"}) as response:
            assert response.status == 400
        async with http.post("/v1/file-locks/bad/f", json={"owner": "o", "type": "write",
                                                           "session": "0" * 32}) as response:
            assert response.status == 404
            assert (await response.json())["code"] == "LOCK_SESSION_NOT_FOUND"
        async with http.get("/v1/file-locks/bad/f?type=write") as response:
            assert response.status == 200
            assert (await response.json())["conflict"] is None
        async with http.post("/v1/lock-sessions") as response:  # no body at all
            assert response.status == 201


async def test_two_nodes_share_one_lock_table(request: pytest.FixtureRequest,
                                              app_node_factory: Callable[..., AppNode]) -> None:
    shared: dict[str, Any] = {"auth": new_auth_section(), **postgres_redis_sections(request)}
    first = app_node_factory(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in shared.items()})
    second = app_node_factory(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in shared.items()})
    async with CallFSClient(first.url, first.key_for("root")) as a, \
            CallFSClient(second.url, second.key_for("root")) as b:
        await a.put_file("/two/f", b"x" * 100)
        on_a, on_b = await a.open_lock_session(), await b.open_lock_session()
        await a.lock_file("/two/f", session=on_a.id, owner="o", start=0, length=50)
        with pytest.raises(LockConflict):
            await b.lock_file("/two/f", session=on_b.id, owner="o", start=49, length=1)
        await b.lock_file("/two/f", session=on_b.id, owner="o", start=50, length=50)
        found = await b.test_file_lock("/two/f", type="read", start=0, length=0, session=on_b.id, owner="o")
        assert found is not None and found.session == on_a.id
        await b.renew_lock_session(on_a.id)  # sessions are cluster-wide too
        await b.close_lock_session(on_a.id)
        await b.lock_file("/two/f", session=on_b.id, owner="o", start=0, length=0)
        assert [(lock.start, lock.length) for lock in await a.file_locks("/two/f")] == [(0, 0)]


async def test_a_key_confined_to_a_volume_locks_inside_it(api_node: AppNode) -> None:
    scoped_key = "volume-key-" + "k" * 24
    async with CallFSClient(api_node.url, api_node.key_for("root")) as root:
        await root.put_file("/volumes/v/f", b"x")
        await root.put_file("/elsewhere/f", b"x")
        await root.chown("/volumes/v", "pv-v")
        await root.chown("/volumes/v/f", "pv-v")
        await root.register_key("pv-v", scoped_key, "/volumes/v")
    async with CallFSClient(api_node.url, scoped_key) as scoped:
        session = await scoped.open_lock_session()
        await scoped.lock_file("/volumes/v/f", session=session.id, owner="o", kind="flock")
        with pytest.raises(PermissionDenied):
            await scoped.lock_file("/elsewhere/f", session=session.id, owner="o", kind="flock")
        await scoped.renew_lock_session(session.id)
        await scoped.close_lock_session(session.id)
