"""Storage nodes served in the test process: the application ``callfs server`` runs, on a thread of its own.

The node is built exactly as ``callfs server -c <config>`` builds it (the same config file and loader, and
:func:`callfs.server.running`: metadata store, locks, backends, middlewares, background jobs), and listens on
127.0.0.1 at a free port; tests talk HTTP to it as to a subprocess node, synchronously or from their own event
loop. What needs a process of its own (signals, ``kill -9``, the CLI command, clusters) uses
:mod:`support.node`.

Fixtures:
- ``app_node_factory(**sections)``: start a node with a fresh data dir; ``sections`` override config sections.
  Returns an :class:`AppNode`.
- ``app_node``: one node on the embedded defaults (SQLite, in-process locks).
- ``api_node``: parametrised over ``sqlite`` (SQLite + in-process locks) and ``postgres`` (PostgreSQL + Redis),
  so API tests run against both metadata stores.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from callfs.config import Config, load_config
from callfs.node import Node
from callfs.server import running
from support.node import STARTUP_TIMEOUT, NodeSpec, postgres_redis_sections, write_node_config

T = TypeVar("T")

STOP_TIMEOUT = 30.0
"""Seconds :meth:`AppNode.stop` waits for the node to drain and close."""


class AdjustableClock:
    """Wall-clock time plus an offset a test moves forward, e.g. past a link's expiry."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class AppNode(NodeSpec):
    """A storage node served by a thread of this process with its own event loop.

    ``clock`` is the time the node decides link expiry by (move it with ``clock.advance``). ``node`` is the
    running :class:`~callfs.node.Node`, which lives on the node's own event loop.
    """

    clock: AdjustableClock = field(default_factory=AdjustableClock)
    node: Node | None = None
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _failure: BaseException | None = None

    def start(self) -> None:
        """Load the config, start the node and return once it listens; raises what stopped it from starting."""
        if self._thread is not None:
            raise RuntimeError(f"node at {self.url} is already running")
        config = load_config(self.config_path, {**os.environ, **self.env})
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._failure = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(config, started),), name=f"callfs-node {self.url}", daemon=True
        )
        self._thread.start()
        try:
            started.result(STARTUP_TIMEOUT)
        except BaseException:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
            raise

    async def _serve(self, config: Config, started: concurrent.futures.Future[None]) -> None:
        try:
            async with running(config, clock=self.clock) as node:
                self.node, self._loop, self._stop = node, asyncio.get_running_loop(), asyncio.Event()
                started.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                self._failure = exc
        finally:
            self.node, self._loop, self._stop = None, None, None

    def stop(self) -> None:
        """Drain and close the node, as ``callfs server`` does on SIGTERM; raises what went wrong meanwhile."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"node at {self.url} did not stop within {STOP_TIMEOUT}s")
        self._thread = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def restart(self) -> None:
        self.stop()
        self.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` (a coroutine using the node's engine or store) on the node's own loop; its result."""
        if self.node is None or self._loop is None:
            work.close()
            raise RuntimeError(f"node at {self.url} is not running")
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(STOP_TIMEOUT)

    def sweep_orphans(self) -> int:
        """Run the node's orphan sweep now (no minimum age) on its own loop; returns the blobs it removed."""
        if self.node is None or self._loop is None:
            raise RuntimeError(f"node at {self.url} is not running")
        sweep = self.node.engine.sweep_orphans(at_start=False, min_age=0)
        return asyncio.run_coroutine_threadsafe(sweep, self._loop).result(STOP_TIMEOUT)


@pytest.fixture
def app_node_factory(tmp_path: Path) -> Iterator[Callable[..., AppNode]]:
    started: list[AppNode] = []

    def make(**sections: Any) -> AppNode:
        node = write_node_config(tmp_path / f"app-node{len(started)}", AppNode, **sections)
        started.append(node)
        node.start()
        return node

    yield make
    failures = []
    for node in started:
        try:
            node.stop()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


@pytest.fixture
def app_node(app_node_factory: Callable[..., AppNode]) -> AppNode:
    return app_node_factory()


@pytest.fixture(params=["sqlite", "postgres"])
def api_node(request: pytest.FixtureRequest, app_node_factory: Callable[..., AppNode]) -> AppNode:
    if request.param == "sqlite":
        return app_node_factory()
    return app_node_factory(**postgres_redis_sections(request))
