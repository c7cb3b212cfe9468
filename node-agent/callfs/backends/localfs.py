"""Local-disk backend: blobs as files under ``<root>/objects/<id[:2]>/<id>``.

Writes go to ``<root>/tmp/`` first, are fsynced, renamed into place and the directory fsynced, so a crash
leaves either the complete blob or an unreferenced temp file that :meth:`LocalFSBackend.sweep_incomplete`
removes at start. Concurrent commits into one directory share its fsync (:mod:`callfs.backends.dirsync`), and
new blob ids written close together in time share their directory (:func:`callfs.engine.new_blob_id`), so under
load a small file costs its own fsync plus a share of a directory fsync. The 256 blob directories are created
(and their names fsynced) at start, so a commit has no other directory to sync. Reads hand out the open file so the HTTP
layer can use ``sendfile``.

A full disk (``ENOSPC``, ``EDQUOT``) fails the write with :class:`~callfs.errors.InsufficientStorage` (507) after
removing the temp file, and marks the backend full: :meth:`LocalFSBackend.ping` (``/ready``) reports it not ready
until a write succeeds again or the free space is back above :func:`recovery_free_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from callfs.backends.base import BackendUnavailable
from callfs.backends.dirsync import DirectorySyncs, fsync_directory
from callfs.errors import InsufficientStorage

log = logging.getLogger(__name__)

# Body chunks are gathered up to this size before one write() system call.
WRITE_BUFFER_BYTES = 1 << 20

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""``errno`` values of a full disk or an exhausted disk quota."""

RECOVERY_FREE_BYTES = 64 << 20
RECOVERY_FREE_FRACTION = 0.05


def recovery_free_bytes(total_bytes: int) -> int:
    """Free bytes a full backend's filesystem of ``total_bytes`` needs to count as usable again: 64 MiB, or 5%
    of the filesystem when that is less."""
    return min(RECOVERY_FREE_BYTES, int(total_bytes * RECOVERY_FREE_FRACTION))


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
        try:
            await asyncio.to_thread(_writev_all, self._fd, buffers)
        except OSError as exc:
            full = self._backend.no_space(exc)
            if full is None:
                raise
            raise full from exc

    async def commit(self) -> None:
        if self._fd is None:
            raise RuntimeError("blob writer is closed")
        await self._flush()
        fd, self._fd = self._fd, None
        final = self._backend.blob_path(self._blob_id)
        try:
            await asyncio.to_thread(self._finish, fd, final)
            await self._backend.directory_syncs.sync(final.parent)
        except OSError as exc:
            await asyncio.to_thread(_unlink_quietly, self._tmp_path)
            full = self._backend.no_space(exc)
            if full is None:
                raise
            raise full from exc
        except BaseException:
            await asyncio.to_thread(_unlink_quietly, self._tmp_path)
            raise
        self._backend.storage_full = None

    def _finish(self, fd: int, final: Path) -> None:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not final.parent.is_dir():
            with contextlib.suppress(FileExistsError):
                final.parent.mkdir()
            fsync_directory(final.parent.parent)  # removed since start(): its name must survive a crash too
        os.rename(self._tmp_path, final)

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
        self.storage_full: str | None = None
        """Why the last write failed for lack of space (``None``: not known to be full)."""
        self.directory_syncs = DirectorySyncs()
        """The fsyncs of blob directories after a rename into them (group commit)."""

    def no_space(self, exc: OSError) -> InsufficientStorage | None:
        """When ``exc`` is ``ENOSPC``/``EDQUOT``: mark the backend full and return the
        :class:`InsufficientStorage` to raise instead; else ``None``."""
        if exc.errno not in NO_SPACE_ERRNOS:
            return None
        if self.storage_full is None:
            log.warning("the disk of backend %s at %s is full (%s); writes answer 507 until space is freed",
                        self.name, self.root, exc.strerror)
        self.storage_full = f"the disk holding backend {self.name} is full ({exc.strerror})"
        return InsufficientStorage(f"no space left on this node's disk for backend {self.name}; nothing was written")

    def _space_recovered(self) -> bool:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize >= recovery_free_bytes(stats.f_blocks * stats.f_frsize)

    def blob_path(self, blob_id: str) -> Path:
        """Where a committed blob lives; ``blob_id`` must be the engine's hex id (no separators)."""
        if not blob_id or not blob_id.isalnum():
            raise ValueError(f"invalid blob id {blob_id!r}")
        return self._objects / blob_id[:2] / blob_id

    async def start(self) -> None:
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self._make_shards)
            self._tmp.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BackendUnavailable(f"local backend root {self.root} is not writable: {exc.strerror}") from exc

    def _make_shards(self) -> None:
        """Create the 256 directories blobs go to (``00``..``ff``) that are missing, and make their names durable,
        so that a commit only ever has to fsync the directory it renames into."""
        existing = set(os.listdir(self._objects))
        missing = [f"{n:02x}" for n in range(256) if f"{n:02x}" not in existing]
        for name in missing:
            (self._objects / name).mkdir(exist_ok=True)
        if missing:
            fsync_directory(self._objects)
            fsync_directory(self.root)  # the name ``objects`` itself, created with the first shards

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        """True when the blob directory exists and the disk is not known to be full (a full disk counts as
        usable again once its free space is back above :func:`recovery_free_bytes`)."""
        if not self._objects.is_dir():
            return False
        if self.storage_full is not None:
            if not await asyncio.to_thread(self._space_recovered):
                return False
            log.info("the disk of backend %s has free space again", self.name)
            self.storage_full = None
        return True

    async def create(self, blob_id: str) -> LocalBlobWriter:
        self.blob_path(blob_id)  # validates the id
        tmp_path = self._tmp / f"{blob_id}.{secrets.token_hex(4)}"
        try:
            fd = await asyncio.to_thread(os.open, tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            full = self.no_space(exc)
            if full is None:
                raise
            raise full from exc
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
