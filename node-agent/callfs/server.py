"""Running a storage node: listener (HTTP or TLS), background tasks, graceful shutdown on SIGTERM/SIGINT.

One process serves the whole node, or it is one of the node's worker processes (:class:`Role`, started by
:mod:`callfs.workers`): then the API listener is shared with the other workers (``SO_REUSEPORT``), and only the
primary worker runs the background jobs and the metrics and HTTP/3 listeners.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from callfs.api.app import build_app, build_metrics_app
from callfs.api.http3 import Http3Listener
from callfs.api.keys import IN_FLIGHT
from callfs.api.listener import FD_RESERVE, AcceptErrorFilter, NodeRunner, default_max_connections
from callfs.config import Config, split_host_port
from callfs.convert import Converter
from callfs.links import Clock
from callfs.node import Node, NodeSecrets, external_url
from callfs.repair import Upkeep
from callfs.s3.app import build_s3_app

log = logging.getLogger("callfs.server")

BACKEND_RETRY_INTERVAL = 10.0
"""Seconds between attempts to start a shared backend (S3) that was unavailable."""


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """A TLS server context from ``server.cert_file``/``key_file`` (TLS 1.2+), or ``None`` for plain HTTP."""
    if not config.uses_tls:
        return None
    assert config.server.cert_file is not None and config.server.key_file is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.server.cert_file, config.server.key_file)
    return context


async def _every(interval: float, job: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled; failures are logged, not fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            done = await job()
            if done:
                log.info("%s: %s", what, done)
        except Exception:
            log.warning("%s failed; will retry", what, exc_info=True)


async def _converting(converter: Converter, interval: float) -> None:
    """Run a conversion pass of blob files to blocks at once, then every ``interval`` seconds, until cancelled;
    failures are logged, not fatal."""
    while True:
        try:
            done = await converter.run_pass()
            if done:
                log.info("files converted to blocks: %s", done)
        except Exception:
            log.warning("conversion of blob files failed; will retry", exc_info=True)
        await asyncio.sleep(interval)


@dataclass(frozen=True, slots=True)
class Role:
    """What one process does for its node: worker ``index`` of ``count``; the ``primary`` one runs the background
    jobs and the metrics and HTTP/3 listeners; ``fresh`` is false for a worker restarted beside running ones."""

    index: int = 0
    count: int = 1
    primary: bool = True
    fresh: bool = True


SOLE = Role()
"""The role of a node served by one process."""


def _background_jobs(node: Node) -> list[asyncio.Task[None]]:
    config = node.config
    discovery = config.instance_discovery
    grace = max(60.0, discovery.orphan_sweep_interval / 2)
    jobs: dict[str, Coroutine[object, object, None]] = {
        "heartbeat": node.membership.run(discovery.heartbeat_interval),
        "link_sweep": _every(config.links.sweep_interval, node.engine.sweep_links, "links swept"),
        "backend_retry": _every(BACKEND_RETRY_INTERVAL, node.retry_backends, "backends recovered"),
        "orphan_sweep": _every(
            discovery.orphan_sweep_interval,
            lambda: node.engine.sweep_orphans(at_start=False, min_age=grace),
            "orphaned blobs removed",
        ),
    }
    # The leaving node's own part of a drain: move the files whose bytes are a blob on its disk.
    jobs["drain"] = _every(config.backend.replica_repair_interval, node.drains.run, "files moved off this node")
    if config.backend.convert_blobs:
        # Files stored as one blob (older versions, whole writes of a node alone) converted to blocks.
        jobs["blob_conversion"] = _converting(node.converter, config.backend.convert_interval)
    replication = node.engine.block_files.replication
    if replication is not None:
        upkeep = Upkeep(replication, node.backends, node.metrics, grace=config.backend.replica_repair_grace,
                        scrub_rate=config.backend.scrub_bytes_per_second, orphan_age=node.engine.block_files.grace)
        jobs["block_repair"] = _every(config.backend.replica_repair_interval, upkeep.repair, "block copies repaired")
        jobs["block_scrub"] = _every(config.backend.scrub_interval, upkeep.scrub, "corrupt block copies replaced")
    for name in jobs:
        node.metrics.background_jobs.labels(name).set(1)
    return [asyncio.create_task(job, name=name) for name, job in jobs.items()]


def announce(config: Config, credentials: NodeSecrets) -> None:
    """Tell the operator on stderr where the node serves, and the development API key when one was generated."""
    key = credentials.generated_api_key
    url = external_url(config)
    print(f"CallFS node {credentials.instance_id} serving at {url}", file=sys.stderr)
    if key is not None:
        secrets_file = config.data_dir / "secrets.json"
        print(f"Development API key: {key}  (stored in {secrets_file})", file=sys.stderr)
        print(f"Try: curl -H 'Authorization: Bearer {key}' {url}/v1/directories/", file=sys.stderr)
    sys.stderr.flush()


def max_connections(config: Config, role: Role = SOLE) -> int:
    """``server.max_connections`` divided evenly over the node's workers (rounded up), or when unset each
    process's open-files limit less a reserve (see :func:`callfs.api.listener.default_max_connections`). Warns
    when the configured cap exceeds that."""
    limit = default_max_connections()
    configured = config.server.max_connections
    if configured is None:
        return limit
    configured = -(-configured // role.count)
    if configured > limit:
        log.warning("server.max_connections %d exceeds the open-files limit less %d reserved descriptors (%d): "
                    "raise ulimit -n", configured, FD_RESERVE, limit)
    return configured


@asynccontextmanager
async def running(config: Config, *, clock: Clock = time.time, role: Role = SOLE) -> AsyncIterator[Node]:
    """The node of ``config``, started, listening and running its background jobs for the ``async with`` body.

    ``role``: the process's part in a node served by several workers (the API listener then joins the others'
    with ``SO_REUSEPORT``, and so does the S3 listener; background jobs, metrics and HTTP/3 listeners only in
    the primary).

    Leaving the body drains: the listener stops accepting, in-flight requests get ``server.shutdown_timeout``
    seconds to finish (uploads that do not finish are cancelled and their temp files removed), then connections
    close and the node disconnects. ``clock`` decides when single-use links expire.
    """
    node = Node.from_config(config, clock=clock)
    try:
        orphans = await node.start(primary=role.primary, fresh=role.fresh)
        if orphans:
            log.info("removed %d orphaned blobs and temp files", orphans)
        app = build_app(node)
        http3 = Http3Listener.for_config(config) if role.primary else None
        if http3 is not None:
            http3.install(app)
        AcceptErrorFilter.install(asyncio.get_running_loop())
        runner = NodeRunner(app, max_connections=max_connections(config, role), handle_signals=False,
                            access_log=None, shutdown_timeout=config.server.shutdown_timeout)
        await runner.setup()
        host, port = split_host_port(config.server.listen_addr)
        # SO_REUSEPORT: the kernel spreads new connections over the workers' sockets, and only processes of the
        # same user may join the group.
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context(config), reuse_address=True,
                           reuse_port=role.count > 1 or None)
        await site.start()
        if http3 is not None:
            await http3.start(runner)
        metrics_runner: web.AppRunner | None = None
        if config.metrics.listen_addr is not None and role.primary:
            metrics_runner = web.AppRunner(build_metrics_app(node), handle_signals=False, access_log=None)
            await metrics_runner.setup()
            metrics_host, metrics_port = split_host_port(config.metrics.listen_addr)
            await web.TCPSite(metrics_runner, metrics_host, metrics_port, ssl_context=ssl_context(config),
                              reuse_address=True).start()
        s3_runner: web.AppRunner | None = None
        s3_site: web.TCPSite | None = None
        if config.s3.listen_addr:
            s3_runner = web.AppRunner(build_s3_app(node), handle_signals=False, access_log=None,
                                      shutdown_timeout=config.server.shutdown_timeout)
            await s3_runner.setup()
            s3_host, s3_port = split_host_port(config.s3.listen_addr)
            s3_site = web.TCPSite(s3_runner, s3_host, s3_port, ssl_context=ssl_context(config), reuse_address=True,
                                  reuse_port=role.count > 1 or None)
            await s3_site.start()
        jobs = _background_jobs(node) if role.primary else []
        try:
            yield node
            log.info("shutting down: draining in-flight requests (up to %.0fs)", config.server.shutdown_timeout)
            # Stop accepting connections but keep reading open ones: aiohttp's own cleanup stops reading
            # request bodies at once, which would cut off uploads that are about to finish.
            await site.stop()
            if s3_site is not None:
                await s3_site.stop()
            if http3 is not None:
                http3.drain()
            if not await app[IN_FLIGHT].wait_idle(config.server.shutdown_timeout):
                log.warning("%d requests still running after the shutdown timeout; cancelling them",
                            app[IN_FLIGHT].count)
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            if s3_runner is not None:
                await s3_runner.cleanup()
            if http3 is not None:
                await http3.close()
            await runner.cleanup()
    finally:
        await node.close()


async def serve(config: Config, role: Role = SOLE, *, on_ready: Callable[[Node], None] | None = None) -> None:
    """Start the node (or one worker of it, see ``role``) and serve until SIGTERM/SIGINT, then drain (see
    :func:`running`). ``on_ready`` is called once the node serves; by default the sole process announces it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(config, role=role) as node:
        if on_ready is not None:
            on_ready(node)
        else:
            announce(config, node.credentials)
        await stop.wait()
