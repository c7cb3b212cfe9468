"""The S3 byte backend against real S3-compatible servers (SeaweedFS and moto, see ``support/s3.py``).

Every test that takes ``backend`` runs once per server kind. The pure rules of ``callfs.backends.s3`` (range
clamping, stale-upload selection, key validation, error wording) are pinned at the end without a server.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from callfs.backends.base import BackendUnavailable
from callfs.backends.s3 import (
    INCOMPLETE_UPLOAD_MAX_AGE,
    KEY_PREFIX,
    MIN_PART_SIZE,
    PendingUpload,
    S3Backend,
    S3BlobWriter,
    blob_id_of,
    blob_key,
    range_header,
    stale_uploads,
    unavailable_message,
)
from callfs.config import BackendConfig
from support.ports import free_port
from support.s3 import SERVER_KINDS, S3Server, running_s3_server

MIB = 1 << 20
PART = MIN_PART_SIZE
"""The backends under test use S3's smallest part (5 MiB), so multipart paths run with little data."""


def new_blob_id() -> str:
    return secrets.token_hex(16)


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible, non-repeating-looking bytes (so misplaced ranges or parts cannot compare equal)."""
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * 4096  # 128 KiB
    whole, rest = divmod(size, len(block))
    out = bytearray()
    for i in range(whole):
        out += bytes(b ^ (i & 0xFF) for b in block[:16]) + block[16:]
    out += block[:rest]
    return bytes(out)


async def write_blob(backend: S3Backend, blob_id: str, data: bytes, chunk: int = MIB) -> None:
    writer = await backend.create(blob_id)
    for start in range(0, len(data), chunk):
        await writer.write(data[start : start + chunk])
    assert writer.bytes_written == len(data)
    await writer.commit()


async def read_range(backend: S3Backend, blob_id: str, offset: int, length: int, chunk_size: int = MIB) -> bytes:
    reader = await backend.open(blob_id)
    try:
        out = bytearray()
        async for piece in reader.iter_range(offset, length, chunk_size):
            assert 0 < len(piece) <= chunk_size
            out += piece
        return bytes(out)
    finally:
        await reader.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def etag_of(server: S3Server, bucket: str, blob_id: str) -> str:
    return str(server.client().head_object(Bucket=bucket, Key=blob_key(blob_id))["ETag"]).strip('"')


def pending_uploads(server: S3Server, bucket: str) -> list[str]:
    response = server.client().list_multipart_uploads(Bucket=bucket)
    return [str(u["Key"]) for u in response.get("Uploads", [])]


@pytest.fixture
async def backend(backend_config: BackendConfig) -> AsyncIterator[S3Backend]:
    """A started S3 backend on a fresh bucket, with 5 MiB parts."""
    b = S3Backend(backend_config, part_size=PART)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


# --- writes and reads -------------------------------------------------------------------------------------------


async def test_small_blob_is_one_put_and_reads_back(backend: S3Backend, s3_server: S3Server, s3_bucket: str) -> None:
    data = pattern(300_000, seed=1)
    blob_id = new_blob_id()
    await write_blob(backend, blob_id, data, chunk=64 * 1024)
    reader = await backend.open(blob_id)
    assert reader.size == len(data)
    assert reader.local_file() is None
    await reader.close()
    assert sha256(await read_range(backend, blob_id, 0, len(data))) == sha256(data)
    assert "-" not in etag_of(s3_server, s3_bucket, blob_id), "a one-part blob must be a plain PutObject"


async def test_blob_of_exactly_one_part_is_a_single_put(
    backend: S3Backend, s3_server: S3Server, s3_bucket: str
) -> None:
    data = pattern(PART, seed=2)
    blob_id = new_blob_id()
    await write_blob(backend, blob_id, data)
    assert "-" not in etag_of(s3_server, s3_bucket, blob_id)
    assert sha256(await read_range(backend, blob_id, 0, len(data))) == sha256(data)


async def test_large_blob_is_multipart_and_reads_back(backend: S3Backend, s3_server: S3Server, s3_bucket: str) -> None:
    data = pattern(12 * MIB + 12_345, seed=3)
    blob_id = new_blob_id()
    # Odd chunk size: parts are cut across chunk boundaries.
    await write_blob(backend, blob_id, data, chunk=700_001)
    assert etag_of(s3_server, s3_bucket, blob_id).endswith("-3"), "12 MiB in 5 MiB parts is a 3-part upload"
    assert (await backend.open(blob_id)).size == len(data)
    assert sha256(await read_range(backend, blob_id, 0, len(data))) == sha256(data)
    assert pending_uploads(s3_server, s3_bucket) == []


async def test_empty_blob_reads_back_empty(backend: S3Backend) -> None:
    blob_id = new_blob_id()
    await write_blob(backend, blob_id, b"")
    reader = await backend.open(blob_id)
    assert reader.size == 0
    assert [piece async for piece in reader.iter_range(0, 10, 4)] == []


@pytest.mark.parametrize(
    ("offset", "length", "chunk_size"),
    [
        (0, 1, 1),
        (1, 10, 3),
        (PART - 5, 10, 4),  # across the part boundary
        (PART + 17, 2 * MIB, 64 * 1024),
        (6 * MIB, 10 * MIB, MIB),  # runs past the end: clamped
        (6 * MIB + 99, 0, 8),  # empty
        (7 * MIB, 5, 5),  # starts past the end: nothing
    ],
)
async def test_ranged_reads_return_exactly_the_requested_bytes(
    backend: S3Backend, offset: int, length: int, chunk_size: int
) -> None:
    data = pattern(6 * MIB + 100, seed=4)
    blob_id = new_blob_id()
    await write_blob(backend, blob_id, data)
    got = await read_range(backend, blob_id, offset, length, chunk_size)
    assert got == data[offset : offset + length]


async def test_blob_is_invisible_until_commit(backend: S3Backend) -> None:
    blob_id = new_blob_id()
    writer = await backend.create(blob_id)
    await writer.write(pattern(PART + 1, seed=5))  # a multipart upload is under way
    with pytest.raises(FileNotFoundError):
        await backend.open(blob_id)
    assert [b async for b in backend.list_blobs()] == []
    await writer.commit()
    assert (await backend.open(blob_id)).size == PART + 1


async def test_writer_refuses_writes_after_commit(backend: S3Backend) -> None:
    writer = await backend.create(new_blob_id())
    await writer.write(b"x")
    await writer.commit()
    with pytest.raises(RuntimeError):
        await writer.write(b"y")
    await writer.abort()  # no-op on a finished writer


async def test_open_of_a_missing_blob_is_file_not_found(backend: S3Backend) -> None:
    with pytest.raises(FileNotFoundError):
        await backend.open(new_blob_id())


async def test_read_of_a_blob_deleted_after_open_is_file_not_found(backend: S3Backend) -> None:
    blob_id = new_blob_id()
    await write_blob(backend, blob_id, b"soon gone")
    reader = await backend.open(blob_id)
    await backend.delete(blob_id)
    with pytest.raises(FileNotFoundError):
        async for _ in reader.iter_range(0, reader.size, 4):
            pass


async def test_delete_is_idempotent(backend: S3Backend) -> None:
    blob_id = new_blob_id()
    await write_blob(backend, blob_id, b"bytes")
    await backend.delete(blob_id)
    with pytest.raises(FileNotFoundError):
        await backend.open(blob_id)
    await backend.delete(blob_id)
    await backend.delete(new_blob_id())


@pytest.mark.parametrize("size", [1000, 2 * PART + 1], ids=["single-put", "multipart"])
async def test_abort_leaves_no_object_and_no_pending_upload(
    backend: S3Backend, s3_server: S3Server, s3_bucket: str, size: int
) -> None:
    blob_id = new_blob_id()
    writer = await backend.create(blob_id)
    await writer.write(pattern(size, seed=6))
    if size > PART:
        assert pending_uploads(s3_server, s3_bucket) == [blob_key(blob_id)]
    await writer.abort()
    await writer.abort()
    with pytest.raises(FileNotFoundError):
        await backend.open(blob_id)
    assert pending_uploads(s3_server, s3_bucket) == []
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=s3_bucket)


async def test_failed_commit_aborts_the_multipart_upload(
    backend: S3Backend, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_id = new_blob_id()
    writer = await backend.create(blob_id)
    await writer.write(pattern(PART + 10, seed=7))

    async def refuse(**_: object) -> None:  # fault injection: the server refuses to complete
        raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "CompleteMultipartUpload")

    monkeypatch.setattr(backend.client, "complete_multipart_upload", refuse)
    with pytest.raises(ClientError):
        await writer.commit()
    assert pending_uploads(s3_server, s3_bucket) == []
    with pytest.raises(FileNotFoundError):
        await backend.open(blob_id)


async def test_list_blobs_returns_committed_blobs_only(backend: S3Backend, s3_server: S3Server, s3_bucket: str) -> None:
    committed = {new_blob_id() for _ in range(3)}
    for blob_id in committed:
        await write_blob(backend, blob_id, blob_id.encode())
    unfinished = await backend.create(new_blob_id())
    await unfinished.write(pattern(PART + 1))
    s3_server.client().put_object(Bucket=s3_bucket, Key="elsewhere/not-a-blob", Body=b"x")
    assert {b async for b in backend.list_blobs()} == committed
    await unfinished.abort()


async def test_list_blobs_follows_pagination(backend: S3Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    committed = {new_blob_id() for _ in range(5)}
    for blob_id in committed:
        await write_blob(backend, blob_id, b"x")
    paginator = backend.client.get_paginator("list_objects_v2")
    original = paginator.paginate
    # Two keys per page (instead of 1000) so that five blobs take three ListObjectsV2 pages.
    monkeypatch.setattr(paginator, "paginate", lambda **kw: original(**kw, PaginationConfig={"PageSize": 2}))
    monkeypatch.setattr(backend.client, "get_paginator", lambda name: paginator)
    assert {b async for b in backend.list_blobs()} == committed


async def test_list_blobs_leaves_out_blobs_younger_than_min_age(backend: S3Backend) -> None:
    blob_id = new_blob_id()
    await write_blob(backend, blob_id, b"fresh")
    assert [b async for b in backend.list_blobs(min_age=600)] == []
    assert [b async for b in backend.list_blobs()] == [blob_id]
    later = datetime.now(UTC) + timedelta(minutes=11)  # fault injection: the clock jumps past the grace
    backend.clock = lambda: later
    assert [b async for b in backend.list_blobs(min_age=600)] == [blob_id]


async def test_server_side_encryption_is_requested_when_configured(s3_server: S3Server, s3_bucket: str) -> None:
    backend = S3Backend(s3_server.backend_config(s3_bucket, s3_server_side_encryption="AES256"), part_size=PART)
    await backend.start()
    try:
        small, large = new_blob_id(), new_blob_id()
        await write_blob(backend, small, b"secret")
        await write_blob(backend, large, pattern(PART + 1))
        for blob_id in (small, large):
            head = s3_server.client().head_object(Bucket=s3_bucket, Key=blob_key(blob_id))
            assert head.get("ServerSideEncryption") == "AES256"
    finally:
        await backend.close()


# --- memory -----------------------------------------------------------------------------------------------------


async def test_writing_and_reading_64_mib_keeps_memory_bounded(backend: S3Backend) -> None:
    """tracemalloc sees every Python allocation (request bodies, buffers), independent of earlier RSS peaks."""
    size, block = 64 * MIB, pattern(MIB, seed=8)
    blob_id = new_blob_id()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        writer = await backend.create(blob_id)
        for _ in range(size // MIB):
            await writer.write(block)
        await writer.commit()
        write_growth = tracemalloc.get_traced_memory()[1] - baseline

        reader = await backend.open(blob_id)
        digest = hashlib.sha256()
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        async for piece in reader.iter_range(0, size, MIB):
            digest.update(piece)
        read_growth = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == hashlib.sha256(block * (size // MIB)).hexdigest()
    # One part being filled + one in flight (+ transient copies in the HTTP stack) — far below the blob.
    assert write_growth < 3 * PART, f"writer peak grew by {write_growth / MIB:.1f} MiB"
    assert read_growth < 16 * MIB, f"reader peak grew by {read_growth / MIB:.1f} MiB"


# --- start-up and health ----------------------------------------------------------------------------------------


async def test_wrong_secret_key_is_unavailable_with_a_clear_message(s3_server: S3Server, s3_bucket: str) -> None:
    backend = S3Backend(s3_server.backend_config(s3_bucket, s3_secret_key="not-the-secret-key-at-all"))
    with pytest.raises(BackendUnavailable) as caught:
        await backend.start()
    message = str(caught.value)
    assert "access denied / invalid credentials" in message
    assert s3_bucket in message and s3_server.endpoint in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert await backend.ping() is False


async def test_missing_bucket_is_unavailable_naming_the_bucket(s3_server: S3Server) -> None:
    backend = S3Backend(s3_server.backend_config("callfs-no-such-bucket"))
    with pytest.raises(BackendUnavailable, match=r"bucket 'callfs-no-such-bucket' does not exist"):
        await backend.start()


async def test_unreachable_endpoint_is_unavailable_within_seconds() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = BackendConfig(s3_bucket_name="anything", s3_endpoint=endpoint, s3_access_key="k", s3_secret_key="s")
    backend = S3Backend(config)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot connect") as caught:
        await backend.start()
    assert time.monotonic() - started < 5.0
    assert endpoint in str(caught.value)


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_ping_is_false_once_the_server_is_gone(kind: str, tmp_path: Path) -> None:
    with running_s3_server(kind, tmp_path / kind) as server:
        bucket = f"callfs-ping-{secrets.token_hex(4)}"
        server.client().create_bucket(Bucket=bucket)
        backend = S3Backend(server.backend_config(bucket))
        await backend.start()
        assert await backend.ping() is True
    try:
        started = time.monotonic()
        assert await backend.ping() is False
        assert time.monotonic() - started < 6.0
    finally:
        await backend.close()


async def test_ping_is_false_before_start_and_after_close(backend_config: BackendConfig) -> None:
    backend = S3Backend(backend_config)
    assert await backend.ping() is False
    await backend.start()
    assert await backend.ping() is True
    await backend.close()
    assert await backend.ping() is False


# --- sweep of interrupted uploads -------------------------------------------------------------------------------


async def start_multipart(backend: S3Backend) -> tuple[str, S3BlobWriter]:
    blob_id = new_blob_id()
    writer = await backend.create(blob_id)
    await writer.write(pattern(PART + 1, seed=9))  # the first part is sent: the upload now exists
    return blob_id, writer


def skip_without_upload_times(server: S3Server) -> None:
    if server.kind == "moto":
        pytest.skip("moto's ListMultipartUploads reports a fixed Initiated date (2010-11-10), not the real one")


async def test_sweep_keeps_uploads_younger_than_an_hour(backend: S3Backend, s3_server: S3Server) -> None:
    skip_without_upload_times(s3_server)
    _, writer = await start_multipart(backend)
    assert await backend.sweep_incomplete() == 0
    await writer.commit()  # the sweep did not break the writer


async def test_sweep_aborts_an_old_upload_and_keeps_a_young_one(backend: S3Backend, s3_server: S3Server) -> None:
    skip_without_upload_times(s3_server)
    old_id, old_writer = await start_multipart(backend)
    (old,) = await backend.list_incomplete()
    # Server timestamps may have one-second resolution: the young upload must start in a later second.
    while datetime.now(UTC) < old.initiated + timedelta(seconds=1.2):
        await asyncio.sleep(0.05)
    young_id, young_writer = await start_multipart(backend)
    young = next(u for u in await backend.list_incomplete() if u.key == blob_key(young_id))
    gap = (young.initiated - old.initiated).total_seconds()
    assert gap > 0
    # Fault injection: the clock jumps to where the old upload is past the age limit and the young one is not.
    fake_now = old.initiated + timedelta(seconds=INCOMPLETE_UPLOAD_MAX_AGE + gap / 2)
    backend.clock = lambda: fake_now

    assert await backend.sweep_incomplete() == 1
    assert [u.key for u in await backend.list_incomplete()] == [blob_key(young_id)]
    await young_writer.commit()
    assert (await backend.open(young_id)).size == PART + 1
    with pytest.raises(ClientError):
        await old_writer.commit()  # its upload was aborted under it, as for a crashed node's writer
    with pytest.raises(FileNotFoundError):
        await backend.open(old_id)


# --- pure rules -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "length", "size", "expected"),
    [
        (0, 10, 10, "bytes=0-9"),
        (0, 100, 10, "bytes=0-9"),
        (9, 1, 10, "bytes=9-9"),
        (10, 1, 10, None),
        (3, 0, 10, None),
        (0, 1, 0, None),
    ],
)
def test_range_header_is_clamped_to_the_object(offset: int, length: int, size: int, expected: str | None) -> None:
    assert range_header(offset, length, size) == expected


def test_range_header_rejects_negative_values() -> None:
    with pytest.raises(ValueError):
        range_header(-1, 1, 10)
    with pytest.raises(ValueError):
        range_header(0, -1, 10)


def test_stale_uploads_are_strictly_older_than_the_limit() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    uploads = [
        PendingUpload("blobs/a", "1", now - timedelta(hours=2)),
        PendingUpload("blobs/b", "2", now - timedelta(seconds=3600)),
        PendingUpload("blobs/c", "3", now - timedelta(minutes=5)),
        PendingUpload("blobs/d", "4", now + timedelta(minutes=1)),  # a server clock ahead of ours
    ]
    assert [u.key for u in stale_uploads(uploads, now, 3600.0)] == ["blobs/a"]


@pytest.mark.parametrize("blob_id", ["", "../x", "a/b", "ab cd", "é" * 4])
def test_blob_key_rejects_ids_that_are_not_plain(blob_id: str) -> None:
    with pytest.raises(ValueError):
        blob_key(blob_id)


def test_blob_keys_round_trip_and_foreign_keys_are_ignored() -> None:
    blob_id = new_blob_id()
    assert blob_key(blob_id) == KEY_PREFIX + blob_id
    assert blob_id_of(blob_key(blob_id)) == blob_id
    assert blob_id_of("other/" + blob_id) is None
    assert blob_id_of(KEY_PREFIX + "nested/x") is None


def test_unavailable_messages_name_bucket_endpoint_and_cause() -> None:
    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadBucket")

    assert "access denied / invalid credentials" in unavailable_message("b", "http://e", client_error("403", 403))
    assert "'b' does not exist at http://e" in unavailable_message("b", "http://e", client_error("404", 404))
    assert "cannot connect" in unavailable_message("b", "http://e", ConnectionRefusedError("refused"))
    assert "did not answer" in unavailable_message("b", "http://e", TimeoutError())
