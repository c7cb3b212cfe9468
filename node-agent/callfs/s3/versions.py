"""Bucket versioning of the S3 face (Amazon S3 API Reference: PutBucketVersioning, GetBucketVersioning,
ListObjectVersions). Versions themselves are kept by :mod:`callfs.versions`; reads, writes and deletes of a
version are served with the other object operations (:mod:`callfs.s3.objects`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from callfs import errors, paths, versions
from callfs.api.conditional import etag
from callfs.models import Inode, ObjectVersion
from callfs.permissions import EXECUTE, READ, allows
from callfs.s3 import messages, names
from callfs.s3.context import Context
from callfs.s3.errors import access_denied, invalid_argument
from callfs.s3.listing import encoding_type, key_order
from callfs.s3.objects import require_bucket, version_id_param, xml_response

LIST_DEPTH = paths.MAX_PATH_DEPTH
"""Levels ListObjectVersions descends below the prefix's folder (all of them)."""


async def get_versioning(ctx: Context) -> web.StreamResponse:
    """GetBucketVersioning: ``Enabled`` or ``Suspended``, no status when versioning was never set. Needs the
    right to list the bucket (as HeadBucket)."""
    bucket = await require_bucket(ctx, ctx.bucket)
    if not allows(ctx.caller, bucket, READ | EXECUTE):
        raise access_denied()
    return xml_response(messages.versioning(await versions.bucket_status(ctx.engine, bucket.path)))


async def put_versioning(ctx: Context) -> web.StreamResponse:
    """PutBucketVersioning: set the bucket's versioning to ``Enabled`` or ``Suspended`` (once set, a bucket
    never returns to unversioned, as in S3). Only the bucket's owner (or a superuser) may, as S3 allows the
    bucket owner only. Raises :class:`S3Error` ``MalformedXML``, ``IllegalVersioningConfigurationException``,
    ``AccessDenied``, ``NoSuchBucket``."""
    bucket = await require_bucket(ctx, ctx.bucket)
    status = messages.parse_versioning(await ctx.xml_body())
    if bucket.owner != ctx.caller.user and not ctx.caller.is_superuser:
        raise access_denied()
    await versions.set_status(ctx.engine, bucket.path, status)
    return web.Response(status=200)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One version of a key in a listing: the ``current`` file, or a kept ``version`` (one of the two)."""

    key: str
    current: Inode | None = None
    version: ObjectVersion | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of candidates: ``entries`` (with ``latest`` flags), common ``prefixes``, and what the next page
    starts after (``None``: complete): a common prefix, or the last candidate listed."""

    entries: list[tuple[Candidate, bool]]
    prefixes: list[str]
    last: str | Candidate | None


def page_versions(by_key: Mapping[str, Sequence[Candidate]], *, prefix: str, delimiter: str, key_marker: str,
                  after_version: int | None, max_keys: int) -> Page:
    """The page of the versions ``by_key`` (each key's candidates newest first: the current file, if any, then
    the kept versions) with keys starting with ``prefix``, in UTF-8 key order, rolled up at ``delimiter`` into
    common prefixes, at most ``max_keys`` entries and prefixes (Amazon S3 API Reference, ListObjectVersions).

    Keys before ``key_marker`` are skipped; the ``key_marker`` key itself too, unless ``after_version`` is the
    index of the version (in its candidates) to continue after. The first candidate of a key is its latest.
    Pure."""
    entries: list[tuple[Candidate, bool]] = []
    prefixes: list[str] = []
    marker = key_order(key_marker)
    count = 0
    last: str | Candidate | None = None
    for key in sorted((k for k in by_key if k.startswith(prefix)), key=key_order):
        rolled = None
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                rolled = key[:cut + len(delimiter)]
        if rolled is not None:
            if (key_marker and key_order(rolled) <= marker) or (prefixes and prefixes[-1] == rolled):
                continue
            if count == max_keys:
                return Page(entries, prefixes, last)
            prefixes.append(rolled)
            last = rolled
            count += 1
            continue
        start = 0
        if key_marker and key_order(key) < marker:
            continue
        if key_marker and key == key_marker:
            if after_version is None:
                continue
            start = after_version + 1
        for index, candidate in enumerate(by_key[key]):
            if index < start:
                continue
            if count == max_keys:
                return Page(entries, prefixes, last)
            entries.append((candidate, index == 0))
            last = candidate
            count += 1
    return Page(entries, prefixes, None)


async def _version_id(ctx: Context, candidate: Candidate) -> str:
    if candidate.version is not None:
        return candidate.version.version_id
    assert candidate.current is not None
    return await versions.current_version_id(ctx.engine, candidate.current)


async def _candidates(ctx: Context, prefix: str) -> dict[str, list[Candidate]]:
    """Every key below the deepest folder ``prefix`` names with its versions, newest first. Files and kept
    versions below a folder the caller may not read and search are left out (as listings leave them out)."""
    base = names.prefix_folder(ctx.bucket, prefix)
    if base is None:
        return {}
    try:
        _, entries = await ctx.engine.list_directory(ctx.caller, base, recursive=True, max_depth=LIST_DEPTH)
    except (errors.NotFound, errors.NotADirectory):
        entries = []
        if base != names.bucket_path(ctx.bucket):
            await ctx.engine.list_directory(ctx.caller, names.bucket_path(ctx.bucket))  # the bucket's permission
    hidden = {e.path for e in entries if e.is_dir and not allows(ctx.caller, e, READ | EXECUTE)}
    by_key: dict[str, list[Candidate]] = {}
    for entry in entries:
        if not entry.is_dir and not entry.is_entry_only:  # links and special files are no objects
            key = names.key_of(ctx.bucket, entry.path)
            by_key[key] = [Candidate(key, current=entry)]
    for version in await versions.versions_below(ctx.engine, base):
        if hidden.intersection(paths.ancestors(version.path)):
            continue
        key = names.key_of(ctx.bucket, version.path)
        by_key.setdefault(key, []).append(Candidate(key, version=version))
    return by_key


async def list_object_versions(ctx: Context) -> web.StreamResponse:
    """ListObjectVersions: every version and delete marker of the keys with ``prefix`` (rolled up at
    ``delimiter``), after ``key-marker`` (and ``version-id-marker`` within it), up to ``max-keys`` (at most
    ``s3.max_keys``); ``IsLatest`` marks each key's current version. Raises :class:`S3Error`
    ``InvalidArgument`` (a ``version-id-marker`` without ``key-marker``, a bad ``max-keys`` or encoding)."""
    await require_bucket(ctx, ctx.bucket)
    query = ctx.request.query
    encoding = encoding_type(query.get("encoding-type"))
    limit = ctx.node.config.s3.max_keys
    raw_max = query.get("max-keys", str(limit))
    if not raw_max.isdigit():
        raise invalid_argument("max-keys must be a non-negative integer")
    max_keys = min(int(raw_max), limit)
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    key_marker = query.get("key-marker", "")
    version_marker = version_id_param(query.get("version-id-marker") or None) or ""
    if version_marker and not key_marker:
        raise invalid_argument("A version-id marker cannot be specified without a key marker.")
    by_key = await _candidates(ctx, prefix)
    after_version = None
    if version_marker:
        ids = [await _version_id(ctx, c) for c in by_key.get(key_marker, [])]
        after_version = ids.index(version_marker) if version_marker in ids else len(ids)
    found = page_versions(by_key, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
                          after_version=after_version, max_keys=max_keys)
    listed = []
    for candidate, latest in found.entries:
        version_id = await _version_id(ctx, candidate)
        if candidate.version is not None:
            kept = candidate.version
            listed.append(messages.VersionEntry(candidate.key, version_id, latest, kept.delete_marker,
                                                etag(kept.as_inode()),
                                                kept.size, kept.mtime, kept.owner))
        else:
            assert candidate.current is not None
            inode = candidate.current
            listed.append(messages.VersionEntry(candidate.key, version_id, latest, False, etag(inode), inode.size,
                                                inode.mtime, inode.owner))
    next_key = next_version = None
    if isinstance(found.last, str):
        next_key, next_version = found.last, ""
    elif found.last is not None:
        next_key, next_version = found.last.key, await _version_id(ctx, found.last)
    params = messages.ListParams(ctx.bucket, prefix, delimiter, max_keys, key_marker, encoding)
    page = messages.VersionsPage(listed, found.prefixes, next_key, next_version)
    return xml_response(messages.list_versions(params, version_marker, page))
