"""The servers a benchmark runs against, as plain context managers (no pytest fixtures).

Reuses the test launchers in ``tests/support`` (``write_node_config``, ``pg.start_server``/``stop_server``/
``create_database``, ``redis_server.running_redis_server``); this module only adds ``tests/`` to ``sys.path``
and wraps them so that a script can ``with`` them. Everything listens on 127.0.0.1 and lives under a directory
the caller owns (and removes).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
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
def running_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server (fsync off) with one fresh database; yields its DSN.

    The server gets its own ``mkdtemp`` directory directly under ``$TMPDIR`` (as root it runs as the
    ``postgres`` user, who must be able to reach the directory); stopped (``-m immediate``) and removed on exit.
    Raises ``RuntimeError`` when initdb or pg_ctl fails.
    """
    base = Path(tempfile.mkdtemp(prefix="callfs-bench-pg-"))
    try:
        server = start_server(base)
        try:
            yield create_database(server.admin_dsn)
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def running_postgres_and_redis(base: Path) -> Iterator[dict[str, Any]]:
    """PostgreSQL (own temp dir) + Redis (under ``base``); yields the node config sections for them."""
    (base / "redis").mkdir(parents=True, exist_ok=True)
    with running_postgres() as dsn, running_redis_server(base / "redis") as redis:
        yield {
            "metadata_store": {"type": "postgres", "dsn": dsn},
            "dlm": {"type": "redis", "redis_addr": f"{redis.host}:{redis.port}", "redis_password": redis.password},
        }
