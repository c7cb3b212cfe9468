"""Run-time API keys confined to a path (``/v1/keys``) on both metadata stores: registration rules, confinement
of every path-bearing route, revocation, quotas, and copies given to another owner."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from callfs.access_keys import key_hash
from callfs.models import AccessKey, utcnow
from support.app_node import AppNode
from support.http import session


async def status_of(response_cm) -> int:  # type: ignore[no-untyped-def]
    async with response_cm as response:
        await response.read()
        return int(response.status)


@asynccontextmanager
async def keyed(node: AppNode, key: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(node.url, headers={"Authorization": f"Bearer {key}"}) as http:
        yield http


async def make_volumes(node: AppNode) -> str:
    """``/volumes/a`` (owned by ``pv-a``, 1000-byte quota) and ``/volumes/b`` with a file; a key for ``pv-a``."""
    key = secrets.token_urlsafe(32)
    async with session(node, "root") as http:
        for name in ("a", "b"):
            assert await status_of(http.post(f"/v1/files/volumes/{name}/")) == 201
            assert await status_of(http.put(f"/v1/quotas/volumes/{name}", json={"bytes_limit": 1000})) == 201
        assert await status_of(http.patch("/v1/files/volumes/a", json={"owner": "pv-a", "group": "pv-a"})) == 200
        assert await status_of(http.put("/v1/files/volumes/b/secret", data=b"b's data")) == 201
        async with http.post("/v1/keys", json={"user": "pv-a", "key": key, "scope": "/volumes/a"}) as response:
            assert response.status == 201, await response.text()
            body = await response.json()
    assert body["user"] == "pv-a" and body["scope"] == "/volumes/a" and "key" not in body
    return key


async def test_scoped_key_works_inside_its_scope(api_node: AppNode) -> None:
    key = await make_volumes(api_node)
    async with keyed(api_node, key) as http:
        assert await status_of(http.put("/v1/files/volumes/a/dir/file", data=b"hello")) == 201
        async with http.get("/v1/files/volumes/a/dir/file") as response:
            assert response.status == 200 and await response.read() == b"hello"
        async with http.get("/v1/directories/volumes/a") as response:
            assert response.status == 200
            assert [i["name"] for i in (await response.json())["items"]] == ["dir"]
        async with http.get("/v1/quotas/volumes/a") as response:
            assert response.status == 200 and (await response.json())["bytes_used"] == 5
        assert await status_of(http.patch("/v1/files/volumes/a/dir/file", json={"destination": "/volumes/a/f2"})) \
            == 200
        assert await status_of(http.post("/v1/copies", json={"source": "/volumes/a/f2",
                                                             "destination": "/volumes/a/f3"})) == 201


async def test_scoped_key_is_403_on_another_volume_and_on_the_root(api_node: AppNode) -> None:
    key = await make_volumes(api_node)
    async with keyed(api_node, key) as http:
        refused = [
            http.get("/v1/directories/"),
            http.get("/v1/directories/volumes"),
            http.get("/v1/directories/volumes/b"),
            http.get("/v1/directories/volumes/.csi"),
            http.get("/v1/files/volumes/b/secret"),
            http.head("/v1/files/volumes/b/secret"),
            http.get("/v1/files/volumes/ab"),  # a sibling whose name starts like the scope
            http.put("/v1/files/stray", data=b"x"),
            http.post("/v1/files/volumes/c/"),
            http.delete("/v1/files/volumes/b/secret"),
            http.put("/v1/files/volumes/b/secret", data=b"overwritten"),
            http.get("/v1/quotas/volumes/b"),
            http.patch("/v1/files/volumes/b/secret", json={"destination": "/volumes/a/stolen"}),
            http.post("/v1/copies", json={"source": "/volumes/b/secret", "destination": "/volumes/a/stolen"}),
            http.post("/v1/links/generate", json={"path": "/volumes/b/secret", "expiry_seconds": 60}),
            http.get("/v1/cluster/nodes"),
            http.get("/metrics"),
        ]
        for call in refused:
            assert await status_of(call) == 403
        assert await status_of(http.put("/v1/files/volumes/a/f", data=b"x")) == 201
        assert await status_of(http.patch("/v1/files/volumes/a/f", json={"destination": "/escaped"})) == 403
        assert await status_of(http.post("/v1/copies", json={"source": "/volumes/a/f",
                                                             "destination": "/volumes/b/f"})) == 403
    async with session(api_node, "root") as http:
        async with http.get("/v1/files/volumes/b/secret") as response:
            assert await response.read() == b"b's data"
        assert await status_of(http.get("/v1/files/escaped")) == 404
        assert await status_of(http.get("/v1/files/stray")) == 404


async def test_scoped_key_is_held_to_the_quota_and_cannot_drop_it(api_node: AppNode) -> None:
    key = await make_volumes(api_node)
    async with keyed(api_node, key) as http:
        assert await status_of(http.put("/v1/files/volumes/a/big", data=b"x" * 1001)) == 507
        assert await status_of(http.delete("/v1/quotas/volumes/a")) == 403
        assert await status_of(http.put("/v1/quotas/volumes/a", json={"bytes_limit": 10**9})) == 403
        assert await status_of(http.delete("/v1/files/volumes/a?recursive=true")) == 403


async def test_revoked_key_is_401_at_once(api_node: AppNode) -> None:
    key = await make_volumes(api_node)
    async with keyed(api_node, key) as http:
        assert await status_of(http.get("/v1/directories/volumes/a")) == 200
    async with session(api_node, "root") as http:
        async with http.delete("/v1/keys/pv-a") as response:
            assert response.status == 200
            assert await response.json() == {"user": "pv-a", "revoked": 1}
        async with http.delete("/v1/keys/pv-a") as response:
            assert (await response.json())["revoked"] == 0
    async with keyed(api_node, key) as http:
        assert await status_of(http.get("/v1/directories/volumes/a")) == 401


async def test_registration_is_idempotent_and_refuses_reuse(api_node: AppNode) -> None:
    key = await make_volumes(api_node)
    async with session(api_node, "root") as http:
        same = {"user": "pv-a", "key": key, "scope": "/volumes/a/"}
        assert await status_of(http.post("/v1/keys", json=same)) == 200
        assert await status_of(http.post("/v1/keys", json={**same, "user": "pv-b"})) == 409
        assert await status_of(http.post("/v1/keys", json={**same, "scope": "/volumes/b"})) == 409
        for taken in (api_node.key_for("root"), api_node.key_for("alice"), api_node.internal_secret):
            assert await status_of(http.post("/v1/keys", json={**same, "key": taken})) == 409


async def test_registration_refuses_bad_input_and_non_root(api_node: AppNode) -> None:
    good = {"user": "pv-x", "key": secrets.token_urlsafe(32), "scope": "/volumes/x"}
    async with session(api_node, "root") as http:
        for bad in ({**good, "user": "root"}, {**good, "user": "internal-proxy"}, {**good, "user": "bad name"},
                    {**good, "key": "short"}, {**good, "key": "has a space in it somewhere"},
                    {**good, "scope": "/../x"}, {**good, "scope": 3}, {"user": "pv-x", "key": good["key"]}):
            assert await status_of(http.post("/v1/keys", json=bad)) == 400
        assert await status_of(http.delete("/v1/keys/bad%20name")) == 400
    async with session(api_node, "alice") as http:
        assert await status_of(http.post("/v1/keys", json=good)) == 403
        assert await status_of(http.delete("/v1/keys/pv-x")) == 403


async def test_a_key_scoped_as_root_user_name_never_gets_superuser_powers(api_node: AppNode) -> None:
    """Even registered directly in the store with a superuser's name, a scoped key is no superuser."""
    key = secrets.token_urlsafe(32)
    async with session(api_node, "root") as http:
        assert await status_of(http.post("/v1/files/volumes/r/")) == 201
        assert await status_of(http.put("/v1/files/volumes/r/alices", data=b"x")) == 201
        assert await status_of(http.patch("/v1/files/volumes/r/alices", json={"mode": "0600", "owner": "alice"})) \
            == 200
    api_node.run(lambda node: node.store.put_access_key(AccessKey(key_hash(key), "root", "/volumes/r", utcnow())))
    async with keyed(api_node, key) as http:
        assert await status_of(http.get("/v1/files/volumes/r/alices")) == 403  # root would read it
        assert await status_of(http.get("/v1/directories/")) == 403


async def test_root_gives_a_copy_to_another_owner(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        assert await status_of(http.put("/v1/files/src/d/f", data=b"data")) == 201
        assert await status_of(http.post("/v1/files/dst/")) == 201
        assert await status_of(http.post("/v1/copies", json={"source": "/src", "destination": "/dst",
                                                             "recursive": True, "into": True,
                                                             "owner": "pv-new"})) == 201
        for path in ("dst/d", "dst/d/f"):
            async with http.head(f"/v1/files/{path}") as response:
                assert response.headers["X-CallFS-Owner"] == "pv-new", path
                assert response.headers["X-CallFS-Group"] == "pv-new", path
        assert await status_of(http.post("/v1/copies", json={"source": "/src", "destination": "/x",
                                                             "recursive": True, "owner": "bad name"})) == 400
    async with session(api_node, "alice") as http:
        assert await status_of(http.put("/v1/files/mine", data=b"m")) == 201
        assert await status_of(http.post("/v1/copies", json={"source": "/mine", "destination": "/theirs",
                                                             "owner": "bob"})) == 403
