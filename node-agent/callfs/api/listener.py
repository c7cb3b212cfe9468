"""The HTTP listener beneath the application: a connection cap, JSON for malformed requests, quiet accept errors.

Three things happen in aiohttp before any middleware of :mod:`callfs.api.app` runs, so they are handled here, on
aiohttp's documented extension points of its low-level server (aiohttp 3.14):

- Requests its HTTP parser rejects (an oversized request line or header, too many headers, a bad method,
  ``Content-Length`` together with ``Transfer-Encoding``, a negative ``Content-Length``, ...) are answered by
  ``RequestHandler.handle_error``, which builds a ``text/plain`` response and logs a traceback for each one.
  :class:`NodeRequestHandler` overrides it: the answer is the JSON error body every other error has
  (``{"code": "BAD_REQUEST", "message": ...}``), and the log line is short and rate-limited.
- aiohttp accepts every connection the kernel hands it. Idle or half-open connections then pile up until the
  process runs out of file descriptors and nothing works any more. :class:`NodeServer` caps the open connections
  (``server.max_connections``): one beyond the cap is answered 503 ``SERVICE_UNAVAILABLE`` (``Retry-After: 1``)
  and closed at once. Idle connections themselves are closed after ``server.read_timeout`` (aiohttp's
  ``keepalive_timeout``, set in :func:`callfs.api.app.build_app`).
- When ``accept()`` fails for lack of descriptors or memory (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``),
  asyncio logs an error with a traceback on every retry. :class:`AcceptErrorFilter`, installed as the event
  loop's exception handler, logs such failures at most once per interval with a count of the ones it held back.

:class:`NodeRunner` is the ``AppRunner`` that serves the application through :class:`NodeServer`.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from callfs.api import render

log = logging.getLogger("callfs.http")

FD_RESERVE = 128
"""File descriptors kept back from the default connection cap for the metadata store, blobs, peers and logs."""

DEFAULT_MAX_CONNECTIONS = 10_000
"""The default connection cap when the open-files limit is unlimited."""

LOG_INTERVAL = 10.0
"""Seconds between two log lines about refused connections, rejected requests or failed accepts."""

_MAX_MESSAGE = 200
_ACCEPT_FAILED = "socket.accept() out of system resource"


def default_max_connections(reserve: int = FD_RESERVE) -> int:
    """The connection cap when ``server.max_connections`` is unset: the soft ``RLIMIT_NOFILE`` less ``reserve``
    descriptors (at least 16), or :data:`DEFAULT_MAX_CONNECTIONS` when the limit is unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(16, soft - reserve)


class RateLimitedLog:
    """Emit a message at most once per ``interval`` seconds; the next one emitted says how many were held back.

    ``clock`` returns monotonic seconds (injectable for tests).
    """

    def __init__(self, interval: float = LOG_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.suppressed = 0
        self._next = float("-inf")

    def __call__(self, emit: Callable[[str, int], None], message: str) -> bool:
        """Call ``emit(message, suppressed)`` unless one was emitted less than ``interval`` seconds ago;
        ``suppressed`` counts the calls held back since the last emission. True when emitted."""
        now = self.clock()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self.interval
        suppressed, self.suppressed = self.suppressed, 0
        emit(message, suppressed)
        return True


class AcceptErrorFilter:
    """An event-loop exception handler that rate-limits asyncio's "out of system resource" accept errors.

    Every other context goes on to the handler that was installed before (or the loop's default handler).
    """

    def __init__(self, previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None,
                 limiter: RateLimitedLog | None = None) -> None:
        self.previous = previous
        self.limiter = limiter or RateLimitedLog()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Handle one exception ``context`` of ``loop`` (see ``loop.call_exception_handler``)."""
        if context.get("message") != _ACCEPT_FAILED:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        exc = context.get("exception")

        def emit(message: str, suppressed: int) -> None:
            log.error("accepting a connection failed: %s; new connections wait (%d more such failures since the"
                      " last report)", message, suppressed)

        self.limiter(emit, str(exc))

    @classmethod
    def install(cls, loop: asyncio.AbstractEventLoop) -> AcceptErrorFilter:
        """Install a filter as ``loop``'s exception handler, in front of the current one; returns it."""
        handler = cls(loop.get_exception_handler())
        loop.set_exception_handler(handler)
        return handler


def _json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = render.json_response({"code": code, "message": message}, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Request-ID"] = uuid.uuid4().hex
    response.force_close()
    return response


class NodeRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, with JSON answers for malformed requests and the connection cap."""

    _refused: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Serve the connection, or refuse it (503 JSON, then close) when the server is at its cap."""
        server = self._manager
        if isinstance(server, NodeServer) and server.at_capacity():
            self._refused = True
            server.refuse(transport)
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Clean up, unless the connection was refused and never served."""
        if not self._refused:
            super().connection_lost(exc)

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The JSON error answer for a request aiohttp could not parse (400 ``BAD_REQUEST``) or whose handling
        failed outside the application (500 ``INTERNAL_ERROR``); closes the connection.

        Raises ``ConnectionError`` when part of a response was already sent.
        """
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        if isinstance(exc, HttpProcessingError) or 400 <= status < 500:
            detail = (exc.message if isinstance(exc, HttpProcessingError) else None) or message or "bad request"
            detail = detail if len(detail) <= _MAX_MESSAGE else detail[:_MAX_MESSAGE] + "..."
            server = self._manager
            if isinstance(server, NodeServer):
                server.rejected(request.remote, detail)
            return _json_error(400, "BAD_REQUEST", f"malformed HTTP request: {detail}")
        self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        return _json_error(500, "INTERNAL_ERROR", "internal error; see the server log")


class NodeServer(web.Server):
    """aiohttp's low-level server making :class:`NodeRequestHandler` protocols, with at most ``max_connections``
    connections open at once."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.refused = 0
        self._refusals = RateLimitedLog()
        self._rejections = RateLimitedLog()

    def __call__(self) -> RequestHandler:
        return NodeRequestHandler(self, loop=self._loop, **self._kwargs)

    def at_capacity(self) -> bool:
        """True when ``max_connections`` connections are open already."""
        return len(self._connections) >= self.max_connections

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        """Answer a connection beyond the cap 503 ``SERVICE_UNAVAILABLE`` with ``Retry-After: 1`` and close it."""
        self.refused += 1
        body = render.dumps({"code": "SERVICE_UNAVAILABLE",
                           "message": "too many open connections; retry later"}).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(head + body)
        finally:
            transport.close()

        def emit(message: str, suppressed: int) -> None:
            log.warning("%s (%d more refused since the last report)", message, suppressed)

        self._refusals(emit, f"refusing connections: {self.max_connections} open (server.max_connections)")

    def rejected(self, remote: str | None, detail: str) -> None:
        """Log (rate-limited) a malformed request from ``remote``."""

        def emit(message: str, suppressed: int) -> None:
            log.info("%s (%d more malformed requests since the last report)", message, suppressed)

        self._rejections(emit, f"malformed HTTP request from {remote}: {detail}")


class NodeRunner(web.AppRunner):
    """An ``AppRunner`` serving its application through a :class:`NodeServer` capped at ``max_connections``."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_connections = max_connections

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the application and applies its handler_args
        return NodeServer(
            plain.request_handler, request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation, max_connections=self.max_connections,
            **plain._kwargs,
        )
