"""Directory quota arithmetic. Pure functions; the engine applies them inside metadata transactions.

A quota on directory ``Q`` limits what lies strictly below ``Q``: the sum of file sizes (bytes) and the number
of entries (inodes). Quotas nest: a change below several quota roots is checked against each of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from callfs import paths
from callfs.errors import BadRequest, QuotaExceeded
from callfs.models import Quota

MAX_LIMIT = (1 << 63) - 1
"""The largest quota limit (bytes or inodes): PostgreSQL and SQLite keep usage and limits as signed 64-bit."""


def governing_paths(path: str) -> list[str]:
    """The directories whose quotas count an entry at ``path``: its strict ancestors, root first."""
    return paths.ancestors(path)


def check(quotas: Iterable[Quota], bytes_delta: int, inodes_delta: int) -> None:
    """Refuse growth past any limit. Shrinking is always allowed, even when already over a limit.

    Raises:
        QuotaExceeded: a positive delta would take a quota's usage past its limit (message names the quota).
    """
    for q in quotas:
        if bytes_delta > 0 and q.bytes_limit is not None and q.bytes_used + bytes_delta > q.bytes_limit:
            raise QuotaExceeded(
                f"quota on {q.path} exceeded: {q.bytes_used} + {bytes_delta} bytes > limit {q.bytes_limit}",
                quota_path=q.path,
            )
        if inodes_delta > 0 and q.inodes_limit is not None and q.inodes_used + inodes_delta > q.inodes_limit:
            raise QuotaExceeded(
                f"quota on {q.path} exceeded: {q.inodes_used} + {inodes_delta} inodes > limit {q.inodes_limit}",
                quota_path=q.path,
            )


def check_charged(quotas: Iterable[Quota], bytes_delta: int, inodes_delta: int) -> None:
    """:func:`check` on ``quotas`` read back after the deltas were added to their usage (as one ``UPDATE ...
    RETURNING`` does). Raises ``QuotaExceeded`` as :func:`check` would have before the change."""
    check(
        (replace(q, bytes_used=q.bytes_used - bytes_delta, inodes_used=q.inodes_used - inodes_delta) for q in quotas),
        bytes_delta,
        inodes_delta,
    )


def headroom_bytes(quotas: Iterable[Quota]) -> int | None:
    """The most bytes that may still be added under all ``quotas`` (``None``: unlimited)."""
    room = [max(0, q.bytes_limit - q.bytes_used) for q in quotas if q.bytes_limit is not None]
    return min(room) if room else None


def split_for_move(src: str, dst: str, quotas: Iterable[Quota]) -> tuple[list[Quota], list[Quota]]:
    """For moving the entry ``src`` to ``dst``: ``(losing, gaining)`` quotas.

    ``quotas`` are those on the strict ancestors of either path; quotas governing both stay unchanged.
    """
    src_side, dst_side = set(governing_paths(src)), set(governing_paths(dst))
    losing = [q for q in quotas if q.path in src_side and q.path not in dst_side]
    gaining = [q for q in quotas if q.path in dst_side and q.path not in src_side]
    return losing, gaining


def parse_limits(body: dict[str, object]) -> tuple[int | None, int | None]:
    """``(bytes_limit, inodes_limit)`` from a ``PUT /v1/quotas`` body.

    Each limit is a positive integer below 2**63 (the metadata stores keep signed 64-bit counters) or ``null``
    (unlimited); at least one must be set; no other fields.
    Raises:
        BadRequest: 0, negative, 2**63 or more, non-integer (``1.5``, ``"10"``, ``true``), unknown fields, or no
            limit at all.
    """
    unknown = set(body) - {"bytes_limit", "inodes_limit"}
    if unknown:
        raise BadRequest(f"unknown fields {sorted(unknown)}; allowed: bytes_limit, inodes_limit")
    limits: list[int | None] = []
    for key in ("bytes_limit", "inodes_limit"):
        value = body.get(key)
        if value is None:
            limits.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_LIMIT:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
            raise BadRequest(f"{key} must be a positive integer up to {MAX_LIMIT} or null, not {shown}")
        limits.append(value)
    if limits == [None, None]:
        raise BadRequest("set bytes_limit, inodes_limit or both")
    return limits[0], limits[1]
