"""Async client of the CallFS v1 REST API (docs/rest-api.md).

One :class:`CallFSClient` wraps one :class:`aiohttp.ClientSession`; use it as an async context manager::

    async with CallFSClient("http://127.0.0.1:8443", api_key) as fs:
        await fs.upload("/data/a.bin", Path("a.bin"))
        info = await fs.stat("/data/a.bin")

Everything streams: uploads send the source in :data:`DEFAULT_CHUNK_SIZE` pieces, downloads write pieces as
they arrive, so memory per transfer is bounded regardless of file size.

Errors:
    * A non-2xx answer raises the server's own error class (:mod:`callfs.errors`), rebuilt from the JSON body
      ``{"code", "message", ...}`` with :func:`callfs.errors.error_class_for`; extra body fields (e.g.
      ``instance_id``, ``update_url``) land in ``exc.extra``. HEAD answers have no body: the class then comes
      from the status alone.
    * The server cannot be reached (refused, reset, DNS, TLS, timeout): :class:`CallFSUnavailable`, a
      :class:`ConnectionError`.

Retries: idempotent requests (GET, HEAD, DELETE, and PUT of a replayable source: bytes, a file path or a
seekable file object) are retried on connection errors and on 502/503 answers, with exponential backoff, at
most ``retries`` times and never past ``timeout`` seconds after the first attempt. POST and PATCH are never
retried (a lost answer may hide a change that happened), except a ``PATCH {"size"}`` (:meth:`CallFSClient.resize`:
setting a size twice is setting it once). A conditional write (``If-Match``) replayed after its first attempt
was applied but its answer lost fails with ``PreconditionFailed``: the version it names is gone.

The pure parts (path quoting, :class:`FileInfo` parsing, range headers) sit at the top of this module and are
unit-tested without a server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json as jsonlib
import os
import secrets
import ssl as ssl_module
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal, Self
from urllib.parse import quote, unquote

import aiohttp
from yarl import URL

from callfs import paths
from callfs.errors import (
    AlreadyExists,
    CallFSError,
    IsADirectory,
    LockConflict,
    NotADirectory,
    NotFound,
    error_class_for,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "CallFSClient",
    "CallFSUnavailable",
    "DrainInfo",
    "FileInfo",
    "FileLockInfo",
    "LockSessionInfo",
    "LostNodeInfo",
    "NodeInfo",
    "ProgressCallback",
    "UploadSource",
    "WriteAnswer",
    "canonical",
    "directories_url_path",
    "files_url_path",
    "range_header",
    "websocket_url_path",
    "xattrs_url_path",
]

DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
"""Bytes per streamed piece (1 MiB, the FUSE client's read/write size)."""

_RETRY_STATUSES: Final = frozenset({502, 503})
_BACKOFF_FIRST: Final = 0.1  # seconds
_BACKOFF_MAX: Final = 2.0  # seconds

ProgressCallback = Callable[[int], object]
"""Called with the number of bytes moved since the previous call (an increment, as ``ProgressBar.update``)."""

UploadSource = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | AsyncIterable[bytes]
"""What :meth:`CallFSClient.upload` accepts: in-memory bytes, a local file path, a binary file object, or an
async iterable of byte chunks."""


class CallFSUnavailable(ConnectionError):
    """The server could not be reached or the connection broke (refused, reset, DNS, TLS, timeout).

    ``url`` is the request URL; the underlying aiohttp/asyncio error is chained as ``__cause__``.
    """

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


# --------------------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------------------


def canonical(path: str) -> str:
    """The canonical form of an API path: leading ``/``, no trailing slash, ``.``/``..`` resolved.

    Follows the server's rule (``callfs.paths.canonicalize``, contract "Conventions") so that the client never
    sends a path the server would read differently. ``""``, ``"."`` and ``"/"`` are the root ``"/"``.

    Raises:
        BadRequest: forbidden characters (control characters, backslash, BiDi overrides) or a path climbing
            above the root — the same error the server would answer with.
    """
    return paths.canonicalize(path).path


def _quoted_segments(path: str) -> str:
    canon = canonical(path)
    if canon == paths.ROOT:
        return ""
    return "/".join(quote(segment, safe="") for segment in canon[1:].split("/"))


def files_url_path(path: str, *, directory: bool = False) -> str:
    """The URL path of ``/v1/files/{path}``, each segment percent-encoded (``quote(..., safe="")``).

    ``directory=True`` appends the trailing slash the contract reads as "a directory" (used to create one).
    The root is ``/v1/files/``.

    >>> files_url_path("/a b/c#d")
    '/v1/files/a%20b/c%23d'
    >>> files_url_path("x", directory=True)
    '/v1/files/x/'
    """
    quoted = _quoted_segments(path)
    if directory and quoted:
        quoted += "/"
    return "/v1/files/" + quoted


def websocket_url_path(path: str) -> str:
    """The URL path of ``/v1/files/ws/{path}`` (WebSocket transfers), segments percent-encoded.

    >>> websocket_url_path("/a b/c")
    '/v1/files/ws/a%20b/c'
    """
    return "/v1/files/ws/" + _quoted_segments(path)


def directories_url_path(path: str) -> str:
    """The URL path of ``/v1/directories/{path}``; the root is ``/v1/directories/``."""
    return "/v1/directories/" + _quoted_segments(path)


def quotas_url_path(path: str) -> str:
    """The URL path of ``/v1/quotas/{path}``."""
    return "/v1/quotas/" + _quoted_segments(path)


def xattrs_url_path(path: str) -> str:
    """The URL path of ``/v1/xattrs/{path}``; the root is ``/v1/xattrs/``.

    >>> xattrs_url_path("/a b/c")
    '/v1/xattrs/a%20b/c'
    """
    return "/v1/xattrs/" + _quoted_segments(path)


@dataclass(frozen=True, slots=True)
class QuotaInfo:
    """A directory quota: limits (``None`` = unlimited) and usage, in bytes and inodes."""

    path: str
    bytes_limit: int | None
    inodes_limit: int | None
    bytes_used: int
    inodes_used: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> QuotaInfo:
        return cls(str(body["path"]), body.get("bytes_limit"), body.get("inodes_limit"),
                   int(body["bytes_used"]), int(body["inodes_used"]))


def file_locks_url_path(path: str) -> str:
    """The URL path of ``/v1/file-locks/{path}``."""
    return "/v1/file-locks/" + _quoted_segments(path)


@dataclass(frozen=True, slots=True)
class LockSessionInfo:
    """A lock session: ``id`` and ``ttl`` (seconds it lives without a renewal)."""

    id: str
    ttl: float

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> LockSessionInfo:
        return cls(str(body["id"]), float(body["ttl"]))


@dataclass(frozen=True, slots=True)
class FileLockInfo:
    """A held file lock: ``kind`` (``flock``/``posix``), ``type`` (``read``/``write``), ``start`` and ``length``
    in bytes (``length`` 0: to the end of the file), the holder's ``session`` and ``owner``, and ``pid`` (the
    holder's process as its mount saw it, 0 when unknown)."""

    kind: str
    type: str
    start: int
    length: int
    session: str
    owner: str
    pid: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> FileLockInfo:
        return cls(str(body["kind"]), str(body["type"]), int(body["start"]), int(body["length"]),
                   str(body["session"]), str(body["owner"]), int(body.get("pid") or 0))


LOCK_POLL_FIRST: Final = 0.01
LOCK_POLL_MAX: Final = 0.5
"""A blocking :meth:`CallFSClient.lock_file` retries after 10 ms, doubling up to 500 ms between attempts."""


@dataclass(frozen=True, slots=True)
class CopyInfo:
    """What a server-side copy created: the copy's ``path``, ``files`` and ``directories`` created, and the
    ``bytes`` those files hold (shared with the source, not copied)."""

    path: str
    files: int
    directories: int
    bytes: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> CopyInfo:
        return cls(str(body["path"]), int(body["files"]), int(body["directories"]), int(body["bytes"]))


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One storage node as ``GET /v1/cluster/nodes`` reports it.

    ``state`` is ``up``, ``down`` (heartbeat older than the cluster's node timeout) or ``unknown``
    (configured or discovered but never registered, so ``instance_id`` may be ``None``); bytes are ``None``
    when the node has not reported them.
    """

    instance_id: str | None
    url: str
    state: str
    capacity_bytes: int | None = None
    free_bytes: int | None = None
    version: str | None = None
    leaving: bool | None = None
    """Being drained before removal; ``None`` from a node that predates drains."""

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> NodeInfo:
        """From one element of the response's ``nodes`` list. Raises ``KeyError``/``TypeError`` when
        ``url`` or ``state`` is missing."""
        leaving = item.get("leaving")
        return cls(item.get("instance_id"), str(item["url"]), str(item["state"]), item.get("capacity_bytes"),
                   item.get("free_bytes"), item.get("version"), bool(leaving) if leaving is not None else None)


@dataclass(frozen=True, slots=True)
class DrainInfo:
    """The progress of a node's drain (``/v1/cluster/nodes/{instance_id}/drain``): ``state`` ``draining`` or
    ``drained``, ``blocks_left`` blocks that still rely on the node, ``files_left`` files whose bytes are a blob
    on its disk."""

    instance_id: str
    state: str
    blocks_left: int
    files_left: int

    @property
    def drained(self) -> bool:
        """Nothing relies on the node any more: it may be removed."""
        return self.state == "drained"

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> DrainInfo:
        """From the route's JSON body. Raises ``KeyError``/``TypeError``/``ValueError`` when malformed."""
        return cls(str(item["instance_id"]), str(item["state"]), int(item["blocks_left"]), int(item["files_left"]))


@dataclass(frozen=True, slots=True)
class LostNodeInfo:
    """What a node declared lost for good leaves behind (``/v1/cluster/nodes/{instance_id}/forget``):
    ``block_copies`` rows still naming it, ``blocks_left`` blocks short of copies that had one there,
    ``files_lost`` files whose bytes were a blob on its disk (the first 1000 paths in ``lost_files``)."""

    instance_id: str
    since: str
    block_copies: int
    blocks_left: int
    files_lost: int
    lost_files: tuple[str, ...]

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> LostNodeInfo:
        """From the route's JSON body. Raises ``KeyError``/``TypeError``/``ValueError`` when malformed."""
        return cls(str(item["instance_id"]), str(item["since"]), int(item["block_copies"]),
                   int(item["blocks_left"]), int(item["files_lost"]), tuple(str(p) for p in item["lost_files"]))


@dataclass(frozen=True, slots=True)
class ReplicationInfo:
    """The redundancy of the blocks of the node-local backend as ``GET /v1/cluster/nodes`` reports it for the
    whole cluster: ``replicas`` copies wanted, ``under_replicated_blocks`` referenced blocks with fewer on live
    nodes."""

    backend: str
    replicas: int
    under_replicated_blocks: int

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ReplicationInfo:
        """From the response's ``replication`` object. Raises ``KeyError``/``TypeError``/``ValueError`` when
        malformed."""
        return cls(str(item["backend"]), int(item["replicas"]), int(item["under_replicated_blocks"]))


def range_header(offset: int, length: int | None) -> str | None:
    """The ``Range`` header for ``length`` bytes from ``offset`` (RFC 9110 §14.1.2); ``None``: whole file.

    ``length=None`` means "to the end of the file".

    Raises:
        ValueError: negative offset, or a length that is not positive.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if length is not None and length <= 0:
        raise ValueError(f"length must be > 0, got {length}")
    if offset == 0 and length is None:
        return None
    if length is None:
        return f"bytes={offset}-"
    return f"bytes={offset}-{offset + length - 1}"


def _parse_mode(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return int(value, 8)
    raise ValueError(f"bad mode {value!r}: expected an octal string like '0644'")


def _parse_mtime(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"bad mtime {value!r}: expected an RFC 3339 string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"bad mtime {value!r}: no time zone")
    return parsed


def _optional_time(value: object) -> datetime | None:
    """An RFC 3339 time of an answer, or ``None`` when absent. Raises ``ValueError`` when malformed."""
    return None if value is None else _parse_mtime(value)


def _optional_id(value: object) -> int | None:
    """A numeric user or group id of an answer (a number or decimal text), or ``None`` when absent.
    Raises ``ValueError`` when malformed."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"bad id {value!r}")
    number = int(value)
    if number < 0:
        raise ValueError(f"bad id {value!r}")
    return number


INODE_TYPES: Final = frozenset({"file", "directory", "symlink", "special"})
"""The ``type`` values an answer may name."""


@dataclass(frozen=True, slots=True)
class WriteAnswer:
    """The server's answer to a write: ``created`` (201: a new file) and the file's new ``etag`` as sent
    (``None`` when the answer had none)."""

    created: bool
    etag: str | None


@dataclass(frozen=True, slots=True)
class FileInfo:
    """Metadata of one file or directory as the API reports it.

    ``path`` is canonical (leading ``/``, no trailing slash; ``/`` for the root), ``name`` its last segment
    (``""`` for the root), ``type`` ``"file"`` or ``"directory"``, ``size`` in bytes (0 for directories),
    ``mode`` the permission bits as an int (``0o644``; the sticky bit included, ``0o1777``), ``owner`` a user
    ID, ``mtime`` timezone-aware (second resolution on the wire), ``etag`` the entity tag as sent (quotes
    included) or ``None`` when the source had none (listing items). ``uid``/``gid`` are the numeric owner and
    group (``None``: not set), ``atime``/``ctime`` the access and change times (``None`` from an older server;
    microsecond resolution on the wire, as ``mtime`` is too when it has a fraction), ``target`` a symlink's target,
    ``special`` a special file's kind (``fifo``, ``socket``, ``char``, ``block``) and ``rdev`` its device number;
    ``nlink`` the number of names (hard links) of anything but a directory, a directory's 2 plus its number of
    subdirectories (1 from an older server); ``ino`` the inode number, shared by every name of one inode and
    kept across renames (``None`` from an older server).
    """

    path: str
    name: str
    type: str
    size: int
    mode: int
    owner: str
    mtime: datetime
    etag: str | None = None
    uid: int | None = None
    gid: int | None = None
    atime: datetime | None = None
    ctime: datetime | None = None
    target: str | None = None
    special: str | None = None
    rdev: int | None = None
    nlink: int = 1
    ino: int | None = None

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @property
    def is_symlink(self) -> bool:
        return self.type == "symlink"

    @classmethod
    def from_headers(cls, path: str, headers: Mapping[str, str]) -> FileInfo:
        """Build from the ``X-CallFS-*`` headers of a HEAD/GET answer for ``path`` (contract, GET/HEAD row).

        Reads ``X-CallFS-Type``, ``X-CallFS-Size`` (bytes), ``X-CallFS-Mode`` (octal, e.g. ``0644``),
        ``X-CallFS-Owner``, ``X-CallFS-MTime`` (RFC 3339) and ``ETag``; ``X-CallFS-UID``, ``X-CallFS-GID``,
        ``X-CallFS-ATime``, ``X-CallFS-CTime`` and ``X-CallFS-Target`` (percent-encoded) when present.
        ``headers`` must look up names case-insensitively (aiohttp's ``CIMultiDictProxy`` does).

        Raises:
            ValueError: a header is missing or malformed.
        """
        canon = canonical(path)
        try:
            kind = headers["X-CallFS-Type"]
            size = int(headers.get("X-CallFS-Size", "0"))
            mode = _parse_mode(headers["X-CallFS-Mode"])
            owner = headers["X-CallFS-Owner"]
            mtime = _parse_mtime(headers["X-CallFS-MTime"])
        except KeyError as exc:
            raise ValueError(f"answer for {canon} lacks header {exc.args[0]}") from exc
        if kind not in INODE_TYPES:
            raise ValueError(f"answer for {canon} has unknown X-CallFS-Type {kind!r}")
        target = headers.get("X-CallFS-Target")
        return cls(
            path=canon,
            name=paths.name_of(canon),
            type=kind,
            size=size,
            mode=mode,
            owner=owner,
            mtime=mtime,
            etag=headers.get("ETag"),
            uid=_optional_id(headers.get("X-CallFS-UID")),
            gid=_optional_id(headers.get("X-CallFS-GID")),
            atime=_optional_time(headers.get("X-CallFS-ATime")),
            ctime=_optional_time(headers.get("X-CallFS-CTime")),
            target=None if target is None else unquote(target, errors="strict"),
            special=headers.get("X-CallFS-Special"),
            rdev=_optional_id(headers.get("X-CallFS-Rdev")),
            nlink=_optional_id(headers.get("X-CallFS-Nlink")) or 1,
            ino=_optional_id(headers.get("X-CallFS-Ino")),
        )

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> FileInfo:
        """Build from a listing item ``{name, path, type, size, mode, owner, mtime}`` (``mode`` like "0644").

        Raises:
            ValueError: a field is missing or malformed.
        """
        try:
            canon = canonical(str(item["path"]))
            kind = str(item["type"])
            size = int(item.get("size") or 0)
            mode = _parse_mode(item["mode"])
            owner = str(item["owner"])
            mtime = _parse_mtime(item["mtime"])
        except KeyError as exc:
            raise ValueError(f"listing item lacks field {exc.args[0]}: {dict(item)!r}") from exc
        name = item.get("name")
        target = item.get("target")
        return cls(
            path=canon,
            name=str(name) if name is not None else paths.name_of(canon),
            type=kind,
            size=size,
            mode=mode,
            owner=owner,
            mtime=mtime,
            etag=item.get("etag"),
            uid=_optional_id(item.get("uid")),
            gid=_optional_id(item.get("gid")),
            atime=_optional_time(item.get("atime")),
            ctime=_optional_time(item.get("ctime")),
            target=None if target is None else str(target),
            special=None if item.get("special") is None else str(item["special"]),
            rdev=_optional_id(item.get("rdev")),
            nlink=_optional_id(item.get("nlink")) or 1,
            ino=_optional_id(item.get("ino")),
        )

    def to_json(self) -> dict[str, Any]:
        """The listing-item shape back: ``mode`` as a 4-digit octal string, ``mtime`` in ISO 8601."""
        return {
            "name": self.name,
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "mode": f"{self.mode:04o}",
            "owner": self.owner,
            "mtime": self.mtime.isoformat(),
            "etag": self.etag,
        }


_CODE_FOR_BODYLESS: Final = {
    400: "BAD_REQUEST",
    401: "AUTHENTICATION_FAILED",
    403: "PERMISSION_DENIED",
    404: "FILE_NOT_FOUND",
    409: "CONFLICT",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}
"""The general code of a status, for answers without a body (HEAD): a bare 400 is ``BAD_REQUEST``, not one
of its specialisations that share the status (``IS_A_DIRECTORY``...)."""


def error_from_body(status: int, body: object, fallback_message: str) -> CallFSError:
    """Rebuild the server's error from a status and a decoded JSON body (``None`` when there was none).

    ``{"code", "message", **extra}`` → ``error_class_for(code, status)(message, **extra)``; without a code
    the general class of the status (:data:`_CODE_FOR_BODYLESS`, then ``error_class_for``'s fallback).
    """
    code = ""
    message = fallback_message
    extra: dict[str, Any] = {}
    if isinstance(body, dict):
        code = str(body.get("code") or "")
        message = str(body.get("message") or fallback_message)
        extra = {str(k): v for k, v in body.items() if k not in ("code", "message")}
    return error_class_for(code or _CODE_FOR_BODYLESS.get(status, ""), status)(message, **extra)


def _backoff(attempt: int) -> float:
    return float(min(_BACKOFF_MAX, _BACKOFF_FIRST * (2**attempt)))


# --------------------------------------------------------------------------------------------------------
# Upload bodies
# --------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Body:
    """An upload body: ``make()`` returns a fresh async iterator of chunks (only once unless replayable)."""

    make: Callable[[], AsyncIterator[bytes]]
    size: int | None
    replayable: bool
    close: Callable[[], Awaitable[None]] | None = None


async def _iter_memory(data: memoryview, chunk_size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk_size):
        yield bytes(data[start : start + chunk_size])


async def _iter_fileobj(fileobj: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    while True:
        chunk = await asyncio.to_thread(fileobj.read, chunk_size)
        if not chunk:
            return
        yield chunk


def _body_for(source: UploadSource, size: int | None, chunk_size: int) -> _Body:
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        return _Body(lambda: _iter_memory(view, chunk_size), len(view), True)
    if isinstance(source, str | os.PathLike):
        local = Path(source)
        local_size = local.stat().st_size

        async def from_path() -> AsyncIterator[bytes]:
            fileobj = await asyncio.to_thread(local.open, "rb")
            try:
                async for chunk in _iter_fileobj(fileobj, chunk_size):
                    yield chunk
            finally:
                await asyncio.to_thread(fileobj.close)

        return _Body(from_path, local_size, True)
    if isinstance(source, AsyncIterable):
        iterable = source
        return _Body(lambda: aiter(iterable), size, False)
    if hasattr(source, "read"):
        fileobj = source
        seekable = False
        start = 0
        with contextlib.suppress(OSError, AttributeError, ValueError):
            seekable = bool(fileobj.seekable())
            if seekable:
                start = fileobj.tell()
                if size is None:
                    size = os.fstat(fileobj.fileno()).st_size - start
        if seekable and size is None:
            end = fileobj.seek(0, os.SEEK_END)
            fileobj.seek(start)
            size = end - start

        def from_fileobj() -> AsyncIterator[bytes]:
            if seekable:
                fileobj.seek(start)
            return _iter_fileobj(fileobj, chunk_size)

        return _Body(from_fileobj, size, seekable)
    raise TypeError(f"cannot upload from {type(source).__name__}: expected bytes, a path, a file or chunks")


async def _save(chunks: AsyncIterator[bytes], dest: str | os.PathLike[str], progress: ProgressCallback | None) -> int:
    """Write ``chunks`` to a temporary file beside ``dest``, fsync, rename; returns the bytes written.

    ``dest`` never holds a partial file; on any error the temporary file is removed.
    """
    target = Path(dest)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
    # O_EXCL: never follow or clobber someone else's file; 0o666 lets the umask decide, like a plain open.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)
                written += len(chunk)
                if progress is not None:
                    progress(len(chunk))
            await asyncio.to_thread(out.flush)
            await asyncio.to_thread(os.fsync, out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return written


def _websocket_error(text: str, fallback_message: str) -> CallFSError:
    """The error of a WebSocket transfer's ``{"ok": false, "status", "code", "message"}`` text message."""
    try:
        body = jsonlib.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return CallFSError(f"{fallback_message}: unexpected message {text[:200]!r}")
    status = body.pop("status", 500)
    body.pop("ok", None)
    return error_from_body(status if isinstance(status, int) else 500, body, fallback_message)


class _Progress:
    """Reports only bytes past the furthest point any attempt reached: a retried upload never counts twice."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._reported = 0

    async def counting(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in chunks:
            yield chunk
            sent += len(chunk)
            if self._callback is not None and sent > self._reported:
                self._callback(sent - self._reported)
                self._reported = sent


# --------------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------------


class CallFSClient:
    """Async client of one CallFS server (any node of a cluster).

    Args:
        base_url: ``http[s]://host:port`` (a path prefix is kept, e.g. behind an ingress).
        api_key: sent as ``Authorization: Bearer <key>`` on every request.
        timeout: seconds allowed to connect and between two reads/writes of one request (not for a whole
            transfer, so large files are not cut off); also the deadline for retries.
        ssl: an :class:`ssl.SSLContext` (e.g. with a private CA), ``False`` to skip verification, or
            ``True``/``None`` for the system defaults.
        retries: how many times an idempotent request is retried (0 disables retries).

    Must be entered (``async with``) before use; the session closes on exit.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        ssl: ssl_module.SSLContext | bool | None = None,
        retries: int = 3,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self._base = str(URL(base_url)).rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._ssl: ssl_module.SSLContext | bool = True if ssl is None else ssl
        self._retries = retries
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return self._base

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self._timeout, sock_connect=self._timeout, sock_read=self._timeout
            ),
            headers={"Authorization": f"Bearer {self._api_key}"},
            auto_decompress=False,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- transport -------------------------------------------------------------------------------------

    def _url(self, url_path: str, query: Mapping[str, str] | None = None) -> URL:
        url = URL(self._base + url_path, encoded=True)
        return url.update_query(query) if query else url

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("CallFSClient used outside 'async with'")
        return self._session

    async def _raise_for(self, resp: aiohttp.ClientResponse, subject: str | None) -> None:
        if resp.status < 400:
            return
        body: object = None
        if resp.method != "HEAD":
            try:
                raw = await resp.read()
                body = jsonlib.loads(raw) if raw else None
            except (TimeoutError, ValueError, aiohttp.ClientError):
                body = None
        reason = resp.reason or f"HTTP {resp.status}"
        raise error_from_body(resp.status, body, f"{subject}: {reason}" if subject else reason)

    @contextlib.asynccontextmanager
    async def _request(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str] | None = None,
        json: object = None,
        body: _Body | None = None,
        progress: ProgressCallback | None = None,
        retry: bool | None = None,
        ok_statuses: frozenset[int] = frozenset(),
        subject: str | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request (retrying as the module docstring says) and yield the successful response.

        A status in ``ok_statuses`` is yielded even when it is >= 400. The response is released on exit.
        ``subject`` (a path) prefixes the message of errors that come without a body (HEAD).
        """
        if retry is None:
            retry = method in ("GET", "HEAD", "DELETE") or (method == "PUT" and body is not None and body.replayable)
        attempts = 1 + (self._retries if retry else 0)
        deadline = time.monotonic() + self._timeout
        send_headers = dict(headers or {})
        if body is not None and body.size is not None:
            send_headers["Content-Length"] = str(body.size)
        counter = _Progress(progress)
        attempt = 0
        while True:
            data: AsyncIterator[bytes] | None = None
            if body is not None:
                data = counter.counting(body.make())
            try:
                resp = await self._http.request(method, url, headers=send_headers, json=json, data=data)
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                attempt += 1
                if attempt >= attempts or time.monotonic() + _backoff(attempt) > deadline:
                    raise CallFSUnavailable(f"{method} {url}: {exc or type(exc).__name__}", url=str(url)) from exc
                await asyncio.sleep(_backoff(attempt))
                continue
            try:
                if resp.status in _RETRY_STATUSES and resp.status not in ok_statuses:
                    attempt += 1
                    delay = _backoff(attempt)
                    retry_after = resp.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        delay = max(delay, float(retry_after))
                    if attempt < attempts and time.monotonic() + delay <= deadline:
                        resp.release()
                        await asyncio.sleep(delay)
                        continue
                if resp.status not in ok_statuses:
                    await self._raise_for(resp, subject)
                yield resp
                return
            finally:
                resp.release()

    async def _json(self, method: str, url: URL, **kwargs: Any) -> Any:
        async with self._request(method, url, **kwargs) as resp:
            try:
                return await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                raise CallFSUnavailable(f"{method} {url}: {exc}", url=str(url)) from exc

    # ---- system ----------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``GET /health`` → the JSON body (``{"status": "ok"}``).

        Raises:
            CallFSUnavailable: the server cannot be reached.
            CallFSError: the server answered with an error.
        """
        result: dict[str, Any] = await self._json("GET", self._url("/health"))
        return result

    async def ready(self) -> bool:
        """``GET /ready``: ``True`` when the node and its metadata store and lock service are reachable.

        Any non-200 answer (503 while a dependency is down) and an unreachable server give ``False``; never
        retried (the answer is the point).
        """
        try:
            async with self._request("GET", self._url("/ready"), retry=False) as resp:
                return resp.status == 200
        except (CallFSError, CallFSUnavailable):
            return False

    async def metrics(self) -> str:
        """``GET /metrics`` → the Prometheus text exposition (needs a valid key on the API port)."""
        async with self._request("GET", self._url("/metrics")) as resp:
            return await resp.text()

    async def cluster_nodes(self) -> list[NodeInfo]:
        """``GET /v1/cluster/nodes`` → every node the answering node knows of, itself included.

        Raises:
            CallFSUnavailable: the server cannot be reached.
            CallFSError: the server answered with an error (``Unauthorized`` for a bad key).
        """
        body = await self._json("GET", self._url("/v1/cluster/nodes"))
        return [NodeInfo.from_json(item) for item in body["nodes"]]

    async def cluster_replication(self) -> ReplicationInfo | None:
        """The redundancy of the cluster's block copies from ``GET /v1/cluster/nodes`` (``None``: the answering
        node's local backend is unavailable, or it predates replication).

        Raises:
            CallFSUnavailable: the server cannot be reached.
            CallFSError: the server answered with an error.
        """
        body = await self._json("GET", self._url("/v1/cluster/nodes"))
        found = body.get("replication")
        return ReplicationInfo.from_json(found) if isinstance(found, dict) else None

    def _drain_url(self, instance_id: str) -> URL:
        return self._url(f"/v1/cluster/nodes/{quote(instance_id, safe='')}/drain")

    async def drain_node(self, instance_id: str) -> DrainInfo:
        """``POST /v1/cluster/nodes/{instance_id}/drain`` (root only): mark the node leaving (again: no-op);
        its progress.

        Raises:
            NotFound: no such registered node.  PermissionDenied: not root.  CallFSUnavailable.
        """
        return DrainInfo.from_json(await self._json("POST", self._drain_url(instance_id), retry=True))

    async def drain_progress(self, instance_id: str) -> DrainInfo:
        """``GET /v1/cluster/nodes/{instance_id}/drain`` (root only). Raises ``NotFound`` (no such node, or not
        being drained), ``PermissionDenied``, ``CallFSUnavailable``."""
        return DrainInfo.from_json(await self._json("GET", self._drain_url(instance_id)))

    async def cancel_drain(self, instance_id: str) -> None:
        """``DELETE /v1/cluster/nodes/{instance_id}/drain`` (root only): the node is no longer leaving. Raises
        ``NotFound`` (no such node), ``PermissionDenied``, ``CallFSUnavailable``."""
        async with self._request("DELETE", self._drain_url(instance_id)):
            pass

    def _forget_url(self, instance_id: str) -> URL:
        return self._url(f"/v1/cluster/nodes/{quote(instance_id, safe='')}/forget")

    async def forget_node(self, instance_id: str) -> LostNodeInfo:
        """``POST /v1/cluster/nodes/{instance_id}/forget`` (root only): declare a node that went down for good
        lost (again: no-op); what it leaves behind.

        Raises:
            NodeLive: its heartbeat is recent (409).  NotFound: no such registered node.
            PermissionDenied: not root.  CallFSUnavailable.
        """
        return LostNodeInfo.from_json(await self._json("POST", self._forget_url(instance_id), retry=True))

    async def lost_node(self, instance_id: str) -> LostNodeInfo:
        """``GET /v1/cluster/nodes/{instance_id}/forget`` (root only). Raises ``NotFound`` (no such node, or not
        declared lost), ``PermissionDenied``, ``CallFSUnavailable``."""
        return LostNodeInfo.from_json(await self._json("GET", self._forget_url(instance_id)))

    # ---- metadata --------------------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        """``HEAD /v1/files/{path}`` → :class:`FileInfo` (with ``etag`` when the server sends one).

        Raises:
            NotFound: no such path (this method never returns ``None``; see :meth:`exists`).
            PermissionDenied, AuthenticationFailed, CallFSUnavailable: as usual.
        """
        async with self._request("HEAD", self._url(files_url_path(path)), subject=canonical(path)) as resp:
            return FileInfo.from_headers(path, resp.headers)

    async def exists(self, path: str) -> bool:
        """True when ``path`` exists (HEAD answered 2xx), False on 404; other errors raise."""
        try:
            await self.stat(path)
        except NotFound:
            return False
        return True

    async def list_dir(
        self, path: str = "/", *, recursive: bool = False, max_depth: int | None = None, page_size: int | None = None
    ) -> list[FileInfo]:
        """``GET /v1/directories/{path}?recursive=&max_depth=`` → the items, directories and files by name.

        ``max_depth`` (only with ``recursive``; server default 100, max 1000, 0 = children only) bounds how
        many levels below the children are included. ``page_size`` fetches the listing in pages of that many
        entries (see :meth:`iter_dir`); ``None`` asks for all of it at once.

        Raises:
            NotFound: no such directory.
            NotADirectory / BadRequest: ``path`` is a file (400).
        """
        return [
            item
            async for item in self.iter_dir(path, recursive=recursive, max_depth=max_depth, page_size=page_size)
        ]

    async def iter_dir(
        self, path: str = "/", *, recursive: bool = False, max_depth: int | None = None, page_size: int | None = 1000
    ) -> AsyncIterator[FileInfo]:
        """The entries of :meth:`list_dir`, fetched ``page_size`` (1 to 10000) at a time with ``?limit=`` and
        the server's ``next`` cursor (``None``: one request for all). A server without paged listings answers
        the first request with the whole listing, which is then all there is.

        Raises what :meth:`list_dir` raises, at the request of the page that fails.
        """
        query: dict[str, str] = {}
        if recursive:
            query["recursive"] = "true"
            if max_depth is not None:
                query["max_depth"] = str(max_depth)
        if page_size is not None:
            query["limit"] = str(page_size)
        while True:
            body = await self._json("GET", self._url(directories_url_path(path), query))
            items = body["items"] if isinstance(body, dict) else body
            for item in items:
                yield FileInfo.from_json(item)
            cursor = body.get("next") if isinstance(body, dict) and page_size is not None else None
            if not cursor:
                return
            query["after"] = str(cursor)

    # ---- reading ---------------------------------------------------------------------------------------

    async def read(self, path: str, *, offset: int = 0, length: int | None = None,
                   if_match: str | None = None) -> bytes:
        """Read ``length`` bytes (``None``: to the end) from ``offset`` with one ranged GET; for small reads.

        Reading at or past the end of the file returns ``b""`` (POSIX ``read`` semantics; the server's 416 is
        taken as end of file). Fewer bytes than ``length`` come back near the end of the file. ``if_match``
        (an ETag as the server sent it) pins the read to that version.

        Raises:
            NotFound: no such file.  IsADirectory: ``path`` is a directory.
            PreconditionFailed: ``if_match`` is not the file's current ETag.
            CallFSUnavailable: unreachable, or the connection broke and could not be resumed.
        """
        parts = [chunk async for chunk in self.iter_read(path, offset=offset, length=length, if_match=if_match)]
        return b"".join(parts)

    async def iter_read(
        self,
        path: str,
        *,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        if_match: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (``None``: to the end) from ``offset`` in chunks of at most ``chunk_size``.

        When the connection breaks mid-stream the read resumes where it stopped with a new ranged GET pinned
        to the same version (``If-Match`` with the first answer's ETag), within the retry budget; a file
        changed in between raises ``PreconditionFailed`` instead of mixing two versions. ``if_match`` pins
        the first request already (``PreconditionFailed`` when the file is no longer that version).

        Raises:
            as :meth:`read`.
        """
        if length == 0:
            return
        url = self._url(files_url_path(path))
        delivered = 0
        etag = if_match
        failures = 0
        while True:
            start = offset + delivered
            remaining = None if length is None else length - delivered
            headers: dict[str, str] = {}
            rng = range_header(start, remaining)
            if rng is not None:
                headers["Range"] = rng
            if etag is not None:
                headers["If-Match"] = etag
            try:
                async with self._request("GET", url, headers=headers, ok_statuses=frozenset({416})) as resp:
                    if resp.status == 416:
                        return
                    if resp.headers.get("X-CallFS-Type") == "directory":
                        raise IsADirectory(f"{canonical(path)} is a directory")
                    etag = etag or resp.headers.get("ETag")
                    skip = start if resp.status == 200 else 0  # a server that ignored Range
                    async for piece in resp.content.iter_chunked(chunk_size):
                        chunk = piece
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                        if length is not None:
                            chunk = chunk[: length - delivered]
                        if not chunk:
                            continue
                        delivered += len(chunk)
                        yield chunk
                        if length is not None and delivered >= length:
                            return
                    return
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                failures += 1
                if failures > self._retries:
                    raise CallFSUnavailable(f"GET {url}: stream broke: {exc}", url=str(url)) from exc
                await asyncio.sleep(_backoff(failures))

    async def download(
        self, path: str, dest: str | os.PathLike[str], *, progress: ProgressCallback | None = None
    ) -> int:
        """Stream a remote file to ``dest``: written to a temporary file beside it, fsynced, then renamed.

        ``dest`` never holds a partial file; on any error the temporary file is removed. Returns the number of
        bytes written.

        Raises:
            as :meth:`iter_read`; OSError for local failures.
        """
        return await _save(self.iter_read(path), dest, progress)

    # ---- WebSocket transfers ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _websocket(self, path: str, query: Mapping[str, str]) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """An open WebSocket to ``/v1/files/ws/{path}``; a refused handshake raises the error class of its
        status (the body of a refused handshake is not readable), an unreachable node ``CallFSUnavailable``."""
        url = self._url(websocket_url_path(path), query)
        try:
            ws = await self._http.ws_connect(url, autoclose=True, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            subject = f"WebSocket transfer of {canonical(path)} refused with HTTP {exc.status}"
            if exc.status == 409:
                raise AlreadyExists(subject) from exc
            raise error_from_body(exc.status, None, subject) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CallFSUnavailable(f"GET {url}: {exc or type(exc).__name__}", url=str(url)) from exc
        try:
            yield ws
        finally:
            await ws.close()

    async def iter_read_websocket(self, path: str) -> AsyncIterator[bytes]:
        """Stream a file over a WebSocket (``mode=download``): its binary frames (at most 1 MiB each).

        Raises:
            NotFound, PermissionDenied, IsADirectory, ...: refused (before or after the upgrade).
            CallFSUnavailable: unreachable, or the connection ended without the normal close (1000).
        """
        async with self._websocket(path, {"mode": "download"}) as ws:
            while True:
                try:
                    msg = await ws.receive(timeout=self._timeout)
                except TimeoutError as exc:
                    raise CallFSUnavailable(f"no frame from {ws._response.url} for {self._timeout:g} s") from exc
                if msg.type == aiohttp.WSMsgType.BINARY:
                    yield msg.data
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    raise _websocket_error(msg.data, f"download of {canonical(path)} failed")
                elif msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.OK:
                    return
                else:
                    raise CallFSUnavailable(f"download of {canonical(path)} ended early: {msg.type.name} {msg.data}")

    async def download_websocket(
        self, path: str, dest: str | os.PathLike[str], *, progress: ProgressCallback | None = None
    ) -> int:
        """As :meth:`download`, over a WebSocket (:meth:`iter_read_websocket`). Returns the bytes written."""
        return await _save(self.iter_read_websocket(path), dest, progress)

    async def upload_websocket(
        self,
        path: str,
        source: UploadSource,
        *,
        overwrite: bool = True,
        size: int | None = None,
        progress: ProgressCallback | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> bool:
        """As :meth:`upload`, over a WebSocket (``mode=upload``): ``source`` goes as binary frames of
        ``chunk_size`` bytes (at most 4 MiB), then the text message ``end``. Returns ``True`` when the file was
        created. Never retried. A known size is declared (``size=``) so a quota refuses it before any byte.

        Raises:
            AlreadyExists (``overwrite=False``), PermissionDenied, QuotaExceeded, PayloadTooLarge, ...
            CallFSUnavailable: unreachable, or the connection ended without a result.
        """
        if not 0 < chunk_size <= 4 * 1024 * 1024:
            raise ValueError("chunk_size must be between 1 byte and 4 MiB")
        body = _body_for(source, size, chunk_size)
        query = {"mode": "upload"}
        if not overwrite:
            query["overwrite"] = "false"
        if body.size is not None:
            query["size"] = str(body.size)
        async with self._websocket(path, query) as ws:
            # The node may refuse mid-way (quota, size): its message arrives while frames are still going out.
            answer = asyncio.ensure_future(ws.receive())
            try:
                chunks = _Progress(progress).counting(body.make())
                async for chunk in chunks:
                    if answer.done():
                        break
                    await ws.send_bytes(chunk)
                else:
                    if not answer.done():
                        await ws.send_str("end")
                msg = await asyncio.wait_for(asyncio.shield(answer), self._timeout)
            except (ConnectionError, aiohttp.ClientError):
                msg = await asyncio.wait_for(asyncio.shield(answer), self._timeout)  # the node closed: why?
            except TimeoutError as exc:
                raise CallFSUnavailable(f"no result for the upload of {canonical(path)}") from exc
            finally:
                if not answer.done():
                    answer.cancel()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise CallFSUnavailable(f"upload of {canonical(path)} ended without a result: {msg.type.name} {msg.data}")
        result = jsonlib.loads(msg.data)
        if not isinstance(result, dict) or result.get("ok") is not True:
            raise _websocket_error(msg.data, f"upload of {canonical(path)} failed")
        return bool(result.get("created"))

    # ---- writing ---------------------------------------------------------------------------------------

    async def upload(
        self,
        path: str,
        source: UploadSource,
        *,
        overwrite: bool = True,
        size: int | None = None,
        progress: ProgressCallback | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> bool:
        """Stream ``source`` into the remote file ``path``; returns ``True`` when it was created (201).

        ``source``: bytes-like, a local file path, a binary file object (read from its current position), or
        an async iterable of byte chunks. ``size`` (bytes) is sent as ``Content-Length`` when given or known
        (paths, seekable files, bytes); otherwise the body goes chunked. ``overwrite=True`` sends PUT (create
        or replace; retried when the source can be replayed), ``False`` sends POST (create only, never
        retried). Missing parent directories are created by the server.

        Raises:
            AlreadyExists: ``overwrite=False`` and the path exists.
            BadRequest / IsADirectory: ``path`` is a directory.  PermissionDenied, QuotaExceeded, ...
            CallFSUnavailable: unreachable or the connection broke.
        """
        method = "PUT" if overwrite else "POST"
        answer = await self._send(method, path, _body_for(source, size, chunk_size), progress=progress)
        return answer.created

    async def put_file(self, path: str, source: UploadSource, *, size: int | None = None,
                       if_match: str | None = None, created_at: datetime | None = None) -> WriteAnswer:
        """Create or replace the remote file ``path`` with ``source`` (as :meth:`upload` with ``PUT``), only
        while it is still the version ``if_match`` names when given (an ETag as the server sent it).
        ``created_at`` (timezone-aware; sent as ``X-CallFS-MTime``): the times a file this PUT creates gets
        (when the client made it; never later than the server's now); an overwrite ignores it.

        Raises:
            PreconditionFailed: the file is not (or no longer) that version; nothing changed.
            as :meth:`upload` otherwise.
        """
        body = _body_for(source, size, DEFAULT_CHUNK_SIZE)
        headers = None if created_at is None else {"X-CallFS-MTime": created_at.astimezone(UTC).isoformat()}
        return await self._send("PUT", path, body, headers=headers, if_match=if_match)

    async def write_range(self, path: str, source: UploadSource, offset: int, length: int, *,
                          if_match: str | None = None) -> WriteAnswer:
        """Write ``length`` bytes of ``source`` at byte ``offset`` of the existing file ``path``
        (``PUT`` with ``Content-Range: bytes FIRST-LAST/*``, docs/rest-api.md "Partial writes"); at the
        file's size it appends, past it the gap reads as zeros. ``source`` as for :meth:`upload`, holding
        exactly ``length`` bytes (a file object is read from its current position). ``if_match`` as for
        :meth:`put_file`. Retried like an upload (the same bytes at the same place).

        Raises:
            ValueError: ``offset`` < 0 or ``length`` < 1 (a range has at least one byte).
            NotFound: no such file (create it with :meth:`upload` first).  PreconditionFailed: ``if_match``.
            BadRequest: the body is not ``length`` bytes.  QuotaExceeded, PayloadTooLarge, PermissionDenied...
        """
        if offset < 0 or length < 1:
            raise ValueError(f"bad range: offset={offset} length={length}")
        body = _body_for(source, length, DEFAULT_CHUNK_SIZE)
        headers = {"Content-Range": f"bytes {offset}-{offset + length - 1}/*"}
        return await self._send("PUT", path, body, headers=headers, if_match=if_match)

    async def resize(self, path: str, size: int, *, if_match: str | None = None) -> WriteAnswer:
        """Truncate or extend the existing file ``path`` to ``size`` bytes (``PATCH {"size"}``; new bytes read
        as zeros); ``if_match`` as for :meth:`put_file`. Retried on transient failures (setting a size twice
        is the same as once).

        Raises:
            ValueError: ``size`` < 0.  NotFound, IsADirectory, PreconditionFailed, QuotaExceeded...
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        headers = {"If-Match": if_match} if if_match is not None else {}
        async with self._request("PATCH", self._url(files_url_path(path)), headers=headers, json={"size": size},
                                 retry=True) as resp:
            return WriteAnswer(created=False, etag=resp.headers.get("ETag"))

    async def _send(self, method: str, path: str, body: _Body, *, headers: Mapping[str, str] | None = None,
                    if_match: str | None = None, progress: ProgressCallback | None = None) -> WriteAnswer:
        send_headers = {"Content-Type": "application/octet-stream", **(headers or {})}
        if if_match is not None:
            send_headers["If-Match"] = if_match
        async with self._request(
            method, self._url(files_url_path(path)), headers=send_headers, body=body, progress=progress
        ) as resp:
            return WriteAnswer(created=resp.status == 201, etag=resp.headers.get("ETag"))

    async def mkdir(self, path: str, *, exist_ok: bool = True, parents: bool = True) -> bool:
        """Create a directory (``POST /v1/files/{path}/``); returns ``True`` when it was created (201).

        ``exist_ok=False`` turns "already a directory" (200) into :class:`AlreadyExists`. ``parents=False``
        requires the parent to exist (checked first); with ``parents=True`` missing ancestors are created.

        Raises:
            AlreadyExists: the path exists as a file (409), or as a directory with ``exist_ok=False``.
            NotFound: ``parents=False`` and the parent is missing.
        """
        canon = canonical(path)
        if canon == paths.ROOT:
            if not exist_ok:
                raise AlreadyExists("/ already exists")
            return False
        parent = paths.parent_of(canon)
        if not parents and parent is not None and parent != paths.ROOT:
            info = await self.stat(parent)
            if not info.is_dir:
                raise NotADirectory(f"{parent} is not a directory")
        try:
            created = await self._post_dir(canon)
        except NotFound:
            # A server that does not create missing parents for directories: create them top-down.
            for ancestor in paths.ancestors(canon)[1:]:
                await self._post_dir(ancestor)
            created = await self._post_dir(canon)
        if not created and not exist_ok:
            raise AlreadyExists(f"{canon} already exists")
        return created

    async def symlink(self, path: str, target: str) -> FileInfo:
        """Create the symbolic link ``path`` → ``target`` (``POST /v1/files/{path}`` with ``X-CallFS-Target``); the
        server stores ``target`` as given and never follows it. Returns the link's attributes.

        Raises:
            AlreadyExists: something is at ``path``.  NotFound: no parent directory.
            BadRequest: a bad target (empty, 4096 bytes or more, control characters).
        """
        headers = {"X-CallFS-Target": quote(target, safe="/")}
        body = await self._json("POST", self._url(files_url_path(path)), headers=headers)
        return FileInfo.from_json(body)

    async def link(self, source: str, path: str) -> FileInfo:
        """Give the entry ``source`` (not a directory) the second name ``path``, a hard link (``POST
        /v1/files/{path}`` with ``X-CallFS-Link-To``): both names are one inode. Returns the new name's
        attributes (``nlink`` counts the names).

        Raises:
            AlreadyExists: something is at ``path``.  NotFound: no ``source``, or no parent directory of ``path``.
            IsADirectory: ``source`` is a directory.  CrossesQuotaRoot: the names would lie under different
            quota roots.  PermissionDenied: see the API's rules.
        """
        headers = {"X-CallFS-Link-To": quote(canonical(source), safe="/")}
        body = await self._json("POST", self._url(files_url_path(path)), headers=headers)
        return FileInfo.from_json(body)

    async def mknod(self, path: str, special: str, rdev: int = 0) -> FileInfo:
        """Create the special file ``path`` (``POST /v1/files/{path}`` with ``X-CallFS-Special``): ``special`` is
        ``fifo``, ``socket``, ``char`` or ``block``, ``rdev`` a device node's number. An entry only: the server
        stores and serves no bytes for it. Returns its attributes.

        Raises:
            AlreadyExists: something is at ``path``.  NotFound: no parent directory.  BadRequest: a bad kind/rdev.
        """
        headers = {"X-CallFS-Special": special, "X-CallFS-Rdev": str(rdev)}
        body = await self._json("POST", self._url(files_url_path(path)), headers=headers)
        return FileInfo.from_json(body)

    async def _post_dir(self, canon: str) -> bool:
        async with self._request("POST", self._url(files_url_path(canon, directory=True))) as resp:
            return resp.status == 201

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file or an empty directory; ``recursive=True`` deletes a whole subtree.

        Raises:
            NotFound: no such path (also when a retried DELETE finds its first attempt already applied).
            DirectoryNotEmpty: a non-empty directory without ``recursive``.
        """
        query = {"recursive": "true"} if recursive else None
        async with self._request("DELETE", self._url(files_url_path(path), query)):
            return

    async def _patch(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("PATCH", self._url(files_url_path(path)), json=payload)
        return result

    async def move(self, src: str, dst: str, *, overwrite: bool = False, create_parents: bool = False) -> str:
        """Move/rename ``src`` to the absolute path ``dst`` (PATCH ``{"destination"}``); returns the new path.

        A directory moves with its whole subtree, atomically.

        Raises:
            NotFound: ``src`` missing (or ``dst``'s parent, without ``create_parents``).
            AlreadyExists: ``dst`` exists and ``overwrite`` is false.
            BadRequest: moving the root or a directory into itself.
        """
        payload = {"destination": canonical(dst), "overwrite": overwrite, "create_parents": create_parents}
        return str((await self._patch(src, payload))["path"])

    async def exchange(self, first: str, second: str) -> None:
        """Swap two entries atomically (PATCH ``{"destination", "exchange": true}``, Linux
        ``renameat2(RENAME_EXCHANGE)``).

        Raises:
            NotFound: either is missing.  BadRequest: the root, or one inside the other.
        """
        await self._patch(first, {"destination": canonical(second), "exchange": True})

    async def copy(
        self, src: str, dst: str, *, recursive: bool = False, into: bool = False, owner: str | None = None
    ) -> CopyInfo:
        """Copy ``src`` to ``dst`` on the server (``POST /v1/copies``), sharing its bytes (copy-on-write): one
        metadata transaction, no byte sent. ``recursive`` copies a directory; ``into`` copies its entries into
        the existing, empty directory ``dst``; ``owner`` (root only) gives every copy to that user (owner and
        group). Not retried (a retry could find its first attempt applied).

        Raises:
            NotFound: ``src`` missing (or, from a server without copies, the route).
            MethodNotAllowed: a server without copies.
            AlreadyExists: ``dst`` exists.  DirectoryNotEmpty: ``into`` a non-empty directory.
            BadRequest: a directory without ``recursive``, ``into`` with a file, into itself.
            QuotaExceeded: the destination's quota is too small (nothing copied).  PermissionDenied.
        """
        payload: dict[str, Any] = {"source": canonical(src), "destination": canonical(dst), "recursive": recursive,
                                   "into": into}
        if owner is not None:
            payload["owner"] = owner
        return CopyInfo.from_json(await self._json("POST", self._url("/v1/copies"), json=payload, retry=False))

    async def rename(self, path: str, new_name: str) -> str:
        """Rename in place (PATCH ``{"name"}``); ``new_name`` is one segment. Returns the new path.

        Raises:
            BadRequest: ``new_name`` is not a single valid segment.  AlreadyExists: the name is taken.
        """
        return str((await self._patch(path, {"name": new_name}))["path"])

    async def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits (``0o640``; sticky bit allowed). Owner or root only.

        Raises:
            PermissionDenied: not the owner.  ValueError: bits outside ``0o7777``.
        """
        if not 0 <= mode <= 0o7777:
            raise ValueError(f"mode {mode:o} outside 0..7777")
        await self._patch(path, {"mode": f"{mode:04o}"})

    async def set_attributes(
        self, path: str, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
        atime: datetime | Literal["now"] | None = None, mtime: datetime | Literal["now"] | None = None,
    ) -> FileInfo:
        """chmod, numeric chown and utimensat in one ``PATCH`` (``None``: unchanged); returns the new attributes.

        ``mode`` in ``0..0o7777`` (setuid, setgid, sticky included); ``uid``/``gid`` in ``0..2**32-2``;
        ``atime``/``mtime`` timezone-aware datetimes (microseconds kept) or ``"now"`` (the server's clock).

        Raises:
            PermissionDenied: not the owner (for times given as values; ``"now"`` also needs write permission).
            NotFound: no such entry.  ValueError: nothing to change, or a mode outside ``0o7777``.
        """
        payload: dict[str, Any] = {}
        if mode is not None:
            if not 0 <= mode <= 0o7777:
                raise ValueError(f"mode {mode:o} outside 0..7777")
            payload["mode"] = f"{mode:04o}"
        for key, number in (("uid", uid), ("gid", gid)):
            if number is not None:
                payload[key] = number
        for key, moment in (("atime", atime), ("mtime", mtime)):
            if moment is not None:
                payload[key] = moment if isinstance(moment, str) else moment.isoformat()
        if not payload:
            raise ValueError("set_attributes needs at least one attribute")
        return FileInfo.from_json(await self._patch(path, payload))

    async def chown(self, path: str, owner: str) -> None:
        """Give ``path`` to the user ID ``owner``. Owner or root only.

        Raises:
            PermissionDenied: not allowed.
        """
        await self._patch(path, {"owner": owner})

    # ---- quotas ----------------------------------------------------------------------------------------

    async def get_quota(self, path: str) -> QuotaInfo:
        """``GET /v1/quotas/{path}`` → limits and usage. Raises ``NotFound`` (no directory or no quota)."""
        body = await self._json("GET", self._url(quotas_url_path(path)))
        return QuotaInfo.from_json(body)

    async def set_quota(
        self, path: str, *, bytes_limit: int | None = None, inodes_limit: int | None = None
    ) -> QuotaInfo:
        """``PUT /v1/quotas/{path}`` (root only): set or change the limits of a directory; returns the quota.

        Raises ``BadRequest`` (no limit, or a limit that is not a positive integer), ``PermissionDenied``,
        ``NotFound``, ``NotADirectory``.
        """
        body = await self._json("PUT", self._url(quotas_url_path(path)),
                                json={"bytes_limit": bytes_limit, "inodes_limit": inodes_limit})
        return QuotaInfo.from_json(body)

    async def delete_quota(self, path: str) -> None:
        """``DELETE /v1/quotas/{path}`` (root only). Raises ``NotFound`` when none is set."""
        async with self._request("DELETE", self._url(quotas_url_path(path))):
            pass

    # ---- file locks (flock / fcntl) ----------------------------------------------------------------------

    async def open_lock_session(self, ttl: float | None = None) -> LockSessionInfo:
        """``POST /v1/lock-sessions``: a new lock session living ``ttl`` seconds (default: the node's
        ``dlm.lock_session_ttl``) unless renewed with :meth:`renew_lock_session`. Every file lock is taken under
        a session; ending it (or letting it expire) releases them all. Raises ``BadRequest`` (ttl out of 1 to
        3600 seconds)."""
        body = await self._json("POST", self._url("/v1/lock-sessions"), json={} if ttl is None else {"ttl": ttl})
        return LockSessionInfo.from_json(body)

    async def renew_lock_session(self, session: str) -> LockSessionInfo:
        """``PUT /v1/lock-sessions/{session}``: the heartbeat, restarting its TTL. Raises
        ``LockSessionNotFound`` when it ended or expired (its locks are gone)."""
        body = await self._json("PUT", self._url(f"/v1/lock-sessions/{quote(session, safe='')}"), retry=True)
        return LockSessionInfo.from_json(body)

    async def close_lock_session(self, session: str) -> None:
        """``DELETE /v1/lock-sessions/{session}``: end it and release every lock held under it. Raises
        ``LockSessionNotFound``."""
        async with self._request("DELETE", self._url(f"/v1/lock-sessions/{quote(session, safe='')}")):
            pass

    async def lock_file(
        self, path: str, *, session: str, owner: str, kind: Literal["flock", "posix"] = "posix",
        type: Literal["read", "write", "unlock"] = "write", start: int = 0, length: int = 0, pid: int = 0,
        wait: bool = False, wait_timeout: float | None = None, cancelled: Callable[[], bool] | None = None,
    ) -> None:
        """``POST /v1/file-locks/{path}``: take (``read``/``write``), convert, or release (``unlock``) a lock of
        ``kind`` over ``length`` bytes from ``start`` (``length`` 0: to the end of the file; ``flock`` locks are
        always the whole file) for ``owner`` under ``session``.

        The server never waits. With ``wait`` (``F_SETLKW``, ``flock`` without ``LOCK_NB``) this method retries
        a conflict after 10 ms, doubling to 500 ms between attempts (:data:`LOCK_POLL_FIRST`,
        :data:`LOCK_POLL_MAX`), until granted, ``wait_timeout`` seconds passed (``None``: no limit), or
        ``cancelled()`` answers true (checked before every retry; then :class:`asyncio.CancelledError`).

        Raises:
            LockConflict: another owner holds a conflicting lock (``error.extra["conflict"]`` describes it).
            LockSessionNotFound: the session ended or expired.
            NotFound, PermissionDenied, BadRequest: as for the path and the fields.
        """
        url = self._url(file_locks_url_path(path))
        payload = {"session": session, "owner": owner, "kind": kind, "type": type, "start": start,
                   "length": length, "pid": pid}
        deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
        delay = LOCK_POLL_FIRST
        while True:
            try:
                await self._json("POST", url, json=payload, retry=True)
                return
            except LockConflict:
                if not wait or (deadline is not None and time.monotonic() + delay > deadline):
                    raise
            if cancelled is not None and cancelled():
                raise asyncio.CancelledError(f"wait for a lock on {path} interrupted")
            await asyncio.sleep(delay)
            delay = min(delay * 2, LOCK_POLL_MAX)

    async def test_file_lock(
        self, path: str, *, type: Literal["read", "write"], kind: Literal["flock", "posix"] = "posix",
        start: int = 0, length: int = 0, session: str = "", owner: str = "",
    ) -> FileLockInfo | None:
        """``GET /v1/file-locks/{path}?type=...`` (``F_GETLK``): the lock that would keep ``owner`` of
        ``session`` from taking this one now, or ``None`` when it could be taken. Raises ``NotFound``,
        ``PermissionDenied``, ``BadRequest``."""
        query = {"type": type, "kind": kind, "start": str(start), "length": str(length), "session": session,
                 "owner": owner}
        async with self._request("GET", self._url(file_locks_url_path(path), query),
                                 ok_statuses=frozenset({409})) as resp:
            body = await resp.json(content_type=None)
        if resp.status == 409:
            if isinstance(body, dict) and body.get("code") == LockConflict.code:
                return FileLockInfo.from_json(body["conflict"])
            raise error_from_body(resp.status, body, f"{path}: conflict")
        return None

    async def file_locks(self, path: str) -> list[FileLockInfo]:
        """``GET /v1/file-locks/{path}``: every lock held on the file (all its names: locks belong to the inode)."""
        body = await self._json("GET", self._url(file_locks_url_path(path)))
        return [FileLockInfo.from_json(item) for item in body["locks"]]

    # ---- extended attributes ---------------------------------------------------------------------------

    async def listxattr(self, path: str) -> list[str]:
        """``GET /v1/xattrs/{path}`` → the names of the entry's extended attributes the caller may see, in name
        order (``trusted.*`` ones for superusers only). Needs no permission on the entry itself.

        Raises:
            NotFound: no entry at ``path``.  PermissionDenied: search permission on a parent, or a scoped key.
        """
        body = await self._json("GET", self._url(xattrs_url_path(path)))
        return [str(item["name"]) for item in body["xattrs"]]

    async def getxattrs(self, path: str) -> dict[str, bytes]:
        """``GET /v1/xattrs/{path}?values=true`` → every extended attribute the caller may see, values by name
        in name order.

        Raises:
            NotFound: no entry.  PermissionDenied: no ``r`` on the entry (when it has attributes), search, scope.
        """
        body = await self._json("GET", self._url(xattrs_url_path(path), {"values": "true"}))
        return {str(item["name"]): base64.b64decode(item["value"]) for item in body["xattrs"]}

    async def getxattr(self, path: str, name: str) -> bytes:
        """``GET /v1/xattrs/{path}?name=`` → the value of the extended attribute ``name`` (0 to 64 KiB).

        Raises:
            XattrNotFound: the entry has no such attribute (or one the caller may not see).  NotFound: no entry.
            BadXattrName: an empty or over-long name.  XattrNotSupported: a namespace other than ``user.``,
            ``trusted.``, ``security.``.  PermissionDenied: no ``r`` on the entry, search, scope.
        """
        async with self._request("GET", self._url(xattrs_url_path(path), {"name": name})) as resp:
            try:
                return await resp.read()
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                raise CallFSUnavailable(f"GET {resp.url}: {exc}", url=str(resp.url)) from exc

    async def setxattr(
        self, path: str, name: str, value: bytes, *, mode: Literal["any", "create", "replace"] = "any"
    ) -> bool:
        """``PUT /v1/xattrs/{path}?name=&mode=``: set the extended attribute ``name`` to ``value`` (``mode``
        ``create``/``replace`` as ``XATTR_CREATE``/``XATTR_REPLACE``); True when it was created. Retried on
        connection errors unless ``mode`` is ``create`` (a lost answer would make the retry fail with
        ``XattrExists``).

        Raises:
            XattrExists: ``create`` and it exists.  XattrNotFound: ``replace`` and it does not.
            XattrTooLarge: ``value`` over 64 KiB.  XattrsFull: no room left on the inode.  BadXattrName,
            XattrNotSupported: see :meth:`getxattr`.  NotFound: no entry.  PermissionDenied: no ``w`` on the
            entry (``user.*``), not a superuser (``trusted.*``, ``security.*``), search, scope.
        """
        data = bytes(value)
        body = _Body(lambda: _iter_memory(memoryview(data), max(1, len(data))), len(data), True)
        url = self._url(xattrs_url_path(path), {"name": name, "mode": mode})
        async with self._request("PUT", url, body=body, retry=mode != "create") as resp:
            return resp.status == 201

    async def removexattr(self, path: str, name: str) -> None:
        """``DELETE /v1/xattrs/{path}?name=``: remove the extended attribute ``name``.

        Raises:
            XattrNotFound: there is none.  NotFound: no entry.  PermissionDenied: as for :meth:`setxattr`.
        """
        async with self._request("DELETE", self._url(xattrs_url_path(path), {"name": name})):
            pass

    # ---- run-time API keys -----------------------------------------------------------------------------

    async def register_key(self, user: str, key: str, scope: str) -> bool:
        """``POST /v1/keys`` (root only): requests with ``key`` act as ``user``, confined to the path ``scope``;
        True when newly registered, False when it already was (same user and scope).

        Raises:
            BadRequest: an invalid or superuser name, a key of fewer than 16 printable characters, a bad scope.
            Conflict: the key is in use otherwise.  PermissionDenied: not root.
        """
        payload = {"user": user, "key": key, "scope": canonical(scope)}
        async with self._request("POST", self._url("/v1/keys"), json=payload, retry=True) as resp:
            return resp.status == 201

    async def revoke_keys(self, user: str) -> int:
        """``DELETE /v1/keys/{user}`` (root only): revoke every run-time key of ``user``; how many there were.

        Raises:
            BadRequest: an invalid user name.  PermissionDenied: not root.
        """
        body = await self._json("DELETE", self._url("/v1/keys/" + quote(user, safe="")))
        return int(body["revoked"])

    # ---- links -----------------------------------------------------------------------------------------

    async def create_link(self, path: str, expiry_seconds: int) -> dict[str, Any]:
        """Mint a single-use download link (``POST /v1/links/generate``) valid ``expiry_seconds`` (1..86400).

        Returns ``{"url", "token", "expires"}``; the url needs no key and works once.

        Raises:
            BadRequest: expiry out of range or ``path`` is a directory.  NotFound: no such file.
        """
        payload = {"path": canonical(path), "expiry_seconds": expiry_seconds}
        result: dict[str, Any] = await self._json("POST", self._url("/v1/links/generate"), json=payload)
        return result
