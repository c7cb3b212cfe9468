"""``/v1/quotas/{path}``: directory quotas (limits in bytes and inodes, with current usage)."""

from __future__ import annotations

from aiohttp import web

from callfs import quota
from callfs.api import render
from callfs.api.keys import NODE, caller
from callfs.api.requests import json_object, request_path
from callfs.models import Quota

PREFIX = "/v1/quotas/"


def add_routes(app: web.Application) -> None:
    route = PREFIX + r"{tail:[\s\S]*}"
    app.router.add_route("GET", route, get_quota)
    app.router.add_route("PUT", route, put_quota)
    app.router.add_route("DELETE", route, delete_quota)


def render_quota(q: Quota) -> dict[str, object]:
    """``{"path", "bytes_limit", "inodes_limit", "bytes_used", "inodes_used"}`` (limits ``null`` = unlimited)."""
    return {"path": q.path, "bytes_limit": q.bytes_limit, "inodes_limit": q.inodes_limit,
            "bytes_used": q.bytes_used, "inodes_used": q.inodes_used}


def quota_headers(q: Quota) -> dict[str, str]:
    """``X-CallFS-Quota-*`` headers for a quota root's listing and HEAD (absent limits are omitted)."""
    out = {"X-CallFS-Quota-Bytes-Used": str(q.bytes_used), "X-CallFS-Quota-Inodes-Used": str(q.inodes_used)}
    if q.bytes_limit is not None:
        out["X-CallFS-Quota-Bytes-Limit"] = str(q.bytes_limit)
    if q.inodes_limit is not None:
        out["X-CallFS-Quota-Inodes-Limit"] = str(q.inodes_limit)
    return out


async def get_quota(request: web.Request) -> web.StreamResponse:
    """200 with limits and usage; 404 when the directory has no quota."""
    found = await request.app[NODE].engine.get_quota(caller(request), request_path(request, PREFIX).path)
    return render.json_response(render_quota(found))


async def put_quota(request: web.Request) -> web.StreamResponse:
    """Body ``{"bytes_limit", "inodes_limit"}`` (positive integers or null): 201 created / 200 changed."""
    path = request_path(request, PREFIX).path
    bytes_limit, inodes_limit = quota.parse_limits(await json_object(request))
    found, created = await request.app[NODE].engine.set_quota(caller(request), path, bytes_limit, inodes_limit)
    return render.json_response(render_quota(found), status=201 if created else 200)


async def delete_quota(request: web.Request) -> web.StreamResponse:
    """204; 404 when there was no quota."""
    await request.app[NODE].engine.remove_quota(caller(request), request_path(request, PREFIX).path)
    return web.Response(status=204)
