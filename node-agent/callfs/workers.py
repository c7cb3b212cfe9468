"""One node served by several worker processes: the supervisor, and each worker's entry point.

``callfs server`` runs :func:`serve_node`. With ``server.workers`` 1 (always so on SQLite metadata or in-process
locks) the process serves the node itself. With more, it becomes the node's *supervisor*:

- It sets up the node's identity once (data directory, generated secrets), so the workers only read it.
- It starts worker 0, the *primary*, and waits until it serves; then the others. Each worker is
  ``python -m callfs.workers``: it reads its configuration and :class:`~callfs.server.Role` as JSON on stdin,
  serves the API on the shared listener (``SO_REUSEPORT``: the kernel spreads new connections over the workers),
  and writes one byte on its ready pipe once it serves. Only the primary runs the background jobs (membership
  heartbeat, link sweep, orphan sweep, backend retry) and the metrics and HTTP/3 listeners.
- SIGTERM/SIGINT is passed on to every worker; each stops accepting and drains its own in-flight requests for up
  to ``server.shutdown_timeout`` seconds; the supervisor exits 0 once all have exited.
- A worker that dies is started again (its in-flight requests are lost; the node keeps serving on the others).
  A worker that cannot start at all, or dies :data:`MAX_RESTARTS` times within :data:`RESTART_WINDOW` seconds,
  stops the node with exit status 1, so that a service manager or Kubernetes sees the failure.
- Workers die with the supervisor (``PR_SET_PDEATHSIG``): a supervisor killed is the node crashed.
- Metrics: every worker records into the node's directory ``<data_dir>/metrics`` (prometheus-client's
  multiprocess mode, wiped at start; see :mod:`callfs.metrics`); a dead worker's live gauges are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from callfs.config import Config

log = logging.getLogger("callfs.workers")

MAX_RESTARTS = 5
"""Deaths of one worker within :data:`RESTART_WINDOW` seconds after which the node gives up (exit 1)."""
RESTART_WINDOW = 60.0
"""Seconds over which :data:`MAX_RESTARTS` is counted."""
RESTART_DELAY = 0.5
"""Seconds before a dead worker is started again."""
START_TIMEOUT = 120.0
"""Seconds a worker may take from launch to serving."""
STOP_GRACE = 10.0
"""Seconds a worker may take beyond ``server.shutdown_timeout`` to exit after SIGTERM before it is killed."""
METRICS_DIR = "metrics"
"""The node's prometheus-client multiprocess directory, inside ``data_dir``."""


class WorkerFailed(Exception):
    """A worker could not start, or died too often; the node stops."""


def serve_node(config: Config) -> int:
    """Serve the node of ``config`` until SIGTERM/SIGINT: in this process (``config.workers`` 1) or from
    ``config.workers`` worker processes under this one. Returns the exit status (0 after a clean shutdown).

    Raises whatever stops the node from starting (a dependency that cannot be reached, :class:`WorkerFailed`).
    """
    if config.workers == 1:
        from callfs.server import serve

        asyncio.run(serve(config))
        return 0
    return asyncio.run(supervise(config))


def prepare_metrics_dir(config: Config) -> Path:
    """``<data_dir>/metrics``, emptied (values of a previous run must not be added to this one's)."""
    path = config.data_dir / METRICS_DIR
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
    return path


@dataclass
class _Slot:
    """One worker position: its role, current process, and the times it died (for the restart budget)."""

    index: int
    process: asyncio.subprocess.Process | None = None
    deaths: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_RESTARTS))


class Supervisor:
    """Starts, watches, restarts and stops the ``config.workers`` workers of one node."""

    def __init__(self, config: Config, metrics_dir: Path) -> None:
        self.config = config
        self.metrics_dir = metrics_dir
        self.slots = [_Slot(i) for i in range(config.workers)]
        self.stopping = asyncio.Event()
        self.failure: str | None = None

    async def _spawn(self, slot: _Slot, *, fresh: bool) -> None:
        """Launch the worker of ``slot`` and wait until it serves.

        Raises:
            WorkerFailed: it exited or did not serve within :data:`START_TIMEOUT` seconds (it is killed then).
        """
        from callfs.metrics import MULTIPROC_DIR_ENV
        from callfs.server import Role

        role = Role(index=slot.index, count=len(self.slots), primary=slot.index == 0, fresh=fresh)
        read_fd, write_fd = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callfs.workers", stdin=asyncio.subprocess.PIPE, pass_fds=(write_fd,),
                env={**os.environ, MULTIPROC_DIR_ENV: str(self.metrics_dir)},
            )
        finally:
            os.close(write_fd)
        slot.process = process
        log.info("worker %d started (pid %d)", slot.index, process.pid,
                 extra={"worker": slot.index, "pid": process.pid, "primary": role.primary})
        handoff = {"config": self.config.model_dump(mode="json"), "role": asdict(role), "ready_fd": write_fd,
                   "supervisor": os.getpid()}
        assert process.stdin is not None
        process.stdin.write(json.dumps(handoff).encode())
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        process.stdin.close()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        try:
            ready = await asyncio.wait_for(reader.read(1), START_TIMEOUT)
        except TimeoutError:
            ready = b""
            process.kill()
        finally:
            transport.close()
        if not ready:
            code = await process.wait()
            raise WorkerFailed(f"worker {slot.index} (pid {process.pid}) exited with status {code} before serving")
        log.info("worker %d serving (pid %d)", slot.index, process.pid,
                 extra={"worker": slot.index, "pid": process.pid})

    async def start(self) -> None:
        """Start the primary, then the other workers at once; every one serves when this returns.

        Raises:
            WorkerFailed: one of them could not start (the others are stopped first).
        """
        try:
            await self._spawn(self.slots[0], fresh=True)
            await asyncio.gather(*(self._spawn(slot, fresh=True) for slot in self.slots[1:]))
        except BaseException:
            await self.stop()
            raise

    async def _keep(self, slot: _Slot) -> None:
        """Start the worker of ``slot`` again whenever it dies, until the node stops or gives up on it."""
        from prometheus_client.multiprocess import mark_process_dead

        while True:
            process = slot.process
            assert process is not None
            code = await process.wait()
            if self.stopping.is_set():
                return
            mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
            now = time.monotonic()
            slot.deaths.append(now)
            if len(slot.deaths) == MAX_RESTARTS and now - slot.deaths[0] <= RESTART_WINDOW:
                self.failure = (f"worker {slot.index} died {MAX_RESTARTS} times within {RESTART_WINDOW:.0f}s "
                                f"(last exit status {code}); stopping the node")
                log.error("%s", self.failure, extra={"worker": slot.index})
                self.stopping.set()
                return
            log.error("worker %d (pid %d) exited with status %s; starting it again", slot.index, process.pid, code,
                      extra={"worker": slot.index, "pid": process.pid, "status": code})
            await asyncio.sleep(RESTART_DELAY)
            if self.stopping.is_set():
                return
            try:
                await self._spawn(slot, fresh=False)
            except WorkerFailed as exc:
                log.error("%s", exc, extra={"worker": slot.index})
            if self.stopping.is_set() and slot.process is not None and slot.process.returncode is None:
                slot.process.send_signal(signal.SIGTERM)  # started while the node began to stop
                await slot.process.wait()
                return

    async def run(self) -> int:
        """Watch the started workers until :attr:`stopping` is set (a signal, or a worker given up on), then
        stop them; returns the node's exit status (1 when a worker was given up on)."""
        keepers = [asyncio.create_task(self._keep(slot)) for slot in self.slots]
        await self.stopping.wait()
        await self.stop()
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        return 1 if self.failure else 0

    async def stop(self) -> None:
        """SIGTERM every live worker, wait for them to drain (``server.shutdown_timeout`` plus
        :data:`STOP_GRACE` seconds), then SIGKILL any left."""
        self.stopping.set()
        live = [slot.process for slot in self.slots if slot.process is not None and slot.process.returncode is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(process.wait()) for process in live]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=self.config.server.shutdown_timeout + STOP_GRACE)
        for process in live:
            if process.returncode is None:
                log.warning("worker pid %d did not exit after draining; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def supervise(config: Config) -> int:
    """Serve the node from ``config.workers`` worker processes until SIGTERM/SIGINT (see the module
    description); returns the exit status.

    Raises:
        WorkerFailed: a worker could not start (every started worker is stopped first).
        ConfigError: the data directory or the secrets file cannot be set up.
    """
    from callfs.node import load_or_generate_secrets, secure_data_dir
    from callfs.server import announce

    secure_data_dir(config)
    credentials = load_or_generate_secrets(config)
    supervisor = Supervisor(config, prepare_metrics_dir(config))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.stopping.set)
    log.info("starting %d workers", config.workers, extra={"workers": config.workers})
    await supervisor.start()
    announce(config, credentials)
    return await supervisor.run()


def _die_with(supervisor: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux ``PR_SET_PDEATHSIG``); exit at once when
    the parent is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != supervisor:
        os._exit(1)


def worker_main() -> int:
    """A worker's process: read the handoff (``{"config", "role", "ready_fd", "supervisor"}``) from stdin,
    serve until SIGTERM, return the exit status (1 when the node part could not start)."""
    import structlog

    from callfs.logs import configure_logging
    from callfs.node import Node
    from callfs.server import Role, serve

    handoff = json.loads(sys.stdin.buffer.read())
    _die_with(handoff["supervisor"])
    config = Config.model_validate(handoff["config"])
    role = Role(**handoff["role"])
    ready_fd: int = handoff["ready_fd"]
    configure_logging(config.log.level, config.log.format)
    structlog.contextvars.bind_contextvars(worker=role.index)

    def ready(_: Node) -> None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)

    try:
        asyncio.run(serve(config, role, on_ready=ready))
    except Exception as exc:
        print(f"worker {role.index}: cannot serve: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
