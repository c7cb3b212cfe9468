"""The listener's rate-limited logging and accept-error filter (callfs.api.listener)."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

from callfs.api.listener import AcceptErrorFilter, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limited_log_emits_once_per_interval_with_the_count_held_back() -> None:
    clock = Clock()
    limiter = RateLimitedLog(interval=10, clock=clock)
    emitted: list[tuple[str, int]] = []

    def emit(message: str, suppressed: int) -> None:
        emitted.append((message, suppressed))

    assert limiter(emit, "one")
    for _ in range(500):
        assert not limiter(emit, "again")
    clock.now += 10
    assert limiter(emit, "later")
    assert emitted == [("one", 0), ("later", 500)]


def test_accept_errors_are_rate_limited_and_other_contexts_pass_on() -> None:
    passed: list[dict[str, Any]] = []
    clock = Clock()
    handler = AcceptErrorFilter(lambda loop, context: passed.append(context), RateLimitedLog(10, clock))
    loop = asyncio.new_event_loop()
    try:
        accept = {"message": "socket.accept() out of system resource",
                  "exception": OSError(errno.EMFILE, "Too many open files")}
        for _ in range(1000):
            handler(loop, accept)
        other = {"message": "Task exception was never retrieved"}
        handler(loop, other)
    finally:
        loop.close()
    assert passed == [other]
    assert handler.limiter.suppressed == 999
