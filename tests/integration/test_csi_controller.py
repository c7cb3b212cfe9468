"""The CSI controller over gRPC against a real CallFS node: quotas, onDelete policies, pagination, error codes.

The controller runs in-process on a grpc.aio server bound to a unix socket; what it does on the cluster is checked
through the CallFS REST client.
"""

from __future__ import annotations

import os

import grpc
import pytest

from callfs import errors as fs_errors
from callfs.blocks.layout import BLOCK_SIZE
from callfs.client import CallFSClient
from callfs_csi import csi_pb2
from support.app_node import AppNode
from support.csi_controller import AccessMode, Controller, GiB, capability, code_of, create_request
from support.http import session
from support.node import NodeSpec


async def test_create_volume_makes_a_directory_with_a_quota_of_the_capacity(controller: Controller) -> None:
    response = await controller.stub.CreateVolume(create_request("pvc-a", 3 * GiB))
    assert response.volume.volume_id == "pvc-a"
    assert response.volume.capacity_bytes == 3 * GiB
    assert response.volume.volume_context["path"] == "/volumes/pvc-a"
    async with controller.fs() as fs:
        quota = await fs.get_quota("/volumes/pvc-a")
    assert quota.bytes_limit == 3 * GiB


async def test_create_volume_is_idempotent_by_name_and_size(controller: Controller) -> None:
    first = await controller.stub.CreateVolume(create_request("pvc-twice", GiB))
    again = await controller.stub.CreateVolume(create_request("pvc-twice", GiB))
    assert again.volume == first.volume
    assert await code_of(controller.stub.CreateVolume(create_request("pvc-twice", 2 * GiB))) == \
        grpc.StatusCode.ALREADY_EXISTS


async def test_volume_without_capacity_gets_the_default(controller: Controller) -> None:
    response = await controller.stub.CreateVolume(create_request("pvc-default", 0))
    assert response.volume.capacity_bytes == GiB


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (csi_pb2.CreateVolumeRequest(volume_capabilities=[capability()]), grpc.StatusCode.INVALID_ARGUMENT),
        (csi_pb2.CreateVolumeRequest(name="x"), grpc.StatusCode.INVALID_ARGUMENT),
        (create_request("../escape"), grpc.StatusCode.INVALID_ARGUMENT),
        (create_request("x", onDelete="shred"), grpc.StatusCode.INVALID_ARGUMENT),
        (create_request("x", cluster="not a ref"), grpc.StatusCode.INVALID_ARGUMENT),
        (csi_pb2.CreateVolumeRequest(name="x", volume_capabilities=[capability()],
                                     capacity_range=csi_pb2.CapacityRange(required_bytes=10, limit_bytes=5)),
         grpc.StatusCode.OUT_OF_RANGE),
        (csi_pb2.CreateVolumeRequest(name="x", volume_capabilities=[csi_pb2.VolumeCapability(
            block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=AccessMode(mode=AccessMode.SINGLE_NODE_WRITER))]),
         grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_create_requests_get_the_spec_codes(
    controller: Controller, request_: csi_pb2.CreateVolumeRequest, code: grpc.StatusCode
) -> None:
    assert await code_of(controller.stub.CreateVolume(request_)) == code


async def test_a_non_root_key_cannot_provision(controller: Controller) -> None:
    request = create_request("pvc-alice")
    request.secrets["apiKey"] = controller.node.key_for("alice")
    assert await code_of(controller.stub.CreateVolume(request)) == grpc.StatusCode.PERMISSION_DENIED


async def test_an_unknown_key_is_unauthenticated(controller: Controller) -> None:
    request = create_request("pvc-bad-key")
    request.secrets["apiKey"] = "not-a-valid-key-0123456789"
    assert await code_of(controller.stub.CreateVolume(request)) == grpc.StatusCode.UNAUTHENTICATED


async def test_an_unreachable_cluster_is_unavailable(controller: Controller) -> None:
    request = create_request("pvc-far", server="http://127.0.0.1:9")
    request.secrets["apiKey"] = controller.node.key_for("root")
    assert await code_of(controller.stub.CreateVolume(request)) == grpc.StatusCode.UNAVAILABLE


async def test_delete_removes_the_directory_and_is_idempotent(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-del"))
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-del/file", b"data")
    for _ in range(2):
        await controller.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="pvc-del"))
    async with controller.fs() as fs:
        assert not await fs.exists("/volumes/pvc-del")
        assert not await fs.exists("/volumes/.csi/pvc-del.json")


async def test_retain_keeps_the_directory(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-keep", onDelete="retain"))
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-keep/file", b"kept")
    for _ in range(2):  # a CO retries deletes: the second must not fall back to deleting
        await controller.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="pvc-keep"))
    async with controller.fs() as fs:
        assert await fs.read("/volumes/pvc-keep/file") == b"kept"


async def test_archive_moves_the_directory_under_archive(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-arch", onDelete="archive"))
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-arch/file", b"archived")
    for _ in range(2):
        await controller.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="pvc-arch"))
    async with controller.fs() as fs:
        assert not await fs.exists("/volumes/pvc-arch")
        archived = [i.name for i in await fs.list_dir("/archive")]
        assert len(archived) == 1 and archived[0].startswith("pvc-arch-")
        assert await fs.read(f"/archive/{archived[0]}/file") == b"archived"


async def test_directory_not_provisioned_by_the_driver_is_never_deleted(controller: Controller) -> None:
    async with controller.fs() as fs:
        await fs.upload("/volumes/static/file", b"precious")
    await controller.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="static"))
    async with controller.fs() as fs:
        assert await fs.read("/volumes/static/file") == b"precious"


async def test_expand_raises_the_quota_and_never_lowers_it(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-grow", GiB))
    grown = await controller.stub.ControllerExpandVolume(csi_pb2.ControllerExpandVolumeRequest(
        volume_id="pvc-grow", capacity_range=csi_pb2.CapacityRange(required_bytes=5 * GiB)))
    assert grown.capacity_bytes == 5 * GiB and not grown.node_expansion_required
    same = await controller.stub.ControllerExpandVolume(csi_pb2.ControllerExpandVolumeRequest(
        volume_id="pvc-grow", capacity_range=csi_pb2.CapacityRange(required_bytes=2 * GiB)))
    assert same.capacity_bytes == 5 * GiB
    async with controller.fs() as fs:
        assert (await fs.get_quota("/volumes/pvc-grow")).bytes_limit == 5 * GiB
    assert await code_of(controller.stub.ControllerExpandVolume(csi_pb2.ControllerExpandVolumeRequest(
        volume_id="pvc-nope", capacity_range=csi_pb2.CapacityRange(required_bytes=GiB)))) == grpc.StatusCode.NOT_FOUND


async def test_modify_changes_the_inode_limit_and_the_delete_policy(controller: Controller) -> None:
    request = create_request("pvc-mod", GiB)
    request.mutable_parameters["maxInodes"] = "10"
    await controller.stub.CreateVolume(request)
    async with controller.fs() as fs:
        assert (await fs.get_quota("/volumes/pvc-mod")).inodes_limit == 10
    await controller.stub.ControllerModifyVolume(csi_pb2.ControllerModifyVolumeRequest(
        volume_id="pvc-mod", mutable_parameters={"maxInodes": "20", "onDelete": "retain"}))
    async with controller.fs() as fs:
        quota = await fs.get_quota("/volumes/pvc-mod")
        assert (quota.bytes_limit, quota.inodes_limit) == (GiB, 20)
    await controller.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="pvc-mod"))
    async with controller.fs() as fs:
        assert await fs.exists("/volumes/pvc-mod")
    assert await code_of(controller.stub.ControllerModifyVolume(csi_pb2.ControllerModifyVolumeRequest(
        volume_id="pvc-mod", mutable_parameters={"XXX": "y"}))) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(controller.stub.ControllerModifyVolume(csi_pb2.ControllerModifyVolumeRequest(
        volume_id="pvc-none", mutable_parameters={"maxInodes": "1"}))) == grpc.StatusCode.NOT_FOUND


async def test_list_volumes_pages_by_name(controller: Controller) -> None:
    names = [f"pvc-{i}" for i in range(5)]
    for name in reversed(names):
        await controller.stub.CreateVolume(create_request(name))
    seen: list[str] = []
    token = ""
    while True:
        page = await controller.stub.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2, starting_token=token))
        assert len(page.entries) <= 2
        seen += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert seen == names
    entry = (await controller.stub.ListVolumes(csi_pb2.ListVolumesRequest())).entries[0]
    assert entry.volume.capacity_bytes == GiB
    assert not entry.status.volume_condition.abnormal


async def test_list_token_survives_deleting_the_last_volume_of_a_page(controller: Controller) -> None:
    for name in ("pvc-a", "pvc-b", "pvc-c"):
        await controller.stub.CreateVolume(create_request(name))
    first = await controller.stub.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2))
    await controller.stub.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id="pvc-b"))
    rest = await controller.stub.ListVolumes(csi_pb2.ListVolumesRequest(starting_token=first.next_token))
    assert [e.volume.volume_id for e in rest.entries] == ["pvc-c"]


async def test_bad_list_token_is_aborted(controller: Controller) -> None:
    assert await code_of(controller.stub.ListVolumes(csi_pb2.ListVolumesRequest(starting_token="bogus"))) == \
        grpc.StatusCode.ABORTED


async def test_get_capacity_reports_free_bytes_of_the_cluster(controller: Controller) -> None:
    response = await controller.stub.GetCapacity(csi_pb2.GetCapacityRequest(volume_capabilities=[capability()]))
    assert response.available_capacity > 0
    block = csi_pb2.VolumeCapability(block=csi_pb2.VolumeCapability.BlockVolume(),
                                     access_mode=AccessMode(mode=AccessMode.SINGLE_NODE_WRITER))
    assert (await controller.stub.GetCapacity(csi_pb2.GetCapacityRequest(volume_capabilities=[block]))) \
        .available_capacity == 0


async def test_validate_capabilities_confirms_supported_and_explains_unsupported(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-v"))
    ok = await controller.stub.ValidateVolumeCapabilities(csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id="pvc-v", volume_capabilities=[capability(AccessMode.SINGLE_NODE_SINGLE_WRITER)]))
    assert ok.HasField("confirmed")
    ext4 = capability()
    ext4.mount.fs_type = "ext4"
    refused = await controller.stub.ValidateVolumeCapabilities(csi_pb2.ValidateVolumeCapabilitiesRequest(
        volume_id="pvc-v", volume_capabilities=[ext4]))
    assert not refused.HasField("confirmed") and "ext4" in refused.message


async def test_probe_follows_the_cluster_readiness(controller: Controller) -> None:
    assert (await controller.identity.Probe(csi_pb2.ProbeRequest())).ready.value
    controller.node.stop()
    assert not (await controller.identity.Probe(csi_pb2.ProbeRequest())).ready.value


async def test_plugin_advertises_controller_and_online_expansion(controller: Controller) -> None:
    caps = (await controller.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())).capabilities
    assert any(c.service.type == csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE for c in caps)
    assert any(c.service.type == csi_pb2.PluginCapability.Service.GROUP_CONTROLLER_SERVICE for c in caps)
    assert any(c.volume_expansion.type == csi_pb2.PluginCapability.VolumeExpansion.ONLINE for c in caps)
    info = await controller.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert info.name == "csi.callfs.io"


async def test_clone_copies_the_source_tree_and_modes_and_gives_it_to_the_new_volume_user(
    controller: Controller,
) -> None:
    await controller.stub.CreateVolume(create_request("pvc-src", 2 * GiB))
    big = bytes(range(256)) * 8192  # 2 MiB: more than one streamed piece
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-src/a/b/big.bin", big)
        await fs.upload("/volumes/pvc-src/top.txt", b"top")
        await fs.chmod("/volumes/pvc-src/top.txt", 0o600)
        await fs.chown("/volumes/pvc-src/a", "alice")
    request = create_request("pvc-clone", GiB)  # smaller than the source: grown to its size
    request.volume_content_source.volume.volume_id = "pvc-src"
    response = await controller.stub.CreateVolume(request)
    assert response.volume.capacity_bytes == 2 * GiB
    assert response.volume.content_source.volume.volume_id == "pvc-src"
    async with controller.fs() as fs:
        assert await fs.read("/volumes/pvc-clone/a/b/big.bin") == big
        assert (await fs.stat("/volumes/pvc-clone/top.txt")).mode == 0o600
        # The clone's key acts as its own user, who must be able to change every file of the copy.
        assert (await fs.stat("/volumes/pvc-clone/a")).owner == "csi-pvc-clone"
        assert (await fs.stat("/volumes/pvc-clone/a/b/big.bin")).owner == "csi-pvc-clone"
        await fs.upload("/volumes/pvc-clone/top.txt", b"changed")
        assert await fs.read("/volumes/pvc-src/top.txt") == b"top"
    again = await controller.stub.CreateVolume(request)
    assert again.volume.volume_id == "pvc-clone"


def block_totals(node: NodeSpec) -> tuple[int, int, int]:
    """``(blocks, bytes, stored bytes)`` of the blocks the node stores."""
    assert isinstance(node, AppNode) and node.node is not None
    engine = node.node.engine
    return node.run(lambda _: engine.store.block_totals(engine.default_backend, engine.instance_id))


def blob_of(node: NodeSpec, path: str) -> str | None:
    """The blob id of the file at ``path``."""
    assert isinstance(node, AppNode) and node.node is not None
    inode = node.run(lambda served: served.engine.store.get(path))
    assert inode is not None
    return inode.blob_id


async def test_snapshots_and_clones_share_the_volume_bytes(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-cow", GiB))
    blocks = os.urandom(2 * BLOCK_SIZE + 5)
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-cow/blob.txt", b"one blob")
        await fs.upload("/volumes/pvc-cow/d/blocks.bin", b"")
    async with session(controller.node, "root") as http:  # a partial write stores the file in blocks
        headers = {"Content-Range": f"bytes 0-{len(blocks) - 1}/*"}
        async with http.put("/v1/files/volumes/pvc-cow/d/blocks.bin", data=blocks, headers=headers) as response:
            assert response.status == 200, await response.text()
    blocks_before, blob = block_totals(controller.node), blob_of(controller.node, "/volumes/pvc-cow/blob.txt")
    snap = (await controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(
        name="snap-cow", source_volume_id="pvc-cow"))).snapshot
    assert snap.size_bytes == len(blocks) + len(b"one blob")
    clone = create_request("pvc-cow-clone", GiB)
    clone.volume_content_source.volume.volume_id = "pvc-cow"
    await controller.stub.CreateVolume(clone)
    restored = create_request("pvc-cow-restored", GiB)
    restored.volume_content_source.snapshot.snapshot_id = "snap-cow"
    await controller.stub.CreateVolume(restored)
    assert block_totals(controller.node) == blocks_before
    for copy in ("/snapshots/snap-cow", "/volumes/pvc-cow-clone", "/volumes/pvc-cow-restored"):
        assert blob_of(controller.node, f"{copy}/blob.txt") == blob
    async with controller.fs() as fs:
        for volume in ("pvc-cow-clone", "pvc-cow-restored"):
            assert await fs.read(f"/volumes/{volume}/d/blocks.bin") == blocks
            assert await fs.read(f"/volumes/{volume}/blob.txt") == b"one blob"
            assert (await fs.get_quota(f"/volumes/{volume}")).bytes_used == snap.size_bytes
        await fs.upload("/volumes/pvc-cow-clone/d/blocks.bin", b"diverged")
        await fs.delete("/volumes/pvc-cow", recursive=True)
        assert await fs.read("/snapshots/snap-cow/d/blocks.bin") == blocks
        assert await fs.read("/volumes/pvc-cow-restored/blob.txt") == b"one blob"


async def test_clone_streams_the_tree_from_a_server_without_copies(
    controller: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_copies(*args: object, **kwargs: object) -> None:
        raise fs_errors.MethodNotAllowed("method not allowed; allowed: GET, HEAD")  # an older node's answer

    await controller.stub.CreateVolume(create_request("pvc-old", GiB))
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-old/f.txt", b"streamed")
    monkeypatch.setattr(CallFSClient, "copy", no_copies)
    request = create_request("pvc-old-clone", GiB)
    request.volume_content_source.volume.volume_id = "pvc-old"
    await controller.stub.CreateVolume(request)
    async with controller.fs() as fs:
        assert await fs.read("/volumes/pvc-old-clone/f.txt") == b"streamed"
    copied, source = (blob_of(controller.node, f"/volumes/{v}/f.txt") for v in ("pvc-old-clone", "pvc-old"))
    assert copied != source


async def test_clone_of_a_missing_volume_is_not_found(controller: Controller) -> None:
    request = create_request("pvc-orphan")
    request.volume_content_source.volume.volume_id = "pvc-never"
    assert await code_of(controller.stub.CreateVolume(request)) == grpc.StatusCode.NOT_FOUND


async def test_volume_from_a_missing_snapshot_is_not_found(controller: Controller) -> None:
    request = create_request("pvc-from-snap")
    request.volume_content_source.snapshot.snapshot_id = "snap-never"
    assert await code_of(controller.stub.CreateVolume(request)) == grpc.StatusCode.NOT_FOUND


async def test_snapshot_is_a_frozen_copy_that_a_volume_can_be_made_from(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-snapsrc", GiB))
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-snapsrc/d/f.txt", b"version 1")
    snap = (await controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(
        name="snap-1", source_volume_id="pvc-snapsrc"))).snapshot
    assert (snap.snapshot_id, snap.source_volume_id, snap.ready_to_use) == ("snap-1", "pvc-snapsrc", True)
    assert snap.size_bytes == len(b"version 1")
    assert snap.creation_time.seconds > 0
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-snapsrc/d/f.txt", b"version 2")

    request = create_request("pvc-restored", GiB)
    request.volume_content_source.snapshot.snapshot_id = "snap-1"
    restored = (await controller.stub.CreateVolume(request)).volume
    assert restored.content_source.snapshot.snapshot_id == "snap-1"
    async with controller.fs() as fs:
        assert await fs.read("/volumes/pvc-restored/d/f.txt") == b"version 1"

    again = (await controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(
        name="snap-1", source_volume_id="pvc-snapsrc"))).snapshot
    assert again == snap
    await controller.stub.CreateVolume(create_request("pvc-other", GiB))
    assert await code_of(controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(
        name="snap-1", source_volume_id="pvc-other"))) == grpc.StatusCode.ALREADY_EXISTS


async def test_snapshots_and_clones_keep_extended_attributes(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-xattrs", GiB))
    async with controller.fs() as fs:
        await fs.upload("/volumes/pvc-xattrs/d/f.txt", b"f")
        await fs.setxattr("/volumes/pvc-xattrs/d/f.txt", "user.origin", b"pvc-xattrs")
        await fs.setxattr("/volumes/pvc-xattrs/d", "user.dir", b"d")
    await controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(name="snap-xattrs",
                                                                       source_volume_id="pvc-xattrs"))
    restored = create_request("pvc-xattrs-restored", GiB)
    restored.volume_content_source.snapshot.snapshot_id = "snap-xattrs"
    await controller.stub.CreateVolume(restored)
    clone = create_request("pvc-xattrs-clone", GiB)
    clone.volume_content_source.volume.volume_id = "pvc-xattrs"
    await controller.stub.CreateVolume(clone)
    async with controller.fs() as fs:
        for copy in ("/snapshots/snap-xattrs", "/volumes/pvc-xattrs-restored", "/volumes/pvc-xattrs-clone"):
            assert await fs.getxattrs(f"{copy}/d/f.txt") == {"user.origin": b"pvc-xattrs"}, copy
            assert await fs.getxattrs(f"{copy}/d") == {"user.dir": b"d"}, copy


async def test_list_snapshots_filters_and_pages(controller: Controller) -> None:
    for volume in ("pvc-x", "pvc-y"):
        await controller.stub.CreateVolume(create_request(volume, GiB))
    for name, volume in (("s1", "pvc-x"), ("s2", "pvc-y"), ("s3", "pvc-x")):
        await controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(name=name, source_volume_id=volume))
    of_x = await controller.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id="pvc-x"))
    assert [e.snapshot.snapshot_id for e in of_x.entries] == ["s1", "s3"]
    one = await controller.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id="s2"))
    assert [e.snapshot.source_volume_id for e in one.entries] == ["pvc-y"]
    first = await controller.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(max_entries=2))
    rest = await controller.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(starting_token=first.next_token))
    assert [e.snapshot.snapshot_id for e in [*first.entries, *rest.entries]] == ["s1", "s2", "s3"]
    assert not rest.next_token


async def test_deleted_snapshot_is_gone_and_delete_is_idempotent(controller: Controller) -> None:
    await controller.stub.CreateVolume(create_request("pvc-z", GiB))
    await controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(name="s-del", source_volume_id="pvc-z"))
    for _ in range(2):
        await controller.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id="s-del"))
    assert await code_of(controller.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id="s-del"))) == \
        grpc.StatusCode.NOT_FOUND
    async with controller.fs() as fs:
        assert not await fs.exists("/snapshots/s-del")


async def test_snapshot_of_a_missing_volume_is_not_found(controller: Controller) -> None:
    assert await code_of(controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(
        name="s-none", source_volume_id="pvc-missing"))) == grpc.StatusCode.NOT_FOUND
