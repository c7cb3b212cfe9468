"""Forgetting a node that went down for good without a drain (callfs.drain, ``/v1/cluster/nodes/{id}/forget``) in a
cluster of three node subprocesses sharing PostgreSQL and Redis: refused while its heartbeat is recent, then the
node is lost: repair copies its blocks at once (no grace period), every file in blocks reads back intact, no row
names it any more, its blob files are reported lost, and it may not register again."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import asyncpg
import pytest

from callfs.blocks.layout import BLOCK_SIZE
from callfs.client import CallFSClient
from callfs.errors import NodeLive
from callfs.replication import VIEW_SECONDS
from support.http import session
from support.node import new_auth_section, postgres_redis_sections
from support.replicas import FAST, collect, content, location_rows, node_states, put_in_blocks, under_replicated
from support.waiting import wait_for_async

FORGET = "/v1/cluster/nodes/{}/forget"


async def forget(http: aiohttp.ClientSession, method: str, node: str) -> tuple[int, Any]:
    """``method`` on node ``node``'s forget route: ``(status, JSON body or None)``."""
    async with http.request(method, FORGET.format(node)) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


async def rows_naming(dsn: str, node: str) -> int:
    """``block_replicas`` rows naming ``node`` as a holder."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM block_replicas WHERE node = $1", node))
    finally:
        await conn.close()


async def test_a_node_lost_for_good_is_forgotten_and_its_blocks_get_their_copies_back(  # type: ignore[no-untyped-def]
    cluster_factory, postgres_dsn: str
) -> None:
    # A grace period far longer than the test: the copies made are those of the forget, not of a dead node's
    # repair. Whole writes stay one blob on their node (whole_files_in_blocks off).
    backend: dict[str, Any] = {"replicas": 2, "replica_repair_grace": 600, "replica_repair_interval": 0.5,
                               "whole_files_in_blocks": False}
    a, b, c = cluster_factory(3, backend=backend, instance_discovery=FAST)
    files: dict[str, bytes] = {}
    async with session(a) as on_a, session(b) as on_b, session(c) as on_c:
        for i, http in enumerate((on_a, on_b, on_c, on_c)):
            files[f"/d/blocks{i}.bin"] = os.urandom(BLOCK_SIZE + 1000 * (i + 1))  # two blocks each
            assert (await put_in_blocks(http, f"/d/blocks{i}.bin", files[f"/d/blocks{i}.bin"])).status == 200
        async with on_c.put("/v1/files/d/only-on-c.txt", data=b"one blob on node-2's disk") as response:
            assert response.status == 201, await response.text()
    assert await rows_naming(postgres_dsn, "node-2") > 0

    c.kill()
    async with session(a, "root") as root, session(a) as user:
        # Its heartbeat is still recent (node timeout 2 s): a node that may be running is never forgotten.
        status, body = await forget(root, "POST", "node-2")
        assert status == 409 and body["code"] == "NODE_LIVE", body
        status, body = await forget(root, "POST", "node-0")  # the node answering is live
        assert status == 409 and body["code"] == "NODE_LIVE", body
        assert (await forget(user, "POST", "node-2"))[0] == 403
        assert (await forget(user, "GET", "node-2"))[0] == 403
        status, body = await forget(root, "POST", "node-9")
        assert status == 404 and "node-9" in body["message"]
        assert (await forget(root, "GET", "node-2"))[0] == 404  # registered, not lost

        async def forgotten() -> bool:
            status, body = await forget(root, "POST", "node-2")
            assert status in (200, 409), body
            return status == 200

        await wait_for_async(forgotten, 15, "node-2 to be forgotten once its heartbeat is old", 0.3)
        status, body = await forget(root, "GET", "node-2")
        assert status == 200 and body["state"] == "lost" and body["instance_id"] == "node-2"
        assert body["files_lost"] == 1 and body["lost_files"] == ["/d/only-on-c.txt"]
        assert (await forget(root, "POST", "node-2"))[0] == 200  # again: the same

        # Repair copies node-2's blocks at once (the grace period is 600 s), then drops its rows.
        async def restored() -> bool:
            return (await under_replicated(postgres_dsn, ["node-0", "node-1"], 2) == 0
                    and await rows_naming(postgres_dsn, "node-2") == 0)

        await wait_for_async(restored, 60, "every block back at two copies, no row naming node-2", 0.5)
        async with CallFSClient(a.url, a.key_for("root")) as client:
            info = await client.lost_node("node-2")
            assert (info.block_copies, info.blocks_left, info.files_lost) == (0, 0, 1), info
            assert (await client.forget_node("node-2")).lost_files == ("/d/only-on-c.txt",)
            with pytest.raises(NodeLive):
                await client.forget_node("node-1")

        # A cancelled drain does not bring a lost node back.
        async with root.delete("/v1/cluster/nodes/node-2/drain") as response:
            assert response.status == 204
        assert (await forget(root, "GET", "node-2"))[0] == 200
        async with root.get("/v1/cluster/nodes") as response:
            leaving = {n["instance_id"]: n["leaving"] for n in (await response.json())["nodes"]}
        assert leaving["node-2"] is True

    async with session(a) as on_a, session(b) as on_b:
        for http in (on_a, on_b):
            for path, data in files.items():
                assert await content(http, path) == data, path
            # The lost blob's metadata stays; its bytes cannot be read (its node does not answer, as before).
            async with http.get("/v1/files/d/only-on-c.txt") as response:
                assert response.status == 502, await response.text()
        # New writes never place a copy on the lost node.
        assert (await put_in_blocks(on_b, "/d/after.bin", os.urandom(BLOCK_SIZE + 10))).status == 200
        assert await content(on_a, "/d/after.bin") == await content(on_b, "/d/after.bin")
        # The lost file can be deleted.
        async with on_a.delete("/v1/files/d/only-on-c.txt") as response:
            assert response.status == 204, await response.text()
    assert await rows_naming(postgres_dsn, "node-2") == 0
    assert await under_replicated(postgres_dsn, ["node-0", "node-1"], 2) == 0

    # A lost node may not come back under its instance id.
    with pytest.raises(RuntimeError, match="declared lost"):
        c.start()


async def test_the_blocks_of_a_forgotten_node_are_collected_by_a_node_that_stays(  # type: ignore[no-untyped-def]
    request, app_node_factory
) -> None:
    """A lost node's location is adopted like a drained node's: its unreferenced blocks lose every reachable copy
    and every row, the lost node's included, collected by the first node that stays."""
    shared = {"auth": new_auth_section(), **postgres_redis_sections(request)}
    a, b, c = (app_node_factory(**shared, backend={"replicas": 2, "replica_repair_interval": 0.5},
                                instance_discovery={**FAST, "instance_id": f"node-{i}"}) for i in range(3))

    async def all_up() -> bool:
        return sorted((await node_states(a)).values()) == ["up", "up", "up"]

    await wait_for_async(all_up, 15, "node-0 to see three nodes up")
    async with session(c) as on_c:
        assert (await put_in_blocks(on_c, "/from-c.bin", os.urandom(BLOCK_SIZE + 10))).status == 200
    c.stop()
    async with session(a, "root") as root:

        async def forgotten() -> bool:
            return (await forget(root, "POST", "node-2"))[0] == 200

        await wait_for_async(forgotten, 15, "node-2 forgotten once seen down", 0.3)
    await asyncio.sleep(VIEW_SECONDS)  # node-0's membership view renewed
    async with session(a) as on_a, on_a.delete("/v1/files/from-c.bin") as response:
        assert response.status == 204

    assert b.run(collect) == 0  # node-1 is not the first node that stays: it adopts nothing
    assert a.run(collect) == 2
    blocks, _, replicas = await location_rows(shared["metadata_store"]["dsn"], "node-2")
    assert (blocks, replicas) == (0, 0)
    for node in (a, b):
        assert not list((node.data_dir / "blobs" / "replicas" / "node-2" / "objects").glob("*/*"))
