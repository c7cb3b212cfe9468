"""The permission model is enforced (docs/rest-api.md, "Permissions"), on both metadata stores."""

from __future__ import annotations

from support.app_node import AppNode
from support.http import session


async def test_others_can_read_but_not_write_a_0644_file(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "api-user-0") as other:
        async with alice.put("/v1/files/common/doc.txt", data=b"mine") as response:
            assert response.status == 201
        async with other.get("/v1/files/common/doc.txt") as response:
            assert response.status == 200
        async with other.put("/v1/files/common/doc.txt", data=b"theirs") as response:
            assert response.status == 403
        async with other.put("/v1/files/common/new.txt", data=b"x") as response:
            assert response.status == 403  # /shared is 0755 and owned by alice
        async with other.delete("/v1/files/common/doc.txt") as response:
            assert response.status == 403
        async with alice.get("/v1/files/common/doc.txt") as response:
            assert await response.read() == b"mine"


async def test_mode_0600_hides_content_but_not_existence(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "api-user-0") as other:
        async with alice.put("/v1/files/secret.txt", data=b"s") as response:
            assert response.status == 201
        async with alice.patch("/v1/files/secret.txt", json={"mode": "0600"}) as response:
            assert response.status == 200
        async with other.get("/v1/files/secret.txt") as response:
            assert response.status == 403
        async with other.head("/v1/files/secret.txt") as response:
            assert response.status == 200
        async with other.post("/v1/links/generate", json={"path": "/secret.txt", "expiry_seconds": 60}) as r:
            assert r.status == 403


async def test_group_bits_apply_to_group_members(api_node: AppNode) -> None:
    # The test config puts bob in group "alice"; alice's entries get group "alice".
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob, \
            session(api_node, "api-user-0") as other:
        async with alice.post("/v1/files/team/") as response:
            assert response.status == 201
        async with alice.patch("/v1/files/team", json={"mode": "0770"}) as response:
            assert response.status == 200
        async with bob.put("/v1/files/team/bob.txt", data=b"b") as response:
            assert response.status == 201
        async with other.get("/v1/files/team/") as response:
            assert response.status == 403


async def test_sticky_root_protects_entries_of_others(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob, \
            session(api_node, "root") as root:
        async with alice.put("/v1/files/alice-top.txt", data=b"a") as response:
            assert response.status == 201
        async with bob.delete("/v1/files/alice-top.txt") as response:
            assert response.status == 403
        async with bob.patch("/v1/files/alice-top.txt", json={"name": "stolen.txt"}) as response:
            assert response.status == 403
        async with bob.put("/v1/files/bob-top.txt", data=b"b") as response:
            assert response.status == 201  # the root is 1777: anyone may create
        async with root.delete("/v1/files/alice-top.txt") as response:
            assert response.status == 204


async def test_recursive_delete_needs_permission_on_every_level(api_node: AppNode) -> None:
    async with session(api_node, "alice") as alice, session(api_node, "bob") as bob:
        async with bob.post("/v1/files/bobs/") as response:
            assert response.status == 201
        async with bob.patch("/v1/files/bobs", json={"mode": "0777"}) as response:
            assert response.status == 200
        async with alice.post("/v1/files/bobs/alices/") as response:
            assert response.status == 201
        async with alice.put("/v1/files/bobs/alices/file", data=b"x") as response:
            assert response.status == 201
        async with bob.delete("/v1/files/bobs?recursive=true") as response:
            assert response.status == 403  # /bobs/alices is alice's 0755 directory
        async with alice.get("/v1/files/bobs/alices/file") as response:
            assert response.status == 200
