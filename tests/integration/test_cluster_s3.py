"""S3-backed files in a three-node cluster, against real S3-compatible servers (SeaweedFS and moto):
any node serves them directly, also while the node that wrote them is dead; a bad S3 setup is reported on
``/ready`` instead of crashing the node. The clusters are subprocesses (``cluster_factory``); single nodes are
served in-process (``support.app_node``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from support.app_node import AppNode
from support.http import session
from support.node import NodeProcess
from support.s3 import S3Server
from support.waiting import wait_for_async


def s3_section(server: S3Server, bucket: str, **overrides: Any) -> dict[str, Any]:
    config = server.backend_config(bucket, **overrides)
    return {k: (str(v) if k == "localfs_root_path" and v else v) for k, v in config.model_dump().items()
            if v is not None}


def bucket_keys(server: S3Server, bucket: str) -> list[str]:
    listing = server.client().list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


async def test_s3_files_survive_the_death_of_their_writer(  # type: ignore[no-untyped-def]
    cluster_factory, s3_server: S3Server, s3_bucket: str
) -> None:
    a, b, c = cluster_factory(3, backend={**s3_section(s3_server, s3_bucket, default_backend="localfs"),
                                           "whole_files_in_blocks": False})
    payload = b"s3 bytes " * 100_000
    async with session(a) as on_a:
        async with on_a.put("/v1/files/in-s3.bin", data=payload, headers={"X-CallFS-Backend": "s3"}) as r:
            assert r.status == 201
        async with on_a.put("/v1/files/on-disk.bin?backend=localfs", data=b"local") as response:
            assert response.status == 201
        async with on_a.head("/v1/files/in-s3.bin") as response:
            assert "X-CallFS-Instance-ID" not in response.headers
        async with on_a.put("/v1/files/nowhere.bin?backend=tape", data=b"x") as response:
            assert response.status == 400
    assert len(bucket_keys(s3_server, s3_bucket)) == 1
    a.kill()
    async with session(b) as on_b, session(c) as on_c:
        async with on_b.get("/v1/files/in-s3.bin") as response:
            assert response.status == 200 and await response.read() == payload
        async with on_c.get("/v1/files/in-s3.bin", headers={"Range": "bytes=3-7"}) as response:
            assert response.status == 206 and await response.read() == payload[3:8]
        async with on_c.get("/v1/files/on-disk.bin") as response:
            assert response.status == 502
        async with on_c.put("/v1/files/in-s3.bin", data=b"rewritten by c") as response:
            assert response.status == 200  # an overwrite stays on S3, written by whichever node gets it
        async with on_b.get("/v1/files/in-s3.bin") as response:
            assert await response.read() == b"rewritten by c"
        async with on_b.delete("/v1/files/in-s3.bin") as response:
            assert response.status == 204

    async def bucket_emptied() -> bool:
        return bucket_keys(s3_server, s3_bucket) == []

    await wait_for_async(bucket_emptied, 10, f"bucket {s3_bucket} to be emptied", 0.1)
    a.start()
    async with session(c) as on_c, on_c.get("/v1/files/on-disk.bin") as response:
        assert await response.read() == b"local"


async def test_s3_as_default_backend(
    app_node_factory: Callable[..., AppNode], s3_server: S3Server, s3_bucket: str
) -> None:
    node = app_node_factory(backend=s3_section(s3_server, s3_bucket))
    big = bytes(range(256)) * 50_000  # 12.8 MB: several multipart parts
    async with session(node) as http:
        async with http.put("/v1/files/big.bin", data=big) as response:
            assert response.status == 201
        async with http.get("/v1/files/big.bin") as response:
            assert await response.read() == big
        async with http.post("/v1/links/generate", json={"path": "/big.bin", "expiry_seconds": 60}) as response:
            token = (await response.json())["token"]
    async with aiohttp.ClientSession(node.url) as anonymous, anonymous.get(f"/download/{token}") as response:
        assert response.status == 200 and len(await response.read()) == len(big)
    assert [p for p in (node.data_dir / "blobs" / "objects").rglob("*") if p.is_file()] == []
    assert len(bucket_keys(s3_server, s3_bucket)) == 1


async def test_bad_s3_settings_are_reported_not_crashed(
    app_node_factory: Callable[..., AppNode], s3_server: S3Server, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # everything the nodes log at their level, tracebacks included
    wrong_key = app_node_factory(backend=s3_section(
        s3_server, s3_bucket, default_backend="localfs", s3_secret_key="definitely-wrong-secret"))
    missing = app_node_factory(backend=s3_section(
        s3_server, "no-such-bucket-callfs", default_backend="localfs"))
    for node, expected in ((wrong_key, ""), (missing, "no-such-bucket-callfs")):
        async with aiohttp.ClientSession(node.url) as http, http.get("/ready") as response:
            assert response.status == 503
            body = await response.json()
        assert body["checks"]["backend:s3"] is False and body["checks"]["metadata"] is True
        assert expected in body["errors"]["backend:s3"]
        assert "Traceback" not in caplog.text
        async with session(node) as http:
            async with http.put("/v1/files/local.txt", data=b"fine") as response:
                assert response.status == 201
            async with http.put("/v1/files/remote.txt?backend=s3", data=b"x") as response:
                assert response.status == 503
                assert (await response.json())["code"] == "SERVICE_UNAVAILABLE"


async def test_bytes_move_between_nodes_and_backends(  # type: ignore[no-untyped-def]
    cluster_factory, s3_server: S3Server, s3_bucket: str
) -> None:
    a, b, c = cluster_factory(3, backend={**s3_section(s3_server, s3_bucket, default_backend="localfs"),
                                           "whole_files_in_blocks": False})
    payload = bytes(range(256)) * 8000

    def blobs(node: NodeProcess) -> int:
        return sum(1 for p in (node.data_dir / "blobs" / "objects").rglob("*") if p.is_file())

    async with session(a) as on_a, session(b) as on_b:
        async with on_a.put("/v1/files/wander.bin", data=payload) as response:
            assert response.status == 201
        # node B asks for the bytes to go to node C while renaming
        async with on_b.patch("/v1/files/wander.bin", json={"name": "moved.bin", "instance": "node-2"}) as r:
            assert r.status == 200, await r.text()
        async with on_a.head("/v1/files/moved.bin") as response:
            assert response.headers["X-CallFS-Instance-ID"] == "node-2"
        assert (blobs(a), blobs(b), blobs(c)) == (0, 0, 1)
        async with on_a.get("/v1/files/moved.bin") as response:
            assert await response.read() == payload
        # then into the shared bucket, then back onto node A's disk
        async with on_a.patch("/v1/files/moved.bin", json={"destination": "/s3/moved.bin", "backend": "s3",
                                                           "create_parents": True}) as response:
            assert response.status == 200, await response.text()
        assert blobs(c) == 0 and len(bucket_keys(s3_server, s3_bucket)) == 1
        async with on_b.head("/v1/files/s3/moved.bin") as response:
            assert "X-CallFS-Instance-ID" not in response.headers
        async with on_b.patch("/v1/files/s3/moved.bin", json={"name": "home.bin", "backend": "localfs",
                                                              "instance": "node-0"}) as response:
            assert response.status == 200, await response.text()
        assert blobs(a) == 1 and bucket_keys(s3_server, s3_bucket) == []
        async with on_b.get("/v1/files/s3/home.bin") as response:
            assert await response.read() == payload
        for body, status in (({"name": "x", "instance": "node-9"}, 400),
                             ({"name": "y", "backend": "s3", "instance": "node-1"}, 400),
                             ({"name": "z", "backend": "tape"}, 400)):
            async with on_b.patch("/v1/files/s3/home.bin", json=body) as response:
                assert response.status == status, (body, await response.text())
        async with on_b.patch("/v1/files/s3", json={"name": "dir2", "instance": "node-1"}) as response:
            assert response.status == 400
