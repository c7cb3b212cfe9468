"""Converting the blob files of a cluster to blocks (``POST``/``GET /v1/cluster/convert``, callfs.convert) with
node subprocesses sharing PostgreSQL and Redis: every node converts the blobs on its own disk, one node those on
S3; afterwards every file reads back byte-identical with the same ETag from either node, the report shows nothing
left, and each block of the local-disk backend has its two copies."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import asyncpg
from test_cluster_s3 import s3_section

from support.http import session
from support.node import NodeProcess
from support.replicas import FAST, blob_owners, content
from support.s3 import S3Server


async def copies_per_block(dsn: str) -> list[int]:
    """The number of nodes holding a copy of each referenced block of the local-disk backend."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT (SELECT count(*) FROM block_replicas r WHERE r.backend = b.backend AND r.location = b.location "
            "AND r.hash = b.hash) AS n FROM blocks b WHERE b.refs > 0 AND b.backend = 'localfs'")
        return [int(r["n"]) for r in rows]
    finally:
        await conn.close()


async def report(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/v1/cluster/convert") as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def wait_done(http: aiohttp.ClientSession, timeout: float = 60) -> dict[str, Any]:
    """The cluster report once nothing is left and no node runs a pass."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await report(http)
        if found["remaining_files"] == 0 and not any(n["running"] for n in found["nodes"]):
            return found
        assert asyncio.get_running_loop().time() < deadline, f"conversion not done after {timeout}s: {found}"
        await asyncio.sleep(0.3)


async def test_the_cluster_route_converts_the_blob_files_of_every_node_with_their_copies(  # type: ignore[no-untyped-def]
    cluster_factory, postgres_dsn: str, s3_server: S3Server, s3_bucket: str
) -> None:
    # Whole writes kept as one blob on their node (as before replication, or by an older version).
    backend = {**s3_section(s3_server, s3_bucket, default_backend="localfs"), "replicas": 2,
               "whole_files_in_blocks": False, "convert_bytes_per_second": 64 << 20}
    nodes: list[NodeProcess] = cluster_factory(2, backend=backend, instance_discovery=FAST)
    files: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    for i, node in enumerate(nodes):
        async with session(node) as http:
            for j in range(3):
                path = f"/n{i}/f{j}.bin"
                files[path] = os.urandom(5 << 20 if j == 0 else 50_000 + j)
                async with http.put(f"/v1/files{path}", data=files[path]) as response:
                    assert response.status == 201, await response.text()
            path = f"/n{i}/s3.bin"
            files[path] = os.urandom(70_000)
            async with http.put(f"/v1/files{path}", data=files[path], headers={"X-CallFS-Backend": "s3"}) as r:
                assert r.status == 201, await r.text()
    owners = await blob_owners(postgres_dsn)
    assert sorted(owners.values(), key=str) == sorted(["node-0"] * 3 + ["node-1"] * 3 + [None, None], key=str)
    async with session(nodes[1]) as http:
        for path in files:
            async with http.head(f"/v1/files{path}") as response:
                etags[path] = response.headers["ETag"]

    async with session(nodes[0], "root") as root, session(nodes[0]) as user:
        async with user.post("/v1/cluster/convert") as response:
            assert response.status == 403
        before = await report(root)
        assert before["remaining_files"] == 8
        assert {n["instance_id"]: n["remaining_files"] for n in before["nodes"]} == {"node-0": 5, "node-1": 3}
        async with root.post("/v1/cluster/convert") as response:
            assert response.status == 202, await response.text()
            started = await response.json()
        assert {n["instance_id"] for n in started["nodes"]} == {"node-0", "node-1"}
        done = await wait_done(root)
    assert done["remaining_bytes"] == 0 and done["failures"] == 0
    assert done["converted_files"] == 8 and done["converted_bytes"] == sum(len(d) for d in files.values())
    assert all(n["reachable"] and n["passes"] == 1 for n in done["nodes"])
    assert await blob_owners(postgres_dsn) == {}

    for node in nodes:
        async with session(node) as http:
            for path, data in files.items():
                assert await content(http, path) == data, path
                async with http.head(f"/v1/files{path}") as response:
                    assert response.headers["ETag"] == etags[path], path
    copies = await copies_per_block(postgres_dsn)
    assert len(copies) == 2 * (2 + 1 + 1)  # per node: a 5 MiB file is two blocks, two small ones
    assert set(copies) == {2}
    # The old blobs are gone from the disks (blocks have 64-digit names).
    for node in nodes:
        assert not [p for p in (node.data_dir / "blobs" / "objects").glob("*/*") if len(p.name) == 32]

    # A node that does not answer is reported as such, its remaining files counted from the metadata store.
    nodes[1].kill()
    async with session(nodes[0], "root") as root:
        found = {n["instance_id"]: n for n in (await report(root))["nodes"]}
    assert found["node-0"]["reachable"] and found["node-0"]["remaining_files"] == 0
    gone = found["node-1"]
    assert not gone["reachable"] and gone["running"] is None and gone["remaining_files"] == 0 and gone["error"]
