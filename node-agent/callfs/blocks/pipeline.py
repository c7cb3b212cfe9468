"""Blocks stored a few at a time: while earlier blocks are being encoded, written, fsynced and copied to peers,
the next one is read from the request body, so a write is not one disk and network round trip per 4 MiB after
another. Memory stays bounded: at most ``depth`` blocks in flight plus the one being filled.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

STORE_AHEAD = 4
"""Blocks a write stores at once (each up to 4 MiB, so 16 MiB in flight per write at most)."""


class Pipeline(Generic[T]):
    """At most ``depth`` coroutines running at once, their results kept in the order they were submitted.

    Use as ``async with Pipeline() as pipeline``: :meth:`submit` each piece of work (it waits for the oldest
    running one when ``depth`` are running, and raises what that one raised), then :meth:`results`. Leaving the
    block by an exception cancels the work still running and waits for it, so nothing outlives the write.
    """

    def __init__(self, depth: int = STORE_AHEAD) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._depth = depth
        self._running: deque[asyncio.Task[T]] = deque()
        self._done: list[T] = []

    async def submit(self, work: Awaitable[T]) -> None:
        """Start ``work``, first waiting for the oldest running piece when ``depth`` are running (when that one
        failed, ``work`` is closed unstarted and its failure raised)."""
        if len(self._running) >= self._depth:
            try:
                self._done.append(await self._running.popleft())
            except BaseException:
                if inspect.iscoroutine(work):
                    work.close()
                raise
        self._running.append(asyncio.ensure_future(work))

    async def results(self) -> list[T]:
        """Every submitted piece's result, in submission order, once all have finished. Raises the first
        failure met (in that order)."""
        while self._running:
            self._done.append(await self._running.popleft())
        return self._done

    async def __aenter__(self) -> Pipeline[T]:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._running:
            return
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()
