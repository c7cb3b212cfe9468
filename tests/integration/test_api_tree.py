"""Directory listings, rename/move of files and subtrees, chmod/chown — end to end on both metadata stores."""

from __future__ import annotations

import aiohttp

from support.app_node import AppNode
from support.http import session


async def make(http: aiohttp.ClientSession, *paths: str) -> None:
    for path in paths:
        method = http.post if path.endswith("/") else http.put
        async with method(f"/v1/files/{path}", data=None if path.endswith("/") else path.encode()) as response:
            assert response.status in (200, 201), await response.text()


async def test_recursive_listing_with_max_depth(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await make(http, "tree/a/b/c/deep.txt", "tree/top.txt", "tree-sibling.txt")
        async with http.get("/v1/directories/tree") as response:
            body = await response.json()
            assert response.headers["X-CallFS-Count"] == "2"
            assert response.headers["X-CallFS-Recursive"] == "false"
        assert body["path"] == "/tree" and body["type"] == "directory" and body["recursive"] is False
        assert "max_depth" not in body
        assert [i["path"] for i in body["items"]] == ["/tree/a", "/tree/top.txt"]
        async with http.get("/v1/directories/tree?recursive=true") as response:
            body = await response.json()
        assert body["max_depth"] == 100 and body["count"] == 5
        assert {i["path"] for i in body["items"]} == {
            "/tree/a", "/tree/top.txt", "/tree/a/b", "/tree/a/b/c", "/tree/a/b/c/deep.txt"}
        async with http.get("/v1/directories/tree?recursive=true&max_depth=1") as response:
            body = await response.json()
        assert {i["path"] for i in body["items"]} == {"/tree/a", "/tree/top.txt", "/tree/a/b"}
        async with http.get("/v1/directories/tree?recursive=true&max_depth=0") as response:
            assert (await response.json())["count"] == 2


async def test_listing_errors(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await make(http, "lf.txt")
        async with http.get("/v1/directories/lf.txt") as response:
            assert response.status == 400
            assert (await response.json())["code"] == "NOT_A_DIRECTORY"
        async with http.get("/v1/directories/nope") as response:
            assert response.status == 404
        for bad in ("-1", "1001", "abc"):
            async with http.get(f"/v1/directories/?recursive=true&max_depth={bad}") as response:
                assert response.status == 400
        async with http.get("/v1/directories/?recursive=maybe") as response:
            assert response.status == 400
        async with http.get("/v1/directories/") as response:
            assert response.status == 200
            assert (await response.json())["path"] == "/"


async def test_rename_in_place(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await make(http, "ren/old.txt")
        async with http.patch("/v1/files/ren/old.txt", json={"name": "new.txt"}) as response:
            assert response.status == 200
            assert (await response.json())["path"] == "/ren/new.txt"
        async with http.get("/v1/files/ren/new.txt") as response:
            assert await response.read() == b"ren/old.txt"
        async with http.get("/v1/files/ren/old.txt") as response:
            assert response.status == 404
        async with http.patch("/v1/files/ren/new.txt", json={"name": "a/b"}) as response:
            assert response.status == 400


async def test_move_subtree_rekeys_every_descendant(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await make(http, "src/one/1.txt", "src/one/two/2.txt", "src2/keep.txt")
        async with http.patch("/v1/files/src", json={"destination": "/dst/moved", "create_parents": True}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["path"] == "/dst/moved"
        async with http.get("/v1/files/dst/moved/one/two/2.txt") as response:
            assert await response.read() == b"src/one/two/2.txt"
        async with http.get("/v1/directories/dst?recursive=true") as response:
            paths = [i["path"] for i in (await response.json())["items"]]
        assert set(paths) == {"/dst/moved", "/dst/moved/one", "/dst/moved/one/1.txt", "/dst/moved/one/two",
                              "/dst/moved/one/two/2.txt"}
        async with http.get("/v1/files/src2/keep.txt") as response:
            assert response.status == 200
        async with http.get("/v1/files/src/one/1.txt") as response:
            assert response.status == 404


async def test_move_rules(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await make(http, "m/a.txt", "m/b.txt", "m/dir/inner.txt", "m/empty/")
        cases = [
            ({"name": "x", "destination": "/y"}, 400),
            ({}, 400),
            ({"destination": "/m/dir/inside"}, 400),  # into itself (source is /m)
            ({"destination": "relative"}, 400),
            ({"nonsense": 1}, 400),
            ({"destination": "/m2", "overwrite": "yes"}, 400),
        ]
        for body, status in cases:
            async with http.patch("/v1/files/m", json=body) as response:
                assert response.status == status, (body, await response.text())
        async with http.patch("/v1/files/missing", json={"name": "z"}) as response:
            assert response.status == 404
        async with http.patch("/v1/files/m/a.txt", json={"destination": "/m/b.txt"}) as response:
            assert response.status == 409
            assert (await response.json())["code"] == "FILE_ALREADY_EXISTS"
        async with http.patch("/v1/files/m/a.txt", json={"destination": "/m/b.txt", "overwrite": True}) as r:
            assert r.status == 200
        async with http.get("/v1/files/m/b.txt") as response:
            assert await response.read() == b"m/a.txt"
        async with http.patch("/v1/files/m/b.txt", json={"destination": "/m/dir", "overwrite": True}) as r:
            assert r.status == 400
        async with http.patch("/v1/files/m/dir", json={"destination": "/m/empty", "overwrite": True}) as r:
            assert r.status == 200
        async with http.patch("/v1/files/m/b.txt", json={"destination": "/nowhere/b.txt"}) as r:
            assert r.status == 404
        async with http.patch("/v1/files/", json={"destination": "/root2"}) as response:
            assert response.status == 400
        async with http.patch("/v1/files/m", data=b"{not json") as response:
            assert response.status == 400
            assert (await response.json())["code"] == "BAD_REQUEST"
        async with http.patch("/v1/files/m", json=["list"]) as response:
            assert response.status == 400


async def test_chmod_and_chown(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob:
        await make(alice, "alice/private.txt")
        async with bob.patch("/v1/files/alice/private.txt", json={"mode": "0600"}) as response:
            assert response.status == 403
            assert (await response.json())["code"] == "PERMISSION_DENIED"
        async with alice.patch("/v1/files/alice/private.txt", json={"mode": "0600"}) as response:
            assert response.status == 200
            assert (await response.json())["mode"] == "0600"
        async with alice.head("/v1/files/alice/private.txt") as response:
            assert response.headers["X-CallFS-Mode"] == "0600"
        for bad in ("rwx", "99", "12345", "0800"):
            async with alice.patch("/v1/files/alice/private.txt", json={"mode": bad}) as response:
                assert response.status == 400
        async with alice.patch("/v1/files/alice/private.txt", json={"owner": "bob"}) as response:
            assert response.status == 403  # only root gives a file away
        async with session(api_node, "root") as root, root.patch(
            "/v1/files/alice/private.txt", json={"owner": "bob"}
        ) as response:
            assert response.status == 200
        async with bob.get("/v1/files/alice/private.txt") as response:
            assert response.status == 200
