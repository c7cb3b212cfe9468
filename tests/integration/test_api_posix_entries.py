"""POSIX entries through the REST API, on SQLite and PostgreSQL + Redis: symbolic links (docs/rest-api.md,
"Symbolic links": created with ``POST`` and ``X-CallFS-Target``, never followed, left out by the S3 face,
docs/s3.md), special files ("Special files": FIFOs, sockets, device nodes as entries only) and the atomic exchange
of two entries (``PATCH`` with ``exchange``, Linux ``renameat2(RENAME_EXCHANGE)``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from support.app_node import AppNode
from support.http import session
from support.node import postgres_redis_sections
from support.s3_face import client


async def _json(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        body = await response.read()
        return response.status, await response.json(content_type=None) if body else None


def _link(target: str) -> dict[str, str]:
    return {"X-CallFS-Target": target}


async def test_a_link_is_created_read_and_never_followed(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        assert (await _json(alice, "POST", "/v1/files/home/", ))[0] == 201
        assert (await _json(alice, "PUT", "/v1/files/home/notes.txt", data=b"secret words"))[0] == 201
        status, made = await _json(alice, "POST", "/v1/files/home/latest", headers=_link("notes%20%C3%BC.txt"))
        assert status == 201, made
        assert (made["type"], made["target"], made["mode"], made["size"]) == ("symlink", "notes ü.txt", "0777", 0)
        async with alice.head("/v1/files/home/latest") as response:
            assert response.headers["X-CallFS-Type"] == "symlink"
            assert response.headers["X-CallFS-Target"] == "notes%20%C3%BC.txt"
            assert "ETag" not in response.headers
        status, got = await _json(alice, "GET", "/v1/files/home/latest")  # the link, not the file's bytes
        assert (status, got["type"], got["target"]) == (200, "symlink", "notes ü.txt")
        status, listing = await _json(alice, "GET", "/v1/directories/home")
        assert [(i["name"], i["type"], i.get("target")) for i in listing["items"]] == [
            ("notes.txt", "file", None), ("latest", "symlink", "notes ü.txt")]
        # Writes to the link are refused (the server does not follow it); rename and delete act on the link.
        status, body = await _json(alice, "PUT", "/v1/files/home/latest", data=b"x")
        assert (status, body["code"]) == (400, "BAD_REQUEST")
        status, body = await _json(alice, "PATCH", "/v1/files/home/latest", json={"size": 0})
        assert (status, body["code"]) == (400, "BAD_REQUEST")
        assert (await _json(alice, "PATCH", "/v1/files/home/latest", json={"name": "newest"}))[0] == 200
        assert (await _json(alice, "DELETE", "/v1/files/home/newest"))[0] == 204
        async with alice.get("/v1/files/home/notes.txt") as response:
            assert await response.read() == b"secret words"


async def test_dangling_and_absolute_targets_are_stored_as_given(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        for name, target in (("dangling", "nowhere/../at//all"), ("absolute", "/etc/passwd")):
            status, made = await _json(alice, "POST", f"/v1/files/{name}", headers=_link(target))
            assert (status, made["target"]) == (201, target)


async def test_paged_listing_passes_over_links(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "POST", "/v1/files/p/d/")
        await _json(alice, "PUT", "/v1/files/p/f", data=b"f")
        await _json(alice, "POST", "/v1/files/p/l1", headers=_link("f"))
        await _json(alice, "POST", "/v1/files/p/l2", headers=_link("d"))
        names: list[str] = []
        query = "?limit=1"
        while True:
            status, page = await _json(alice, "GET", "/v1/directories/p" + query)
            assert status == 200, page
            names += [item["name"] for item in page["items"]]
            if "next" not in page:
                break
            query = f"?limit=1&after={page['next']}"
        assert names == ["d", "f", "l1", "l2"]  # directories, files, then links, each by name


@pytest.mark.parametrize(("path", "headers", "data", "code"), [
    ("/v1/files/x", {"X-CallFS-Target": ""}, None, 400),
    ("/v1/files/x", {"X-CallFS-Target": "a" * 4096}, None, 400),
    ("/v1/files/x", {"X-CallFS-Target": "a%0Ab"}, None, 400),
    ("/v1/files/x", {"X-CallFS-Target": "%FF"}, None, 400),
    ("/v1/files/x", {"X-CallFS-Target": "t"}, b"body", 400),
    ("/v1/files/x/", {"X-CallFS-Target": "t"}, None, 400),
    ("/v1/files/missing/x", {"X-CallFS-Target": "t"}, None, 404),
    ("/v1/files/taken", {"X-CallFS-Target": "t"}, None, 409),
    ("/v1/files/locked/x", {"X-CallFS-Target": "t"}, None, 403),
])
async def test_bad_link_requests(api_node: AppNode, path: str, headers: dict[str, str], data: bytes | None,
                                 code: int) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "root") as root:
        await _json(alice, "PUT", "/v1/files/taken", data=b"t")
        await _json(root, "POST", "/v1/files/locked/")
        status, body = await _json(alice, "POST", path, headers=headers, data=data)
        assert status == code, body


async def test_the_s3_face_leaves_links_out(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="a.txt", Body=b"a")
    async with session(s3_node, "alice") as alice:
        status, _ = await _json(alice, "POST", "/v1/files/media/link", headers=_link("a.txt"))
        assert status == 201
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="media")["Contents"]] == ["a.txt"]
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket="media", Key="link")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    s3.delete_object(Bucket="media", Key="link")  # not an object: nothing deleted
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="media", Key="link", Body=b"x")  # the server does not follow the link
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    async with session(s3_node, "alice") as alice:
        assert (await _json(alice, "GET", "/v1/files/media/link"))[0] == 200


async def test_a_copied_tree_keeps_its_links(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "PUT", "/v1/files/src/f", data=b"f")
        await _json(alice, "POST", "/v1/files/src/l", headers=_link("f"))
        copy = {"source": "/src", "destination": "/dst", "recursive": True}
        status, body = await _json(alice, "POST", "/v1/copies", json=copy)
        assert status == 201, body
        status, copied = await _json(alice, "GET", "/v1/files/dst/l")
        assert (status, copied["type"], copied["target"]) == (200, "symlink", "f")
        status, body = await _json(alice, "POST", "/v1/copies", json={"source": "/src/l", "destination": "/l2"})
        assert status == 201, body
        status, copied = await _json(alice, "GET", "/v1/files/l2")
        assert (status, copied["type"], copied["target"]) == (200, "symlink", "f")


# ---- special files (FIFOs, sockets, device nodes): entries only

async def test_special_files_are_entries_without_bytes(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        status, made = await _json(alice, "POST", "/v1/files/dev0", headers={"X-CallFS-Special": "char",
                                                                             "X-CallFS-Rdev": "259"})
        assert status == 201, made
        assert (made["type"], made["special"], made["rdev"], made["size"]) == ("special", "char", 259, 0)
        status, made = await _json(alice, "POST", "/v1/files/pipe", headers={"X-CallFS-Special": "fifo"})
        assert (status, made["special"], made["rdev"]) == (201, "fifo", 0)
        async with alice.head("/v1/files/dev0") as response:
            assert (response.headers["X-CallFS-Special"], response.headers["X-CallFS-Rdev"]) == ("char", "259")
        status, got = await _json(alice, "GET", "/v1/files/pipe")
        assert (status, got["type"], got["special"]) == (200, "special", "fifo")
        status, body = await _json(alice, "PUT", "/v1/files/pipe", data=b"x")
        assert (status, body["code"]) == (400, "BAD_REQUEST")
        assert (await _json(alice, "PATCH", "/v1/files/pipe", json={"mode": "0600"}))[0] == 200
        assert (await _json(alice, "DELETE", "/v1/files/pipe"))[0] == 204


@pytest.mark.parametrize("headers", [
    {"X-CallFS-Special": "door"}, {"X-CallFS-Special": "fifo", "X-CallFS-Rdev": "5"},
    {"X-CallFS-Special": "block", "X-CallFS-Rdev": "4294967296"}, {"X-CallFS-Special": "char", "X-CallFS-Rdev": "-1"},
    {"X-CallFS-Special": "fifo", "X-CallFS-Target": "t"},
])
async def test_bad_special_files_are_400(api_node: AppNode, headers: dict[str, str]) -> None:
    async with session(api_node, "alice") as alice:
        status, body = await _json(alice, "POST", "/v1/files/node", headers=headers)
        assert (status, body["code"]) == (400, "BAD_REQUEST"), body


# ---- exchanging two entries (renameat2 RENAME_EXCHANGE)

async def test_exchange_swaps_two_entries_atomically(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "PUT", "/v1/files/x/a", data=b"a")
        await _json(alice, "PUT", "/v1/files/x/d/inner", data=b"i")
        status, body = await _json(alice, "PATCH", "/v1/files/x/a", json={"destination": "/x/d", "exchange": True})
        assert (status, body) == (200, {"path": "/x/d"})
        async with alice.get("/v1/files/x/d") as response:
            assert await response.read() == b"a"
        async with alice.get("/v1/files/x/a/inner") as response:
            assert await response.read() == b"i"
        status, listing = await _json(alice, "GET", "/v1/directories/x?recursive=true")
        assert sorted(item["path"] for item in listing["items"]) == ["/x/a", "/x/a/inner", "/x/d"]


@pytest.mark.parametrize(("source", "body", "code"), [
    ("/v1/files/y/a", {"destination": "/y/missing", "exchange": True}, 404),
    ("/v1/files/y/d", {"destination": "/y/d/f", "exchange": True}, 400),
    ("/v1/files/y/a", {"destination": "/y/d", "exchange": True, "overwrite": True}, 400),
    ("/v1/files/y/a", {"destination": "/locked/f", "exchange": True}, 403),
])
async def test_bad_exchanges(api_node: AppNode, source: str, body: dict[str, Any], code: int) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "root") as root:
        await _json(alice, "PUT", "/v1/files/y/a", data=b"a")
        await _json(alice, "PUT", "/v1/files/y/d/f", data=b"f")
        await _json(root, "PUT", "/v1/files/locked/f", data=b"r")
        await _json(root, "PATCH", "/v1/files/locked", json={"mode": "0755"})
        status, answer = await _json(alice, "PATCH", source, json=body)
        assert status == code, answer


@pytest.fixture(params=["sqlite", "postgres"])
def eager_times_node(request: pytest.FixtureRequest, app_node_factory: Callable[..., AppNode]) -> AppNode:
    """A node whose directories' times move on every change of their entries (``directory_time_skip`` 0)."""
    sections: dict[str, Any] = {"server": {"directory_time_skip": 0}}
    if request.param == "postgres":
        sections.update(postgres_redis_sections(request))
    return app_node_factory(**sections)


async def _times(http: aiohttp.ClientSession, directory: str) -> tuple[str, str]:
    """``(mtime, ctime)`` of ``directory`` (a top-level one) from the root's listing."""
    status, listing = await _json(http, "GET", "/v1/directories/")
    assert status == 200, listing
    (item,) = [i for i in listing["items"] if i["name"] == directory]
    return item["mtime"], item["ctime"]


async def test_entries_added_removed_or_renamed_move_their_directorys_times(eager_times_node: AppNode) -> None:
    """POSIX: creat/mkdir/symlink/mknod/unlink/rmdir/rename update the directory's st_mtime and st_ctime; a
    change of a file's bytes or of its attributes does not."""
    async with session(eager_times_node, "alice") as alice:
        for name in ("d", "e"):
            assert (await _json(alice, "POST", f"/v1/files/{name}/"))[0] == 201
        changes: list[tuple[str, str, str, dict[str, Any]]] = [
            ("d", "PUT", "/v1/files/d/f", {"data": b"x"}),
            ("d", "POST", "/v1/files/d/sub/", {}),
            ("d", "POST", "/v1/files/d/link", {"headers": _link("f")}),
            ("d", "DELETE", "/v1/files/d/link", {}),
            ("d", "PATCH", "/v1/files/d/f", {"json": {"name": "g"}}),
            ("e", "PATCH", "/v1/files/d/g", {"json": {"destination": "/e/g"}}),
            ("d", "DELETE", "/v1/files/d/sub", {}),
        ]
        for directory, method, path, kwargs in changes:
            before = await _times(alice, directory)
            status, body = await _json(alice, method, path, **kwargs)
            assert status in (200, 201, 204), body
            after = await _times(alice, directory)
            assert after[0] > before[0] and after[1] > before[1], (method, path, before, after)
        before = await _times(alice, "e")
        assert (await _json(alice, "PUT", "/v1/files/e/g", data=b"rewritten"))[0] == 200
        assert (await _json(alice, "PATCH", "/v1/files/e/g", json={"mode": "0600"}))[0] == 200
        assert await _times(alice, "e") == before


async def test_a_busy_directorys_times_move_at_most_once_per_skip_window(
    app_node_factory: Callable[..., AppNode]
) -> None:
    node = app_node_factory(server={"directory_time_skip": 30})
    async with session(node, "alice") as alice:
        assert (await _json(alice, "POST", "/v1/files/busy/"))[0] == 201
        made = await _times(alice, "busy")
        for i in range(5):
            assert (await _json(alice, "PUT", f"/v1/files/busy/f{i}", data=b"x"))[0] == 201
        assert await _times(alice, "busy") == made  # made within the window: left alone


async def test_a_new_file_takes_the_times_its_client_made_it_at(api_node: AppNode) -> None:
    """``X-CallFS-MTime`` on a whole write that creates the file: its mtime, atime and ctime (never later than
    now); an overwrite ignores it; a malformed one is 400 and writes nothing."""
    made = "2026-01-02T03:04:05.123456+00:00"
    async with session(api_node, "alice") as alice:
        status, item = await _json(alice, "PUT", "/v1/files/made.txt", data=b"x", headers={"X-CallFS-MTime": made})
        assert status == 201, item
        assert (item["mtime"], item["atime"], item["ctime"]) == ("2026-01-02T03:04:05.123456Z",) * 3
        status, item = await _json(alice, "POST", "/v1/files/posted.txt", data=b"y",
                                   headers={"X-CallFS-MTime": made})
        assert status == 201 and item["ctime"] == "2026-01-02T03:04:05.123456Z"
        status, item = await _json(alice, "PUT", "/v1/files/made.txt", data=b"z", headers={"X-CallFS-MTime": made})
        assert status == 200 and item["ctime"] > "2026-12"  # an overwrite's times are now
        status, item = await _json(alice, "PUT", "/v1/files/future.txt", data=b"f",
                                   headers={"X-CallFS-MTime": "2999-01-01T00:00:00Z"})
        assert status == 201 and item["mtime"] < "2999"
        status, body = await _json(alice, "PUT", "/v1/files/bad.txt", data=b"b", headers={"X-CallFS-MTime": "soon"})
        assert (status, body["code"]) == (400, "BAD_REQUEST")
        assert (await _json(alice, "GET", "/v1/files/bad.txt"))[0] == 404
