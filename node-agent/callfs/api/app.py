"""The aiohttp application: routes, and the cross-cutting middlewares (request IDs, security headers,
metrics, authentication, and the one place where errors become JSON bodies)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote

import structlog
from aiohttp import web

from callfs import links as link_tokens
from callfs import paths
from callfs.api import (
    access_keys,
    cluster,
    copies,
    directories,
    file_locks,
    files,
    links,
    openapi,
    quotas,
    render,
    system,
    websocket,
    xattrs,
)
from callfs.api.keys import CALLER, IN_FLIGHT, INTERNAL, NODE, REQUEST_ID, InFlight
from callfs.api.ratelimit import install as install_rate_limits
from callfs.api.ratelimit import rate_limit
from callfs.errors import (
    AuthenticationFailed,
    CallFSError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
)
from callfs.node import Node
from callfs.peers import SCOPE_HEADER, USER_HEADER
from callfs.permissions import Caller

log = logging.getLogger("callfs.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PUBLIC_PATHS = ("/health", "/ready", openapi.PATH)
_PUBLIC_PREFIXES = ("/download/",)
_SCOPED_PREFIXES = (
    files.PREFIX, directories.PREFIX, quotas.PREFIX, copies.ROUTE, links.GENERATE_ROUTE, file_locks.PREFIX,
    file_locks.SESSIONS_ROUTE, xattrs.PREFIX,
)
"""Routes a scoped key may use: those about paths, where the engine confines it (everything else is 403)."""
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
    # Powerful browser features are off for anything the node serves.
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
        "payment=(), usb=()"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    # Other sites cannot embed the node's bytes (<img>, <script>, no-cors fetch); navigating to a file or a
    # /download/{token} link (a download) is not affected.
    "Cross-Origin-Resource-Policy": "same-origin",
}


def error_response(exc: CallFSError) -> web.Response:
    """The JSON body and headers for a deliberate error (``Retry-After`` on 503, ``Content-Range`` on 416)."""
    response = render.json_response(exc.body(), status=exc.status)
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


def request_id_of(headers: Mapping[str, str]) -> str | None:
    """The client's ``X-Request-ID`` when well-formed (1-128 of ``A-Z a-z 0-9 . _ : -``), else ``None``."""
    incoming = headers.get("X-Request-ID", "")
    return incoming if _REQUEST_ID.fullmatch(incoming) else None


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ID, metrics, access log, and error mapping (outermost).

    The request ID is the client's well-formed ``X-Request-ID`` or a fresh 32-hex-digit one; it is echoed in
    the response's ``X-Request-ID``, sent on to a peer when the request is forwarded, and bound to every log
    line written while the request runs (field ``request_id``). Each request ends with one access line
    (fields ``method``, ``path``, ``status``, ``duration_ms``); a failure that becomes a 5xx also gets its own
    line (with ``code`` and, for an unexpected exception, its traceback) naming the same request ID as the
    500 body's message.
    """
    request_id = request_id_of(request.headers) or uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    metrics = request.app[NODE].metrics
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    start = time.perf_counter()
    metrics.in_flight.inc()
    request.app[IN_FLIGHT].enter()
    status = 500
    error_code: str | None = None
    # SECURITY: a link token is a credential; logs only ever show its first characters.
    logged_path = link_tokens.redact_path(request.rel_url.raw_path)
    fields = {"request_id": request_id, "method": request.method, "path": logged_path}
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    status = exc.status
                    raise
                error = _from_http_exception(exc)
                error_code = error.code
                response = error_response(error)
            except CallFSError as exc:
                error_code = exc.code
                if exc.status >= 500 and not isinstance(exc, QuotaExceeded):  # the node failed, not the caller
                    log.warning("%s: %s", exc.code, exc.message,
                                extra={**fields, "status": exc.status, "code": exc.code})
                response = error_response(exc)
            except (asyncio.CancelledError, ConnectionResetError):
                status = 499  # client went away
                raise
            except Exception:
                log.exception("unhandled error", extra={**fields, "status": 500, "code": CallFSError.code})
                error_code = CallFSError.code
                response = error_response(CallFSError("internal error; see the server log for " + request_id))
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - start
            metrics.in_flight.dec()
            request.app[IN_FLIGHT].leave()
            metrics.requests.labels(method=request.method, path=route, status_code=str(status)).inc()
            metrics.request_seconds.labels(method=request.method, path=route).observe(elapsed)
            if error_code is not None:
                metrics.error("http", error_code)
            log.info(
                "%s %s %s %.1fms", request.method, logged_path, status, elapsed * 1000,
                extra={**fields, "status": status, "duration_ms": round(elapsed * 1000, 3)},
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
    scope: str | None = None
    # SECURITY: compare against every key in constant time, without stopping at the first match.
    for candidate, candidate_user in node.credentials.users_by_key.items():
        if hmac.compare_digest(candidate.encode(), key.encode()):
            user = candidate_user
    internal = hmac.compare_digest(node.credentials.internal_proxy_secret.encode(), key.encode())
    if internal:
        # SECURITY: only a peer holding the internal secret may act on behalf of another user (and it passes
        # on the confinement of a scoped key, so that the user is confined here too).
        user = request.headers.get(USER_HEADER) or "internal-proxy"
        if SCOPE_HEADER in request.headers:
            scope = paths.canonicalize(unquote(request.headers[SCOPE_HEADER])).path
    elif user is None:
        registered = await node.access_keys.lookup(key)
        if registered is not None:
            user, scope = registered.user, registered.scope
    if user is None:
        raise AuthenticationFailed("invalid API key")
    if scope is not None and not path.startswith(_SCOPED_PREFIXES):
        # SECURITY: a scoped key reaches the paths of its scope and nothing about the rest of the cluster.
        raise PermissionDenied(f"a key confined to {scope} may not use {path}")
    groups = frozenset(node.config.auth.user_groups.get(user, ()))
    request[CALLER] = Caller(user, groups, scope)
    request[INTERNAL] = internal
    return await handler(request)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Request-ID", request.get(REQUEST_ID, ""))
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")


def build_app(node: Node) -> web.Application:
    """The application for one started :class:`Node`. JSON bodies are capped at ``server.max_json_bytes``.

    ``server.read_timeout`` (seconds) also bounds how long a connection may stay silent before a request's
    headers are complete (a new connection, or an idle keep-alive one): aiohttp then closes it.
    """
    app = web.Application(
        middlewares=[request_context, authenticate, rate_limit],
        client_max_size=node.config.server.max_json_bytes,
        handler_args={"keepalive_timeout": node.config.server.read_timeout},
    )
    app[NODE] = node
    app[IN_FLIGHT] = InFlight()
    app.on_response_prepare.append(_security_headers)
    system.add_routes(app)
    access_keys.add_routes(app)
    websocket.add_routes(app)  # before files: /v1/files/{path} matches /v1/files/ws/... too
    files.add_routes(app)
    copies.add_routes(app)
    directories.add_routes(app)
    links.add_routes(app)
    quotas.add_routes(app)
    file_locks.add_routes(app)
    xattrs.add_routes(app)
    cluster.add_routes(app)
    openapi.add_routes(app)
    install_rate_limits(app)
    return app


@web.middleware
async def _metrics_listener_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ID and JSON error bodies for the metrics listener (it records no request metrics of its own)."""
    request[REQUEST_ID] = request_id_of(request.headers) or uuid.uuid4().hex
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(exc))
    except CallFSError as exc:
        return error_response(exc)


def build_metrics_app(node: Node) -> web.Application:
    """The application of the metrics listener (``metrics.listen_addr``): ``GET /metrics`` only (other paths
    404), behind the API keys (401 without a valid one) unless ``metrics.open``; same security headers."""
    middlewares = [_metrics_listener_errors] if node.config.metrics.open else [_metrics_listener_errors, authenticate]
    app = web.Application(middlewares=middlewares, handler_args={"keepalive_timeout": node.config.server.read_timeout})
    app[NODE] = node
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/metrics", system.metrics)
    return app
