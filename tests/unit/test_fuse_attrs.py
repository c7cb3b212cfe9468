"""stat/statvfs dicts from API metadata (csi/callfs_csi/fuse/attrs.py)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

from callfs.client import FileInfo, QuotaInfo
from callfs_csi.fuse.attrs import BLOCK_SIZE, UNKNOWN_INO, UNLIMITED_BYTES, UNLIMITED_INODES, stat_of, statfs_of

MTIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def file_info(**kwargs: object) -> FileInfo:
    fields: dict[str, object] = {"path": "/v/f", "name": "f", "type": "file", "size": 1000, "mode": 0o640,
                                 "owner": "alice", "mtime": MTIME}
    fields.update(kwargs)
    return FileInfo(**fields)  # type: ignore[arg-type]


def test_file_stat_has_the_mount_owner_and_server_mode() -> None:
    st = stat_of(file_info(), uid=1000, gid=2000)
    assert st["st_mode"] == stat.S_IFREG | 0o640
    assert (st["st_uid"], st["st_gid"], st["st_size"], st["st_blocks"], st["st_nlink"]) == (1000, 2000, 1000, 2, 1)
    assert st["st_mtime"] == int(MTIME.timestamp()) * 10**9 == st["st_ctime"] == st["st_atime"]


def test_inode_number_is_the_servers_and_unknown_without_one() -> None:
    assert stat_of(file_info(ino=4815162342), uid=0, gid=0)["st_ino"] == 4815162342
    assert stat_of(file_info(), uid=0, gid=0)["st_ino"] == UNKNOWN_INO


def test_directory_stat() -> None:
    st = stat_of(file_info(type="directory", size=0, mode=0o1777), uid=0, gid=0)
    assert st["st_mode"] == stat.S_IFDIR | 0o1777
    assert (st["st_size"], st["st_nlink"]) == (0, 2)


def test_local_size_and_mtime_override() -> None:
    st = stat_of(file_info(size=5), uid=0, gid=0, size=4096, mtime_ns=7)
    assert (st["st_size"], st["st_blocks"], st["st_mtime"]) == (4096, 8, 7)


def test_statfs_reports_the_quota() -> None:
    quota = QuotaInfo("/v", bytes_limit=64 * 1024 * 1024, inodes_limit=100, bytes_used=1024 * 1024 + 1,
                      inodes_used=7)
    sv = statfs_of(quota)
    assert sv["f_frsize"] == BLOCK_SIZE
    assert sv["f_blocks"] * BLOCK_SIZE == 64 * 1024 * 1024
    assert sv["f_bfree"] == sv["f_bavail"] == (63 * 1024 * 1024 - 1) // BLOCK_SIZE
    assert (sv["f_files"], sv["f_ffree"], sv["f_favail"]) == (100, 93, 93)


def test_statfs_never_reports_negative_free_space() -> None:
    sv = statfs_of(QuotaInfo("/v", bytes_limit=4096, inodes_limit=1, bytes_used=10_000, inodes_used=5))
    assert (sv["f_bfree"], sv["f_ffree"]) == (0, 0)


def test_statfs_without_quota_is_large_with_usage() -> None:
    sv = statfs_of(None)
    assert sv["f_blocks"] * BLOCK_SIZE == UNLIMITED_BYTES and sv["f_files"] == UNLIMITED_INODES
    bytes_only = statfs_of(QuotaInfo("/v", bytes_limit=8192, inodes_limit=None, bytes_used=0, inodes_used=3))
    assert (bytes_only["f_blocks"], bytes_only["f_files"], bytes_only["f_ffree"]) == (
        2, UNLIMITED_INODES, UNLIMITED_INODES - 3)


def test_statfs_rounds_a_partial_block_up() -> None:
    assert statfs_of(QuotaInfo("/v", bytes_limit=4097, inodes_limit=None, bytes_used=0, inodes_used=0))[
        "f_blocks"] == 2


def test_numeric_owner_and_fine_times_come_from_the_server() -> None:
    from datetime import timedelta

    info = file_info(uid=0, gid=65534, mode=0o2755, atime=MTIME - timedelta(microseconds=250),
                     ctime=MTIME + timedelta(seconds=2, microseconds=5))
    st = stat_of(info, uid=1000, gid=2000)
    assert (st["st_uid"], st["st_gid"], st["st_mode"]) == (0, 65534, stat.S_IFREG | 0o2755)
    base = int(MTIME.timestamp()) * 10**9
    assert (st["st_atime"], st["st_mtime"], st["st_ctime"]) == (base - 250_000, base, base + 2_000_005_000)


def test_local_writes_move_mtime_and_ctime() -> None:
    st = stat_of(file_info(ctime=MTIME), uid=0, gid=0, mtime_ns=7)
    assert (st["st_mtime"], st["st_ctime"]) == (7, 7)


def test_symlink_stat_is_a_link_as_long_as_its_target() -> None:
    st = stat_of(file_info(type="symlink", size=0, mode=0o777, target="dir/ü"), uid=0, gid=0)
    assert st["st_mode"] == stat.S_IFLNK | 0o777
    assert (st["st_size"], st["st_blocks"], st["st_nlink"]) == (6, 0, 1)


def test_utimens_times_become_patch_values() -> None:
    from callfs_csi.fuse.fs import UTIME_NOW, UTIME_OMIT, time_change

    assert (time_change(UTIME_NOW), time_change(UTIME_OMIT)) == ("now", None)
    assert time_change(1_500_000_000_123_456_789) == datetime(2017, 7, 14, 2, 40, 0, 123_456, tzinfo=UTC)
    assert time_change(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert time_change(2**62 * 10**9) == datetime.max.replace(tzinfo=UTC)  # clamped to the server's range
    assert time_change(-(2**62) * 10**9) == datetime.min.replace(tzinfo=UTC)


def test_special_files_have_their_type_and_device_number() -> None:
    for special, kind in (("fifo", stat.S_IFIFO), ("socket", stat.S_IFSOCK), ("char", stat.S_IFCHR),
                          ("block", stat.S_IFBLK)):
        st = stat_of(file_info(type="special", size=0, special=special, rdev=259), uid=0, gid=0)
        assert (stat.S_IFMT(st["st_mode"]), st["st_rdev"], st["st_size"], st["st_blocks"]) == (kind, 259, 0, 0)
    assert stat_of(file_info(), uid=0, gid=0)["st_rdev"] == 0
