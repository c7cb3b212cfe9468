"""Availability under hostile or unlucky conditions: deep paths, idle connections, malformed HTTP, a full disk,
and permission checks before forwarding to a dead node."""

from __future__ import annotations

import asyncio
import time

from support.app_node import AppNode
from support.http import session

# --- path depth ----------------------------------------------------------------------------------------------


async def test_a_path_deeper_than_256_segments_is_400_and_creates_nothing(api_node: AppNode) -> None:
    async with session(api_node) as http:
        async with http.put("/v1/files/" + "d/" * 300 + "f.txt", data=b"x") as response:
            assert response.status == 400
            body = await response.json()
            assert body["code"] == "BAD_REQUEST"
            assert "256" in body["message"]
        async with http.get("/v1/directories/d") as response:
            assert response.status == 404


async def test_creating_256_levels_of_parents_is_quick_and_does_not_block_other_writes(api_node: AppNode) -> None:
    async with session(api_node) as http:
        started = time.monotonic()
        deep = asyncio.create_task(http.put("/v1/files/" + "d/" * 255 + "f.txt", data=b"deep"))
        async with http.put("/v1/files/other.txt", data=b"other") as response:
            assert response.status == 201
        async with await deep as response:
            assert response.status == 201, await response.text()
        assert time.monotonic() - started < 5
        async with http.get("/v1/files/" + "d/" * 255 + "f.txt") as response:
            assert await response.read() == b"deep"
