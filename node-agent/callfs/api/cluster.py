"""``GET /v1/cluster/nodes`` (membership view), ``/v1/cluster/nodes/{instance_id}/drain`` (drain a node before
removing it, :mod:`callfs.drain`), ``/v1/cluster/nodes/{instance_id}/forget`` (declare a node lost for good),
``/internal/v1/blobs/...`` (peers read and free bytes) and
``/internal/v1/blocks/...`` (peers put, get and delete block copies, :mod:`callfs.replication`),
``/v1/cluster/convert`` and ``/internal/v1/convert`` (blob files converted to blocks, :mod:`callfs.convert`)."""

from __future__ import annotations

from aiohttp import web

from callfs import paths
from callfs.api import render
from callfs.api.conditional import rfc3339
from callfs.api.keys import INTERNAL, NODE, caller
from callfs.api.requests import json_object
from callfs.backends.base import Backend
from callfs.convert import Converter
from callfs.errors import BadRequest, PayloadTooLarge, PermissionDenied
from callfs.membership import PeerView
from callfs.peers import USER_HEADER
from callfs.replication import MAX_STORED, Replication


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/cluster/nodes", list_nodes)
    app.router.add_post(DRAIN_ROUTE, start_drain)
    app.router.add_get(DRAIN_ROUTE, drain_progress, allow_head=False)
    app.router.add_delete(DRAIN_ROUTE, cancel_drain)
    app.router.add_post(FORGET_ROUTE, forget_node)
    app.router.add_get(FORGET_ROUTE, lost_node, allow_head=False)
    app.router.add_post(CONVERT_ROUTE, start_conversion)
    app.router.add_get(CONVERT_ROUTE, conversion_progress, allow_head=False)
    app.router.add_post(INTERNAL_CONVERT_ROUTE, start_node_conversion)
    app.router.add_get(INTERNAL_CONVERT_ROUTE, node_conversion, allow_head=False)
    app.router.add_delete("/internal/v1/blobs/{backend}/{blob_id}", free_blob)
    app.router.add_get("/internal/v1/blobs/{backend}/{blob_id}", read_blob, allow_head=False)
    app.router.add_post("/internal/v1/relocate", relocate)
    app.router.add_put(BLOCK_ROUTE, put_block)
    app.router.add_get(BLOCK_ROUTE, get_block, allow_head=False)
    app.router.add_delete(BLOCK_ROUTE, delete_block)


DRAIN_ROUTE = "/v1/cluster/nodes/{instance_id}/drain"
"""The drain of one node (root only)."""

FORGET_ROUTE = "/v1/cluster/nodes/{instance_id}/forget"
"""A node declared lost for good (root only, :meth:`callfs.drain.Drains.forget`)."""

CONVERT_ROUTE = "/v1/cluster/convert"
"""The conversion of blob files to blocks on every node (root only, :mod:`callfs.convert`)."""

INTERNAL_CONVERT_ROUTE = "/internal/v1/convert"
"""This node's conversion of blob files to blocks (peers only)."""

BLOCK_ROUTE = "/internal/v1/blocks/{backend}/{location}/{hash}"
"""A copy of block ``hash`` of ``backend`` owned by node ``location`` held on the node answering."""


def render_peer(view: PeerView, leaving: bool = False) -> dict[str, object]:
    """One node: ``instance_id``, ``url``, ``state`` (up/down/unknown), ``source``, capacity/free bytes,
    ``version``, ``last_heartbeat`` (RFC 3339), ``self`` and ``leaving`` (being drained)."""
    return {
        "instance_id": view.instance_id, "url": view.url, "state": view.state, "source": view.source,
        "capacity_bytes": view.capacity_bytes, "free_bytes": view.free_bytes, "version": view.version,
        "last_heartbeat": rfc3339(view.last_heartbeat) if view.last_heartbeat else None, "self": view.is_self,
        "leaving": leaving,
    }


async def list_nodes(request: web.Request) -> web.StreamResponse:
    """200 ``{"instance_id": <this node>, "count", "nodes": [...], "replication"}``: ``replication`` is
    ``{"backend", "replicas", "under_replicated_blocks"}`` for the node-local backend's blocks (whole cluster),
    ``null`` when that backend is unavailable."""
    node = request.app[NODE]
    views = await node.membership.nodes()
    leaving = set(await node.store.leaving_nodes())
    replication: dict[str, object] | None = None
    engine = node.engine
    for name, backend in engine.backends.items():
        copies = engine.block_files.replicated(backend)
        if copies is not None and name not in engine.unavailable:
            found = await copies.redundancy(backend)
            replication = {"backend": found.backend, "replicas": found.replicas,
                           "under_replicated_blocks": found.under_replicated}
            break
    return render.json_response({
        "instance_id": node.credentials.instance_id, "count": len(views),
        "nodes": [render_peer(v, v.instance_id in leaving) for v in views],
        "replication": replication,
    })


async def start_drain(request: web.Request) -> web.StreamResponse:
    """202 with the drain's progress once node ``{instance_id}`` is leaving (root only; again: the same)."""
    found = await request.app[NODE].drains.start(caller(request), request.match_info["instance_id"])
    return render.json_response(found.to_json(), status=202)


async def drain_progress(request: web.Request) -> web.StreamResponse:
    """200 ``{"instance_id", "state": "draining"|"drained", "blocks_left", "files_left"}`` (root only); 404
    when the node is unknown or not being drained."""
    found = await request.app[NODE].drains.progress(caller(request), request.match_info["instance_id"])
    return render.json_response(found.to_json())


async def cancel_drain(request: web.Request) -> web.StreamResponse:
    """204 once node ``{instance_id}`` is no longer leaving (root only; not being drained: 204 too)."""
    await request.app[NODE].drains.cancel(caller(request), request.match_info["instance_id"])
    return web.Response(status=204)


async def forget_node(request: web.Request) -> web.StreamResponse:
    """200 with what node ``{instance_id}`` leaves behind once declared lost for good (root only; again: the
    same); 409 ``NODE_LIVE`` while its heartbeat is recent."""
    found = await request.app[NODE].drains.forget(caller(request), request.match_info["instance_id"])
    return render.json_response(found.to_json())


async def lost_node(request: web.Request) -> web.StreamResponse:
    """200 ``{"instance_id", "state": "lost", "since", "block_copies", "blocks_left", "files_lost",
    "lost_files"}`` (root only); 404 when the node is unknown or was not declared lost."""
    found = await request.app[NODE].drains.lost(caller(request), request.match_info["instance_id"])
    return render.json_response(found.to_json())


async def start_conversion(request: web.Request) -> web.StreamResponse:
    """202 with the conversion report of every node once each was asked to start a pass (root only)."""
    found = await request.app[NODE].converter.cluster(caller(request), start=True)
    return render.json_response(found, status=202)


async def conversion_progress(request: web.Request) -> web.StreamResponse:
    """200 with the conversion report of every node: remaining blob files and bytes, converted, failures."""
    found = await request.app[NODE].converter.cluster(caller(request), start=False)
    return render.json_response(found)


def _converter_for_peer(request: web.Request) -> Converter:
    if not request.get(INTERNAL):
        raise PermissionDenied("a node's conversion is started and followed by its peers only")
    return request.app[NODE].converter


async def start_node_conversion(request: web.Request) -> web.StreamResponse:
    """202 with this node's conversion report once a pass runs here (peers only)."""
    converter = _converter_for_peer(request)
    converter.start()
    return render.json_response(await converter.report(), status=202)


async def node_conversion(request: web.Request) -> web.StreamResponse:
    """200 with this node's conversion report (peers only)."""
    return render.json_response(await _converter_for_peer(request).report())


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


def _block_copies(request: web.Request) -> tuple[Replication, Backend]:
    """The replication and the node-local backend a block route names. Raises ``PermissionDenied`` (not a
    peer), ``BadRequest`` (unknown or shared backend), ``ServiceUnavailable``."""
    if not request.get(INTERNAL):
        raise PermissionDenied("block copies are exchanged between nodes only")
    engine = request.app[NODE].engine
    backend = engine.backend(request.match_info["backend"])
    replication = engine.block_files.replicated(backend)
    if replication is None:
        raise BadRequest(f"backend {backend.name} keeps no block copies (it is shared)")
    return replication, backend


async def put_block(request: web.Request) -> web.StreamResponse:
    """Body: the stored form of the block (codec header and payload, at most a block plus its overhead).
    204 once this node has verified it against its hash and made it durable; 400 when it is not that block."""
    replication, backend = _block_copies(request)
    if request.content_length is not None and request.content_length > MAX_STORED:
        raise PayloadTooLarge(f"a block is at most {MAX_STORED} bytes stored")
    stored = bytearray()
    async for chunk in request.content.iter_any():
        stored += chunk
        if len(stored) > MAX_STORED:
            raise PayloadTooLarge(f"a block is at most {MAX_STORED} bytes stored")
    await replication.accept(backend, request.match_info["location"], request.match_info["hash"], bytes(stored))
    return web.Response(status=204)


async def get_block(request: web.Request) -> web.StreamResponse:
    """200 with this node's copy of the block as stored (the reader verifies it); 404 when it holds none."""
    replication, backend = _block_copies(request)
    stored = await replication.serve(backend, request.match_info["location"], request.match_info["hash"])
    return web.Response(body=stored, content_type="application/octet-stream")


async def delete_block(request: web.Request) -> web.StreamResponse:
    """204 once this node's copy of the block is gone (absent already: 204 too)."""
    replication, backend = _block_copies(request)
    await replication.discard(backend, request.match_info["location"], request.match_info["hash"])
    return web.Response(status=204)
