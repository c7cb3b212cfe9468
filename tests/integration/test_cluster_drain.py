"""Draining a node before removing it (callfs.drain) in a cluster of three node subprocesses sharing PostgreSQL and
Redis: once the node reports ``drained``, it can be SIGKILLed and every file reads back intact from the two that
stay, each block with its two copies there. Only root drains, and only registered nodes."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import aiohttp
import asyncpg

from callfs.blocks.layout import BLOCK_SIZE
from callfs.replication import VIEW_SECONDS
from support.http import session
from support.node import new_auth_section, postgres_redis_sections
from support.replicas import (
    FAST,
    blob_owners,
    collect,
    content,
    location_rows,
    node_states,
    put_in_blocks,
    under_replicated,
)
from support.waiting import wait_for_async

DRAIN = "/v1/cluster/nodes/{}/drain"


async def drain(http: aiohttp.ClientSession, method: str, node: str) -> tuple[int, Any]:
    """``method`` on node ``node``'s drain route: ``(status, JSON body or None)``."""
    async with http.request(method, DRAIN.format(node)) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body



async def copies_on(dsn: str, node: str, block_hash: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM block_replicas WHERE node = $1 AND hash = $2",
                                       node, block_hash))
    finally:
        await conn.close()


async def test_only_root_drains_a_registered_node_and_a_cancel_ends_it(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, _ = cluster_factory(2, backend={"replicas": 2}, instance_discovery=FAST)
    async with session(a, "root") as root, session(a) as user:
        assert (await drain(user, "POST", "node-1"))[0] == 403
        assert (await drain(user, "GET", "node-1"))[0] == 403
        assert (await drain(user, "DELETE", "node-1"))[0] == 403
        status, body = await drain(root, "POST", "node-9")
        assert status == 404 and "node-9" in body["message"]
        assert (await drain(root, "GET", "node-1"))[0] == 404  # registered, not being drained
        status, body = await drain(root, "POST", "node-1")
        assert status == 202
        assert body == {"instance_id": "node-1", "state": "drained", "blocks_left": 0, "files_left": 0}
        assert (await drain(root, "POST", "node-1"))[0] == 202  # again: the same
        async with root.get("/v1/cluster/nodes") as response:
            leaving = {n["instance_id"]: n["leaving"] for n in (await response.json())["nodes"]}
        assert leaving == {"node-0": False, "node-1": True}
        assert (await drain(root, "DELETE", "node-1"))[0] == 204
        assert (await drain(root, "GET", "node-1"))[0] == 404
        assert (await drain(root, "DELETE", "node-1"))[0] == 204  # not leaving: 204 too


async def test_a_drained_node_can_be_killed_without_losing_a_file_or_a_copy(  # type: ignore[no-untyped-def]
    cluster_factory, postgres_dsn: str
) -> None:
    # A long grace: the copies the test sees made are the drain's, not a repair of a dead node. Whole writes are
    # kept as one blob on their node (whole_files_in_blocks off, as for files written before replication).
    backend: dict[str, Any] = {"replicas": 2, "replica_repair_grace": 600, "replica_repair_interval": 0.5,
                               "whole_files_in_blocks": False}
    a, b, c = cluster_factory(3, backend=backend, instance_discovery=FAST)
    files: dict[str, bytes] = {}
    async with session(a) as on_a, session(b) as on_b, session(c) as on_c:
        for i, http in enumerate((on_a, on_b, on_c, on_c)):
            files[f"/d/blocks{i}.bin"] = os.urandom(BLOCK_SIZE + 1000 * (i + 1))  # two blocks each
            assert (await put_in_blocks(http, f"/d/blocks{i}.bin", files[f"/d/blocks{i}.bin"])).status == 200
        # Whole PUTs: one blob on the disk of the node that took them.
        for name, http, data in (("c1.txt", on_c, b"held by node-2 only"), ("c2.bin", on_c, os.urandom(300_000)),
                                 ("empty", on_c, b""), ("a.txt", on_a, b"held by node-0")):
            files[f"/d/{name}"] = data
            async with http.put(f"/v1/files/d/{name}", data=data) as response:
                assert response.status == 201, await response.text()
    owners = await blob_owners(postgres_dsn)
    assert owners["/d/c1.txt"] == "node-2" and owners["/d/a.txt"] == "node-0"

    async with session(a, "root") as root:
        status, body = await drain(root, "POST", "node-2")
        assert status == 202 and body["instance_id"] == "node-2"
        assert body["files_left"] >= 2

        # A node being drained gets no copy of a new block, once the nodes' membership view is renewed (a copy
        # placed there before that is copied again by the drain, like any other).
        await asyncio.sleep(VIEW_SECONDS + 0.5)
        later = os.urandom(100_000)  # one block, named by its SHA-256
        files["/d/later.bin"] = later
        assert (await put_in_blocks(root, "/d/later.bin", later)).status == 200
        assert await copies_on(postgres_dsn, "node-2", hashlib.sha256(later).hexdigest()) == 0

        async def drained() -> bool:
            status, body = await drain(root, "GET", "node-2")
            assert status == 200, body
            return bool(body["state"] == "drained")

        await wait_for_async(drained, 60, "node-2 to report drained", 0.5)
        status, body = await drain(root, "GET", "node-2")
        assert body == {"instance_id": "node-2", "state": "drained", "blocks_left": 0, "files_left": 0}
    owners = await blob_owners(postgres_dsn)
    assert "node-2" not in owners.values()
    assert owners["/d/a.txt"] == "node-0"  # files of the nodes that stay do not move
    assert await under_replicated(postgres_dsn, ["node-0", "node-1"], 2) == 0

    c.kill()
    async with session(a) as on_a, session(b) as on_b:
        for http in (on_a, on_b):
            for path, data in files.items():
                assert await content(http, path) == data, path
        # A file in blocks that node-2 owned is still written to with node-2 gone.
        headers = {"Content-Range": "bytes 0-4/*"}
        async with on_b.put("/v1/files/d/blocks2.bin", data=b"after", headers=headers) as response:
            assert response.status == 200, await response.text()
        assert await content(on_a, "/d/blocks2.bin") == b"after" + files["/d/blocks2.bin"][5:]
    assert await under_replicated(postgres_dsn, ["node-0", "node-1"], 2) == 0


async def test_the_blocks_of_a_drained_node_gone_down_are_collected_by_a_node_that_stays(  # type: ignore[no-untyped-def]
    request, app_node_factory
) -> None:
    """A location's blocks are collected by its own node; once that node was drained and went down for good, the
    first node that stays adopts them: unreferenced blocks lose every reachable copy and every row, the departed
    node's row included (its disk went with it)."""
    shared = {"auth": new_auth_section(), **postgres_redis_sections(request)}
    a, b, c = (app_node_factory(**shared, backend={"replicas": 2, "replica_repair_interval": 0.5},
                                instance_discovery={**FAST, "instance_id": f"node-{i}"}) for i in range(3))

    async def all_up() -> bool:
        return sorted((await node_states(a)).values()) == ["up", "up", "up"]

    await wait_for_async(all_up, 15, "node-0 to see three nodes up")
    async with session(c) as on_c:
        assert (await put_in_blocks(on_c, "/from-c.bin", os.urandom(BLOCK_SIZE + 10))).status == 200
    async with session(a, "root") as root:
        assert (await drain(root, "POST", "node-2"))[0] == 202

        async def drained() -> bool:
            status, body = await drain(root, "GET", "node-2")
            return status == 200 and body["state"] == "drained"

        await wait_for_async(drained, 30, "node-2 drained", 0.3)
    c.stop()

    async def c_down() -> bool:
        return (await node_states(a)).get("node-2") == "down"

    await wait_for_async(c_down, 15, "node-2 seen down")
    await asyncio.sleep(VIEW_SECONDS)  # node-0's membership view renewed
    async with session(a) as on_a, on_a.delete("/v1/files/from-c.bin") as response:
        assert response.status == 204

    assert b.run(collect) == 0  # node-1 is not the first node that stays: it adopts nothing
    assert a.run(collect) == 2
    blocks, replicas, _ = await location_rows(shared["metadata_store"]["dsn"], "node-2")
    assert (blocks, replicas) == (0, 0)
    for node in (a, b):
        assert not list((node.data_dir / "blobs" / "replicas" / "node-2" / "objects").glob("*/*"))
