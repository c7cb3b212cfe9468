"""The aiohttp application: routes, and the cross-cutting middlewares (request IDs, security headers,
metrics, authentication, and the one place where errors become JSON bodies)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from callfs.api import cluster, directories, files, links, quotas, system
from callfs.api.keys import CALLER, IN_FLIGHT, INTERNAL, NODE, REQUEST_ID, InFlight
from callfs.errors import (
    AuthenticationFailed,
    CallFSError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from callfs.node import Node
from callfs.peers import USER_HEADER
from callfs.permissions import Caller

log = logging.getLogger("callfs.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PUBLIC_PATHS = ("/health", "/ready")
_PUBLIC_PREFIXES = ("/download/",)
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}


def error_response(exc: CallFSError) -> web.Response:
    """The JSON body and headers for a deliberate error (``Retry-After`` on 503, ``Content-Range`` on 416)."""
    response = web.json_response(exc.body(), status=exc.status)
    if exc.status == 503:
        response.headers["Retry-After"] = "1"
    if exc.status == 416 and "size" in exc.extra:
        response.headers["Content-Range"] = f"bytes */{exc.extra['size']}"
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="callfs"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _from_http_exception(exc: web.HTTPException) -> CallFSError:
    if exc.status == 404:
        return NotFound("no such route")
    if exc.status == 405:
        return MethodNotAllowed(f"method not allowed; allowed: {exc.headers.get('Allow', '')}")
    if exc.status == 413:
        return PayloadTooLarge("request body too large")
    error = CallFSError(exc.reason or "HTTP error")
    error.status = exc.status  # type: ignore[misc]
    error.code = "BAD_REQUEST" if 400 <= exc.status < 500 else "INTERNAL_ERROR"  # type: ignore[misc]
    return error


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ID, metrics, access log, and error mapping (outermost)."""
    incoming = request.headers.get("X-Request-ID", "")
    request[REQUEST_ID] = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    metrics = request.app[NODE].metrics
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    start = time.perf_counter()
    metrics.in_flight.inc()
    request.app[IN_FLIGHT].enter()
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(_from_http_exception(exc))
        except CallFSError as exc:
            response = error_response(exc)
        except (asyncio.CancelledError, ConnectionResetError):
            status = 499  # client went away
            raise
        except Exception:
            log.exception("unhandled error", extra={"request_id": request[REQUEST_ID]})
            response = error_response(CallFSError("internal error; see the server log for " + request[REQUEST_ID]))
        status = response.status
        return response
    finally:
        elapsed = time.perf_counter() - start
        metrics.in_flight.dec()
        request.app[IN_FLIGHT].leave()
        metrics.requests.labels(route, request.method, str(status)).inc()
        metrics.request_seconds.labels(route, request.method).observe(elapsed)
        log.info(
            "%s %s %s %.1fms", request.method, request.rel_url.raw_path, status, elapsed * 1000,
            extra={"request_id": request[REQUEST_ID]},
        )


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map ``Authorization: Bearer <key>`` (or a bare key) to a :class:`Caller`; public routes pass."""
    path = request.rel_url.raw_path
    if path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES):
        return await handler(request)
    node = request.app[NODE]
    header = request.headers.get("Authorization", "").strip()
    key = header[7:].strip() if header[:7].lower() == "bearer " else header
    if not key:
        raise AuthenticationFailed("missing API key (Authorization: Bearer <key>)")
    user = None
    # SECURITY: compare against every key in constant time, without stopping at the first match.
    for candidate, candidate_user in node.credentials.users_by_key.items():
        if hmac.compare_digest(candidate.encode(), key.encode()):
            user = candidate_user
    internal = hmac.compare_digest(node.credentials.internal_proxy_secret.encode(), key.encode())
    if internal:
        # SECURITY: only a peer holding the internal secret may act on behalf of another user.
        user = request.headers.get(USER_HEADER) or "internal-proxy"
    if user is None:
        raise AuthenticationFailed("invalid API key")
    groups = frozenset(node.config.auth.user_groups.get(user, ()))
    request[CALLER] = Caller(user, groups)
    request[INTERNAL] = internal
    return await handler(request)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Request-ID", request.get(REQUEST_ID, ""))
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")


def build_app(node: Node) -> web.Application:
    """The application for one started :class:`Node`. JSON bodies are capped at ``server.max_json_bytes``."""
    app = web.Application(
        middlewares=[request_context, authenticate],
        client_max_size=node.config.server.max_json_bytes,
    )
    app[NODE] = node
    app[IN_FLIGHT] = InFlight()
    app.on_response_prepare.append(_security_headers)
    system.add_routes(app)
    files.add_routes(app)
    directories.add_routes(app)
    links.add_routes(app)
    quotas.add_routes(app)
    cluster.add_routes(app)
    return app
