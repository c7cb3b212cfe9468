"""The CSI plugin (``callfs-csi``) as a real process on a unix socket, driven over gRPC, and helpers to look at
what a pod would see through its target path.

:class:`Plugin` starts ``python -m callfs_csi.main`` against a :class:`~support.node.ServedNode` (an in-process
node or a subprocess; ``--mode all`` unless told otherwise), :meth:`Plugin.kill` SIGKILLs it and
:meth:`Plugin.start` restarts it on the same state directory. ``launcher`` is put in front of its command line
(e.g. a shell that first moves itself into a cgroup), ``mount_command`` is passed as ``--mount-command``.
:func:`unmount_all_under` is the teardown for its mounts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from callfs_csi import csi_pb2, csi_pb2_grpc
from support.node import ServedNode
from support.waiting import wait_for

START_TIMEOUT = 30.0  # seconds for the plugin to restore its state and open its socket
Mode = csi_pb2.VolumeCapability.AccessMode


def mount_capability(
    mode: int = Mode.SINGLE_NODE_WRITER, flags: tuple[str, ...] = (), group: str = ""
) -> csi_pb2.VolumeCapability:
    mount = csi_pb2.VolumeCapability.MountVolume(mount_flags=list(flags), volume_mount_group=group)
    return csi_pb2.VolumeCapability(mount=mount, access_mode=Mode(mode=mode))  # type: ignore[arg-type]


def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """:func:`support.waiting.wait_for` at the 50 ms pace mounts and processes change at."""
    wait_for(condition, timeout, what, interval=0.05)


def is_stale(path: Path) -> bool:
    """True once ``path`` answers ``ENOTCONN``/``ECONNABORTED`` (its FUSE daemon is gone)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
            return True
        raise
    return False


def readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


def mount_points_under(base: Path) -> list[str]:
    prefix = str(base) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return points


@dataclass
class Plugin:
    """One ``callfs-csi`` process; :meth:`start` again after :meth:`kill` to restart it on the same state."""

    node: ServedNode
    base: Path
    process: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    repair_interval: float = 0.0
    """``--repair-interval``; 0 (only at start) unless a test is about the running plugin's repairs."""
    mode: str = "all"
    """``--mode``: all, controller or node."""
    mount_command: str | None = None
    """``--mount-command`` (default: the plugin's own, ``callfs-mount`` beside the interpreter)."""
    launcher: list[str] = field(default_factory=list)
    """Put in front of the plugin's command line; it must end by exec'ing the rest (so the pid is the plugin's)."""

    @property
    def socket(self) -> Path:
        return self.base / "csi.sock"

    @property
    def state_dir(self) -> Path:
        return self.base / "state"

    def start(self) -> None:
        key_file = self.base / "root.key"
        key_file.write_text(self.node.key_for("root"))
        key_file.chmod(0o600)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        log = (self.base / "csi.log").open("ab")
        self.process = subprocess.Popen(
            [*self.launcher, sys.executable, "-m", "callfs_csi.main", "--endpoint", f"unix://{self.socket}",
             "--mode", self.mode, "--node-id", "test-node", "--state-dir", str(self.state_dir),
             "--server", self.node.url, "--api-key-file", str(key_file), "--repair-interval", str(self.repair_interval),
             *(["--mount-command", self.mount_command] if self.mount_command else [])],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        poll(lambda: self.socket.exists() or self.process is None or self.process.poll() is not None,
             START_TIMEOUT, "the plugin socket")
        assert self.process.poll() is None, self.log_tail()
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        grpc.channel_ready_future(self.channel).result(timeout=START_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL, like an OOM kill or a node-plugin pod deletion."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def log_tail(self) -> str:
        return "\n".join((self.base / "csi.log").read_text(errors="replace").splitlines()[-40:])

    @property
    def controller(self) -> csi_pb2_grpc.ControllerStub:
        return csi_pb2_grpc.ControllerStub(self.channel)

    @property
    def node_service(self) -> csi_pb2_grpc.NodeStub:
        return csi_pb2_grpc.NodeStub(self.channel)

    def create(self, name: str, size: int = 64 << 20) -> csi_pb2.Volume:
        response = self.controller.CreateVolume(csi_pb2.CreateVolumeRequest(
            name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=size),
            volume_capabilities=[mount_capability()], secrets=self.secrets))
        return response.volume

    def stage(self, volume: csi_pb2.Volume, staging: Path, mode: int = Mode.SINGLE_NODE_WRITER,
              group: str = "") -> None:
        staging.mkdir(parents=True, exist_ok=True)
        self.node_service.NodeStageVolume(csi_pb2.NodeStageVolumeRequest(
            volume_id=volume.volume_id, staging_target_path=str(staging),
            volume_capability=mount_capability(mode, group=group),
            volume_context=volume.volume_context, secrets=self.secrets))

    def publish(self, volume: csi_pb2.Volume, staging: Path, target: Path, *, readonly: bool = False,
                mode: int = Mode.SINGLE_NODE_WRITER, flags: tuple[str, ...] = ()) -> None:
        self.node_service.NodePublishVolume(csi_pb2.NodePublishVolumeRequest(
            volume_id=volume.volume_id, staging_target_path=str(staging), target_path=str(target),
            volume_capability=mount_capability(mode, flags), readonly=readonly,
            volume_context=volume.volume_context, secrets=self.secrets))

    def stats(self, volume: csi_pb2.Volume, path: Path) -> csi_pb2.NodeGetVolumeStatsResponse:
        return self.node_service.NodeGetVolumeStats(csi_pb2.NodeGetVolumeStatsRequest(
            volume_id=volume.volume_id, volume_path=str(path)))

    def daemon_pid(self, volume: csi_pb2.Volume) -> int:
        from callfs_csi.state import StateStore

        return int(StateStore(self.state_dir).pid_file_for(volume.volume_id).read_text().strip())


def unmount_all_under(base: Path) -> None:
    """Unmount every mount point under ``base``, deepest first (``umount -l`` when ``umount`` fails, e.g. on a
    stale or busy mount). Never raises."""
    for point in sorted(mount_points_under(base), reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
