"""Volume group snapshots as pure decisions: records, member names, source checks, member-list checks, and the
plugin capability that announces the GroupController."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from callfs_csi import csi_pb2
from callfs_csi.config import DriverConfig, Mode
from callfs_csi.errors import CSIError, FailedPrecondition, InvalidArgument, NotFound
from callfs_csi.group_controller import check_members, group_sources
from callfs_csi.identity import IdentityService
from callfs_csi.snapshot import GroupRecord, SnapshotRecord, member_name, validate_group_name
from callfs_csi.volume import MAX_NAME_BYTES, VolumeRef

WHEN = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def group(sources: list[str] | None = None, members: list[str] | None = None) -> GroupRecord:
    sources = sources if sources is not None else ["pvc-a", "pvc-b"]
    return GroupRecord("g", sources, members if members is not None else [f"g-{s}" for s in sources], WHEN)


def test_group_record_round_trips_through_json() -> None:
    record = group()
    assert GroupRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    "data",
    [
        {"name": "g", "source_volume_ids": ["a"], "snapshot_ids": [], "creation_time": WHEN.isoformat()},
        {"name": "g", "source_volume_ids": "a", "snapshot_ids": "b", "creation_time": WHEN.isoformat()},
        {"name": "g", "source_volume_ids": ["a"], "snapshot_ids": ["b"], "creation_time": "yesterday"},
        {"name": "g", "source_volume_ids": ["a"], "snapshot_ids": ["b"]},
    ],
)
def test_malformed_group_records_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)):
        GroupRecord.from_json(data)


def test_sources_and_members_compare_as_sets() -> None:
    record = group()
    assert record.same_sources(["pvc-b", "pvc-a"])
    assert not record.same_sources(["pvc-a"])
    assert not record.same_sources(["pvc-a", "pvc-b", "pvc-c"])
    assert record.same_members(["g-pvc-b", "g-pvc-a"])
    assert not record.same_members(["g-pvc-a", "g-other"])


@pytest.mark.parametrize(("ready", "expected"), [((True, True), True), ((True, False), False), ((), False)])
def test_group_is_ready_when_every_member_is(ready: tuple[bool, ...], expected: bool) -> None:
    members = [csi_pb2.Snapshot(snapshot_id=f"s{i}", ready_to_use=r) for i, r in enumerate(ready)]
    proto = group().to_proto("g", members)
    assert proto.ready_to_use is expected
    assert proto.group_snapshot_id == "g"
    assert proto.creation_time.ToDatetime(tzinfo=UTC) == WHEN


def test_snapshot_record_keeps_its_group_and_old_records_have_none() -> None:
    record = SnapshotRecord("s", "pvc-a", WHEN, 5, True, "g@http://other:8443")
    assert SnapshotRecord.from_json(record.to_json()) == record
    assert record.to_proto("s").group_snapshot_id == "g@http://other:8443"
    old = record.to_json()
    del old["group_snapshot_id"]
    assert SnapshotRecord.from_json(old).group_snapshot_id == ""


def test_member_names_are_stable_distinct_and_valid_snapshot_names() -> None:
    longest = "g" * (MAX_NAME_BYTES - 13)
    names = {member_name(longest, source) for source in ("pvc-a", "pvc-b", "pvc-a@http://other:8443")}
    assert len(names) == 3
    assert member_name("g", "pvc-a") == member_name("g", "pvc-a")
    assert all(len(n.encode()) <= MAX_NAME_BYTES and "@" not in n for n in names)
    assert validate_group_name(longest) == longest


@pytest.mark.parametrize("name", ["", "g" * (MAX_NAME_BYTES - 12), "a/b", ".hidden", "a@b"])
def test_bad_group_names_are_invalid(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_group_name(name)


def test_group_sources_share_one_cluster() -> None:
    refs, server = group_sources(["pvc-a@http://c:8443", "pvc-b@http://c:8443"])
    assert refs == [VolumeRef("pvc-a", "http://c:8443"), VolumeRef("pvc-b", "http://c:8443")]
    assert server == "http://c:8443"
    assert group_sources(["pvc-a"]) == ([VolumeRef("pvc-a")], None)


@pytest.mark.parametrize(
    ("sources", "error"),
    [
        ([], InvalidArgument),
        (["pvc-a", ""], InvalidArgument),
        (["pvc-a", "pvc-a"], InvalidArgument),
        (["pvc-a", "no/such"], NotFound),
        (["pvc-a", "pvc-b@http://other:8443"], FailedPrecondition),
    ],
)
def test_bad_group_sources(sources: list[str], error: type[CSIError]) -> None:
    with pytest.raises(error):
        group_sources(sources)


def test_member_list_must_match_when_given() -> None:
    record = group()
    check_members(record, [])
    check_members(record, ["g-pvc-b", "g-pvc-a"])
    with pytest.raises(InvalidArgument) as raised:
        check_members(record, ["g-pvc-a"])
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("mode", "announced"), [(Mode.CONTROLLER, True), (Mode.ALL, True), (Mode.NODE, False)])
async def test_group_controller_is_announced_where_the_controller_runs(
    mode: Mode, announced: bool, tmp_path: Path
) -> None:
    service = IdentityService(DriverConfig(node_id="n1", mode=mode, state_dir=str(tmp_path)))
    response = await service.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest(),
                                                   cast(grpc.aio.ServicerContext, None))
    services = {c.service.type for c in response.capabilities if c.HasField("service")}
    Service = csi_pb2.PluginCapability.Service
    assert (Service.GROUP_CONTROLLER_SERVICE in services) is announced
    assert (Service.CONTROLLER_SERVICE in services) is announced
