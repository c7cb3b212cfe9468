"""Write buffering: the bytes of one open file kept in an anonymous local temporary file until uploaded.

Writes land in the spool with ``pwrite`` (memory stays bounded whatever the file size) and go to the server
as one streamed ``PUT`` on ``flush``/``fsync``/``release`` (FUSE client contract). A file opened for writing
without ``O_TRUNC`` is filled with its remote bytes first, lazily, on the first write or truncate, so a
partial overwrite or an append keeps the rest of the file.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import IO


class Spool:
    """An anonymous temporary file in ``directory`` (removed by the OS when closed or when the daemon dies).

    Thread-safe for positional reads/writes; callers serialise uploads against writes (see
    :class:`.handles.OpenFile`). Sizes and offsets are in bytes.
    """

    def __init__(self, directory: str) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=directory, prefix="callfs-spool-")  # noqa: SIM115 - lives with the spool
        self._fd = self._file.fileno()
        self._lock = threading.Lock()

    def write(self, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset``; returns the number of bytes written (all of them)."""
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.pwrite(self._fd, view[written:], offset + written)
        return written

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at the end)."""
        return os.pread(self._fd, size, offset)

    def truncate(self, length: int) -> None:
        """Cut or extend (with zeros) to ``length`` bytes."""
        os.ftruncate(self._fd, length)

    def size(self) -> int:
        """Current length in bytes."""
        return os.fstat(self._fd).st_size

    def reader(self) -> IO[bytes]:
        """A new read-only file object on the spool, positioned at 0, with its own offset (an upload source
        that does not disturb other users). The caller closes it."""
        return open(f"/proc/self/fd/{self._fd}", "rb")

    def close(self) -> None:
        """Delete the spool (idempotent)."""
        with self._lock:
            if not self._file.closed:
                self._file.close()
