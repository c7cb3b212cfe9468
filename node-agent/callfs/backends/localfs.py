"""Local-disk backend: blobs as files under ``<root>/objects/<id[:2]>/<id>``.

Writes go to ``<root>/tmp/`` first, are fsynced, renamed into place and the directory fsynced, so a crash
leaves either the complete blob or an unreferenced temp file that :meth:`LocalFSBackend.sweep_incomplete`
removes at start. Reads hand out the open file so the HTTP layer can use ``sendfile``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from callfs.backends.base import BackendUnavailable

# Body chunks are gathered up to this size before one write() system call.
WRITE_BUFFER_BYTES = 1 << 20


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobWriter:
    """Writes one blob to a temp file; see the module docstring for the commit protocol."""

    def __init__(self, backend: LocalFSBackend, blob_id: str, tmp_path: Path, fd: int) -> None:
        self._backend = backend
        self._blob_id = blob_id
        self._tmp_path = tmp_path
        self._fd: int | None = fd
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.bytes_written = 0

    async def write(self, chunk: bytes) -> None:
        if self._fd is None:
            raise RuntimeError("blob writer is closed")
        if not chunk:
            return
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        self.bytes_written += len(chunk)
        if self._pending_bytes >= WRITE_BUFFER_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending or self._fd is None:
            return
        buffers, self._pending, self._pending_bytes = self._pending, [], 0
        await asyncio.to_thread(_writev_all, self._fd, buffers)

    async def commit(self) -> None:
        if self._fd is None:
            raise RuntimeError("blob writer is closed")
        await self._flush()
        fd, self._fd = self._fd, None
        final = self._backend.blob_path(self._blob_id)
        try:
            await asyncio.to_thread(self._finish, fd, final)
        except BaseException:
            await asyncio.to_thread(_unlink_quietly, self._tmp_path)
            raise

    def _finish(self, fd: int, final: Path) -> None:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        final.parent.mkdir(exist_ok=True)
        os.rename(self._tmp_path, final)
        _fsync_dir(final.parent)

    async def abort(self) -> None:
        self._pending, self._pending_bytes = [], 0
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            await asyncio.to_thread(_unlink_quietly, self._tmp_path)


def _writev_all(fd: int, buffers: list[bytes]) -> None:
    views = [memoryview(b) for b in buffers]
    while views:
        written = os.writev(fd, views[:1024])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class LocalBlobReader:
    """An open local blob; ``size`` is taken from the open file, so a concurrent delete cannot change it."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.size = os.fstat(file.fileno()).st_size

    def local_file(self) -> BinaryIO | None:
        return self._file

    async def iter_range(self, offset: int, length: int, chunk_size: int) -> AsyncIterator[bytes]:
        fd = self._file.fileno()
        end = offset + length
        while offset < end:
            chunk = await asyncio.to_thread(os.pread, fd, min(chunk_size, end - offset), offset)
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    async def close(self) -> None:
        self._file.close()


class LocalFSBackend:
    """Blobs on this node's disk under ``root``. ``node_local``: other nodes forward requests here."""

    name = "localfs"
    node_local = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self._objects = root / "objects"
        self._tmp = root / "tmp"

    def blob_path(self, blob_id: str) -> Path:
        """Where a committed blob lives; ``blob_id`` must be the engine's hex id (no separators)."""
        if not blob_id or not blob_id.isalnum():
            raise ValueError(f"invalid blob id {blob_id!r}")
        return self._objects / blob_id[:2] / blob_id

    async def start(self) -> None:
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BackendUnavailable(f"local backend root {self.root} is not writable: {exc.strerror}") from exc

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return self._objects.is_dir()

    async def create(self, blob_id: str) -> LocalBlobWriter:
        self.blob_path(blob_id)  # validates the id
        tmp_path = self._tmp / f"{blob_id}.{secrets.token_hex(4)}"
        fd = await asyncio.to_thread(os.open, tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return LocalBlobWriter(self, blob_id, tmp_path, fd)

    async def open(self, blob_id: str) -> LocalBlobReader:
        file = await asyncio.to_thread(open, self.blob_path(blob_id), "rb")
        return LocalBlobReader(file)

    async def delete(self, blob_id: str) -> None:
        await asyncio.to_thread(_unlink_quietly, self.blob_path(blob_id))

    async def list_blobs(self, min_age: float = 0.0) -> AsyncIterator[str]:
        cutoff = time.time() - min_age
        for shard in await asyncio.to_thread(_listdir, self._objects):
            for name in await asyncio.to_thread(_listdir, self._objects / shard):
                if min_age <= 0 or await asyncio.to_thread(_mtime, self._objects / shard / name) <= cutoff:
                    yield name

    async def sweep_incomplete(self) -> int:
        names = await asyncio.to_thread(_listdir, self._tmp)
        for name in names:
            await asyncio.to_thread(_unlink_quietly, self._tmp / name)
        return len(names)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
