"""``/v1/xattrs/{path}``: extended attributes of an entry (names and byte values; rules in :mod:`callfs.xattrs`).

Metadata only, so any node of a cluster answers from the shared store (nothing is forwarded to a file's owner).
"""

from __future__ import annotations

import asyncio
import base64

from aiohttp import web

from callfs import xattrs
from callfs.api import render
from callfs.api.keys import NODE, caller
from callfs.api.requests import flag, request_path
from callfs.errors import BadRequest, RequestTimeout, XattrTooLarge

PREFIX = "/v1/xattrs/"


def add_routes(app: web.Application) -> None:
    route = PREFIX + r"{tail:[\s\S]*}"
    app.router.add_route("GET", route, get_xattrs)
    app.router.add_route("PUT", route, put_xattr)
    app.router.add_route("DELETE", route, delete_xattr)


def _name(request: web.Request, *, required: bool) -> str | None:
    """The ``name`` query parameter (UTF-8, percent-encoded); ``BadRequest`` when ``required`` and missing."""
    name = request.query.get("name")
    if name is None and required:
        raise BadRequest("query parameter name (the extended attribute's name) is required")
    return name


async def read_value(request: web.Request) -> bytes:
    """The request body, at most :data:`callfs.xattrs.VALUE_MAX_BYTES` bytes (the app's JSON body cap does not
    apply). Raises ``XattrTooLarge`` (413), or ``RequestTimeout`` when the body stalls for
    ``server.read_timeout`` seconds."""
    limit = xattrs.VALUE_MAX_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise XattrTooLarge(f"extended attribute value of {request.content_length} bytes; at most {limit}")
    timeout = request.app[NODE].config.server.read_timeout
    value = bytearray()
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await request.content.read(limit + 1 - len(value))
        except TimeoutError as exc:
            raise RequestTimeout(f"no request body bytes received for {timeout:g} seconds") from exc
        if not chunk:
            return bytes(value)
        value += chunk
        if len(value) > limit:
            raise XattrTooLarge(f"extended attribute value over {limit} bytes")


async def get_xattrs(request: web.Request) -> web.StreamResponse:
    """With ``?name=``: the value, raw (``application/octet-stream``). Without: ``{"path", "xattrs": [{"name",
    "size"}]}`` in name order, each with ``"value"`` (base64) when ``?values=true``."""
    path = request_path(request, PREFIX).path
    engine, who = request.app[NODE].engine, caller(request)
    name = _name(request, required=False)
    if name is not None:
        value = await engine.get_xattr(who, path, name)
        return web.Response(body=value, content_type="application/octet-stream",
                            headers={"Cache-Control": "no-store"})
    if flag(request, "values"):
        values = await engine.read_xattrs(who, path)
        items = [{"name": n, "size": len(v), "value": base64.b64encode(v).decode("ascii")} for n, v in values.items()]
    else:
        sizes = await engine.list_xattrs(who, path)
        items = [{"name": n, "size": size} for n, size in sizes.items()]
    return render.json_response({"path": path, "xattrs": items})


async def put_xattr(request: web.Request) -> web.StreamResponse:
    """Set ``?name=`` to the raw body (``?mode=create|replace``, default either): 201 created, 200 replaced,
    ``{"path", "name", "size"}``."""
    path = request_path(request, PREFIX).path
    name = _name(request, required=True)
    assert name is not None
    mode = xattrs.parse_mode(request.query.get("mode"))
    xattrs.check_name(name)
    value = await read_value(request)
    created = await request.app[NODE].engine.set_xattr(caller(request), path, name, value, mode=mode)
    return render.json_response({"path": path, "name": name, "size": len(value)}, status=201 if created else 200)


async def delete_xattr(request: web.Request) -> web.StreamResponse:
    """Remove ``?name=``: 204."""
    path = request_path(request, PREFIX).path
    name = _name(request, required=True)
    assert name is not None
    await request.app[NODE].engine.remove_xattr(caller(request), path, name)
    return web.Response(status=204)
