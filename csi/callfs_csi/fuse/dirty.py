"""Which bytes of an open file this mount changed, and what ``flush`` sends for them (pure; unit-tested).

Every write and truncate of an open file is recorded here (:class:`DirtyRanges`: merged byte ranges and the
size the file was cut to). On ``flush``/``fsync``/``release`` the client asks :func:`plan_upload` what to
send. Today the REST API replaces a file with one ``PUT`` of all its bytes, so every plan with changes is
:attr:`UploadKind.WHOLE`; the ranges are what a partial upload (a ranged ``PUT`` per range, a size change)
needs, and this function is the one place that decides between them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

MAX_RANGES: Final = 256
"""Ranges kept before the record collapses to one span from the first to the last changed byte."""


@dataclass(slots=True)
class DirtyRanges:
    """Changed byte ranges ``[start, end)`` of one file, sorted and merged; ``cut_to`` the smallest size the
    file was truncated to since the last upload (``None``: never cut). Not thread-safe: the caller holds the
    open file's lock."""

    ranges: list[tuple[int, int]] = field(default_factory=list)
    cut_to: int | None = None

    def add(self, offset: int, length: int) -> None:
        """Record ``length`` bytes written at ``offset`` (bytes). Raises ``ValueError`` for negative values."""
        if offset < 0 or length < 0:
            raise ValueError(f"bad range: offset={offset} length={length}")
        if length == 0:
            return
        start, end = offset, offset + length
        kept: list[tuple[int, int]] = []
        for low, high in self.ranges:
            if high < start or low > end:
                kept.append((low, high))
            else:
                start, end = min(start, low), max(end, high)
        kept.append((start, end))
        kept.sort()
        if len(kept) > MAX_RANGES:
            kept = [(kept[0][0], kept[-1][1])]
        self.ranges = kept

    def truncate(self, size: int) -> None:
        """Record a cut or extension to ``size`` bytes: ranges past it go, an extension is a changed range
        (the new zero bytes)."""
        if size < 0:
            raise ValueError(f"bad size: {size}")
        self.ranges = [(low, min(high, size)) for low, high in self.ranges if low < size]
        self.cut_to = size if self.cut_to is None else min(self.cut_to, size)

    def clear(self) -> None:
        """Forget everything (the server has the bytes)."""
        self.ranges = []
        self.cut_to = None

    def __bool__(self) -> bool:
        return bool(self.ranges) or self.cut_to is not None


class UploadKind(enum.Enum):
    """What ``flush`` sends."""

    NONE = "none"
    """Nothing changed since the last upload."""
    WHOLE = "whole"
    """One ``PUT`` of all the file's bytes (creates or replaces it)."""


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """The decision of :func:`plan_upload`: ``kind`` and the file's ``size`` in bytes to send."""

    kind: UploadKind
    size: int


def plan_upload(dirty: DirtyRanges, *, changed: bool, size: int, exists_remotely: bool) -> UploadPlan:
    """What to send for a file of ``size`` bytes whose ``changed`` flag is set when this mount holds bytes
    the server has not (a new file, ``O_TRUNC``, writes, truncates).

    A file that does not exist on the server yet, or has any change, goes as :attr:`UploadKind.WHOLE` (the
    REST API's ``PUT`` replaces a file); an unchanged one is :attr:`UploadKind.NONE`. ``dirty`` holds the
    ranges a partial upload would send instead.
    """
    if not changed:
        return UploadPlan(UploadKind.NONE, size)
    del dirty, exists_remotely  # what a partial upload decides on; a whole PUT needs neither
    return UploadPlan(UploadKind.WHOLE, size)
