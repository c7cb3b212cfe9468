"""HTTP validators, conditional requests and byte ranges (RFC 9110 §8.8, §13, §14). Pure functions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from callfs.errors import BadRequest, PreconditionFailed, RangeNotSatisfiable
from callfs.models import Inode, etag_id


def etag(inode: Inode) -> str:
    """A strong entity tag for a file: its content id and version change with every content change (quoted,
    RFC 9110 §8.8.3). A file converted from one blob to blocks keeps its ETag (:func:`~callfs.models.etag_id`)."""
    return f'"{etag_id(inode.blob_id)}{inode.version:x}"'


def http_date(moment: datetime) -> str:
    """IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) for ``Last-Modified``."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with seconds precision: ``2026-11-22T04:16:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_fine(moment: datetime) -> str:
    """RFC 3339 in UTC with the microseconds when there are any (``2026-11-22T04:16:00.250000Z``), else as
    :func:`rfc3339`: the precision the metadata stores keep, for an inode's times."""
    moment = moment.astimezone(UTC)
    if not moment.microsecond:
        return rfc3339(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
        # In UTC now, so that comparing it can never overflow (year 1 at +2359, year 9999 at -2359).
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # not an HTTP-date, or a year/offset outside what datetime holds: the header is ignored


def _matches(value: str, current: Inode | None, *, strong: bool) -> bool:
    """Does an ``If-Match``/``If-None-Match`` list match ``current``? (RFC 9110 §8.8.3.2 comparison)."""
    if current is None:
        return False
    tags = [part.strip() for part in value.split(",") if part.strip()]
    if "*" in tags:
        return True
    if strong:
        return etag(current) in tags
    return etag(current) in (tag.removeprefix("W/") for tag in tags)


@dataclass(frozen=True, slots=True)
class Conditions:
    """The conditional request headers of one request (raw values, ``None`` when absent)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None

    @property
    def present(self) -> bool:
        return any((self.if_match, self.if_none_match, self.if_modified_since, self.if_unmodified_since))


def evaluate_read(conditions: Conditions, inode: Inode) -> int | None:
    """Evaluate preconditions for GET/HEAD in RFC 9110 §13.2.2 order.

    Returns 304 (not modified), 412 (precondition failed) or ``None`` (serve normally).
    """
    seconds = inode.mtime.replace(microsecond=0)
    if conditions.if_match is not None:
        if not _matches(conditions.if_match, inode, strong=True):
            return 412
    elif conditions.if_unmodified_since is not None:
        since = _parse_http_date(conditions.if_unmodified_since)
        if since is not None and seconds > since:
            return 412
    if conditions.if_none_match is not None:
        if _matches(conditions.if_none_match, inode, strong=False):
            return 304
    elif conditions.if_modified_since is not None:
        since = _parse_http_date(conditions.if_modified_since)
        if since is not None and seconds <= since:
            return 304
    return None


def write_precondition(conditions: Conditions) -> Callable[[Inode | None], None] | None:
    """A callable for :meth:`callfs.engine.Engine.write_file` enforcing ``If-Match``/``If-None-Match``/
    ``If-Unmodified-Since`` on PUT/POST (RFC 9110 §13.1), or ``None`` when the request has none.

    The callable raises :class:`PreconditionFailed` given the current inode (``None`` when absent).
    """
    if not conditions.present:
        return None

    def check(current: Inode | None) -> None:
        if conditions.if_match is not None and not _matches(conditions.if_match, current, strong=True):
            raise PreconditionFailed("If-Match does not match the current version")
        if conditions.if_none_match is not None and _matches(conditions.if_none_match, current, strong=False):
            raise PreconditionFailed("If-None-Match matches the current version")
        # RFC 9110 §13.1.4: If-Unmodified-Since is ignored when If-Match is present.
        if conditions.if_match is None and conditions.if_unmodified_since is not None and current is not None:
            since = _parse_http_date(conditions.if_unmodified_since)
            if since is not None and current.mtime.replace(microsecond=0) > since:
                raise PreconditionFailed("the file was modified since If-Unmodified-Since")

    return check


def range_applies(if_range: str | None, inode: Inode) -> bool:
    """``If-Range`` (RFC 9110 §13.1.5): honour ``Range`` only when the validator still matches."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == etag(inode)
    since = _parse_http_date(value)
    return since is not None and inode.mtime.replace(microsecond=0) == since


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``start..end`` of a representation of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


BEYOND = 1 << 63
"""Any byte position at or past this is beyond every file (sizes are signed 64-bit)."""


def _position(digits: str) -> int:
    """A byte position from ASCII digits; numbers of more than 18 significant digits (which Python would refuse
    to convert past 4,300 digits) all become :data:`BEYOND`."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 18 else BEYOND


def _digits(text: str) -> bool:
    """Empty, or ASCII digits only: RFC 9110 ``DIGIT`` is %x30-39, while ``str.isdigit`` also accepts
    superscripts and the digits of other scripts."""
    return all("0" <= c <= "9" for c in text)


_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/(\*|[0-9]{1,19})")


def parse_content_range(header: str) -> tuple[int, int]:
    """``(offset, length)`` of a partial PUT's ``Content-Range: bytes FIRST-LAST/*`` (RFC 9110 §14.4, §14.5;
    inclusive positions). A complete length instead of ``*`` is accepted when it is ``LAST + 1`` (the range
    ends the file). Raises ``BadRequest`` for anything else (another unit, ``LAST < FIRST``, a length that
    contradicts the range)."""
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise BadRequest(f"Content-Range must be 'bytes FIRST-LAST/*', not {header!r}")
    first, last = int(match.group(1)), int(match.group(2))
    if last < first:
        raise BadRequest(f"Content-Range {header!r} ends before it starts")
    if match.group(3) != "*" and int(match.group(3)) != last + 1:
        raise BadRequest(f"Content-Range {header!r}: a complete length must be LAST + 1, or use '*'")
    return first, last - first + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Parse a ``Range`` header against a file of ``size`` bytes (RFC 9110 §14.1.2, §14.2).

    Returns ``None`` to serve the whole file: no header, a header that is not a valid ``bytes`` range (ignored
    per §14.2), or several ranges (we answer those with the whole representation, which §14.2 permits).

    Raises:
        RangeNotSatisfiable: a single syntactically valid range that starts at or beyond ``size``.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first or last) or not _digits(first) or not _digits(last):
        return None
    if first:
        start = _position(first)
        end = _position(last) if last else size - 1
        if last and end < start:
            return None
        if start >= size:
            raise RangeNotSatisfiable(f"range starts at byte {min(start, BEYOND)} or later, but the file has {size} "
                                      "bytes", size=size)
        return ByteRange(start, min(end, size - 1), size)
    suffix = _position(last)
    if suffix == 0:
        raise RangeNotSatisfiable("a suffix range of 0 bytes selects nothing", size=size)
    if size == 0:
        return None  # §14.1.1: a non-zero suffix of an empty file is satisfiable: the whole (empty) file

    return ByteRange(max(0, size - suffix), size - 1, size)
