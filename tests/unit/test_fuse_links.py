"""The names of hard-linked inodes a mount has seen (csi/callfs_csi/fuse/links.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from callfs.client import FileInfo
from callfs_csi.fuse.links import LinkNames


def info(path: str, *, ino: int | None = 7, nlink: int = 2, kind: str = "file") -> FileInfo:
    return FileInfo(path=path, name=path.rsplit("/", 1)[-1], type=kind, size=0, mode=0o644, owner="",
                    mtime=datetime(2026, 1, 1, tzinfo=UTC), ino=ino, nlink=nlink)


def test_names_of_one_inode_are_each_others_siblings() -> None:
    names = LinkNames()
    names.note(info("/v/a"))
    names.note(info("/v/b"))
    names.note(info("/v/other", ino=8))
    assert names.siblings("/v/a") == {"/v/b"}
    assert names.siblings("/v/b") == {"/v/a"}
    assert names.siblings("/v/other") == set()
    assert names.siblings("/v/unknown") == set()


def test_single_names_directories_and_unnumbered_entries_are_not_recorded() -> None:
    names = LinkNames()
    names.add(7, "/v/a", "/v/b")
    names.note(info("/v/b", nlink=1))  # the other name went: b is alone now
    assert names.siblings("/v/a") == set()
    names.note(info("/v/d", kind="directory"))
    names.note(info("/v/e", ino=None))
    assert names.siblings("/v/d") == names.siblings("/v/e") == set()


def test_a_name_noted_under_another_inode_moves_there() -> None:
    names = LinkNames()
    names.add(7, "/v/a", "/v/b")
    names.add(9, "/v/b", "/v/c")  # b was replaced by a name of another inode
    assert names.siblings("/v/a") == set()
    assert names.siblings("/v/b") == {"/v/c"}


def test_forget_and_rename_of_a_name_and_of_a_directory_above_names() -> None:
    names = LinkNames()
    names.add(7, "/v/a", "/v/dir/b", "/v/dir/c")
    names.rename("/v/dir", "/v/moved")
    assert names.siblings("/v/a") == {"/v/moved/b", "/v/moved/c"}
    names.rename("/v/a", "/v/moved/c")  # replaces c, a name of the same inode
    assert names.siblings("/v/moved/c") == {"/v/moved/b"}
    names.forget("/v/moved/b")
    assert names.siblings("/v/moved/c") == set()


def test_the_record_starts_again_past_its_bound() -> None:
    names = LinkNames(limit=2)
    names.add(1, "/a1", "/b1")
    names.add(2, "/a2", "/b2")
    names.add(3, "/a3", "/b3")
    assert names.siblings("/a1") == set()
    assert names.siblings("/a3") == {"/b3"}
