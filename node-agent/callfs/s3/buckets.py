"""Bucket operations of the S3 face: ListBuckets, CreateBucket, DeleteBucket, HeadBucket,
GetBucketLocation and the listings ListObjectsV2 and ListObjects (v1). A bucket is a
top-level directory; CreateBucket makes it private (mode 0700), as S3 buckets are."""

from __future__ import annotations

from aiohttp import web

from callfs import errors, paths, versions
from callfs.api.conditional import etag
from callfs.models import Inode
from callfs.permissions import EXECUTE, READ, allows
from callfs.s3 import messages, names
from callfs.s3.context import Context
from callfs.s3.errors import S3Error, invalid_argument, no_such_bucket, not_implemented
from callfs.s3.listing import decode_token, encode_token, encoding_type, page
from callfs.s3.objects import require_bucket, xml_response

BUCKET_MODE = 0o700
"""Mode of a directory CreateBucket makes: only its owner (and root) can reach inside."""

LIST_DEPTH = paths.MAX_PATH_DEPTH
"""Levels a listing without a ``/`` delimiter descends (all of them)."""


async def list_buckets(ctx: Context) -> web.StreamResponse:
    """ListBuckets: the top-level directories with valid bucket names the caller owns (a superuser: all), as
    S3 lists the buckets of the sender. Buckets shared through their mode or group work but are not listed."""
    _, entries = await ctx.engine.list_directory(ctx.caller, paths.ROOT)
    buckets = [(e.name, e.ctime) for e in entries if e.is_dir and names.is_bucket_name(e.name)
               and (e.owner == ctx.caller.user or ctx.caller.is_superuser)]
    return xml_response(messages.list_buckets(ctx.caller.user, buckets))


async def create_bucket(ctx: Context) -> web.StreamResponse:
    """CreateBucket: make ``/bucket`` (mode 0700). An existing bucket is ``BucketAlreadyOwnedByYou`` (the
    caller owns it) or ``BucketAlreadyExists``. A bucket with object lock
    (``x-amz-bucket-object-lock-enabled: true``) is ``NotImplemented``: making it without the lock would let a
    client believe its objects are protected."""
    names.check_bucket(ctx.bucket)
    if ctx.request.headers.get("x-amz-bucket-object-lock-enabled", "").strip().lower() == "true":
        raise not_implemented("Object lock")
    body = await ctx.xml_body()
    if body.strip():
        messages.parse_create_bucket(body)  # the location constraint is accepted whatever it names
    path = names.bucket_path(ctx.bucket)
    try:
        inode, created = await ctx.engine.make_directory(ctx.caller, path)
    except errors.AlreadyExists:
        raise S3Error("BucketAlreadyExists", 409, "The requested bucket name is not available.",
                      f"/{ctx.bucket}") from None
    if not created:
        if inode.owner == ctx.caller.user:
            raise S3Error("BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket "
                          "succeeded and you already own it.", f"/{ctx.bucket}")
        raise S3Error("BucketAlreadyExists", 409, "The requested bucket name is not available.", f"/{ctx.bucket}")
    await ctx.engine.change_attributes(ctx.caller, path, mode=BUCKET_MODE)
    return web.Response(status=200, headers={"Location": f"/{ctx.bucket}"})


async def delete_bucket(ctx: Context) -> web.StreamResponse:
    """DeleteBucket: remove a bucket holding no objects, no noncurrent versions and no delete markers
    (``BucketNotEmpty`` otherwise, as S3 answers for a versioned bucket). Folders left empty by deleted keys are
    not objects (listings without a delimiter skip them): they are removed with the bucket, deepest first and
    each only while empty, so that a file written meanwhile keeps the bucket."""
    await require_bucket(ctx, ctx.bucket)
    bucket = names.bucket_path(ctx.bucket)
    not_empty = S3Error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty", f"/{ctx.bucket}")
    if await versions.has_versions(ctx.engine, bucket):
        raise not_empty
    try:
        try:
            await ctx.engine.delete(ctx.caller, bucket)
        except errors.DirectoryNotEmpty:
            _, entries = await ctx.engine.list_directory(ctx.caller, bucket, recursive=True, max_depth=LIST_DEPTH)
            if any(not e.is_dir for e in entries):
                raise not_empty from None
            for folder in sorted((e.path for e in entries), key=lambda p: p.count("/"), reverse=True):
                await ctx.engine.delete(ctx.caller, folder)
            await ctx.engine.delete(ctx.caller, bucket)
    except errors.DirectoryNotEmpty:
        raise not_empty from None
    except errors.NotFound:
        raise no_such_bucket(ctx.bucket) from None
    return web.Response(status=204)


async def head_bucket(ctx: Context) -> web.StreamResponse:
    """HeadBucket: 200 when the bucket exists and the caller may list it, 403 or 404 otherwise."""
    inode = await require_bucket(ctx, ctx.bucket)
    if not allows(ctx.caller, inode, READ | EXECUTE):
        raise S3Error("AccessDenied", 403, "Access Denied", f"/{ctx.bucket}")
    return web.Response(status=200, headers={"x-amz-bucket-region": ctx.node.config.s3.region or "us-east-1"})


async def get_location(ctx: Context) -> web.StreamResponse:
    """GetBucketLocation: the configured ``s3.region`` (us-east-1 when unset)."""
    await head_bucket(ctx)
    return xml_response(messages.location(ctx.node.config.s3.region))


def _int_param(ctx: Context, name: str, default: int) -> int:
    value = ctx.request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid_argument(f"{name} must be a non-negative integer") from None
    if number < 0:
        raise invalid_argument(f"{name} must be a non-negative integer")
    return number


async def _entries(ctx: Context, prefix: str, delimiter: str) -> list[tuple[str, Inode]]:
    """``(key, inode)`` of the candidates under the deepest folder ``prefix`` names: its children (folders as
    ``key/``) when the delimiter is ``/``, else every file below it."""
    base = names.prefix_folder(ctx.bucket, prefix)
    if base is None:
        return []
    try:
        if delimiter == "/":
            _, entries = await ctx.engine.list_directory(ctx.caller, base)
        else:
            _, entries = await ctx.engine.list_directory(ctx.caller, base, recursive=True, max_depth=LIST_DEPTH)
    except (errors.NotFound, errors.NotADirectory):
        return []
    # Symbolic links and special files are no objects: listings leave them out (docs/s3.md).
    return [(names.key_of(ctx.bucket, e.path, is_dir=e.is_dir), e) for e in entries
            if not e.is_entry_only and (not e.is_dir or delimiter == "/")]


async def list_objects(ctx: Context, *, v2: bool) -> web.StreamResponse:
    """ListObjectsV2 (``list-type=2``: ``continuation-token``, ``start-after``, ``fetch-owner``) or ListObjects
    (``marker``): keys with ``prefix``, rolled up at ``delimiter``, up to ``max-keys`` (at most
    ``s3.max_keys``)."""
    await require_bucket(ctx, ctx.bucket)
    query = ctx.request.query
    encoding = encoding_type(query.get("encoding-type"))
    limit = ctx.node.config.s3.max_keys
    max_keys = min(_int_param(ctx, "max-keys", limit), limit)
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    token = query.get("continuation-token") if v2 else None
    marker = query.get("start-after", "") if v2 else query.get("marker", "")
    after = decode_token(token) if token is not None else marker
    entries = await _entries(ctx, prefix, delimiter)
    found = page(entries, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys)
    objects = [messages.ObjectEntry(key, etag(inode) if not inode.is_dir else '"d41d8cd98f00b204e9800998ecf8427e"',
                                    inode.size, inode.mtime, inode.owner) for key, inode in found.objects]
    params = messages.ListParams(ctx.bucket, prefix, delimiter, max_keys, marker, encoding, token,
                                 query.get("fetch-owner") == "true")
    if v2:
        next_token = encode_token(found.last) if found.last is not None else None
        return xml_response(messages.list_objects_v2(params, objects, found.prefixes, next_token))
    return xml_response(messages.list_objects_v1(params, objects, found.prefixes, found.last))
