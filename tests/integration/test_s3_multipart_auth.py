"""The S3 face: multipart uploads, presigned URLs, signature and time errors, and the REST view of the same
objects."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests
from botocore.exceptions import ClientError

from support.app_node import AppNode
from support.s3_face import client, s3_url

PART = 8 * 1024 * 1024


def error_code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return str(info.value.response["Error"]["Code"])


def test_multipart_upload_of_64_mib(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="big")
    upload = s3.create_multipart_upload(Bucket="big", Key="videos/movie.bin")["UploadId"]
    digest = hashlib.sha256()
    parts = []
    for number in range(1, 9):
        chunk = os.urandom(1024) * (PART // 1024)
        digest.update(chunk)
        tag = s3.upload_part(Bucket="big", Key="videos/movie.bin", UploadId=upload, PartNumber=number, Body=chunk)
        parts.append({"PartNumber": number, "ETag": tag["ETag"]})
        assert tag["ETag"] == f'"{hashlib.md5(chunk).hexdigest()}"'  # noqa: S324
    listed = s3.list_parts(Bucket="big", Key="videos/movie.bin", UploadId=upload)
    assert [p["PartNumber"] for p in listed["Parts"]] == list(range(1, 9))
    uploads = s3.list_multipart_uploads(Bucket="big")["Uploads"]
    assert [u["UploadId"] for u in uploads] == [upload]
    s3.complete_multipart_upload(Bucket="big", Key="videos/movie.bin", UploadId=upload,
                                 MultipartUpload={"Parts": parts})
    got = hashlib.sha256()
    body = s3.get_object(Bucket="big", Key="videos/movie.bin")["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        got.update(chunk)
    assert got.digest() == digest.digest()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="big")


def test_multipart_errors(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="mpu")
    upload = s3.create_multipart_upload(Bucket="mpu", Key="k")["UploadId"]
    one = s3.upload_part(Bucket="mpu", Key="k", UploadId=upload, PartNumber=1, Body=b"small")["ETag"]
    two = s3.upload_part(Bucket="mpu", Key="k", UploadId=upload, PartNumber=2, Body=b"tail")["ETag"]
    with pytest.raises(ClientError) as order:
        s3.complete_multipart_upload(Bucket="mpu", Key="k", UploadId=upload, MultipartUpload={"Parts": [
            {"PartNumber": 2, "ETag": two}, {"PartNumber": 1, "ETag": one}]})
    assert error_code(order) == "InvalidPartOrder"
    with pytest.raises(ClientError) as wrong:
        s3.complete_multipart_upload(Bucket="mpu", Key="k", UploadId=upload, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    assert error_code(wrong) == "InvalidPart"
    with pytest.raises(ClientError) as small:
        s3.complete_multipart_upload(Bucket="mpu", Key="k", UploadId=upload, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": one}, {"PartNumber": 2, "ETag": two}]})
    assert error_code(small) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket="mpu", Key="k", UploadId=upload)
    with pytest.raises(ClientError) as gone:
        s3.list_parts(Bucket="mpu", Key="k", UploadId=upload)
    assert error_code(gone) == "NoSuchUpload"


def test_upload_part_copy(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="pcopy")
    source = os.urandom(PART // 2) * 2
    s3.put_object(Bucket="pcopy", Key="source", Body=source)
    upload = s3.create_multipart_upload(Bucket="pcopy", Key="joined")["UploadId"]
    first = s3.upload_part_copy(Bucket="pcopy", Key="joined", UploadId=upload, PartNumber=1,
                                CopySource={"Bucket": "pcopy", "Key": "source"})["CopyPartResult"]["ETag"]
    second = s3.upload_part_copy(Bucket="pcopy", Key="joined", UploadId=upload, PartNumber=2,
                                 CopySource={"Bucket": "pcopy", "Key": "source"},
                                 CopySourceRange="bytes=0-99")["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(Bucket="pcopy", Key="joined", UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]})
    assert s3.get_object(Bucket="pcopy", Key="joined")["Body"].read() == source + source[:100]


def test_s3_and_rest_see_the_same_files(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="common")
    s3.put_object(Bucket="common", Key="docs/readme.txt", Body=b"from s3")
    headers = {"Authorization": f"Bearer {s3_node.key_for('alice')}"}
    rest = requests.get(f"{s3_node.url}/v1/files/common/docs/readme.txt", headers=headers, timeout=10)
    assert rest.status_code == 200 and rest.content == b"from s3"
    assert rest.headers["X-CallFS-Owner"] == "alice"
    assert rest.headers["ETag"] == s3.head_object(Bucket="common", Key="docs/readme.txt")["ETag"]
    put = requests.put(f"{s3_node.url}/v1/files/common/docs/from-rest.txt", data=b"from rest", headers=headers,
                       timeout=10)
    assert put.status_code == 201
    assert s3.get_object(Bucket="common", Key="docs/from-rest.txt")["Body"].read() == b"from rest"


def test_presigned_urls(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="pre")
    upload = s3.generate_presigned_url("put_object", Params={"Bucket": "pre", "Key": "up"}, ExpiresIn=60)
    assert requests.put(upload, data=b"presigned body", timeout=10).status_code == 200
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "pre", "Key": "up"}, ExpiresIn=60)
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200 and answer.content == b"presigned body"
    s3_node.clock.advance(120)
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403 and b"<Code>AccessDenied</Code>" in expired.content
    assert b"expired" in expired.content
    tampered = url.replace("/pre/up", "/pre/other")
    s3_node.clock.advance(-120)
    refused = requests.get(tampered, timeout=10)
    assert refused.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in refused.content


def test_bad_signature_unknown_key_and_skew(s3_node_sqlite: AppNode) -> None:
    good = client(s3_node_sqlite)
    good.create_bucket(Bucket="auth")
    import boto3
    from botocore.config import Config as BotoConfig

    def other(key: str, secret: str) -> object:
        return boto3.client("s3", endpoint_url=s3_url(s3_node_sqlite), aws_access_key_id=key,
                            aws_secret_access_key=secret, region_name="us-east-1",
                            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    with pytest.raises(ClientError) as bad:
        other("S3ALICE", "not-the-secret-at-all-000").list_buckets()  # type: ignore[attr-defined]
    assert error_code(bad) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as unknown:
        other("S3NOBODY", "whatever-secret-value-00").list_buckets()  # type: ignore[attr-defined]
    assert error_code(unknown) == "InvalidAccessKeyId"
    s3_node_sqlite.clock.advance(3600)
    with pytest.raises(ClientError) as skew:
        good.list_buckets()
    assert error_code(skew) == "RequestTimeTooSkewed"
    anonymous = requests.get(s3_url(s3_node_sqlite) + "/auth", timeout=10)
    assert anonymous.status_code == 403 and b"<Code>AccessDenied</Code>" in anonymous.content


def test_versioning_status_absent_until_set(s3_node_sqlite: AppNode) -> None:
    s3 = client(s3_node_sqlite)
    s3.create_bucket(Bucket="ver")
    assert "Status" not in s3.get_bucket_versioning(Bucket="ver")
    s3.put_bucket_versioning(Bucket="ver", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="ver")["Status"] == "Enabled"
