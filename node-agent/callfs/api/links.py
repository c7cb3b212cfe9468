"""Single-use links: ``POST /v1/links/generate`` and the unauthenticated ``GET /download/{token}``."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from callfs import paths
from callfs.api import files, render
from callfs.api.conditional import rfc3339
from callfs.api.files import send_file
from callfs.api.keys import NODE, caller
from callfs.api.proxy import FORWARD_ATTEMPTS, OwnerMoved, forward
from callfs.api.requests import json_object
from callfs.engine import RemoteBytes
from callfs.errors import BadRequest, ServiceUnavailable
from callfs.models import Inode

GENERATE_ROUTE = "/v1/links/generate"


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", GENERATE_ROUTE, generate_link)
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
    return render.json_response({"url": url, "token": token, "expires": rfc3339(expires)}, status=201)


async def download(request: web.Request) -> web.StreamResponse:
    """Stream the linked file once, as an attachment.

    Bytes on another node: the link is used up only once that node answered, so a download that cannot start
    (502 when the node is down) leaves the link usable.
    """
    for _ in range(FORWARD_ATTEMPTS):
        try:
            opened = await request.app[NODE].engine.open_link(request.match_info["token"], request.remote)
        except RemoteBytes as remote:  # the owner streams the bytes; the link is burnt when it answers
            try:
                return await forward(
                    request, remote.inode, method="GET", user="internal-proxy",
                    path_qs=files.PREFIX + quote(remote.inode.path.lstrip("/")),
                    extra_headers=_attachment(remote.inode), before_relay=remote.burn,
                )
            except OwnerMoved:
                continue
        return await send_file(request, opened, _attachment(opened.inode))
    raise ServiceUnavailable("the bytes of this file keep moving between nodes; retry")


def _attachment(inode: Inode) -> dict[str, str]:
    filename = quote(paths.name_of(inode.path), safe="")
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{filename}", "Cache-Control": "no-store"}
