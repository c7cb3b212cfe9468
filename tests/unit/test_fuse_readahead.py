"""Block planning and the per-handle read-ahead reader (csi/callfs_csi/fuse/readahead.py).

The reader's fetch function is given an in-memory file: the component under test is the block logic, not I/O.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callfs_csi.fuse.readahead import BLOCK_SIZE, BlockReader, assemble, looks_sequential, plan_blocks

MiB = BLOCK_SIZE
POOL = concurrent.futures.ThreadPoolExecutor(4)


def test_plan_covers_the_read_and_prefetches_the_window() -> None:
    plan = plan_blocks(offset=MiB - 10, size=20, file_size=10 * MiB, window=3)
    assert plan.needed == (0, 1)
    assert plan.prefetch == (2, 3, 4)
    assert plan.keep_from == 0


def test_plan_stops_prefetching_at_the_end_of_the_file() -> None:
    assert plan_blocks(offset=0, size=4096, file_size=2 * MiB + 1, window=8).prefetch == (1, 2)
    assert plan_blocks(offset=0, size=4096, file_size=MiB, window=8).prefetch == ()


def test_plan_with_unknown_size_prefetches_the_whole_window() -> None:
    assert plan_blocks(offset=5 * MiB, size=1, file_size=None, window=2).prefetch == (6, 7)


@pytest.mark.parametrize(("offset", "size", "window"), [(-1, 1, 0), (0, 0, 0), (0, 1, -1)])
def test_plan_rejects_bad_reads(offset: int, size: int, window: int) -> None:
    with pytest.raises(ValueError):
        plan_blocks(offset, size, None, window)


def test_sequential_detection_tolerates_small_reordering() -> None:
    assert looks_sequential(0, None)
    assert looks_sequential(128 * 1024, 128 * 1024)
    assert looks_sequential(256 * 1024, 384 * 1024)
    assert not looks_sequential(10 * MiB, 128 * 1024)
    assert not looks_sequential(4096, None)


def test_assemble_stops_at_a_short_last_block() -> None:
    blocks = {0: b"a" * MiB, 1: b"bc"}
    assert assemble(blocks, MiB - 1, 10) == b"abc"
    assert assemble(blocks, MiB + 2, 10) == b""


class MemoryFile:
    """A remote file in memory; records every fetch as (offset, length)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.fetches: list[tuple[int, int]] = []

    def fetch(self, offset: int, length: int) -> concurrent.futures.Future[bytes]:
        self.fetches.append((offset, length))
        return POOL.submit(lambda: self.data[offset : offset + length])


def test_sequential_reads_use_whole_blocks_with_read_ahead() -> None:
    remote = MemoryFile(os.urandom(5 * MiB + 123))
    reader = BlockReader(remote.fetch, window=2, file_size=len(remote.data))
    out = bytearray()
    for offset in range(0, len(remote.data), 128 * 1024):
        out += reader.read(offset, 128 * 1024)
    assert bytes(out) == remote.data
    assert sorted(remote.fetches) == [(i * MiB, MiB) for i in range(6)]  # each block exactly once


def test_random_reads_fetch_exactly_the_range() -> None:
    remote = MemoryFile(os.urandom(4 * MiB))
    reader = BlockReader(remote.fetch, window=2, file_size=len(remote.data))
    reader.read(0, 10)  # offset 0 starts a stream: blocks 0-2 fetched
    remote.fetches.clear()
    assert reader.read(3 * MiB + 5, 4096) == remote.data[3 * MiB + 5 : 3 * MiB + 5 + 4096]
    assert remote.fetches == [(3 * MiB + 5, 4096)]


def test_a_read_inside_a_prefetched_block_uses_it() -> None:
    """Reads of one stream arrive out of order (several kernel requests at once): a read landing in a block
    already fetched is served from it, not with a request of its own."""
    remote = MemoryFile(os.urandom(4 * MiB))
    reader = BlockReader(remote.fetch, window=3, file_size=len(remote.data))
    reader.read(0, MiB)
    remote.fetches.clear()
    assert reader.read(3 * MiB, MiB) == remote.data[3 * MiB :]
    assert reader.read(2 * MiB, MiB) == remote.data[2 * MiB : 3 * MiB]
    assert remote.fetches == []


def test_a_whole_block_read_is_the_block_itself() -> None:
    block = os.urandom(MiB)
    assert assemble({0: block}, 0, MiB) is block
    assert assemble({0: b"end"}, 0, MiB) == b"end"


def test_reads_waiting_on_a_block_survive_a_concurrent_window_move() -> None:
    """A read waiting for a block that a later read drops from the window still gets its bytes: dropped
    blocks are not cancelled (a cancelled block once became EIO under concurrent readers)."""
    data = os.urandom(8 * MiB)
    gate = threading.Event()
    pending: list[concurrent.futures.Future[bytes]] = []

    def slow(offset: int, length: int) -> concurrent.futures.Future[bytes]:
        return POOL.submit(lambda: (gate.wait(5), data[offset : offset + length])[1])

    reader = BlockReader(slow, window=1, file_size=len(data))
    first = POOL.submit(reader.read, 0, 4096)
    time.sleep(0.05)
    pending.append(POOL.submit(reader.read, 5 * MiB, 4096))  # not sequential: a direct read
    pending.append(POOL.submit(reader.read, 5 * MiB + 4096, 4096))  # continues it: moves the window past 0
    gate.set()
    assert first.result(timeout=5) == data[:4096]
    assert [p.result(timeout=5) for p in pending] == [data[5 * MiB : 5 * MiB + 4096],
                                                      data[5 * MiB + 4096 : 5 * MiB + 8192]]


def test_a_cancelled_block_is_fetched_again_not_an_error() -> None:
    data = os.urandom(2 * MiB)
    calls: list[int] = []

    def cancelling(offset: int, length: int) -> concurrent.futures.Future[bytes]:
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        calls.append(offset)
        if calls.count(offset) == 1:
            future.cancel()  # as the I/O loop does to a task it cancels
        else:
            future.set_result(data[offset : offset + length])
        return future

    reader = BlockReader(cancelling, window=0, file_size=len(data))
    assert reader.read(0, 100) == data[:100]
    far = MiB + MiB // 2
    assert reader.read(far, 50) == data[far : far + 50]  # a direct (non-sequential) read too
    assert calls == [0, 0, far, far]


def test_a_block_cancelled_every_time_gives_up_with_cancelled_error() -> None:
    def always_cancelled(offset: int, length: int) -> concurrent.futures.Future[bytes]:
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        future.cancel()
        return future

    reader = BlockReader(always_cancelled, window=0, file_size=MiB)
    with pytest.raises(concurrent.futures.CancelledError):
        reader.read(0, 10)


def test_a_failed_block_is_fetched_again() -> None:
    data = os.urandom(2 * MiB)
    calls: list[int] = []

    def flaky(offset: int, length: int) -> concurrent.futures.Future[bytes]:
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        calls.append(offset)
        if offset == 0 and calls.count(0) == 1:
            future.set_exception(ConnectionError("broken"))
        else:
            future.set_result(data[offset : offset + length])
        return future

    reader = BlockReader(flaky, window=0, file_size=len(data))
    with pytest.raises(ConnectionError):
        reader.read(0, 100)
    assert reader.read(0, 100) == data[:100]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * MiB), st.integers(1, 300_000)), min_size=1, max_size=12),
       st.integers(0, 3))
def test_any_read_sequence_returns_the_file_bytes(reads: list[tuple[int, int]], window: int) -> None:
    remote = MemoryFile(bytes(range(256)) * (3 * MiB // 256 + 7))
    reader = BlockReader(remote.fetch, window=window, file_size=len(remote.data))
    for offset, size in reads:
        assert reader.read(offset, size) == remote.data[offset : offset + size]
