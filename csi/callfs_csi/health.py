"""``/healthz`` over HTTP, served by the plugin itself (no livenessprobe sidecar).

Like the livenessprobe sidecar, the check calls the CSI ``Probe`` RPC through the plugin's own CSI socket, so it
fails when the gRPC server stops answering (a wedged event loop, a socket deleted from under it) and when
``Probe`` says not ready. In node mode with built-in registration it also fails when the registration socket is
gone from the kubelet's ``plugins_registry`` (as node-driver-registrar's own health check does): a restart puts
it back. 200 with ``ok``; 500 with the reason in plain text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from aiohttp import web

from callfs_csi import csi_pb2, csi_pb2_grpc

__all__ = ["HealthServer", "parse_http_endpoint"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 4.0
"""Seconds one ``Probe`` may take; below the chart's probe timeout (5 s) so that a slow probe answers 500 and
says why instead of being cut off."""


def parse_http_endpoint(endpoint: str) -> tuple[str | None, int]:
    """``HOST:PORT`` (``:PORT`` for every interface, as node-driver-registrar's ``--http-endpoint``) → ``(host or
    None, port)``.

    Raises:
        ValueError: no port, or a port outside 1..65535.
    """
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT or :PORT, got {endpoint!r}")
    host = host.strip("[]")  # an IPv6 literal
    return host or None, int(port)


class HealthServer:
    """Answers ``GET /healthz`` on ``host:port`` by probing the CSI endpoint ``grpc_address`` (as given to
    ``grpc.aio``); ``extra_check``, when given, returns a reason to fail (or ``None``) after a good probe."""

    def __init__(self, grpc_address: str, host: str | None, port: int,
                 extra_check: Callable[[], str | None] | None = None) -> None:
        self.grpc_address = grpc_address
        self.host, self.port = host, port
        self.extra_check = extra_check
        self._channel: grpc.aio.Channel | None = None
        self._runner: web.AppRunner | None = None

    async def check(self) -> str | None:
        """``None`` when healthy, else why not."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.grpc_address)
        try:
            reply = await csi_pb2_grpc.IdentityStub(self._channel).Probe(csi_pb2.ProbeRequest(),
                                                                        timeout=PROBE_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            return f"Probe failed: {exc.code().name}: {exc.details()}"
        if reply.HasField("ready") and not reply.ready.value:
            return "Probe: not ready"
        return self.extra_check() if self.extra_check is not None else None

    async def _healthz(self, request: web.Request) -> web.Response:
        problem = await self.check()
        if problem is not None:
            log.warning("health check failed: %s", problem)
            return web.Response(status=500, text=problem + "\n")
        return web.Response(text="ok\n")

    async def start(self) -> None:
        """Listen. Raises ``OSError`` when the address cannot be bound."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("serving /healthz on %s:%d", self.host or "*", self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
