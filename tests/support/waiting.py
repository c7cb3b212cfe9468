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


class _Poll:
    """The bookkeeping shared by :func:`wait_for` and :func:`wait_for_async`: the deadline, the last value or
    exception the condition gave, and the ``AssertionError`` that ends a wait that timed out."""

    def __init__(self, timeout: float, what: str, interval: float, until: Callable[[Any], object] | None) -> None:
        self._timeout = timeout
        self._what = what
        self._interval = interval
        self._until = until
        self._deadline = time.monotonic() + timeout
        self._started = 0.0
        self._value: object = None
        self._error: BaseException | None = None

    def begin(self) -> None:
        """Note the time of an evaluation that is about to start."""
        self._started = time.monotonic()

    def met(self, value: object, error: BaseException | None) -> bool:
        """Record what an evaluation gave (its value, or the exception of the ``ignoring`` types it raised,
        which means "not met yet"); tell whether it ends the wait."""
        self._value, self._error = value, error
        return error is None and _met(value, self._until)

    def pause(self) -> float:
        """Seconds to sleep before the next evaluation; raises the timeout ``AssertionError`` when the last
        evaluation started at or after the deadline."""
        if self._started >= self._deadline:
            error = self._error
            last = f"last error: {error!r}" if error is not None else f"last value: {self._value!r}"
            raise AssertionError(f"timed out after {self._timeout} s waiting for {self._what} ({last})") from error
        return max(0.0, min(self._interval, self._deadline - time.monotonic()))


def _evaluate(
    condition: Callable[[], T | None], ignoring: tuple[type[BaseException], ...]
) -> tuple[T | None, BaseException | None]:
    """Call ``condition``: its value, or ``None`` and the exception of the ``ignoring`` types it raised."""
    try:
        return condition(), None
    except ignoring as exc:
        return None, exc


async def _evaluate_async(
    condition: Callable[[], Awaitable[T | None]], ignoring: tuple[type[BaseException], ...]
) -> tuple[T | None, BaseException | None]:
    """:func:`_evaluate` for a coroutine function ``condition``."""
    try:
        return await condition(), None
    except ignoring as exc:
        return None, exc


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
    poll = _Poll(timeout, what, interval, until)
    while True:
        poll.begin()
        value, error = _evaluate(condition, ignoring)
        if poll.met(value, error):
            return value  # type: ignore[return-value]
        time.sleep(poll.pause())


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
    poll = _Poll(timeout, what, interval, until)
    while True:
        poll.begin()
        value, error = await _evaluate_async(condition, ignoring)
        if poll.met(value, error):
            return value  # type: ignore[return-value]
        await asyncio.sleep(poll.pause())
