"""mountinfo parsing, bind-mount options and path status (callfs_csi.mounter, pure parts)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from callfs_csi.errors import InvalidArgument
from callfs_csi.mounter import (
    PathStatus,
    mount_flag_options,
    mounts_at,
    normalise,
    parse_mountinfo,
    path_status,
)

MOUNTINFO = "\n".join([
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro",
    "98 22 0:52 / /var/lib/kubelet/staging/pv\\040one rw,nosuid,nodev,relatime shared:50 - fuse.callfs"
    " callfs:/volumes/pvc-1 rw,user_id=0,group_id=0,allow_other",
    "99 22 0:52 / /var/lib/kubelet/pods/x/volumes/mount ro,nosuid,nodev,relatime shared:50 - fuse.callfs"
    " callfs:/volumes/pvc-1 rw,user_id=0",
    "100 22 0:53 / /mnt/nooptional rw - tmpfs tmpfs rw",
    "garbage line",
]) + "\n"


def test_parse_mountinfo_fields_and_escapes() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert [e.mount_id for e in entries] == [22, 98, 99, 100]
    staged = entries[1]
    assert staged.mount_point == "/var/lib/kubelet/staging/pv one"
    assert staged.fstype == "fuse.callfs"
    assert staged.source == "callfs:/volumes/pvc-1"
    assert staged.is_callfs and not staged.read_only
    assert "allow_other" in staged.super_options
    assert entries[2].read_only
    assert entries[3].fstype == "tmpfs" and not entries[3].is_callfs


def test_mounts_at_matches_exact_mount_points() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert [e.mount_id for e in mounts_at(entries, "/var/lib/kubelet/pods/x/volumes/mount")] == [99]
    assert mounts_at(entries, "/var/lib/kubelet") == []


def test_real_mountinfo_parses() -> None:
    entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    assert any(e.mount_point == "/" for e in entries)


@pytest.mark.parametrize(
    ("flags", "read_only", "expected"),
    [([], False, []), ([], True, ["ro"]), (["noatime", "nosuid"], False, ["noatime", "nosuid"]),
     (["noexec,nodev"], True, ["ro", "noexec", "nodev"]), (["ro", "ro"], False, ["ro"])],
)
def test_mount_flag_options(flags: list[str], read_only: bool, expected: list[str]) -> None:
    assert mount_flag_options(flags, read_only) == expected


@pytest.mark.parametrize("flags", [["size=1G"], ["bind"], ["remount"], ["noatime,x-foo"]])
def test_flags_a_bind_mount_cannot_carry_are_invalid(flags: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        mount_flag_options(flags, False)


def test_rw_flag_on_a_read_only_publish_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        mount_flag_options(["rw"], True)


def test_path_status(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert path_status(str(tmp_path)) == PathStatus.DIRECTORY
    assert path_status(str(tmp_path / "f")) == PathStatus.OTHER
    assert path_status(str(tmp_path / "missing")) == PathStatus.MISSING


def test_normalise_resolves_the_parent_only(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    assert normalise(str(tmp_path / "link" / "target")) == str(real / "target")
    assert normalise(str(tmp_path / "link")) == str(tmp_path.resolve() / "link")
