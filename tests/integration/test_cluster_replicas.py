"""Block replicas on the local-disk backend (callfs.replication, callfs.repair) in clusters of node subprocesses
sharing PostgreSQL and Redis: every acknowledged file survives SIGKILLed nodes, a corrupt copy is read around
and scrubbed, a write that cannot get its copies fails cleanly, and repair restores the copies a dead node held.

Files are put in blocks the way clients do it: an empty file, then a ranged PUT (``Content-Range``) of the bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from callfs.blocks.codec import is_block_hash
from callfs.blocks.layout import BLOCK_SIZE
from support.http import session
from support.node import NodeProcess, new_auth_section, postgres_redis_sections
from support.replicas import FAST, content, metric, put_in_blocks, under_replicated
from support.waiting import wait_for_async


def own_copies(node: NodeProcess) -> list[Path]:
    """The block files a node keeps of its own files (``objects/``, not the copies it holds for peers)."""
    objects = node.data_dir / "blobs" / "objects"
    return sorted(p for p in objects.glob("*/*") if is_block_hash(p.name))


def intact(path: Path) -> bool:
    """True when a raw-stored block file (incompressible data) hashes to its name."""
    stored = path.read_bytes()
    return stored[:1] == b"\x00" and hashlib.sha256(stored[1:]).hexdigest() == path.name


async def replication(node: NodeProcess) -> dict[str, Any]:
    """The ``replication`` object of the node's ``GET /v1/cluster/nodes`` (the whole cluster's redundancy)."""
    async with session(node) as http, http.get("/v1/cluster/nodes") as response:
        assert response.status == 200
        body: dict[str, Any] = (await response.json())["replication"]
        return body


async def test_rf2_keeps_every_file_through_a_kill_a_repair_and_a_second_kill(  # type: ignore[no-untyped-def]
    cluster_factory, postgres_dsn: str
) -> None:
    backend: dict[str, Any] = {"replicas": 2, "replica_repair_grace": 3, "replica_repair_interval": 0.5}
    a, b, c = cluster_factory(3, backend=backend, instance_discovery=FAST)
    files: dict[str, bytes] = {}
    async with session(a) as on_a, session(b) as on_b, session(c) as on_c:
        for i, http in enumerate((on_a, on_b, on_a, on_c)):
            files[f"/r/f{i}.bin"] = os.urandom(2 * BLOCK_SIZE + 1000 * (i + 1))  # three blocks each
            response = await put_in_blocks(http, f"/r/f{i}.bin", files[f"/r/f{i}.bin"])
            assert response.status == 200
        # Whole PUTs are stored in blocks too (by default, writes needing two copies), with their copies.
        for name, data in (("whole.bin", os.urandom(BLOCK_SIZE + 7)), ("small.txt", b"hello"), ("empty", b"")):
            files[f"/r/{name}"] = data
            async with on_a.put(f"/v1/files/r/{name}", data=data) as response:
                assert response.status == 201, await response.text()
    assert await under_replicated(postgres_dsn, ["node-0", "node-1", "node-2"], 2) == 0
    assert await replication(c) == {"backend": "localfs", "replicas": 2, "under_replicated_blocks": 0}
    assert own_copies(a)  # node-0 owns files whose blocks it holds

    a.kill()
    async with session(b) as on_b, session(c) as on_c:
        for http in (on_b, on_c):
            for path, data in files.items():
                assert await content(http, path) == data, path
        # A write while one node of three is down still gets its two copies (on the two live nodes).
        files["/r/during.bin"] = os.urandom(BLOCK_SIZE + 5)
        response = await put_in_blocks(on_b, "/r/during.bin", files["/r/during.bin"])
        assert response.status == 200
        # Files node-0 owns are written by the live nodes meanwhile: a partial write, a truncation, a whole
        # overwrite, a rename and a delete, each read back from the other live node.
        patch = os.urandom(1000)
        headers = {"Content-Range": f"bytes {BLOCK_SIZE - 500}-{BLOCK_SIZE + 499}/*"}
        async with on_b.put("/v1/files/r/f0.bin", data=patch, headers=headers) as response:
            assert response.status == 200, await response.text()
        f0 = files["/r/f0.bin"]
        files["/r/f0.bin"] = f0[:BLOCK_SIZE - 500] + patch + f0[BLOCK_SIZE + 500:]
        async with on_c.patch("/v1/files/r/f2.bin", json={"size": BLOCK_SIZE + 3}) as response:
            assert response.status == 200, await response.text()
        files["/r/f2.bin"] = files["/r/f2.bin"][:BLOCK_SIZE + 3]
        files["/r/whole.bin"] = os.urandom(2 * BLOCK_SIZE)
        async with on_b.put("/v1/files/r/whole.bin", data=files["/r/whole.bin"]) as response:
            assert response.status == 200, await response.text()
        async with on_c.patch("/v1/files/r/small.txt", json={"name": "renamed.txt"}) as response:
            assert response.status == 200, await response.text()
        files["/r/renamed.txt"] = files.pop("/r/small.txt")
        async with on_b.delete("/v1/files/r/empty") as response:
            assert response.status == 204, await response.text()
        del files["/r/empty"]
        for http in (on_c, on_b):
            for path, data in files.items():
                assert await content(http, path) == data, path

    # Once node-0 has been down for the grace period, repair copies what it held onto node-1 and node-2.
    async def repaired() -> bool:
        return await under_replicated(postgres_dsn, ["node-1", "node-2"], 2) == 0

    await wait_for_async(repaired, 40, "repair to restore two live copies of every block", 0.5)

    async def reported_redundant() -> bool:
        return (await replication(b))["under_replicated_blocks"] == 0

    await wait_for_async(reported_redundant, 15, "node-1 to report no under-replicated block", 0.5)
    assert await metric(b, "callfs_blocks_repaired_total") + await metric(c, "callfs_blocks_repaired_total") > 0

    b.kill()
    async with session(c) as on_c:
        for path, data in files.items():
            assert await content(on_c, path) == data, path


async def test_a_corrupt_copy_is_read_around_then_scrubbed_and_a_write_short_of_nodes_fails_cleanly(  # type: ignore[no-untyped-def]
    cluster_factory,
) -> None:
    backend = {"replicas": 2, "scrub_interval": 1, "scrub_bytes_per_second": 1 << 30}
    a, b = cluster_factory(2, backend=backend, instance_discovery=FAST)
    data = os.urandom(300_000)  # incompressible: stored raw, so a flipped byte hits the payload
    async with session(a) as on_a:
        assert (await put_in_blocks(on_a, "/c.bin", data)).status == 200
        [copy] = own_copies(a)
        damaged = bytearray(copy.read_bytes())
        damaged[-1] ^= 0xFF
        copy.write_bytes(bytes(damaged))
        assert await content(on_a, "/c.bin") == data  # from node-1's copy

        async def scrubbed() -> bool:
            return intact(copy)

        await wait_for_async(scrubbed, 20, "the scrub to replace the corrupt copy", 0.2)
        assert await metric(a, "callfs_block_scrub_errors_total") >= 1
        assert await metric(a, "callfs_block_scrub_repairs_total") >= 1

        # node-1's scrub deletes an old copy no row names, and keeps an old one that a row names.
        held = b.data_dir / "blobs" / "replicas" / "node-0" / "objects"
        recorded = held / copy.name[:2] / copy.name
        orphan_data = os.urandom(1000)
        orphan_name = hashlib.sha256(orphan_data).hexdigest()
        orphan = held / orphan_name[:2] / orphan_name
        orphan.write_bytes(b"\x00" + orphan_data)
        two_hours_ago = time.time() - 7200
        for path in (orphan, recorded):
            os.utime(path, (two_hours_ago, two_hours_ago))

        async def orphan_gone() -> bool:
            return not orphan.exists()

        await wait_for_async(orphan_gone, 20, "node-1's scrub to delete the unrecorded copy", 0.2)
        assert intact(recorded)

        # With node-1 down, a block cannot get its two copies: 503, and the file keeps its content.
        b.kill()
        await asyncio.sleep(FAST["node_timeout"] + 1)
        response = await put_in_blocks(on_a, "/d.bin", os.urandom(1000))
        assert response.status == 503
        headers = {"Content-Range": "bytes 0-9/*"}
        async with on_a.put("/v1/files/c.bin", data=b"0123456789", headers=headers) as response:
            assert response.status == 503
        assert await content(on_a, "/c.bin") == data
        assert await content(on_a, "/d.bin") == b""


async def test_rf1_corrupt_copy_is_a_clear_error_on_every_node_and_its_node_down_a_503(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_factory(2, backend={"replicas": 1}, instance_discovery=FAST)
    async with session(a) as on_a, session(b) as on_b:
        data = os.urandom(50_000)
        assert (await put_in_blocks(on_a, "/one.bin", data)).status == 200
        assert await replication(b) == {"backend": "localfs", "replicas": 1, "under_replicated_blocks": 0}
        assert await content(on_b, "/one.bin") == data  # node-1 reads node-0's only copy over the peer route
        [copy] = own_copies(a)
        damaged = bytearray(copy.read_bytes())
        damaged[-1] ^= 0xFF
        copy.write_bytes(bytes(damaged))
        for http in (on_a, on_b):
            async with http.get("/v1/files/one.bin") as response:
                assert response.status == 500
                body = await response.json()
                assert body["code"] == "DATA_CORRUPTED"
                assert "node-0" in body["message"]
        # The only copy's node down is no corruption: 503, to retry once it is back.
        a.kill()
        async with on_b.get("/v1/files/one.bin") as response:
            assert response.status == 503, await response.text()
            assert (await response.json())["code"] == "SERVICE_UNAVAILABLE"


async def test_whole_writes_in_blocks_replace_and_are_refused_whole(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(backend={"whole_files_in_blocks": True}, server={"max_body_bytes": 6 << 20})
    first, second = os.urandom(BLOCK_SIZE + 10), os.urandom(1000)
    async with session(node) as http:
        async with http.put("/v1/files/w.bin", data=first) as response:
            assert response.status == 201
        async with http.put("/v1/files/w.bin", data=second) as response:
            assert response.status == 200
        assert await content(http, "/w.bin") == second
        objects = node.data_dir / "blobs" / "objects"
        assert not [p for p in objects.glob("*/*") if not is_block_hash(p.name)]  # no blob was written
        async with http.put("/v1/files/w.bin", data=os.urandom(7 << 20)) as response:
            assert response.status == 413
        assert await content(http, "/w.bin") == second
        headers = {"Content-Range": "bytes 1000-1002/*"}
        async with http.put("/v1/files/w.bin", data=b"end", headers=headers) as response:
            assert response.status == 200
        assert await content(http, "/w.bin") == second + b"end"


async def test_deleting_the_last_reference_frees_every_copy(  # type: ignore[no-untyped-def]
    request, app_node_factory
) -> None:
    shared = {"auth": new_auth_section(), **postgres_redis_sections(request)}
    a, b = (app_node_factory(**shared, backend={"replicas": 2}, instance_discovery={**FAST, "instance_id": f"node-{i}"})
            for i in range(2))

    async def both_up() -> bool:
        async with session(a) as http, http.get("/v1/cluster/nodes") as response:
            return sorted(n["state"] for n in (await response.json())["nodes"]) == ["up", "up"]

    await wait_for_async(both_up, 15, "node-0 to see both nodes up")
    held_for_a = b.data_dir / "blobs" / "replicas" / "node-0" / "objects"
    data = os.urandom(BLOCK_SIZE + 100)  # two blocks
    async with session(a) as http:
        for path in ("/one.bin", "/two.bin"):  # the same bytes: the same two blocks, referenced twice
            assert (await put_in_blocks(http, path, data)).status == 200
        assert len(own_copies(a)) == 2 and len(list(held_for_a.glob("*/*"))) == 2
        hashes = [p.name for p in own_copies(a)]

        async def collect() -> int:
            assert a.node is not None
            a.node.engine.block_files.grace = 0
            return await a.node.engine.collect_blocks()

        async with http.delete("/v1/files/one.bin") as response:
            assert response.status == 204
        a.run(lambda node: collect())
        assert len(own_copies(a)) == 2 and len(list(held_for_a.glob("*/*"))) == 2  # still named by two.bin
        assert await content(http, "/two.bin") == data
        async with http.delete("/v1/files/two.bin") as response:
            assert response.status == 204
        assert a.run(lambda node: collect()) == 2
        assert own_copies(a) == [] and list(held_for_a.glob("*/*")) == []
        for block_hash in hashes:
            assert a.run(lambda node, h=block_hash: node.store.block_replicas("localfs", "node-0", h)) == []


async def test_a_write_naming_a_stored_block_tops_up_its_copies(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    backend = {"replicas": 2, "replica_repair_grace": 600}  # no repair during the test: the write must do it
    a, b, c = cluster_factory(3, backend=backend, instance_discovery=FAST)
    data = os.urandom(100_000)  # one block
    async with session(a) as on_a:
        assert (await put_in_blocks(on_a, "/first.bin", data)).status == 200
    [block] = own_copies(a)

    def holds(node: NodeProcess) -> bool:
        return (node.data_dir / "blobs" / "replicas" / "node-0" / "objects" / block.name[:2] / block.name).exists()

    [peer] = [n for n in (b, c) if holds(n)]
    [third] = [n for n in (b, c) if n is not peer]
    peer.kill()
    await asyncio.sleep(FAST["node_timeout"] + 1)
    async with session(a) as on_a:
        # The same bytes again: the block is stored and referenced already, but one of its copies is down.
        assert (await put_in_blocks(on_a, "/second.bin", data)).status == 200
    assert holds(third)
    a.kill()
    async with session(third) as on_third:
        assert await content(on_third, "/first.bin") == data
        assert await content(on_third, "/second.bin") == data
