"""Changed ranges of an open file, where its bytes are read from, and the upload plan
(csi/callfs_csi/fuse/dirty.py)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callfs_csi.fuse.dirty import (
    COALESCE_GAP,
    DirtyRanges,
    ReadPiece,
    UploadKind,
    UploadPlan,
    coalesce,
    plan_upload,
    read_sources,
    server_limit,
)

KIB = 1024
MIB = 1024 * KIB
BLOCK = 4 * MIB


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




def test_discard_cuts_the_sent_bytes_out_of_the_ranges() -> None:
    dirty = DirtyRanges([(0, 10), (20, 30), (40, 50)])
    dirty.discard(5, 45)
    assert dirty.ranges == [(0, 5), (45, 50)]


# ---- where bytes are read from ------------------------------------------------------------------------


def test_unwritten_bytes_below_the_server_limit_come_from_the_server() -> None:
    dirty = DirtyRanges([(10, 20)])
    assert read_sources(dirty, limit=100, size=100, offset=0, length=100) == [
        ReadPiece(0, 10, False), ReadPiece(10, 20, True), ReadPiece(20, 100, False)]


def test_a_cut_makes_the_bytes_past_it_local_zeros() -> None:
    dirty = DirtyRanges()
    dirty.truncate(40)
    dirty.truncate(80)  # extended again: 40..80 are the spool's zeros, not the server's old bytes
    limit = server_limit(dirty, 100)
    assert limit == 40
    assert read_sources(dirty, limit=limit, size=80, offset=30, length=100) == [
        ReadPiece(30, 40, False), ReadPiece(40, 80, True)]


def test_reads_stop_at_the_size() -> None:
    assert read_sources(DirtyRanges(), limit=10, size=10, offset=10, length=5) == []
    assert read_sources(DirtyRanges([(0, 4)]), limit=10, size=6, offset=2, length=50) == [
        ReadPiece(2, 4, True), ReadPiece(4, 6, False)]


# ---- upload plans -------------------------------------------------------------------------------------


def plan(dirty: DirtyRanges, size: int, base: int | None) -> UploadPlan:
    return plan_upload(dirty, changed=True, size=size, base_size=base)


def test_unchanged_is_nothing() -> None:
    assert plan_upload(DirtyRanges(), changed=False, size=5, base_size=5).kind is UploadKind.NONE
    assert plan(DirtyRanges(), 5, 5).kind is UploadKind.NONE  # "changed" without a difference


def test_a_new_file_is_one_whole_put() -> None:
    result = plan(DirtyRanges([(0, 7)]), 7, None)
    assert (result.kind, result.spans, result.fills) == (UploadKind.WHOLE, ((0, 7),), ())


def test_a_rewrite_from_zero_is_one_whole_put() -> None:
    dirty = DirtyRanges()
    dirty.truncate(0)  # O_TRUNC
    dirty.add(0, 3 * MIB)
    assert plan(dirty, 3 * MIB, 64 * MIB).kind is UploadKind.WHOLE


def test_overwriting_every_byte_in_place_is_one_whole_put() -> None:
    assert plan(DirtyRanges([(0, 100)]), 100, 100).kind is UploadKind.WHOLE


def test_an_append_sends_only_the_new_bytes() -> None:
    dirty = DirtyRanges([(64 * MIB, 65 * MIB)])
    result = plan(dirty, 65 * MIB, 64 * MIB)
    assert result == UploadPlan(UploadKind.RANGES, 65 * MIB, spans=((64 * MIB, 65 * MIB),))
    assert result.sent_bytes == MIB


def test_random_writes_in_distinct_blocks_go_as_one_range_each() -> None:
    offsets = [3 * BLOCK + 4 * KIB, 9 * BLOCK, 15 * BLOCK + 100]
    dirty = DirtyRanges()
    for offset in offsets:
        dirty.add(offset, 4 * KIB)
    result = plan(dirty, 64 * MIB, 64 * MIB)
    assert result.kind is UploadKind.RANGES
    assert result.spans == tuple((o, o + 4 * KIB) for o in offsets)
    assert (result.fills, result.sent_bytes) == ((), 12 * KIB)


def test_nearby_writes_join_and_the_gap_is_fetched() -> None:
    dirty = DirtyRanges([(0, 4 * KIB), (8 * KIB, 12 * KIB)])
    result = plan(dirty, MIB, MIB)
    assert (result.spans, result.fills) == (((0, 12 * KIB),), ((4 * KIB, 8 * KIB),))


def test_writes_far_apart_in_one_block_stay_apart() -> None:
    dirty = DirtyRanges([(0, 4 * KIB), (4 * KIB + COALESCE_GAP + 1, 4 * KIB + COALESCE_GAP + 2)])
    assert len(plan(dirty, BLOCK, BLOCK).spans) == 2


def test_a_span_never_reaches_into_a_block_no_write_touched() -> None:
    spans, fills = coalesce([(BLOCK - 10, BLOCK), (2 * BLOCK, 2 * BLOCK + 10)], 0)  # gap is all local zeros
    assert spans == [(BLOCK - 10, BLOCK), (2 * BLOCK, 2 * BLOCK + 10)]
    spans, fills = coalesce([(BLOCK - 10, BLOCK), (BLOCK + 10, BLOCK + 20)], 0)
    assert (spans, fills) == ([(BLOCK - 10, BLOCK + 20)], [])  # local gap: joined, nothing to fetch


def test_gap_bytes_past_the_server_limit_are_not_fetched() -> None:
    dirty = DirtyRanges([(90, 100), (150, 160)])
    result = plan(dirty, 160, 120)
    assert (result.spans, result.fills) == (((90, 160),), ((100, 120),))


def test_truncate_then_write_cuts_first() -> None:
    dirty = DirtyRanges()
    dirty.truncate(10 * MIB)
    dirty.add(10 * MIB, 4 * KIB)
    result = plan(dirty, 10 * MIB + 4 * KIB, 64 * MIB)
    assert (result.kind, result.cut_to, result.spans, result.extend_to) == (
        UploadKind.RANGES, 10 * MIB, ((10 * MIB, 10 * MIB + 4 * KIB),), None)


def test_cut_then_extend_patches_twice() -> None:
    dirty = DirtyRanges()
    dirty.truncate(10)
    dirty.truncate(50)
    result = plan(dirty, 50, 100)
    assert (result.cut_to, result.spans, result.extend_to) == (10, (), 50)


def test_write_beyond_the_end_leaves_a_hole_the_server_fills() -> None:
    dirty = DirtyRanges([(2 * BLOCK, 2 * BLOCK + 5)])
    result = plan(dirty, 2 * BLOCK + 5, 100)
    assert (result.spans, result.fills, result.extend_to) == (((2 * BLOCK, 2 * BLOCK + 5),), (), None)


def test_an_extension_no_span_reaches_is_a_size_patch() -> None:
    dirty = DirtyRanges([(0, 5)])
    dirty.truncate(1000)
    result = plan(dirty, 1000, 100)
    assert (result.cut_to, result.spans, result.extend_to) == (None, ((0, 5),), 1000)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        plan(DirtyRanges(), -1, 0)


# ---- the plan applied to a server gives the mount's view ----------------------------------------------

Op = tuple[str, int, int]
ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 3000), st.integers(1, 300)),
    st.tuples(st.just("truncate"), st.integers(0, 3000), st.just(0)),
), max_size=25)


@given(st.integers(0, 2000), ops, st.sampled_from([64, 512, 4096]), st.sampled_from([0, 16, 200]))
def test_applying_the_plan_to_the_server_version_gives_the_mounts_view(
        base_size: int, changes: list[Op], block: int, gap: int) -> None:
    """A model of the mount: the server version, the sparse spool, the view a process sees; after the
    upload the server holds exactly the view, and every read of the view comes from the right place."""
    base = bytes((i * 7 + 3) % 251 + 1 for i in range(base_size))  # no zero byte: holes show
    spool = bytearray(base_size)
    view = bytearray(base)
    dirty = DirtyRanges()
    for number, (kind, offset, length) in enumerate(changes):
        if kind == "write":
            data = bytes([number % 250 + 1]) * length
            for target in (spool, view):
                if len(target) < offset:
                    target.extend(bytes(offset - len(target)))
                target[offset:offset + length] = data
            dirty.add(offset, length)
        else:
            for target in (spool, view):
                del target[offset:]
                target.extend(bytes(offset - len(target)))
            dirty.truncate(offset)
    limit = server_limit(dirty, base_size)
    seen = b"".join(bytes(spool[p.start:p.end]) if p.local else base[p.start:p.end]
                    for p in read_sources(dirty, limit=limit, size=len(spool), offset=0, length=len(spool) + 10))
    assert seen == bytes(view)

    result = plan_upload(dirty, changed=bool(changes), size=len(spool), base_size=base_size,
                         block_size=block, gap=gap)
    server = bytearray(base)
    if result.kind is UploadKind.WHOLE:
        assert result.fills == () and result.spans == ((0, len(spool)),)
    for start, end in result.fills:
        assert end <= limit
        spool[start:end] = base[start:end]
    if result.cut_to is not None:
        del server[result.cut_to:]
    for start, end in result.spans:
        if result.kind is UploadKind.WHOLE:
            server = bytearray()
        server.extend(bytes(max(0, start - len(server))))
        server[start:end] = spool[start:end]
    if result.extend_to is not None:
        server.extend(bytes(result.extend_to - len(server)))
    assert bytes(server) == bytes(view)
    if result.kind is UploadKind.RANGES:
        def blocks(ranges: Iterable[tuple[int, int]]) -> set[int]:
            return {b for low, high in ranges for b in range(low // block, (high - 1) // block + 1)}

        assert blocks(result.spans) == blocks(dirty.ranges)  # the node rewrites the blocks the writes touched
