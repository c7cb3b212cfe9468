"""``GET /v1/cluster/nodes`` (membership view) and ``DELETE /internal/v1/blobs/...`` (peers free bytes)."""

from __future__ import annotations

from aiohttp import web

from callfs import paths
from callfs.api import render
from callfs.api.conditional import rfc3339
from callfs.api.keys import INTERNAL, NODE, caller
from callfs.api.requests import json_object
from callfs.errors import BadRequest, PermissionDenied
from callfs.membership import PeerView
from callfs.peers import USER_HEADER


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/cluster/nodes", list_nodes)
    app.router.add_delete("/internal/v1/blobs/{backend}/{blob_id}", free_blob)
    app.router.add_get("/internal/v1/blobs/{backend}/{blob_id}", read_blob, allow_head=False)
    app.router.add_post("/internal/v1/relocate", relocate)


def render_peer(view: PeerView) -> dict[str, object]:
    """One node: ``instance_id``, ``url``, ``state`` (up/down/unknown), ``source``, capacity/free bytes,
    ``version``, ``last_heartbeat`` (RFC 3339) and ``self``."""
    return {
        "instance_id": view.instance_id, "url": view.url, "state": view.state, "source": view.source,
        "capacity_bytes": view.capacity_bytes, "free_bytes": view.free_bytes, "version": view.version,
        "last_heartbeat": rfc3339(view.last_heartbeat) if view.last_heartbeat else None, "self": view.is_self,
    }


async def list_nodes(request: web.Request) -> web.StreamResponse:
    """200 ``{"instance_id": <this node>, "count", "nodes": [...]}``."""
    node = request.app[NODE]
    views = await node.membership.nodes()
    return render.json_response({
        "instance_id": node.credentials.instance_id, "count": len(views), "nodes": [render_peer(v) for v in views],
    })


async def free_blob(request: web.Request) -> web.StreamResponse:
    """204 after deleting one of this node's blobs at a peer's request (internal secret only)."""
    await request.app[NODE].engine.free_local_blob(
        caller(request), request.match_info["backend"], request.match_info["blob_id"]
    )
    return web.Response(status=204)


async def read_blob(request: web.Request) -> web.StreamResponse:
    """Stream one of this node's blobs to a peer that moves the file's bytes (internal secret only)."""
    engine = request.app[NODE].engine
    reader = await engine.open_local_blob(caller(request), request.match_info["backend"],
                                          request.match_info["blob_id"])
    try:
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        response.content_length = reader.size
        await response.prepare(request)
        async for chunk in reader.iter_range(0, reader.size, 1 << 20):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await reader.close()


async def relocate(request: web.Request) -> web.StreamResponse:
    """Body ``{"path", "backend"}``: take the file's bytes onto this node (internal secret only)."""
    who = caller(request)
    if not request.get(INTERNAL) or USER_HEADER not in request.headers:
        raise PermissionDenied("relocation requests come from peers on behalf of a user")
    body = await json_object(request)
    path, backend = body.get("path"), body.get("backend")
    if not isinstance(path, str) or not isinstance(backend, str):
        raise BadRequest("path and backend must be strings")
    moved = await request.app[NODE].engine.relocate(who, paths.canonicalize(path).path, backend)
    return render.json_response(render.item(moved))
