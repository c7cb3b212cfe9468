"""Multipart uploads of the S3 face (Amazon S3 API Reference: CreateMultipartUpload, UploadPart,
UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads).

Uploads are staged in the namespace, below :data:`STAGING` (a root-owned directory, mode 0700, whose name is no
bucket name): ``/.multipart/<upload id>/upload.json`` records the bucket, key, initiator and start time, and
each part is a file ``<part number>.<MD5 hex>`` written through the engine like any file (streamed, durable,
on the node's backend). A part whose length is known up front is stored in blocks
(:mod:`callfs.blocks.layout`), so that completion can share them.

Completing writes the object as the initiator (the object's permissions, quotas, locks and versioning apply
then), then removes the staging directory. When every part but the last is a whole number of 4 MiB blocks and
the parts' blocks lie where the object's bytes go, the object is made of the parts' blocks in one metadata
transaction (:meth:`~callfs.engine.Engine.join_files`, :mod:`callfs.joins`): no byte is read or written, whatever
the size. Otherwise (parts of other lengths, parts stored as blobs, parts staged on other nodes) the parts'
bytes are streamed in order into the object, copied once. Either way the object is committed whole or not at
all, and dropping the staging directory then lets go of the parts (blocks the object shares stay).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from callfs import errors
from callfs.api.conditional import etag
from callfs.models import Inode
from callfs.permissions import EXECUTE, WRITE, Caller, allows
from callfs.s3 import messages, names
from callfs.s3.context import Context
from callfs.s3.errors import S3Error, access_denied, invalid_argument
from callfs.s3.objects import (
    CHUNK_BYTES,
    Written,
    object_attributes,
    prepare_write,
    read_source,
    require_bucket,
    write_errors,
    write_prepared,
    xml_response,
)

STAGING = "/.multipart"
"""Where uploads in progress are staged."""
STAGING_MODE = 0o700
ROOT = Caller("root")
MIN_PART_BYTES = 5 * 1024 * 1024
"""The smallest part but the last (S3: ``EntityTooSmall`` below 5 MiB)."""
MAX_LISTED = 1000
"""The most parts or uploads one listing returns."""


def _no_such_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", 404, "The specified upload does not exist. The upload ID may be invalid, or the "
                   "upload may have been aborted or completed.", upload_id)


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload in progress: ``upload_id`` (32 hex digits), ``bucket``, ``key``, the ``initiator``
    (user), when it was ``initiated`` and the ``attributes`` the object gets."""

    upload_id: str
    bucket: str
    key: str
    initiator: str
    initiated: datetime
    attributes: dict[str, str]

    @property
    def directory(self) -> str:
        return f"{STAGING}/{self.upload_id}"


@dataclass(frozen=True, slots=True)
class Part:
    """A staged part: ``number``, ``md5`` (hex), its file's ``inode``."""

    number: int
    md5: str
    inode: Inode

    @property
    def etag(self) -> str:
        return f'"{self.md5}"'


def part_name(number: int, md5: str) -> str:
    """The staging file name of a part: ``00001.<md5 hex>`` (numbers sort as names)."""
    return f"{number:05d}.{md5}"


def parse_part_name(name: str) -> tuple[int, str] | None:
    """``(number, md5)`` of a staging file name, ``None`` for another file."""
    number, dot, md5 = name.partition(".")
    if not dot or len(number) != 5 or not number.isdigit() or len(md5) != 32:
        return None
    return int(number), md5


async def ensure_staging(ctx: Context) -> None:
    """Create :data:`STAGING` (root, mode 0700) when absent."""
    inode, created = await ctx.engine.make_directory(ROOT, STAGING)
    if created or inode.mode != STAGING_MODE or inode.owner != "root":
        await ctx.engine.change_attributes(ROOT, STAGING, mode=STAGING_MODE, owner="root", group="root")


async def _read_all(ctx: Context, path: str) -> bytes:
    opened = await ctx.engine.stat(ROOT, path)
    data = bytearray()
    async for chunk in ctx.engine.read_range(opened, 0, opened.size, CHUNK_BYTES):
        data += chunk
    return bytes(data)


async def load_upload(ctx: Context, upload_id: str) -> Upload:
    """The upload ``upload_id`` of ``ctx.bucket``/``ctx.key`` started by the caller (a superuser: by anyone).
    Raises :class:`S3Error` ``NoSuchUpload`` (unknown, or another object's), ``AccessDenied``."""
    if len(upload_id) != 32 or any(c not in "0123456789abcdef" for c in upload_id):
        raise _no_such_upload(upload_id)
    try:
        record = json.loads(await _read_all(ctx, f"{STAGING}/{upload_id}/upload.json"))
    except errors.NotFound:
        raise _no_such_upload(upload_id) from None
    upload = Upload(upload_id, record["bucket"], record["key"], record["initiator"],
                    datetime.fromisoformat(record["initiated"]), record.get("attributes", {}))
    if (upload.bucket, upload.key) != (ctx.bucket, ctx.key):
        raise _no_such_upload(upload_id)
    if upload.initiator != ctx.caller.user and not ctx.caller.is_superuser:
        raise access_denied()
    return upload


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def create_upload(ctx: Context) -> web.StreamResponse:
    """CreateMultipartUpload: check the caller may write in the bucket, record the upload, return its id."""
    bucket_dir = await require_bucket(ctx, ctx.bucket)
    target = names.object_path(ctx.bucket, ctx.key)
    if target.is_folder:
        raise S3Error("InvalidRequest", 400, "a key ending in '/' names a folder; upload objects to object keys")
    if not allows(ctx.caller, bucket_dir, WRITE | EXECUTE):
        raise access_denied()
    await ensure_staging(ctx)
    upload_id = secrets.token_hex(16)
    record = {"bucket": ctx.bucket, "key": ctx.key, "initiator": ctx.caller.user,
              "initiated": datetime.now().astimezone().isoformat(),
              "attributes": object_attributes(ctx.request.headers)}
    await ctx.engine.write_file(ROOT, f"{STAGING}/{upload_id}/upload.json", _one(json.dumps(record).encode()),
                                create_only=True)
    return xml_response(messages.initiate_upload(ctx.bucket, ctx.key, upload_id))


def _part_number(ctx: Context) -> int:
    try:
        number = int(ctx.request.query["partNumber"])
    except ValueError:
        number = 0
    if not 1 <= number <= messages.MAX_PARTS:
        raise invalid_argument(f"Part number must be an integer between 1 and {messages.MAX_PARTS}, inclusive")
    return number


async def _parts(ctx: Context, upload: Upload) -> dict[int, list[Part]]:
    """The staged parts by number (a number uploaded twice with different bytes has two until completion)."""
    _, entries = await ctx.engine.list_directory(ROOT, upload.directory)
    found: dict[int, list[Part]] = {}
    for entry in entries:
        parsed = parse_part_name(entry.name)
        if parsed is not None and not entry.is_dir:
            found.setdefault(parsed[0], []).append(Part(parsed[0], parsed[1], entry))
    for versions in found.values():
        versions.sort(key=lambda p: p.inode.mtime, reverse=True)
    return found


async def _store_part(ctx: Context, upload: Upload, number: int, body: AsyncIterator[bytes],
                      size: int | None) -> Part:
    """Stream ``body`` into a new staging file, named by its MD5 once known; older copies of the number
    are removed. A body of known, non-zero ``size`` (bytes) is stored in blocks (an empty file written over
    from its start: :meth:`~callfs.engine.Engine.write_range`), any other as one blob. A body of another length
    than ``size`` is refused (``BadRequest``) and leaves nothing behind."""
    digest = hashlib.md5()  # noqa: S324 - S3 part ETags are MD5s, not a security measure

    async def hashed() -> AsyncIterator[bytes]:
        async for piece in body:
            digest.update(piece)
            yield piece

    scratch = f"{upload.directory}/incoming.{secrets.token_hex(8)}"
    if not size:
        await ctx.engine.write_file(ROOT, scratch, hashed(), create_only=True, expected_size=size, local=True)
    else:
        await ctx.engine.write_file(ROOT, scratch, _one(b""), create_only=True, local=True)
    try:
        if size:
            await ctx.engine.write_range(ROOT, scratch, 0, size, hashed(), local=True)
        name = part_name(number, digest.hexdigest())
        moved = await ctx.engine.move(ROOT, scratch, f"{upload.directory}/{name}", overwrite=True)
    except BaseException:
        await ctx.engine.delete(ROOT, scratch)
        raise
    for stale in (await _parts(ctx, upload)).get(number, []):
        if stale.inode.path != moved.path:
            with contextlib.suppress(errors.NotFound):
                await ctx.engine.delete(ROOT, stale.inode.path)
    return Part(number, digest.hexdigest(), moved)


async def upload_part(ctx: Context) -> web.StreamResponse:
    """UploadPart (or UploadPartCopy with ``x-amz-copy-source``): stage one part, answer its ETag (MD5)."""
    upload = await load_upload(ctx, ctx.request.query["uploadId"])
    number = _part_number(ctx)
    if "x-amz-copy-source" in ctx.request.headers:
        source, chunks, length = await read_source(ctx, ctx.request.headers.get("x-amz-copy-source-range"))
        part = await _store_part(ctx, upload, number, chunks, length)
        response = xml_response(messages.copy_result(part.etag, part.inode.mtime, part=True))
        if source.version_id is not None:
            response.headers["x-amz-copy-source-version-id"] = source.version_id
        return response
    body, size = ctx.body()
    part = await _store_part(ctx, upload, number, body, size)
    return web.Response(status=200, headers={"ETag": part.etag})


async def complete_upload(ctx: Context) -> web.StreamResponse:
    """CompleteMultipartUpload: check the part list (ascending numbers, ETags of staged parts, every part but
    the last at least 5 MiB), write the object from the parts as the initiator (sharing their blocks, or
    streaming their bytes: see the module docstring), drop the staging directory.

    Raises :class:`S3Error` ``InvalidPartOrder``, ``InvalidPart``, ``EntityTooSmall``, ``NoSuchUpload``,
    ``MalformedXML``."""
    upload = await load_upload(ctx, ctx.request.query["uploadId"])
    wanted = messages.parse_complete(await ctx.xml_body())
    numbers = [n for n, _ in wanted]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise S3Error("InvalidPartOrder", 400, "The list of parts was not in ascending order. The parts list must be "
                      "specified in order by part number.")
    staged = await _parts(ctx, upload)
    chosen: list[Part] = []
    for number, tag in wanted:
        md5 = tag.strip('"').lower()
        match = next((p for p in staged.get(number, []) if p.md5 == md5), None)
        if match is None:
            raise S3Error("InvalidPart", 400, "One or more of the specified parts could not be found. The part may not "
                          "have been uploaded, or the specified entity tag may not match the part's entity tag.")
        chosen.append(match)
    for part in chosen[:-1]:
        if part.inode.size < MIN_PART_BYTES:
            raise S3Error("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object "
                          "size.")
    initiator = Caller(upload.initiator, ctx.caller.groups)
    written = await _join_parts(ctx, upload, chosen, initiator)
    await ctx.engine.delete(ROOT, upload.directory, recursive=True)
    location = f"/{ctx.bucket}/{ctx.key}"
    response = xml_response(messages.complete_upload(location, ctx.bucket, ctx.key, etag(written.inode)))
    if written.version_id is not None:
        response.headers["x-amz-version-id"] = written.version_id
    return response


async def _join_parts(ctx: Context, upload: Upload, chosen: list[Part], initiator: Caller) -> Written:
    """Write the object of ``upload`` from the ``chosen`` parts, in order, as ``initiator``: by sharing their
    blocks when the engine can (:meth:`~callfs.engine.Engine.join_files`), else by streaming their bytes into
    it."""
    plan = await prepare_write(ctx, upload.key, caller=initiator, attributes=upload.attributes)
    try:
        with write_errors(ctx, upload.key):
            joined = await ctx.engine.join_files(
                plan.caller, plan.path, [p.inode for p in chosen], reader=ROOT, create_only=plan.create_only,
                precondition=plan.precondition, attributes=plan.attributes, keep=plan.keep,
            )
    except errors.Conflict:
        await load_upload(ctx, upload.upload_id)  # aborted or completed meanwhile: NoSuchUpload
        raise  # a part was uploaded again meanwhile (409): the client completes with its new ETag
    if joined is not None:
        return Written(joined.inode, plan.version_id)

    async def streamed() -> AsyncIterator[bytes]:
        for part in chosen:
            async for chunk in ctx.engine.read_range(part.inode, 0, part.inode.size, CHUNK_BYTES):
                yield chunk

    return await write_prepared(ctx, upload.key, plan, streamed(), sum(p.inode.size for p in chosen))


async def abort_upload(ctx: Context) -> web.StreamResponse:
    """AbortMultipartUpload: drop the staged parts (204)."""
    upload = await load_upload(ctx, ctx.request.query["uploadId"])
    try:
        await ctx.engine.delete(ROOT, upload.directory, recursive=True)
    except errors.NotFound:
        raise _no_such_upload(upload.upload_id) from None
    return web.Response(status=204)


def _bounded(ctx: Context, name: str) -> int:
    value = ctx.request.query.get(name)
    try:
        number = int(value) if value is not None else MAX_LISTED
    except ValueError:
        raise invalid_argument(f"{name} must be an integer") from None
    if number < 0:
        raise invalid_argument(f"{name} must be a non-negative integer")
    return min(number, MAX_LISTED)


async def list_parts(ctx: Context) -> web.StreamResponse:
    """ListParts: the staged parts after ``part-number-marker``, up to ``max-parts``."""
    upload = await load_upload(ctx, ctx.request.query["uploadId"])
    marker_text = ctx.request.query.get("part-number-marker", "0")
    if not marker_text.isdigit():
        raise invalid_argument("part-number-marker must be an integer")
    marker, max_parts = int(marker_text), _bounded(ctx, "max-parts")
    staged = await _parts(ctx, upload)
    numbers = sorted(n for n in staged if n > marker)
    shown = numbers[:max_parts]
    entries = [messages.PartEntry(n, staged[n][0].etag, staged[n][0].inode.size, staged[n][0].inode.mtime)
               for n in shown]
    next_marker = shown[-1] if len(numbers) > max_parts and shown else None
    return xml_response(messages.list_parts(ctx.bucket, ctx.key, upload.upload_id, upload.initiator, entries,
                                            marker=marker, max_parts=max_parts, next_marker=next_marker))


async def list_uploads(ctx: Context) -> web.StreamResponse:
    """ListMultipartUploads: the caller's uploads in progress in the bucket (a superuser's: everyone's), by
    key then upload id, after ``key-marker``/``upload-id-marker``, with ``prefix``, up to ``max-uploads``."""
    await require_bucket(ctx, ctx.bucket)
    query = ctx.request.query
    prefix, key_marker = query.get("prefix", ""), query.get("key-marker", "")
    id_marker, max_uploads = query.get("upload-id-marker", ""), _bounded(ctx, "max-uploads")
    try:
        _, entries = await ctx.engine.list_directory(ROOT, STAGING)
    except errors.NotFound:
        entries = []
    uploads: list[Upload] = []
    for entry in entries:
        try:
            record = json.loads(await _read_all(ctx, f"{entry.path}/upload.json"))
        except (errors.NotFound, errors.NotADirectory, ValueError):
            continue
        upload = Upload(entry.name, record["bucket"], record["key"], record["initiator"],
                        datetime.fromisoformat(record["initiated"]), record.get("attributes", {}))
        if upload.bucket != ctx.bucket or not upload.key.startswith(prefix):
            continue
        if upload.initiator != ctx.caller.user and not ctx.caller.is_superuser:
            continue
        if (upload.key, upload.upload_id) <= (key_marker, id_marker) and key_marker:
            continue
        uploads.append(upload)
    uploads.sort(key=lambda u: (u.key.encode(), u.upload_id))
    shown = uploads[:max_uploads]
    next_markers = (shown[-1].key, shown[-1].upload_id) if len(uploads) > max_uploads and shown else None
    listed = [messages.UploadEntry(u.key, u.upload_id, u.initiator, u.initiated) for u in shown]
    return xml_response(messages.list_uploads(ctx.bucket, listed, prefix=prefix, key_marker=key_marker,
                                              upload_id_marker=id_marker, max_uploads=max_uploads,
                                              next_markers=next_markers))
