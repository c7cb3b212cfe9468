"""Object operations of the S3 face: GetObject, HeadObject, PutObject, DeleteObject, CopyObject and
DeleteObjects (Amazon S3 API Reference). Every read and write goes through the engine, as a REST request
does: the same permissions, quotas, path locks and bytes-first durability."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from urllib.parse import unquote

from aiohttp import web

from callfs import errors
from callfs.api.conditional import Conditions, etag, evaluate_read, http_date, parse_range, write_precondition
from callfs.engine import Precondition, RemoteBytes
from callfs.models import Inode
from callfs.permissions import READ, Caller, require
from callfs.s3 import messages, names
from callfs.s3.context import Context
from callfs.s3.errors import S3Error, from_engine, invalid_argument, no_such_key

CHUNK_BYTES = 1 << 20
"""Bytes per piece streamed to a client."""

STORED_HEADERS = ("Content-Type", "Content-Disposition", "Content-Language", "Cache-Control", "Expires")
"""Representation headers kept with an object and sent back on GET/HEAD (Content-Encoding too, less
``aws-chunked``)."""
MAX_USER_METADATA_BYTES = 2048
"""The most bytes of ``x-amz-meta-*`` names and values one object may carry (S3: ``MetadataTooLarge``)."""
DEFAULT_CONTENT_TYPE = "binary/octet-stream"


STORAGE_CLASSES = frozenset({
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE",
    "OUTPOSTS", "GLACIER_IR", "SNOW", "EXPRESS_ONEZONE",
})
"""The ``x-amz-storage-class`` values S3 defines (API reference, PutObject); all are stored alike here."""


def object_attributes(headers: Mapping[str, str]) -> dict[str, str]:
    """The attributes stored with an object from its write request: :data:`STORED_HEADERS`, Content-Encoding
    (less ``aws-chunked``) and the ``x-amz-meta-*`` user metadata (names lower-case). Raises
    :class:`S3Error` ``MetadataTooLarge`` (over 2 KiB of user metadata), ``InvalidStorageClass`` (an
    ``x-amz-storage-class`` not in :data:`STORAGE_CLASSES`)."""
    storage_class = headers.get("x-amz-storage-class")
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass", 400, "The storage class you specified is not valid")
    out = {name: headers[name] for name in STORED_HEADERS if name in headers}
    encoding = ",".join(e.strip() for e in headers.get("Content-Encoding", "").split(",")
                        if e.strip() and e.strip() != "aws-chunked")
    if encoding:
        out["Content-Encoding"] = encoding
    user = {name.lower(): value for name, value in headers.items() if name.lower().startswith("x-amz-meta-")}
    if sum(len(k) - len("x-amz-meta-") + len(v.encode()) for k, v in user.items()) > MAX_USER_METADATA_BYTES:
        raise S3Error("MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size.")
    return out | user


def quoted_etags(value: str | None) -> str | None:
    """An ``If-Match``/``If-None-Match`` list with every bare entity tag quoted: S3 clients send ETags with or
    without their quotes (the MinIO SDKs strip them), and S3 compares them either way. ``*`` and weak tags stay."""
    if value is None:
        return None
    tags = [part.strip() for part in value.split(",") if part.strip()]
    return ", ".join(t if t == "*" or t.startswith(('"', "W/")) else f'"{t}"' for t in tags)


def s3_conditions(headers: Mapping[str, str], prefix: str = "") -> Conditions:
    """The conditional headers of a request (``prefix`` ``x-amz-copy-source-``: a copy's source conditions),
    entity tags quoted (:func:`quoted_etags`)."""
    return Conditions(
        if_match=quoted_etags(headers.get(f"{prefix}If-Match")),
        if_none_match=quoted_etags(headers.get(f"{prefix}If-None-Match")),
        if_modified_since=headers.get(f"{prefix}If-Modified-Since"),
        if_unmodified_since=headers.get(f"{prefix}If-Unmodified-Since"),
    )


def object_headers(inode: Inode) -> dict[str, str]:
    """The headers describing an object: ``ETag`` (the engine's entity tag, the same as over REST),
    ``Last-Modified``, ``Accept-Ranges``."""
    return {"ETag": etag(inode), "Last-Modified": http_date(inode.mtime), "Accept-Ranges": "bytes"}


async def stat_object(ctx: Context, bucket: str, key: str) -> Inode:
    """The file (or, for a key ending in ``/``, the directory) behind ``bucket``/``key``. Raises
    :class:`S3Error` ``NoSuchKey``/``NoSuchBucket``/``AccessDenied``."""
    target = names.object_path(bucket, key)
    try:
        inode = await ctx.engine.stat(ctx.caller, target.path)
    except errors.NotFound:
        await require_bucket(ctx, bucket)
        raise no_such_key(bucket, key) from None
    if inode.is_dir != target.is_folder or inode.is_entry_only:  # links, special files: no objects (docs/s3.md)
        raise no_such_key(bucket, key)
    return inode


async def require_bucket(ctx: Context, bucket: str) -> Inode:
    """The directory of ``bucket``. Raises :class:`S3Error` ``NoSuchBucket`` (absent or a file),
    ``AccessDenied``."""
    try:
        inode = await ctx.engine.stat(ctx.caller, names.bucket_path(bucket))
    except errors.NotFound:
        raise S3Error("NoSuchBucket", 404, "The specified bucket does not exist", f"/{bucket}") from None
    if not inode.is_dir:
        raise S3Error("NoSuchBucket", 404, "The specified bucket does not exist", f"/{bucket}")
    return inode


def _refuse_read(verdict: int) -> web.StreamResponse:
    if verdict == 412:
        raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
    return web.Response(status=304)


async def get_object(ctx: Context, *, head: bool = False) -> web.StreamResponse:
    """GetObject / HeadObject: the bytes (or only the headers) of an object, with a single ``Range`` and the
    ``If-*`` conditions (RFC 9110 order, as S3 evaluates them). A folder key answers an empty object."""
    inode = await stat_object(ctx, ctx.bucket, ctx.key)
    if not inode.is_dir:
        require(ctx.caller, inode, READ, "read")
    verdict = evaluate_read(s3_conditions(ctx.request.headers), inode) if not inode.is_dir else None
    if verdict is not None:
        response = _refuse_read(verdict)
        response.headers.update(object_headers(inode))
        return response
    size = 0 if inode.is_dir else inode.size
    byte_range = parse_range(ctx.request.headers.get("Range"), size) if not inode.is_dir else None
    response = web.StreamResponse(status=206 if byte_range else 200)
    response.headers.update(object_headers(inode))
    attributes = await ctx.engine.attributes(inode) if not inode.is_dir else {}
    response.headers.update({k: v for k, v in attributes.items() if k != "Content-Type"})
    response.content_type = (attributes.get("Content-Type", DEFAULT_CONTENT_TYPE) if not inode.is_dir
                             else "application/x-directory")
    offset, length = (byte_range.start, byte_range.length) if byte_range else (0, size)
    if byte_range:
        response.headers["Content-Range"] = byte_range.content_range()
    response.content_length = length
    if head or not length:
        await response.prepare(ctx.request)
        await response.write_eof()
        return response
    chunks = ctx.engine.read_range(inode, offset, length, CHUNK_BYTES)
    first = await anext(aiter(chunks), b"")  # fail (e.g. an unreachable owner) before the status line is out
    await response.prepare(ctx.request)
    sent = len(first)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
        sent += len(chunk)
    ctx.node.metrics.bytes_sent.inc(sent)
    await response.write_eof()
    return response


def _write_conditions(ctx: Context, key: str) -> tuple[bool, Precondition | None]:
    """The conditional headers of a PutObject, CopyObject or CompleteMultipartUpload: ``(create_only,
    precondition)``. ``If-None-Match: *`` writes only a new key; ``If-None-Match`` with entity tags refuses to
    replace an object having one of them; ``If-Match`` replaces only an object having one of them, and on a
    missing key is ``NoSuchKey`` (404), as S3 answers, not ``PreconditionFailed``."""
    headers = ctx.request.headers
    if_none_match = quoted_etags(headers.get("If-None-Match"))
    create_only = if_none_match is not None and if_none_match.strip() == "*"
    if_match = quoted_etags(headers.get("If-Match"))
    check = write_precondition(Conditions(if_match=if_match, if_none_match=None if create_only else if_none_match))
    if check is None:
        return create_only, None

    def precondition(current: Inode | None) -> None:
        if if_match is not None and (current is None or current.is_dir):
            raise errors.NotFound(f"{key} does not exist")  # NoSuchKey at the edge
        check(current)

    return create_only, precondition


async def write_object(ctx: Context, key: str, body: AsyncIterator[bytes], size: int | None, *,
                       caller: Caller | None = None, attributes: Mapping[str, str] | None = None) -> Inode:
    """Write ``body`` (``size`` bytes when known) to ``key`` of ``ctx.bucket`` through the engine, creating
    missing folders; returns the committed inode. The bytes go to this node (a file whose bytes lived on
    another node moves here, its old bytes freed there). Raises :class:`S3Error` (``NoSuchBucket``,
    ``PreconditionFailed``, ``AccessDenied``, what the body's checks raise)."""
    await require_bucket(ctx, ctx.bucket)
    target = names.object_path(ctx.bucket, key)
    create_only, precondition = _write_conditions(ctx, key)
    try:
        result = await ctx.engine.write_file(
            caller or ctx.caller, target.path, body, create_only=create_only,
            precondition=precondition, expected_size=size, local=True,
            attributes=attributes,
        )
    except errors.AlreadyExists:
        raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold",
                      f"/{ctx.bucket}/{key}") from None
    except errors.IsADirectory:
        raise S3Error("InvalidRequest", 409, f"{key} is a folder (it has keys below it)",
                      f"/{ctx.bucket}/{key}") from None
    return result.inode


async def put_object(ctx: Context) -> web.StreamResponse:
    """PutObject: stream the body into the file at the key (a key ending in ``/`` with an empty body makes a
    folder)."""
    target = names.object_path(ctx.bucket, ctx.key)
    if target.is_folder:
        body, size = ctx.body()
        async for piece in body:
            if piece:
                raise S3Error("InvalidRequest", 400, "a key ending in '/' names a folder: its body must be empty")
        await require_bucket(ctx, ctx.bucket)
        try:
            inode, _ = await ctx.engine.make_directory(ctx.caller, target.path)
        except errors.AlreadyExists:
            raise S3Error("InvalidRequest", 409, f"{ctx.key} is an object, not a folder") from None
        return web.Response(status=200, headers=object_headers(inode))
    attributes = object_attributes(ctx.request.headers)
    body, size = ctx.body()
    inode = await write_object(ctx, ctx.key, body, size, attributes=attributes)
    return web.Response(status=200, headers={"ETag": etag(inode)})


async def delete_key(ctx: Context, key: str) -> None:
    """Delete one key (absent: nothing to do, as S3 answers). A folder key deletes an empty folder only. A file
    whose bytes another node holds is deleted by that node, asked as the same user."""
    target = names.object_path(ctx.bucket, key)
    try:
        inode = await ctx.engine.stat(ctx.caller, target.path)
    except errors.NotFound:
        await require_bucket(ctx, ctx.bucket)
        return
    if inode.is_dir != target.is_folder or inode.is_entry_only:
        return
    try:
        await ctx.engine.delete(ctx.caller, target.path)
    except errors.NotFound:
        return
    except RemoteBytes as remote:
        assert remote.inode.instance_id is not None
        await ctx.node.peers.delete_file(remote.inode.instance_id, target.path, ctx.caller.user)
    except errors.DirectoryNotEmpty:
        raise S3Error("InvalidRequest", 409, f"the folder {key} is not empty", f"/{ctx.bucket}/{key}") from None


async def delete_object(ctx: Context) -> web.StreamResponse:
    """DeleteObject: 204 whether or not the key existed."""
    await delete_key(ctx, ctx.key)
    return web.Response(status=204)


async def delete_objects(ctx: Context) -> web.StreamResponse:
    """DeleteObjects: up to 1000 keys; each that fails is reported in the result, the others deleted."""
    keys, quiet = messages.parse_delete(await ctx.xml_body())
    await require_bucket(ctx, ctx.bucket)
    deleted: list[str] = []
    failed: list[tuple[str, S3Error]] = []
    for key in keys:
        try:
            await delete_key(ctx, key)
            deleted.append(key)
        except S3Error as exc:
            failed.append((key, exc))
        except errors.CallFSError as exc:
            failed.append((key, from_engine(exc, bucket=ctx.bucket, key=key)))
    return xml_response(messages.delete_result(deleted, failed, quiet=quiet))


def copy_source(ctx: Context) -> tuple[str, str]:
    """The ``(bucket, key)`` of ``x-amz-copy-source`` (``bucket/key`` or ``/bucket/key``, URL-encoded).
    Raises :class:`S3Error` ``InvalidArgument`` (malformed, or a ``versionId``: versions are not kept)."""
    raw = ctx.request.headers["x-amz-copy-source"]
    source, _, query = raw.partition("?")
    if query:
        raise S3Error("InvalidArgument", 400, "object versions are not kept: x-amz-copy-source takes no versionId")
    bucket, slash, key = unquote(source).lstrip("/").partition("/")
    if not slash or not key:
        raise S3Error("InvalidArgument", 400, "Copy Source must mention the source bucket and key: bucket/key")
    names.check_bucket(bucket)
    return bucket, key


def source_conditions(ctx: Context) -> Conditions:
    """The ``x-amz-copy-source-if-*`` conditions of a copy."""
    return s3_conditions(ctx.request.headers, "x-amz-copy-source-")


async def read_source(ctx: Context, byte_range: str | None = None) -> tuple[Inode, AsyncIterator[bytes], int]:
    """The source object of a copy (read permission checked, conditions evaluated: any failure is 412) and a
    stream of its bytes (``byte_range``: ``bytes=first-last``); ``(inode, bytes, size)``."""
    bucket, key = copy_source(ctx)
    try:
        inode = await stat_object(ctx, bucket, key)
    except S3Error as exc:
        if exc.code == "NoSuchKey":
            exc.resource = f"/{bucket}/{key}"
        raise
    if inode.is_dir:
        raise no_such_key(bucket, key)
    require(ctx.caller, inode, READ, "read")
    if evaluate_read(source_conditions(ctx), inode) is not None:
        raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
    offset, length = 0, inode.size
    if byte_range is not None:
        parsed = parse_range(byte_range, inode.size) if byte_range.startswith("bytes=") else None
        if parsed is None or byte_range.count("-") != 1 or byte_range.endswith("-") or byte_range[6:7] == "-":
            raise S3Error("InvalidArgument", 400, "x-amz-copy-source-range must be bytes=first-last")
        offset, length = parsed.start, parsed.length
    return inode, ctx.engine.read_range(inode, offset, length, CHUNK_BYTES), length


async def copy_object(ctx: Context) -> web.StreamResponse:
    """CopyObject: stream the source's bytes into the destination key (any size; bytes are copied) with the
    source's attributes (``x-amz-metadata-directive: COPY``, the default) or the request's (``REPLACE``).
    Copying an object onto itself is refused unless its metadata is replaced, as S3 does."""
    bucket, key = copy_source(ctx)
    directive = ctx.request.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.")
    if (bucket, key) == (ctx.bucket, ctx.key) and directive == "COPY":
        raise S3Error("InvalidRequest", 400, "This copy request is illegal because it is trying to copy an object to "
                      "itself without changing the object's metadata, storage class, website redirect location or "
                      "encryption attributes.")
    if names.object_path(ctx.bucket, ctx.key).is_folder:
        raise S3Error("InvalidRequest", 400, "a key ending in '/' names a folder; copy objects to object keys")
    source, chunks, size = await read_source(ctx)
    attributes = (await ctx.engine.attributes(source) if directive == "COPY"
                  else object_attributes(ctx.request.headers))
    inode = await write_object(ctx, ctx.key, chunks, size, attributes=attributes)
    return xml_response(messages.copy_result(etag(inode), inode.mtime))


def xml_response(body: bytes, status: int = 200) -> web.Response:
    """An XML answer."""
    return web.Response(body=body, status=status, content_type="application/xml")
