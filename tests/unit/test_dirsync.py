"""Group commit of directory fsyncs: every caller is covered by an fsync that began after it called, and
concurrent callers share fsyncs. The fsync is slowed (a fault: a slow disk) so that callers overlap."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path

import pytest

from callfs.backends.dirsync import DirectorySyncs, fsync_directory


class SlowDisk:
    """A directory fsync that takes ``seconds`` and records, on one clock of events, when each began and ended."""

    def __init__(self, seconds: float, fail: int | None = None) -> None:
        self.seconds = seconds
        self.fail = fail
        self.clock = itertools.count()
        self._lock = threading.Lock()
        self.syncs: list[tuple[Path, int, int]] = []
        """(directory, began, ended) per fsync."""

    def tick(self) -> int:
        with self._lock:
            return next(self.clock)

    def __call__(self, directory: Path) -> None:
        began = self.tick()
        fsync_directory(directory)
        time.sleep(self.seconds)
        number = len(self.syncs)
        self.syncs.append((directory, began, self.tick()))
        if self.fail is not None and number == self.fail:
            raise OSError(5, "Input/output error")


async def _covered_call(syncs: DirectorySyncs, disk: SlowDisk, directory: Path) -> tuple[int, int]:
    called = disk.tick()
    await syncs.sync(directory)
    return called, disk.tick()


async def test_concurrent_callers_share_fsyncs_that_began_after_they_called(tmp_path: Path) -> None:
    disk = SlowDisk(0.05)
    syncs = DirectorySyncs(disk)
    calls = []
    for _ in range(4):  # waves of callers arriving while an fsync runs
        calls += [asyncio.create_task(_covered_call(syncs, disk, tmp_path)) for _ in range(8)]
        await asyncio.sleep(0.02)
    answered = await asyncio.gather(*calls)

    assert len(disk.syncs) < len(calls) / 3, disk.syncs
    assert syncs.fsyncs == len(disk.syncs)
    for called, returned in answered:
        # The guarantee of a directory fsync after a rename: one that began after the call ended before the return.
        assert any(called < began and ended < returned for _, began, ended in disk.syncs), (called, returned)
    assert not syncs._directories  # nothing kept once every caller is answered


async def test_a_caller_alone_gets_its_own_fsync(tmp_path: Path) -> None:
    disk = SlowDisk(0.0)
    syncs = DirectorySyncs(disk)
    for _ in range(3):
        await syncs.sync(tmp_path)
    assert len(disk.syncs) == 3


async def test_directories_do_not_share_fsyncs(tmp_path: Path) -> None:
    disk = SlowDisk(0.05)
    syncs = DirectorySyncs(disk)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    await asyncio.gather(syncs.sync(a), syncs.sync(b), syncs.sync(a), syncs.sync(b))
    assert sorted(str(d.name) for d, _, _ in disk.syncs) == ["a", "a", "b", "b"]


async def test_a_failed_fsync_fails_every_caller_of_its_group(tmp_path: Path) -> None:
    disk = SlowDisk(0.05, fail=1)  # the second fsync: the one the callers arriving during the first share
    syncs = DirectorySyncs(disk)
    first = asyncio.create_task(syncs.sync(tmp_path))
    await asyncio.sleep(0.02)
    group = [asyncio.create_task(syncs.sync(tmp_path)) for _ in range(3)]
    await first
    for task in group:
        with pytest.raises(OSError, match="Input/output error"):
            await task
    await syncs.sync(tmp_path)  # the next one works again
    assert len(disk.syncs) == 3


async def test_a_cancelled_caller_leaves_the_group_intact(tmp_path: Path) -> None:
    disk = SlowDisk(0.05)
    syncs = DirectorySyncs(disk)
    first = asyncio.create_task(syncs.sync(tmp_path))
    await asyncio.sleep(0.02)
    quitter = asyncio.create_task(syncs.sync(tmp_path))
    stayer = asyncio.create_task(_covered_call(syncs, disk, tmp_path))
    await asyncio.sleep(0)
    quitter.cancel()
    await first
    called, returned = await stayer
    assert any(called < began and ended < returned for _, began, ended in disk.syncs)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    await asyncio.sleep(0.1)
    assert not syncs._directories


async def test_fsync_directory_syncs_a_real_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    await DirectorySyncs().sync(tmp_path)
    with pytest.raises(NotADirectoryError):
        fsync_directory(tmp_path / "f")
