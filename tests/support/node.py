"""Storage nodes as real subprocesses (``callfs server -c <config>``) for end-to-end API tests.

Fixtures:
- ``node_factory(**sections)``: start a node with a fresh data dir; ``sections`` override config sections
  (e.g. ``metadata_store={"type": "postgres", "dsn": ...}``). Returns a :class:`NodeProcess`.
- ``node``: one node on the embedded defaults (SQLite, in-process locks).
- ``api_node_process``: parametrised over ``sqlite`` (SQLite + in-process locks) and ``postgres``
  (PostgreSQL + Redis), for tests that kill or signal the node.

Tests of API behaviour use the in-process nodes of :mod:`support.app_node` instead; these are for what needs a
process of its own: signals, ``kill -9``, the ``callfs server`` command, clusters.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from support.ports import free_port
from support.waiting import wait_for

N = TypeVar("N", bound="NodeSpec")

STARTUP_TIMEOUT = 60.0
"""Seconds to wait for ``/ready`` after launching a node."""


@dataclass
class NodeSpec:
    """A node's config file, data dir and keys, as :func:`write_node_config` wrote them. ``url`` is
    ``http://127.0.0.1:<port>``; ``api_key`` maps to ``api-user-0``; ``env`` adds environment overrides."""

    config_path: Path
    data_dir: Path
    url: str
    api_key: str
    users: dict[str, str]
    internal_secret: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def key_for(self, user: str) -> str:
        """The API key of ``user`` (from ``auth.api_key_users``)."""
        return self.users[user]


class ServedNode(Protocol):
    """What a test needs of a running node, served in-process (:class:`support.app_node.AppNode`) or by a
    subprocess (:class:`NodeProcess`): its URL and keys, and an outage (:meth:`stop`, then :meth:`start` on the
    same port)."""

    url: str
    api_key: str

    def key_for(self, user: str) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> object: ...


@dataclass
class NodeProcess(NodeSpec):
    """A storage node subprocess (``callfs server -c <config_path>``), logging to ``log_path``."""

    process: subprocess.Popen[bytes] | None = None
    ready_path: str = "/ready"
    """What :meth:`start` waits for: ``/ready``, or ``/health`` for a node expected to be up but not ready."""

    def start(self) -> None:
        """Launch and wait for :attr:`ready_path` to answer 200; raises ``RuntimeError`` with the log tail."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "callfs", "server", "-c", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent, env={**os.environ, **self.env},
        )
        log.close()
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"node exited with {process.returncode}:\n{self.log_tail()}")
            with urllib.request.urlopen(self.url + self.ready_path, timeout=1, context=_no_verify()) as response:
                return response.status == 200

        try:
            # Refused connections and error statuses (urllib's HTTPError, e.g. 503) are OSErrors: not up yet.
            wait_for(ready, STARTUP_TIMEOUT, f"{self.url}{self.ready_path} to answer 200", 0.05, ignoring=(OSError,))
        except AssertionError as exc:
            raise RuntimeError(f"node not ready after {STARTUP_TIMEOUT}s ({exc}):\n{self.log_tail()}") from exc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for exit; returns the exit code (SIGKILL after ``timeout`` seconds)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL, like a crash."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _no_verify() -> ssl.SSLContext:
    """Readiness polls only check that the node answers; tests verify certificates themselves."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``127.0.0.1``/``localhost`` (one day): ``(cert.pem, key.pem)``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def new_auth_section() -> dict[str, Any]:
    """An ``auth`` section with users api-user-0, alice, bob (in group alice) and root, and fresh secrets; S3
    access keys ``S3ALICE``, ``S3BOB`` and ``S3ROOT`` act as alice, bob and root."""
    users = {"api-user-0": secrets.token_urlsafe(24), "alice": secrets.token_urlsafe(24),
             "bob": secrets.token_urlsafe(24), "root": secrets.token_urlsafe(24)}
    s3 = {f"S3{user.upper()}": {"secret": secrets.token_urlsafe(30), "user": user} for user in ("alice", "bob", "root")}
    return {"api_key_users": users, "internal_proxy_secret": secrets.token_urlsafe(24),
            "single_use_link_secret": secrets.token_urlsafe(24), "user_groups": {"bob": ["alice"]},
            "s3_credentials": s3}


def write_node_config(base: Path, node_type: type[N] = NodeProcess, /, **sections: Any) -> N:
    """Write a config for a node under ``base`` with four users and a free port; returns the (stopped) node, a
    ``node_type``. Its ``url`` is ``https://`` when ``server`` names a ``cert_file``.

    ``sections`` override config sections; an ``auth`` override replaces the generated one whole (nodes of one
    cluster share it).
    """
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = sections.pop("auth", None) or new_auth_section()
    users = auth["api_key_users"]
    internal = auth["internal_proxy_secret"]
    config: dict[str, Any] = {
        "data_dir": str(base / "data"),
        # One process per node unless a test asks for workers (tests/integration/test_node_workers.py): on
        # PostgreSQL + Redis the default is one per core, which would double every cluster test's start-up.
        "server": {"listen_addr": f"127.0.0.1:{port}", "shutdown_timeout": 10, "workers": 1},
        "auth": auth,
        "log": {"level": "info", "format": "json"},
        "dlm": {"wait_timeout": 10},
        # Rate limits (on by default) would refuse the rapid link and download bursts of most tests; the
        # tests of the limits turn them on with a ``rate_limits`` section naming ``enabled: true``.
        "rate_limits": {"enabled": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    scheme = "https" if config["server"].get("cert_file") else "http"
    path = base / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return node_type(
        config_path=path, data_dir=base / "data", url=f"{scheme}://127.0.0.1:{port}", api_key=users["api-user-0"],
        users=users, internal_secret=internal, log_path=base / "node.log",
    )


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def make(*, ready_path: str = "/ready", **sections: Any) -> NodeProcess:
        node = write_node_config(tmp_path / f"node{len(started)}", **sections)
        node.ready_path = ready_path
        started.append(node)
        node.start()
        return node

    yield make
    for node in started:
        node.stop(timeout=15)


@pytest.fixture
def node(node_factory: Callable[..., NodeProcess]) -> NodeProcess:
    return node_factory()


def postgres_redis_sections(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Config sections for a fresh PostgreSQL database and a clean Redis database (from the fixtures)."""
    dsn = request.getfixturevalue("postgres_dsn")
    request.getfixturevalue("redis_url")  # a clean database
    redis_server = request.getfixturevalue("redis_server")
    return {
        "metadata_store": {"type": "postgres", "dsn": dsn},
        "dlm": {"type": "redis", "redis_addr": f"{redis_server.host}:{redis_server.port}",
                "redis_password": redis_server.password},
    }


@pytest.fixture
def cluster_factory(
    request: pytest.FixtureRequest, node_factory: Callable[..., NodeProcess]
) -> Callable[..., list[NodeProcess]]:
    """``cluster_factory(n, instance_prefix="node", **sections)``: ``n`` nodes (instance IDs
    ``<instance_prefix>-<i>``) sharing one fresh PostgreSQL database, one Redis and one ``auth`` section, with
    fast heartbeats (0.3 s) and a 2 s node timeout."""

    def make(count: int = 3, instance_prefix: str = "node", **sections: Any) -> list[NodeProcess]:
        shared: dict[str, Any] = {
            "auth": new_auth_section(),
            **postgres_redis_sections(request),
            "instance_discovery": {"heartbeat_interval": 0.3, "node_timeout": 2, "forward_connect_timeout": 2},
        }
        nodes = []
        for i in range(count):
            own = {k: (dict(v) if isinstance(v, dict) else v) for k, v in shared.items()}
            own["instance_discovery"] = {**shared["instance_discovery"], "instance_id": f"{instance_prefix}-{i}"}
            for key, value in sections.items():
                own[key] = {**own.get(key, {}), **value} if isinstance(value, dict) else value
            nodes.append(node_factory(**own))
        return nodes

    return make


@pytest.fixture(params=["sqlite", "postgres"])
def api_node_process(request: pytest.FixtureRequest, node_factory: Callable[..., NodeProcess]) -> NodeProcess:
    """A node subprocess on SQLite + in-process locks, or on PostgreSQL + Redis."""
    if request.param == "sqlite":
        return node_factory()
    return node_factory(**postgres_redis_sections(request))
