"""Per-volume keys: the controller gives each volume its own user and a key confined to its directory; nodes mount
with that key and reach nothing else; deleting the volume revokes it.

The controller runs in-process against a real CallFS node (``support.csi_controller``); the node-plugin test runs
``callfs-csi`` as a process with a real FUSE mount (``support.csi_plugin``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest

from callfs import errors as fs_errors
from callfs.client import CallFSClient
from callfs_csi import csi_pb2, csi_pb2_grpc
from callfs_csi.config import DriverConfig, Mode
from callfs_csi.controller import ControllerService
from callfs_csi.params import Credentials
from callfs_csi.volume_keys import volume_key
from support.app_node import AppNode
from support.csi_controller import Controller, GiB, create_request
from support.csi_plugin import Plugin, unmount_all_under
from support.machine import require_fuse


def scoped(controller: Controller, volume_id: str) -> CallFSClient:
    """A client holding the key of volume ``volume_id`` (derived as the controller derives it)."""
    key = volume_key(controller.node.key_for("root"), volume_id)
    return CallFSClient(controller.node.url, key, retries=0)


async def test_a_volume_belongs_to_its_own_user(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-own", GiB))
    async with controller.fs() as fs:
        assert (await fs.stat("/volumes/pvc-own")).owner == "csi-pvc-own"


async def test_the_volume_key_reads_and_writes_its_volume_as_the_volume_user(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-mine", GiB))
    async with scoped(controller, "pvc-mine") as fs:
        await fs.upload("/volumes/pvc-mine/dir/file.txt", b"mine")
        assert await fs.read("/volumes/pvc-mine/dir/file.txt") == b"mine"
        assert (await fs.stat("/volumes/pvc-mine/dir/file.txt")).owner == "csi-pvc-mine"
        assert (await fs.get_quota("/volumes/pvc-mine")).bytes_used == 4


async def test_the_volume_key_reaches_no_other_volume_nor_the_cluster(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-one", GiB))
    await controller.stub.CreateVolume(create_request("pvc-two", GiB))
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-two/secret.txt", b"not yours")
    async with scoped(controller, "pvc-one") as fs:
        for attempt in (fs.read("/volumes/pvc-two/secret.txt"), fs.list_dir("/volumes"),
                        fs.read("/volumes/.csi/pvc-two.json"), fs.upload("/volumes/pvc-two/x", b"x"),
                        fs.set_quota("/volumes/pvc-one", bytes_limit=10 * GiB),
                        fs.copy("/volumes/pvc-two", "/volumes/pvc-one/stolen", recursive=True)):
            with pytest.raises(fs_errors.PermissionDenied):
                await attempt
    async with controller.fs() as fs:
        assert not await fs.exists("/volumes/pvc-one/stolen")
        assert (await fs.get_quota("/volumes/pvc-one")).bytes_limit == GiB


async def test_delete_revokes_the_volume_key(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-gone", GiB, onDelete="retain"))
    async with scoped(controller, "pvc-gone") as fs:
        await fs.upload("/volumes/pvc-gone/kept.txt", b"kept")
    await controller.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="pvc-gone"))
    async with scoped(controller, "pvc-gone") as fs:
        with pytest.raises(fs_errors.AuthenticationFailed):
            await fs.read("/volumes/pvc-gone/kept.txt")
    async with controller.fs() as fs:  # retained: the data stays, for root
        assert await fs.read("/volumes/pvc-gone/kept.txt") == b"kept"


async def test_a_retried_create_keeps_the_same_key(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-retry", GiB))
    async with scoped(controller, "pvc-retry") as fs:
        await fs.upload("/volumes/pvc-retry/a", b"a")
    await controller.stub.CreateVolume(create_request("pvc-retry", GiB))
    async with scoped(controller, "pvc-retry") as fs:
        assert await fs.read("/volumes/pvc-retry/a") == b"a"


class RecordedSecrets:
    """What the controller hands its :class:`~callfs_csi.volume_secrets.VolumeSecrets` (Kubernetes in production,
    tested against the API server in tests/e2e)."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, str]] = {}

    async def put(self, name: str, volume: str, data: Mapping[str, str]) -> None:
        self.secrets[name] = dict(data)

    async def delete(self, name: str) -> None:
        self.secrets.pop(name, None)


async def test_the_controller_hands_each_volume_key_to_its_secret_and_takes_it_back(
    app_node: AppNode, tmp_path: Path
) -> None:
    recorded = RecordedSecrets()
    config = DriverConfig(node_id="n1", mode=Mode.CONTROLLER, state_dir=str(tmp_path),
                          default=Credentials(app_node.url, app_node.key_for("root")))
    service = ControllerService(config, recorded)
    server = grpc.aio.server()
    csi_pb2_grpc.add_ControllerServicer_to_server(service, server)
    address = f"unix://{tmp_path}/controller.sock"
    server.add_insecure_port(address)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = csi_pb2_grpc.ControllerStub(channel)
            await stub.CreateVolume(create_request("pvc-secret", GiB))
            data = recorded.secrets["callfs-volume-pvc-secret"]
            assert data["serverURL"] == app_node.url
            assert data["apiKey"] != app_node.key_for("root")
            async with CallFSClient(app_node.url, data["apiKey"], retries=0) as fs:
                await fs.upload("/volumes/pvc-secret/f", b"f")
            bad = create_request("Not_A_DNS_Name", GiB)  # no Secret could carry its key: refused before any change
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.CreateVolume(bad)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            await stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="pvc-secret"))
            assert recorded.secrets == {}
    finally:
        await server.stop(None)


@pytest.fixture
def plugin(app_node: AppNode, tmp_path: Path) -> Iterator[Plugin]:
    require_fuse()
    base = tmp_path / "csi"
    base.mkdir()
    started = Plugin(app_node, base, secrets={"apiKey": app_node.key_for("root")})
    started.start()
    try:
        yield started
    finally:
        started.kill()
        unmount_all_under(tmp_path)


def test_the_node_mounts_with_the_volume_key_and_never_stores_the_root_key(plugin: Plugin, tmp_path: Path) -> None:
    volume = plugin.create("pvc-node")
    plugin.secrets = {"apiKey": volume_key(plugin.node.key_for("root"), volume.volume_id)}
    staging, target = tmp_path / "staging", tmp_path / "pods" / "target"
    target.parent.mkdir()
    plugin.stage(volume, staging)
    plugin.publish(volume, staging, target)
    (target / "hello.txt").write_text("hello")
    assert (staging / "hello.txt").read_text() == "hello"
    stored = b"".join(p.read_bytes() for p in plugin.state_dir.rglob("*") if p.is_file())
    assert plugin.node.key_for("root").encode() not in stored
    assert plugin.secrets["apiKey"].encode() in stored
    stats = plugin.stats(volume, target)
    assert not stats.volume_condition.abnormal, stats.volume_condition.message
