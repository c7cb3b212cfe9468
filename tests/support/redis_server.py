"""A real ``redis-server`` for the tests: one per session, on a free loopback port, with a password.

Fixtures: ``redis_server`` (session: :class:`RedisServer` with ``host``, ``port``, ``password``, ``url``)
and ``redis_url`` (per test: the URL of database 0, emptied with ``FLUSHALL`` first). The Debian package
``redis-server`` provides the binary (``hack/install.sh`` installs it); without it the fixtures fail.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from support.ports import free_port
from support.waiting import wait_for

STARTUP_TIMEOUT = 15.0
"""Seconds to wait for the server to answer PING after launch."""


@dataclass(frozen=True)
class RedisServer:
    """A running server: ``url`` is ``redis://:<password>@<host>:<port>/0``."""

    host: str
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client for test setup and inspection (decoded strings)."""
        return redis.Redis(host=self.host, port=self.port, password=self.password, decode_responses=True)


def _wait_until_ready(server: RedisServer, process: subprocess.Popen[bytes], log_path: Path) -> None:
    client = server.client()

    def answers() -> bool:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            raise RuntimeError(f"redis-server exited with {process.returncode}:\n{log}")
        return bool(client.ping())

    try:
        wait_for(answers, STARTUP_TIMEOUT, f"redis-server on port {server.port} to answer PING", 0.05,
                 ignoring=(redis.ConnectionError,))
    finally:
        client.close()


@contextmanager
def running_redis_server(
    workdir: Path, *, port: int | None = None, password: str | None = None
) -> Iterator[RedisServer]:
    """Run ``redis-server`` (no persistence, ``requirepass`` set) in ``workdir`` until the block ends.

    ``port`` defaults to a free one and ``password`` to a random one; pass a previous server's to restart
    "the same" server (same URL, empty data). Fails the
    test when the binary is missing; raises :class:`RuntimeError` when the server exits during start-up and
    ``AssertionError`` when it does not answer within ``STARTUP_TIMEOUT`` seconds.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: install the Debian package redis-server (hack/install.sh)")
    log_path = workdir / "redis.log"
    server = RedisServer(
        host="127.0.0.1", port=port or free_port(), password=password or secrets.token_urlsafe(16)
    )
    process = subprocess.Popen(
        [
            binary,
            "--bind", server.host,
            "--port", str(server.port),
            "--requirepass", server.password,
            "--dir", str(workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(log_path),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_ready(server, process, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One ``redis-server`` for the whole session (see :func:`running_redis_server`)."""
    with running_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, with every database emptied (``FLUSHALL``) before the test."""
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
