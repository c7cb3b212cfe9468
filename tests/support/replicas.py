"""What tests and benchmarks read of a cluster's block replicas (docs/architecture.md, "Block replicas"): the
referenced blocks short of copies, straight from the PostgreSQL metadata store, and a node's block metrics."""

from __future__ import annotations

import asyncpg

from support.http import session
from support.node import NodeSpec


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
