"""Access control at the edges: links bound to content, search permission on ancestors, chown rules, system
directories, protected quota roots, and secrets kept out of logs and off other users' disks."""

from __future__ import annotations

import logging
import stat
from typing import Any

import aiohttp
import pytest

from support.app_node import AppNode
from support.http import session


async def _status(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> int:
    async with http.request(method, path, **kwargs) as response:
        await response.read()
        return response.status


async def _json(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        body = await response.read()
        try:
            return response.status, await response.json(content_type=None) if body else None
        except ValueError:
            return response.status, body


async def _mint(http: aiohttp.ClientSession, path: str) -> str:
    status, body = await _json(http, "POST", "/v1/links/generate", json={"path": path, "expiry_seconds": 60})
    assert status == 201, body
    return str(body["token"])


# ---------------------------------------------------------------------------- links bound to content


@pytest.mark.parametrize("change", ["delete-and-recreate", "overwrite"])
async def test_link_does_not_serve_content_written_after_it_was_minted(api_node: AppNode, change: str) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob, \
            session(api_node, None) as anonymous:
        assert await _status(alice, "PUT", "/v1/files/shared.txt", data=b"public words") == 201
        token = await _mint(bob, "/shared.txt")
        if change == "delete-and-recreate":
            assert await _status(alice, "DELETE", "/v1/files/shared.txt") == 204
            assert await _status(alice, "PUT", "/v1/files/shared.txt", data=b"private words") == 201
        else:
            assert await _status(alice, "PUT", "/v1/files/shared.txt", data=b"private words") == 200
        assert await _status(alice, "PATCH", "/v1/files/shared.txt", json={"mode": "0600"}) == 200
        async with anonymous.get(f"/download/{token}") as response:
            body = await response.read()
            assert response.status == 410
            assert b"private" not in body
            assert (await response.json())["code"] == "LINK_CONTENT_CHANGED"


async def test_link_still_serves_the_bytes_it_was_minted_for(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, None) as anonymous:
        assert await _status(alice, "PUT", "/v1/files/keep.txt", data=b"same bytes") == 201
        token = await _mint(alice, "/keep.txt")
        assert await _status(alice, "PATCH", "/v1/files/keep.txt", json={"mode": "0640"}) == 200
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 200
            assert await response.read() == b"same bytes"


# ---------------------------------------------------------------------------- search permission on ancestors


async def test_bob_cannot_reach_a_0644_file_in_alices_0700_directory(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob:
        assert await _status(alice, "PUT", "/v1/files/private/report.txt", data=b"alice only") == 201
        assert await _status(alice, "PATCH", "/v1/files/private", json={"mode": "0700"}) == 200
        assert await _status(bob, "GET", "/v1/files/private/report.txt") == 403
        assert await _status(bob, "HEAD", "/v1/files/private/report.txt") == 403
        status, _ = await _json(bob, "POST", "/v1/links/generate",
                                json={"path": "/private/report.txt", "expiry_seconds": 60})
        assert status == 403
        assert await _status(alice, "GET", "/v1/files/private/report.txt") == 200


async def test_every_verb_needs_search_permission_on_every_ancestor(api_node: AppNode) -> None:
    """/private is 0700 (alice's); below it everything is world-writable, so only the missing ``x`` on
    /private can stop bob."""
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob, \
            session(api_node, "root") as root:
        for path in ("/v1/files/private/open/f.txt", "/v1/files/private/open/g.txt"):
            assert await _status(alice, "PUT", path, data=b"data") == 201
        assert await _status(alice, "POST", "/v1/files/private/open/sub/") == 201
        for path, mode in (("private/open", "0777"), ("private/open/sub", "0777"),
                           ("private/open/f.txt", "0666"), ("private/open/g.txt", "0666"), ("private", "0700")):
            assert await _status(alice, "PATCH", f"/v1/files/{path}", json={"mode": mode}) == 200
        assert await _status(root, "PUT", "/v1/quotas/private/open", json={"bytes_limit": 10**6}) in (200, 201)
        assert await _status(bob, "POST", "/v1/files/bobs/") == 201

        attempts: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/v1/files/private/open/f.txt", {}),
            ("HEAD", "/v1/files/private/open/f.txt", {}),
            ("GET", "/v1/files/private/open/", {}),
            ("HEAD", "/v1/files/private/open/", {}),
            ("GET", "/v1/directories/private/open", {}),
            ("GET", "/v1/directories/private/open?recursive=true", {}),
            ("PUT", "/v1/files/private/open/f.txt", {"data": b"bob was here"}),
            ("PUT", "/v1/files/private/open/new.txt", {"data": b"bob"}),
            ("POST", "/v1/files/private/open/new2.txt", {"data": b"bob"}),
            ("POST", "/v1/files/private/open/newdir/", {}),
            ("POST", "/v1/files/private/open/sub/deeper/", {}),
            ("PATCH", "/v1/files/private/open/f.txt", {"json": {"name": "renamed.txt"}}),
            ("PATCH", "/v1/files/private/open/g.txt", {"json": {"destination": "/bobs/g.txt"}}),
            ("PATCH", "/v1/files/bobs", {"json": {"destination": "/private/open/bobs"}}),
            ("DELETE", "/v1/files/private/open/f.txt", {}),
            ("DELETE", "/v1/files/private/open/sub", {}),
            ("POST", "/v1/links/generate", {"json": {"path": "/private/open/f.txt", "expiry_seconds": 60}}),
            ("GET", "/v1/quotas/private/open", {}),
        ]
        allowed = []
        for method, path, kwargs in attempts:
            status, body = await _json(bob, method, path, **kwargs)
            if status != 403 or (method != "HEAD" and body["code"] != "PERMISSION_DENIED"):
                allowed.append((method, path, status))
        assert allowed == []
        # Nothing changed, and the superuser still passes.
        async with root.get("/v1/files/private/open/f.txt") as response:
            assert response.status == 200
            assert await response.read() == b"data"
        status, listing = await _json(root, "GET", "/v1/files/private/open/")
        assert status == 200
        assert sorted(item["name"] for item in listing) == ["f.txt", "g.txt", "sub"]
        assert await _status(root, "GET", "/v1/files/bobs/") == 200
        # Once alice grants search (x without r), bob reaches entries by name but cannot list /private.
        assert await _status(alice, "PATCH", "/v1/files/private", json={"mode": "0711"}) == 200
        assert await _status(bob, "GET", "/v1/files/private/open/f.txt") == 200
        assert await _status(bob, "GET", "/v1/files/private/") == 403


async def test_recursive_listing_leaves_out_subdirectories_without_search(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob:
        assert await _status(alice, "PUT", "/v1/files/tree/closed/secret.txt", data=b"s") == 201
        assert await _status(alice, "PATCH", "/v1/files/tree/closed", json={"mode": "0744"}) == 200
        status, body = await _json(bob, "GET", "/v1/directories/tree?recursive=true")
        assert status == 200
        assert [item["path"] for item in body["items"]] == ["/tree/closed"]


async def test_paged_recursive_listing_leaves_out_the_same_entries_on_every_page(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob:
        for path in ("tree/closed/secret.txt", "tree/closed/deeper/more.txt", "tree/open/f.txt"):
            assert await _status(alice, "PUT", f"/v1/files/{path}", data=b"s") == 201
        assert await _status(alice, "PATCH", "/v1/files/tree/closed", json={"mode": "0744"}) == 200
        status, whole = await _json(bob, "GET", "/v1/directories/tree?recursive=true")
        assert status == 200
        assert [item["path"] for item in whole["items"]] == ["/tree/closed", "/tree/open", "/tree/open/f.txt"]
        # One entry per page: the pages below /tree/closed no longer hold /tree/closed itself.
        listed, after, requests = [], "", 0
        while True:
            status, body = await _json(bob, "GET", f"/v1/directories/tree?recursive=true&limit=1{after}")
            assert status == 200 and len(body["items"]) <= 1
            listed += [item["path"] for item in body["items"]]
            requests += 1
            if "next" not in body:
                break
            after = f"&after={body['next']}"
        assert listed == [item["path"] for item in whole["items"]]
        assert requests >= 6  # the hidden entries still took their pages


# ---------------------------------------------------------------------------- chown / chmod


@pytest.mark.parametrize("owner", ["evil\r\nX-Injected: 1", "bob\n", "nul\x00name", "", " ", "a b", "x" * 65])
async def test_chown_refuses_names_that_are_not_user_names(api_node: AppNode, owner: str) -> None:
    async with session(api_node, "root") as root:
        assert await _status(root, "PUT", "/v1/files/owned.txt", data=b"x") == 201
        status, body = await _json(root, "PATCH", "/v1/files/owned.txt", json={"owner": owner})
        assert status == 400
        assert body["code"] == "BAD_REQUEST"
        status, body = await _json(root, "PATCH", "/v1/files/owned.txt", json={"group": owner})
        assert status == 400
        async with root.get("/v1/files/owned.txt") as response:
            assert response.status == 200
            assert response.headers["X-CallFS-Owner"] == "root"
        assert await _status(root, "HEAD", "/v1/files/owned.txt") == 200


async def test_only_root_gives_files_away_and_owners_pick_only_their_groups(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob, \
            session(api_node, "root") as root:
        assert await _status(alice, "PUT", "/v1/files/alices.txt", data=b"a") == 201
        status, body = await _json(alice, "PATCH", "/v1/files/alices.txt", json={"owner": "bob"})
        assert (status, body["code"]) == (403, "PERMISSION_DENIED")
        assert await _status(alice, "PATCH", "/v1/files/alices.txt", json={"owner": "alice"}) == 200
        assert await _status(bob, "PUT", "/v1/files/bobs.txt", data=b"b") == 201
        assert await _status(bob, "PATCH", "/v1/files/bobs.txt", json={"group": "alice"}) == 200  # bob is in it
        assert await _status(bob, "PATCH", "/v1/files/bobs.txt", json={"group": "root"}) == 403
        assert await _status(bob, "PATCH", "/v1/files/bobs.txt", json={"group": "bob"}) == 200
        status, body = await _json(root, "PATCH", "/v1/files/alices.txt", json={"owner": "bob", "group": "staff"})
        assert status == 200
        assert (body["owner"], body["group"]) == ("bob", "staff")


@pytest.mark.parametrize("mode", ["4755", "2755", "6777", "4644"])
async def test_chmod_keeps_setuid_and_setgid(api_node: AppNode, mode: str) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "root") as root:
        assert await _status(alice, "PUT", "/v1/files/prog", data=b"#!") == 201
        for http in (alice, root):
            status, body = await _json(http, "PATCH", "/v1/files/prog", json={"mode": mode})
            assert (status, body["mode"]) == (200, mode)
            async with http.head("/v1/files/prog") as response:
                assert response.headers["X-CallFS-Mode"] == mode


async def test_chmod_by_an_owner_outside_the_group_clears_setgid(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "root") as root:
        assert await _status(alice, "PUT", "/v1/files/tool", data=b"#!") == 201
        assert await _status(root, "PATCH", "/v1/files/tool", json={"group": "staff"}) == 200
        status, body = await _json(alice, "PATCH", "/v1/files/tool", json={"mode": "6755"})
        assert (status, body["mode"]) == (200, "4755")  # POSIX chmod(2): alice is not in staff


async def test_numeric_owner_and_times_are_set_by_the_owner(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob:
        assert await _status(alice, "PUT", "/v1/files/t.txt", data=b"t") == 201
        async with alice.head("/v1/files/t.txt") as response:
            created = response.headers["X-CallFS-CTime"]
            assert "X-CallFS-UID" not in response.headers
        status, body = await _json(alice, "PATCH", "/v1/files/t.txt", json={
            "uid": 1000, "gid": 0, "atime": "2030-03-17T17:46:40.25Z", "mtime": "2031-10-17T10:40:00+00:00"})
        assert status == 200, body
        assert (body["uid"], body["gid"]) == (1000, 0)
        assert (body["atime"], body["mtime"]) == ("2030-03-17T17:46:40.250000Z", "2031-10-17T10:40:00Z")
        assert body["ctime"] > created
        async with alice.head("/v1/files/t.txt") as response:
            assert (response.headers["X-CallFS-UID"], response.headers["X-CallFS-GID"]) == ("1000", "0")
            assert response.headers["X-CallFS-ATime"] == "2030-03-17T17:46:40.250000Z"
        status, listing = await _json(alice, "GET", "/v1/directories/")
        entry = next(item for item in listing["items"] if item["name"] == "t.txt")
        assert (entry["uid"], entry["gid"], entry["mtime"]) == (1000, 0, "2031-10-17T10:40:00Z")
        # Not the owner: no ids, no times given as values; "now" needs write permission (POSIX utimensat).
        assert await _status(bob, "PATCH", "/v1/files/t.txt", json={"uid": 7}) == 403
        assert await _status(bob, "PATCH", "/v1/files/t.txt", json={"mtime": "2030-01-01T00:00:00Z"}) == 403
        assert await _status(bob, "PATCH", "/v1/files/t.txt", json={"mtime": "now"}) == 403
        assert await _status(alice, "PATCH", "/v1/files/t.txt", json={"mode": "0666"}) == 200
        status, body = await _json(bob, "PATCH", "/v1/files/t.txt", json={"atime": "now", "mtime": "now"})
        assert status == 200 and body["mtime"] > "2026", body


@pytest.mark.parametrize("body", [
    {"uid": -1}, {"uid": 2**32 - 1}, {"gid": "0"}, {"uid": True}, {"atime": "yesterday"},
    {"mtime": "2030-01-01T00:00:00"}, {"mtime": 5}, {"mode": "10000"}, {"uid": 1, "name": "x"},
    {"mtime": "9999-12-31T23:00:00-05:00"}, {"atime": "0001-01-01T00:30:00+01:00"},
])
async def test_bad_attribute_changes_are_400(api_node: AppNode, body: dict[str, Any]) -> None:
    async with session(api_node, "alice") as alice:
        assert await _status(alice, "PUT", "/v1/files/b.txt", data=b"b") == 201
        status, answer = await _json(alice, "PATCH", "/v1/files/b.txt", json=body)
        assert (status, answer["code"]) == (400, "BAD_REQUEST"), answer


async def test_entries_in_a_setgid_directory_take_its_group(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob:
        assert await _status(alice, "POST", "/v1/files/team/") == 201
        assert await _status(alice, "PATCH", "/v1/files/team", json={"mode": "2777", "gid": 50}) == 200
        status, made = await _json(bob, "POST", "/v1/files/team/sub/")
        assert status == 201
        assert (made["group"], made["gid"], made["mode"]) == ("alice", 50, "2755")
        status, made = await _json(bob, "PUT", "/v1/files/team/sub/f", data=b"f")
        assert (made["group"], made["gid"], made["mode"]) == ("alice", 50, "0644")


# ---------------------------------------------------------------------------- system directories

SYSTEM_DIRECTORIES = ("/volumes", "/volumes/.csi", "/snapshots", "/snapshots/.csi", "/snapshots/.csi/groups",
                      "/archive")


async def test_system_directories_are_root_owned_from_the_start(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice:
        for path in SYSTEM_DIRECTORIES:
            async with alice.head("/v1/files" + path) as response:
                assert response.status == 200, path
                assert response.headers["X-CallFS-Type"] == "directory"
                assert response.headers["X-CallFS-Owner"] == "root"
                assert response.headers["X-CallFS-Mode"] == "0755"
        assert await _status(alice, "POST", "/v1/files/volumes/pvc-squat/") == 403
        assert await _status(alice, "PUT", "/v1/files/volumes/.csi/pvc-1.json", data=b"{}") == 403


async def test_node_takes_back_a_system_directory_owned_by_a_user(api_node: AppNode) -> None:
    async with session(api_node, "root") as root:
        for path in ("/volumes", "/volumes/.csi"):
            assert await _status(root, "PATCH", "/v1/files" + path, json={"owner": "alice"}) == 200
            assert await _status(root, "PATCH", "/v1/files" + path, json={"mode": "1777"}) == 200
        assert await _status(root, "POST", "/v1/files/volumes/pvc-a/") == 201
    api_node.restart()
    async with session(api_node, "alice") as alice:
        for path in ("/volumes", "/volumes/.csi"):
            async with alice.head("/v1/files" + path) as response:
                assert response.headers["X-CallFS-Owner"] == "root"
                assert response.headers["X-CallFS-Group"] == "root"
                assert response.headers["X-CallFS-Mode"] == "0755"
        status, _ = await _json(alice, "PATCH", "/v1/files/volumes/pvc-a", json={"name": "pvc-b"})
        assert status == 403


# ---------------------------------------------------------------------------- quota roots


async def test_owner_cannot_drop_a_quota_root_by_deleting_or_moving_it(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "root") as root:
        assert await _status(alice, "PUT", "/v1/files/home/proj/a.txt", data=b"a") == 201
        assert await _status(root, "PUT", "/v1/quotas/home/proj", json={"bytes_limit": 100}) in (200, 201)
        attempts: list[tuple[str, str, dict[str, Any]]] = [
            ("DELETE", "/v1/files/home/proj?recursive=true", {}),
            ("DELETE", "/v1/files/home?recursive=true", {}),
            ("PATCH", "/v1/files/home/proj", {"json": {"name": "proj-old"}}),
            ("PATCH", "/v1/files/home", {"json": {"destination": "/elsewhere"}}),
        ]
        for method, path, kwargs in attempts:
            status, body = await _json(alice, method, path, **kwargs)
            assert (status, body["code"]) == (403, "QUOTA_ROOT_PROTECTED"), (method, path)
        status, body = await _json(alice, "GET", "/v1/quotas/home/proj")
        assert status == 200
        assert body["bytes_limit"] == 100
        # Emptying the quota root stays allowed; replacing it with an empty directory does not.
        assert await _status(alice, "DELETE", "/v1/files/home/proj/a.txt") == 204
        assert await _status(alice, "POST", "/v1/files/home/empty/") == 201
        status, body = await _json(alice, "PATCH", "/v1/files/home/empty",
                                   json={"destination": "/home/proj", "overwrite": True})
        assert (status, body["code"]) == (403, "QUOTA_ROOT_PROTECTED")
        assert await _status(root, "DELETE", "/v1/files/home?recursive=true") == 204


# ---------------------------------------------------------------------------- secrets in logs and on disk


async def test_link_tokens_never_reach_the_log(api_node: AppNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with session(api_node) as http, session(api_node, None) as anonymous:
        assert await _status(http, "PUT", "/v1/files/logged.txt", data=b"x") == 201
        token = await _mint(http, "/logged.txt")
        assert await _status(anonymous, "GET", f"/download/{token}") == 200
        assert await _status(anonymous, "GET", f"/download/{token}") == 410
        assert await _status(anonymous, "GET", f"/download/{token[:-1]}A") in (404, 410)
    lines = [record.getMessage() + " " + repr(record.__dict__) for record in caplog.records]
    assert not [line for line in lines if token[:30] in line]
    assert any(f"/download/{token[:6]}…" in line for line in lines)


def test_data_dir_and_sqlite_file_are_private(app_node: AppNode) -> None:
    database = app_node.data_dir / "metadata.db"
    assert stat.S_IMODE(app_node.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    app_node.stop()
    app_node.data_dir.chmod(0o755)
    database.chmod(0o644)
    app_node.start()
    assert stat.S_IMODE(app_node.data_dir.stat().st_mode) == 0o700
    for path in app_node.data_dir.glob("metadata.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
