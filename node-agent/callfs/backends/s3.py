"""S3 backend: blobs as objects ``blobs/<blob_id>`` in one bucket of AWS S3 or an S3-compatible server.

Writes are invisible until :meth:`S3BlobWriter.commit`: a blob that fits in one part is sent with a single
``PutObject`` at commit; a larger one becomes a multipart upload (``CreateMultipartUpload`` when the first part
is full and more data follows, one ``UploadPart`` per part, ``CompleteMultipartUpload`` at commit). S3 makes an
object visible only when its PutObject or CompleteMultipartUpload succeeds, which gives the atomic commit the
:class:`~callfs.backends.base.BlobWriter` protocol asks for. A crash mid-upload leaves an incomplete multipart
upload (invisible, but billed); :meth:`S3Backend.sweep_incomplete` aborts those older than
:data:`INCOMPLETE_UPLOAD_MAX_AGE` — younger ones may belong to another node writing right now, since every node
of a cluster shares the bucket (``node_local`` is false: any node serves S3-backed files directly).

Memory per writer is bounded by two parts: the one being filled and the one in flight (uploads of one writer are
sequential and overlap with filling the next part). Reads are ranged ``GetObject`` calls whose body is streamed
in ``chunk_size`` pieces, never read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from callfs.backends.base import BackendUnavailable
from callfs.config import BackendConfig

MIB = 1 << 20

DEFAULT_PART_SIZE = 8 * MIB
"""Bytes per multipart part (and the largest blob sent as one PutObject)."""

MIN_PART_SIZE = 5 * MIB
"""S3's smallest allowed part (every part but the last); AWS S3 "Multipart upload limits"."""

MAX_PARTS = 10_000
"""S3's largest part number, which caps a blob at ``MAX_PARTS * part_size`` bytes."""

KEY_PREFIX = "blobs/"
"""Every blob lives under this key prefix; listings and the sweep look nowhere else in the bucket."""

LIST_PREFIX = KEY_PREFIX.rstrip("/")
"""The ``Prefix`` of listings; results are filtered by :func:`blob_id_of`. Without the slash because some
S3-compatible servers (moto 5.2 with authentication) mis-verify the signature of a query holding ``%2F``."""

INCOMPLETE_UPLOAD_MAX_AGE = 3600.0
"""Seconds after which an unfinished multipart upload is taken for the leftover of a crashed writer."""

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
MAX_ATTEMPTS = 3
"""Data-path client: seconds to connect, seconds without a byte before a read fails, total attempts per call."""

PROBE_CONNECT_TIMEOUT = 2.0
PROBE_READ_TIMEOUT = 3.0
PROBE_DEADLINE = 5.0
"""Start-up check and ping: one attempt, bounded by these seconds, so a dead endpoint never hangs the node."""

MAX_POOL_CONNECTIONS = 64
"""Concurrent HTTP connections to the endpoint (each open read stream holds one)."""

_ACCESS_DENIED_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
    }
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchBucket", "NotFound", "NoSuchKey"})
_GONE_UPLOAD_CODES = frozenset({"404", "NoSuchUpload", "NotFound"})


# --- pure rules -------------------------------------------------------------------------------------------------


def blob_key(blob_id: str) -> str:
    """The object key of ``blob_id``; raises ``ValueError`` unless it is a plain alphanumeric id (the engine's
    32 hex characters), so that no id can reach outside :data:`KEY_PREFIX`."""
    if not blob_id or not blob_id.isascii() or not blob_id.isalnum():
        raise ValueError(f"invalid blob id {blob_id!r}")
    return KEY_PREFIX + blob_id


def blob_id_of(key: str) -> str | None:
    """The blob id stored under ``key``, or ``None`` for keys that are not blobs of this backend."""
    if not key.startswith(KEY_PREFIX):
        return None
    blob_id = key[len(KEY_PREFIX) :]
    return blob_id if blob_id and blob_id.isascii() and blob_id.isalnum() else None


def error_code(exc: ClientError) -> str:
    """The S3 error code of ``exc`` (``NoSuchKey``...), or its HTTP status as text when the body had none
    (HEAD responses carry no body, so HeadBucket/HeadObject errors are just ``"403"``/``"404"``)."""
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    if code:
        return code
    return str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def is_not_found(exc: ClientError) -> bool:
    """True for "no such key / bucket" answers (by code, or HTTP 404)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in _NOT_FOUND_CODES or status == 404


def unavailable_message(bucket: str, endpoint: str, exc: BaseException) -> str:
    """A one-line explanation of why the bucket cannot be used, for :class:`BackendUnavailable`."""
    where = f"S3 bucket {bucket!r} at {endpoint}"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _ACCESS_DENIED_CODES or status == 403:
            return f"{where}: access denied / invalid credentials ({code})"
        if code in _NOT_FOUND_CODES or status == 404:
            return f"S3 bucket {bucket!r} does not exist at {endpoint}"
        return f"{where}: S3 error {code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
    if isinstance(exc, NoCredentialsError):
        return f"{where}: no credentials (set backend.s3_access_key and backend.s3_secret_key)"
    if isinstance(exc, TimeoutError):
        return f"{where}: endpoint did not answer within {PROBE_DEADLINE:g} s"
    return f"{where}: cannot connect to endpoint: {exc}"


def range_header(offset: int, length: int, size: int) -> str | None:
    """The HTTP ``Range`` value for ``length`` bytes from ``offset`` of a ``size``-byte object, clamped to the
    object; ``None`` when the range is empty. Raises ``ValueError`` for negative arguments."""
    if offset < 0 or length < 0:
        raise ValueError(f"invalid range offset={offset} length={length}")
    end = min(offset + length, size)
    if offset >= end:
        return None
    return f"bytes={offset}-{end - 1}"


@dataclass(frozen=True)
class PendingUpload:
    """One unfinished multipart upload as listed by ``ListMultipartUploads``; ``initiated`` is timezone-aware."""

    key: str
    upload_id: str
    initiated: datetime


def stale_uploads(uploads: Iterable[PendingUpload], now: datetime, max_age: float) -> list[PendingUpload]:
    """The uploads initiated more than ``max_age`` seconds before ``now`` (both timezone-aware)."""
    return [u for u in uploads if (now - u.initiated).total_seconds() > max_age]


def check_part_size(part_size: int) -> int:
    """``part_size`` if S3 accepts it (at least :data:`MIN_PART_SIZE`); raises ``ValueError`` otherwise."""
    if part_size < MIN_PART_SIZE:
        raise ValueError(f"S3 part size must be at least {MIN_PART_SIZE} bytes, got {part_size}")
    return part_size


def _aware(moment: datetime) -> datetime:
    """``moment`` with UTC attached when the server's timestamp came without a zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- I/O --------------------------------------------------------------------------------------------------------


class S3BlobWriter:
    """Writes one blob; see the module docstring for the single-PUT / multipart protocol.

    ``write`` raises the error of an earlier part upload that failed (the caller then aborts). ``commit`` and
    ``abort`` finish the writer; ``abort`` after either is a no-op.
    """

    def __init__(self, backend: S3Backend, key: str) -> None:
        self._backend = backend
        self._key = key
        # A file object, not bytes: botocore and aiohttp read a file body in pieces (SigV4 payload hash, HTTP
        # send), whereas a bytes/bytearray body gets copied whole once or twice on the way out.
        self._buffer = io.BytesIO()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._in_flight: asyncio.Task[None] | None = None
        self._finished = False
        self.bytes_written = 0

    async def write(self, chunk: bytes) -> None:
        if self._finished:
            raise RuntimeError("blob writer is closed")
        part_size = self._backend.part_size
        view = memoryview(chunk)
        while view:
            if self._buffer.tell() == part_size:
                # Only now is it certain the blob is larger than one part.
                await self._send_part()
            take = min(len(view), part_size - self._buffer.tell())
            self._buffer.write(view[:take])
            view = view[take:]
        self.bytes_written += len(chunk)

    async def _send_part(self) -> None:
        """Start uploading the buffer as the next part, after the previous part's upload has finished."""
        backend = self._backend
        if self._upload_id is None:
            response = await backend.client.create_multipart_upload(
                Bucket=backend.bucket, Key=self._key, **backend.put_extra
            )
            self._upload_id = str(response["UploadId"])
        await self._wait_in_flight()
        part_number = len(self._parts) + 1
        if part_number > MAX_PARTS:
            raise ValueError(f"blob larger than {MAX_PARTS} parts of {backend.part_size} bytes")
        body, self._buffer = self._buffer, io.BytesIO()
        body.seek(0)
        self._parts.append({"PartNumber": part_number})
        self._in_flight = asyncio.create_task(self._upload_part(self._upload_id, part_number, body))

    async def _upload_part(self, upload_id: str, part_number: int, body: io.BytesIO) -> None:
        backend = self._backend
        response = await backend.client.upload_part(
            Bucket=backend.bucket, Key=self._key, UploadId=upload_id, PartNumber=part_number, Body=body
        )
        self._parts[part_number - 1]["ETag"] = response["ETag"]

    async def _wait_in_flight(self) -> None:
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def commit(self) -> None:
        if self._finished:
            raise RuntimeError("blob writer is closed")
        backend = self._backend
        try:
            if self._upload_id is None:
                body, self._buffer = self._buffer, io.BytesIO()
                body.seek(0)
                await backend.client.put_object(Bucket=backend.bucket, Key=self._key, Body=body, **backend.put_extra)
            else:
                if self._buffer.tell():
                    await self._send_part()
                await self._wait_in_flight()
                await backend.client.complete_multipart_upload(
                    Bucket=backend.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        except BaseException:
            await self.abort()
            raise
        self._finished = True

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._buffer = io.BytesIO()
        task, self._in_flight = self._in_flight, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            await self._backend.abort_upload(self._key, upload_id)


class S3BlobReader:
    """An open S3 blob: ``size`` from HeadObject. Each :meth:`iter_range` is one ranged GetObject.

    S3 has no open handles: a blob deleted while "open" makes the next :meth:`iter_range` raise
    ``FileNotFoundError`` (the engine deletes replaced blobs only after committing the new metadata).
    """

    def __init__(self, backend: S3Backend, key: str, size: int) -> None:
        self._backend = backend
        self._key = key
        self.size = size

    def local_file(self) -> BinaryIO | None:
        return None

    async def iter_range(self, offset: int, length: int, chunk_size: int) -> AsyncIterator[bytes]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        byte_range = range_header(offset, length, self.size)
        if byte_range is None:
            return
        backend = self._backend
        try:
            response = await backend.client.get_object(Bucket=backend.bucket, Key=self._key, Range=byte_range)
        except ClientError as exc:
            if is_not_found(exc):
                raise FileNotFoundError(f"s3://{backend.bucket}/{self._key}") from exc
            raise
        async with response["Body"] as body:
            while True:
                chunk = await body.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    async def close(self) -> None:
        return None


class S3Backend:
    """Blobs in the bucket ``config.s3_bucket_name``, shared by every node of the cluster.

    ``part_size`` (bytes, at least 5 MiB) is both the multipart part size and the largest blob sent as a single
    PutObject; each writer holds at most two parts in memory. Construct, then :meth:`start` before use and
    :meth:`close` after.
    """

    name = "s3"
    node_local = False

    def __init__(
        self,
        config: BackendConfig,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        incomplete_upload_max_age: float = INCOMPLETE_UPLOAD_MAX_AGE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not config.s3_bucket_name:
            raise ValueError("backend.s3_bucket_name is required for the S3 backend")
        self.config = config
        self.bucket = config.s3_bucket_name
        self.part_size = check_part_size(part_size)
        self.incomplete_upload_max_age = incomplete_upload_max_age
        self.clock = clock
        self.endpoint = config.s3_endpoint or f"AWS S3 ({config.s3_region})"
        self.put_extra: dict[str, str] = (
            {"ServerSideEncryption": config.s3_server_side_encryption} if config.s3_server_side_encryption else {}
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._probe: Any = None

    @property
    def client(self) -> Any:
        """The data-path aiobotocore S3 client; raises ``RuntimeError`` before :meth:`start`."""
        if self._client is None:
            raise RuntimeError("S3 backend is not started")
        return self._client

    def _client_config(self, *, connect: float, read: float, attempts: int) -> AioConfig:
        return AioConfig(
            connect_timeout=connect,
            read_timeout=read,
            retries={"mode": "standard", "total_max_attempts": attempts},
            s3={"addressing_style": "path"} if self.config.s3_force_path_style else {},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            # S3-compatible servers differ in their support of the newer flexible checksums; the SigV4
            # payload hash (plain HTTP) or TLS (HTTPS) already protects the bytes in transit.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )

    async def start(self) -> None:
        """Create the client session and check credentials and bucket with HeadBucket.

        Raises :class:`BackendUnavailable` naming bucket and endpoint: access denied / invalid credentials,
        bucket does not exist, or the endpoint cannot be reached (within about :data:`PROBE_DEADLINE` seconds).
        """
        if self._stack is not None:
            return
        session = get_session()
        stack = contextlib.AsyncExitStack()
        common = {
            "region_name": self.config.s3_region,
            "endpoint_url": self.config.s3_endpoint,
            "aws_access_key_id": self.config.s3_access_key,
            "aws_secret_access_key": self.config.s3_secret_key,
        }
        try:
            self._client = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    config=self._client_config(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT, attempts=MAX_ATTEMPTS),
                    **common,
                )
            )
            self._probe = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    config=self._client_config(connect=PROBE_CONNECT_TIMEOUT, read=PROBE_READ_TIMEOUT, attempts=1),
                    **common,
                )
            )
        except (BotoCoreError, ValueError) as exc:
            self._client = self._probe = None
            await stack.aclose()
            raise BackendUnavailable(f"S3 backend at {self.endpoint}: invalid client settings: {exc}") from None
        self._stack = stack
        try:
            await asyncio.wait_for(self._probe.head_bucket(Bucket=self.bucket), PROBE_DEADLINE)
        except (TimeoutError, ClientError, BotoCoreError, aiohttp.ClientError, OSError) as exc:
            await self.close()
            raise BackendUnavailable(unavailable_message(self.bucket, self.endpoint, exc)) from None

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self._client = self._probe = None
        if stack is not None:
            await stack.aclose()

    async def ping(self) -> bool:
        """HeadBucket within :data:`PROBE_DEADLINE` seconds; ``False`` on any error or before :meth:`start`."""
        if self._probe is None:
            return False
        try:
            await asyncio.wait_for(self._probe.head_bucket(Bucket=self.bucket), PROBE_DEADLINE)
        except Exception:
            return False
        return True

    async def create(self, blob_id: str) -> S3BlobWriter:
        if self._client is None:
            raise RuntimeError("S3 backend is not started")
        return S3BlobWriter(self, blob_key(blob_id))

    async def open(self, blob_id: str) -> S3BlobReader:
        """HeadObject the blob; raises ``FileNotFoundError`` when the key does not exist."""
        key = blob_key(blob_id)
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from None
            raise
        return S3BlobReader(self, key, int(head["ContentLength"]))

    async def delete(self, blob_id: str) -> None:
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=blob_key(blob_id))
        except ClientError as exc:
            if not is_not_found(exc):
                raise

    async def list_blobs(self, min_age: float = 0.0) -> AsyncIterator[str]:
        """Every committed blob id whose object was last modified at least ``min_age`` seconds ago (by
        :attr:`clock`, against the server's ``LastModified``; so clock skew between node and server shifts
        the grace), paging through ListObjectsV2. Every node's blobs are listed: the bucket is shared."""
        cutoff = self.clock() - timedelta(seconds=min_age)
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=LIST_PREFIX):
            for item in page.get("Contents", []):
                blob_id = blob_id_of(str(item["Key"]))
                if blob_id is None:
                    continue
                if min_age > 0 and _aware(item["LastModified"]) > cutoff:
                    continue
                yield blob_id

    async def list_incomplete(self) -> list[PendingUpload]:
        """Every unfinished multipart upload under :data:`KEY_PREFIX` (all nodes' writers, crashed or not)."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        uploads: list[PendingUpload] = []
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=LIST_PREFIX):
            for item in page.get("Uploads", []):
                if blob_id_of(str(item["Key"])) is None:
                    continue
                uploads.append(PendingUpload(str(item["Key"]), str(item["UploadId"]), _aware(item["Initiated"])))
        return uploads

    async def sweep_incomplete(self) -> int:
        """Abort the multipart uploads under the prefix older than ``incomplete_upload_max_age`` seconds; return
        how many. Younger ones are left alone: another node may be uploading them right now."""
        stale = stale_uploads(await self.list_incomplete(), self.clock(), self.incomplete_upload_max_age)
        for upload in stale:
            await self.abort_upload(upload.key, upload.upload_id)
        return len(stale)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; an upload that is already gone is not an error."""
        try:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) not in _GONE_UPLOAD_CODES:
                raise
