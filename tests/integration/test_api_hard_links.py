"""Hard links through the REST API, on SQLite and PostgreSQL + Redis (docs/rest-api.md, "Hard links"): a
second name of a file made with ``POST`` and ``X-CallFS-Link-To``; both names are one inode whichever name a
change goes through, counted by ``nlink``; the content lives until the last name goes; quotas charge it once."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from support.app_node import AppNode
from support.http import session


async def _json(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        body = await response.read()
        return response.status, await response.json(content_type=None) if body else None


def _to(source: str) -> dict[str, str]:
    return {"X-CallFS-Link-To": source}


async def _get(http: aiohttp.ClientSession, path: str) -> tuple[int, bytes]:
    async with http.get(path) as response:
        return response.status, await response.read()


async def _usage(http: aiohttp.ClientSession, path: str) -> tuple[int, int]:
    status, body = await _json(http, "GET", f"/v1/quotas/{path}")
    assert status == 200, body
    return body["bytes_used"], body["inodes_used"]


async def test_two_names_are_one_inode_until_the_last_goes(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        assert (await _json(alice, "PUT", "/v1/files/a/one.txt", data=b"first"))[0] == 201
        assert (await _json(alice, "POST", "/v1/files/b/"))[0] == 201
        status, made = await _json(alice, "POST", "/v1/files/b/two.txt", headers=_to("/a/one.txt"))
        assert status == 201, made
        assert (made["type"], made["size"], made["nlink"]) == ("file", 5, 2)
        async with alice.head("/v1/files/a/one.txt") as response:
            assert response.headers["X-CallFS-Nlink"] == "2"
            first_etag = response.headers["ETag"]
        # A whole write, a partial write and a chmod through one name show through the other.
        assert (await _json(alice, "PUT", "/v1/files/b/two.txt", data=b"second!"))[0] == 200
        assert await _get(alice, "/v1/files/a/one.txt") == (200, b"second!")
        status, body = await _json(alice, "PUT", "/v1/files/a/one.txt", data=b"X",
                                   headers={"Content-Range": "bytes 0-0/*"})
        assert status == 200, body
        assert await _get(alice, "/v1/files/b/two.txt") == (200, b"Xecond!")
        assert (await _json(alice, "PATCH", "/v1/files/b/two.txt", json={"mode": "0600"}))[0] == 200
        async with alice.head("/v1/files/a/one.txt") as one, alice.head("/v1/files/b/two.txt") as two:
            for header in ("X-CallFS-Mode", "ETag", "X-CallFS-Size", "X-CallFS-CTime", "X-CallFS-Nlink",
                           "X-CallFS-Ino"):
                assert one.headers[header] == two.headers[header], header
            assert one.headers["X-CallFS-Mode"] == "0600" and one.headers["ETag"] != first_etag
        # A rename keeps the link; a rename onto another name of the same inode does nothing (POSIX).
        assert (await _json(alice, "PATCH", "/v1/files/b/two.txt", json={"name": "2.txt"}))[0] == 200
        status, moved = await _json(alice, "PATCH", "/v1/files/b/2.txt",
                                    json={"destination": "/a/one.txt", "overwrite": True})
        assert status == 200, moved
        assert await _get(alice, "/v1/files/b/2.txt") == (200, b"Xecond!")
        _, listing = await _json(alice, "GET", "/v1/directories/b")
        assert [i["ino"] for i in listing["items"]] == [made["ino"]]  # the inode number survives renames
        # Deleting one name keeps the content under the other, with one link fewer.
        assert (await _json(alice, "DELETE", "/v1/files/a/one.txt"))[0] == 204
        async with alice.head("/v1/files/b/2.txt") as response:
            assert response.headers["X-CallFS-Nlink"] == "1"
        assert await _get(alice, "/v1/files/b/2.txt") == (200, b"Xecond!")
        status, listing = await _json(alice, "GET", "/v1/directories/b")
        assert [(i["name"], i["nlink"]) for i in listing["items"]] == [("2.txt", 1)]
        # The last name goes: so does the content (a new file at the old names starts empty of it).
        assert (await _json(alice, "DELETE", "/v1/files/b/2.txt"))[0] == 204
        assert (await _get(alice, "/v1/files/b/2.txt"))[0] == 404


async def test_replacing_a_name_by_rename_or_recursive_delete_keeps_the_other(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "PUT", "/v1/files/keep/data", data=b"kept bytes")
        await _json(alice, "POST", "/v1/files/gone/")
        assert (await _json(alice, "POST", "/v1/files/gone/alias", headers=_to("/keep/data")))[0] == 201
        assert (await _json(alice, "POST", "/v1/files/keep/alias2", headers=_to("/keep/data")))[0] == 201
        await _json(alice, "PUT", "/v1/files/other", data=b"other")
        status, body = await _json(alice, "PATCH", "/v1/files/other",
                                   json={"destination": "/keep/alias2", "overwrite": True})
        assert status == 200, body
        assert (await _json(alice, "DELETE", "/v1/files/gone?recursive=true"))[0] == 204
        assert await _get(alice, "/v1/files/keep/data") == (200, b"kept bytes")
        assert await _get(alice, "/v1/files/keep/alias2") == (200, b"other")
        async with alice.head("/v1/files/keep/data") as response:
            assert response.headers["X-CallFS-Nlink"] == "1"


async def test_a_linked_file_is_charged_once_and_stays_under_its_quota_roots(api_node: AppNode) -> None:
    async with session(api_node, "root") as root:
        await _json(root, "PUT", "/v1/files/vol/data", data=b"0123456789")
        await _json(root, "POST", "/v1/files/vol/sub/")
        await _json(root, "POST", "/v1/files/elsewhere/")
        assert (await _json(root, "PUT", "/v1/quotas/vol", json={"bytes_limit": 1000}))[0] == 201
        assert await _usage(root, "vol") == (10, 2)
        assert (await _json(root, "POST", "/v1/files/vol/sub/alias", headers=_to("/vol/data")))[0] == 201
        assert await _usage(root, "vol") == (10, 2)
        await _json(root, "PUT", "/v1/files/vol/sub/alias", data=b"0123456789abcdef")
        assert await _usage(root, "vol") == (16, 2)
        # Names across quota roots: refused, whether linked or moved there.
        status, body = await _json(root, "POST", "/v1/files/elsewhere/alias", headers=_to("/vol/data"))
        assert (status, body["code"]) == (409, "CROSSES_QUOTA_ROOT")
        status, body = await _json(root, "PATCH", "/v1/files/vol/sub/alias", json={"destination": "/elsewhere/x"})
        assert (status, body["code"]) == (409, "CROSSES_QUOTA_ROOT")
        status, body = await _json(root, "PATCH", "/v1/files/vol/sub", json={"destination": "/elsewhere/sub"})
        assert (status, body["code"]) == (409, "CROSSES_QUOTA_ROOT")
        # Usage recomputed from the tree (a quota set again) counts the inode once too.
        assert (await _json(root, "DELETE", "/v1/quotas/vol"))[0] == 204
        assert (await _json(root, "PUT", "/v1/quotas/vol", json={"bytes_limit": 1000}))[0] == 201
        assert await _usage(root, "vol") == (16, 2)
        assert (await _json(root, "DELETE", "/v1/files/vol/data"))[0] == 204
        assert await _usage(root, "vol") == (16, 2)
        assert (await _json(root, "DELETE", "/v1/files/vol/sub/alias"))[0] == 204
        assert await _usage(root, "vol") == (0, 1)


async def test_a_copy_of_a_linked_file_is_a_new_inode(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "PUT", "/v1/files/src", data=b"abc")
        await _json(alice, "POST", "/v1/files/src2", headers=_to("/src"))
        status, body = await _json(alice, "POST", "/v1/copies", json={"source": "/src", "destination": "/copy"})
        assert status == 201, body
        async with alice.head("/v1/files/copy") as response:
            assert response.headers["X-CallFS-Nlink"] == "1"
        await _json(alice, "PUT", "/v1/files/copy", data=b"changed")
        assert await _get(alice, "/v1/files/src2") == (200, b"abc")


@pytest.mark.parametrize(("path", "headers", "code"), [
    ("/v1/files/new", _to("/missing"), (404, "FILE_NOT_FOUND")),
    ("/v1/files/new", _to("/dir"), (400, "IS_A_DIRECTORY")),
    ("/v1/files/file2", _to("/file"), (409, "FILE_ALREADY_EXISTS")),
    ("/v1/files/nodir/new", _to("/file"), (404, "FILE_NOT_FOUND")),
    ("/v1/files/new", _to("relative"), (400, "BAD_REQUEST")),
    ("/v1/files/new", _to("/%FF"), (400, "BAD_REQUEST")),
    ("/v1/files/new/", _to("/file"), (400, "BAD_REQUEST")),
    ("/v1/files/new", {**_to("/file"), "X-CallFS-Target": "file"}, (400, "BAD_REQUEST")),
])
async def test_bad_hard_links(api_node: AppNode, path: str, headers: dict[str, str], code: tuple[int, str]) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "POST", "/v1/files/dir/")
        await _json(alice, "PUT", "/v1/files/file", data=b"1")
        await _json(alice, "PUT", "/v1/files/file2", data=b"2")
        status, body = await _json(alice, "POST", path, headers=headers)
        assert (status, body["code"]) == code, body


async def test_linking_another_users_file_needs_read_and_write_on_it(api_node: AppNode) -> None:
    async with session(api_node, "root") as root, session(api_node, "alice") as alice:
        await _json(root, "POST", "/v1/files/common/")
        await _json(root, "PATCH", "/v1/files/common", json={"mode": "0777"})
        await _json(root, "PUT", "/v1/files/common/roots", data=b"r")
        status, body = await _json(alice, "POST", "/v1/files/common/mine", headers=_to("/common/roots"))
        assert (status, body["code"]) == (403, "PERMISSION_DENIED")
        await _json(root, "PATCH", "/v1/files/common/roots", json={"mode": "0666"})
        assert (await _json(alice, "POST", "/v1/files/common/mine", headers=_to("/common/roots")))[0] == 201


async def test_a_directory_counts_its_name_its_dot_and_each_subdirectory(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        for path in ("/v1/files/top/", "/v1/files/top/one/", "/v1/files/top/two/", "/v1/files/top/two/deep/"):
            assert (await _json(alice, "POST", path))[0] == 201
        await _json(alice, "PUT", "/v1/files/top/file", data=b"not a directory")

        async def links(path: str) -> str:
            async with alice.head(f"/v1/files/{path}") as response:
                return response.headers["X-CallFS-Nlink"]

        assert [await links(p) for p in ("top", "top/one", "top/two", "top/file")] == ["4", "2", "3", "1"]
        _, listing = await _json(alice, "GET", "/v1/directories/top")
        assert {i["name"]: i["nlink"] for i in listing["items"]} == {"one": 2, "two": 3, "file": 1}
        _, tree = await _json(alice, "GET", "/v1/directories/top?recursive=true")
        assert {i["path"]: i["nlink"] for i in tree["items"] if i["type"] == "directory"} == {
            "/top/one": 2, "/top/two": 3, "/top/two/deep": 2}
        # A subdirectory moved in counts for its new parent and no more for its old one (rename(2)).
        await _json(alice, "PATCH", "/v1/files/top/two/deep", json={"destination": "/top/one/deep"})
        assert [await links(p) for p in ("top", "top/one", "top/two")] == ["4", "3", "2"]
        await _json(alice, "DELETE", "/v1/files/top/one?recursive=true")
        assert await links("top") == "3"
