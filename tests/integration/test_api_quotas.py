"""Directory quotas through the API on both metadata stores: limits, usage accounting, nesting, refusals."""

from __future__ import annotations

import aiohttp
import pytest

from support.app_node import AppNode
from support.http import session


async def usage(http: aiohttp.ClientSession, path: str) -> tuple[int, int]:
    async with http.get(f"/v1/quotas/{path}") as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    return body["bytes_used"], body["inodes_used"]


async def set_quota(http: aiohttp.ClientSession, path: str, **limits: int | None) -> int:
    async with http.put(f"/v1/quotas/{path}", json=limits) as response:
        await response.read()
        return response.status


async def status_of(response_cm) -> int:  # type: ignore[no-untyped-def]
    async with response_cm as response:
        await response.read()
        return int(response.status)


async def test_usage_follows_every_change(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        assert await status_of(http.put("/v1/files/q/pre-existing", data=b"12345")) == 201
        assert await set_quota(http, "q", bytes_limit=10_000, inodes_limit=100) == 201
        assert await usage(http, "q") == (5, 1)
        assert await status_of(http.put("/v1/files/q/a/b/new", data=b"x" * 100)) == 201  # + dirs a, a/b
        assert await usage(http, "q") == (105, 4)
        assert await status_of(http.put("/v1/files/q/a/b/new", data=b"x" * 40)) == 200  # truncate
        assert await usage(http, "q") == (45, 4)
        assert await status_of(http.post("/v1/files/q/emptydir/")) == 201
        assert await usage(http, "q") == (45, 5)
        assert await status_of(http.put("/v1/files/outside", data=b"y" * 7)) == 201
        assert await status_of(http.patch("/v1/files/outside", json={"destination": "/q/inside"})) == 200
        assert await usage(http, "q") == (52, 6)
        assert await status_of(http.patch("/v1/files/q/a", json={"destination": "/elsewhere"})) == 200
        assert await usage(http, "q") == (12, 3)
        assert await status_of(http.delete("/v1/files/q/pre-existing")) == 204
        assert await usage(http, "q") == (7, 2)
        assert await status_of(http.delete("/v1/files/elsewhere?recursive=true")) == 204
        assert await usage(http, "q") == (7, 2)


async def test_write_past_the_limit_is_507_and_leaves_nothing(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        assert await status_of(http.post("/v1/files/small/")) == 201
        assert await set_quota(http, "small", bytes_limit=1000) == 201
        assert await status_of(http.put("/v1/files/small/keep", data=b"k" * 600)) == 201
        async with http.put("/v1/files/small/big", data=b"b" * 500) as response:
            assert response.status == 507
            assert (await response.json())["code"] == "QUOTA_EXCEEDED"

        async def unsized():  # no Content-Length: refused while streaming
            for _ in range(10):
                yield b"s" * 100

        assert await status_of(http.put("/v1/files/small/streamed", data=unsized())) == 507
        assert await status_of(http.put("/v1/files/small/keep", data=b"k" * 1001)) == 507
        async with http.get("/v1/files/small/keep") as response:
            assert await response.read() == b"k" * 600
        async with http.get("/v1/directories/small") as response:
            assert [i["name"] for i in (await response.json())["items"]] == ["keep"]
        assert await usage(http, "small") == (600, 1)
        assert await status_of(http.put("/v1/files/small/keep", data=b"k" * 1000)) == 200  # exactly at the limit
    blobs = [p for p in (api_node.data_dir / "blobs" / "objects").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert list((api_node.data_dir / "blobs" / "tmp").iterdir()) == []


async def test_nested_quotas_are_both_enforced(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        assert await status_of(http.post("/v1/files/outer/inner/")) == 201
        assert await set_quota(http, "outer", bytes_limit=1000) == 201
        assert await set_quota(http, "outer/inner", bytes_limit=5000, inodes_limit=2) == 201
        assert await status_of(http.put("/v1/files/outer/inner/a", data=b"a" * 900)) == 201
        assert await status_of(http.put("/v1/files/outer/inner/b", data=b"b" * 200)) == 507  # outer's limit
        assert await status_of(http.put("/v1/files/outer/inner/c", data=b"c")) == 201
        assert await status_of(http.put("/v1/files/outer/inner/d", data=b"")) == 507  # inner's inode limit
        assert await status_of(http.post("/v1/files/outer/inner/dir/")) == 507
        assert await status_of(http.patch("/v1/files/outer/inner/c", json={"destination": "/outer/c"})) == 200
        assert await usage(http, "outer") == (901, 3)
        assert await usage(http, "outer/inner") == (900, 1)


async def test_quota_headers_on_head_and_listings(api_node: AppNode) -> None:
    async with session(api_node, "root") as http:
        assert await status_of(http.put("/v1/files/h/file", data=b"1234")) == 201
        assert await set_quota(http, "h", bytes_limit=4096) == 201
        async with http.head("/v1/files/h/") as response:
            assert response.headers["X-CallFS-Quota-Bytes-Limit"] == "4096"
            assert response.headers["X-CallFS-Quota-Bytes-Used"] == "4"
            assert response.headers["X-CallFS-Quota-Inodes-Used"] == "1"
            assert "X-CallFS-Quota-Inodes-Limit" not in response.headers
        async with http.get("/v1/directories/h") as response:
            assert response.headers["X-CallFS-Quota-Bytes-Limit"] == "4096"
        async with http.get("/v1/files/h/") as response:
            assert response.headers["X-CallFS-Quota-Bytes-Used"] == "4"
        async with http.head("/v1/files/") as response:
            assert "X-CallFS-Quota-Bytes-Used" not in response.headers


@pytest.mark.parametrize(
    "body",
    [{"bytes_limit": 0}, {"bytes_limit": -1}, {"bytes_limit": 1.5}, {"bytes_limit": "10"}, {"bytes_limit": True},
     {"inodes_limit": 0}, {}, {"bytes_limit": None, "inodes_limit": None}, {"bytes_limit": 10, "extra": 1}],
)
async def test_bad_limits_are_400(app_node: AppNode, body: dict[str, object]) -> None:
    async with session(app_node, "root") as http:
        assert await status_of(http.post("/v1/files/d/")) == 201
        async with http.put("/v1/quotas/d", json=body) as response:
            assert response.status == 400
            assert (await response.json())["code"] == "BAD_REQUEST"
        assert await status_of(http.get("/v1/quotas/d")) == 404


async def test_quota_management_rules(api_node: AppNode) -> None:
    async with session(api_node, "root") as root, session(api_node, "alice") as alice:
        assert await status_of(alice.post("/v1/files/mine/")) == 201
        assert await set_quota(alice, "mine", bytes_limit=10) == 403
        assert await status_of(alice.get("/v1/quotas/mine")) == 404
        assert await set_quota(root, "mine", bytes_limit=10) == 201
        assert await set_quota(root, "mine", bytes_limit=20) == 200
        assert await status_of(alice.get("/v1/quotas/mine")) == 200
        assert await status_of(alice.delete("/v1/quotas/mine")) == 403
        assert await status_of(root.delete("/v1/quotas/mine")) == 204
        assert await status_of(root.delete("/v1/quotas/mine")) == 404
        assert await set_quota(root, "missing", bytes_limit=10) == 404
        assert await status_of(alice.put("/v1/files/afile", data=b"x")) == 201
        assert await set_quota(root, "afile", bytes_limit=10) == 400
        async with root.put("/v1/quotas/mine", data=b"{broken") as response:
            assert response.status == 400
