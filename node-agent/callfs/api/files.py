"""``/v1/files/{path}``: read, stat, create, overwrite, move/chmod/chown and delete files and directories."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote

from aiohttp import web

from callfs import paths
from callfs.api import render
from callfs.api.conditional import (
    evaluate_read,
    parse_content_range,
    parse_range,
    range_applies,
    write_precondition,
)
from callfs.api.keys import NODE, caller
from callfs.api.proxy import arrived_forwarded, forward, serve_or_forward
from callfs.api.quotas import quota_headers
from callfs.api.requests import (
    body_chunks,
    bool_field,
    check_body_size,
    conditions,
    flag,
    json_object,
    request_path,
    str_field,
)
from callfs.engine import OpenFile, RemoteBytes
from callfs.errors import AlreadyExists, BadRequest, IsADirectory, PreconditionFailed
from callfs.models import Inode, InodeType, Special
from callfs.permissions import WRITE, check_id, parse_mode, require

PREFIX = "/v1/files/"
STREAM_CHUNK_BYTES = 1 << 20
_PATCH_KEYS = {
    "name", "destination", "overwrite", "create_parents", "backend", "instance", "mode", "owner", "group", "size",
    "uid", "gid", "atime", "mtime", "exchange",
}
_ATTRIBUTE_KEYS = frozenset({"mode", "owner", "group", "uid", "gid", "atime", "mtime"})
"""The fields of a PATCH that change attributes (chmod, chown, utimensat) rather than move the entry."""


def add_routes(app: web.Application) -> None:
    route = PREFIX + r"{tail:[\s\S]*}"  # any character, newlines too (rejected later with 400)
    app.router.add_route("GET", route, get_file)
    app.router.add_route("HEAD", route, head_file)
    app.router.add_route("POST", route, post_file)
    app.router.add_route("PUT", route, put_file)
    app.router.add_route("PATCH", route, patch_file)
    app.router.add_route("DELETE", route, delete_file)


async def directory_quota_headers(request: web.Request, path: str) -> dict[str, str]:
    """The ``X-CallFS-Quota-*`` headers when ``path`` is a quota root, else none."""
    found = await request.app[NODE].engine.quota_of(path)
    return quota_headers(found) if found is not None else {}


def _not_modified(status: int, inode: Inode) -> web.StreamResponse:
    if status == 412:
        raise PreconditionFailed("precondition failed for the current version")
    response = web.Response(status=304)
    response.headers.update({k: v for k, v in render.headers(inode).items() if k in ("ETag", "Last-Modified")})
    return response


async def get_file(request: web.Request) -> web.StreamResponse:
    """A file's bytes (with Range and conditional requests), or a directory's listing as a JSON array."""
    engine = request.app[NODE].engine
    who = caller(request)
    path = request_path(request, PREFIX).path
    inode = await engine.stat(who, path)
    if inode.is_entry_only:  # a link is never followed: the link itself, as lstat(2) and readlink(2) see it
        response = render.json_response(render.item(inode))
        response.headers.update(render.headers(inode))
        return response
    if inode.is_dir:
        directory, entries = await engine.list_directory(who, path)
        response = render.json_response([render.item(e) for e in entries])
        response.headers.update(render.headers(directory))
        response.headers.update(await directory_quota_headers(request, path))
        return response

    first: Inode | None = inode  # resolved by stat() just now; a forwarded retry reads it afresh

    async def serve() -> web.StreamResponse:
        nonlocal first
        resolved, first = first, None
        return await send_file(request, await engine.open_file(who, path, resolved=resolved))

    return await serve_or_forward(request, serve)


async def send_file(request: web.Request, opened: OpenFile, extra: dict[str, str] | None = None) -> web.StreamResponse:
    """Stream an open file, honouring conditional headers and a single ``Range``; closes the reader.

    Local blobs go out with ``sendfile(2)``; others are streamed in 1 MiB chunks.
    """
    inode, reader = opened.inode, opened.reader
    try:
        inode = inode.evolve(size=reader.size)
        verdict = evaluate_read(conditions(request), inode)
        if verdict is not None:
            return _not_modified(verdict, inode)
        byte_range = None
        if range_applies(request.headers.get("If-Range"), inode):
            byte_range = parse_range(request.headers.get("Range"), reader.size)
        response = web.StreamResponse(status=206 if byte_range else 200)
        response.headers.update(render.headers(inode))
        response.headers.update(extra or {})
        response.content_type = "application/octet-stream"
        offset, length = (byte_range.start, byte_range.length) if byte_range else (0, reader.size)
        if byte_range:
            response.headers["Content-Range"] = byte_range.content_range()
        response.content_length = length
        local = reader.local_file()
        transport = request.transport
        if length and local is not None and transport is not None:
            await response.prepare(request)
            await asyncio.get_running_loop().sendfile(transport, local, offset, length)
        else:
            chunks = aiter(reader.iter_range(offset, length, STREAM_CHUNK_BYTES))
            # The first chunk is read before the status line goes out, so that a failure to read (a block that
            # fails its check, an unreachable backend) is an error response rather than a cut-off body.
            first = await anext(chunks, b"")
            await response.prepare(request)
            if first:
                await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        request.app[NODE].metrics.bytes_sent.inc(length)
        await response.write_eof()
        return response
    finally:
        await reader.close()


async def head_file(request: web.Request) -> web.StreamResponse:
    """The GET headers without a body (``X-CallFS-*``, ``ETag``, ``Content-Length``)."""
    inode = await request.app[NODE].engine.stat(caller(request), request_path(request, PREFIX).path)
    if inode.type is InodeType.FILE:
        verdict = evaluate_read(conditions(request), inode)
        if verdict is not None:
            return _not_modified(verdict, inode)
    response = web.StreamResponse(status=200)
    response.headers.update(render.headers(inode))
    if inode.is_dir:
        response.headers.update(await directory_quota_headers(request, inode.path))
        response.content_type = "application/json"
    elif inode.is_entry_only:
        response.content_type = "application/json"
    else:
        response.content_type = "application/octet-stream"
        response.content_length = inode.size
    await response.prepare(request)
    await response.write_eof()
    return response


def _created(request: web.Request, inode: Inode, created: bool) -> web.Response:
    response = render.json_response(render.item(inode), status=201 if created else 200)
    if created:
        response.headers["Location"] = PREFIX + quote(inode.path.lstrip("/")) + ("/" if inode.is_dir else "")
    if not inode.is_dir:
        response.headers.update({k: v for k, v in render.headers(inode).items() if k in ("ETag", "Last-Modified")})
    return response


def _backend_choice(request: web.Request) -> str | None:
    return request.headers.get("X-CallFS-Backend") or request.query.get("backend") or None


def symlink_target(request: web.Request) -> str | None:
    """The ``X-CallFS-Target`` request header, percent-decoded as UTF-8 (``None`` when absent).

    Raises:
        BadRequest: not valid percent-encoded UTF-8.
    """
    raw = request.headers.get("X-CallFS-Target")
    if raw is None:
        return None
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequest("X-CallFS-Target must be percent-encoded UTF-8") from exc


def _special(text: str) -> Special:
    """The ``X-CallFS-Special`` kind. Raises ``BadRequest`` for another value."""
    try:
        return Special(text)
    except ValueError as exc:
        raise BadRequest(f"X-CallFS-Special must be one of {[s.value for s in Special]}") from exc


def _rdev(request: web.Request) -> int:
    """``X-CallFS-Rdev`` (decimal; 0 when absent). Raises ``BadRequest`` for anything but digits."""
    raw = request.headers.get("X-CallFS-Rdev", "0")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        raise BadRequest("X-CallFS-Rdev must be a device number in decimal")
    return int(raw)


def hard_link_source(request: web.Request) -> str | None:
    """The ``X-CallFS-Link-To`` request header: the canonical absolute path of the entry a hard link names
    (percent-encoded UTF-8; ``None`` when absent).

    Raises:
        BadRequest: not valid percent-encoded UTF-8, not absolute, or not a valid path.
    """
    raw = request.headers.get("X-CallFS-Link-To")
    if raw is None:
        return None
    try:
        source = unquote(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequest("X-CallFS-Link-To must be percent-encoded UTF-8") from exc
    if not source.startswith("/"):
        raise BadRequest("X-CallFS-Link-To must be an absolute path")
    return paths.canonicalize(source).path


async def post_file(request: web.Request) -> web.StreamResponse:
    """Create a directory (trailing slash, no body), a symbolic link (``X-CallFS-Target``, no body), a hard link
    (``X-CallFS-Link-To``, no body), a special file (``X-CallFS-Special``, ``X-CallFS-Rdev``, no body) or a file
    from the raw body (409 when anything exists there)."""
    engine = request.app[NODE].engine
    target = request_path(request, PREFIX)
    link_target, special = symlink_target(request), request.headers.get("X-CallFS-Special")
    link_source = hard_link_source(request)
    if link_target is not None or special is not None or link_source is not None:
        given = sum(header is not None for header in (link_target, special, link_source))
        if target.is_dir_hint or request.content_length or given > 1:
            raise BadRequest("a symbolic link (X-CallFS-Target), a hard link (X-CallFS-Link-To) or a special file "
                             "(X-CallFS-Special) takes no body and a path without a trailing slash, and only one "
                             "of these headers")
        if link_source is not None:
            made = await engine.make_hard_link(caller(request), link_source, target.path)
        elif link_target is not None:
            made = await engine.make_symlink(caller(request), target.path, link_target)
        else:
            assert special is not None
            made = await engine.make_special(caller(request), target.path, _special(special), _rdev(request))
        return _created(request, made, True)
    if target.is_dir_hint:
        if request.content_length:
            raise BadRequest("creating a directory takes no body")
        inode, created = await engine.make_directory(caller(request), target.path)
        return _created(request, inode, created)
    check_body_size(request)
    try:
        result = await engine.write_file(
            caller(request), target.path, body_chunks(request), create_only=True,
            backend=_backend_choice(request), precondition=write_precondition(conditions(request)),
            expected_size=request.content_length, created_at=created_at(request),
        )
    except AlreadyExists as exc:
        existing = await engine.store.get(target.path)
        if existing is not None and engine.is_remote(existing) and existing.instance_id is not None:
            exc.extra["instance_id"] = existing.instance_id
            base = await request.app[NODE].peers.url_of(existing.instance_id)
            exc.extra["update_url"] = base + request.rel_url.raw_path
        raise
    return _created(request, result.inode, True)


async def put_file(request: web.Request) -> web.StreamResponse:
    """Create (201) or overwrite (200) a file from the streamed body; with ``Content-Range``, write that range
    of an existing file (200)."""
    target = request_path(request, PREFIX)
    if target.is_dir_hint:
        raise IsADirectory("PUT writes files; the path names a directory (trailing slash)")
    check_body_size(request)
    content_range = request.headers.get("Content-Range")
    if content_range is not None:
        return await _put_range(request, target.path, content_range)
    try:
        result = await request.app[NODE].engine.write_file(
            caller(request), target.path, body_chunks(request), create_only=False,
            backend=_backend_choice(request), precondition=write_precondition(conditions(request)),
            expected_size=request.content_length, local=arrived_forwarded(request), created_at=created_at(request),
        )
    except RemoteBytes as remote:
        return await forward(request, remote.inode)
    return _created(request, result.inode, result.created)


async def _put_range(request: web.Request, path: str, content_range: str) -> web.StreamResponse:
    """A partial PUT: the body is bytes ``FIRST-LAST`` of the existing file (RFC 9110 §14.5)."""
    offset, length = parse_content_range(content_range)
    if request.content_length is not None and request.content_length != length:
        raise BadRequest(f"Content-Length {request.content_length} differs from the {length} bytes of Content-Range")
    try:
        result = await request.app[NODE].engine.write_range(
            caller(request), path, offset, length, body_chunks(request),
            precondition=write_precondition(conditions(request)), local=arrived_forwarded(request),
        )
    except RemoteBytes as remote:
        return await forward(request, remote.inode)
    return _created(request, result.inode, False)


async def patch_file(request: web.Request) -> web.StreamResponse:
    """Rename in place (``name``), move (``destination``; with ``exchange``: swap the two entries), or change
    attributes (``mode``/``owner``/``group``/``uid``/``gid``/``atime``/``mtime``)."""
    engine = request.app[NODE].engine
    who = caller(request)
    source = request_path(request, PREFIX).path
    body = await json_object(request)
    unknown = set(body) - _PATCH_KEYS
    if unknown:
        raise BadRequest(f"unknown fields {sorted(unknown)}; allowed: {sorted(_PATCH_KEYS)}")
    if "size" in body:
        return await _resize(request, source, body)
    name, destination = str_field(body, "name"), str_field(body, "destination")
    if _ATTRIBUTE_KEYS & set(body):
        if name is not None or destination is not None:
            raise BadRequest("change attributes (mode, owner, group, uid, gid, atime, mtime) and rename in separate "
                             "requests")
        inode = await _change_attributes(request, source, body)
        return render.json_response({"path": inode.path, **render.item(inode)})
    if (name is None) == (destination is None):
        raise BadRequest("give exactly one of name or destination")
    backend, instance = str_field(body, "backend"), str_field(body, "instance")
    if name is not None:
        parent = paths.parent_of(source)
        if parent is None:
            raise BadRequest("the root directory cannot be renamed")
        target = paths.join(parent, paths.validate_name(name))
    else:
        assert destination is not None
        if not destination.startswith("/"):
            raise BadRequest("destination must be an absolute path")
        target = paths.canonicalize(destination).path
    overwrite, create_parents = bool_field(body, "overwrite"), bool_field(body, "create_parents")
    if bool_field(body, "exchange"):
        if overwrite or create_parents or backend is not None or instance is not None:
            raise BadRequest("exchange takes no overwrite, create_parents, backend or instance")
        swapped = await engine.exchange(who, source, target)
        return render.json_response({"path": swapped.path})
    if backend is not None or instance is not None:
        # Bytes move first, at the old path: every check runs before anything changes, and a peer that
        # fails mid-way leaves the file as it was.
        if not overwrite and target != source and await engine.store.get(target) is not None:
            raise AlreadyExists(f"{target} already exists; set overwrite to replace it")
        await _relocate(request, await engine.stat(who, source), backend, instance)
    moved = await engine.move(who, source, target, overwrite=overwrite, create_parents=create_parents)
    return render.json_response({"path": moved.path})


def created_at(request: web.Request) -> datetime | None:
    """The ``X-CallFS-MTime`` request header of a whole write: when the client made the file it sends (RFC 3339
    with a time zone); a file the write creates takes it as its times (``Engine.write_file``). ``None`` when
    absent.

    Raises:
        BadRequest: not an RFC 3339 date-time with a time zone.
    """
    text = request.headers.get("X-CallFS-MTime")
    return None if text is None else _parse_time(text, "X-CallFS-MTime")


def _time_field(body: dict[str, Any], key: str) -> datetime | Literal["now"] | None:
    """``"now"``, an RFC 3339 date-time with a time zone (microseconds kept), or absent (``None``).

    Raises:
        BadRequest: another type, or a string that is neither.
    """
    text = str_field(body, key)
    if text is None:
        return None
    if text == "now":
        return "now"
    return _parse_time(text, key, also='"now" or ')


def _parse_time(text: str, key: str, *, also: str = "") -> datetime:
    """``text`` as an RFC 3339 date-time with a time zone (microseconds kept), in UTC.

    Raises:
        BadRequest: anything else (the message names ``key`` and what it may be: ``also`` first).
    """
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: past year 9999 or before year 1 in UTC
        raise BadRequest(f"{key} must be {also}an RFC 3339 date-time with a time zone between the years 1 "
                         f"and 9999, got {text[:40]!r}") from exc


def _id_field(body: dict[str, Any], key: str) -> int | None:
    """A numeric user or group id, or absent (``None``); :func:`~callfs.permissions.check_id` checks it."""
    value = body.get(key)
    return None if value is None else check_id(value, key)


async def _change_attributes(request: web.Request, path: str, body: dict[str, Any]) -> Inode:
    """``{"mode", "owner", "group", "uid", "gid", "atime", "mtime"}`` (any of them): chmod, chown and
    utimensat in one change (:meth:`~callfs.engine.Engine.change_attributes`)."""
    mode_text = str_field(body, "mode")
    try:
        mode = parse_mode(mode_text) if mode_text is not None else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return await request.app[NODE].engine.change_attributes(
        caller(request), path, mode=mode, owner=str_field(body, "owner"), group=str_field(body, "group"),
        uid=_id_field(body, "uid"), gid=_id_field(body, "gid"), atime=_time_field(body, "atime"),
        mtime=_time_field(body, "mtime"),
    )


async def _resize(request: web.Request, path: str, body: dict[str, Any]) -> web.StreamResponse:
    """``{"size": N}``: truncate or extend the file to ``N`` bytes (zeros past the old end)."""
    if set(body) != {"size"}:
        raise BadRequest("size is changed alone, without other fields")
    size = body["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest("size must be a whole number of bytes >= 0")
    try:
        result = await request.app[NODE].engine.resize_file(
            caller(request), path, size, precondition=write_precondition(conditions(request)),
            local=arrived_forwarded(request),
        )
    except RemoteBytes as remote:
        return await forward(request, remote.inode, body=json.dumps(body).encode())
    return _created(request, result.inode, False)


async def _relocate(request: web.Request, inode: Inode, backend: str | None, instance: str | None) -> None:
    """Move the bytes of a file to ``backend`` on node ``instance`` (either may be omitted)."""
    node = request.app[NODE]
    engine = node.engine
    if inode.type is not InodeType.FILE:
        raise BadRequest("backend and instance apply to files, not directories or symbolic links")
    target = engine.backend(backend or inode.backend)
    if instance is not None and not target.node_local:
        raise BadRequest(f"backend {target.name} is shared by every node; instance does not apply")
    owner = instance or (inode.instance_id if target.node_local and target.name == inode.backend else None)
    if target.node_local and owner not in (None, node.credentials.instance_id):
        assert owner is not None
        if await node.membership.peer_url(owner) is None:
            raise BadRequest(f"unknown instance {owner!r}")
        # The owner checks this too; checking first makes a refusal 403 even when the owner is down.
        require(caller(request), inode, WRITE, "move the bytes of")
        await node.peers.relocate(owner, inode.path, target.name, caller(request).user)
        return
    await engine.relocate(caller(request), inode.path, target.name)


async def delete_file(request: web.Request) -> web.StreamResponse:
    """Delete a file or an empty directory (204); ``?recursive=true`` deletes a subtree."""
    target = request_path(request, PREFIX)

    async def serve() -> web.StreamResponse:
        await request.app[NODE].engine.delete(caller(request), target.path, recursive=flag(request, "recursive"))
        return web.Response(status=204)

    return await serve_or_forward(request, serve)
