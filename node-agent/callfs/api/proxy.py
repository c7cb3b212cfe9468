"""Forwarding a request to the node that owns a file's bytes, streaming both ways (docs/rest-api.md,
"Cluster forwarding"). Never buffers a whole body; a peer that cannot be reached in time gives 502."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from callfs.api.keys import NODE, REQUEST_ID, caller
from callfs.errors import BadGateway, LoopDetected
from callfs.models import Inode
from callfs.peers import FORWARDED_HEADER, forward_headers, response_headers

CHUNK_BYTES = 1 << 20


async def forward(
    request: web.Request, inode: Inode, *, path_qs: str | None = None, user: str | None = None,
    method: str | None = None, extra_headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Relay ``request`` (or ``method`` on ``path_qs``) to the node holding ``inode``'s bytes; stream the answer.

    Raises ``LoopDetected`` (508) when the request was already forwarded once and ``BadGateway`` (502) when the
    owner is unknown or does not answer within the connect timeout.
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
    headers = forward_headers(
        request.headers, secret=node.credentials.internal_proxy_secret,
        user=user or caller(request).user, hops=[node.credentials.instance_id],
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
            data=request.content.iter_chunked(CHUNK_BYTES) if has_body else None, allow_redirects=False,
        ) as upstream:
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
