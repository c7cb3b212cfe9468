"""Reads of a remote file in 1 MiB blocks, with read-ahead for sequential readers.

The kernel sends reads of at most its read-ahead size (the mount raises it to 1 MiB); each would be one HTTP
request. A handle instead fetches whole 1 MiB blocks (``BLOCK_SIZE``, the client's streaming piece size) and,
once the access pattern looks sequential, keeps the next ``window`` blocks in flight as concurrent ranged GETs
on the mount's pooled connections, so the next kernel reads find their bytes already here. Random readers
(e.g. ``fio --rw=randread``) get exactly the range they asked for, one request each. At most ``window + 2``
blocks (bytes) are kept per handle: memory stays bounded.

Concurrency: the kernel sends several reads of one handle at once (asynchronous read-ahead, several libfuse
threads), slightly out of order. A block some read waits for is never cancelled: blocks that fall out of the
window are only dropped from the table (their transfer ends on its own), and a block whose future was
cancelled anyway (the I/O loop shutting down a task) is fetched again for the waiting read — a cancellation
inside the client never reaches the application as ``EIO``.

:func:`plan_blocks` holds the decisions (pure, unit-tested); :class:`BlockReader` runs them against the loop.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

BLOCK_SIZE: Final = 1024 * 1024
"""Bytes per request for sequential reads."""


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """What a read needs: ``needed`` block indexes (in order) to answer it, ``prefetch`` the ones to start
    now for later reads, ``keep_from`` the first block worth keeping (earlier ones are dropped)."""

    needed: tuple[int, ...]
    prefetch: tuple[int, ...]
    keep_from: int


def looks_sequential(offset: int, last_end: int | None, block_size: int = BLOCK_SIZE) -> bool:
    """True when a read at ``offset`` (bytes) continues the previous one, which ended at ``last_end``.

    Reads of a sequential stream arrive slightly out of order (several FUSE threads, kernel read-ahead), so
    anything within one block of the previous end counts; a read from offset 0 starts a stream.
    """
    if offset == 0:
        return True
    return last_end is not None and abs(offset - last_end) <= block_size


def plan_blocks(offset: int, size: int, file_size: int | None, window: int,
                block_size: int = BLOCK_SIZE) -> BlockPlan:
    """Blocks covering ``size`` bytes at ``offset``, and the ``window`` blocks after them to prefetch.

    ``file_size`` (bytes; ``None`` when unknown) stops prefetching past the end of the file; needed blocks are
    never cut by it (the file may have grown since it was measured).

    Raises:
        ValueError: negative offset, size < 1 or window < 0.
    """
    if offset < 0 or size < 1 or window < 0:
        raise ValueError(f"bad read: offset={offset} size={size} window={window}")
    first = offset // block_size
    last = (offset + size - 1) // block_size
    needed = tuple(range(first, last + 1))
    end_block = None if file_size is None else -(-file_size // block_size)
    prefetch = tuple(b for b in range(last + 1, last + 1 + window) if end_block is None or b < end_block)
    return BlockPlan(needed=needed, prefetch=prefetch, keep_from=first)


def assemble(blocks: dict[int, bytes], offset: int, size: int, block_size: int = BLOCK_SIZE) -> bytes:
    """The ``size`` bytes at ``offset`` cut out of whole ``blocks`` (index → bytes, a short block is the end
    of the file): fewer bytes when the file ends first. A read of exactly one whole block returns that block
    without a copy."""
    pieces: list[memoryview] = []
    position = offset
    end = offset + size
    while position < end:
        index = position // block_size
        data = blocks.get(index)
        if data is None:
            break  # past a short block: the file ended
        start = position - index * block_size
        if start == 0 and not pieces and len(data) <= end - position and (len(data) == end - position
                                                                           or len(data) < block_size):
            return data  # the whole block is the answer (the common 1 MiB read)
        piece = memoryview(data)[start : min(len(data), start + end - position)]
        pieces.append(piece)
        position += len(piece)
        if len(data) < block_size and start + len(piece) >= len(data):
            break  # end of file
        if not piece:
            break
    return b"".join(pieces)


Fetch = Callable[[int, int], "concurrent.futures.Future[bytes]"]
"""``fetch(offset, length)`` starts a ranged read and returns its future (bytes, shorter at end of file)."""


CANCELLED_RETRIES: Final = 3
"""Times a read fetches a block again after finding its transfer cancelled, before giving up (``EINTR``)."""


class BlockReader:
    """Per-handle reader: blocks in flight or done, and the end of the last read.

    Args:
        fetch: starts a ranged read (see :data:`Fetch`).
        window: blocks to read ahead of a sequential reader (0: none).
        file_size: size in bytes when opened (bounds prefetching), ``None`` if unknown.
    """

    def __init__(self, fetch: Fetch, window: int, file_size: int | None) -> None:
        self._fetch = fetch
        self._window = window
        self._file_size = file_size
        self._lock = threading.Lock()
        self._blocks: dict[int, concurrent.futures.Future[bytes]] = {}
        self._last_end: int | None = None

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file); blocks the calling thread.

        A read is sequential when it continues the previous one (:func:`looks_sequential`) or starts in a
        block already in flight (reads of one stream arriving out of order).

        Raises:
            whatever the fetch raised (a failed block is forgotten, so the next read retries it);
            ``concurrent.futures.CancelledError`` only when a block was cancelled
            :data:`CANCELLED_RETRIES` times in a row (the mount is shutting down).
        """
        if size <= 0:
            return b""
        with self._lock:
            sequential = (looks_sequential(offset, self._last_end)
                          or offset // BLOCK_SIZE in self._blocks)
            self._last_end = offset + size
            if not sequential:
                waiting = {-1: self._fetch(offset, size)}
            else:
                plan = plan_blocks(offset, size, self._file_size, self._window)
                # Keep one block behind the read: a slightly earlier read of the same stream may still need it.
                # Dropped blocks are not cancelled: a concurrent read may be waiting for them.
                horizon = plan.needed[-1] + self._window
                for index in [i for i in self._blocks if i < plan.keep_from - 1 or i > horizon]:
                    del self._blocks[index]
                for index in plan.needed + plan.prefetch:
                    if index not in self._blocks:
                        self._blocks[index] = self._fetch(index * BLOCK_SIZE, BLOCK_SIZE)
                waiting = {index: self._blocks[index] for index in plan.needed}
        if not sequential:
            return self._result(waiting[-1], None, offset, size)
        done: dict[int, bytes] = {}
        for index, future in waiting.items():
            done[index] = self._result(future, index, index * BLOCK_SIZE, BLOCK_SIZE)
            if len(done[index]) < BLOCK_SIZE:
                break  # end of file: later blocks are empty
        return assemble(done, offset, size)

    def _result(self, future: concurrent.futures.Future[bytes], index: int | None, offset: int,
                length: int) -> bytes:
        """The bytes of ``future`` (block ``index``, or a direct read when ``None``); a cancelled transfer
        is started again, a failed block is dropped from the table so the next read retries it."""
        for _ in range(CANCELLED_RETRIES):
            try:
                return future.result()
            except concurrent.futures.CancelledError:
                retry = self._fetch(offset, length)
                if index is not None:
                    with self._lock:
                        if self._blocks.get(index) is future:
                            self._blocks[index] = retry
                future = retry
            except BaseException:
                if index is not None:
                    with self._lock:
                        if self._blocks.get(index) is future:
                            del self._blocks[index]
                raise
        return future.result()

    def forget(self) -> None:
        """Drop every block (the file changed: written through this mount, or truncated). Transfers in
        flight are not cancelled: a read may be waiting for one; it gets the bytes it asked for."""
        with self._lock:
            self._blocks.clear()
            self._last_end = None
