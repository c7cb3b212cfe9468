"""What a server-side copy creates (callfs.copies): the entries, their paths, owners and content ids."""

from __future__ import annotations

from datetime import UTC, datetime

from callfs.copies import plan_copy, reachable
from callfs.models import Inode, InodeType, Layout

T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def directory(path: str) -> Inode:
    return Inode(path=path, type=InodeType.DIRECTORY, mode=0o750, owner="alice", group="staff", mtime=T0, ctime=T0)


def file(path: str, layout: Layout = Layout.BLOB, **changes: object) -> Inode:
    return Inode(path=path, type=InodeType.FILE, size=7, mode=0o600, owner="alice", group="staff", mtime=T0,
                 ctime=T0, version=4, backend="localfs", blob_id="ab" * 16, instance_id="node-a",
                 layout=layout).evolve(**changes)


TOP = directory("/v")
TREE = [file("/v/f"), directory("/v/d"), file("/v/d/g", Layout.BLOCKS, blob_id="k" + "c" * 31)]


def test_a_copy_creates_the_top_then_its_tree_at_the_destination() -> None:
    plan = plan_copy(TOP, TREE, "/snap/s", into=False, owner=None, now=NOW)
    assert [p.copy.path for p in plan] == ["/snap/s", "/snap/s/d", "/snap/s/f", "/snap/s/d/g"]  # parents first
    assert [p.source.path for p in plan] == ["/v", "/v/d", "/v/f", "/v/d/g"]


def test_into_copies_the_entries_only() -> None:
    plan = plan_copy(TOP, TREE, "/volumes/b", into=True, owner=None, now=NOW)
    assert [p.copy.path for p in plan] == ["/volumes/b/d", "/volumes/b/f", "/volumes/b/d/g"]


def test_copies_are_new_inodes_sharing_the_bytes() -> None:
    blob, blocks = (p.copy for p in plan_copy(TOP, TREE, "/c", into=True, owner=None, now=NOW) if not p.copy.is_dir)
    assert blob.ino != TREE[0].ino and blob.version == 1
    assert (blob.backend, blob.blob_id, blob.instance_id, blob.layout) == ("localfs", "ab" * 16, "node-a", Layout.BLOB)
    assert (blob.mode, blob.size, blob.mtime, blob.ctime) == (0o600, 7, T0, NOW)
    assert blocks.layout is Layout.BLOCKS and blocks.blob_id != TREE[2].blob_id  # a content id of its own
    assert blocks.blob_id is not None and blocks.blob_id.startswith("k")


def test_the_owner_is_kept_or_given_to_the_caller() -> None:
    kept = plan_copy(TOP, TREE, "/c", into=False, owner=None, now=NOW)
    given = plan_copy(TOP, TREE, "/c", into=False, owner="bob", now=NOW)
    assert {(p.copy.owner, p.copy.group) for p in kept} == {("alice", "staff")}
    assert {(p.copy.owner, p.copy.group) for p in given} == {("bob", "bob")}


def test_entries_whose_directory_vanished_are_left_out() -> None:
    assert [e.path for e in reachable(TOP, [file("/v/gone/x"), *TREE])] == ["/v/d", "/v/f", "/v/d/g"]


def test_a_file_copies_alone() -> None:
    plan = plan_copy(file("/a"), [], "/b", into=False, owner=None, now=NOW)
    assert [(p.source.path, p.copy.path) for p in plan] == [("/a", "/b")]
