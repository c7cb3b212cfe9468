"""Directory listings, rename/move of files and subtrees, chmod/chown — end to end on both metadata stores."""

from __future__ import annotations

import base64

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


async def pages(http: aiohttp.ClientSession, url: str) -> list[list[str]]:
    """The item paths of every page of a listing, following ``next`` (body and header agree on it)."""
    result: list[list[str]] = []
    after = ""
    while True:
        async with http.get(url + after) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
            assert response.headers.get("X-CallFS-Next") == body.get("next")
            assert response.headers["X-CallFS-Count"] == str(body["count"]) == str(len(body["items"]))
        result.append([i["path"] for i in body["items"]])
        if "next" not in body:
            return result
        after = f"&after={body['next']}"


async def test_listings_come_in_pages_that_join_into_the_whole(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await make(http, "pg/d1/x.txt", "pg/d2/y.txt", "pg/d2/sub/", "pg/a.txt", "pg/b.txt", "pg/c.txt")
        for recursive in ("false", "true"):
            url = f"/v1/directories/pg?recursive={recursive}"
            async with http.get(url) as response:
                body = await response.json()
            whole = [i["path"] for i in body["items"]]
            assert "next" not in body and "X-CallFS-Next" not in response.headers
            for limit in (1, 2, 4, len(whole), 10):
                got = await pages(http, f"{url}&limit={limit}")
                assert [p for page in got for p in page] == whole, (recursive, limit)
                assert all(len(page) == limit for page in got[:-1])
                assert len(got) == max(1, -(-len(whole) // limit)), (recursive, limit)


async def test_a_page_cursor_survives_entries_removed_before_it(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await make(http, "cur/a.txt", "cur/b.txt", "cur/c.txt", "cur/d.txt")
        async with http.get("/v1/directories/cur?limit=2") as response:
            first = await response.json()
        assert [i["path"] for i in first["items"]] == ["/cur/a.txt", "/cur/b.txt"]
        async with http.delete("/v1/files/cur/b.txt") as response:
            assert response.status == 204
        async with http.get(f"/v1/directories/cur?limit=2&after={first['next']}") as response:
            body = await response.json()
        assert [i["path"] for i in body["items"]] == ["/cur/c.txt", "/cur/d.txt"] and "next" not in body


def cursor_of(tag: str, path: str) -> str:
    """A ``next`` cursor as the node writes one (base64url, no padding), for an entry it may never have listed."""
    return base64.urlsafe_b64encode((tag + path).encode()).decode().rstrip("=")


async def test_bad_page_parameters_are_client_errors(api_node: AppNode) -> None:
    async with session(api_node) as http:
        await make(http, "bp/a.txt", "bp/sub/b.txt", "other/c.txt")
        async with http.get("/v1/directories/bp?limit=1") as response:
            assert (await response.json())["next"] == cursor_of("d", "/bp/sub")
        for bad in ("0", "-1", "10001", "x", "1.5", "\u0661"):
            async with http.get(f"/v1/directories/bp?limit={bad}") as response:
                assert response.status == 400, bad
                assert (await response.json())["code"] == "BAD_REQUEST"
        not_cursors = [
            "!!!",
            "%FF",
            cursor_of("x", "/bp/a.txt"),  # unknown type
            cursor_of("f", ""),
            cursor_of("d", "/bp"),  # the listed directory itself
            cursor_of("f", "/other/c.txt"),  # another directory's entry
            cursor_of("f", "/bp/sub/b.txt"),  # not a child (fine only for a recursive listing)
            cursor_of("f", "/bp//a.txt"),  # not canonical
            cursor_of("f", "/bp/../other/c.txt"),
        ]
        for after in not_cursors:
            async with http.get(f"/v1/directories/bp?limit=1&after={after}") as response:
                assert response.status == 400, after
                assert (await response.json())["code"] == "BAD_REQUEST"
        async with http.get(f"/v1/directories/bp?recursive=true&after={cursor_of('f', '/bp/sub/b.txt')}") as r:
            assert r.status == 200
            assert (await r.json())["items"] == []


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
