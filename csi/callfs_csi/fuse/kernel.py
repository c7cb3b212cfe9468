"""What the mount asks of the kernel's FUSE driver: capabilities and request sizes at ``init``, then the
mount's read-ahead through sysfs, and invalidations of attributes the kernel caches (:func:`invalidate_path`).

At ``init`` (:func:`negotiate`, pure): requests of up to :data:`MAX_REQUEST` bytes (1 MiB) for writes and
reads, asynchronous reads, atomic ``O_TRUNC``, parallel directory operations, and — only when the mount asks for
it — the write-back cache (``FUSE_CAP_WRITEBACK_CACHE``). The kernel's read-ahead (and so the size of the read
requests a sequential reader causes) is capped at init to its default of 128 KiB; once the mount is live,
:func:`set_read_ahead` raises it in ``/sys/class/bdi/<major>:<minor>/read_ahead_kb`` (Linux
Documentation/ABI/testing/sysfs-class-bdi) — root only; a failure is logged and the mount keeps the default.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from dataclasses import dataclass
from typing import Final

import mfusepy

log = logging.getLogger(__name__)

MAX_REQUEST: Final = 1024 * 1024
"""Largest read/write request asked of the kernel, in bytes (libfuse's buffer holds 256 pages + header)."""
CAP_ASYNC_READ: Final = 1 << 0
CAP_ATOMIC_O_TRUNC: Final = 1 << 3
CAP_WRITEBACK_CACHE: Final = 1 << 16
CAP_PARALLEL_DIROPS: Final = 1 << 18
"""libfuse 3 capability bits (``fuse_common.h``)."""


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The ``init`` answer: capability bits ``want`` and request sizes in bytes."""

    want: int
    max_write: int
    max_readahead: int


def negotiate(capable: int, want: int, *, writeback_cache: bool) -> Negotiated:
    """The capabilities to ask for, given what the kernel offers (``capable``) and libfuse's defaults (``want``).

    Asks for asynchronous reads, atomic ``O_TRUNC`` and parallel directory operations when offered; the
    write-back cache only when ``writeback_cache`` (and offered); otherwise it is cleared. Request sizes:
    :data:`MAX_REQUEST` (libfuse and the kernel lower them to what they support).

    >>> n = negotiate(CAP_ASYNC_READ | CAP_WRITEBACK_CACHE, 0, writeback_cache=False)
    >>> (n.want, n.max_write)
    (1, 1048576)
    """
    for bit in (CAP_ASYNC_READ, CAP_ATOMIC_O_TRUNC, CAP_PARALLEL_DIROPS):
        if capable & bit:
            want |= bit
    if writeback_cache and capable & CAP_WRITEBACK_CACHE:
        want |= CAP_WRITEBACK_CACHE
    else:
        want &= ~CAP_WRITEBACK_CACHE
    return Negotiated(want=want, max_write=MAX_REQUEST, max_readahead=MAX_REQUEST)


def bdi_of(mountinfo: str, mountpoint: str) -> str | None:
    """The backing-device name (``"<major>:<minor>"``) of the last mount on ``mountpoint`` in the text of
    ``/proc/self/mountinfo`` (field 3 of a line, field 5 its mount point; proc(5)), ``None`` if not mounted.

    >>> bdi_of("36 25 0:52 / /mnt rw - fuse.callfs callfs:/v rw\\n", "/mnt")
    '0:52'
    """
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == mountpoint:
            found = fields[2]
    return found


def set_read_ahead(mountpoint: str, kib: int) -> bool:
    """Set the kernel read-ahead of the FUSE mount on ``mountpoint`` to ``kib`` KiB; True when done.

    Call once the mount is live (after ``init`` was answered: the kernel lowers the value at init).
    ``os.statvfs`` of the mount point waits for that (a ``stat`` would also put the root's attributes in the
    kernel's cache). Never raises: a failure (not root, no sysfs) is logged.
    """
    try:
        os.statvfs(mountpoint)
        with open("/proc/self/mountinfo") as source:
            bdi = bdi_of(source.read(), mountpoint)
        if bdi is None:
            log.warning("read-ahead not set: %s is not in /proc/self/mountinfo", mountpoint)
            return False
        with open(f"/sys/class/bdi/{bdi}/read_ahead_kb", "w") as sysfs:
            sysfs.write(f"{kib}\n")
    except OSError as exc:
        log.warning("read-ahead of %s left at the kernel default: %s", mountpoint, exc)
        return False
    log.info("kernel read-ahead of %s set to %d KiB", mountpoint, kib)
    return True


_libfuse = mfusepy._libfuse
_libfuse.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_libfuse.fuse_invalidate_path.restype = ctypes.c_int


def invalidate_path(path: str) -> None:
    """Drop what the kernel caches of the mount-relative ``path`` (its attributes and pages): libfuse's
    ``fuse_invalidate_path`` (libfuse 3.1), a ``FUSE_NOTIFY_INVAL_INODE`` for the kernel inode of that path.

    Call it from an operation's thread: it finds the mount through ``fuse_get_context``. A path the kernel
    has not looked up needs nothing (libfuse answers ENOENT, ignored); nothing is raised.
    """
    context = _libfuse.fuse_get_context()
    fuse = context.contents.fuse if context else None
    if not fuse:
        return
    code = _libfuse.fuse_invalidate_path(fuse, os.fsencode(path))
    if code not in (0, -errno.ENOENT):
        log.debug("kernel invalidation of %s: %s", path, os.strerror(-code))
