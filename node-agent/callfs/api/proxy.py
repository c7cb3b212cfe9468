"""Forwarding a request to the node that owns a file's bytes, streaming both ways (docs/rest-api.md,
"Cluster forwarding"). Never buffers a whole body; a peer that cannot be reached in time gives 502.

A request goes one hop at most. The owner may change between a node's decision and the forwarded request's
arrival (a concurrent write on a third node took the file over): the receiving node then writes a forwarded
upload itself, and refuses to forward a bodiless request again (508), which the first node answers by reading
the metadata again and deciding anew (:func:`serve_or_forward`, a bounded number of times).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from callfs.api.keys import INTERNAL, NODE, REQUEST_ID, caller
from callfs.engine import RemoteBytes
from callfs.errors import BadGateway, LoopDetected, ServiceUnavailable
from callfs.models import Inode
from callfs.peers import FORWARDED_HEADER, forward_headers, response_headers
from callfs.permissions import Caller

CHUNK_BYTES = 1 << 20

FORWARD_ATTEMPTS = 3
"""Times :func:`serve_or_forward` decides where a request is served before answering 503."""


class OwnerMoved(Exception):
    """The node a bodiless request was forwarded to no longer held the bytes (it answered 508 and consumed
    nothing): decide again where the request is served."""


def arrived_forwarded(request: web.Request) -> bool:
    """True when a peer forwarded ``request`` here (internal credentials and a hop list): it is served on this
    node and never forwarded again."""
    return bool(request.get(INTERNAL, False)) and bool(request.headers.get(FORWARDED_HEADER))


async def serve_or_forward(
    request: web.Request, serve: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """``serve()`` the request here, or forward it to the node named by the :class:`RemoteBytes` it raises.

    When that node no longer holds the bytes, ``serve`` runs again with fresh metadata, up to
    :data:`FORWARD_ATTEMPTS` times; then ``ServiceUnavailable`` (503, retryable). A read (GET, HEAD) that
    missed the owner once waits for the file's write lock before deciding again and holds it until it is
    answered, so that writers taking the file over one after another cannot keep moving the bytes away from
    it. Raises what ``serve`` and :func:`forward` raise, and ``LockTimeout``.
    """
    moved: str | None = None
    for _ in range(FORWARD_ATTEMPTS):
        async with contextlib.AsyncExitStack() as settled:
            if moved is not None and request.method in ("GET", "HEAD"):
                await settled.enter_async_context(request.app[NODE].engine.hold_file(moved))
            try:
                return await serve()
            except RemoteBytes as remote:
                try:
                    return await forward(request, remote.inode)
                except OwnerMoved:
                    moved = remote.inode.path
    raise ServiceUnavailable("the bytes of this file keep moving between nodes; retry")


async def forward(
    request: web.Request, inode: Inode, *, path_qs: str | None = None, user: str | None = None,
    method: str | None = None, extra_headers: dict[str, str] | None = None,
    before_relay: Callable[[], Awaitable[None]] | None = None, body: bytes | None = None,
) -> web.StreamResponse:
    """Relay ``request`` (or ``method`` on ``path_qs``) to the node holding ``inode``'s bytes; stream the answer.

    ``body`` replaces the request body already read by the handler (a JSON body); otherwise the body streams
    through.

    Raises ``LoopDetected`` (508) when the request was already forwarded once, ``BadGateway`` (502) when the
    owner is unknown or does not answer within the connect timeout, and :class:`OwnerMoved` when a bodiless
    request reached a node that no longer holds the bytes (nothing was sent to the client yet).
    ``before_relay`` is awaited once the owner answered with a success, before anything is relayed; what it
    raises is the answer instead (e.g. ``LinkExpired`` for a single-use link used meanwhile).
    """
    node = request.app[NODE]
    hops = [h for h in request.headers.get(FORWARDED_HEADER, "").split(",") if h]
    if hops:
        raise LoopDetected(
            f"request forwarded by {', '.join(hops)} reached {node.credentials.instance_id}, which does not hold "
            f"the bytes of {inode.path} either (owner: {inode.instance_id})"
        )
    assert inode.instance_id is not None
    base = await node.peers.url_of(inode.instance_id)
    # ``user`` names who acts when the request has no caller (a link download acts as the internal user).
    acting = Caller(user) if user else caller(request)
    headers = forward_headers(
        request.headers, secret=node.credentials.internal_proxy_secret,
        user=acting.user, hops=[node.credentials.instance_id], scope=acting.scope,
    )
    # The peer logs the request under the same ID (replacing the client's header, whatever its case).
    headers = {k: v for k, v in headers.items() if k.lower() != "x-request-id"}
    headers["X-Request-ID"] = request[REQUEST_ID]
    verb = method or request.method
    has_body = verb in ("PUT", "POST", "PATCH") and request.body_exists
    response: web.StreamResponse | None = None
    try:
        async with node.peers.session.request(
            verb, base + (path_qs or request.rel_url.raw_path_qs), headers=headers,
            data=body if body is not None else request.content.iter_chunked(CHUNK_BYTES) if has_body else None,
            allow_redirects=False,
        ) as upstream:
            if upstream.status == LoopDetected.status and not has_body:
                raise OwnerMoved(f"node {inode.instance_id} no longer holds the bytes of {inode.path}")
            if before_relay is not None and upstream.status < 300:
                await before_relay()
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.update(response_headers(upstream.headers))
            response.headers.update(extra_headers or {})
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            if verb != "HEAD":
                async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                    await response.write(chunk)
            await response.write_eof()
            return response
    except (TimeoutError, aiohttp.ClientError) as exc:
        if response is not None and response.prepared:
            # Too late for a 502: the status line is out. Cut the connection so the client sees a short body.
            raise ConnectionResetError(f"node {inode.instance_id} went away mid-transfer") from exc
        raise BadGateway(f"node {inode.instance_id} at {base} did not answer: {type(exc).__name__}") from exc
