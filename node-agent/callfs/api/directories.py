"""``/v1/directories/{path}``: directory listings, optionally recursive."""

from __future__ import annotations

from aiohttp import web

from callfs.api import render
from callfs.api.files import directory_quota_headers
from callfs.api.keys import NODE, caller
from callfs.api.requests import flag, request_path
from callfs.errors import BadRequest

PREFIX = "/v1/directories/"
DEFAULT_MAX_DEPTH = 100
MAX_MAX_DEPTH = 1000


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", PREFIX + r"{tail:[\s\S]*}", list_directory)


def _max_depth(request: web.Request) -> int:
    raw = request.query.get("max_depth")
    if raw is None or raw == "":
        return DEFAULT_MAX_DEPTH
    # ASCII digits only (str.isdigit also takes other scripts' digits), and short enough to convert.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 4 or int(raw) > MAX_MAX_DEPTH:
        raise BadRequest(f"max_depth must be an integer from 0 to {MAX_MAX_DEPTH}")
    return int(raw)


async def list_directory(request: web.Request) -> web.StreamResponse:
    """``{"path","type":"directory","recursive","max_depth"?,"count","items"}`` plus count headers."""
    recursive = flag(request, "recursive")
    max_depth = _max_depth(request)
    path = request_path(request, PREFIX).path
    directory, entries = await request.app[NODE].engine.list_directory(
        caller(request), path, recursive=recursive, max_depth=max_depth
    )
    body: dict[str, object] = {"path": directory.path, "type": "directory", "recursive": recursive}
    if recursive:
        body["max_depth"] = max_depth
    body["count"] = len(entries)
    body["items"] = [render.item(e) for e in entries]
    response = render.json_response(body)
    response.headers["X-CallFS-Count"] = str(len(entries))
    response.headers["X-CallFS-Recursive"] = "true" if recursive else "false"
    response.headers.update(await directory_quota_headers(request, directory.path))
    return response
