"""CompleteMultipartUpload joins parts without copying bytes when every part but the last is a whole number of
4 MiB blocks (the object gets the parts' blocks, one metadata transaction), and copies them otherwise; either
way the object is whole or absent, the staged parts go, quotas are exact, versions are kept, and the object
reads back the same through S3 and REST. Ends with a 1 GiB upload through boto3's managed transfer."""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from callfs.blocks.codec import is_block_hash
from callfs.blocks.layout import BLOCK_SIZE
from callfs.metadata import rows
from callfs.metadata.base import BlockNotReserved
from callfs.models import Inode, Layout
from callfs.permissions import Caller
from support.app_node import AppNode
from support.ports import free_port
from support.s3 import S3Server
from support.s3_face import client

MIB = 1 << 20


def stored(node: AppNode) -> dict[str, int]:
    """Every stored object (blobs and blocks) under the node's data directory, with its size in bytes."""
    return {p.name: p.stat().st_size for p in node.data_dir.rglob("objects/*/*") if p.is_file()}


def blocks_of(node: AppNode) -> dict[str, int]:
    return {name: size for name, size in stored(node).items() if is_block_hash(name)}


def collect(node: AppNode) -> None:
    """Free every unreferenced block and orphan blob now."""
    assert node.node is not None
    node.node.engine.block_files.grace = 0
    node.sweep_orphans()


def inode(node: AppNode, path: str) -> Inode | None:
    assert node.node is not None
    store = node.node.engine.store
    return node.run(lambda _: store.get(path))


def sha256_of_object(s3: Any, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(MIB), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_over_rest(node: AppNode, path: str) -> tuple[str, int]:
    """SHA-256 and ``Content-Length`` of a GET of ``path`` through the REST API, as alice."""
    digest = hashlib.sha256()
    headers = {"Authorization": f"Bearer {node.key_for('alice')}"}
    with requests.get(f"{node.url}/v1/files/{path}", headers=headers, stream=True, timeout=60) as answer:
        assert answer.status_code == 200, answer.text
        for chunk in answer.iter_content(MIB):
            digest.update(chunk)
        return digest.hexdigest(), int(answer.headers["Content-Length"])


def upload_parts(s3: Any, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict[str, Any]]]:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        tag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=data)["ETag"]
        listed.append({"PartNumber": number, "ETag": tag})
    return upload, listed


def error_code(info: pytest.ExceptionInfo[ClientError]) -> str:
    return str(info.value.response["Error"]["Code"])


def test_aligned_parts_complete_without_adding_a_byte(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="join")
    parts = [os.urandom(8 * MIB), os.urandom(2 * BLOCK_SIZE), os.urandom(MIB + 7)]
    whole = b"".join(parts)
    upload, listed = upload_parts(s3, "join", "media/clip.bin", parts)
    blocks_before = blocks_of(s3_node)
    assert len(blocks_before) == 2 + 2 + 1  # the parts were staged in blocks
    before = stored(s3_node)
    started = time.perf_counter()
    done = s3.complete_multipart_upload(Bucket="join", Key="media/clip.bin", UploadId=upload,
                                        MultipartUpload={"Parts": listed})
    elapsed = time.perf_counter() - started
    after = stored(s3_node)
    assert blocks_of(s3_node) == blocks_before  # no block written: the object has the parts' blocks
    assert set(after) <= set(before)  # nothing new on the backend (the upload record's blob is gone)
    assert sum(after.values()) <= sum(before.values())
    assert elapsed < 5
    joined = inode(s3_node, "/join/media/clip.bin")
    assert joined is not None and joined.layout is Layout.BLOCKS and joined.size == len(whole)
    assert done["ETag"] == s3.head_object(Bucket="join", Key="media/clip.bin")["ETag"]
    expected = hashlib.sha256(whole).hexdigest()
    assert sha256_of_object(s3, "join", "media/clip.bin") == expected
    assert sha256_over_rest(s3_node, "join/media/clip.bin") == (expected, len(whole))
    ranged = s3.get_object(Bucket="join", Key="media/clip.bin", Range=f"bytes={8 * MIB - 3}-{8 * MIB + 2}")
    assert ranged["Body"].read() == whole[8 * MIB - 3 : 8 * MIB + 3]  # across the first seam
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="join")
    collect(s3_node)  # the staged parts' references went: the blocks stay, held by the object alone
    assert blocks_of(s3_node) == blocks_before
    assert sha256_of_object(s3, "join", "media/clip.bin") == expected
    s3.delete_object(Bucket="join", Key="media/clip.bin")
    collect(s3_node)
    assert blocks_of(s3_node) == {}


def test_unaligned_parts_are_copied(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="odd")
    parts = [os.urandom(5 * MIB + 1), os.urandom(6 * MIB), os.urandom(10)]
    upload, listed = upload_parts(s3, "odd", "k", parts)
    s3.complete_multipart_upload(Bucket="odd", Key="k", UploadId=upload, MultipartUpload={"Parts": listed})
    copied = inode(s3_node, "/odd/k")
    assert copied is not None and copied.layout is Layout.BLOB and copied.size == sum(map(len, parts))
    expected = hashlib.sha256(b"".join(parts)).hexdigest()
    assert sha256_of_object(s3, "odd", "k") == expected
    assert sha256_over_rest(s3_node, "odd/k") == (expected, copied.size)
    collect(s3_node)  # the staged parts are gone: only the object's blob is left
    assert list(stored(s3_node)) == [copied.blob_id]


def test_parts_copied_with_upload_part_copy_are_shared(s3_node_sqlite: AppNode) -> None:
    node = s3_node_sqlite
    s3 = client(node)
    s3.create_bucket(Bucket="partcopy")
    source = os.urandom(3 * BLOCK_SIZE)
    s3.put_object(Bucket="partcopy", Key="source", Body=source)  # stored as one blob
    upload = s3.create_multipart_upload(Bucket="partcopy", Key="joined")["UploadId"]
    first = s3.upload_part_copy(Bucket="partcopy", Key="joined", UploadId=upload, PartNumber=1,
                                CopySource={"Bucket": "partcopy", "Key": "source"})["CopyPartResult"]["ETag"]
    second = s3.upload_part_copy(Bucket="partcopy", Key="joined", UploadId=upload, PartNumber=2,
                                 CopySource={"Bucket": "partcopy", "Key": "source"},
                                 CopySourceRange=f"bytes={BLOCK_SIZE}-{3 * BLOCK_SIZE - 1}")["CopyPartResult"]["ETag"]
    tail = s3.upload_part(Bucket="partcopy", Key="joined", UploadId=upload, PartNumber=3, Body=b"end")["ETag"]
    before = blocks_of(node)
    s3.complete_multipart_upload(Bucket="partcopy", Key="joined", UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}, {"PartNumber": 3, "ETag": tail}]})
    assert blocks_of(node) == before
    expected = source + source[BLOCK_SIZE:] + b"end"
    assert s3.get_object(Bucket="partcopy", Key="joined")["Body"].read() == expected


def test_versioned_bucket_keeps_the_replaced_object(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="vers")
    s3.put_bucket_versioning(Bucket="vers", VersioningConfiguration={"Status": "Enabled"})
    first, second = os.urandom(BLOCK_SIZE * 2), os.urandom(BLOCK_SIZE * 2)
    ids = []
    for data in (first, second):
        upload, listed = upload_parts(s3, "vers", "v", [data[: BLOCK_SIZE * 2 - MIB], data[BLOCK_SIZE * 2 - MIB :]])
        # 7 MiB then 1 MiB: unaligned, copied; then the same layout again below, aligned
        done = s3.complete_multipart_upload(Bucket="vers", Key="v", UploadId=upload,
                                            MultipartUpload={"Parts": listed})
        ids.append(done["VersionId"])
    upload, listed = upload_parts(s3, "vers", "v", [first[:BLOCK_SIZE * 2], b"!"])
    done = s3.complete_multipart_upload(Bucket="vers", Key="v", UploadId=upload, MultipartUpload={"Parts": listed})
    ids.append(done["VersionId"])
    assert len(set(ids)) == 3
    versions = s3.list_object_versions(Bucket="vers")["Versions"]
    assert [v["VersionId"] for v in versions] == ids[::-1]
    assert s3.get_object(Bucket="vers", Key="v")["Body"].read() == first[: BLOCK_SIZE * 2] + b"!"
    assert s3.get_object(Bucket="vers", Key="v", VersionId=ids[0])["Body"].read() == first
    assert s3.get_object(Bucket="vers", Key="v", VersionId=ids[1])["Body"].read() == second
    collect(s3_node)
    assert s3.get_object(Bucket="vers", Key="v", VersionId=ids[1])["Body"].read() == second


def set_quota(node: AppNode, path: str, limit: int | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {node.key_for('root')}"}
    answer = requests.put(f"{node.url}/v1/quotas/{path}", json={"bytes_limit": limit, "inodes_limit": 1000},
                          headers=headers, timeout=10)
    assert answer.status_code in (200, 201), answer.text
    return dict(answer.json())


def quota_used(node: AppNode, path: str) -> tuple[int, int]:
    headers = {"Authorization": f"Bearer {node.key_for('root')}"}
    answer = requests.get(f"{node.url}/v1/quotas/{path}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return int(body["bytes_used"]), int(body["inodes_used"])


def test_quota_is_exact_and_a_refused_completion_leaves_nothing(s3_node: AppNode) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="quota")
    set_quota(s3_node, "quota", 10 * MIB)
    assert quota_used(s3_node, "quota") == (0, 0)
    parts = [os.urandom(2 * BLOCK_SIZE), os.urandom(5 * MIB)]  # 13 MiB
    upload, listed = upload_parts(s3, "quota", "big", parts)
    assert quota_used(s3_node, "quota") == (0, 0)  # staged parts are not the bucket's
    blocks_before = blocks_of(s3_node)
    with pytest.raises(ClientError) as refused:
        s3.complete_multipart_upload(Bucket="quota", Key="big", UploadId=upload, MultipartUpload={"Parts": listed})
    assert error_code(refused) == "QuotaExceeded"
    assert inode(s3_node, "/quota/big") is None
    assert quota_used(s3_node, "quota") == (0, 0)
    assert blocks_of(s3_node) == blocks_before
    set_quota(s3_node, "quota", 13 * MIB)
    s3.complete_multipart_upload(Bucket="quota", Key="big", UploadId=upload, MultipartUpload={"Parts": listed})
    assert quota_used(s3_node, "quota") == (13 * MIB, 1)
    small = [os.urandom(BLOCK_SIZE * 2), b"x"]
    upload, listed = upload_parts(s3, "quota", "big", small)
    s3.complete_multipart_upload(Bucket="quota", Key="big", UploadId=upload, MultipartUpload={"Parts": listed})
    assert quota_used(s3_node, "quota") == (BLOCK_SIZE * 2 + 1, 1)  # the replaced object's bytes went
    assert s3.get_object(Bucket="quota", Key="big")["Body"].read() == b"".join(small)


def test_aborting_frees_the_staged_parts(s3_node_sqlite: AppNode) -> None:
    node = s3_node_sqlite
    s3 = client(node)
    s3.create_bucket(Bucket="gone")
    upload, _ = upload_parts(s3, "gone", "k", [os.urandom(BLOCK_SIZE * 2), os.urandom(100)])
    assert len(blocks_of(node)) == 3
    s3.abort_multipart_upload(Bucket="gone", Key="k", UploadId=upload)
    collect(node)
    assert stored(node) == {}


def test_a_failure_inside_the_join_commits_nothing(s3_node: AppNode, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = client(s3_node)
    s3.create_bucket(Bucket="fault")
    s3.put_object(Bucket="fault", Key="k", Body=b"previous")
    parts = [os.urandom(2 * BLOCK_SIZE), os.urandom(2 * BLOCK_SIZE), os.urandom(3)]
    upload, listed = upload_parts(s3, "fault", "k", parts)
    real = rows.Queries.share_blocks

    async def failing_later(self: rows.Queries, source: Inode, target: Inode, *, at: int = 0) -> int:
        if at > 0:  # the first part is shared already, in the same transaction
            raise BlockNotReserved("injected: a part's block has no live row")
        return await real(self, source, target, at=at)

    monkeypatch.setattr(rows.Queries, "share_blocks", failing_later)
    with pytest.raises(ClientError) as failed:
        s3.complete_multipart_upload(Bucket="fault", Key="k", UploadId=upload, MultipartUpload={"Parts": listed})
    assert error_code(failed) == "ServiceUnavailable"
    monkeypatch.setattr(rows.Queries, "share_blocks", real)
    assert s3.get_object(Bucket="fault", Key="k")["Body"].read() == b"previous"
    assert [p["PartNumber"] for p in s3.list_parts(Bucket="fault", Key="k", UploadId=upload)["Parts"]] == [1, 2, 3]
    s3.complete_multipart_upload(Bucket="fault", Key="k", UploadId=upload, MultipartUpload={"Parts": listed})
    assert s3.get_object(Bucket="fault", Key="k")["Body"].read() == b"".join(parts)
    s3.delete_object(Bucket="fault", Key="k")
    collect(s3_node)
    assert stored(s3_node) == {}  # the failed attempt took no reference that would keep a block alive


class PseudoRandomStream(io.RawIOBase):
    """``size`` bytes made as they are read (never held whole) and hashed on the way (``sha256``): each 4 MiB
    block is one seeded pseudo-random 4 MiB pattern with the block's number in its first 8 bytes, so no two
    blocks are alike (none is stored once for two) and making them costs a copy, not a generator's time."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.position = 0
        self.pattern = random.Random(seed).randbytes(BLOCK_SIZE)
        self.block_index = -1
        self.block = b""
        self.sha256 = hashlib.sha256()

    @property
    def left(self) -> int:
        return self.size - self.position

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        pieces = []
        while self.position < end:
            index, offset = divmod(self.position, BLOCK_SIZE)
            if index != self.block_index:
                self.block_index, self.block = index, index.to_bytes(8, "big") + self.pattern[8:]
            piece = self.block[offset : offset + end - self.position]
            pieces.append(piece)
            self.position += len(piece)
        data = b"".join(pieces)
        self.sha256.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def chunks_of(body: Any) -> Iterator[bytes]:
    return iter(lambda: body.read(4 * MIB), b"")


def test_one_gib_through_boto3(s3_node_sqlite: AppNode) -> None:
    node = s3_node_sqlite
    s3 = client(node)
    s3.create_bucket(Bucket="gib")
    size = 1 << 30
    stream = PseudoRandomStream(size, seed=20261205)
    config = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=2)
    s3.upload_fileobj(stream, "gib", "one.bin", Config=config)
    assert stream.left == 0
    expected = stream.sha256.hexdigest()
    got = hashlib.sha256()
    for chunk in chunks_of(s3.get_object(Bucket="gib", Key="one.bin")["Body"]):
        got.update(chunk)
    assert got.hexdigest() == expected
    headers = {"Authorization": f"Bearer {node.key_for('alice')}"}
    head = requests.head(f"{node.url}/v1/files/gib/one.bin", headers=headers, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == size
    stored_object = inode(node, "/gib/one.bin")
    assert stored_object is not None and stored_object.layout is Layout.BLOCKS and stored_object.size == size


def test_aligned_parts_on_the_s3_backend_share_their_block_objects(
    app_node_factory: Callable[..., AppNode], s3_server: S3Server, s3_bucket: str
) -> None:
    backend = {k: v for k, v in s3_server.backend_config(s3_bucket).model_dump().items() if v is not None}
    node = app_node_factory(s3={"listen_addr": f"127.0.0.1:{free_port()}"}, backend=backend)
    s3 = client(node)
    s3.create_bucket(Bucket="remote")
    parts = [os.urandom(2 * BLOCK_SIZE), os.urandom(3)]
    upload, listed = upload_parts(s3, "remote", "k", parts)

    def objects() -> set[str]:
        listing = s3_server.client().list_objects_v2(Bucket=s3_bucket)
        return {item["Key"] for item in listing.get("Contents", [])}

    before = objects()
    s3.complete_multipart_upload(Bucket="remote", Key="k", UploadId=upload, MultipartUpload={"Parts": listed})
    assert objects() <= before  # no object written on the backend (the upload record's blob went)
    joined = inode(node, "/remote/k")
    assert joined is not None and joined.layout is Layout.BLOCKS and joined.instance_id is None
    assert sha256_of_object(s3, "remote", "k") == hashlib.sha256(b"".join(parts)).hexdigest()


def test_an_abort_racing_the_completion_is_no_such_upload(s3_node_sqlite: AppNode,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    node = s3_node_sqlite
    s3 = client(node)
    s3.create_bucket(Bucket="race")
    upload, listed = upload_parts(s3, "race", "k", [os.urandom(BLOCK_SIZE * 2), b"tail"])
    assert node.node is not None
    engine = node.node.engine
    real = engine.join_files

    async def aborted_first(*args: Any, **kwargs: Any) -> Any:
        await engine.delete(Caller("root"), f"/.multipart/{upload}", recursive=True)  # the abort wins the race
        return await real(*args, **kwargs)

    monkeypatch.setattr(engine, "join_files", aborted_first)
    with pytest.raises(ClientError) as raced:
        s3.complete_multipart_upload(Bucket="race", Key="k", UploadId=upload, MultipartUpload={"Parts": listed})
    assert error_code(raced) == "NoSuchUpload"
    assert inode(node, "/race/k") is None
    collect(node)
    assert stored(node) == {}
