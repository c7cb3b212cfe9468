"""Objects written over S3 and then changed in place over REST (``PUT`` with ``Content-Range``, ``PATCH
{"size"}``): S3 reads see the new bytes and ETag, and the object's metadata follows the content (a partial write
keeps it; a whole PUT replaces it), on both metadata stores."""

from __future__ import annotations

import os

from callfs.blocks.layout import BLOCK_SIZE
from callfs.models import Layout
from callfs.node import Node
from support.app_node import AppNode
from support.http import session
from support.s3_face import client

META = {"color": "blue"}


async def put_range(node: AppNode, path: str, offset: int, data: bytes) -> str:
    """Write ``data`` at ``offset`` of the file ``path`` over REST as alice (``PUT`` with ``Content-Range``);
    returns the new ETag."""
    headers = {"Content-Range": f"bytes {offset}-{offset + len(data) - 1}/*"}
    async with session(node, "alice") as http, http.put(f"/v1/files{path}", data=data, headers=headers) as response:
        assert response.status == 200, await response.text()
        return response.headers["ETag"]


def stored(node: AppNode, path: str) -> tuple[Layout, str, dict[str, str]]:
    """``(layout, content id, attributes of that content)`` of the file ``path``, read from the store."""
    async def read(n: Node) -> tuple[Layout, str, dict[str, str]]:
        inode = await n.store.get(path)
        assert inode is not None and inode.blob_id is not None
        return inode.layout, inode.blob_id, await n.store.get_attributes(inode.blob_id)
    return node.run(read)


def attributes_of(node: AppNode, blob_id: str) -> dict[str, str]:
    """The attributes the store holds for the content id ``blob_id`` (none: empty)."""
    return node.run(lambda n: n.store.get_attributes(blob_id))


async def test_a_partial_rest_write_is_seen_by_ranged_s3_reads_and_keeps_the_metadata(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="parts")
    data = bytearray(os.urandom(BLOCK_SIZE + 300_000))  # two blocks once converted
    s3.put_object(Bucket="parts", Key="dir/obj.bin", Body=bytes(data), ContentType="application/x-test",
                  Metadata=META)
    layout, first_id, attrs = stored(s3_node, "/parts/dir/obj.bin")
    assert layout is Layout.BLOB and attrs["Content-Type"] == "application/x-test"

    patch = os.urandom(5000)
    offset = BLOCK_SIZE - 2000  # across the boundary of blocks 0 and 1
    rest_etag = await put_range(s3_node, "/parts/dir/obj.bin", offset, patch)
    data[offset:offset + len(patch)] = patch

    ranged = s3.get_object(Bucket="parts", Key="dir/obj.bin", Range=f"bytes={offset - 10}-{offset + len(patch) + 9}")
    assert ranged["Body"].read() == bytes(data[offset - 10:offset + len(patch) + 10])
    assert ranged["ContentRange"] == f"bytes {offset - 10}-{offset + len(patch) + 9}/{len(data)}"
    assert ranged["ETag"] == rest_etag
    assert (ranged["ContentType"], ranged["Metadata"]) == ("application/x-test", META)
    tail = s3.get_object(Bucket="parts", Key="dir/obj.bin", Range="bytes=-100")
    assert tail["Body"].read() == bytes(data[-100:])
    assert s3.get_object(Bucket="parts", Key="dir/obj.bin")["Body"].read() == bytes(data)
    layout, blocks_id, attrs = stored(s3_node, "/parts/dir/obj.bin")
    assert layout is Layout.BLOCKS and blocks_id != first_id and attrs["x-amz-meta-color"] == "blue"
    assert attributes_of(s3_node, first_id) == {}  # moved to the new content id, not copied

    await put_range(s3_node, "/parts/dir/obj.bin", len(data), b"tail")  # blocks to blocks, then a truncate
    async with session(s3_node, "alice") as http, http.patch("/v1/files/parts/dir/obj.bin",
                                                             json={"size": 10}) as response:
        assert response.status == 200, await response.text()
    head = s3.head_object(Bucket="parts", Key="dir/obj.bin")
    assert (head["ContentLength"], head["ContentType"], head["Metadata"]) == (10, "application/x-test", META)
    assert s3.get_object(Bucket="parts", Key="dir/obj.bin", Range="bytes=2-5")["Body"].read() == bytes(data[2:6])
    _, last_id, _ = stored(s3_node, "/parts/dir/obj.bin")
    assert attributes_of(s3_node, blocks_id) == {}

    s3.put_object(Bucket="parts", Key="dir/obj.bin", Body=b"whole")  # a whole PUT: new metadata (none)
    head = s3.head_object(Bucket="parts", Key="dir/obj.bin")
    assert (head["ContentType"], head["Metadata"]) == ("binary/octet-stream", {})
    assert attributes_of(s3_node, last_id) == {}


async def test_deleting_an_object_in_blocks_drops_its_metadata_and_its_blocks_are_collected(
    s3_node_sqlite: AppNode,
) -> None:
    node = s3_node_sqlite
    assert node.node is not None
    node.node.engine.block_files.grace = 0
    s3 = client(node)
    s3.create_bucket(Bucket="gone")
    s3.put_object(Bucket="gone", Key="k", Body=b"x" * 1000, Metadata=META)
    await put_range(node, "/gone/k", 0, b"y")
    _, blob_id, attrs = stored(node, "/gone/k")
    assert attrs["x-amz-meta-color"] == "blue"
    node.sweep_orphans()  # collecting the replaced block leaves the live object's metadata alone
    assert s3.head_object(Bucket="gone", Key="k")["Metadata"] == META
    assert s3.get_object(Bucket="gone", Key="k")["Body"].read() == b"y" + b"x" * 999
    s3.delete_object(Bucket="gone", Key="k")
    assert attributes_of(node, blob_id) == {}
    node.sweep_orphans()
    assert [p for p in node.data_dir.rglob("objects/*/*") if len(p.name) == 64] == []


async def test_server_side_copies_keep_the_metadata_of_both_layouts(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="copies")
    s3.put_object(Bucket="copies", Key="blob.bin", Body=b"one blob", ContentType="text/x-a", Metadata=META)
    s3.put_object(Bucket="copies", Key="blocks.bin", Body=b"to be blocks", ContentType="text/x-b", Metadata=META)
    await put_range(s3_node, "/copies/blocks.bin", 0, b"T")  # now stored in blocks
    async with session(s3_node, "alice") as http:
        for name in ("blob.bin", "blocks.bin"):
            body = {"source": f"/copies/{name}", "destination": f"/copies/copy-{name}"}
            async with http.post("/v1/copies", json=body) as response:
                assert response.status == 201, await response.text()
            async with http.delete(f"/v1/files/copies/{name}") as response:
                assert response.status == 204, await response.text()
    for name, content_type in (("blob.bin", "text/x-a"), ("blocks.bin", "text/x-b")):
        head = s3.head_object(Bucket="copies", Key=f"copy-{name}")
        assert (head["ContentType"], head["Metadata"]) == (content_type, META), name
    # A partial write of the copy that shares the source's blob keeps the metadata of both.
    s3.put_object(Bucket="copies", Key="shared.bin", Body=b"shared", ContentType="text/x-c", Metadata=META)
    async with session(s3_node, "alice") as http, http.post(
        "/v1/copies", json={"source": "/copies/shared.bin", "destination": "/copies/shared-copy.bin"}
    ) as response:
        assert response.status == 201, await response.text()
    await put_range(s3_node, "/copies/shared-copy.bin", 0, b"S")
    for key in ("shared.bin", "shared-copy.bin"):
        head = s3.head_object(Bucket="copies", Key=key)
        assert (head["ContentType"], head["Metadata"]) == ("text/x-c", META), key
