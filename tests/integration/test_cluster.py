"""Three storage nodes sharing one real PostgreSQL and one real Redis: membership, routing to the node that
owns the bytes, coherence of reads after writes, failure of a node, and the node-to-node trust rules. The nodes of
a cluster are subprocesses (``cluster_factory``); the one-node test of the peer listing serves its node in-process
(``support.app_node``).

Whole writes are kept as one blob on their owner here (:data:`BLOBS`): the layout whose bytes only their owner
serves, which these tests are about. A cluster stores whole writes in blocks with their copies by default; those,
read and written by any node, are tested in ``test_cluster_replicas.py``."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from support.app_node import AppNode
from support.http import session
from support.node import NodeProcess
from support.waiting import wait_for_async

BLOBS = {"whole_files_in_blocks": False}
"""The ``backend`` section of these clusters: whole writes stored as one blob on the node that wrote them."""


def blob_count(node: NodeProcess) -> int:
    return sum(1 for p in (node.data_dir / "blobs" / "objects").rglob("*") if p.is_file())


async def node_states(node: NodeProcess) -> dict[str, str]:
    async with session(node) as http, http.get("/v1/cluster/nodes") as response:
        assert response.status == 200
        body = await response.json()
    return {n["instance_id"]: n["state"] for n in body["nodes"] if n["instance_id"]}


async def test_nodes_register_and_see_each_other(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    nodes = cluster_factory(3, backend=BLOBS)
    for node in nodes:
        assert await node_states(node) == {"node-0": "up", "node-1": "up", "node-2": "up"}
    async with session(nodes[1]) as http, http.get("/v1/cluster/nodes") as response:
        body = await response.json()
    me = [n for n in body["nodes"] if n["self"]]
    assert [n["instance_id"] for n in me] == ["node-1"]
    assert me[0]["url"] == nodes[1].url and me[0]["capacity_bytes"] > 0 and me[0]["free_bytes"] > 0


async def test_bytes_are_served_by_any_node(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b, c = cluster_factory(3, backend=BLOBS)
    payload = random.randbytes(3 << 20)
    async with session(a) as on_a, session(b) as on_b, session(c) as on_c:
        async with on_a.put("/v1/files/common/data.bin", data=payload) as response:
            assert response.status == 201
        async with on_b.head("/v1/files/common/data.bin") as response:
            assert response.headers["X-CallFS-Instance-ID"] == "node-0"
        async with on_b.get("/v1/files/common/data.bin") as response:
            assert response.status == 200
            assert hashlib.sha256(await response.read()).digest() == hashlib.sha256(payload).digest()
        async with on_c.get("/v1/files/common/data.bin", headers={"Range": "bytes=10-19"}) as response:
            assert response.status == 206
            assert await response.read() == payload[10:20]
            assert response.headers["Content-Range"] == f"bytes 10-19/{len(payload)}"
        # an overwrite through another node is written where the bytes live
        async with on_c.put("/v1/files/common/data.bin", data=b"v2") as response:
            assert response.status == 200
        async with on_b.head("/v1/files/common/data.bin") as response:
            assert response.headers["X-CallFS-Instance-ID"] == "node-0"
        async with on_b.get("/v1/files/common/data.bin") as response:
            assert await response.read() == b"v2"
        assert blob_count(a) == 1 and blob_count(b) == 0 and blob_count(c) == 0
        # creating an existing path elsewhere says where to update it
        async with on_b.post("/v1/files/common/data.bin", data=b"x") as response:
            assert response.status == 409
            body = await response.json()
        assert body["code"] == "FILE_ALREADY_EXISTS" and body["instance_id"] == "node-0"
        assert body["update_url"] == f"{a.url}/v1/files/common/data.bin"
        # moves are metadata: any node does them, the bytes stay with their owner
        async with on_c.patch("/v1/files/common/data.bin", json={"destination": "/moved/data.bin",
                                                                 "create_parents": True}) as response:
            assert response.status == 200
        async with on_b.get("/v1/files/moved/data.bin") as response:
            assert await response.read() == b"v2"
        # deleting through another node removes the owner's bytes
        async with on_b.delete("/v1/files/moved/data.bin") as response:
            assert response.status == 204
        assert blob_count(a) == 0


async def test_recursive_delete_frees_bytes_on_every_node(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    nodes = cluster_factory(3, backend=BLOBS)
    for i, node in enumerate(nodes):
        async with session(node) as http, http.put(f"/v1/files/tree/n{i}/f", data=b"x" * 100) as response:
            assert response.status == 201
    assert [blob_count(n) for n in nodes] == [1, 1, 1]
    async with session(nodes[1]) as http, http.delete("/v1/files/tree?recursive=true") as response:
        assert response.status == 204

    async def all_freed() -> bool:
        return [blob_count(n) for n in nodes] == [0, 0, 0]

    await wait_for_async(all_freed, 10, "every blob freed on every node", 0.1)


async def test_read_after_write_is_coherent_across_nodes(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    nodes = cluster_factory(3, backend=BLOBS)
    rng = random.Random(7)
    async with session(nodes[0]) as s0, session(nodes[1]) as s1, session(nodes[2]) as s2:
        sessions = [s0, s1, s2]
        for i in range(60):
            writer, reader = rng.sample(sessions, 2)
            path = f"/v1/files/coherence/f{i % 7}"
            content = f"round {i}".encode()
            async with writer.put(path, data=content) as response:
                assert response.status in (200, 201)
            async with reader.get(path) as response:
                assert await response.read() == content, i
            async with reader.head(path) as response:
                assert response.headers["X-CallFS-Size"] == str(len(content))
            async with reader.get("/v1/directories/coherence") as response:
                names = {item["name"] for item in (await response.json())["items"]}
            assert f"f{i % 7}" in names
            if i % 5 == 4:
                async with writer.delete(path) as response:
                    assert response.status == 204
                async with reader.get(path) as response:
                    assert response.status == 404, i


async def test_a_dead_node_gives_502_and_rejoins(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b, c = cluster_factory(3, backend=BLOBS)
    async with session(a) as http, http.put("/v1/files/on-a.txt", data=b"from a") as response:
        assert response.status == 201
    async with session(b) as http, http.put("/v1/files/on-b.txt", data=b"from b") as response:
        assert response.status == 201
    a.kill()
    async with session(b) as on_b, session(c) as on_c:
        started = time.monotonic()
        async with on_c.get("/v1/files/on-a.txt") as response:
            assert response.status == 502
            assert (await response.json())["code"] == "BAD_GATEWAY"
        assert time.monotonic() - started < 10
        async with on_c.delete("/v1/files/on-a.txt") as response:
            assert response.status == 502
        async with on_c.head("/v1/files/on-a.txt") as response:
            assert response.status == 200  # metadata untouched by the failed delete
        async with on_c.get("/v1/files/on-b.txt") as response:
            assert await response.read() == b"from b"
        async with on_b.put("/v1/files/new-on-b.txt", data=b"still writable") as response:
            assert response.status == 201

    async def a_is_down() -> bool:
        return (await node_states(b))["node-0"] == "down"

    await wait_for_async(a_is_down, 10, "node-0 seen down by the second node", 0.1)
    a.start()

    async def a_is_up() -> bool:
        return (await node_states(c))["node-0"] == "up"

    await wait_for_async(a_is_up, 10, "node-0 seen up again by the third node", 0.1)
    async with session(c) as on_c, on_c.get("/v1/files/on-a.txt") as response:
        assert await response.read() == b"from a"


async def test_internal_secret_rules(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_factory(2, backend=BLOBS)
    async with session(a) as http, http.put("/v1/files/owned-by-a", data=b"a") as response:
        assert response.status == 201
    async with aiohttp.ClientSession(b.url) as http:
        forged = {"Authorization": "Bearer " + "f" * 32, "X-CallFS-User": "root"}
        async with http.get("/v1/files/owned-by-a", headers=forged) as response:
            assert response.status == 401
        # an ordinary key cannot claim another identity
        impostor = {"Authorization": f"Bearer {b.api_key}", "X-CallFS-User": "root"}
        async with http.put("/v1/files/claimed", data=b"x", headers=impostor) as response:
            assert response.status == 201
        async with http.head("/v1/files/claimed", headers=impostor) as response:
            assert response.headers["X-CallFS-Owner"] == "api-user-0"
        # a request that was already forwarded is never forwarded again
        looped = {"Authorization": f"Bearer {b.internal_secret}", "X-CallFS-Forwarded-By": "node-0"}
        async with http.get("/v1/files/owned-by-a", headers=looped) as response:
            assert response.status == 508
            assert (await response.json())["code"] == "LOOP_DETECTED"
        # peers may free blobs; API users may not
        async with http.delete("/internal/v1/blobs/localfs/" + "0" * 32,
                               headers={"Authorization": f"Bearer {b.api_key}"}) as response:
            assert response.status == 403


async def test_link_for_a_file_on_another_node(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b, c = cluster_factory(3, backend=BLOBS)
    async with session(a) as http, http.put("/v1/files/linked.txt", data=b"linked bytes") as response:
        assert response.status == 201
    link_request = {"path": "/linked.txt", "expiry_seconds": 60}
    async with session(b) as http, http.post("/v1/links/generate", json=link_request) as response:
        token = (await response.json())["token"]
    async with aiohttp.ClientSession(c.url) as anonymous:
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 200
            assert await response.read() == b"linked bytes"
            assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''linked.txt"
        async with anonymous.get(f"/download/{token}") as response:
            assert response.status == 410


async def test_quota_holds_under_concurrent_writers_on_different_nodes(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    nodes = cluster_factory(3, backend=BLOBS)
    async with session(nodes[0], "root") as root:
        async with root.post("/v1/files/vol/") as response:
            assert response.status == 201
        async with root.put("/v1/quotas/vol", json={"bytes_limit": 1_000_000}) as response:
            assert response.status == 201
    sessions = [aiohttp.ClientSession(n.url, headers={"Authorization": f"Bearer {n.key_for('root')}"})
                for n in nodes]
    try:
        async def write(i: int) -> int:
            async with sessions[i % 3].put(f"/v1/files/vol/f{i}", data=b"q" * 100_000) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(write(i) for i in range(30)))
    finally:
        for http in sessions:
            await http.close()
    assert statuses.count(201) == 10 and statuses.count(507) == 20, statuses
    async with session(nodes[1], "root") as root:
        async with root.get("/v1/quotas/vol") as response:
            usage = await response.json()
        async with root.get("/v1/directories/vol") as response:
            listed = (await response.json())["items"]
    assert usage["bytes_used"] == 1_000_000 == sum(item["size"] for item in listed)
    assert usage["inodes_used"] == 10 == len(listed)
    assert sum(blob_count(n) for n in nodes) == 10


async def test_configured_and_discovered_peers_are_listed(app_node_factory: Callable[..., AppNode]) -> None:
    node = app_node_factory(instance_discovery={"instance_id": "solo", "dns_name": "localhost",
                                                "peer_endpoints": {"node-x": "http://127.0.0.1:9/"}})
    async with session(node) as http, http.get("/v1/cluster/nodes") as response:
        body = await response.json()
    by_source: dict[str, list[dict[str, object]]] = {}
    for entry in body["nodes"]:
        by_source.setdefault(str(entry["source"]), []).append(entry)
    assert [(n["instance_id"], n["state"], n["self"]) for n in by_source["metadata"]] == [("solo", "up", True)]
    assert [(n["instance_id"], n["url"], n["state"]) for n in by_source["static"]] == [
        ("node-x", "http://127.0.0.1:9", "unknown")]
    port = node.url.rsplit(":", 1)[1]
    for discovered in by_source.get("dns", []):  # localhost's addresses other than the one we advertise
        assert discovered["state"] == "unknown" and str(discovered["url"]).endswith(f":{port}")
        assert discovered["url"] != node.url
