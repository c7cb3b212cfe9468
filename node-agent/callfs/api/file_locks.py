"""``/v1/lock-sessions`` and ``/v1/file-locks/{path}``: ``flock`` and ``fcntl`` record locks for mounts.

Every node answers these itself: the lock table is the cluster's (Redis) or the node's own when it runs alone
(:mod:`callfs.locks.file_locks`), and the path is resolved to its inode in the shared metadata, so nothing is
forwarded. The server never waits for a lock: a conflict is a 409 ``LOCK_CONFLICT`` naming the lock in the way,
and a blocking lock (``F_SETLKW``, ``flock`` without ``LOCK_NB``) is the client retrying
(:meth:`callfs.client.CallFSClient.lock_file` with ``wait``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from callfs.api import render
from callfs.api.keys import NODE, caller
from callfs.api.requests import json_object, request_path
from callfs.errors import BadRequest, LockConflict, PermissionDenied
from callfs.locks import ranges
from callfs.locks.file_locks import LockSession, check_ttl
from callfs.locks.ranges import FileLock, LockRequest
from callfs.permissions import READ, WRITE, Caller, allows

SESSIONS_ROUTE = "/v1/lock-sessions"
PREFIX = "/v1/file-locks/"


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", SESSIONS_ROUTE, open_session)
    app.router.add_route("PUT", SESSIONS_ROUTE + "/{session}", renew_session)
    app.router.add_route("DELETE", SESSIONS_ROUTE + "/{session}", close_session)
    route = PREFIX + r"{tail:[\s\S]*}"
    app.router.add_route("POST", route, set_lock)
    app.router.add_route("GET", route, get_locks)


def render_session(session: LockSession) -> dict[str, Any]:
    """``{"id", "ttl"}`` (``ttl`` in seconds)."""
    return {"id": session.id, "ttl": session.ttl}


def conflict_error(path: str, blocking: FileLock) -> LockConflict:
    """409 ``LOCK_CONFLICT`` with the lock in the way as ``conflict``."""
    return LockConflict(
        f"{path} is locked by another owner ({blocking.kind} {blocking.type} lock)", conflict=blocking.to_json()
    )


async def open_session(request: web.Request) -> web.StreamResponse:
    """Body ``{"ttl": seconds}`` (optional, default ``dlm.lock_session_ttl``): 201 ``{"id", "ttl"}``."""
    body = await json_object(request) if request.can_read_body else {}
    ttl = body.get("ttl", request.app[NODE].config.dlm.lock_session_ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise BadRequest("ttl must be a number of seconds")
    try:
        check_ttl(float(ttl))
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    session = await request.app[NODE].file_locks.open_session(caller(request).user, float(ttl))
    return render.json_response(render_session(session), status=201)


async def renew_session(request: web.Request) -> web.StreamResponse:
    """The heartbeat: 200 ``{"id", "ttl"}``; 404 ``LOCK_SESSION_NOT_FOUND`` when it ended or expired."""
    table = request.app[NODE].file_locks
    session = await table.renew_session(request.match_info["session"], caller(request).user)
    return render.json_response(render_session(session))


async def close_session(request: web.Request) -> web.StreamResponse:
    """End the session and release all its locks: 204; 404 ``LOCK_SESSION_NOT_FOUND``."""
    await request.app[NODE].file_locks.close_session(request.match_info["session"], caller(request).user)
    return web.Response(status=204)


def _int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer, not {value!r}") from None


def _str(value: Any, name: str, default: str | None = None) -> str:
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"{name} is required")
        return default
    if not isinstance(value, str) or len(value) > 256:
        raise BadRequest(f"{name} must be a string of at most 256 characters")
    return value


def parse_request(fields: dict[str, Any], *, session_required: bool) -> LockRequest:
    """A :class:`LockRequest` from JSON fields or query parameters ``kind`` (``flock``/``posix``), ``type``
    (``read``/``write``/``unlock``), ``start``, ``length`` (bytes, 0: to the end), ``owner``, ``session``,
    ``pid``. Raises ``BadRequest``."""
    session = _str(fields.get("session"), "session", None if session_required else "")
    try:
        return ranges.request(
            session, _str(fields.get("owner"), "owner", None if session_required else ""),
            _str(fields.get("kind"), "kind", "posix"),  # type: ignore[arg-type]
            _str(fields.get("type"), "type"),  # type: ignore[arg-type]
            _int(fields.get("start"), "start", 0), _int(fields.get("length"), "length", 0),
            _int(fields.get("pid"), "pid", 0),
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


async def _ino(request: web.Request, who: Caller, path: str) -> int:
    """The inode number of ``path``; the caller needs ``r`` or ``w`` on it (a descriptor open to lock through).
    Raises ``NotFound``, ``PermissionDenied``."""
    inode = await request.app[NODE].engine.stat(who, path)
    if not (allows(who, inode, READ) or allows(who, inode, WRITE)):
        raise PermissionDenied(f"cannot lock {path}: neither readable nor writable")
    return inode.ino


async def set_lock(request: web.Request) -> web.StreamResponse:
    """Take, convert or release a lock (body as :func:`parse_request`, ``session`` and ``owner`` required):
    200 ``{"ino", "granted": true}``; 409 ``LOCK_CONFLICT`` with ``conflict``; 404 ``LOCK_SESSION_NOT_FOUND``."""
    path = request_path(request, PREFIX).path
    wanted = parse_request(await json_object(request), session_required=True)
    who = caller(request)
    ino = await _ino(request, who, path)
    blocking = await request.app[NODE].file_locks.set_lock(ino, wanted, who.user)
    if blocking is not None:
        raise conflict_error(path, blocking)
    return render.json_response({"ino": ino, "granted": True})


async def get_locks(request: web.Request) -> web.StreamResponse:
    """Without ``type``: 200 ``{"ino", "locks": [...]}``, every live lock on the file. With ``type`` (and
    ``kind``, ``start``, ``length``, ``owner``, ``session`` as query parameters): ``F_GETLK``, 200
    ``{"ino", "conflict": null}`` when the lock could be taken now, else 409 ``LOCK_CONFLICT`` with ``conflict``."""
    path = request_path(request, PREFIX).path
    who = caller(request)
    ino = await _ino(request, who, path)
    table = request.app[NODE].file_locks
    if not request.query.get("type"):
        return render.json_response({"ino": ino, "locks": ranges.encode(await table.locks(ino))})
    wanted = parse_request(dict(request.query), session_required=False)
    blocking = await table.test_lock(ino, wanted)
    if blocking is not None:
        raise conflict_error(path, blocking)
    return render.json_response({"ino": ino, "conflict": None})
