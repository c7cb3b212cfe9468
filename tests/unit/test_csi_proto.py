"""The committed stubs (``csi/callfs_csi/csi_pb2*``, ``pluginregistration_pb2*``) are exactly what
``proto/generate.sh`` makes of ``proto/csi.proto`` and ``proto/pluginregistration.proto``, import as ``callfs_csi``,
and carry the CSI v1.12 services (and the kubelet's registration service) over a real gRPC channel."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import Descriptor

from callfs_csi import csi_pb2, csi_pb2_grpc, pluginregistration_pb2, pluginregistration_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
GENERATE = REPO / "proto" / "generate.sh"
STUB_DIR = REPO / "csi" / "callfs_csi"
GENERATED = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py",
             "pluginregistration_pb2.py", "pluginregistration_pb2.pyi", "pluginregistration_pb2_grpc.py")


def _generate(out_dir: Path) -> None:
    subprocess.run(
        ["bash", str(GENERATE), str(out_dir)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=120,
    )


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("csi-stubs")
    _generate(out)
    return out


@pytest.mark.parametrize("name", GENERATED)
def test_committed_stub_is_byte_identical_to_a_fresh_generation(regenerated: Path, name: str) -> None:
    fresh = (regenerated / name).read_bytes()
    committed = (STUB_DIR / name).read_bytes()
    assert committed == fresh, f"csi/callfs_csi/{name} is out of date: run proto/generate.sh and commit the result"


def test_generation_writes_exactly_the_stub_files(regenerated: Path) -> None:
    assert sorted(p.name for p in regenerated.iterdir()) == sorted(GENERATED)


def test_generation_is_deterministic(tmp_path: Path, regenerated: Path) -> None:
    _generate(tmp_path)
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (regenerated / name).read_bytes(), name


def test_grpc_module_imports_messages_from_the_package() -> None:
    assert csi_pb2_grpc.csi__pb2 is csi_pb2
    assert pluginregistration_pb2_grpc.pluginregistration__pb2 is pluginregistration_pb2
    source = (STUB_DIR / "csi_pb2_grpc.py").read_text()
    assert "from callfs_csi import csi_pb2 as csi__pb2" in source
    assert "\nimport csi_pb2" not in source


def test_registration_service_has_the_wire_names_the_kubelet_dials() -> None:
    # The kubelet calls /pluginregistration.Registration/GetInfo and .../NotifyRegistrationStatus.
    assert pluginregistration_pb2.DESCRIPTOR.package == "pluginregistration"
    service = pluginregistration_pb2.DESCRIPTOR.services_by_name["Registration"]
    assert service.full_name == "pluginregistration.Registration"
    assert [m.name for m in service.methods] == ["GetInfo", "NotifyRegistrationStatus"]


def test_descriptor_is_registered_as_package_csi_v1_file_csi_proto() -> None:
    assert csi_pb2.DESCRIPTOR.name == "csi.proto"
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"


def test_all_five_services_of_csi_1_12_are_declared() -> None:
    services = csi_pb2.DESCRIPTOR.services_by_name
    assert sorted(services) == ["Controller", "GroupController", "Identity", "Node", "SnapshotMetadata"]
    assert [m.name for m in services["Identity"].methods] == ["GetPluginInfo", "GetPluginCapabilities", "Probe"]
    assert services["Node"].methods_by_name["NodeStageVolume"].input_type is csi_pb2.NodeStageVolumeRequest.DESCRIPTOR


def test_snapshot_metadata_methods_stream_their_responses() -> None:
    service = csi_pb2.DESCRIPTOR.services_by_name["SnapshotMetadata"]
    assert all(m.server_streaming and not m.client_streaming for m in service.methods)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (csi_pb2.CreateVolumeRequest, "secrets"),
        (csi_pb2.DeleteVolumeRequest, "secrets"),
        (csi_pb2.NodeStageVolumeRequest, "secrets"),
        (csi_pb2.NodePublishVolumeRequest, "secrets"),
        (csi_pb2.ControllerExpandVolumeRequest, "secrets"),
        (csi_pb2.NodeExpandVolumeRequest, "secrets"),
        (csi_pb2.ValidateVolumeCapabilitiesRequest, "secrets"),
        (csi_pb2.GetMetadataDeltaRequest, "secrets"),
    ],
)
def test_secret_fields_carry_the_csi_secret_option(message: type[csi_pb2.CreateVolumeRequest], field: str) -> None:
    options = message.DESCRIPTOR.fields_by_name[field].GetOptions()
    assert options.Extensions[csi_pb2.csi_secret] is True


def test_only_the_nineteen_secrets_maps_are_marked_secret() -> None:
    marked = [
        (message.full_name, field.name)
        for message in _all_messages(csi_pb2.DESCRIPTOR.message_types_by_name.values())
        for field in message.fields
        if field.GetOptions().Extensions[csi_pb2.csi_secret]
    ]
    assert {name for _, name in marked} == {"secrets"}
    assert len(marked) == 19


def test_access_modes_are_numbered_as_the_spec_numbers_them() -> None:
    mode = csi_pb2.VolumeCapability.AccessMode
    assert mode.SINGLE_NODE_WRITER == 1
    assert mode.SINGLE_NODE_READER_ONLY == 2
    assert mode.MULTI_NODE_READER_ONLY == 3
    assert mode.MULTI_NODE_SINGLE_WRITER == 4
    assert mode.MULTI_NODE_MULTI_WRITER == 5
    assert mode.SINGLE_NODE_SINGLE_WRITER == 6
    assert mode.SINGLE_NODE_MULTI_WRITER == 7


def test_create_volume_request_round_trips_through_the_wire_format() -> None:
    request = csi_pb2.CreateVolumeRequest(
        name="pvc-1",
        capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 30, limit_bytes=2 << 30),
        volume_capabilities=[
            csi_pb2.VolumeCapability(
                mount=csi_pb2.VolumeCapability.MountVolume(fs_type="fuse.callfs", mount_flags=["noatime"]),
                access_mode=csi_pb2.VolumeCapability.AccessMode(
                    mode=csi_pb2.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER
                ),
            )
        ],
        parameters={"cluster": "callfs/main", "onDelete": "retain"},
        secrets={"apiKey": "k"},
    )
    decoded = csi_pb2.CreateVolumeRequest.FromString(request.SerializeToString())
    assert decoded == request
    assert decoded.volume_capabilities[0].WhichOneof("access_type") == "mount"
    assert decoded.capacity_range.required_bytes == 1 << 30


class _Identity(csi_pb2_grpc.IdentityServicer):
    async def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name="csi.callfs.io", vendor_version="test")


@pytest.fixture
async def identity_channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    socket = f"unix://{tmp_path}/csi.sock"
    server = grpc.aio.server()
    csi_pb2_grpc.add_IdentityServicer_to_server(_Identity(), server)
    server.add_insecure_port(socket)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(socket) as channel:
            yield channel
    finally:
        await server.stop(grace=None)


async def test_stub_and_servicer_talk_over_a_unix_socket(identity_channel: grpc.aio.Channel) -> None:
    stub = csi_pb2_grpc.IdentityStub(identity_channel)
    reply = await stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=10)
    assert reply.name == "csi.callfs.io"
    assert reply.vendor_version == "test"


async def test_unimplemented_method_answers_unimplemented(identity_channel: grpc.aio.Channel) -> None:
    stub = csi_pb2_grpc.IdentityStub(identity_channel)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.Probe(csi_pb2.ProbeRequest(), timeout=10)
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _all_messages(messages: Iterable[Descriptor]) -> list[Descriptor]:
    found: list[Descriptor] = []
    pending = list(messages)
    while pending:
        message = pending.pop()
        found.append(message)
        pending.extend(message.nested_types)
    return found
