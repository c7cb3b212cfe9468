"""When to retry a request to the server, and how long to wait: pure decisions, unit-tested.

A FUSE call must never hang: each one gets a deadline (``request_deadline`` seconds, default 30). Within it,
transient failures — the server unreachable (:class:`~callfs.client.CallFSUnavailable`), 502/503 answers — are
retried with exponential backoff; past it the call fails with ``EIO``
(never a hang: a process blocked on a dead mount cannot be killed).
"""

from __future__ import annotations

from typing import Final

from callfs.client import CallFSUnavailable
from callfs.errors import BadGateway, ServiceUnavailable

BACKOFF_FIRST: Final = 0.2
"""Seconds before the first retry."""
BACKOFF_MAX: Final = 2.0
"""Longest wait between two attempts, in seconds."""


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: unreachable server, timeouts, 502 ``BAD_GATEWAY``, 503 (incl. lock
    timeouts). Deliberate answers (404, 403, 507...) are final."""
    return isinstance(exc, CallFSUnavailable | TimeoutError | BadGateway | ServiceUnavailable)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): 0.2, 0.4, 0.8, 1.6, then 2.0 for ever.

    Raises:
        ValueError: ``attempt`` < 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** (attempt - 1)))


def next_delay(attempt: int, now: float, deadline: float) -> float | None:
    """The wait before retry ``attempt`` when the clock reads ``now`` (seconds, monotonic), or ``None`` when
    that retry could not start before ``deadline`` — then the caller gives up with ``EIO``.

    The last wait is shortened to end exactly at the deadline rather than skipped, so a server that comes back
    just before the deadline is still reached.
    """
    remaining = deadline - now
    if remaining <= 0:
        return None
    return min(backoff(attempt), remaining)
