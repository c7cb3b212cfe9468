"""Open files and handles (csi/callfs_csi/fuse/handles.py) and mount-relative paths (fs.api_path)."""

from __future__ import annotations

import time

from callfs_csi.fuse.fs import api_path, parent_of
from callfs_csi.fuse.handles import HandleTable


def test_handles_of_one_path_share_the_open_file() -> None:
    table = HandleTable()
    fh1, h1 = table.open("/v/f", writable=True, remote=True, remote_size=3)
    fh2, h2 = table.open("/v/f", writable=False, remote=True, remote_size=3)
    assert fh1 != fh2 and h1.file is h2.file and h1.file.refs == 2
    assert table.release(fh1) == (h1, False)
    assert table.file("/v/f") is h2.file
    assert table.release(fh2) == (h2, True)
    assert table.file("/v/f") is None


def test_rename_rekeys_open_files_in_a_subtree() -> None:
    table = HandleTable()
    _, inside = table.open("/v/d/x", writable=True, remote=True, remote_size=0)
    _, beside = table.open("/v/dd", writable=True, remote=True, remote_size=0)
    table.rename("/v/d", "/v/e")
    assert inside.file.path == "/v/e/x" and table.file("/v/e/x") is inside.file
    assert table.file("/v/d/x") is None and beside.file.path == "/v/dd"


def test_rename_over_an_open_file_marks_it_replaced() -> None:
    table = HandleTable()
    _, src = table.open("/v/a", writable=True, remote=False, remote_size=0)
    _, dst = table.open("/v/b", writable=True, remote=True, remote_size=0)
    table.rename("/v/a", "/v/b")
    assert dst.file.unlinked and not src.file.unlinked
    assert table.file("/v/b") is src.file


def test_exchange_swaps_open_files_of_both_subtrees() -> None:
    table = HandleTable()
    _, file = table.open("/v/a", writable=True, remote=True, remote_size=0)
    _, inside = table.open("/v/d/x", writable=True, remote=True, remote_size=0)
    _, beside = table.open("/v/dd", writable=True, remote=True, remote_size=0)
    table.exchange("/v/a", "/v/d")
    assert (file.file.path, inside.file.path, beside.file.path) == ("/v/d", "/v/a/x", "/v/dd")
    assert table.file("/v/d") is file.file and table.file("/v/a/x") is inside.file
    assert table.file("/v/a") is None and not file.file.unlinked


def test_local_children_are_direct_unuploaded_files() -> None:
    table = HandleTable()
    table.open("/v/new", writable=True, remote=False, remote_size=0)
    table.open("/v/old", writable=True, remote=True, remote_size=0)
    table.open("/v/sub/new", writable=True, remote=False, remote_size=0)
    assert [f.path for f in table.local_children("/v")] == ["/v/new"]
    assert [f.path for f in table.local_children("/")] == []


def test_released_detached_file_does_not_drop_a_newer_one() -> None:
    table = HandleTable()
    fh, old = table.open("/v/f", writable=True, remote=True, remote_size=0)
    table.detach("/v/f")
    _, new = table.open("/v/f", writable=True, remote=False, remote_size=0)
    table.release(fh)
    assert table.file("/v/f") is new.file and old.file is not new.file


def test_api_paths_join_under_the_volume() -> None:
    assert api_path("/volumes/v", "/") == "/volumes/v"
    assert api_path("/volumes/v", "/a/b") == "/volumes/v/a/b"
    assert api_path("/", "/a") == "/a"
    assert parent_of("/volumes/v/a") == "/volumes/v"
    assert parent_of("/a") == "/" and parent_of("/") == "/"


def test_a_change_marks_the_file_dirty_with_its_time() -> None:
    table = HandleTable()
    _, handle = table.open("/v/f", writable=True, remote=True, remote_size=0)
    assert not handle.file.dirty and handle.file.changed_ns == 0
    before = time.time_ns()
    handle.file.touch()
    assert handle.file.dirty and before <= handle.file.changed_ns <= time.time_ns()
