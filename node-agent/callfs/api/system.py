"""``/health`` (liveness), ``/ready`` (dependencies reachable) and ``/metrics`` (Prometheus, authenticated;
served only when ``metrics.enabled``)."""

from __future__ import annotations

from aiohttp import web

from callfs.api import render
from callfs.api.keys import NODE


def add_routes(app: web.Application) -> None:
    """``/health`` and ``/ready``; ``/metrics`` only when ``metrics.enabled`` (otherwise it answers 404)."""
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    if app[NODE].config.metrics.enabled:
        app.router.add_get("/metrics", metrics)


async def health(request: web.Request) -> web.StreamResponse:
    """200 ``{"status": "ok"}`` while the process serves requests."""
    return render.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.StreamResponse:
    """200 when the metadata store, lock service and backends answer (and no local disk is full), else 503;
    the body names each check, and ``errors`` says why a backend is not ready."""
    node = request.app[NODE]
    checks = await node.ready()
    ok = all(checks.values())
    body: dict[str, object] = {"status": "ready" if ok else "not ready", "checks": checks}
    errors = {f"backend:{name}": reason for name, reason in node.engine.unavailable.items()}
    for name, backend in node.engine.backends.items():
        full = getattr(backend, "storage_full", None)  # a local disk that ran out of space
        if full and not checks.get(f"backend:{name}", True):
            errors.setdefault(f"backend:{name}", full)
    if errors:
        body["errors"] = errors
    return render.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    """The node's metrics in the Prometheus text format."""
    body = request.app[NODE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
