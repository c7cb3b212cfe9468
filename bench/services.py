"""The servers a benchmark runs against, as plain context managers (no pytest fixtures).

Reuses the test launchers in ``tests/support`` (``write_node_config``, ``new_auth_section``,
``pg.start_server``/``stop_server``/``create_database``, ``redis_server.running_redis_server``); this module only
adds ``tests/`` to ``sys.path`` and wraps them so that a script can ``with`` them (``running_cluster`` configures
its nodes as the test suite's ``cluster_factory`` does). Everything listens on 127.0.0.1 and lives under a directory
the caller owns (and removes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from support.node import NodeProcess, new_auth_section, write_node_config  # noqa: E402
from support.pg import create_database, start_server, stop_server  # noqa: E402
from support.redis_server import RedisServer, running_redis_server  # noqa: E402

__all__ = [
    "MountedVolume",
    "NodeProcess",
    "RedisServer",
    "mounted_volume",
    "running_cluster",
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


class MountedVolume:
    """A live ``callfs-mount``: ``path`` the mountpoint, ``pid`` the daemon's process id."""

    def __init__(self, path: Path, pid: int) -> None:
        self.path = path
        self.pid = pid


@contextmanager
def mounted_volume(node: NodeProcess, volume: str, base: Path) -> Iterator[MountedVolume]:
    """``volume`` of ``node`` mounted with the daemonised ``callfs-mount`` (as the CSI node plugin mounts it) at
    ``base/mnt``, key, pid file and log under ``base``; unmounted (``fusermount3 -u``) on exit. The volume
    directory must exist."""
    mountpoint = base / "mnt"
    mountpoint.mkdir(parents=True)
    key_file = base / "key"
    key_file.write_text(node.key_for("root"))
    pid_file = base / "mount.pid"
    subprocess.run([sys.executable, "-m", "callfs_csi.mount_main", node.url, volume, str(mountpoint),
                    "--key-file", str(key_file), "--log-file", str(base / "mount.log"), "--pid-file", str(pid_file)],
                   check=True, timeout=120)
    try:
        yield MountedVolume(mountpoint, int(pid_file.read_text().strip()))
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], check=False, timeout=60)


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


CLUSTER_DISCOVERY: dict[str, Any] = {"heartbeat_interval": 1.0, "node_timeout": 15.0, "forward_connect_timeout": 5.0}
"""``instance_discovery`` settings of a benchmark cluster (seconds). Faster heartbeats than the defaults (5 s) so
the nodes see each other within a second of starting; a node timeout well above the heartbeat interval so that a
node starved of CPU by the benchmark on 2 shared cores is not reported down in the middle of a run."""

MEMBERSHIP_TIMEOUT = 30.0
"""Seconds :func:`running_cluster` waits for every node to report every other one ``up``."""


def cluster_states(node: NodeProcess) -> dict[str, str]:
    """``{instance_id: state}`` as ``node`` reports it on ``GET /v1/cluster/nodes`` (``callfs.membership.PeerView``).

    Raises ``urllib.error.URLError``/``OSError`` when the node does not answer, ``ValueError`` on a body that is
    not the documented JSON object.
    """
    if not node.url.startswith("http://"):
        raise ValueError(f"not a node URL: {node.url!r}")
    request = urllib.request.Request(f"{node.url}/v1/cluster/nodes",  # noqa: S310 (http:// checked above)
                                     headers={"Authorization": f"Bearer {node.api_key}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        body = json.loads(response.read())
    if not isinstance(body, dict) or not isinstance(body.get("nodes"), list):
        raise ValueError(f"unexpected /v1/cluster/nodes body: {body!r:.300}")
    return {str(n["instance_id"]): str(n["state"]) for n in body["nodes"] if n.get("instance_id")}


def wait_for_membership(nodes: Sequence[NodeProcess], instance_ids: Sequence[str],
                        timeout: float = MEMBERSHIP_TIMEOUT) -> None:
    """Poll until every node in ``nodes`` reports every id in ``instance_ids`` as ``up``.

    Raises ``RuntimeError`` with the last states seen when that does not happen within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    wanted = dict.fromkeys(instance_ids, "up")
    last: dict[str, object] = {}
    while True:
        pending = False
        for node in nodes:
            try:
                states = cluster_states(node)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last[node.url] = repr(exc)
                pending = True
                continue
            last[node.url] = states
            if any(states.get(instance_id) != "up" for instance_id in wanted):
                pending = True
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster membership not complete after {timeout}s: {last}")
        time.sleep(0.1)


@contextmanager
def running_cluster(base: Path, count: int, **sections: Any) -> Iterator[list[NodeProcess]]:
    """``count`` started nodes forming one cluster; stopped (SIGTERM), then PostgreSQL and Redis, on exit.

    As the test suite's ``cluster_factory`` (``tests/support/node.py``): the nodes share one fresh PostgreSQL
    database (metadata store), one Redis (DLM) and one ``auth`` section (same API keys and internal proxy
    secret: peers forward with the internal secret, docs/rest-api.md); their instance ids are
    ``node-0`` .. ``node-<count-1>`` in list order, with :data:`CLUSTER_DISCOVERY` heartbeats. Node ``i`` lives
    under ``base/node-<i>``, Redis under ``base/services``. ``sections`` override config sections of every node
    (dicts are merged into the shared ones). Yields once every node reports every node ``up``.

    Raises ``ValueError`` when ``count`` < 1, ``RuntimeError`` when a node does not start or the membership does
    not complete within :data:`MEMBERSHIP_TIMEOUT` seconds.
    """
    if count < 1:
        raise ValueError(f"a cluster needs at least one node, not {count}")
    with running_postgres_and_redis(base / "services") as stores, ExitStack() as stack:
        shared: dict[str, Any] = {**stores, "auth": new_auth_section(), "instance_discovery": CLUSTER_DISCOVERY}
        nodes = []
        for i in range(count):
            own = {key: dict(value) if isinstance(value, dict) else value for key, value in shared.items()}
            own["instance_discovery"]["instance_id"] = f"node-{i}"
            for key, value in sections.items():
                own[key] = {**own.get(key, {}), **value} if isinstance(value, dict) else value
            nodes.append(stack.enter_context(running_node(base / f"node-{i}", **own)))
        wait_for_membership(nodes, [f"node-{i}" for i in range(count)])
        yield nodes
