"""``GET /v1/cluster/nodes`` (membership view) and ``DELETE /internal/v1/blobs/...`` (peers free bytes)."""

from __future__ import annotations

from aiohttp import web

from callfs.api.conditional import rfc3339
from callfs.api.keys import NODE, caller
from callfs.membership import PeerView


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/cluster/nodes", list_nodes)
    app.router.add_delete("/internal/v1/blobs/{backend}/{blob_id}", free_blob)


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
    return web.json_response({
        "instance_id": node.credentials.instance_id, "count": len(views), "nodes": [render_peer(v) for v in views],
    })


async def free_blob(request: web.Request) -> web.StreamResponse:
    """204 after deleting one of this node's blobs at a peer's request (internal secret only)."""
    await request.app[NODE].engine.free_local_blob(
        caller(request), request.match_info["backend"], request.match_info["blob_id"]
    )
    return web.Response(status=204)
