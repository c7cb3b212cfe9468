"""The CSI controller in-process over gRPC against a real CallFS node (pytest plugin).

Fixtures:
- ``controller``: a ``callfs-csi`` controller-mode :class:`~callfs_csi.server.Plugin` on a grpc.aio server bound to
  a unix socket, its default cluster the ``app_node`` fixture's in-process node (root key); yields a
  :class:`Controller` holding the Controller, GroupController and Identity stubs and a way to check the cluster
  through the REST client.

Helpers: :func:`capability`, :func:`create_request` (a ``CreateVolumeRequest``) and :func:`code_of` (the status
code a call fails with).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from callfs.client import CallFSClient
from callfs_csi import csi_pb2, csi_pb2_grpc
from callfs_csi.config import DriverConfig, Mode
from callfs_csi.params import Credentials
from callfs_csi.server import Plugin
from support.app_node import AppNode
from support.node import NodeSpec

GiB = 1 << 30
AccessMode = csi_pb2.VolumeCapability.AccessMode


def capability(mode: int = AccessMode.MULTI_NODE_MULTI_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(mount=csi_pb2.VolumeCapability.MountVolume(),
                                    access_mode=AccessMode(mode=mode))  # type: ignore[arg-type]


def create_request(name: str, size: int = GiB, **parameters: str) -> csi_pb2.CreateVolumeRequest:
    return csi_pb2.CreateVolumeRequest(name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=size),
                                       volume_capabilities=[capability()], parameters=parameters)


class Controller:
    """Stubs of one running controller plugin and the node it manages."""

    def __init__(self, channel: grpc.aio.Channel, node: NodeSpec) -> None:
        self.stub = csi_pb2_grpc.ControllerStub(channel)
        self.group = csi_pb2_grpc.GroupControllerStub(channel)
        self.identity = csi_pb2_grpc.IdentityStub(channel)
        self.node = node

    def fs(self) -> CallFSClient:
        return CallFSClient(self.node.url, self.node.key_for("root"))


@pytest.fixture
async def controller(app_node: AppNode, tmp_path: Path) -> AsyncIterator[Controller]:
    config = DriverConfig(node_id="n1", mode=Mode.CONTROLLER, state_dir=str(tmp_path / "state"),
                          default=Credentials(app_node.url, app_node.key_for("root")))
    server = grpc.aio.server()
    Plugin.build(config).add_to(server)
    address = f"unix://{tmp_path}/controller.sock"
    server.add_insecure_port(address)
    await server.start()
    channel = grpc.aio.insecure_channel(address)
    try:
        yield Controller(channel, app_node)
    finally:
        await channel.close()
        await server.stop(None)


async def code_of(call: object) -> grpc.StatusCode:
    """The status code ``call`` (an awaitable gRPC call) fails with; fails the test when it succeeds."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value.code()
