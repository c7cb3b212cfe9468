"""The servers a benchmark runs against, as plain context managers (no pytest fixtures).

Reuses the test launchers in ``tests/support`` (``write_node_config``, ``pg.start_server``/``stop_server``/
``create_database``, ``redis_server.running_redis_server``); this module only adds ``tests/`` to ``sys.path``
and wraps them so that a script can ``with`` them. Everything listens on 127.0.0.1 and lives under a directory
the caller owns (and removes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from support.node import NodeProcess, write_node_config  # noqa: E402
from support.pg import create_database, start_server, stop_server  # noqa: E402
from support.redis_server import RedisServer, running_redis_server  # noqa: E402

__all__ = [
    "NodeProcess",
    "RedisServer",
    "running_node",
    "running_postgres",
    "running_postgres_and_redis",
    "running_redis_server",
]


@contextmanager
def running_node(base: Path, **sections: Any) -> Iterator[NodeProcess]:
    """A started ``callfs server`` with its config, data and log under ``base``; stopped (SIGTERM) on exit.

    ``sections`` override config sections as in ``write_node_config`` (e.g. ``metadata_store={...}``).
    Raises ``RuntimeError`` with the log tail when the node does not become ready.
    """
    node = write_node_config(base, **sections)
    node.start()
    try:
        yield node
    finally:
        node.stop(timeout=30)


@contextmanager
def running_postgres(base: Path) -> Iterator[str]:
    """A throwaway PostgreSQL server under ``base`` (fsync off) with one fresh database; yields its DSN.

    The server is stopped (``-m immediate``) on exit; ``base`` itself is left to the caller to remove.
    Raises ``RuntimeError`` when initdb or pg_ctl fails.
    """
    base.mkdir(parents=True, exist_ok=True)
    server = start_server(base)
    try:
        yield create_database(server.admin_dsn)
    finally:
        stop_server(server)


@contextmanager
def running_postgres_and_redis(base: Path) -> Iterator[dict[str, Any]]:
    """PostgreSQL + Redis under ``base``; yields the node config sections that point a node at them."""
    (base / "redis").mkdir(parents=True, exist_ok=True)
    with running_postgres(base / "pg") as dsn, running_redis_server(base / "redis") as redis:
        yield {
            "metadata_store": {"type": "postgres", "dsn": dsn},
            "dlm": {"type": "redis", "redis_addr": f"{redis.host}:{redis.port}", "redis_password": redis.password},
        }
