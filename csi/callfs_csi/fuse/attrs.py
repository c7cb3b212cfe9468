"""Pure conversions from API metadata to the dicts mfusepy turns into ``struct stat`` / ``struct statvfs``.

Ownership: the inode's numeric ``uid``/``gid`` from the server; an inode whose numeric owner was never set (made
through the REST API, or by a caller with the mount's own ids) appears owned by the mount's ``uid``/``gid``
(FUSE client contract). The mode, setuid, setgid and sticky bits included, comes from the server. Times:
``atime``, ``mtime`` and ``ctime`` from the server at microsecond resolution (an older server sends only a
second-resolution ``mtime``: the others are reported equal to it).
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from callfs.client import FileInfo, QuotaInfo

BLOCK_SIZE: Final = 4096
"""``f_bsize``/``f_frsize`` of ``statfs``, in bytes."""
IO_SIZE: Final = 1024 * 1024
"""``st_blksize``: the preferred I/O size (1 MiB, the client's request size)."""
UNLIMITED_BYTES: Final = 1 << 50
"""Size reported by ``statfs`` when the volume has no byte quota (1 PiB)."""
UNLIMITED_INODES: Final = 1 << 32
"""Inode count reported by ``statfs`` when the volume has no inode quota."""
NAME_MAX: Final = 255
UNKNOWN_INO: Final = 0xFFFF_FFFF
"""``st_ino`` of an entry whose inode number is not known (libfuse's ``FUSE_UNKNOWN_INO``)."""
LOCAL_INO_BASE: Final = 1 << 63
"""Inode numbers of files created here and not uploaded yet start here: the server's are below 2**63."""


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

SPECIAL_TYPES: Final = {"fifo": stat.S_IFIFO, "socket": stat.S_IFSOCK, "char": stat.S_IFCHR, "block": stat.S_IFBLK}
"""The ``S_IFMT`` of each kind of special file (the API's ``special`` field)."""


def file_type(info: FileInfo) -> int:
    """The ``S_IFMT`` bits of ``info``: directory, symlink, a special file's kind, else regular file."""
    if info.is_dir:
        return stat.S_IFDIR
    if info.is_symlink:
        return stat.S_IFLNK
    if info.special is not None:
        return SPECIAL_TYPES.get(info.special, stat.S_IFREG)
    return stat.S_IFREG


def ns_to_datetime(ns: int) -> datetime:
    """Integer nanoseconds since the epoch as a timezone-aware UTC time, truncated to microseconds.

    >>> ns_to_datetime(1_500_000_000_123_456_789).isoformat()
    '2017-07-14T02:40:00.123456+00:00'
    """
    return _EPOCH + timedelta(microseconds=ns // 1000)


def ns_of(moment: datetime) -> int:
    """``moment`` (timezone-aware) in integer nanoseconds since the epoch, exactly (no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def stat_of(info: FileInfo, *, uid: int, gid: int, size: int | None = None, mtime_ns: int | None = None
            ) -> dict[str, Any]:
    """The ``stat`` dict of ``info``: type from :func:`file_type`, ``st_rdev`` of a device node, mode bits
    from ``info.mode``, owner ``info.uid``/``info.gid`` or else ``uid``/``gid``, ``st_size`` in bytes (a
    symlink's is its target's length in bytes; ``size`` overrides: a file with unsaved local writes),
    ``st_blocks`` in 512-byte units, ``st_ino`` the server's inode number (the mount runs with ``use_ino``:
    every name of a hard-linked file shows the same; :data:`UNKNOWN_INO` from an older server), times in
    integer nanoseconds since the epoch (mfusepy's ``use_ns``; ``mtime_ns`` overrides ``st_mtime`` and
    ``st_ctime``: unsaved writes change both, POSIX write(2))."""
    kind = file_type(info)
    if kind == stat.S_IFREG:
        length = info.size if size is None else size
    elif kind == stat.S_IFLNK:
        length = len((info.target or "").encode())
    else:
        length = 0
    modified = ns_of(info.mtime) if mtime_ns is None else mtime_ns
    changed = ns_of(info.ctime) if mtime_ns is None and info.ctime is not None else modified
    return {
        "st_ino": info.ino or UNKNOWN_INO,
        "st_mode": kind | (info.mode & 0o7777),
        "st_nlink": max(2, info.nlink) if info.is_dir else info.nlink,
        "st_uid": uid if info.uid is None else info.uid,
        "st_gid": gid if info.gid is None else info.gid,
        "st_size": length,
        "st_blocks": 0 if kind != stat.S_IFREG else (length + 511) // 512,
        "st_blksize": IO_SIZE,
        "st_rdev": info.rdev or 0,
        "st_atime": modified if info.atime is None else ns_of(info.atime),
        "st_mtime": modified,
        "st_ctime": changed,
    }


def statfs_of(quota: QuotaInfo | None) -> dict[str, int]:
    """The ``statvfs`` dict for a volume with ``quota`` (``None``: no quota set).

    ``f_blocks`` = bytes limit / ``BLOCK_SIZE`` (rounded up), ``f_bfree`` = ``f_bavail`` = (limit - used) /
    ``BLOCK_SIZE`` (rounded down, never negative); ``f_files`` = inodes limit, ``f_ffree`` = ``f_favail`` =
    limit - used. Missing limits report :data:`UNLIMITED_BYTES` / :data:`UNLIMITED_INODES` minus usage, so
    ``df`` shows usage without a fake small size (FUSE client contract: statfs reports the volume quota).
    """
    bytes_used = quota.bytes_used if quota else 0
    inodes_used = quota.inodes_used if quota else 0
    bytes_limit = quota.bytes_limit if quota and quota.bytes_limit is not None else UNLIMITED_BYTES
    inodes_limit = quota.inodes_limit if quota and quota.inodes_limit is not None else UNLIMITED_INODES
    blocks = -(-bytes_limit // BLOCK_SIZE)
    free_blocks = max(0, bytes_limit - bytes_used) // BLOCK_SIZE
    free_inodes = max(0, inodes_limit - inodes_used)
    return {
        "f_bsize": BLOCK_SIZE,
        "f_frsize": BLOCK_SIZE,
        "f_blocks": blocks,
        "f_bfree": free_blocks,
        "f_bavail": free_blocks,
        "f_files": inodes_limit,
        "f_ffree": free_inodes,
        "f_favail": free_inodes,
        "f_namemax": NAME_MAX,
    }
