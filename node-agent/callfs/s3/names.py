"""Buckets and keys ↔ CallFS paths. Pure functions.

A bucket is a top-level directory (``/photos``); a key is the path below it (``2024/cat.jpg`` →
``/photos/2024/cat.jpg``). Key ``/`` separators are directory separators, so a key must already be in the
canonical form of a path (no empty, ``.`` or ``..`` segment); a key ending in ``/`` names a directory (the
"folder" objects S3 consoles create).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from callfs import errors, paths
from callfs.s3.errors import S3Error

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_KEY_BYTES = 1024
"""The longest key S3 accepts (UTF-8 bytes)."""


def check_bucket(name: str) -> str:
    """``name`` when it is a valid bucket name, per the Amazon S3 User Guide, "Bucket naming rules" (3-63
    characters of ``a-z 0-9 . -``, starting and ending with a letter or digit, no ``..``, not an IPv4
    address). Raises :class:`S3Error` ``InvalidBucketName`` (400)."""
    if not _BUCKET.fullmatch(name) or ".." in name or _is_ipv4(name):
        raise S3Error("InvalidBucketName", 400, "The specified bucket is not valid.", f"/{name}")
    return name


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def is_bucket_name(name: str) -> bool:
    """True when a top-level directory's ``name`` is a valid bucket name (others are not listed as buckets)."""
    try:
        check_bucket(name)
    except S3Error:
        return False
    return True


def bucket_path(bucket: str) -> str:
    """The directory of ``bucket`` (a valid name): ``/bucket``."""
    return "/" + bucket


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """Where a key lives: canonical ``path`` and ``is_folder`` (the key ends in ``/``: a directory)."""

    path: str
    is_folder: bool


def object_path(bucket: str, key: str) -> ObjectPath:
    """The path of ``key`` in ``bucket``.

    Raises :class:`S3Error` ``KeyTooLongError`` (more than 1024 bytes) or ``InvalidArgument`` (an empty key,
    an empty, ``.`` or ``..`` segment, a forbidden character or a segment longer than 255 bytes: the key has
    no path of its own).
    """
    if len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", 400, "Your key is too long", f"/{bucket}/{key}")
    is_folder = key.endswith("/")
    segments = (key[:-1] if is_folder else key).split("/")
    if not key or any(s in ("", ".", "..") for s in segments):
        raise S3Error("InvalidArgument", 400, "keys map to paths: empty, '.' and '..' segments are not allowed",
                      f"/{bucket}/{key}")
    raw = bucket_path(bucket) + "/" + "/".join(segments)
    try:
        canonical = paths.canonicalize(raw).path
    except errors.BadRequest as exc:
        raise S3Error("InvalidArgument", 400, exc.message, f"/{bucket}/{key}") from None
    return ObjectPath(canonical, is_folder)


def key_of(bucket: str, path: str, *, is_dir: bool = False) -> str:
    """The key of the entry at ``path`` inside ``bucket`` (a directory's key ends in ``/``)."""
    key = path[len(bucket_path(bucket)) + 1:]
    return key + "/" if is_dir else key


def prefix_folder(bucket: str, prefix: str) -> str | None:
    """The path of the deepest folder a listing ``prefix`` names (the part up to its last ``/``; the bucket
    itself when there is none), where the keys that may match it lie; ``None`` for a prefix no path can have
    (then nothing matches)."""
    folder = prefix.rpartition("/")[0]
    if not folder:
        return bucket_path(bucket)
    try:
        return object_path(bucket, folder).path
    except S3Error:
        return None
