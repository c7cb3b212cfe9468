"""The optional HTTP/3 listener (``server.http3_listen_addr``): QUIC on UDP, served by aioquic, relayed into the
node's own aiohttp application.

Design: every HTTP/3 request stream is relayed, as one HTTP/1.1 request, to the very application the TCP listener
serves, over a Unix domain socket site that the relay adds to the node's runner (in a fresh ``0700`` directory).
The request therefore passes the same middlewares (request IDs, access log, metrics, authentication, error
bodies), the same handlers, the same connection cap (``server.max_connections`` counts relayed requests) and the
same shutdown drain as a TCP request. A Unix socket rather than a loopback connection to the TCP listener: no
second TLS handshake with the node's own certificate, no dependence on the TCP listener's address, and a peer the
application can recognise: only a request that arrived on the relay's socket may carry :data:`CLIENT_HEADER`
(the HTTP/3 client's ``host:port``, which becomes ``request.remote``); the relay overwrites any such header an
HTTP/3 client sends, and on TCP the header is ignored. Relayed requests are ``https`` (``request.secure``).

Bodies stream both ways in bounded memory:

- Request: HTTP/3 DATA frames are queued per stream and fed to the relayed request as an async iterator. QUIC
  flow control grants the client at most :data:`RECEIVE_WINDOW` bytes beyond what the application has read
  (aioquic by itself doubles a stream's window as data *arrives*, whether read or not), so a slow upload stalls
  the client instead of filling memory. A connection holds at most 128 concurrent request streams.
- Response: body chunks go out as DATA frames; the relay reads the next chunk only once fewer than
  :data:`SEND_HIGH_WATER` bytes of the stream wait unsent, so a slow reader stalls the application's response.

Responses on TCP advertise the listener with ``Alt-Svc: h3=":<port>"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.stream import QuicStream
from multidict import CIMultiDict
from yarl import URL

from callfs.config import Config, split_host_port

log = logging.getLogger("callfs.http3")

CLIENT_HEADER = "X-CallFS-HTTP3-Client"
"""Set by the relay only: the HTTP/3 client's ``host:port``; trusted only on the relay's own socket."""

RECEIVE_WINDOW = 1 << 20
"""Bytes of a request body a client may send beyond what the application has read."""

SEND_HIGH_WATER = 1 << 20
"""Bytes of a response body that may wait unsent on a stream before the relay stops reading the response."""

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
                         "host", CLIENT_HEADER.lower()})
HSTS = "max-age=63072000; includeSubDomains"
"""``Strict-Transport-Security`` of responses over HTTP/3 (always TLS), as TCP responses over TLS carry it."""


class _FlowControlledConnection(QuicConnection):
    """A :class:`QuicConnection` whose request streams get credit for what the application read, not for what
    arrived. ``read_offsets`` maps a request stream ID to the bytes of its body handed on so far."""

    read_offsets: dict[int, int]

    def _write_stream_limits(self, builder: QuicPacketBuilder, space: Any, stream: QuicStream) -> None:
        read = None if stream.stream_id is None else self.read_offsets.get(stream.stream_id)
        if read is not None and stream.max_stream_data_local:
            target = max(stream.max_stream_data_local, read + RECEIVE_WINDOW)
            target += target & 1
            # aioquic doubles the limit once more than half of it arrived; hand it half the target then, so its
            # rule lands exactly on the target (the limit never shrinks below what was granted).
            arrived_half = stream.receiver.highest_offset * 2 > target
            stream.max_stream_data_local = target // 2 if arrived_half else target
        super()._write_stream_limits(builder, space, stream)


class _Request:
    """One relayed request stream: its body queue (``None`` ends it) and the task relaying it."""

    def __init__(self) -> None:
        self.body: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None


class _RelayProtocol(QuicConnectionProtocol):
    """One QUIC connection: HTTP/3 request streams, each relayed by a task of its own."""

    def __init__(self, *args: Any, listener: Http3Listener, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The server builds a plain QuicConnection; give it the flow control of request bodies described above.
        self._quic.__class__ = _FlowControlledConnection
        assert isinstance(self._quic, _FlowControlledConnection)
        self._quic.read_offsets = {}
        self._flow: _FlowControlledConnection = self._quic
        self._listener = listener
        self._h3 = H3Connection(self._quic)
        self._requests: dict[int, _Request] = {}
        self._progress = asyncio.Event()
        self._peer = ""

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        """Remember the client's address (it may migrate), then process the datagram."""
        self._peer = f"{addr[0]}:{addr[1]}"
        super().datagram_received(data, addr)

    def transmit(self) -> None:
        """Send what is due, then wake the response writers waiting for their streams to drain."""
        super().transmit()
        self._progress.set()
        self._progress = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        """Dispatch one QUIC event: HTTP/3 frames, a stream reset by the client, or the end of the connection."""
        if isinstance(event, StreamReset):
            self._abort(event.stream_id)
        elif isinstance(event, ConnectionTerminated):
            for stream_id in list(self._requests):
                self._abort(stream_id)
            self._progress.set()
            return
        for h3_event in self._h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived) and event.push_id is None:
            request = self._requests.get(event.stream_id)
            if request is None:
                request = self._requests[event.stream_id] = _Request()
                self._flow.read_offsets[event.stream_id] = 0
                request.task = asyncio.create_task(self._relay(event, request))
            if event.stream_ended:  # headers alone, or trailers (dropped)
                request.body.put_nowait(None)
        elif isinstance(event, DataReceived) and event.push_id is None:
            request = self._requests.get(event.stream_id)
            if request is not None:
                if event.data:
                    request.body.put_nowait(event.data)
                if event.stream_ended:
                    request.body.put_nowait(None)

    def _abort(self, stream_id: int) -> None:
        request = self._requests.pop(stream_id, None)
        self._flow.read_offsets.pop(stream_id, None)
        if request is not None and request.task is not None:
            request.task.cancel()

    async def _body(self, stream_id: int, request: _Request) -> AsyncIterator[bytes]:
        while (chunk := await request.body.get()) is not None:
            yield chunk
            if stream_id in self._flow.read_offsets:
                self._flow.read_offsets[stream_id] += len(chunk)
                self.transmit()  # grant the client the credit just freed

    async def _relay(self, head: HeadersReceived, request: _Request) -> None:
        stream_id = head.stream_id
        try:
            await self._listener.relay(self, head, self._body(stream_id, request) if not head.stream_ended else None)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.warning("HTTP/3 request stream %d failed", stream_id, exc_info=True)
            with contextlib.suppress(Exception):
                self._quic.reset_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
                self.transmit()
        finally:
            self._requests.pop(stream_id, None)
            self._flow.read_offsets.pop(stream_id, None)

    def send_headers(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        """Send the response head of ``stream_id`` (HTTP/3 lower-case names, no hop-by-hop headers)."""
        self._h3.send_headers(stream_id, [(b":status", str(status).encode()), *headers], end_stream=end)
        self.transmit()

    async def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        """Send part of a response body; returns once at most :data:`SEND_HIGH_WATER` bytes wait unsent.

        Raises ``ConnectionError`` when the stream or the connection is gone meanwhile.
        """
        self._h3.send_data(stream_id, data, end_stream=end)
        self.transmit()
        while True:
            stream = self._quic._streams.get(stream_id)
            if stream is None or self._closed.is_set():
                if end:
                    return
                raise ConnectionError(f"HTTP/3 stream {stream_id} closed")
            if stream.sender._buffer_stop - stream.sender.highest_offset <= SEND_HIGH_WATER:
                return
            await self._progress.wait()

    @property
    def peer(self) -> str:
        """The client's ``host:port`` as last seen."""
        return self._peer


class Http3Listener:
    """The HTTP/3 listener of one node (``server.http3_listen_addr``; needs ``server.cert_file``/``key_file``).

    :meth:`install` hooks it into the application before the runner is set up; :meth:`start` binds the UDP port
    (raises ``OSError`` when it cannot); :meth:`drain` answers new requests 503 during shutdown; :meth:`close`
    closes every QUIC connection and the relay's socket.
    """

    def __init__(self, config: Config) -> None:
        if not config.server.http3_listen_addr or not config.uses_tls:
            raise ValueError("server.http3_listen_addr needs TLS (server.cert_file and server.key_file)")
        self.config = config
        self.host, self.port = split_host_port(config.server.http3_listen_addr)
        self._dir = Path(tempfile.mkdtemp(prefix="callfs-h3-"))
        self.socket_path = str(self._dir / "relay.sock")
        self._site: web.UnixSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._server: QuicServer | None = None
        self._draining = False

    @classmethod
    def for_config(cls, config: Config) -> Http3Listener | None:
        """The listener ``config`` asks for, or ``None`` when ``server.http3_listen_addr`` is empty."""
        return cls(config) if config.server.http3_listen_addr else None

    def install(self, app: web.Application) -> None:
        """Add the relay's middleware (outermost) and the ``Alt-Svc`` header to ``app``, before it is frozen."""
        app.middlewares.insert(0, self._middleware)
        app.on_response_prepare.append(self._advertise)

    def is_relayed(self, request: web.BaseRequest) -> bool:
        """True when ``request`` arrived on the relay's socket, i.e. over HTTP/3."""
        transport = request.transport
        return transport is not None and transport.get_extra_info("sockname") == self.socket_path

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.is_relayed(request):
            return await handler(request)  # type: ignore[no-any-return]
        client = request.headers.get(CLIENT_HEADER, "")
        host = client.rpartition(":")[0].strip("[]")
        relayed = request.clone(scheme="https", remote=host) if host else request.clone(scheme="https")
        return await handler(relayed)  # type: ignore[no-any-return]

    async def _advertise(self, request: web.Request, response: web.StreamResponse) -> None:
        # Signal handlers see the request as it arrived, not the relay middleware's clone.
        if self.is_relayed(request):
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        else:
            response.headers.setdefault("Alt-Svc", f'h3=":{self.port}"; ma=86400')

    async def start(self, runner: web.BaseRunner) -> None:
        """Serve the relay's Unix socket from ``runner`` and listen for QUIC on ``server.http3_listen_addr``."""
        self._site = web.UnixSite(runner, self.socket_path)
        await self._site.start()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.socket_path, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            auto_decompress=False,
        )
        server = self.config.server
        assert server.cert_file is not None and server.key_file is not None
        configuration = QuicConfiguration(
            is_client=False, alpn_protocols=H3_ALPN, idle_timeout=server.read_timeout,
            max_stream_data=RECEIVE_WINDOW, max_data=4 * RECEIVE_WINDOW,
        )
        configuration.load_cert_chain(server.cert_file, server.key_file)
        self._server = await serve(
            self.host, self.port, configuration=configuration,
            create_protocol=lambda *args, **kwargs: _RelayProtocol(*args, listener=self, **kwargs),
        )
        log.info("HTTP/3 listening on udp %s:%d", self.host, self.port)

    def drain(self) -> None:
        """From now on answer new requests 503 ``SERVICE_UNAVAILABLE``; running ones go on."""
        self._draining = True

    async def close(self) -> None:
        """Close every QUIC connection, the relay's client and its socket."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._site is not None:
            await self._site.stop()
            self._site = None
        shutil.rmtree(self._dir, ignore_errors=True)

    async def relay(self, protocol: _RelayProtocol, head: HeadersReceived, body: AsyncIterator[bytes] | None) -> None:
        """Relay one request (``head`` and its ``body`` chunks, ``None`` when it has none) to the application and
        its answer back on the same stream."""
        stream_id = head.stream_id
        pseudo = {name.decode("latin-1"): value.decode("latin-1")
                  for name, value in head.headers if name.startswith(b":")}
        method, path, authority = pseudo.get(":method", ""), pseudo.get(":path", ""), pseudo.get(":authority", "")
        if self._draining or self._session is None:
            await self._error(protocol, stream_id, 503, "SERVICE_UNAVAILABLE", "the node is shutting down")
            return
        if not method or not path.startswith("/") or method == "CONNECT":
            await self._error(protocol, stream_id, 400, "BAD_REQUEST", "malformed HTTP/3 request")
            return
        headers: list[tuple[str, str]] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in head.headers
            if not name.startswith(b":") and name.decode("latin-1").lower() not in _HOP_BY_HOP
        ]
        headers.append(("Host", authority or f"{self.host}:{self.port}"))
        headers.append((CLIENT_HEADER, protocol.peer))
        async with self._session.request(
            method, URL("http://callfs-http3" + path, encoded=True), headers=CIMultiDict(headers),
            data=body, allow_redirects=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        ) as response:
            out = [
                (name.lower(), value)
                for name, value in response.raw_headers
                if name.decode("latin-1").lower() not in _HOP_BY_HOP
            ]
            protocol.send_headers(stream_id, response.status, out, end=False)
            async for chunk in response.content.iter_any():
                await protocol.send_data(stream_id, chunk, end=False)
            await protocol.send_data(stream_id, b"", end=True)

    async def _error(self, protocol: _RelayProtocol, stream_id: int, status: int, code: str, message: str) -> None:
        body = web.json_response({"code": code, "message": message}).body
        assert isinstance(body, bytes)
        protocol.send_headers(stream_id, status, [(b"content-type", b"application/json; charset=utf-8"),
                                                  (b"cache-control", b"no-store")], end=False)
        await protocol.send_data(stream_id, body, end=True)
