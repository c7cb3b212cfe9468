"""Group commit of directory fsyncs: concurrent renames into one directory share one ``fsync`` of it.

A blob becomes durable under its final name only once the directory holding it is fsynced *after* the rename.
:meth:`DirectorySyncs.sync` returns once an fsync of the directory that began after the call did has finished,
so that guarantee is kept exactly; what changes is that callers arriving while an fsync of the same directory is
running do not each start their own: they wait for it to end and then share the next one (classic group commit,
as databases do for their log). With ``c`` concurrent writers into one directory this is at most two fsyncs in
flight for any number of them instead of ``c``.

A failed fsync fails every caller of its group (each of them has to assume its rename is not durable).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def fsync_directory(path: Path) -> None:
    """``fsync(2)`` the directory ``path`` (its entries: names created, renamed or removed in it). Raises
    ``OSError``."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Directory:
    running: asyncio.Future[None] | None = None
    """The fsync in progress (it may have begun before a new caller's rename: such a caller cannot use it)."""
    waiting: asyncio.Future[None] | None = None
    """The fsync the callers that came while one was running share; it starts when the running one ends."""
    callers: int = field(default=0)
    """Callers of this directory not yet answered (the entry is dropped at zero)."""


class DirectorySyncs:
    """Directory fsyncs with group commit, on one event loop. ``fsync`` is the blocking sync of one directory
    (run on a worker thread; default :func:`fsync_directory`)."""

    def __init__(self, fsync: Callable[[Path], None] = fsync_directory) -> None:
        self._fsync = fsync
        self._directories: dict[Path, _Directory] = {}
        self.fsyncs = 0
        """Directory fsyncs started so far (for tests and metrics)."""

    async def sync(self, directory: Path) -> None:
        """Return once an fsync of ``directory`` that started after this call has finished; raises the
        ``OSError`` of that fsync (shared by every caller of its group)."""
        state = self._directories.setdefault(directory, _Directory())
        state.callers += 1
        try:
            if state.running is None:
                state.running = self._start(directory, state)
                await asyncio.shield(state.running)
                return
            if state.waiting is None:
                state.waiting = asyncio.get_running_loop().create_future()
                state.waiting.add_done_callback(_retrieve)  # its callers may all have been cancelled
            await asyncio.shield(state.waiting)
        finally:
            state.callers -= 1
            if not state.callers and state.running is None and state.waiting is None:
                self._forget(directory, state)

    def _forget(self, directory: Path, state: _Directory) -> None:
        if self._directories.get(directory) is state:
            del self._directories[directory]

    def _start(self, directory: Path, state: _Directory) -> asyncio.Future[None]:
        self.fsyncs += 1
        running = asyncio.ensure_future(asyncio.to_thread(self._fsync, directory))
        running.add_done_callback(lambda done: self._finished(directory, state, done))
        return running

    def _finished(self, directory: Path, state: _Directory, done: asyncio.Future[None]) -> None:
        """The running fsync ended: start the one the waiting callers share, if any."""
        _retrieve(done)  # every caller of the group sees the outcome through its own await
        state.running = None
        waiting, state.waiting = state.waiting, None
        if waiting is None:
            if not state.callers:
                self._forget(directory, state)
            return
        state.running = self._start(directory, state)
        state.running.add_done_callback(lambda done: _settle(waiting, done))


def _retrieve(done: asyncio.Future[None]) -> None:
    """Mark the outcome of ``done`` as seen (no "exception never retrieved" warning)."""
    if not done.cancelled():
        done.exception()


def _settle(target: asyncio.Future[None], done: asyncio.Future[None]) -> None:
    """Give ``target`` the outcome of ``done``."""
    if target.done():
        return
    if done.cancelled():
        target.cancel()
    elif (exc := done.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(None)
