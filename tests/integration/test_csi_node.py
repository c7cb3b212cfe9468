"""The CSI node plugin as a real process with real FUSE mounts: lifecycle, and mounts that survive the plugin.

``callfs-csi --mode all`` runs as a subprocess on a unix socket against a real CallFS node (served in-process by
``support.app_node``; a cluster outage is that node stopping and starting again on its port); tests talk gRPC to it,
SIGKILL it or its FUSE daemons, restart it on the same state directory, and check what a pod would see through
the target path.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from callfs_csi import csi_pb2
from support.app_node import AppNode
from support.csi_plugin import Mode, Plugin, is_stale, mount_points_under, poll, readable, unmount_all_under
from support.machine import require_fuse


@pytest.fixture
def plugin(app_node: AppNode, tmp_path: Path) -> Iterator[Plugin]:
    require_fuse()  # the plugin mounts with callfs-mount
    base = tmp_path / "csi"
    base.mkdir()
    started = Plugin(app_node, base, secrets={"apiKey": app_node.key_for("root")})
    started.start()
    try:
        yield started
    finally:
        started.kill()
        unmount_all_under(tmp_path)


def test_stage_and_publish_serve_files_and_record_the_state(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-lifecycle")
    staging, target = tmp_path / "staging", tmp_path / "pods" / "target"
    target.parent.mkdir()
    plugin.stage(volume, staging)
    plugin.publish(volume, staging, target)
    (target / "hello.txt").write_text("hello")
    assert (staging / "hello.txt").read_text() == "hello"
    # The plugin recognises its live daemons by pid file and command line (no stat through a slow mount).
    argv = Path(f"/proc/{plugin.daemon_pid(volume)}/cmdline").read_bytes().split(b"\0")
    assert str(staging).encode() in argv

    state = json.loads((plugin.state_dir / "node-state.json").read_text())
    recorded = state["volumes"][volume.volume_id]
    assert recorded["staging_path"] == str(staging)
    assert list(recorded["targets"]) == [str(target)]
    assert plugin.node.key_for("root") not in json.dumps(state)
    assert stat.S_IMODE((plugin.state_dir / "node-state.json").stat().st_mode) == 0o600

    stats = plugin.stats(volume, target)
    usage = {u.unit: u for u in stats.usage}
    assert usage[csi_pb2.VolumeUsage.BYTES].total == 64 << 20
    assert usage[csi_pb2.VolumeUsage.BYTES].used == 5
    assert usage[csi_pb2.VolumeUsage.INODES].used >= 1
    assert not stats.volume_condition.abnormal

    plugin.node_service.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(
        volume_id=volume.volume_id, target_path=str(target)))
    assert not target.exists()
    plugin.node_service.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(
        volume_id=volume.volume_id, staging_target_path=str(staging)))
    assert mount_points_under(tmp_path) == []
    assert json.loads((plugin.state_dir / "node-state.json").read_text())["volumes"] == {}


def test_read_only_publish_refuses_writes(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-ro")
    staging, rw, ro = tmp_path / "staging", tmp_path / "rw", tmp_path / "ro"
    plugin.stage(volume, staging, Mode.MULTI_NODE_MULTI_WRITER)
    plugin.publish(volume, staging, rw, mode=Mode.MULTI_NODE_MULTI_WRITER)
    plugin.publish(volume, staging, ro, readonly=True, mode=Mode.MULTI_NODE_MULTI_WRITER, flags=("noexec",))
    (rw / "f").write_text("data")
    assert (ro / "f").read_text() == "data"
    with pytest.raises(OSError) as raised:
        (ro / "g").write_text("nope")
    assert raised.value.errno == errno.EROFS


def test_unpublish_and_unstage_are_idempotent(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-idem")
    staging, target = tmp_path / "staging", tmp_path / "target"
    plugin.stage(volume, staging)
    plugin.stage(volume, staging)
    plugin.publish(volume, staging, target)
    plugin.publish(volume, staging, target)
    for _ in range(2):
        plugin.node_service.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(
            volume_id=volume.volume_id, target_path=str(target)))
        plugin.node_service.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(
            volume_id=volume.volume_id, staging_target_path=str(staging)))
    assert mount_points_under(tmp_path) == []


def test_publishing_an_unstaged_volume_is_a_failed_precondition(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-unstaged")
    with pytest.raises(grpc.RpcError) as raised:
        plugin.publish(volume, tmp_path / "staging", tmp_path / "target")
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_staging_a_deleted_volume_is_not_found(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-gone")
    plugin.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id, secrets=plugin.secrets))
    with pytest.raises(grpc.RpcError) as raised:
        plugin.stage(volume, tmp_path / "staging")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_unsupported_mount_flag_is_invalid_argument(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-flags")
    staging = tmp_path / "staging"
    plugin.stage(volume, staging)
    with pytest.raises(grpc.RpcError) as raised:
        plugin.publish(volume, staging, tmp_path / "target", flags=("size=1G",))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not (tmp_path / "target").exists()


def test_mounts_keep_serving_after_the_plugin_is_killed_and_state_is_rebuilt(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-survivor")
    staging, target = tmp_path / "staging", tmp_path / "target"
    plugin.stage(volume, staging)
    plugin.publish(volume, staging, target)
    (target / "before.txt").write_text("written before the kill")
    daemon = plugin.daemon_pid(volume)

    plugin.kill()
    assert (target / "before.txt").read_text() == "written before the kill"
    (target / "during.txt").write_text("written while the plugin is down")
    assert sorted(os.listdir(target)) == ["before.txt", "during.txt"]

    plugin.start()
    assert plugin.daemon_pid(volume) == daemon, "a live mount must not be re-mounted"
    assert not plugin.stats(volume, target).volume_condition.abnormal
    # The restarted plugin knows the volume: a second publish is idempotent, unpublish/unstage clean up.
    plugin.publish(volume, staging, target)
    plugin.node_service.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(
        volume_id=volume.volume_id, target_path=str(target)))
    plugin.node_service.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(
        volume_id=volume.volume_id, staging_target_path=str(staging)))
    assert mount_points_under(tmp_path) == []


def test_restarted_plugin_repairs_a_mount_whose_daemon_was_killed(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-repair")
    staging, target = tmp_path / "staging", tmp_path / "target"
    plugin.stage(volume, staging)
    plugin.publish(volume, staging, target)
    (target / "data.txt").write_text("survives the daemon")

    os.kill(plugin.daemon_pid(volume), signal.SIGKILL)
    poll(lambda: is_stale(target), 10, "the mount to go stale")
    stats = plugin.stats(volume, target)
    assert stats.volume_condition.abnormal
    assert "stale" in stats.volume_condition.message

    plugin.restart()
    poll(lambda: readable(target / "data.txt") and readable(staging / "data.txt"), 30, "the start-up repair")
    assert (target / "data.txt").read_text() == "survives the daemon"
    assert (staging / "data.txt").read_text() == "survives the daemon"
    assert not plugin.stats(volume, target).volume_condition.abnormal
    (target / "after.txt").write_text("written after the repair")
    assert (staging / "after.txt").read_text() == "written after the repair"


def test_running_plugin_repairs_a_mount_whose_daemon_died(plugin: Plugin, tmp_path: Path) -> None:
    plugin.repair_interval = 0.5
    plugin.restart()
    volume = plugin.create("pvc-watched")
    staging, target = tmp_path / "staging", tmp_path / "target"
    plugin.stage(volume, staging)
    plugin.publish(volume, staging, target)
    (target / "data.txt").write_text("still here")
    old_daemon = plugin.daemon_pid(volume)

    os.kill(old_daemon, signal.SIGKILL)

    def repaired() -> bool:
        try:
            return (target / "data.txt").read_text() == "still here" and plugin.daemon_pid(volume) != old_daemon
        except OSError:
            return False

    poll(repaired, 30, "the plugin to re-mount the volume on its own")
    (target / "after.txt").write_text("written after the repair")
    assert (staging / "after.txt").read_text() == "written after the repair"


def test_mount_group_owns_every_inode(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-fsgroup")
    staging, target = tmp_path / "staging", tmp_path / "target"
    plugin.stage(volume, staging, group="4321")
    plugin.publish(volume, staging, target)
    (target / "f").write_text("x")
    assert (target / "f").stat().st_gid == 4321
    assert target.stat().st_gid == 4321


def test_non_numeric_mount_group_is_invalid(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-badgroup")
    with pytest.raises(grpc.RpcError) as raised:
        plugin.stage(volume, tmp_path / "staging", group="staff")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cluster_outage_leaves_mounts_alone_and_marks_them_abnormal(plugin: Plugin, tmp_path: Path) -> None:
    plugin.repair_interval = 0.3
    plugin.restart()
    volume = plugin.create("pvc-outage")
    staging, target = tmp_path / "staging", tmp_path / "target"
    plugin.stage(volume, staging)
    plugin.publish(volume, staging, target)
    (target / "f.txt").write_text("before the outage")
    daemon = plugin.daemon_pid(volume)

    plugin.node.stop()
    stats = plugin.stats(volume, target)
    assert stats.volume_condition.abnormal
    assert "unreachable" in stats.volume_condition.message
    # Nothing may happen here, so there is nothing to poll for: give the repair loop several passes.
    time.sleep(2.0)
    os.kill(daemon, 0)  # the daemon was not replaced...
    assert str(target) in mount_points_under(tmp_path)  # ...nor the mounts torn down

    plugin.node.start()
    poll(lambda: readable(target / "f.txt"), 30, "the mount to serve again")
    assert (target / "f.txt").read_text() == "before the outage"
    assert plugin.daemon_pid(volume) == daemon
    assert not plugin.stats(volume, target).volume_condition.abnormal
