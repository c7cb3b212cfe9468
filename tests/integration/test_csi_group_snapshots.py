"""The CSI GroupController over gRPC against a real CallFS node: volume group snapshots and their members.

The controller runs in-process (``support.csi_controller``); contents are checked by restoring member snapshots
into new volumes and reading them through the CallFS REST client.
"""

from __future__ import annotations

import grpc
import pytest

from callfs_csi import csi_pb2
from callfs_csi.snapshot import member_name
from support.csi_controller import Controller, GiB, code_of, create_request


def group_request(name: str, *sources: str) -> csi_pb2.CreateVolumeGroupSnapshotRequest:
    return csi_pb2.CreateVolumeGroupSnapshotRequest(name=name, source_volume_ids=list(sources))


async def two_volumes(controller: Controller, prefix: str) -> tuple[str, str]:
    """Volumes ``<prefix>-a`` and ``<prefix>-b`` holding ``data.txt`` = ``a 1`` / ``b 1`` (and ``a`` a subtree)."""
    names = (f"{prefix}-a", f"{prefix}-b")
    for name in names:
        await controller.stub.CreateVolume(create_request(name, GiB))
    async with controller.fs() as fs:
        await fs.upload(f"/volumes/{names[0]}/data.txt", b"a 1")
        await fs.upload(f"/volumes/{names[0]}/deep/er.bin", bytes(range(256)) * 4096)
        await fs.upload(f"/volumes/{names[1]}/data.txt", b"b 1")
    return names


async def restore(controller: Controller, snapshot_id: str, name: str) -> str:
    request = create_request(name, GiB)
    request.volume_content_source.snapshot.snapshot_id = snapshot_id
    return (await controller.stub.CreateVolume(request)).volume.volume_id


async def test_capabilities_advertise_group_snapshots(controller: Controller) -> None:
    caps = (await controller.group.GroupControllerGetCapabilities(
        csi_pb2.GroupControllerGetCapabilitiesRequest())).capabilities
    assert [c.rpc.type for c in caps] == \
        [csi_pb2.GroupControllerServiceCapability.RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT]


async def test_group_snapshot_has_a_ready_member_per_volume_holding_its_files(controller: Controller) -> None:
    a, b = await two_volumes(controller, "pvc-g1")
    group = (await controller.group.CreateVolumeGroupSnapshot(group_request("group-1", a, b))).group_snapshot
    assert group.group_snapshot_id == "group-1"
    assert group.ready_to_use and group.creation_time.seconds > 0
    assert sorted(s.source_volume_id for s in group.snapshots) == [a, b]
    assert all(s.ready_to_use and s.group_snapshot_id == "group-1" for s in group.snapshots)
    async with controller.fs() as fs:  # later writes are not in the snapshots
        await fs.upload(f"/volumes/{a}/data.txt", b"a 2")
        await fs.upload(f"/volumes/{b}/data.txt", b"b 2")

    of = {s.source_volume_id: s for s in group.snapshots}
    restored_a = await restore(controller, of[a].snapshot_id, "pvc-g1-ra")
    restored_b = await restore(controller, of[b].snapshot_id, "pvc-g1-rb")
    async with controller.fs() as fs:
        assert await fs.read(f"/volumes/{restored_a}/data.txt") == b"a 1"
        assert await fs.read(f"/volumes/{restored_a}/deep/er.bin") == bytes(range(256)) * 4096
        assert await fs.read(f"/volumes/{restored_b}/data.txt") == b"b 1"
    assert of[a].size_bytes == 3 + 256 * 4096


async def test_members_are_listed_with_their_group(controller: Controller) -> None:
    a, b = await two_volumes(controller, "pvc-g2")
    group = (await controller.group.CreateVolumeGroupSnapshot(group_request("group-2", a, b))).group_snapshot
    listed = (await controller.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=a))).entries
    assert [e.snapshot.group_snapshot_id for e in listed] == ["group-2"]
    assert listed[0].snapshot.snapshot_id in {s.snapshot_id for s in group.snapshots}
    one = (await controller.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(
        snapshot_id=group.snapshots[1].snapshot_id))).snapshot
    assert one == group.snapshots[1]


async def test_create_is_idempotent_by_name_and_set_of_sources(controller: Controller) -> None:
    a, b = await two_volumes(controller, "pvc-g3")
    first = (await controller.group.CreateVolumeGroupSnapshot(group_request("group-3", a, b))).group_snapshot
    async with controller.fs() as fs:
        await fs.upload(f"/volumes/{a}/data.txt", b"a 2")
    again = (await controller.group.CreateVolumeGroupSnapshot(group_request("group-3", b, a))).group_snapshot
    assert again == first
    restored = await restore(controller, first.snapshots[0].snapshot_id, "pvc-g3-r")
    async with controller.fs() as fs:
        assert await fs.read(f"/volumes/{restored}/data.txt") == b"a 1"  # not taken again


async def test_same_name_with_other_sources_already_exists(controller: Controller) -> None:
    a, b = await two_volumes(controller, "pvc-g4")
    await controller.group.CreateVolumeGroupSnapshot(group_request("group-4", a, b))
    assert await code_of(controller.group.CreateVolumeGroupSnapshot(group_request("group-4", a))) == \
        grpc.StatusCode.ALREADY_EXISTS


async def test_a_missing_source_is_not_found_and_leaves_nothing(controller: Controller) -> None:
    a, _ = await two_volumes(controller, "pvc-g5")
    assert await code_of(controller.group.CreateVolumeGroupSnapshot(group_request("group-5", a, "pvc-none"))) == \
        grpc.StatusCode.NOT_FOUND
    assert await code_of(controller.group.GetVolumeGroupSnapshot(csi_pb2.GetVolumeGroupSnapshotRequest(
        group_snapshot_id="group-5"))) == grpc.StatusCode.NOT_FOUND
    listed = await controller.stub.ListSnapshots(csi_pb2.ListSnapshotsRequest())
    assert not listed.entries


@pytest.mark.parametrize(
    "request_",
    [
        group_request("", "pvc-x"),
        group_request("group-6"),
        group_request("group-6", "pvc-x", "pvc-x"),
        group_request("bad/name", "pvc-x"),
        csi_pb2.CreateVolumeGroupSnapshotRequest(name="group-6", source_volume_ids=["pvc-x"],
                                                 parameters={"frobnicate": "yes"}),
    ],
)
async def test_bad_create_requests_are_invalid_arguments(
    controller: Controller, request_: csi_pb2.CreateVolumeGroupSnapshotRequest
) -> None:
    await controller.stub.CreateVolume(create_request("pvc-x", GiB))
    assert await code_of(controller.group.CreateVolumeGroupSnapshot(request_)) == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_returns_the_group_and_checks_the_member_list(controller: Controller) -> None:
    a, b = await two_volumes(controller, "pvc-g7")
    group = (await controller.group.CreateVolumeGroupSnapshot(group_request("group-7", a, b))).group_snapshot
    members = [s.snapshot_id for s in group.snapshots]
    got = (await controller.group.GetVolumeGroupSnapshot(csi_pb2.GetVolumeGroupSnapshotRequest(
        group_snapshot_id="group-7", snapshot_ids=members[::-1]))).group_snapshot
    assert got == group
    assert await code_of(controller.group.GetVolumeGroupSnapshot(csi_pb2.GetVolumeGroupSnapshotRequest(
        group_snapshot_id="group-7", snapshot_ids=members[:1]))) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(controller.group.GetVolumeGroupSnapshot(csi_pb2.GetVolumeGroupSnapshotRequest())) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(controller.group.GetVolumeGroupSnapshot(csi_pb2.GetVolumeGroupSnapshotRequest(
        group_snapshot_id="group-never"))) == grpc.StatusCode.NOT_FOUND


async def test_a_member_cannot_be_deleted_alone(controller: Controller) -> None:
    a, b = await two_volumes(controller, "pvc-g8")
    group = (await controller.group.CreateVolumeGroupSnapshot(group_request("group-8", a, b))).group_snapshot
    member = group.snapshots[0].snapshot_id
    assert await code_of(controller.stub.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=member))) == \
        grpc.StatusCode.FAILED_PRECONDITION
    assert (await controller.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=member))).snapshot.ready_to_use


async def test_delete_removes_members_and_record_and_is_idempotent(controller: Controller) -> None:
    a, b = await two_volumes(controller, "pvc-g9")
    group = (await controller.group.CreateVolumeGroupSnapshot(group_request("group-9", a, b))).group_snapshot
    members = [s.snapshot_id for s in group.snapshots]
    assert await code_of(controller.group.DeleteVolumeGroupSnapshot(csi_pb2.DeleteVolumeGroupSnapshotRequest(
        group_snapshot_id="group-9", snapshot_ids=[members[0], "snap-other"]))) == grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(2):
        await controller.group.DeleteVolumeGroupSnapshot(csi_pb2.DeleteVolumeGroupSnapshotRequest(
            group_snapshot_id="group-9", snapshot_ids=members))
    assert await code_of(controller.group.GetVolumeGroupSnapshot(csi_pb2.GetVolumeGroupSnapshotRequest(
        group_snapshot_id="group-9"))) == grpc.StatusCode.NOT_FOUND
    for member in members:
        assert await code_of(controller.stub.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=member))) == \
            grpc.StatusCode.NOT_FOUND
    async with controller.fs() as fs:
        assert not [m for m in members if await fs.exists(f"/snapshots/{m}")]
        assert await fs.read(f"/volumes/{a}/data.txt") == b"a 1"  # the sources stay


@pytest.mark.parametrize("group_snapshot_id", ["group-never", "no/such@group"])
async def test_deleting_an_unknown_group_succeeds(controller: Controller, group_snapshot_id: str) -> None:
    await controller.group.DeleteVolumeGroupSnapshot(csi_pb2.DeleteVolumeGroupSnapshotRequest(
        group_snapshot_id=group_snapshot_id))


async def test_delete_without_an_id_is_invalid(controller: Controller) -> None:
    assert await code_of(controller.group.DeleteVolumeGroupSnapshot(csi_pb2.DeleteVolumeGroupSnapshotRequest())) == \
        grpc.StatusCode.INVALID_ARGUMENT


async def test_a_standalone_snapshot_cannot_be_taken_over_by_a_group(controller: Controller) -> None:
    a, _ = await two_volumes(controller, "pvc-g10")
    await controller.stub.CreateSnapshot(csi_pb2.CreateSnapshotRequest(
        name=member_name("group-10", a), source_volume_id=a))
    assert await code_of(controller.group.CreateVolumeGroupSnapshot(group_request("group-10", a))) == \
        grpc.StatusCode.ALREADY_EXISTS
