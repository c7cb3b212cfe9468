"""``GET /v1/files/ws/{path}?mode=download|upload``: file transfers over a WebSocket (docs/rest-api.md,
"WebSocket transfers").

Everything that can be refused before a byte moves (authentication, the mode, the path, permissions, an
existing directory, a declared size over the quota) is refused before the upgrade, as a plain JSON HTTP
error. Once upgraded, a failure is a JSON text message ``{"ok": false, "status", "code", "message"}``
followed by a close frame: 1008 (the caller's fault, quotas included), 1009 (too big) or 1011 (the node's).

Memory stays bounded: an upload's binary frames feed :meth:`Engine.write_file` one by one (the same
permission, quota, lock and size rules as PUT), a download sends frames of at most :data:`FRAME_BYTES`.
When the bytes of the file live on another node, the transfer is relayed over plain HTTP (GET or PUT) to
that node.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from callfs import paths
from callfs.api import files, render
from callfs.api.conditional import write_precondition
from callfs.api.keys import NODE, REQUEST_ID, caller
from callfs.api.proxy import FORWARD_ATTEMPTS
from callfs.api.requests import conditions, request_path
from callfs.engine import RemoteBytes
from callfs.errors import (
    BadGateway,
    BadRequest,
    CallFSError,
    IsADirectory,
    PayloadTooLarge,
    QuotaExceeded,
    RequestTimeout,
    ServiceUnavailable,
    error_class_for,
)
from callfs.models import Inode
from callfs.peers import forward_headers

log = logging.getLogger("callfs.http")

PREFIX = "/v1/files/ws/"
FRAME_BYTES = 1 << 20
"""Largest binary frame a download sends (1 MiB)."""
MAX_UPLOAD_FRAME_BYTES = 4 << 20
"""Largest frame an upload may send (4 MiB); a bigger one closes the connection with 1009."""
END_MESSAGE = "end"
"""The text message that ends an upload's data."""
CLOSE_TIMEOUT = 5.0
"""Seconds the node waits for the client to answer its close frame."""

_CONDITIONAL = ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")
_META_HEADERS = ("ETag", "Last-Modified")


class _ClientGone(Exception):
    """The client closed the connection (or it broke) before the upload's end message: nothing is written."""


def add_routes(app: web.Application) -> None:
    """Register the route; must come before the ``/v1/files/{path}`` routes, which would match it too."""
    app.router.add_route("GET", PREFIX + r"{tail:[\s\S]*}", websocket_transfer)


def close_code(exc: CallFSError) -> int:
    """The close code for an error after the upgrade: 1009 too big, 1008 the caller's fault, 1011 otherwise."""
    if isinstance(exc, PayloadTooLarge):
        return int(WSCloseCode.MESSAGE_TOO_BIG)
    if exc.status < 500 or isinstance(exc, QuotaExceeded):
        return int(WSCloseCode.POLICY_VIOLATION)
    return int(WSCloseCode.INTERNAL_ERROR)


async def _fail(request: web.Request, ws: web.WebSocketResponse, exc: CallFSError) -> None:
    """Send ``exc`` as ``{"ok": false, "status", "code", "message", ...}`` and close with its close code."""
    if exc.status >= 500 and not isinstance(exc, QuotaExceeded):
        log.warning("%s: %s", exc.code, exc.message, extra={
            "request_id": request.get(REQUEST_ID), "path": request.rel_url.raw_path, "status": exc.status,
            "code": exc.code,
        })
    if ws.closed:
        return
    await ws.send_str(json.dumps({"ok": False, "status": exc.status, **exc.body()}))
    await ws.close(code=close_code(exc), message=exc.code.encode())


async def _refuse(
    request: web.Request, ws: web.WebSocketResponse, error: CallFSError, cause: BaseException | None = None
) -> web.WebSocketResponse:
    """Answer a failed upload with ``error``: raised (from ``cause``, if any) while the connection is not
    upgraded yet, so that it is answered over HTTP; sent by :func:`_fail` once it is."""
    if not ws.prepared:
        if cause is not None:
            raise error from cause
        raise error
    await _fail(request, ws, error)
    return ws


def _peer_error(status: int, raw: bytes) -> CallFSError:
    """The error a peer answered, rebuilt from its status and JSON body."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code, message = str(body.pop("code", "")), str(body.pop("message", "") or f"node answered {status}")
    return error_class_for(code, status)(message, **body)


def _is_websocket(request: web.Request) -> bool:
    upgrade = request.headers.get("Upgrade", "").lower()
    return "upgrade" in request.headers.get("Connection", "").lower() and upgrade == "websocket"


def _new_socket(request: web.Request) -> web.WebSocketResponse:
    timeout = request.app[NODE].config.server.read_timeout
    return web.WebSocketResponse(max_msg_size=MAX_UPLOAD_FRAME_BYTES, timeout=CLOSE_TIMEOUT, receive_timeout=timeout)


def _backend_choice(request: web.Request) -> str | None:
    return request.headers.get("X-CallFS-Backend") or request.query.get("backend") or None


def _cause(exc: BaseException) -> BaseException | None:
    """The :class:`_ClientGone` or :class:`CallFSError` behind a client error raised while sending a body."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, _ClientGone | CallFSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _peer_url_path(path: str) -> str:
    return files.PREFIX + quote(path.lstrip("/"))


async def _peer_headers(request: web.Request, extra: dict[str, str] | None = None) -> dict[str, str]:
    node = request.app[NODE]
    headers = forward_headers(
        {k: request.headers[k] for k in _CONDITIONAL if k in request.headers},
        secret=node.credentials.internal_proxy_secret, user=caller(request).user,
        hops=[node.credentials.instance_id], scope=caller(request).scope,
    )
    headers["X-Request-ID"] = request[REQUEST_ID]
    headers.update(extra or {})
    return headers


async def websocket_transfer(request: web.Request) -> web.StreamResponse:
    """Upgrade to a WebSocket and download (``mode=download``, the default) or upload (``mode=upload``).

    A request that is not a WebSocket handshake is a plain ``GET /v1/files/ws/...`` of a file under ``/ws``.
    Raises (before the upgrade) ``BadRequest`` for another mode, a path naming a directory or a bad ``size``,
    and what :func:`_download` and :func:`_upload` raise before the upgrade.
    """
    if not _is_websocket(request):
        return await files.get_file(request)
    mode = (request.query.get("mode") or "download").strip().lower()
    if mode not in ("download", "upload"):
        raise BadRequest(f"mode must be download or upload, not {mode!r}")
    target = request_path(request, PREFIX)
    if target.path == paths.ROOT or target.is_dir_hint:
        raise IsADirectory("a WebSocket transfer needs a file path, not a directory")
    if mode == "download":
        return await _download(request, target.path)
    return await _upload(request, target.path)


# ------------------------------------------------------------------------------------------- download


async def _download(request: web.Request, path: str) -> web.StreamResponse:
    """Send the file as binary frames of at most :data:`FRAME_BYTES`, then close with 1000.

    The handshake answer carries the file's ``X-CallFS-*``, ``ETag`` and ``Last-Modified`` headers. Raises
    (before the upgrade) ``NotFound``, ``PermissionDenied``, ``IsADirectory``, ``BadGateway`` (the node
    holding the bytes does not answer) and ``ServiceUnavailable`` (the bytes keep moving between nodes).
    """
    engine = request.app[NODE].engine
    for _ in range(FORWARD_ATTEMPTS):
        try:
            opened = await engine.open_file(caller(request), path)
        except RemoteBytes as remote:
            relayed = await _download_from_peer(request, remote.inode)
            if relayed is not None:
                return relayed
            continue
        reader = opened.reader
        try:
            ws = _new_socket(request)
            ws.headers.update(render.headers(opened.inode.evolve(size=reader.size)))
            await ws.prepare(request)
            try:
                async for chunk in reader.iter_range(0, reader.size, FRAME_BYTES):
                    await ws.send_bytes(chunk)
                    request.app[NODE].metrics.bytes_sent.inc(len(chunk))
            except (ConnectionError, aiohttp.ClientConnectionResetError):
                return ws  # the client went away
            except CallFSError as exc:
                await _fail(request, ws, exc)
                return ws
            except OSError as exc:
                await _fail(request, ws, CallFSError(f"reading {path} failed: {exc}"))
                return ws
            await ws.close(code=WSCloseCode.OK, message=b"download complete")
            return ws
        finally:
            await reader.close()
    raise ServiceUnavailable("the bytes of this file keep moving between nodes; retry")


async def _download_from_peer(request: web.Request, inode: Inode) -> web.StreamResponse | None:
    """Relay the bytes from the node holding them (its plain GET) as frames; ``None`` when that node no
    longer holds them (decide again). Raises (before the upgrade) ``BadGateway`` and the peer's errors."""
    node = request.app[NODE]
    assert inode.instance_id is not None
    base = await node.peers.url_of(inode.instance_id)
    ws: web.WebSocketResponse | None = None
    try:
        async with node.peers.session.get(
            base + _peer_url_path(inode.path), headers=await _peer_headers(request), allow_redirects=False,
        ) as upstream:
            if upstream.status == 508:
                return None
            if upstream.status != 200:
                raise _peer_error(upstream.status, await upstream.read())
            ws = _new_socket(request)
            for name, value in upstream.headers.items():
                if name.lower().startswith("x-callfs-") or name in _META_HEADERS:
                    ws.headers[name] = value
            await ws.prepare(request)
            try:
                async for chunk in upstream.content.iter_chunked(FRAME_BYTES):
                    await ws.send_bytes(chunk)
                    node.metrics.bytes_sent.inc(len(chunk))
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                return ws
            await ws.close(code=WSCloseCode.OK, message=b"download complete")
            return ws
    except (TimeoutError, aiohttp.ClientError) as exc:
        error = BadGateway(f"node {inode.instance_id} at {base} did not answer: {type(exc).__name__}")
        if ws is None:
            raise error from exc
        await _fail(request, ws, error)
        return ws


# --------------------------------------------------------------------------------------------- upload


def _declared_size(request: web.Request) -> int | None:
    """``?size=`` in bytes (optional). Raises ``BadRequest``, ``PayloadTooLarge`` (over max_body_bytes)."""
    text = request.query.get("size")
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise BadRequest(f"size must be a number of bytes, not {text!r}")
    size = int(text)
    limit = request.app[NODE].config.server.max_body_bytes
    if size > limit:
        raise PayloadTooLarge(f"upload of {size} bytes exceeds the limit of {limit}")
    return size


async def _frames(request: web.Request, ws: web.WebSocketResponse) -> AsyncIterator[bytes]:
    """Upgrade (on the first read: every check the engine makes before reading has passed), then yield the
    binary frames until the text message ``end``.

    Raises ``BadRequest`` (another text message), ``RequestTimeout`` (no frame for ``server.read_timeout``
    seconds), ``PayloadTooLarge`` (a frame over :data:`MAX_UPLOAD_FRAME_BYTES`) and :class:`_ClientGone`.
    """
    await ws.prepare(request)
    counter = request.app[NODE].metrics.bytes_received
    while True:
        try:
            msg = await ws.receive()
        except TimeoutError as exc:
            timeout = request.app[NODE].config.server.read_timeout
            raise RequestTimeout(f"no frame received for {timeout:g} seconds (server.read_timeout)") from exc
        if msg.type == WSMsgType.BINARY:
            counter.inc(len(msg.data))
            yield msg.data
        elif msg.type == WSMsgType.TEXT:
            if msg.data.strip() == END_MESSAGE:
                return
            raise BadRequest(f"expected binary frames, then the text message {END_MESSAGE!r}")
        elif msg.type == WSMsgType.ERROR and ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
            raise PayloadTooLarge(f"frame larger than {MAX_UPLOAD_FRAME_BYTES} bytes")
        else:  # CLOSE, CLOSING, CLOSED, ERROR, PING/PONG are handled by aiohttp
            raise _ClientGone("the client closed the connection before the end message")


async def _succeed(ws: web.WebSocketResponse, inode: Inode | dict[str, object], created: bool) -> None:
    item = render.item(inode) if isinstance(inode, Inode) else inode
    await ws.send_str(json.dumps({"ok": True, "status": 201 if created else 200, "created": created, **item}))
    await ws.close(code=WSCloseCode.OK, message=b"upload complete")


async def _upload(request: web.Request, path: str) -> web.StreamResponse:
    """Write the binary frames to ``path`` (create or overwrite; ``?overwrite=false``: create only), like PUT.

    Success: the text message ``{"ok": true, "status": 201|200, "created", ...item}`` and close 1000. Raises
    (before the upgrade) what :meth:`Engine.write_file` raises before reading a byte (``PermissionDenied``,
    ``IsADirectory``, ``AlreadyExists``, ``QuotaExceeded`` for a declared ``size``, ``LockTimeout``...).
    """
    overwrite = (request.query.get("overwrite") or "true").lower()
    if overwrite not in ("true", "false", "1", "0", "yes", "no"):
        raise BadRequest(f"query parameter overwrite must be true or false, not {overwrite!r}")
    size = _declared_size(request)
    ws = _new_socket(request)
    try:
        result = await request.app[NODE].engine.write_file(
            caller(request), path, _frames(request, ws), create_only=overwrite in ("false", "0", "no"),
            backend=_backend_choice(request), precondition=write_precondition(conditions(request)),
            expected_size=size,
        )
    except RemoteBytes as remote:
        return await _upload_to_peer(request, ws, remote.inode)
    except _ClientGone:
        return ws
    except CallFSError as exc:
        return await _refuse(request, ws, exc)
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        return ws
    except Exception as exc:
        if not ws.prepared:
            raise
        log.exception("unhandled error", extra={"request_id": request.get(REQUEST_ID), "status": 500})
        await _fail(request, ws, CallFSError(f"internal error ({type(exc).__name__}); see the server log for "
                                             f"{request.get(REQUEST_ID)}"))
        return ws
    await _succeed(ws, result.inode, result.created)
    return ws


async def _upload_to_peer(request: web.Request, ws: web.WebSocketResponse, inode: Inode) -> web.StreamResponse:
    """Relay the frames as the body of a PUT to the node holding the current bytes; its answer is the
    result message. Raises ``BadGateway`` when that node cannot be reached before the upgrade."""
    node = request.app[NODE]
    assert inode.instance_id is not None
    base = await node.peers.url_of(inode.instance_id)
    backend = _backend_choice(request)
    url = base + _peer_url_path(inode.path) + (f"?backend={quote(backend)}" if backend else "")
    headers = await _peer_headers(request, {"Content-Type": "application/octet-stream"})
    try:
        async with node.peers.session.put(url, headers=headers, data=_frames(request, ws)) as upstream:
            raw = await upstream.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        cause = _cause(exc)
        if isinstance(cause, _ClientGone):
            return ws
        error = cause if isinstance(cause, CallFSError) else BadGateway(
            f"node {inode.instance_id} at {base} did not answer: {type(exc).__name__}")
        return await _refuse(request, ws, error, exc)
    except _ClientGone:
        return ws
    except CallFSError as exc:
        return await _refuse(request, ws, exc)
    if upstream.status >= 300:
        return await _refuse(request, ws, _peer_error(upstream.status, raw))
    if not ws.prepared:
        await ws.prepare(request)
    await _succeed(ws, json.loads(raw), upstream.status == 201)
    return ws
