"""callfs.blocks.pipeline: a bounded number of block stores at once, results in submission order, nothing left
running after a failure."""

from __future__ import annotations

import asyncio

import pytest

from callfs.blocks.pipeline import Pipeline


async def test_results_keep_submission_order_and_depth_bounds_the_work_running() -> None:
    running, peak = 0, 0

    async def work(value: int, delay: float) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(delay)
        running -= 1
        return value

    async with Pipeline[int](depth=3) as pipeline:
        for value in range(10):
            await pipeline.submit(work(value, 0.01 * (10 - value)))  # later ones finish first
        assert await pipeline.results() == list(range(10))
    assert peak == 3


async def test_a_failure_cancels_the_work_still_running() -> None:
    cancelled: list[int] = []

    async def slow(value: int) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(value)
            raise
        return value

    async def fail() -> int:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        async with Pipeline[int](depth=2) as pipeline:
            await pipeline.submit(fail())
            await pipeline.submit(slow(1))
            await pipeline.submit(slow(2))  # waits for the oldest: its failure surfaces here
    assert cancelled == [1]
    with pytest.raises(ValueError):
        Pipeline[int](depth=0)
