"""Write buffering: the changed bytes of one open file, kept in an anonymous local temporary file until uploaded.

The spool is as long as the file and sparse: writes land in it with ``pwrite`` at their own offsets (memory
stays bounded whatever the file size; disk holds only what was written), holes and extensions read as zeros.
Which of its bytes are meaningful, and which are the server's, is :mod:`.dirty`'s business; uploads stream
byte ranges of it (:meth:`Spool.slice`).
"""

from __future__ import annotations

import io
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

    def slice(self, offset: int, length: int) -> IO[bytes]:
        """A read-only, seekable file object over bytes ``[offset, offset + length)`` (an upload body that can
        be replayed; positional reads, so it disturbs no other user). The caller closes it."""
        return io.BufferedReader(SpoolSlice(self._fd, offset, length))

    def close(self) -> None:
        """Delete the spool (idempotent)."""
        with self._lock:
            if not self._file.closed:
                self._file.close()


class SpoolSlice(io.RawIOBase):
    """Bytes ``[offset, offset + length)`` of a spool's descriptor as a raw binary file (see :meth:`Spool.slice`).
    Position 0 is ``offset``; reads stop at ``length`` (fewer bytes only when the spool is shorter)."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__()
        if offset < 0 or length < 0:
            raise ValueError(f"bad slice: offset={offset} length={length}")
        self._fd = fd
        self._offset = offset
        self._length = length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._length - self._position)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._offset + self._position)
        memoryview(buffer)[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position
