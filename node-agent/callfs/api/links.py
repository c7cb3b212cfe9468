"""Single-use links: ``POST /v1/links/generate`` and the unauthenticated ``GET /download/{token}``."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from callfs import paths
from callfs.api.conditional import rfc3339
from callfs.api.files import send_file
from callfs.api.keys import NODE, caller
from callfs.api.requests import json_object
from callfs.errors import BadRequest


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", "/v1/links/generate", generate_link)
    # No HEAD: a HEAD must not burn a single-use token.
    app.router.add_get("/download/{token}", download, allow_head=False)


async def generate_link(request: web.Request) -> web.StreamResponse:
    """Body ``{"path", "expiry_seconds"}`` → 201 ``{"url", "token", "expires"}``."""
    node = request.app[NODE]
    body = await json_object(request)
    raw_path, expiry = body.get("path"), body.get("expiry_seconds")
    if not isinstance(raw_path, str) or not raw_path:
        raise BadRequest("path must be a non-empty string")
    if isinstance(expiry, bool) or not isinstance(expiry, int):
        raise BadRequest("expiry_seconds must be an integer number of seconds")
    path = paths.canonicalize(raw_path).path
    token, expires = await node.engine.create_link(caller(request), path, expiry)
    url = f"{node.external_url}/download/{token}"
    return web.json_response({"url": url, "token": token, "expires": rfc3339(expires)}, status=201)


async def download(request: web.Request) -> web.StreamResponse:
    """Stream the linked file once, as an attachment."""
    opened = await request.app[NODE].engine.open_link(request.match_info["token"], request.remote)
    filename = paths.name_of(opened.inode.path)
    disposition = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
    return await send_file(request, opened, {"Content-Disposition": disposition, "Cache-Control": "no-store"})
