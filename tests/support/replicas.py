"""Helpers of the tests of block replicas in clusters of node subprocesses (replication, repair, drain)."""

from __future__ import annotations

import aiohttp
import asyncpg

FAST = {"heartbeat_interval": 0.3, "node_timeout": 2, "forward_connect_timeout": 1}


async def put_in_blocks(http: aiohttp.ClientSession, path: str, data: bytes) -> aiohttp.ClientResponse:
    """Create ``path`` empty, then write ``data`` into it with a ranged PUT (stored in blocks); the second
    answer."""
    async with http.put(f"/v1/files{path}", data=b"") as response:
        assert response.status in (200, 201), await response.text()
    headers = {"Content-Range": f"bytes 0-{len(data) - 1}/*"}
    async with http.put(f"/v1/files{path}", data=data, headers=headers) as response:
        await response.read()
        return response


async def content(http: aiohttp.ClientSession, path: str) -> bytes:
    async with http.get(f"/v1/files{path}") as response:
        assert response.status == 200, await response.text()
        return await response.read()


async def under_replicated(dsn: str, live: list[str], want: int) -> int:
    """Referenced blocks with fewer than ``want`` copies on the ``live`` nodes, from the metadata store."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM blocks b WHERE b.refs > 0 AND (SELECT count(*) FROM block_replicas r "
            "WHERE r.backend = b.backend AND r.location = b.location AND r.hash = b.hash "
            "AND r.node = ANY($1::text[])) < $2", live, want,
        ))
    finally:
        await conn.close()
