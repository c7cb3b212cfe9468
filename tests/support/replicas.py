"""What tests and benchmarks use of a cluster's block replicas (docs/architecture.md, "Block replicas"): fast
membership settings, the nodes' states as one node sees them, writing a file in blocks and reading it back, the
referenced blocks short of copies and the files stored as one blob (straight from the PostgreSQL metadata
store), and a node's block metrics."""

from __future__ import annotations

import aiohttp
import asyncpg

from callfs.node import Node
from support.http import session
from support.node import NodeSpec

FAST = {"heartbeat_interval": 0.3, "node_timeout": 2, "forward_connect_timeout": 1}
"""``instance_discovery`` of clusters whose node losses must be seen within seconds."""


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
    """The bytes of ``path`` (asserting a 200)."""
    async with http.get(f"/v1/files{path}") as response:
        assert response.status == 200, await response.text()
        return await response.read()


async def node_states(node: NodeSpec) -> dict[str, str]:
    """``{instance_id: state}`` (``up``, ``down``...) of the cluster's nodes as ``node`` sees them
    (``GET /v1/cluster/nodes`` as ``root``)."""
    async with session(node, "root") as http, http.get("/v1/cluster/nodes") as response:
        return {n["instance_id"]: n["state"] for n in (await response.json())["nodes"] if n["instance_id"]}


async def blob_owners(dsn: str) -> dict[str, str | None]:
    """``{path: instance_id}`` of the files whose bytes are one blob, from the metadata store at ``dsn``
    (``None``: on S3)."""
    conn = await asyncpg.connect(dsn)
    try:
        # Every entry with its path, from the root's (named '') down.
        rows = await conn.fetch(
            "WITH RECURSIVE t (path, ino, type, layout, blob_id, instance_id) AS (SELECT name, ino, type, layout, "
            "blob_id, instance_id FROM inodes WHERE parent_ino = 0 AND name = '' UNION ALL SELECT t.path || '/' || "
            "e.name, e.ino, e.type, e.layout, e.blob_id, e.instance_id FROM t JOIN inodes e ON e.parent_ino = t.ino "
            "WHERE t.type = 'directory') SELECT path, instance_id FROM t WHERE type = 'file' AND layout = 'blob' "
            "AND blob_id IS NOT NULL"
        )
        return {r["path"]: r["instance_id"] for r in rows}
    finally:
        await conn.close()


async def under_replicated(dsn: str, live: list[str], want: int) -> int:
    """Referenced blocks with fewer than ``want`` copies on the ``live`` nodes (instance ids), from the metadata
    store at ``dsn`` (tables ``blocks`` and ``block_replicas``)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM blocks b WHERE b.refs > 0 AND (SELECT count(*) FROM block_replicas r "
            "WHERE r.backend = b.backend AND r.location = b.location AND r.hash = b.hash "
            "AND r.node = ANY($1::text[])) < $2", live, want,
        ))
    finally:
        await conn.close()


async def metric(node: NodeSpec, name: str) -> float:
    """The value of the sample ``name{backend="localfs"}`` on the node's ``/metrics`` (read as ``root``); 0 when
    the node exports none yet."""
    async with session(node, "root") as http, http.get("/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(f'{name}{{backend="localfs"}}'):
            return float(line.split()[-1])
    return 0.0


async def collect(node: Node) -> int:
    """One block collection on the in-process ``node`` with no grace period left; how many blocks it freed."""
    node.engine.block_files.grace = 0
    return await node.engine.collect_blocks()


async def location_rows(dsn: str, instance_id: str) -> tuple[int, int, int]:
    """From the metadata store at ``dsn``: the ``blocks`` rows at node ``instance_id``'s location, the
    ``block_replicas`` rows at its location, and those at its location or naming it as the holder of a copy."""
    conn = await asyncpg.connect(dsn)
    try:
        return (
            int(await conn.fetchval("SELECT count(*) FROM blocks WHERE location = $1", instance_id)),
            int(await conn.fetchval("SELECT count(*) FROM block_replicas WHERE location = $1", instance_id)),
            int(await conn.fetchval(
                "SELECT count(*) FROM block_replicas WHERE location = $1 OR node = $1", instance_id)),
        )
    finally:
        await conn.close()
