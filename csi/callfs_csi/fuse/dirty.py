"""Which bytes of an open file this mount changed, where each byte of it is read from, and what ``flush``
sends to the server (pure; unit-tested).

An open file is the *server version* the mount last saw (its size ``base_size`` and ETag, from the ``open``
HEAD or from the answer to the mount's own last upload) with this mount's changes on top. The changes live in
the file's spool (:mod:`.spool`), a sparse local file as long as the file, and are recorded here
(:class:`DirtyRanges`): the merged byte ranges written, and ``cut_to``, the smallest size the file was cut to.
Nothing is fetched to write: a byte of the file is

* the spool's byte when it lies in a written range, or at or past the *server limit*
  ``min(base_size, cut_to)`` (written bytes, or zeros the spool holds for a hole or an extension);
* the server version's byte otherwise (:func:`read_sources`).

On ``flush``/``fsync``/``release`` :func:`plan_upload` decides what to send:

* a file the server does not have yet: one ``PUT`` of the whole spool (:attr:`UploadKind.WHOLE`);
* a file rewritten from byte 0 (``O_TRUNC``, a cut to 0, or every server byte overwritten), when the written
  bytes are at least :data:`WHOLE_SHARE` of it: one whole ``PUT`` too — all its bytes are local, and one
  request replaces it;
* otherwise :attr:`UploadKind.RANGES`: a ``PATCH {"size"}`` for a cut below the server's size, one ``PUT``
  with ``Content-Range`` per *span* (written ranges coalesced, below), and a ``PATCH {"size"}`` for an
  extension no span reaches.

Spans: the node stores a file as 4 MiB blocks and rewrites every block a ranged ``PUT`` touches. Two written
ranges are sent as one span when no whole block lies between them (the span touches only blocks the writes
touched, so the node rewrites the same blocks, once instead of twice) and the gap holds at most
:data:`COALESCE_GAP` bytes of the server version. Gap bytes past the server limit are the spool's (zeros);
those below it are *fills*: copied from the server version (a GET pinned to its ETag) into the spool before
the span is sent.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field
from typing import Final

from callfs.blocks.layout import BLOCK_SIZE

Range = tuple[int, int]
"""A byte range ``[start, end)``."""

MAX_RANGES: Final = 4096
"""Ranges an open file may record; past it the FUSE layer uploads the file before the next write is recorded
(memory stays bounded: about 100 bytes per range)."""
COALESCE_GAP: Final = 128 * 1024
"""Most bytes of the server version a span fetches to join two written ranges (bytes)."""
WHOLE_SHARE: Final = 0.5
"""A file whose bytes are all local goes as one whole ``PUT`` when at least this share of it was written."""


@dataclass(slots=True)
class DirtyRanges:
    """Changed byte ranges ``[start, end)`` of one file, sorted, merged (touching ranges join) and disjoint;
    ``cut_to`` the smallest size in bytes the file was truncated to since the last upload (``None``: never
    cut). Not thread-safe: the caller holds the open file's lock."""

    ranges: list[Range] = field(default_factory=list)
    cut_to: int | None = None

    def add(self, offset: int, length: int) -> None:
        """Record ``length`` bytes written at ``offset`` (bytes). Raises ``ValueError`` for negative values."""
        if offset < 0 or length < 0:
            raise ValueError(f"bad range: offset={offset} length={length}")
        if length == 0:
            return
        start, end = offset, offset + length
        first = bisect.bisect_left(self.ranges, start, key=lambda r: r[1])  # first range ending at/after start
        after = bisect.bisect_right(self.ranges, end, key=lambda r: r[0])  # first range starting after end
        if first < after:
            start = min(start, self.ranges[first][0])
            end = max(end, self.ranges[after - 1][1])
        self.ranges[first:after] = [(start, end)]

    def discard(self, start: int, end: int) -> None:
        """Forget bytes ``[start, end)`` (they were sent); ranges overlapping them are cut."""
        kept: list[Range] = []
        for low, high in self.ranges:
            if high <= start or low >= end:
                kept.append((low, high))
                continue
            if low < start:
                kept.append((low, start))
            if high > end:
                kept.append((end, high))
        self.ranges = kept

    def truncate(self, size: int) -> None:
        """Record a cut or extension to ``size`` bytes: ranges past it go; the bytes an extension adds are the
        spool's zeros (at or past ``cut_to``). Raises ``ValueError`` for a negative size."""
        if size < 0:
            raise ValueError(f"bad size: {size}")
        self.ranges = [(low, min(high, size)) for low, high in self.ranges if low < size]
        self.cut_to = size if self.cut_to is None else min(self.cut_to, size)

    def clear(self) -> None:
        """Forget everything (the server has the bytes)."""
        self.ranges = []
        self.cut_to = None

    def dirty_bytes(self) -> int:
        """Bytes in the recorded ranges."""
        return sum(high - low for low, high in self.ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges) or self.cut_to is not None


def server_limit(dirty: DirtyRanges, base_size: int) -> int:
    """The server limit of a file whose server version has ``base_size`` bytes: below it, a byte not written
    here is the server's; at or past it, the spool's (see the module docstring)."""
    return base_size if dirty.cut_to is None else min(base_size, dirty.cut_to)


@dataclass(frozen=True, slots=True)
class ReadPiece:
    """Bytes ``[start, end)`` of a read, from the spool (``local``) or from the server version."""

    start: int
    end: int
    local: bool


def read_sources(dirty: DirtyRanges, *, limit: int, size: int, offset: int, length: int) -> list[ReadPiece]:
    """Where the ``length`` bytes at ``offset`` of a file of ``size`` bytes come from, given its written
    ``dirty`` ranges and server ``limit`` (:func:`server_limit`): consecutive pieces alternating between the
    spool and the server, clipped to ``size`` (empty at or past the end)."""
    end = min(offset + length, size)
    pieces: list[ReadPiece] = []

    def push(start: int, stop: int, local: bool) -> None:
        if start >= stop:
            return
        if pieces and pieces[-1].local == local and pieces[-1].end == start:
            pieces[-1] = ReadPiece(pieces[-1].start, stop, local)
        else:
            pieces.append(ReadPiece(start, stop, local))

    def push_unwritten(start: int, stop: int) -> None:
        push(start, min(stop, max(start, limit)), False)
        push(max(start, limit), stop, True)

    position = offset
    first = bisect.bisect_right(dirty.ranges, offset, key=lambda r: r[1])
    for low, high in dirty.ranges[first:]:
        if low >= end:
            break
        push_unwritten(position, min(low, end))
        push(max(low, position), min(high, end), True)
        position = max(position, min(high, end))
    push_unwritten(position, end)
    return pieces


class UploadKind(enum.Enum):
    """What ``flush`` sends."""

    NONE = "none"
    """Nothing changed since the last upload."""
    WHOLE = "whole"
    """One ``PUT`` of all the file's bytes (creates or replaces it)."""
    RANGES = "ranges"
    """Size changes (``PATCH {"size"}``) and ranged ``PUT``\\ s of the changed spans only."""


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """The decision of :func:`plan_upload`, in the order the requests go (sizes and offsets in bytes).

    ``size``: the file's size after the upload. ``cut_to``: first, ``PATCH {"size": cut_to}`` (the file was
    cut below the server's size). ``fills``: ranges to copy from the server version into the spool before any
    span is sent. ``spans``: one ``PUT`` each, with ``Content-Range`` (for :attr:`UploadKind.WHOLE`: the one
    span ``(0, size)``, a plain ``PUT``). ``extend_to``: last, ``PATCH {"size": extend_to}`` (zeros up to the
    final size, which no span reaches).
    """

    kind: UploadKind
    size: int
    spans: tuple[Range, ...] = ()
    fills: tuple[Range, ...] = ()
    cut_to: int | None = None
    extend_to: int | None = None

    @property
    def sent_bytes(self) -> int:
        """Body bytes the plan's ``PUT`` requests carry."""
        return sum(end - start for start, end in self.spans)


def coalesce(ranges: list[Range], limit: int, *, block_size: int = BLOCK_SIZE,
             gap: int = COALESCE_GAP) -> tuple[list[Range], list[Range]]:
    """``(spans, fills)`` for sorted disjoint written ``ranges``: neighbours join when no whole block of
    ``block_size`` bytes lies between them and at most ``gap`` bytes of the gap lie below ``limit``; ``fills``
    are those joined gap bytes below ``limit`` (the ones the server version must supply)."""
    spans: list[Range] = []
    fills: list[Range] = []
    for low, high in ranges:
        if spans:
            start, end = spans[-1]
            remote = max(0, min(low, limit) - end)
            skips_a_block = low // block_size - (end - 1) // block_size > 1
            if remote <= gap and not skips_a_block:
                spans[-1] = (start, high)
                if remote:
                    fills.append((end, end + remote))
                continue
        spans.append((low, high))
    return spans, fills


def plan_upload(dirty: DirtyRanges, *, changed: bool, size: int, base_size: int | None,
                block_size: int = BLOCK_SIZE, gap: int = COALESCE_GAP) -> UploadPlan:
    """What to send for a file of ``size`` bytes (the spool's length) with ``dirty`` changes since the server
    version of ``base_size`` bytes (``None``: the server has no such file yet); ``changed`` is set when this
    mount holds anything the server has not (a new file, ``O_TRUNC``, writes, truncates).

    Rules in the module docstring. Raises ``ValueError`` for negative sizes.
    """
    if size < 0 or (base_size is not None and base_size < 0):
        raise ValueError(f"bad sizes: size={size} base_size={base_size}")
    if not changed:
        return UploadPlan(UploadKind.NONE, size)
    if base_size is None:
        return UploadPlan(UploadKind.WHOLE, size, spans=((0, size),))
    limit = server_limit(dirty, base_size)
    written_below_limit = sum(max(0, min(high, limit) - low) for low, high in dirty.ranges)
    if written_below_limit == limit and dirty.dirty_bytes() >= WHOLE_SHARE * size:
        return UploadPlan(UploadKind.WHOLE, size, spans=((0, size),))
    spans, fills = coalesce(dirty.ranges, limit, block_size=block_size, gap=gap)
    cut_to = limit if limit < base_size else None
    reached = max(limit, spans[-1][1] if spans else 0)
    extend_to = size if size > reached else None
    if not spans and cut_to is None and extend_to is None:
        return UploadPlan(UploadKind.NONE, size)
    return UploadPlan(UploadKind.RANGES, size, spans=tuple(spans), fills=tuple(fills), cut_to=cut_to,
                      extend_to=extend_to)
