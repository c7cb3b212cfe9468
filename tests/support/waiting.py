"""Polling with a deadline, for the tests and fixtures that wait for something to converge.

Every test that waits for a process to come up, a mount to appear, a controller to reconcile or a cluster
member to be seen polls through :func:`wait_for` (or :func:`wait_for_async` from a coroutine), so that a
timeout always fails the same way: an ``AssertionError`` that says what was awaited, for how long, and the
last value the condition returned or the last exception it raised.

A condition is *met* when it returns anything other than ``None`` or ``False``; that value is returned, so a
condition can both test and fetch::

    pv = wait_for(lambda: bound_volume(claim), 60, f"PVC {claim} to be Bound")

With ``until``, the condition only observes and ``until`` decides, so that the timeout message quotes the
last observation rather than ``False``::

    report = wait_for(lambda: fetch(url, key), 15, "everyone up", until=lambda r: r == everyone_up)

Exceptions raised by the condition propagate at once, except those listed in ``ignoring``: these count as
"not yet" (a server that still refuses connections, an object that is not there yet) and the last one is
quoted in the timeout message and chained to the ``AssertionError``.

The condition is always evaluated at least once, and once more after the deadline has passed when the
previous evaluation was before it, so a slow condition is never cut short by its own duration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL = 0.2
"""Seconds between two evaluations of the condition, unless the caller chooses another pace."""


def _met(value: object, until: Callable[[Any], object] | None) -> bool:
    if until is not None:
        return bool(until(value))
    return value is not None and value is not False


def _timed_out(what: str, timeout: float, value: object, error: BaseException | None) -> AssertionError:
    last = f"last error: {error!r}" if error is not None else f"last value: {value!r}"
    return AssertionError(f"timed out after {timeout} s waiting for {what} ({last})")


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = DEFAULT_INTERVAL,
    *,
    until: Callable[[T | None], object] | None = None,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something other than ``None``/``False``.

    Returns that value. ``timeout`` and ``interval`` are in seconds; ``what`` completes the sentence
    "waiting for ..." in the error. With ``until``, the value is accepted when ``until(value)`` is truthy
    instead (whatever the value itself). Exceptions of the types in ``ignoring`` are treated as "not met yet"
    (the last one is reported); any other exception propagates immediately.

    Raises ``AssertionError`` when ``timeout`` seconds pass without the condition being met.
    """
    deadline = time.monotonic() + timeout
    value: T | None = None
    error: BaseException | None = None
    while True:
        started = time.monotonic()
        try:
            value = condition()
        except ignoring as exc:
            value, error = None, exc
        else:
            if _met(value, until):
                return value  # type: ignore[return-value]
            error = None
        if started >= deadline:
            raise _timed_out(what, timeout, value, error) from error
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


async def wait_for_async(
    condition: Callable[[], Awaitable[T | None]],
    timeout: float,
    what: str,
    interval: float = DEFAULT_INTERVAL,
    *,
    until: Callable[[T | None], object] | None = None,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """:func:`wait_for` for a coroutine function ``condition``; sleeps with ``asyncio.sleep`` between calls.

    Same arguments, return value and ``AssertionError`` on timeout as :func:`wait_for`; the condition is
    awaited on each evaluation.
    """
    deadline = time.monotonic() + timeout
    value: T | None = None
    error: BaseException | None = None
    while True:
        started = time.monotonic()
        try:
            value = await condition()
        except ignoring as exc:
            value, error = None, exc
        else:
            if _met(value, until):
                return value  # type: ignore[return-value]
            error = None
        if started >= deadline:
            raise _timed_out(what, timeout, value, error) from error
        await asyncio.sleep(max(0.0, min(interval, deadline - time.monotonic())))
