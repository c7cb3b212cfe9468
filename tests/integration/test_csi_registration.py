"""A node plugin registers itself with the kubelet and serves ``/healthz`` without sidecars.

``callfs-csi --mode node`` runs as a real process; the test plays the kubelet's plugin watcher: it dials the
registration socket the plugin put in a ``plugins_registry`` directory (``pluginregistration.Registration``, the
kubelet's own API), reads ``GetInfo``, follows the endpoint it names to the CSI socket and calls ``NodeGetInfo``
there (what the kubelet does next), and reports a status. ``/healthz`` answers from the CSI socket's ``Probe``.
(The real kubelet registering the plugin is tests/realnode/test_csi_volumes.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from callfs_csi import csi_pb2, csi_pb2_grpc
from callfs_csi import pluginregistration_pb2 as reg_pb2
from callfs_csi import pluginregistration_pb2_grpc as reg_grpc
from callfs_csi.config import DRIVER_NAME
from support.ports import free_port
from support.waiting import wait_for

START_TIMEOUT = 30.0  # seconds for the plugin to start (Python start-up on a loaded 2-core machine)


@dataclass
class NodePlugin:
    """A ``callfs-csi`` process and where it put its sockets."""

    process: subprocess.Popen[bytes]
    csi_socket: Path
    registration_socket: Path
    health_url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _start(base: Path, *extra: str) -> NodePlugin:
    registry = base / "plugins_registry"
    registry.mkdir(exist_ok=True)
    csi_socket = base / "csi.sock"
    registration_socket = registry / f"{DRIVER_NAME}-reg.sock"
    port = free_port()
    log = base / "csi.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "callfs_csi.main", "--mode", "node", "--node-id", "node-a",
             "--state-dir", str(base / "state"), "--endpoint", f"unix://{csi_socket}",
             # The kubelet gets the CSI socket's real path here: the test follows it like the kubelet would.
             "--kubelet-registration-path", str(csi_socket), "--registration-socket", str(registration_socket),
             "--http-endpoint", f"127.0.0.1:{port}", "--repair-interval", "0", *extra],
            stdout=out, stderr=subprocess.STDOUT)
    plugin = NodePlugin(process, csi_socket, registration_socket, f"http://127.0.0.1:{port}/healthz", log)
    wait_for(lambda: process.poll() is not None or _answers(registration_socket), START_TIMEOUT,
             "the registration socket to answer")
    assert process.poll() is None, plugin.log_text()
    return plugin


def _answers(socket: Path) -> bool:
    try:
        _info(socket)
    except grpc.RpcError:
        return False
    return True


def _stop(plugin: NodePlugin) -> None:
    if plugin.process.poll() is None:
        plugin.process.send_signal(signal.SIGKILL)
    plugin.process.wait(10)


@pytest.fixture
def base() -> Iterator[Path]:
    """A short directory: a unix socket path must fit in 108 bytes, which pytest's tmp_path may exceed."""
    path = Path(tempfile.mkdtemp(prefix="csi-reg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def plugin(base: Path) -> Iterator[NodePlugin]:
    started = _start(base)
    try:
        yield started
    finally:
        _stop(started)


def _info(socket: Path) -> reg_pb2.PluginInfo:
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        # The kubelet gives GetInfo one second.
        return reg_grpc.RegistrationStub(channel).GetInfo(reg_pb2.InfoRequest(), timeout=1)


def _notify(socket: Path, registered: bool, error: str = "") -> None:
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        reg_grpc.RegistrationStub(channel).NotifyRegistrationStatus(
            reg_pb2.RegistrationStatus(plugin_registered=registered, error=error), timeout=5)


def _health(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_get_info_names_a_csi_plugin_of_the_driver_at_its_kubelet_path(plugin: NodePlugin) -> None:
    info = _info(plugin.registration_socket)
    assert info.type == "CSIPlugin"
    assert info.name == DRIVER_NAME
    assert info.endpoint == str(plugin.csi_socket)
    assert list(info.supported_versions) == ["1.0.0"]


def test_the_endpoint_it_registers_answers_node_get_info(plugin: NodePlugin) -> None:
    endpoint = _info(plugin.registration_socket).endpoint
    with grpc.insecure_channel(f"unix://{endpoint}") as channel:
        reply = csi_pb2_grpc.NodeStub(channel).NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=10)
    assert reply.node_id == "node-a"


def test_only_the_registration_socket_is_left_in_the_registry(plugin: NodePlugin) -> None:
    # The socket is bound under a hidden name first: nothing of that remains once it is in place.
    assert os.listdir(plugin.registration_socket.parent) == [plugin.registration_socket.name]


def test_statuses_are_logged_and_a_refusal_does_not_stop_the_plugin(plugin: NodePlugin) -> None:
    _notify(plugin.registration_socket, False, "driver name taken")
    wait_for(lambda: "driver name taken" in plugin.log_text(), 10, "the refusal in the log")
    assert plugin.process.poll() is None
    _notify(plugin.registration_socket, True)
    wait_for(lambda: "registered with the kubelet" in plugin.log_text(), 10, "the registration in the log")
    assert _info(plugin.registration_socket).name == DRIVER_NAME  # still serving


def test_healthz_is_ok_while_the_csi_socket_answers(plugin: NodePlugin) -> None:
    assert _health(plugin.health_url) == (200, "ok\n")


def test_healthz_fails_once_the_registration_socket_is_gone(plugin: NodePlugin) -> None:
    plugin.registration_socket.unlink()
    status, text = _health(plugin.health_url)
    assert status == 500
    assert "registration socket" in text


def test_healthz_fails_when_the_csi_socket_stops_answering(plugin: NodePlugin) -> None:
    plugin.csi_socket.unlink()  # new connections cannot reach the gRPC server any more
    status, text = _health(plugin.health_url)
    assert status == 500
    assert "Probe failed" in text


def test_sigterm_removes_the_registration_socket(plugin: NodePlugin) -> None:
    plugin.process.send_signal(signal.SIGTERM)
    assert plugin.process.wait(30) == 0
    assert not plugin.registration_socket.exists()


def test_a_restarted_plugin_replaces_the_socket_a_killed_one_left(base: Path) -> None:
    first = _start(base)
    _stop(first)  # SIGKILL: the socket file stays behind, dead
    assert first.registration_socket.is_socket()
    assert not _answers(first.registration_socket)
    second = _start(base)  # returns once the socket at that path answers again
    try:
        assert _info(second.registration_socket).name == DRIVER_NAME
        assert "registration socket" in second.log_text() and "ready for the kubelet" in second.log_text()
    finally:
        _stop(second)
