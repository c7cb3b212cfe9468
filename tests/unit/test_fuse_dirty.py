"""Changed ranges of an open file and the upload decision (csi/callfs_csi/fuse/dirty.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callfs_csi.fuse.dirty import MAX_RANGES, DirtyRanges, UploadKind, plan_upload


def test_ranges_merge_when_they_touch_or_overlap() -> None:
    dirty = DirtyRanges()
    dirty.add(0, 10)
    dirty.add(20, 5)
    dirty.add(10, 2)
    assert dirty.ranges == [(0, 12), (20, 25)]
    dirty.add(5, 20)
    assert dirty.ranges == [(0, 25)]


def test_truncate_drops_ranges_past_the_size_and_remembers_the_smallest_cut() -> None:
    dirty = DirtyRanges()
    dirty.add(0, 10)
    dirty.add(50, 10)
    dirty.truncate(55)
    dirty.truncate(100)
    assert dirty.ranges == [(0, 10), (50, 55)]
    assert dirty.cut_to == 55
    dirty.clear()
    assert not dirty


def test_too_many_ranges_collapse_to_one_span() -> None:
    dirty = DirtyRanges()
    for index in range(MAX_RANGES + 1):
        dirty.add(index * 10, 1)
    assert dirty.ranges == [(0, MAX_RANGES * 10 + 1)]


@pytest.mark.parametrize(("offset", "length"), [(-1, 1), (0, -1)])
def test_bad_ranges_are_refused(offset: int, length: int) -> None:
    with pytest.raises(ValueError):
        DirtyRanges().add(offset, length)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 500)), max_size=40))
def test_ranges_cover_exactly_the_written_bytes(writes: list[tuple[int, int]]) -> None:
    dirty = DirtyRanges()
    written: set[int] = set()
    for offset, length in writes:
        dirty.add(offset, length)
        written.update(range(offset, offset + length))
    covered = {b for low, high in dirty.ranges for b in range(low, high)}
    assert covered == written
    assert all(a[1] < b[0] for a, b in zip(dirty.ranges, dirty.ranges[1:], strict=False))  # sorted, apart


def test_the_plan_is_a_whole_put_for_any_change_and_nothing_otherwise() -> None:
    dirty = DirtyRanges()
    assert plan_upload(dirty, changed=False, size=5, exists_remotely=True).kind is UploadKind.NONE
    assert plan_upload(dirty, changed=True, size=0, exists_remotely=False).kind is UploadKind.WHOLE
    dirty.add(3, 1)
    plan = plan_upload(dirty, changed=True, size=9, exists_remotely=True)
    assert (plan.kind, plan.size) == (UploadKind.WHOLE, 9)
