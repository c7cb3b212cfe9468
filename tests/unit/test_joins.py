"""What joining files end to end shares (callfs.joins): block indexes by offset, and every case that must copy."""

from __future__ import annotations

from datetime import UTC, datetime

from callfs.blocks.layout import BLOCK_SIZE
from callfs.joins import plan_join
from callfs.models import Inode, InodeType, Layout

T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def part(name: str, size: int, layout: Layout = Layout.BLOCKS, **changes: object) -> Inode:
    return Inode(path=f"/.multipart/u/{name}", type=InodeType.FILE, size=size, mode=0o600, owner="root",
                 group="root", mtime=T0, ctime=T0, backend="localfs", blob_id="k" + "c" * 31, instance_id="node-a",
                 layout=layout).evolve(**changes)


def test_aligned_parts_take_consecutive_block_ranges() -> None:
    parts = [part("1", 2 * BLOCK_SIZE), part("2", 3 * BLOCK_SIZE), part("3", BLOCK_SIZE + 5)]
    plan = plan_join(parts)
    assert plan is not None
    assert [(s.source.path, s.first) for s in plan.sources] == [
        ("/.multipart/u/1", 0), ("/.multipart/u/2", 2), ("/.multipart/u/3", 5)]
    assert plan.size == 6 * BLOCK_SIZE + 5
    assert (plan.backend, plan.instance_id) == ("localfs", "node-a")


def test_the_last_part_may_end_anywhere_and_one_part_is_enough() -> None:
    only = plan_join([part("1", 7)])
    assert only is not None and only.size == 7 and [s.first for s in only.sources] == [0]


def test_a_part_ending_inside_a_block_is_copied() -> None:
    assert plan_join([part("1", 5 * 1024 * 1024), part("2", BLOCK_SIZE)]) is None
    assert plan_join([part("1", BLOCK_SIZE + 1), part("2", 1)]) is None


def test_blobs_directories_and_mixed_places_are_copied() -> None:
    assert plan_join([part("1", BLOCK_SIZE, Layout.BLOB), part("2", 1)]) is None
    assert plan_join([part("1", BLOCK_SIZE), part("2", 1, Layout.BLOB)]) is None
    assert plan_join([part("1", BLOCK_SIZE), part("2", 1, instance_id="node-b")]) is None
    assert plan_join([part("1", BLOCK_SIZE), part("2", 1, backend="s3")]) is None
    assert plan_join([part("1", BLOCK_SIZE), part("d", 0, type=InodeType.DIRECTORY)]) is None
    assert plan_join([]) is None


def test_empty_parts_add_nothing_whatever_their_layout() -> None:
    plan = plan_join([part("1", BLOCK_SIZE), part("2", 0, Layout.BLOB, instance_id=None), part("3", 3)])
    assert plan is not None
    assert [(s.source.path, s.first) for s in plan.sources] == [("/.multipart/u/1", 0), ("/.multipart/u/3", 1)]
    assert plan_join([part("1", 0, Layout.BLOB)]) is None  # nothing to share: an empty object is written
