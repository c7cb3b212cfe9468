"""The S3 face with boto3 against a node: buckets and objects, on SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.app_node import AppNode
from support.s3_face import client


def error_code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return str(info.value.response["Error"]["Code"])


def test_bucket_lifecycle(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="photos")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos"]
    s3.head_bucket(Bucket="photos")
    with pytest.raises(ClientError) as again:
        s3.create_bucket(Bucket="photos")
    assert error_code(again) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket="photos", Key="a.txt", Body=b"x")
    with pytest.raises(ClientError) as busy:
        s3.delete_bucket(Bucket="photos")
    assert error_code(busy) == "BucketNotEmpty"
    s3.delete_object(Bucket="photos", Key="a.txt")
    s3.delete_bucket(Bucket="photos")
    assert s3.list_buckets()["Buckets"] == []
    with pytest.raises(ClientError) as gone:
        s3.head_bucket(Bucket="photos")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_put_get_head_delete(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="data")
    body = b"hello world" * 1000
    put = s3.put_object(Bucket="data", Key="dir/sub/file.bin", Body=body)
    got = s3.get_object(Bucket="data", Key="dir/sub/file.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket="data", Key="dir/sub/file.bin")
    assert head["ContentLength"] == len(body)
    ranged = s3.get_object(Bucket="data", Key="dir/sub/file.bin", Range="bytes=6-10")
    assert ranged["Body"].read() == b"world"
    assert ranged["ContentRange"] == f"bytes 6-10/{len(body)}"
    s3.delete_object(Bucket="data", Key="dir/sub/file.bin")
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket="data", Key="dir/sub/file.bin")
    assert error_code(missing) == "NoSuchKey"
    with pytest.raises(ClientError) as no_bucket:
        s3.get_object(Bucket="nothere", Key="x")
    assert error_code(no_bucket) == "NoSuchBucket"


def test_conditional_reads(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="cond")
    tag = s3.put_object(Bucket="cond", Key="k", Body=b"v")["ETag"]
    with pytest.raises(ClientError) as not_modified:
        s3.get_object(Bucket="cond", Key="k", IfNoneMatch=tag)
    assert not_modified.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket="cond", Key="k", IfMatch='"other"')
    assert error_code(failed) == "PreconditionFailed"
    assert s3.get_object(Bucket="cond", Key="k", IfMatch=tag)["Body"].read() == b"v"


def test_invalid_range_is_416(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="range")
    s3.put_object(Bucket="range", Key="k", Body=b"abc")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket="range", Key="k", Range="bytes=10-20")
    assert error_code(info) == "InvalidRange"


def test_checksums_are_checked(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="sums")
    for algorithm in ("CRC32", "SHA1", "SHA256"):  # CRC32C needs botocore[crt] on the client
        s3.put_object(Bucket="sums", Key=f"ok-{algorithm}", Body=b"payload", ChecksumAlgorithm=algorithm)
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="sums", Key="bad", Body=b"payload", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")
    assert error_code(info) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="sums", Key="bad")


def test_copy_object(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="src")
    s3.put_object(Bucket="src", Key="a/b", Body=b"copied bytes")
    result = s3.copy_object(Bucket="src", Key="c/d", CopySource={"Bucket": "src", "Key": "a/b"})
    assert result["CopyObjectResult"]["ETag"]
    assert s3.get_object(Bucket="src", Key="c/d")["Body"].read() == b"copied bytes"
    with pytest.raises(ClientError) as missing:
        s3.copy_object(Bucket="src", Key="e", CopySource={"Bucket": "src", "Key": "none"})
    assert error_code(missing) == "NoSuchKey"


def _keys(listing: dict[str, Any]) -> list[str]:
    return [item["Key"] for item in listing.get("Contents", [])]


def test_list_objects_v2(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="list")
    keys = ["a-c", "a/b", "a/c/d", "b", "photos/2024/x.jpg", "photos/2025/y.jpg", "photos/z.jpg"]
    for key in keys:
        s3.put_object(Bucket="list", Key=key, Body=key.encode())
    assert _keys(s3.list_objects_v2(Bucket="list")) == sorted(keys)
    top = s3.list_objects_v2(Bucket="list", Delimiter="/")
    assert _keys(top) == ["a-c", "b"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "photos/"]
    photos = s3.list_objects_v2(Bucket="list", Prefix="photos/", Delimiter="/")
    assert _keys(photos) == ["photos/z.jpg"]
    assert [p["Prefix"] for p in photos["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    assert _keys(s3.list_objects_v2(Bucket="list", StartAfter="b")) == sorted(keys)[4:]
    seen: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = s3.list_objects_v2(Bucket="list", MaxKeys=2, **token)
        seen += _keys(page)
        if not page["IsTruncated"]:
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    assert seen == sorted(keys)
    paginator = s3.get_paginator("list_objects")
    v1 = [k for p in paginator.paginate(Bucket="list", PaginationConfig={"PageSize": 3}) for k in _keys(p)]
    assert v1 == sorted(keys)


def test_delete_objects(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="many")
    for i in range(5):
        s3.put_object(Bucket="many", Key=f"k{i}", Body=b"x")
    result = s3.delete_objects(Bucket="many", Delete={"Objects": [{"Key": f"k{i}"} for i in range(3)]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["k0", "k1", "k2"]
    assert _keys(s3.list_objects_v2(Bucket="many")) == ["k3", "k4"]


def test_other_users_bucket_is_access_denied(s3_node: AppNode) -> None:
    alice, bob = client(s3_node, "alice"), client(s3_node, "bob")
    alice.create_bucket(Bucket="private")
    alice.put_object(Bucket="private", Key="secret", Body=b"s")
    for call in (lambda: bob.get_object(Bucket="private", Key="secret"),
                 lambda: bob.put_object(Bucket="private", Key="x", Body=b"x"),
                 lambda: bob.list_objects_v2(Bucket="private")):
        with pytest.raises(ClientError) as info:
            call()
        assert error_code(info) == "AccessDenied"
    assert bob.list_buckets()["Buckets"] == []
    with pytest.raises(ClientError) as taken:
        bob.create_bucket(Bucket="private")
    assert error_code(taken) == "BucketAlreadyExists"


def test_invalid_bucket_name(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    with pytest.raises(ClientError) as info:
        s3.create_bucket(Bucket="Bad_Name")
    assert error_code(info) == "InvalidBucketName"


def test_md5_of_get_matches(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="big")
    body = bytes(range(256)) * 4096 * 3  # 3 MiB
    s3.put_object(Bucket="big", Key="blob", Body=body)
    assert hashlib.sha256(s3.get_object(Bucket="big", Key="blob")["Body"].read()).digest() == \
        hashlib.sha256(body).digest()


def test_user_metadata_and_content_type(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="meta")
    s3.put_object(Bucket="meta", Key="doc", Body=b"{}", ContentType="application/json",
                  Metadata={"Color": "blue", "owner-team": "storage"})
    head = s3.head_object(Bucket="meta", Key="doc")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"color": "blue", "owner-team": "storage"}
    assert s3.get_object(Bucket="meta", Key="doc")["Metadata"] == {"color": "blue", "owner-team": "storage"}
    s3.copy_object(Bucket="meta", Key="copy", CopySource={"Bucket": "meta", "Key": "doc"})
    assert s3.head_object(Bucket="meta", Key="copy")["Metadata"] == {"color": "blue", "owner-team": "storage"}
    s3.copy_object(Bucket="meta", Key="doc", CopySource={"Bucket": "meta", "Key": "doc"},
                   MetadataDirective="REPLACE", Metadata={"color": "red"}, ContentType="text/plain")
    replaced = s3.head_object(Bucket="meta", Key="doc")
    assert (replaced["Metadata"], replaced["ContentType"]) == ({"color": "red"}, "text/plain")
    s3.put_object(Bucket="meta", Key="doc", Body=b"new")
    assert s3.head_object(Bucket="meta", Key="doc")["Metadata"] == {}


def test_too_much_metadata_is_refused(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="meta")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="meta", Key="big", Body=b"x", Metadata={"m": "v" * 3000})
    assert error_code(info) == "MetadataTooLarge"


def test_conditional_put(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="cput")
    s3.put_object(Bucket="cput", Key="once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="cput", Key="once", Body=b"2", IfNoneMatch="*")
    assert error_code(info) == "PreconditionFailed"
    assert s3.get_object(Bucket="cput", Key="once")["Body"].read() == b"1"


def test_if_match_on_a_missing_key_is_no_such_key(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="cput")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="cput", Key="absent", Body=b"1", IfMatch='"some-etag"')
    assert error_code(info) == "NoSuchKey"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="cput", Key="absent")


def test_unquoted_etags_match_in_conditions(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="bare")
    tag = s3.put_object(Bucket="bare", Key="k", Body=b"v")["ETag"]
    bare = tag.strip('"')
    assert s3.get_object(Bucket="bare", Key="k", IfMatch=bare)["Body"].read() == b"v"
    s3.copy_object(Bucket="bare", Key="copy", CopySource={"Bucket": "bare", "Key": "k"}, CopySourceIfMatch=bare)
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket="bare", Key="copy2", CopySource={"Bucket": "bare", "Key": "k"},
                       CopySourceIfNoneMatch=bare)
    assert error_code(info) == "PreconditionFailed"
    s3.put_object(Bucket="bare", Key="k", Body=b"w", IfMatch=bare)
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket="bare", Key="k", Body=b"x", IfMatch=bare)
    assert error_code(stale) == "PreconditionFailed"


def test_object_lock_bucket_is_not_implemented(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    with pytest.raises(ClientError) as info:
        s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    assert error_code(info) == "NotImplemented"
    assert s3.list_buckets()["Buckets"] == []


def test_if_none_match_with_entity_tags_on_put(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="inm")
    s3.put_object(Bucket="inm", Key="new", Body=b"1", IfNoneMatch='"some-etag"')
    tag = s3.put_object(Bucket="inm", Key="new", Body=b"2", IfNoneMatch="other")["ETag"]
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="inm", Key="new", Body=b"3", IfNoneMatch=tag.strip('"'))
    assert error_code(info) == "PreconditionFailed"
    assert s3.get_object(Bucket="inm", Key="new")["Body"].read() == b"2"


def test_bucket_left_with_empty_folders_is_empty(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="folders")
    s3.put_object(Bucket="folders", Key="a/b/c.txt", Body=b"1")
    s3.put_object(Bucket="folders", Key="a/d.txt", Body=b"2")
    s3.delete_object(Bucket="folders", Key="a/b/c.txt")
    with pytest.raises(ClientError) as busy:
        s3.delete_bucket(Bucket="folders")
    assert error_code(busy) == "BucketNotEmpty"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="folders")["Contents"]] == ["a/d.txt"]
    s3.delete_object(Bucket="folders", Key="a/d.txt")
    assert "Contents" not in s3.list_objects_v2(Bucket="folders")
    s3.delete_bucket(Bucket="folders")
    assert s3.list_buckets()["Buckets"] == []
