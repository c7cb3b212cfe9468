"""S3 bucket versioning with boto3 against a node, on SQLite and on PostgreSQL + Redis: versioning status,
versions kept on PUT/CopyObject/CompleteMultipartUpload, delete markers, addressing versions by id, listing
them, suspended buckets' ``null`` version, quota accounting, shared (not copied) bytes and the REST view."""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from callfs.blocks.layout import BLOCK_SIZE
from callfs.models import Layout
from callfs.node import Node
from support.app_node import AppNode
from support.http import session
from support.s3_face import client


def error_code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return str(info.value.response["Error"]["Code"])


def status_of(info: pytest.ExceptionInfo[ClientError]) -> int:
    return int(info.value.response["ResponseMetadata"]["HTTPStatusCode"])


def versioned_bucket(s3: Any, name: str, status: str = "Enabled") -> None:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})


def versions_of(s3: Any, bucket: str, **params: Any) -> list[tuple[str, str, bool, bool]]:
    """``(key, version id, is latest, is a delete marker)`` of every entry of one ListObjectVersions page, in
    the server's order (boto3 splits versions and markers: merged back by key, newest first)."""
    page = s3.list_object_versions(Bucket=bucket, **params)
    entries = [(v["Key"], v["VersionId"], v["IsLatest"], False, v["LastModified"]) for v in page.get("Versions", [])]
    entries += [(m["Key"], m["VersionId"], m["IsLatest"], True, m["LastModified"])
                for m in page.get("DeleteMarkers", [])]
    entries.sort(key=lambda e: (e[0].encode(), not e[2], -e[4].timestamp()))
    return [e[:4] for e in entries]


def blob_count(node: AppNode) -> int:
    """Blobs stored on the node's default backend."""
    async def count(n: Node) -> int:
        return len([b async for b in n.engine.backend(None).list_blobs(0.0)])
    return node.run(count)


async def rest_get(node: AppNode, path: str) -> tuple[int, bytes]:
    async with session(node, "alice") as http, http.get(f"/v1/files{path}") as response:
        return response.status, await response.read()


async def rest_names(node: AppNode, path: str) -> list[str]:
    async with session(node, "alice") as http, http.get(f"/v1/files{path}") as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    return sorted(e["name"] for e in body)


def test_versioning_configuration(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="conf")
    assert "Status" not in s3.get_bucket_versioning(Bucket="conf")
    s3.put_bucket_versioning(Bucket="conf", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="conf")["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket="conf", VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket="conf")["Status"] == "Suspended"
    with pytest.raises(ClientError) as bad:
        s3.put_bucket_versioning(Bucket="conf", VersioningConfiguration={"Status": "Off"})
    assert (error_code(bad), status_of(bad)) == ("IllegalVersioningConfigurationException", 400)
    with pytest.raises(ClientError) as other:
        client(s3_node, "bob").put_bucket_versioning(Bucket="conf", VersioningConfiguration={"Status": "Enabled"})
    assert error_code(other) == "AccessDenied"
    with pytest.raises(ClientError) as missing:
        s3.put_bucket_versioning(Bucket="nobucket", VersioningConfiguration={"Status": "Enabled"})
    assert error_code(missing) == "NoSuchBucket"


async def test_overwrites_keep_versions_readable_by_id(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "ver")
    bodies = [os.urandom(70_000) for _ in range(3)]
    puts = [s3.put_object(Bucket="ver", Key="dir/obj.bin", Body=b, ContentType=f"t/{i}") for i, b in enumerate(bodies)]
    ids = [put["VersionId"] for put in puts]
    assert len(set(ids)) == 3 and "null" not in ids
    current = s3.get_object(Bucket="ver", Key="dir/obj.bin")
    assert (current["Body"].read(), current["VersionId"]) == (bodies[2], ids[2])
    for i, version_id in enumerate(ids):
        got = s3.get_object(Bucket="ver", Key="dir/obj.bin", VersionId=version_id)
        assert (got["Body"].read(), got["VersionId"], got["ContentType"]) == (bodies[i], version_id, f"t/{i}")
        head = s3.head_object(Bucket="ver", Key="dir/obj.bin", VersionId=version_id)
        assert (head["ContentLength"], head["ETag"]) == (len(bodies[i]), puts[i]["ETag"])
        assert s3.get_object(Bucket="ver", Key="dir/obj.bin", VersionId=version_id,
                             IfMatch=puts[i]["ETag"])["Body"].read() == bodies[i]
    with pytest.raises(ClientError) as stale:
        s3.get_object(Bucket="ver", Key="dir/obj.bin", VersionId=ids[0], IfMatch=puts[1]["ETag"])
    assert status_of(stale) == 412
    ranged = s3.get_object(Bucket="ver", Key="dir/obj.bin", VersionId=ids[0], Range="bytes=10-19")
    assert ranged["Body"].read() == bodies[0][10:20]
    assert versions_of(s3, "ver") == [("dir/obj.bin", ids[2], True, False), ("dir/obj.bin", ids[1], False, False),
                                      ("dir/obj.bin", ids[0], False, False)]
    # The current version is the file REST sees; the noncurrent ones are not in the namespace.
    assert await rest_get(s3_node, "/ver/dir/obj.bin") == (200, bodies[2])
    assert await rest_names(s3_node, "/ver/dir") == ["obj.bin"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="ver")["Contents"]] == ["dir/obj.bin"]


async def test_delete_marker_hides_the_key_until_removed(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "marks")
    first = s3.put_object(Bucket="marks", Key="k", Body=b"one")["VersionId"]
    second = s3.put_object(Bucket="marks", Key="k", Body=b"two")["VersionId"]
    deleted = s3.delete_object(Bucket="marks", Key="k")
    marker = deleted["VersionId"]
    assert deleted["DeleteMarker"] is True and marker not in (first, second)
    with pytest.raises(ClientError) as gone:
        s3.get_object(Bucket="marks", Key="k")
    assert (error_code(gone), status_of(gone)) == ("NoSuchKey", 404)
    assert gone.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket="marks", Key="k")
    assert status_of(head) == 404
    with pytest.raises(ClientError) as at_marker:
        s3.get_object(Bucket="marks", Key="k", VersionId=marker)
    assert (error_code(at_marker), status_of(at_marker)) == ("MethodNotAllowed", 405)
    assert "Contents" not in s3.list_objects_v2(Bucket="marks")
    assert (await rest_get(s3_node, "/marks/k"))[0] == 404
    assert versions_of(s3, "marks") == [("k", marker, True, True), ("k", second, False, False),
                                        ("k", first, False, False)]
    assert s3.get_object(Bucket="marks", Key="k", VersionId=first)["Body"].read() == b"one"
    # Deleting the marker by its id makes the newest version current again, over S3 and REST alike.
    removed = s3.delete_object(Bucket="marks", Key="k", VersionId=marker)
    assert removed["DeleteMarker"] is True and removed["VersionId"] == marker
    assert s3.get_object(Bucket="marks", Key="k")["Body"].read() == b"two"
    assert await rest_get(s3_node, "/marks/k") == (200, b"two")
    # A delete marker for a key that never existed, as S3 adds one.
    ghost = s3.delete_object(Bucket="marks", Key="never/there")
    assert ghost["DeleteMarker"] is True
    assert ("never/there", ghost["VersionId"], True, True) in versions_of(s3, "marks")


async def test_deleting_the_current_version_promotes_the_previous_one(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "promo")
    put = s3.put_object(Bucket="promo", Key="a/b", Body=b"first")
    first = put["VersionId"]
    second = s3.put_object(Bucket="promo", Key="a/b", Body=b"second")["VersionId"]
    answer = s3.delete_object(Bucket="promo", Key="a/b", VersionId=second)
    assert answer["VersionId"] == second and "DeleteMarker" not in answer
    got = s3.get_object(Bucket="promo", Key="a/b")
    assert (got["Body"].read(), got["VersionId"], got["ETag"]) == (b"first", first, put["ETag"])
    assert await rest_get(s3_node, "/promo/a/b") == (200, b"first")
    assert versions_of(s3, "promo") == [("a/b", first, True, False)]
    s3.delete_object(Bucket="promo", Key="a/b", VersionId=first)
    assert "Versions" not in s3.list_object_versions(Bucket="promo")
    assert (await rest_get(s3_node, "/promo/a/b"))[0] == 404
    s3.delete_bucket(Bucket="promo")


def test_a_folder_holding_versions_stays(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "folders")
    version = s3.put_object(Bucket="folders", Key="f/x", Body=b"x")["VersionId"]
    s3.delete_object(Bucket="folders", Key="f/x")
    with pytest.raises(ClientError) as kept:
        s3.delete_object(Bucket="folders", Key="f/")
    assert (error_code(kept), status_of(kept)) == ("InvalidRequest", 409)
    with pytest.raises(ClientError) as by_id:
        s3.delete_object(Bucket="folders", Key="f/", VersionId="null")
    assert error_code(by_id) == "InvalidRequest"
    assert s3.get_object(Bucket="folders", Key="f/x", VersionId=version)["Body"].read() == b"x"


def test_unknown_and_malformed_version_ids(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "ids")
    s3.put_object(Bucket="ids", Key="k", Body=b"x")
    for call in (lambda v: s3.get_object(Bucket="ids", Key="k", VersionId=v),
                 lambda v: s3.head_object(Bucket="ids", Key="k", VersionId=v),
                 lambda v: s3.delete_object(Bucket="ids", Key="k", VersionId=v),
                 lambda v: s3.copy_object(Bucket="ids", Key="c", CopySource={"Bucket": "ids", "Key": "k",
                                                                             "VersionId": v})):
        with pytest.raises(ClientError) as malformed:
            call("not-a-version")
        assert status_of(malformed) == 400
    unknown = "0" * 32
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket="ids", Key="k", VersionId=unknown)
    assert (error_code(missing), status_of(missing)) == ("NoSuchVersion", 404)
    with pytest.raises(ClientError) as missing_copy:
        s3.copy_object(Bucket="ids", Key="c", CopySource={"Bucket": "ids", "Key": "k", "VersionId": unknown})
    assert error_code(missing_copy) == "NoSuchVersion"
    with pytest.raises(ClientError) as no_marker:
        s3.list_object_versions(Bucket="ids", VersionIdMarker=unknown)
    assert error_code(no_marker) == "InvalidArgument"
    s3.delete_object(Bucket="ids", Key="k", VersionId=unknown)  # nothing to delete: 204, as S3 answers
    assert s3.get_object(Bucket="ids", Key="k")["Body"].read() == b"x"


def test_null_version_of_unversioned_and_suspended_writes(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="susp")
    s3.put_object(Bucket="susp", Key="k", Body=b"before")  # written before versioning: the null version
    assert "VersionId" not in s3.put_object(Bucket="susp", Key="other", Body=b"o")
    assert s3.get_object(Bucket="susp", Key="k", VersionId="null")["Body"].read() == b"before"
    s3.put_bucket_versioning(Bucket="susp", VersioningConfiguration={"Status": "Enabled"})
    enabled = s3.put_object(Bucket="susp", Key="k", Body=b"enabled")["VersionId"]
    assert s3.get_object(Bucket="susp", Key="k", VersionId="null")["Body"].read() == b"before"
    s3.put_bucket_versioning(Bucket="susp", VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket="susp", Key="k", Body=b"suspended-1")["VersionId"] == "null"
    assert s3.put_object(Bucket="susp", Key="k", Body=b"suspended-2")["VersionId"] == "null"
    listed = [v for v in versions_of(s3, "susp") if v[0] == "k"]
    assert listed == [("k", "null", True, False), ("k", enabled, False, False)]
    assert s3.get_object(Bucket="susp", Key="k", VersionId="null")["Body"].read() == b"suspended-2"
    deleted = s3.delete_object(Bucket="susp", Key="k")
    assert (deleted["DeleteMarker"], deleted["VersionId"]) == (True, "null")
    assert [v for v in versions_of(s3, "susp") if v[0] == "k"] == [("k", "null", True, True),
                                                                   ("k", enabled, False, False)]


def test_copy_and_multipart_create_versions(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "copies")
    old = s3.put_object(Bucket="copies", Key="src", Body=b"old", Metadata={"m": "1"})["VersionId"]
    s3.put_object(Bucket="copies", Key="src", Body=b"new")
    copied = s3.copy_object(Bucket="copies", Key="dst", CopySource={"Bucket": "copies", "Key": "src", "VersionId": old})
    assert copied["CopySourceVersionId"] == old and copied["VersionId"] not in (old, "null")
    got = s3.get_object(Bucket="copies", Key="dst")
    assert (got["Body"].read(), got["Metadata"], got["VersionId"]) == (b"old", {"m": "1"}, copied["VersionId"])
    # Copying an older version onto its own key restores it as the newest version.
    restored = s3.copy_object(Bucket="copies", Key="src",
                              CopySource={"Bucket": "copies", "Key": "src", "VersionId": old})
    assert s3.get_object(Bucket="copies", Key="src")["Body"].read() == b"old"
    listed = versions_of(s3, "copies", Prefix="src")
    assert (len(listed), listed[0][1]) == (3, restored["VersionId"])
    upload = s3.create_multipart_upload(Bucket="copies", Key="src")["UploadId"]
    part = s3.upload_part(Bucket="copies", Key="src", UploadId=upload, PartNumber=1, Body=b"multipart")
    done = s3.complete_multipart_upload(Bucket="copies", Key="src", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert done["VersionId"] not in (old, restored["VersionId"])
    assert [v[1] for v in versions_of(s3, "copies", Prefix="src")][:2] == [done["VersionId"], restored["VersionId"]]


def test_delete_objects_with_version_ids(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "multi")
    a1 = s3.put_object(Bucket="multi", Key="a", Body=b"1")["VersionId"]
    a2 = s3.put_object(Bucket="multi", Key="a", Body=b"2")["VersionId"]
    s3.put_object(Bucket="multi", Key="b", Body=b"b")
    result = s3.delete_objects(Bucket="multi", Delete={"Objects": [
        {"Key": "a", "VersionId": a1}, {"Key": "b"}, {"Key": "a", "VersionId": "bad id"}]})
    deleted = {(d["Key"], d.get("VersionId"), d.get("DeleteMarker", False)) for d in result["Deleted"]}
    assert ("a", a1, False) in deleted and ("b", None, True) in deleted
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("a", "InvalidArgument")]
    marker = next(d["DeleteMarkerVersionId"] for d in result["Deleted"] if d["Key"] == "b")
    assert versions_of(s3, "multi") == [("a", a2, True, False), ("b", marker, True, True),
                                        ("b", versions_of(s3, "multi")[2][1], False, False)]
    again = s3.delete_objects(Bucket="multi", Delete={"Objects": [{"Key": "b", "VersionId": marker}]})
    assert again["Deleted"][0]["DeleteMarker"] is True
    assert s3.get_object(Bucket="multi", Key="b")["Body"].read() == b"b"


def test_list_object_versions_pages_and_rolls_up(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "pages")
    for key in ("a", "d/x", "d/y", "z"):
        for n in range(2):
            s3.put_object(Bucket="pages", Key=key, Body=f"{key}{n}".encode())
    s3.delete_object(Bucket="pages", Key="z")
    everything = versions_of(s3, "pages")
    assert [e[0] for e in everything] == ["a", "a", "d/x", "d/x", "d/y", "d/y", "z", "z", "z"]
    assert [e[2] for e in everything] == [True, False] * 3 + [True, False, False]
    collected: list[tuple[str, str]] = []
    params: dict[str, Any] = {"MaxKeys": 2}
    while True:
        page = s3.list_object_versions(Bucket="pages", **params)
        entries = [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        assert len(entries) <= 2
        collected += entries
        if not page["IsTruncated"]:
            break
        params = {"MaxKeys": 2, "KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert sorted(collected) == sorted((e[0], e[1]) for e in everything)
    rolled = s3.list_object_versions(Bucket="pages", Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["d/"]
    assert {v["Key"] for v in rolled["Versions"]} == {"a", "z"}
    prefixed = s3.list_object_versions(Bucket="pages", Prefix="d/")
    assert {v["Key"] for v in prefixed["Versions"]} == {"d/x", "d/y"}


def test_bucket_with_versions_is_not_empty(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "full")
    version = s3.put_object(Bucket="full", Key="k", Body=b"x")["VersionId"]
    marker = s3.delete_object(Bucket="full", Key="k")["VersionId"]
    with pytest.raises(ClientError) as busy:
        s3.delete_bucket(Bucket="full")
    assert error_code(busy) == "BucketNotEmpty"
    s3.delete_object(Bucket="full", Key="k", VersionId=version)
    with pytest.raises(ClientError) as marked:
        s3.delete_bucket(Bucket="full")
    assert error_code(marked) == "BucketNotEmpty"
    s3.delete_object(Bucket="full", Key="k", VersionId=marker)
    s3.delete_bucket(Bucket="full")
    s3.create_bucket(Bucket="full")
    assert "Status" not in s3.get_bucket_versioning(Bucket="full")


def test_versions_share_bytes_and_the_last_reference_frees_them(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "share")
    base = blob_count(s3_node)
    bodies = [os.urandom(200_000) for _ in range(3)]
    ids = [s3.put_object(Bucket="share", Key="k", Body=b)["VersionId"] for b in bodies]
    assert blob_count(s3_node) == base + 3  # one blob per write: keeping a version copies no byte
    marker = s3.delete_object(Bucket="share", Key="k")["VersionId"]
    assert blob_count(s3_node) == base + 3
    assert s3_node.sweep_orphans() == 0  # the orphan sweep knows the blobs versions name
    for version_id, body in zip(ids, bodies, strict=True):
        assert s3.get_object(Bucket="share", Key="k", VersionId=version_id)["Body"].read() == body
    s3.delete_object(Bucket="share", Key="k", VersionId=ids[0])
    assert blob_count(s3_node) == base + 2
    for version_id in (marker, ids[2], ids[1]):
        s3.delete_object(Bucket="share", Key="k", VersionId=version_id)
    assert blob_count(s3_node) == base
    assert s3_node.sweep_orphans() == 0


async def test_versions_count_against_the_bucket_quota(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "quota")
    async with session(s3_node, "root") as root:
        async with root.put("/v1/quotas/quota", json={"bytes_limit": 250_000}) as response:
            assert response.status == 201, await response.text()

        async def used() -> tuple[int, int]:
            async with root.get("/v1/quotas/quota") as response:
                body = await response.json()
            return body["bytes_used"], body["inodes_used"]

        first = s3.put_object(Bucket="quota", Key="k", Body=b"a" * 100_000)["VersionId"]
        s3.put_object(Bucket="quota", Key="k", Body=b"b" * 100_000)
        assert await used() == (200_000, 2)  # the current file and one noncurrent version
        with pytest.raises(ClientError) as full:
            s3.put_object(Bucket="quota", Key="k", Body=b"c" * 100_000)  # fits alone, not with the versions
        assert status_of(full) == 507
        marker = s3.delete_object(Bucket="quota", Key="k")["VersionId"]
        assert await used() == (200_000, 3)
        s3.delete_object(Bucket="quota", Key="k", VersionId=first)
        assert await used() == (100_000, 2)
        s3.put_object(Bucket="quota", Key="k", Body=b"c" * 100_000)
        assert await used() == (200_000, 3)
        s3.delete_object(Bucket="quota", Key="k", VersionId=marker)
        assert await used() == (200_000, 2)
        # A quota set anew starts from the usage of the subtree, kept versions included.
        async with root.delete("/v1/quotas/quota") as response:
            assert response.status == 204, await response.text()
        async with root.put("/v1/quotas/quota", json={"bytes_limit": 250_000}) as response:
            assert response.status == 201, await response.text()
        assert await used() == (200_000, 2)


async def test_a_file_in_blocks_keeps_its_block_list_as_a_version(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "blocks")
    data = bytearray(os.urandom(BLOCK_SIZE + 1000))
    first = s3.put_object(Bucket="blocks", Key="f", Body=bytes(data))["VersionId"]
    patch = b"P" * 3000
    async with session(s3_node, "alice") as http, http.put(
            "/v1/files/blocks/f", data=patch, headers={"Content-Range": f"bytes 100-{100 + len(patch) - 1}/*"}
    ) as response:
        assert response.status == 200, await response.text()
    data[100:100 + len(patch)] = patch
    inode = s3_node.run(lambda n: n.store.get("/blocks/f"))
    assert inode is not None and inode.layout is Layout.BLOCKS
    second = s3.put_object(Bucket="blocks", Key="f", Body=b"small")["VersionId"]
    assert second != first
    # The partial write kept the version id of the content it changed: that version, now in blocks, is kept.
    kept = s3.get_object(Bucket="blocks", Key="f", VersionId=first)
    assert kept["Body"].read() == bytes(data)
    assert s3.get_object(Bucket="blocks", Key="f", VersionId=first, Range="bytes=90-109")["Body"].read() == \
        bytes(data[90:110])
    s3.delete_object(Bucket="blocks", Key="f", VersionId=second)
    assert s3.get_object(Bucket="blocks", Key="f")["Body"].read() == bytes(data)
    assert await rest_get(s3_node, "/blocks/f") == (200, bytes(data))


async def test_deleting_the_bucket_over_rest_frees_its_versions(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    versioned_bucket(s3, "gone")
    base = blob_count(s3_node)
    for n in range(3):
        s3.put_object(Bucket="gone", Key="a/k", Body=os.urandom(50_000 + n))
    s3.delete_object(Bucket="gone", Key="a/k")
    assert blob_count(s3_node) == base + 3
    async with session(s3_node, "alice") as http, http.delete("/v1/files/gone", params={"recursive": "true"}) as r:
        assert r.status == 204, await r.text()
    assert blob_count(s3_node) == base
    assert s3_node.run(lambda n: n.store.versions_under("/")) == []
    s3.create_bucket(Bucket="gone")
    assert "Status" not in s3.get_bucket_versioning(Bucket="gone")
    assert "Versions" not in s3.list_object_versions(Bucket="gone")


async def test_versions_keep_the_permissions_of_the_file_they_were(s3_node: AppNode) -> None:
    alice, bob = client(s3_node), client(s3_node, "bob")
    versioned_bucket(alice, "perms")
    old = alice.put_object(Bucket="perms", Key="k", Body=b"old")["VersionId"]
    alice.put_object(Bucket="perms", Key="k", Body=b"new")
    async with session(s3_node, "alice") as http:
        for path, mode in (("/v1/files/perms", "0755"), ("/v1/files/perms/k", "0600")):
            async with http.patch(path, json={"mode": mode}) as response:
                assert response.status == 200, await response.text()
    with pytest.raises(ClientError) as current:
        bob.get_object(Bucket="perms", Key="k")
    assert error_code(current) == "AccessDenied"
    # The noncurrent version keeps the mode the file had (0644): bob, in alice's group, may read it...
    assert bob.get_object(Bucket="perms", Key="k", VersionId=old)["Body"].read() == b"old"
    # ...but not delete it: that needs write permission on the bucket, as deleting a file does.
    with pytest.raises(ClientError) as delete:
        bob.delete_object(Bucket="perms", Key="k", VersionId=old)
    assert error_code(delete) == "AccessDenied"
    with pytest.raises(ClientError) as marker:
        bob.delete_object(Bucket="perms", Key="k")
    assert error_code(marker) == "AccessDenied"
    assert [v[1] for v in versions_of(alice, "perms")][1] == old
