"""Extended attributes through the REST API (``/v1/xattrs/{path}``, docs/rest-api.md "Extended attributes"), on
SQLite and PostgreSQL + Redis: byte values by name, create/replace modes, limits, the Linux permission rules per
namespace, confinement of scoped keys, hard links sharing them, copies keeping them, and any node of a cluster
answering."""

from __future__ import annotations

import base64
import secrets
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from callfs import errors
from callfs.client import CallFSClient
from support.app_node import AppNode
from support.http import session

BLOBS = {"whole_files_in_blocks": False}


async def _json(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        body = await response.read()
        return response.status, await response.json(content_type=None) if body else None


def _url(path: str, name: str | None = None, **query: str) -> str:
    url = "/v1/xattrs/" + path.lstrip("/")
    params = ({"name": name} if name is not None else {}) | query
    return url + ("?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()) if params else "")


async def _value(http: aiohttp.ClientSession, path: str, name: str) -> tuple[int, bytes]:
    async with http.get(_url(path, name)) as response:
        return response.status, await response.read()


async def _names(http: aiohttp.ClientSession, path: str) -> list[str]:
    status, body = await _json(http, "GET", _url(path))
    assert status == 200, body
    return [item["name"] for item in body["xattrs"]]


async def test_set_get_list_replace_and_remove(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        assert (await _json(alice, "PUT", "/v1/files/f.txt", data=b"content"))[0] == 201
        async with alice.head("/v1/files/f.txt") as response:
            ctime = response.headers["X-CallFS-CTime"]
            etag = response.headers["ETag"]
        binary = bytes(range(256))
        status, body = await _json(alice, "PUT", _url("f.txt", "user.bin"), data=binary)
        assert (status, body) == (201, {"path": "/f.txt", "name": "user.bin", "size": 256})
        assert (await _json(alice, "PUT", _url("f.txt", "user.empty"), data=b""))[0] == 201
        assert (await _json(alice, "PUT", _url("f.txt", "user.ünï cødé"), data="é".encode()))[0] == 201
        assert await _value(alice, "f.txt", "user.bin") == (200, binary)
        assert await _value(alice, "f.txt", "user.empty") == (200, b"")
        assert await _value(alice, "f.txt", "user.ünï cødé") == (200, "é".encode())
        status, body = await _json(alice, "GET", _url("f.txt"))
        assert body == {"path": "/f.txt", "xattrs": [
            {"name": "user.bin", "size": 256}, {"name": "user.empty", "size": 0}, {"name": "user.ünï cødé", "size": 2}]}
        status, body = await _json(alice, "GET", _url("f.txt", values="true"))
        assert [(i["name"], base64.b64decode(i["value"])) for i in body["xattrs"]] == [
            ("user.bin", binary), ("user.empty", b""), ("user.ünï cødé", "é".encode())]
        # Create-only and replace-only, as XATTR_CREATE and XATTR_REPLACE.
        status, body = await _json(alice, "PUT", _url("f.txt", "user.bin", mode="create"), data=b"x")
        assert (status, body["code"]) == (409, "XATTR_EXISTS")
        status, body = await _json(alice, "PUT", _url("f.txt", "user.none", mode="replace"), data=b"x")
        assert (status, body["code"]) == (404, "XATTR_NOT_FOUND")
        assert (await _json(alice, "PUT", _url("f.txt", "user.bin", mode="replace"), data=b"new"))[0] == 200
        assert (await _json(alice, "PUT", _url("f.txt", "user.made", mode="create"), data=b"m"))[0] == 201
        assert await _value(alice, "f.txt", "user.bin") == (200, b"new")
        # Removal; a missing attribute is XATTR_NOT_FOUND, a missing entry FILE_NOT_FOUND.
        assert (await _json(alice, "DELETE", _url("f.txt", "user.empty")))[0] == 204
        status, body = await _json(alice, "DELETE", _url("f.txt", "user.empty"))
        assert (status, body["code"]) == (404, "XATTR_NOT_FOUND")
        async with alice.get(_url("f.txt", "user.empty")) as response:
            assert response.status == 404 and (await response.json())["code"] == "XATTR_NOT_FOUND"
        for method in ("GET", "PUT", "DELETE"):
            status, body = await _json(alice, method, _url("nope", "user.x"))
            assert (status, body["code"]) == (404, "FILE_NOT_FOUND"), method
        assert await _names(alice, "f.txt") == ["user.bin", "user.made", "user.ünï cødé"]
        # A change of attributes moves ctime and leaves the content (its ETag) alone; a write keeps them.
        async with alice.head("/v1/files/f.txt") as response:
            assert response.headers["X-CallFS-CTime"] >= ctime and response.headers["ETag"] == etag
        assert (await _json(alice, "PUT", "/v1/files/f.txt", data=b"rewritten"))[0] == 200
        assert await _value(alice, "f.txt", "user.bin") == (200, b"new")
        # Directories hold them too, the root included.
        assert (await _json(alice, "POST", "/v1/files/d/"))[0] == 201
        assert (await _json(alice, "PUT", _url("d", "user.dir"), data=b"D"))[0] == 201
        assert await _value(alice, "d", "user.dir") == (200, b"D")
    async with session(api_node, "root") as root:
        assert (await _json(root, "PUT", _url("/", "user.root"), data=b"/"))[0] == 201
        assert await _value(root, "/", "user.root") == (200, b"/")


async def test_hard_links_share_them_a_rename_keeps_them_the_last_name_takes_them(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "PUT", "/v1/files/a/one", data=b"1")
        await _json(alice, "POST", "/v1/files/b/")
        assert (await _json(alice, "POST", "/v1/files/b/two", headers={"X-CallFS-Link-To": "/a/one"}))[0] == 201
        assert (await _json(alice, "PUT", _url("a/one", "user.shared"), data=b"s"))[0] == 201
        assert await _value(alice, "b/two", "user.shared") == (200, b"s")
        assert (await _json(alice, "PUT", _url("b/two", "user.other"), data=b"o"))[0] == 201
        assert await _names(alice, "a/one") == ["user.other", "user.shared"]
        assert (await _json(alice, "PATCH", "/v1/files/b/two", json={"name": "2"}))[0] == 200
        assert await _names(alice, "b/2") == ["user.other", "user.shared"]
        assert (await _json(alice, "DELETE", "/v1/files/a?recursive=true"))[0] == 204
        assert await _value(alice, "b/2", "user.shared") == (200, b"s")
        assert (await _json(alice, "DELETE", "/v1/files/b/2"))[0] == 204
        await _json(alice, "PUT", "/v1/files/b/2", data=b"new file")
        assert await _names(alice, "b/2") == []
        # A file replaced by a rename takes its attributes along; the one moved keeps its own.
        await _json(alice, "PUT", "/v1/files/b/x", data=b"x")
        await _json(alice, "PUT", _url("b/x", "user.x"), data=b"x")
        await _json(alice, "PUT", _url("b/2", "user.2"), data=b"2")
        assert (await _json(alice, "PATCH", "/v1/files/b/x", json={"destination": "/b/2", "overwrite": True}))[0] == 200
        assert await _names(alice, "b/2") == ["user.x"]


async def test_copies_keep_them(api_node: AppNode) -> None:
    async with session(api_node, "root") as root, session(api_node, "alice") as alice:
        await _json(alice, "PUT", "/v1/files/src/f", data=b"f")
        await _json(alice, "PUT", _url("src/f", "user.f"), data=b"F")
        await _json(alice, "PUT", _url("src", "user.dir"), data=b"D")
        assert (await _json(root, "PUT", _url("src/f", "trusted.t"), data=b"T"))[0] == 201
        status, body = await _json(alice, "POST", "/v1/copies",
                                    json={"source": "/src", "destination": "/alices", "recursive": True})
        assert status == 201, body
        assert await _names(alice, "alices") == ["user.dir"]
        # Alice's copy has what she could read and set herself: the user.* attributes.
        assert await _names(root, "alices/f") == ["user.f"]
        assert await _value(alice, "alices/f", "user.f") == (200, b"F")
        assert (await _json(root, "POST", "/v1/copies", json={"source": "/src/f", "destination": "/roots"}))[0] == 201
        assert await _names(root, "roots") == ["trusted.t", "user.f"]
        # The copy is its own inode: a change to one leaves the other.
        await _json(alice, "PUT", _url("alices/f", "user.f"), data=b"changed")
        assert await _value(alice, "src/f", "user.f") == (200, b"F")


@pytest.mark.parametrize(("url", "data", "code"), [
    ("/v1/xattrs/f", b"", (400, "BAD_REQUEST")),
    ("/v1/xattrs/f?name=", b"", (400, "BAD_XATTR_NAME")),
    ("/v1/xattrs/f?name=user.", b"", (400, "BAD_XATTR_NAME")),
    ("/v1/xattrs/f?name=user." + "n" * 251, b"", (400, "BAD_XATTR_NAME")),
    ("/v1/xattrs/f?name=user.a%00b", b"", (400, "BAD_XATTR_NAME")),
    ("/v1/xattrs/f?name=system.posix_acl_access", b"", (400, "XATTR_NOT_SUPPORTED")),
    ("/v1/xattrs/f?name=other.name", b"", (400, "XATTR_NOT_SUPPORTED")),
    ("/v1/xattrs/f?name=user.a&mode=sometimes", b"", (400, "BAD_REQUEST")),
    ("/v1/xattrs/f?name=user.big", b"v" * 65537, (413, "XATTR_TOO_LARGE")),
])
async def test_bad_sets(api_node: AppNode, url: str, data: bytes, code: tuple[int, str]) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "PUT", "/v1/files/f", data=b"1")
        status, body = await _json(alice, "PUT", url, data=data)
        assert (status, body["code"]) == code, body
        assert await _names(alice, "f") == []


async def test_limits_of_a_value_and_of_an_inode(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        await _json(alice, "PUT", "/v1/files/f", data=b"1")
        longest = "user." + "n" * 250
        assert (await _json(alice, "PUT", _url("f", longest), data=b"v" * 65536))[0] == 201
        assert await _value(alice, "f", longest) == (200, b"v" * 65536)
        for n in range(2, 4):
            assert (await _json(alice, "PUT", _url("f", f"user.{n}"), data=b"v" * 65536))[0] == 201
        status, body = await _json(alice, "PUT", _url("f", "user.4"), data=b"v" * 65536)
        assert (status, body["code"]) == (413, "XATTRS_FULL")
        # Replacing a value with a smaller one always fits.
        assert (await _json(alice, "PUT", _url("f", "user.2"), data=b"small"))[0] == 200
        assert (await _json(alice, "PUT", _url("f", "user.4"), data=b"v" * 60000))[0] == 201


async def test_permissions_per_namespace(api_node: AppNode) -> None:
    # bob is in alice's group; api-user-0 is anyone else.
    async with (session(api_node, "alice") as alice, session(api_node, "bob") as bob,
                session(api_node, "api-user-0") as other, session(api_node, "root") as root):
        await _json(root, "PATCH", "/v1/files/", json={"mode": "0777"})
        await _json(alice, "PUT", "/v1/files/f", data=b"1")
        await _json(alice, "PATCH", "/v1/files/f", json={"mode": "0640"})
        await _json(alice, "PUT", _url("f", "user.a"), data=b"A")
        # r reads a value, w changes one; listing names needs neither.
        assert await _value(bob, "f", "user.a") == (200, b"A")
        status, body = await _json(bob, "PUT", _url("f", "user.b"), data=b"B")
        assert (status, body["code"]) == (403, "PERMISSION_DENIED")
        assert (await _json(bob, "DELETE", _url("f", "user.a")))[0] == 403
        assert (await _value(other, "f", "user.a"))[0] == 403
        assert (await _json(other, "GET", _url("f", values="true")))[0] == 403
        assert await _names(other, "f") == ["user.a"]
        await _json(alice, "PATCH", "/v1/files/f", json={"mode": "0660"})
        assert (await _json(bob, "PUT", _url("f", "user.b"), data=b"B"))[0] == 201
        # trusted.*: superusers only, invisible to the others.
        status, body = await _json(alice, "PUT", _url("f", "trusted.t"), data=b"T")
        assert (status, body["code"]) == (403, "PERMISSION_DENIED")
        assert (await _json(root, "PUT", _url("f", "trusted.t"), data=b"T"))[0] == 201
        status, _ = await _value(alice, "f", "trusted.t")
        assert status == 404
        assert await _names(alice, "f") == ["user.a", "user.b"]
        assert await _names(root, "f") == ["trusted.t", "user.a", "user.b"]
        # security.*: read like user.*, set by superusers.
        assert (await _json(alice, "PUT", _url("f", "security.s"), data=b"S"))[0] == 403
        assert (await _json(root, "PUT", _url("f", "security.s"), data=b"S"))[0] == 201
        assert await _value(alice, "f", "security.s") == (200, b"S")
        # user.* only on regular files and directories.
        await _json(alice, "POST", "/v1/files/link", headers={"X-CallFS-Target": "f"})
        status, body = await _json(alice, "PUT", _url("link", "user.a"), data=b"A")
        assert (status, body["code"]) == (403, "PERMISSION_DENIED")
        assert (await _value(alice, "link", "user.a"))[0] == 404
        # A sticky directory's own user.* attributes: its owner only, even for others with w.
        await _json(alice, "POST", "/v1/files/sticky/")
        await _json(alice, "PATCH", "/v1/files/sticky", json={"mode": "1777"})
        assert (await _json(bob, "PUT", _url("sticky", "user.s"), data=b"s"))[0] == 403
        assert (await _json(alice, "PUT", _url("sticky", "user.s"), data=b"s"))[0] == 201


async def test_a_scoped_key_reaches_its_scope_only(api_node: AppNode) -> None:
    key = secrets.token_urlsafe(24)
    async with session(api_node, "root") as root:
        await _json(root, "PUT", "/v1/files/volumes/a/f", data=b"a")
        await _json(root, "PUT", "/v1/files/volumes/b/f", data=b"b")
        await _json(root, "PATCH", "/v1/files/volumes/a", json={"owner": "pv-a", "group": "pv-a"})
        await _json(root, "PATCH", "/v1/files/volumes/a/f", json={"owner": "pv-a", "group": "pv-a"})
        await _json(root, "PUT", _url("volumes/b/f", "user.b"), data=b"b")
        registration = {"user": "pv-a", "key": key, "scope": "/volumes/a"}
        assert (await _json(root, "POST", "/v1/keys", json=registration))[0] == 201
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(api_node.url, headers=headers) as scoped:
        assert (await _json(scoped, "PUT", _url("volumes/a/f", "user.a"), data=b"a"))[0] == 201
        assert await _names(scoped, "volumes/a/f") == ["user.a"]
        for method in ("GET", "PUT", "DELETE"):
            status, body = await _json(scoped, method, _url("volumes/b/f", "user.b"), data=b"")
            assert (status, body["code"]) == (403, "PERMISSION_DENIED"), method
        assert (await _json(scoped, "GET", _url("volumes/b/f")))[0] == 403


async def test_any_node_of_a_cluster_answers(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_factory(2, backend=BLOBS)
    async with session(a) as on_a, session(b) as on_b:
        assert (await _json(on_a, "PUT", "/v1/files/common/data", data=b"bytes on node-0"))[0] == 201
        async with on_b.head("/v1/files/common/data") as response:
            assert response.headers["X-CallFS-Instance-ID"] == "node-0"
        assert (await _json(on_b, "PUT", _url("common/data", "user.set-on-b"), data=b"b"))[0] == 201
        assert (await _json(on_a, "PUT", _url("common/data", "user.set-on-a"), data=b"a"))[0] == 201
        assert await _value(on_a, "common/data", "user.set-on-b") == (200, b"b")
        assert await _names(on_b, "common/data") == ["user.set-on-a", "user.set-on-b"]
        assert (await _json(on_b, "DELETE", _url("common/data", "user.set-on-a")))[0] == 204
        assert await _names(on_a, "common/data") == ["user.set-on-b"]


async def test_the_client_methods(api_node: AppNode) -> None:
    async with CallFSClient(api_node.url, api_node.key_for("alice")) as fs:
        await fs.put_file("/f", b"1")
        odd = "user.a b+c&d=e%f/ü"
        assert await fs.setxattr("/f", odd, b"\x00odd") is True
        assert await fs.setxattr("/f", odd, b"again") is False
        assert await fs.setxattr("/f", "user.empty", b"", mode="create") is True
        with pytest.raises(errors.XattrExists):
            await fs.setxattr("/f", "user.empty", b"x", mode="create")
        with pytest.raises(errors.XattrNotFound):
            await fs.setxattr("/f", "user.none", b"x", mode="replace")
        assert await fs.getxattr("/f", odd) == b"again"
        assert await fs.getxattr("/f", "user.empty") == b""
        assert await fs.listxattr("/f") == [odd, "user.empty"]
        assert await fs.getxattrs("/f") == {odd: b"again", "user.empty": b""}
        await fs.removexattr("/f", odd)
        with pytest.raises(errors.XattrNotFound):
            await fs.getxattr("/f", odd)
        with pytest.raises(errors.XattrNotFound):
            await fs.removexattr("/f", odd)
        with pytest.raises(errors.XattrTooLarge):
            await fs.setxattr("/f", "user.big", bytes(65537))
        with pytest.raises(errors.XattrNotSupported):
            await fs.getxattr("/f", "system.posix_acl_access")
        with pytest.raises(errors.BadXattrName):
            await fs.setxattr("/f", "user.", b"")
        with pytest.raises(errors.NotFound):
            await fs.listxattr("/missing")
