"""The byte backend protocol.

A backend stores immutable blobs addressed by an opaque ``blob_id`` chosen by the engine (a new one for every
write). Content changes never rewrite a blob in place: the engine writes a new blob, commits metadata pointing
at it, then deletes the old one. That makes overwrites atomic, renames pure metadata operations, and crash
recovery a sweep of blobs no inode references.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO, Protocol


class BackendUnavailable(Exception):
    """The backend cannot be used (root not writable, bucket missing, endpoint unreachable)."""


class BlobWriter(Protocol):
    """An in-progress blob. Nothing is visible under ``blob_id`` until :meth:`commit` returns."""

    bytes_written: int

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``; data may be buffered until enough accumulates for one large write."""
        ...

    async def commit(self) -> None:
        """Make the blob durable (fsync) and visible under its ``blob_id`` atomically."""
        ...

    async def abort(self) -> None:
        """Discard everything written; idempotent, never raises for an already-finished writer."""
        ...


class BlobReader(Protocol):
    """An open blob. ``size`` in bytes. Stays readable even if the blob is deleted while open."""

    size: int

    def local_file(self) -> BinaryIO | None:
        """An open local file for zero-copy ``sendfile``, or ``None`` when the blob is not on local disk."""
        ...

    def iter_range(self, offset: int, length: int, chunk_size: int) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes from ``offset`` in chunks of at most ``chunk_size`` bytes."""
        ...

    async def close(self) -> None:
        """Release the handle."""
        ...


class Backend(Protocol):
    """A place where blobs live.

    ``name`` is what inodes record (``localfs``, ``s3``). ``node_local`` is true when the bytes live on this
    node only (other nodes must forward to it).
    """

    name: str
    node_local: bool

    async def start(self) -> None:
        """Check access and prepare; raises :class:`BackendUnavailable` with a clear message."""
        ...

    async def close(self) -> None:
        ...

    async def ping(self) -> bool:
        ...

    async def create(self, blob_id: str) -> BlobWriter:
        """Start writing a new blob."""
        ...

    async def open(self, blob_id: str) -> BlobReader:
        """Open a committed blob; raises ``FileNotFoundError`` when absent."""
        ...

    async def delete(self, blob_id: str) -> None:
        """Delete a blob; a missing blob is not an error."""
        ...

    def list_blobs(self, min_age: float = 0.0) -> AsyncIterator[str]:
        """Every committed blob id last written at least ``min_age`` seconds ago (for the orphan sweep: a
        young blob may belong to a write whose metadata is about to commit)."""
        ...

    async def sweep_incomplete(self) -> int:
        """Remove leftovers of interrupted writes; return how many. Called at start, before serving."""
        ...
