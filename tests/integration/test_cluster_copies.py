"""Copies in a cluster of two nodes sharing PostgreSQL and Redis: any node copies any file, the copy's bytes stay
with the node that owns the source's, and deleting the source through another node keeps what a copy shares."""

from __future__ import annotations

from support.http import session

BLOCK = 4 << 20


async def test_a_copy_made_on_another_node_shares_the_owners_bytes(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster_factory(2)
    blocks = bytes(range(256)) * (BLOCK // 256) + b"tail"
    async with session(a, "root") as on_a, session(b, "root") as on_b:
        async with on_a.put("/v1/files/common/blob.txt", data=b"one blob") as response:
            assert response.status == 201
        async with on_a.put("/v1/files/common/blocks.bin", data=b"") as response:
            assert response.status == 201
        headers = {"Content-Range": f"bytes 0-{len(blocks) - 1}/*"}
        async with on_a.put("/v1/files/common/blocks.bin", data=blocks, headers=headers) as response:
            assert response.status == 200, await response.text()
        async with on_b.post("/v1/copies", json={"source": "/common", "destination": "/copy",
                                                 "recursive": True}) as response:
            assert response.status == 201, await response.text()
        async with on_b.delete("/v1/files/common", params={"recursive": "true"}) as response:
            assert response.status == 204, await response.text()
        for http in (on_a, on_b):
            async with http.get("/v1/files/copy/blob.txt") as response:
                assert await response.read() == b"one blob"
                assert response.headers["X-CallFS-Instance-ID"] == "node-0"
            async with http.get("/v1/files/copy/blocks.bin") as response:
                assert await response.read() == blocks
        async with on_b.put("/v1/files/copy/blocks.bin", data=b"X", headers={"Content-Range": "bytes 0-0/*"}) as r:
            assert r.status == 200, await r.text()
        async with on_a.get("/v1/files/copy/blocks.bin") as response:
            assert await response.read() == b"X" + blocks[1:]
