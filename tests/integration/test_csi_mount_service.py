"""``callfs-mount-service`` as a real process: mounts through ``callfs-mount --via-service``, refusals, and mounts
that survive the node plugin's container being killed the way a container runtime kills it.

A container restart kills every task of the container's cgroup. Here the node plugin (``callfs-csi --mode node``)
and the mount service each run in a fresh cgroup of their own (cgroup v1 ``pids`` hierarchy, or cgroup v2 where
that is all there is), entered by a shell that writes its pid to ``cgroup.procs`` and then execs the process, so
that everything they start is born inside. Killing every pid of the plugin's cgroup with SIGKILL is the
container restart; with the service the mounts keep serving, without it they go stale. The storage node they
mount is served in-process (``support.app_node``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from callfs_csi import csi_pb2
from callfs_csi.mount_service import MAX_REQUEST_BYTES, request_mount
from support.app_node import AppNode
from support.csi_plugin import Plugin, is_stale, mount_points_under, poll, unmount_all_under
from support.machine import require, require_fuse
from support.mount import MOUNT_COMMAND, MountedVolume, has_exited, wait_for_exit
from support.waiting import wait_for

CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
"""Where a fresh cgroup is tried, in order: the v1 pids hierarchy, the v2 hierarchy beside v1, a v2-only host."""
START_TIMEOUT = 30.0  # seconds for the service to open its socket


@dataclass
class Cgroup:
    """One cgroup directory (``cgroup.procs`` lists its processes)."""

    path: Path

    def pids(self) -> list[int]:
        return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]

    def launcher(self) -> list[str]:
        """A command prefix that moves itself into this cgroup, then execs the rest of its command line."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs")]

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup until none is left alive, as a container runtime does when the
        container stops (zombies count as gone: their parent reaps them)."""

        def kill_survivors() -> list[int]:
            alive = [pid for pid in self.pids() if not has_exited(pid)]
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return alive

        wait_for(kill_survivors, 15, f"every process in {self.path} to die of SIGKILL",
                 0.05, until=lambda alive: not alive)

    def remove(self) -> None:
        """``rmdir`` once the last (reaped) process has left."""
        poll(lambda: not self.pids(), 15, f"{self.path} to empty")
        self.path.rmdir()


@dataclass
class ServiceProcess:
    """A ``callfs-mount-service`` process listening on ``socket``."""

    socket: Path
    log: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()


def accepts_connections(path: Path) -> bool:
    """True when a unix socket at ``path`` accepts a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@dataclass
class Rig:
    """The processes and cgroups of one test, all stopped and removed by :meth:`close`."""

    node: AppNode
    base: Path
    plugins: list[Plugin] = field(default_factory=list)
    services: list[ServiceProcess] = field(default_factory=list)
    cgroups: list[Cgroup] = field(default_factory=list)
    cgroup_parent: Path | None = None

    def cgroup(self, name: str) -> Cgroup:
        """A fresh cgroup ``callfs-test-<random>/<name>`` in the first hierarchy where one can be made."""
        if self.cgroup_parent is None:
            self.cgroup_parent = _make_cgroup_parent()
            tried = ", ".join(map(str, CGROUP_ROOTS))
            require(self.cgroup_parent is not None, f"no hierarchy where a cgroup can be created (tried {tried})")
        assert self.cgroup_parent is not None
        group = Cgroup(self.cgroup_parent / name)
        group.path.mkdir()
        self.cgroups.append(group)
        return group

    def service(self, cgroup: Cgroup | None = None) -> ServiceProcess:
        directory = self.base / f"service{len(self.services)}"
        directory.mkdir()
        sock, log = directory / "socket" / "mount.sock", directory / "service.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*(cgroup.launcher() if cgroup else []), sys.executable, "-m", "callfs_csi.mount_service",
                 "--socket", str(sock)], stdout=out, stderr=subprocess.STDOUT)
        service = ServiceProcess(sock, log, process)
        self.services.append(service)
        # Listening, not only bound: between bind and listen the socket file exists but refuses connections.
        poll(lambda: accepts_connections(sock) or process.poll() is not None, START_TIMEOUT, "the service socket")
        assert process.poll() is None, service.log_text()
        return service

    def plugin(self, mode: str, *, mount_command: str | None = None, cgroup: Cgroup | None = None) -> Plugin:
        directory = self.base / f"csi-{mode}{len(self.plugins)}"
        directory.mkdir()
        plugin = Plugin(self.node, directory, secrets={"apiKey": self.node.key_for("root")}, mode=mode,
                        mount_command=mount_command, launcher=cgroup.launcher() if cgroup else [])
        self.plugins.append(plugin)
        plugin.start()
        return plugin

    def close(self) -> None:
        for plugin in self.plugins:
            plugin.kill()
        unmount_all_under(self.base)
        for service in self.services:
            service.stop()
        for group in self.cgroups:
            group.kill_all()
            group.remove()
        if self.cgroup_parent is not None:
            self.cgroup_parent.rmdir()


def _make_cgroup_parent() -> Path | None:
    """A fresh parent cgroup in the first of :data:`CGROUP_ROOTS` where one can be made; ``None`` if none can."""
    for root in CGROUP_ROOTS:
        parent = root / f"callfs-test-{secrets.token_hex(4)}"
        try:
            parent.mkdir()
        except OSError:
            continue
        if (parent / "cgroup.procs").exists():
            return parent
        parent.rmdir()  # a plain directory (e.g. the tmpfs holding the v1 hierarchies), not a cgroup
    return None


@pytest.fixture
def rig(app_node: AppNode, tmp_path: Path) -> Iterator[Rig]:
    require_fuse()  # the service mounts with callfs-mount
    made = Rig(app_node, tmp_path)
    try:
        yield made
    finally:
        made.close()


def via(service: ServiceProcess) -> list[str]:
    return [*MOUNT_COMMAND, "--via-service", str(service.socket)]


def test_a_mount_through_the_service_serves_files(
    rig: Rig, mount_factory: Callable[..., MountedVolume]
) -> None:
    service = rig.service()
    assert stat.S_IMODE(service.socket.stat().st_mode) == 0o600
    mount = mount_factory(rig.node, mount_command=via(service))
    (mount.path / "hello.txt").write_text("through the service")
    assert (mount.path / "hello.txt").read_text() == "through the service"
    assert os.listdir(mount.path) == ["hello.txt"]
    mounted = [line for line in service.log_text().splitlines() if "mounted" in line]
    assert len(mounted) == 1 and f"{mount.volume} at {mount.path}" in mounted[0], service.log_text()


def test_foreground_is_refused_with_exit_1_and_a_reason(rig: Rig, tmp_path: Path) -> None:
    service = rig.service()
    key = tmp_path / "key"
    key.write_text(rig.node.key_for("root"))
    (tmp_path / "mnt").mkdir()
    result = subprocess.run([*via(service), rig.node.url, "/", str(tmp_path / "mnt"), "--key-file", str(key),
                             "--foreground"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "callfs-mount: the mount service refuses the request: "
        "--foreground is not accepted: the service runs daemonised mounts only"]
    assert mount_points_under(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["sh", "-c", "touch {marker}"], "not callfs-mount arguments"),
        (["/bin/touch", "{marker}"], "not callfs-mount arguments"),
        (["http://127.0.0.1:1", "/v", "{mnt}", "--key-file", "{key}", "--exec", "touch {marker}"],
         "unrecognized arguments: --exec"),
        (["http://127.0.0.1:1", "/v", "{mnt}", "--key-file", "{key}", "--via-service", "{socket}"],
         "unrecognized arguments: --via-service"),
        (["http://127.0.0.1:1", "/v", "{mnt}", "--key-file", "{key}", "--help"], "unrecognized arguments: --help"),
        (["http://127.0.0.1:1", "/v", "{mnt}", "--key-file", "{key}", "--fore"], "unrecognized arguments: --fore"),
    ],
)
def test_anything_but_callfs_mount_arguments_is_refused(
    rig: Rig, tmp_path: Path, argv: list[str], reason: str
) -> None:
    service = rig.service()
    marker = tmp_path / "marker"
    values = {"marker": str(marker), "mnt": str(tmp_path), "key": str(tmp_path / "key"), "socket": str(service.socket)}
    reply = request_mount(str(service.socket), [arg.format(**values) for arg in argv], timeout=30)
    assert reply.exit_code == 1
    (line,) = reply.stderr.splitlines()
    assert line.startswith("callfs-mount: the mount service refuses the request: ") and reason in line, line
    assert not marker.exists()
    assert f"refused a request: {line.split(': ', 2)[2]}" in service.log_text()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"x" * (MAX_REQUEST_BYTES + 1), f"larger than {MAX_REQUEST_BYTES} bytes"),
        (b"not json", "not JSON"),
        (json.dumps(["a", "b"]).encode(), '{"argv": [...]}'),
        (json.dumps({"argv": "a b c"}).encode(), "list of strings"),
        (json.dumps({"argv": [], "command": "/bin/sh"}).encode(), '{"argv": [...]}'),
    ],
)
def test_malformed_and_oversized_requests_are_refused(rig: Rig, data: bytes, reason: str) -> None:
    service = rig.service()
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(30)
        connection.connect(str(service.socket))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the service may stop reading early
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
        answer = json.loads(connection.makefile("rb").read())
    assert answer["exit_code"] == 1
    assert reason in answer["stderr"], answer


def test_an_unreachable_service_is_exit_1_and_one_line(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("key-0123456789")
    listening_nowhere = tmp_path / "stale.sock"  # a socket file left by a service that is gone
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(listening_nowhere))
    for path in (tmp_path / "missing.sock", listening_nowhere):
        result = subprocess.run([*MOUNT_COMMAND, "--via-service", str(path), "http://127.0.0.1:1", "/v",
                                 str(tmp_path), "--key-file", str(key)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"callfs-mount: the mount service at {path} is unreachable: "), line


def stage_and_publish(rig: Rig, node_plugin: Plugin, name: str) -> tuple[csi_pb2.Volume, Path, Path]:
    controller = rig.plugin("controller")
    volume = controller.create(name)
    staging, target = rig.base / "staging", rig.base / "pods" / "target"
    target.parent.mkdir()
    node_plugin.stage(volume, staging)
    node_plugin.publish(volume, staging, target)
    (target / "before.txt").write_text("written before the restart")
    return volume, staging, target


def restart_container(group: Cgroup, plugin: Plugin) -> None:
    """What the container runtime does to a restarting container: SIGKILL to every task of its cgroup."""
    assert plugin.process is not None and plugin.process.pid in group.pids()
    group.kill_all()
    plugin.kill()  # reaps it and closes the gRPC channel
    assert not group.pids()


def test_mounts_made_through_the_service_survive_a_restart_of_the_plugin_container(rig: Rig) -> None:
    plugin_group, service_group = rig.cgroup("plugin"), rig.cgroup("mount-service")
    service = rig.service(service_group)
    node_plugin = rig.plugin("node", mount_command=shlex.join(via(service)), cgroup=plugin_group)
    volume, staging, target = stage_and_publish(rig, node_plugin, "pvc-service")
    daemon = node_plugin.daemon_pid(volume)
    assert daemon in service_group.pids() and daemon not in plugin_group.pids()

    restart_container(plugin_group, node_plugin)
    assert (target / "before.txt").read_text() == "written before the restart"
    (target / "during.txt").write_text("written while the plugin is down")
    assert sorted(os.listdir(target)) == ["before.txt", "during.txt"]
    assert (staging / "during.txt").read_text() == "written while the plugin is down"

    node_plugin.start()  # in its cgroup again, on the same state directory
    assert node_plugin.process is not None and node_plugin.process.pid in plugin_group.pids()
    assert node_plugin.daemon_pid(volume) == daemon, "a live mount must not be re-mounted"
    assert not node_plugin.stats(volume, target).volume_condition.abnormal
    node_plugin.node_service.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(
        volume_id=volume.volume_id, target_path=str(target)))
    node_plugin.node_service.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(
        volume_id=volume.volume_id, staging_target_path=str(staging)))
    assert mount_points_under(rig.base) == []
    wait_for_exit(daemon, what="the daemon to exit once unmounted")
    assert sum("mounted" in line for line in service.log_text().splitlines()) == 1, service.log_text()


def test_without_the_service_a_restart_of_the_plugin_container_kills_the_mounts(rig: Rig) -> None:
    plugin_group = rig.cgroup("plugin")
    node_plugin = rig.plugin("node", cgroup=plugin_group)  # the default mount command: daemons are its own
    volume, _, target = stage_and_publish(rig, node_plugin, "pvc-no-service")
    assert node_plugin.daemon_pid(volume) in plugin_group.pids()

    restart_container(plugin_group, node_plugin)
    poll(lambda: is_stale(target), 10, "the mount to go stale")
