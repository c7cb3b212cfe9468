"""Paging a bucket's keys as ListObjects/ListObjectsV2 do (Amazon S3 API Reference, "ListObjectsV2"):
keys in UTF-8 byte order, keys sharing a prefix up to the next delimiter rolled up into one common prefix,
at most ``max_keys`` keys and prefixes per page. Pure functions."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from callfs.s3.errors import invalid_argument

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page: ``objects`` as ``(key, item)``, ``prefixes`` (common prefixes), and ``last``: the key or
    prefix to continue after when the listing is truncated (``None``: complete)."""

    objects: list[tuple[str, T]]
    prefixes: list[str]
    last: str | None


def encoding_type(value: str | None) -> str | None:
    """The ``encoding-type`` of a listing request: ``url`` or none. Raises :class:`S3Error` ``InvalidArgument``
    for any other value."""
    if value not in (None, "url"):
        raise invalid_argument("Invalid Encoding Method specified in Request")
    return value


def key_order(key: str) -> bytes:
    """The sort key of an S3 key: its UTF-8 bytes (S3 lists keys in UTF-8 binary order)."""
    return key.encode("utf-8", "surrogatepass")


def page(entries: Iterable[tuple[str, T]], *, prefix: str, delimiter: str, after: str, max_keys: int) -> Page[T]:
    """The page of ``entries`` (``(key, item)``, any order) with keys starting with ``prefix`` and sorting after
    ``after``; keys whose rest after ``prefix`` holds ``delimiter`` count once, as their common prefix (a
    prefix at or before ``after`` is not repeated). ``max_keys`` 0 gives an empty, untruncated page."""
    candidates = sorted(((k, v) for k, v in entries if k.startswith(prefix)), key=lambda kv: key_order(kv[0]))
    objects: list[tuple[str, T]] = []
    prefixes: list[str] = []
    after_order = key_order(after)
    count = 0
    last: str | None = None
    for key, item in candidates:
        rolled = None
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                rolled = key[:cut + len(delimiter)]
        name = rolled if rolled is not None else key
        if after and key_order(name) <= after_order:
            continue
        if rolled is not None and prefixes and prefixes[-1] == rolled:
            continue
        if count == max_keys:
            return Page(objects, prefixes, last)
        if rolled is not None:
            prefixes.append(rolled)
        else:
            objects.append((key, item))
        last = name
        count += 1
    return Page(objects, prefixes, None)


def encode_token(key: str) -> str:
    """The ListObjectsV2 continuation token for "continue after ``key``" (opaque to clients)."""
    return base64.urlsafe_b64encode(key.encode("utf-8", "surrogatepass")).decode("ascii")


def decode_token(token: str) -> str:
    """The key a continuation token continues after. Raises ``InvalidArgument`` (400) for a token this server
    did not issue."""
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid_argument("The continuation token provided is incorrect") from None
