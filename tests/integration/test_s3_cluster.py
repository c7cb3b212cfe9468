"""The S3 face of a three-node cluster (PostgreSQL + Redis, bytes on each node's disk): any node serves any
object, whichever node holds its bytes."""

from __future__ import annotations

import os

import pytest

from callfs.node import Node
from support.app_node import AppNode
from support.s3_face import client
from support.waiting import wait_for

PART = 5 * 1024 * 1024


def _peers_known(nodes: list[AppNode]) -> bool:
    import requests

    for node in nodes:
        answer = requests.get(f"{node.url}/v1/cluster/nodes", timeout=5,
                              headers={"Authorization": f"Bearer {node.key_for('root')}"})
        up = [n for n in answer.json()["nodes"] if n["state"] == "up"]
        if len({n["instance_id"] for n in up}) < len(nodes):
            return False
    return True


def test_any_node_serves_any_object(s3_cluster: list[AppNode]) -> None:
    wait_for(lambda: _peers_known(s3_cluster), 15, "every node sees its peers up")
    first, second, third = (client(n) for n in s3_cluster)
    first.create_bucket(Bucket="spread")
    first.put_object(Bucket="spread", Key="a/one", Body=b"written on node 0", Metadata={"k": "v"})
    got = second.get_object(Bucket="spread", Key="a/one")
    assert (got["Body"].read(), got["Metadata"]) == (b"written on node 0", {"k": "v"})
    assert third.get_object(Bucket="spread", Key="a/one", Range="bytes=11-16")["Body"].read() == b"node 0"
    second.put_object(Bucket="spread", Key="a/one", Body=b"rewritten on node 1")
    assert first.get_object(Bucket="spread", Key="a/one")["Body"].read() == b"rewritten on node 1"
    assert [o["Key"] for o in third.list_objects_v2(Bucket="spread")["Contents"]] == ["a/one"]
    third.delete_object(Bucket="spread", Key="a/one")
    assert "Contents" not in first.list_objects_v2(Bucket="spread")


def test_multipart_parts_on_different_nodes(s3_cluster: list[AppNode]) -> None:
    wait_for(lambda: _peers_known(s3_cluster), 15, "every node sees its peers up")
    clients = [client(n) for n in s3_cluster]
    clients[0].create_bucket(Bucket="parts")
    upload = clients[0].create_multipart_upload(Bucket="parts", Key="joined")["UploadId"]
    chunks = [os.urandom(PART), os.urandom(PART), b"tail"]
    parts = []
    for number, (chunk, s3) in enumerate(zip(chunks, clients, strict=True), start=1):
        tag = s3.upload_part(Bucket="parts", Key="joined", UploadId=upload, PartNumber=number, Body=chunk)["ETag"]
        parts.append({"PartNumber": number, "ETag": tag})
    clients[1].complete_multipart_upload(Bucket="parts", Key="joined", UploadId=upload,
                                         MultipartUpload={"Parts": parts})
    assert clients[2].get_object(Bucket="parts", Key="joined")["Body"].read() == b"".join(chunks)


def test_an_object_changed_in_place_on_its_node_reads_by_range_from_any_node(s3_cluster: list[AppNode]) -> None:
    import requests

    wait_for(lambda: _peers_known(s3_cluster), 15, "every node sees its peers up")
    first, second, third = (client(n) for n in s3_cluster)
    first.create_bucket(Bucket="inplace")
    data = bytearray(os.urandom(300_000))
    first.put_object(Bucket="inplace", Key="obj", Body=bytes(data), Metadata={"k": "v"})
    # A partial REST write sent to node 1 (node 0 owns the object's blocks) changes only the blocks it touches.
    answer = requests.put(f"{s3_cluster[1].url}/v1/files/inplace/obj", data=b"changed", timeout=10,
                          headers={"Authorization": f"Bearer {s3_cluster[1].key_for('alice')}",
                                   "Content-Range": "bytes 1000-1006/*"})
    assert answer.status_code == 200, answer.text
    data[1000:1007] = b"changed"
    ranged = third.get_object(Bucket="inplace", Key="obj", Range="bytes=990-1016")
    assert (ranged["Body"].read(), ranged["ETag"], ranged["Metadata"]) == (
        bytes(data[990:1017]), answer.headers["ETag"], {"k": "v"}
    )
    assert second.get_object(Bucket="inplace", Key="obj")["Body"].read() == bytes(data)
    third.copy_object(Bucket="inplace", Key="copy", CopySource={"Bucket": "inplace", "Key": "obj"})
    assert first.get_object(Bucket="inplace", Key="copy")["Body"].read() == bytes(data)


@pytest.mark.parametrize("s3_cluster", [{"whole_files_in_blocks": False}], indirect=True)  # blobs, on their node
def test_versions_whose_bytes_are_on_other_nodes(s3_cluster: list[AppNode]) -> None:
    wait_for(lambda: _peers_known(s3_cluster), 15, "every node sees its peers up")
    first, second, third = (client(n) for n in s3_cluster)

    def blobs(node: AppNode) -> int:
        async def count(n: Node) -> int:
            return len([b async for b in n.engine.backend(None).list_blobs(0.0)])
        return node.run(count)

    before = blobs(s3_cluster[0])
    first.create_bucket(Bucket="spread-versions")
    first.put_bucket_versioning(Bucket="spread-versions", VersioningConfiguration={"Status": "Enabled"})
    old = first.put_object(Bucket="spread-versions", Key="k", Body=b"kept on node 0")["VersionId"]
    second.put_object(Bucket="spread-versions", Key="k", Body=b"current on node 1")
    assert third.get_object(Bucket="spread-versions", Key="k", VersionId=old)["Body"].read() == b"kept on node 0"
    marker = third.delete_object(Bucket="spread-versions", Key="k")["VersionId"]  # node 1's file, deleted on node 2
    assert blobs(s3_cluster[0]) == before + 1
    third.delete_object(Bucket="spread-versions", Key="k", VersionId=old)  # node 0's blob, freed by asking node 0
    assert blobs(s3_cluster[0]) == before
    third.delete_object(Bucket="spread-versions", Key="k", VersionId=marker)
    assert first.get_object(Bucket="spread-versions", Key="k")["Body"].read() == b"current on node 1"
