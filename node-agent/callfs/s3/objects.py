"""Object operations of the S3 face: GetObject, HeadObject, PutObject, DeleteObject, CopyObject and
DeleteObjects (Amazon S3 API Reference). Every read and write goes through the engine, as a REST request
does: the same permissions, quotas, path locks and bytes-first durability."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from aiohttp import web

from callfs import errors, versions
from callfs.api.conditional import Conditions, etag, evaluate_read, http_date, parse_range, write_precondition
from callfs.engine import Keeper, Precondition, RemoteBytes
from callfs.models import NULL_VERSION, Inode
from callfs.permissions import READ, Caller, require
from callfs.s3 import messages, names
from callfs.s3.context import Context
from callfs.s3.errors import S3Error, from_engine, invalid_argument, no_such_key, no_such_version

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


def version_id_param(value: str | None) -> str | None:
    """A ``versionId`` the request names (``None``: none), checked: ``null`` or a version id this server issues.
    Raises :class:`S3Error` ``InvalidArgument`` (400) for an empty or malformed one, as S3 answers ("Invalid
    version id specified")."""
    if value is None:
        return None
    if not value:
        raise invalid_argument("Version id cannot be the empty string")
    if not versions.is_version_id(value):
        raise invalid_argument("Invalid version id specified")
    return value


@dataclass(frozen=True, slots=True)
class Found:
    """The version of an object a request addresses: the ``inode`` naming its content (a folder's directory
    for a folder key; a noncurrent version keeps the inode version, hence the entity tag, it had), its
    ``version_id`` (``None``: the bucket never had versioning), and ``pinned`` for a noncurrent version (its
    content is not the file at the path)."""

    inode: Inode
    version_id: str | None
    pinned: bool = False

    def headers(self) -> dict[str, str]:
        """``ETag``, ``Last-Modified``, ``Accept-Ranges`` and, in a versioned bucket, ``x-amz-version-id``."""
        out = object_headers(self.inode)
        if self.version_id is not None:
            out["x-amz-version-id"] = self.version_id
        return out


def _marker_headers(marker_id: str) -> dict[str, str]:
    return {"x-amz-delete-marker": "true", "x-amz-version-id": marker_id}


async def find_object(ctx: Context, bucket: str, key: str, version_id: str | None) -> Found:
    """The version ``version_id`` (``None``: the current one) of ``bucket``/``key``, with search permission
    checked on the way (read permission is the caller's to check).

    Amazon S3 API Reference, GetObject: a key whose current version is a delete marker is ``NoSuchKey`` (404)
    with ``x-amz-delete-marker: true``; a version id naming a delete marker is ``MethodNotAllowed`` (405) with
    that header; an unknown version id is ``NoSuchVersion`` (404). Raises :class:`S3Error` (those,
    ``NoSuchBucket``, ``AccessDenied``)."""
    target = names.object_path(bucket, key)
    bucket_path = names.bucket_path(bucket)
    status = await versions.bucket_status(ctx.engine, bucket_path)
    try:
        inode: Inode | None = await stat_object(ctx, bucket, key)
    except S3Error as exc:
        if exc.code != "NoSuchKey" or status is None or target.is_folder:
            raise
        inode = None
    if inode is not None:
        current = NULL_VERSION if inode.is_dir else await versions.current_version_id(ctx.engine, inode)
        if version_id is None or version_id == current:
            return Found(inode, current if status is not None else None)
    if version_id is None:
        kept = await ctx.engine.store.versions_of(target.path)
        if kept and kept[0].delete_marker:
            raise S3Error("NoSuchKey", 404, "The specified key does not exist.", f"/{bucket}/{key}",
                          _marker_headers(kept[0].version_id))
        raise no_such_key(bucket, key)
    await require_bucket(ctx, bucket)
    found = await ctx.engine.store.get_version(target.path, version_id)
    if found is None:
        raise no_such_version(bucket, key)
    await versions.folder_of(ctx.engine, ctx.caller, target.path)  # search permission on the way to the key
    if found.delete_marker:
        raise S3Error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.",
                      f"/{bucket}/{key}", _marker_headers(found.version_id)
                      | {"Last-Modified": http_date(found.mtime)})
    return Found(found.as_inode(), found.version_id, pinned=True)


def _refuse_read(verdict: int) -> web.StreamResponse:
    if verdict == 412:
        raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
    return web.Response(status=304)


async def get_object(ctx: Context, *, head: bool = False) -> web.StreamResponse:
    """GetObject / HeadObject: the bytes (or only the headers) of an object, with a single ``Range`` and the
    ``If-*`` conditions (RFC 9110 order, as S3 evaluates them). A folder key answers an empty object.
    ``versionId`` reads that version (:func:`find_object`)."""
    found = await find_object(ctx, ctx.bucket, ctx.key, version_id_param(ctx.request.query.get("versionId")))
    inode = found.inode
    if not inode.is_dir:
        require(ctx.caller, inode, READ, "read")
    verdict = evaluate_read(s3_conditions(ctx.request.headers), inode) if not inode.is_dir else None
    if verdict is not None:
        response = _refuse_read(verdict)
        response.headers.update(found.headers())
        return response
    size = 0 if inode.is_dir else inode.size
    byte_range = parse_range(ctx.request.headers.get("Range"), size) if not inode.is_dir else None
    response = web.StreamResponse(status=206 if byte_range else 200)
    attributes = await ctx.engine.attributes(inode) if not inode.is_dir else {}
    response.headers.update({k: v for k, v in attributes.items()
                             if k not in ("Content-Type", versions.VERSION_ATTRIBUTE)})
    response.headers.update(found.headers())
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
    chunks = ctx.engine.read_range(inode, offset, length, CHUNK_BYTES, pinned=found.pinned)
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


@dataclass(frozen=True, slots=True)
class Written:
    """A committed object write: the file's ``inode`` and the ``version_id`` it got (``None``: the bucket never
    had versioning)."""

    inode: Inode
    version_id: str | None

    def headers(self) -> dict[str, str]:
        """``ETag`` and, in a versioned bucket, ``x-amz-version-id``."""
        out = {"ETag": etag(self.inode)}
        if self.version_id is not None:
            out["x-amz-version-id"] = self.version_id
        return out


@dataclass(frozen=True, slots=True)
class ObjectWrite:
    """How a whole write of an object goes through the engine: the file ``path``, the ``caller`` writing,
    ``create_only`` and ``precondition`` from the conditional headers, the ``attributes`` to commit, the
    ``version_id`` the object gets (``None``: the bucket never had versioning) and the ``keep`` hook of a
    versioned bucket (:mod:`callfs.versions`)."""

    path: str
    caller: Caller
    create_only: bool
    precondition: Precondition | None
    attributes: dict[str, str]
    version_id: str | None
    keep: Keeper | None


async def prepare_write(ctx: Context, key: str, *, caller: Caller | None = None,
                        attributes: Mapping[str, str] | None = None) -> ObjectWrite:
    """The :class:`ObjectWrite` of ``key`` in ``ctx.bucket`` by ``caller`` (default: the request's). In a bucket
    with versioning enabled the object gets a new version id and the one it replaces is kept as a noncurrent
    version (bytes shared); suspended, it is the ``null`` version. Raises :class:`S3Error` ``NoSuchBucket``."""
    await require_bucket(ctx, ctx.bucket)
    target = names.object_path(ctx.bucket, key)
    create_only, precondition = _write_conditions(ctx, key)
    writer = caller or ctx.caller
    status = await versions.bucket_status(ctx.engine, names.bucket_path(ctx.bucket))
    stored = {k: v for k, v in (attributes or {}).items() if k != versions.VERSION_ATTRIBUTE}
    version_id, keep = None, None
    if status is not None:
        version_id = versions.new_version_id() if status == versions.ENABLED else NULL_VERSION
        stored[versions.VERSION_ATTRIBUTE] = version_id
        keep = versions.keeper(target.path, status, owner=writer.user)
    return ObjectWrite(target.path, writer, create_only, precondition, stored, version_id, keep)


@contextlib.contextmanager
def write_errors(ctx: Context, key: str) -> Iterator[None]:
    """Turn the engine's refusals of a whole object write into S3 errors: ``PreconditionFailed`` (412, the key
    exists and ``If-None-Match: *``), ``InvalidRequest`` (409, the key is a folder)."""
    try:
        yield
    except errors.AlreadyExists:
        raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold",
                      f"/{ctx.bucket}/{key}") from None
    except errors.IsADirectory:
        raise S3Error("InvalidRequest", 409, f"{key} is a folder (it has keys below it)",
                      f"/{ctx.bucket}/{key}") from None


async def write_object(ctx: Context, key: str, body: AsyncIterator[bytes], size: int | None, *,
                       caller: Caller | None = None, attributes: Mapping[str, str] | None = None) -> Written:
    """Write ``body`` (``size`` bytes when known) to ``key`` of ``ctx.bucket`` through the engine, creating
    missing folders. The bytes go to this node (a file whose bytes lived on another node moves here, its old
    bytes freed there). Versioning as :func:`prepare_write` says. Raises :class:`S3Error` (``NoSuchBucket``,
    ``PreconditionFailed``, ``AccessDenied``, what the body's checks raise)."""
    plan = await prepare_write(ctx, key, caller=caller, attributes=attributes)
    return await write_prepared(ctx, key, plan, body, size)


async def write_prepared(ctx: Context, key: str, plan: ObjectWrite, body: AsyncIterator[bytes],
                         size: int | None) -> Written:
    """Write ``body`` (``size`` bytes when known) as :func:`write_object` does, along ``plan`` (from
    :func:`prepare_write` for ``key``)."""
    with write_errors(ctx, key):
        result = await ctx.engine.write_file(
            plan.caller, plan.path, body, create_only=plan.create_only,
            precondition=plan.precondition, expected_size=size, local=True,
            attributes=plan.attributes, keep=plan.keep,
        )
    return Written(result.inode, plan.version_id)


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
    written = await write_object(ctx, ctx.key, body, size, attributes=attributes)
    return web.Response(status=200, headers=written.headers())


async def _delete_file(ctx: Context, key: str, target: names.ObjectPath, inode: Inode,
                       keep: Keeper | None = None) -> bool:
    """Delete the file or folder ``inode`` of ``key``; ``False`` when it was gone already. A file whose bytes
    another node holds is deleted by that node, asked as the same user (unless ``keep`` keeps it as a version:
    its bytes then stay named here). A folder holding versions of keys below it stays (``InvalidRequest``)."""
    if target.is_folder and await versions.has_versions(ctx.engine, target.path):
        raise S3Error("InvalidRequest", 409, f"the folder {key} holds object versions", f"/{ctx.bucket}/{key}")
    try:
        await ctx.engine.delete(ctx.caller, target.path, keep=keep)
    except errors.NotFound:
        return False
    except RemoteBytes as remote:
        assert remote.inode.instance_id is not None
        await ctx.node.peers.delete_file(remote.inode.instance_id, target.path, ctx.caller.user)
    except errors.DirectoryNotEmpty:
        raise S3Error("InvalidRequest", 409, f"the folder {key} is not empty", f"/{ctx.bucket}/{key}") from None
    return True


async def _delete_version(ctx: Context, key: str, target: names.ObjectPath, version_id: str) -> messages.Deleted:
    """Delete the version ``version_id`` of ``key`` for good (Amazon S3 API Reference, DeleteObject with
    ``versionId``): the current version is the file (the newest remaining version then becomes current), a
    noncurrent one a kept version. A version id the key does not have deletes nothing (204, as S3 answers)."""
    await require_bucket(ctx, ctx.bucket)
    try:
        inode: Inode | None = await ctx.engine.stat(ctx.caller, target.path)
    except errors.NotFound:
        inode = None
    if inode is not None and inode.is_dir == target.is_folder and not inode.is_entry_only:
        current = NULL_VERSION if inode.is_dir else await versions.current_version_id(ctx.engine, inode)
        if current == version_id:
            await _delete_file(ctx, key, target, inode)
            if not inode.is_dir:
                await versions.promote(ctx.engine, ctx.caller, target.path)
            return messages.Deleted(key, version_id)
    removed = await versions.remove(ctx.engine, ctx.caller, target.path, version_id)
    if removed is not None and removed.delete_marker:
        return messages.Deleted(key, version_id, delete_marker=True, marker_version_id=version_id)
    return messages.Deleted(key, version_id)


async def delete_key(ctx: Context, key: str, version_id: str | None = None) -> messages.Deleted:
    """Delete one key (absent: nothing to do, as S3 answers). A folder key deletes an empty folder only, and
    only while no key below it has versions.

    With ``version_id``: :func:`_delete_version`. Without, in a bucket whose versioning is enabled or suspended
    (Amazon S3 User Guide, "Deleting object versions"): the current version is kept as a noncurrent one (a
    suspended bucket's ``null`` one is replaced) and a delete marker becomes current (version id ``null`` when
    suspended), whether or not the key existed."""
    target = names.object_path(ctx.bucket, key)
    if version_id is not None:
        return await _delete_version(ctx, key, target, version_id)
    status = None if target.is_folder else await versions.bucket_status(ctx.engine, names.bucket_path(ctx.bucket))
    try:
        inode: Inode | None = await ctx.engine.stat(ctx.caller, target.path)
    except errors.NotFound:
        await require_bucket(ctx, ctx.bucket)
        inode = None
    if inode is not None and (inode.is_dir != target.is_folder or inode.is_entry_only):
        return messages.Deleted(key)  # not an object: a folder for a file key, or a link or special file
    if status is None:
        if inode is not None:
            await _delete_file(ctx, key, target, inode)
        return messages.Deleted(key)
    marker = versions.new_version_id() if status == versions.ENABLED else NULL_VERSION
    keep = versions.keeper(target.path, status, owner=ctx.caller.user, marker=marker)
    if inode is None or not await _delete_file(ctx, key, target, inode, keep):
        await versions.add_marker(ctx.engine, ctx.caller, target.path, status, marker)
    return messages.Deleted(key, delete_marker=True, marker_version_id=marker)


async def delete_object(ctx: Context) -> web.StreamResponse:
    """DeleteObject (``versionId``: that version): 204 whether or not the key existed, with
    ``x-amz-version-id`` and ``x-amz-delete-marker`` when a version or delete marker was concerned."""
    deleted = await delete_key(ctx, ctx.key, version_id_param(ctx.request.query.get("versionId")))
    headers = {}
    if deleted.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    version_id = deleted.version_id or deleted.marker_version_id
    if version_id is not None:
        headers["x-amz-version-id"] = version_id
    return web.Response(status=204, headers=headers)


async def delete_objects(ctx: Context) -> web.StreamResponse:
    """DeleteObjects: up to 1000 keys (each with an optional ``VersionId``); each that fails is reported in the
    result, the others deleted."""
    wanted, quiet = messages.parse_delete(await ctx.xml_body())
    await require_bucket(ctx, ctx.bucket)
    deleted: list[messages.Deleted] = []
    failed: list[tuple[str, S3Error]] = []
    for key, version_id in wanted:
        try:
            deleted.append(await delete_key(ctx, key, version_id_param(version_id)))
        except S3Error as exc:
            failed.append((key, exc))
        except errors.CallFSError as exc:
            failed.append((key, from_engine(exc, bucket=ctx.bucket, key=key)))
    return xml_response(messages.delete_result(deleted, failed, quiet=quiet))


def copy_source(ctx: Context) -> tuple[str, str, str | None]:
    """The ``(bucket, key, version id)`` of ``x-amz-copy-source`` (``bucket/key`` or ``/bucket/key``,
    URL-encoded, optionally ``?versionId=...``; version id ``None``: the current version). Raises
    :class:`S3Error` ``InvalidArgument`` (malformed: another query, a bad version id)."""
    raw = ctx.request.headers["x-amz-copy-source"]
    source, _, query = raw.partition("?")
    version_id = None
    if query:
        fields = parse_qs(query, keep_blank_values=True)
        if set(fields) != {"versionId"} or len(fields["versionId"]) != 1:
            raise S3Error("InvalidArgument", 400, "x-amz-copy-source takes one query parameter: versionId")
        version_id = version_id_param(fields["versionId"][0])
    bucket, slash, key = unquote(source).lstrip("/").partition("/")
    if not slash or not key:
        raise S3Error("InvalidArgument", 400, "Copy Source must mention the source bucket and key: bucket/key")
    names.check_bucket(bucket)
    return bucket, key, version_id


def source_conditions(ctx: Context) -> Conditions:
    """The ``x-amz-copy-source-if-*`` conditions of a copy."""
    return s3_conditions(ctx.request.headers, "x-amz-copy-source-")


async def read_source(ctx: Context, byte_range: str | None = None) -> tuple[Found, AsyncIterator[bytes], int]:
    """The source object (or version) of a copy (read permission checked, conditions evaluated: any failure is
    412) and a stream of its bytes (``byte_range``: ``bytes=first-last``);
    ``(source, bytes, size)``. A version id naming a delete marker is ``InvalidRequest`` (400), as S3 answers."""
    bucket, key, version_id = copy_source(ctx)
    try:
        found = await find_object(ctx, bucket, key, version_id)
    except S3Error as exc:
        if exc.code == "MethodNotAllowed":
            raise S3Error("InvalidRequest", 400, "The source of a copy request may not specifically refer to a "
                          "delete marker by version id.", f"/{bucket}/{key}") from None
        if exc.code in ("NoSuchKey", "NoSuchVersion"):
            exc.resource = f"/{bucket}/{key}"
        raise
    inode = found.inode
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
    return found, ctx.engine.read_range(inode, offset, length, CHUNK_BYTES, pinned=found.pinned), length


async def copy_object(ctx: Context) -> web.StreamResponse:
    """CopyObject: stream the source's bytes (or a version's: ``x-amz-copy-source`` with ``?versionId=``) into
    the destination key (any size; bytes are copied) with the source's attributes (``x-amz-metadata-directive:
    COPY``, the default) or the request's (``REPLACE``). Copying the current version of an object onto itself
    is refused unless its metadata is replaced, as S3 does; copying an older version onto its key restores it
    as a new version."""
    bucket, key, version_id = copy_source(ctx)
    directive = ctx.request.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.")
    if (bucket, key) == (ctx.bucket, ctx.key) and directive == "COPY" and version_id is None:
        raise S3Error("InvalidRequest", 400, "This copy request is illegal because it is trying to copy an object to "
                      "itself without changing the object's metadata, storage class, website redirect location or "
                      "encryption attributes.")
    if names.object_path(ctx.bucket, ctx.key).is_folder:
        raise S3Error("InvalidRequest", 400, "a key ending in '/' names a folder; copy objects to object keys")
    source, chunks, size = await read_source(ctx)
    attributes = (await ctx.engine.attributes(source.inode) if directive == "COPY"
                  else object_attributes(ctx.request.headers))
    written = await write_object(ctx, ctx.key, chunks, size, attributes=attributes)
    headers = {k: v for k, v in written.headers().items() if k != "ETag"}
    if source.version_id is not None:
        headers["x-amz-copy-source-version-id"] = source.version_id
    response = xml_response(messages.copy_result(etag(written.inode), written.inode.mtime))
    response.headers.update(headers)
    return response


def xml_response(body: bytes, status: int = 200) -> web.Response:
    """An XML answer."""
    return web.Response(body=body, status=status, content_type="application/xml")
