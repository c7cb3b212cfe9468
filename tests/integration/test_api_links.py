"""Single-use links end to end: generate, download once, expiry, forgery."""

from __future__ import annotations

import asyncio

import aiohttp

from support.app_node import AppNode
from support.http import session


async def generate(http: aiohttp.ClientSession, path: str, expiry: object = 60) -> aiohttp.ClientResponse:
    async with http.post("/v1/links/generate", json={"path": path, "expiry_seconds": expiry}) as response:
        await response.read()
        return response


async def test_link_downloads_once(api_node: AppNode) -> None:
    async with session(api_node) as http, session(api_node, None) as anonymous:
        async with http.put("/v1/files/dl/report é.pdf", data=b"%PDF-data") as response:
            assert response.status == 201
        async with http.post("/v1/links/generate", json={"path": "/dl/report é.pdf", "expiry_seconds": 60}) as r:
            assert r.status == 201
            body = await r.json()
        assert body["url"] == f"{api_node.url}/download/{body['token']}"
        assert body["expires"].endswith("Z")
        async with anonymous.get(f"/download/{body['token']}") as response:
            assert response.status == 200
            assert await response.read() == b"%PDF-data"
            assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''report%20%C3%A9.pdf"
        async with anonymous.get(f"/download/{body['token']}") as response:
            assert response.status == 410
            assert (await response.json())["code"] == "LINK_EXPIRED"


async def test_concurrent_downloads_of_one_link_succeed_once(api_node: AppNode) -> None:
    async with session(api_node) as http, session(api_node, None) as anonymous:
        async with http.put("/v1/files/once.bin", data=b"1" * 1000) as response:
            assert response.status == 201
        async with http.post("/v1/links/generate", json={"path": "/once.bin", "expiry_seconds": 60}) as r:
            token = (await r.json())["token"]

        async def fetch() -> int:
            async with anonymous.get(f"/download/{token}") as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(fetch() for _ in range(10)))
        assert sorted(statuses) == [200] + [410] * 9


async def test_link_errors(api_node: AppNode) -> None:
    async with session(api_node) as http, session(api_node, None) as anonymous:
        async with http.put("/v1/files/le.txt", data=b"x") as response:
            assert response.status == 201
        async with http.post("/v1/files/ldir/") as response:
            assert response.status == 201
        assert (await generate(http, "/ldir")).status == 400
        assert (await generate(http, "/missing")).status == 404
        for expiry in (0, 86401, -5, "60", 1.5, True, None):
            assert (await generate(http, "/le.txt", expiry)).status == 400, expiry
        async with http.post("/v1/links/generate", data=b"{oops") as response:
            assert response.status == 400
        async with http.post("/v1/links/generate", json={"expiry_seconds": 5}) as response:
            assert response.status == 400
        async with anonymous.post("/v1/links/generate", json={"path": "/le.txt", "expiry_seconds": 5}) as r:
            assert r.status == 401
        async with http.post("/v1/links/generate", json={"path": "/le.txt", "expiry_seconds": 60}) as r:
            token = (await r.json())["token"]
        token_id, signature = token.split(".")
        forged = f"{token_id}.{'A' * len(signature)}"
        async with anonymous.get(f"/download/{forged}") as response:
            assert response.status == 410
        async with anonymous.get(f"/download/{'B' * 22}.{signature}") as response:
            assert response.status == 404
        async with anonymous.get("/download/garbage") as response:
            assert response.status == 404
        async with anonymous.head(f"/download/{token}") as response:
            assert response.status == 405  # HEAD must not burn the token
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 200


async def test_expired_link_is_410(api_node: AppNode) -> None:
    async with session(api_node) as http, session(api_node, None) as anonymous:
        async with http.put("/v1/files/exp.txt", data=b"x") as response:
            assert response.status == 201
        async with http.post("/v1/links/generate", json={"path": "/exp.txt", "expiry_seconds": 1}) as r:
            token = (await r.json())["token"]
        api_node.clock.advance(1.2)
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 410


async def test_link_to_a_missing_file_is_404_and_stays_unused(api_node: AppNode) -> None:
    async with session(api_node) as http, session(api_node, None) as anonymous:
        async with http.put("/v1/files/del.txt", data=b"x") as response:
            assert response.status == 201
        async with http.post("/v1/links/generate", json={"path": "/del.txt", "expiry_seconds": 60}) as r:
            token = (await r.json())["token"]
        async with http.patch("/v1/files/del.txt", json={"name": "away.txt"}) as response:
            assert response.status == 200
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 404
        async with http.patch("/v1/files/away.txt", json={"name": "del.txt"}) as response:
            assert response.status == 200
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 200  # the failed attempt did not burn the link
            assert await response.read() == b"x"


async def test_link_to_a_deleted_and_recreated_file_is_410(api_node: AppNode) -> None:
    async with session(api_node) as http, session(api_node, None) as anonymous:
        async with http.put("/v1/files/del.txt", data=b"x") as response:
            assert response.status == 201
        async with http.post("/v1/links/generate", json={"path": "/del.txt", "expiry_seconds": 60}) as r:
            token = (await r.json())["token"]
        async with http.delete("/v1/files/del.txt") as response:
            assert response.status == 204
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 404
        async with http.put("/v1/files/del.txt", data=b"again") as response:
            assert response.status == 201
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 410  # other content now: never served through this link
            assert (await response.json())["code"] == "LINK_CONTENT_CHANGED"

