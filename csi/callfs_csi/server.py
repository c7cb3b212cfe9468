"""The gRPC server of one ``callfs-csi`` process: Identity plus the Controller (with the GroupController) and/or
Node service (grpc.aio)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from dataclasses import dataclass

import grpc

from callfs_csi import csi_pb2_grpc
from callfs_csi.config import DriverConfig
from callfs_csi.controller import ControllerService
from callfs_csi.errors import InvalidArgument
from callfs_csi.group_controller import GroupControllerService
from callfs_csi.identity import IdentityService
from callfs_csi.mounter import Mounter
from callfs_csi.node import NodeService
from callfs_csi.state import StateStore

__all__ = ["Plugin", "grpc_address", "serve"]

log = logging.getLogger(__name__)

GRACE_SECONDS = 10.0
"""How long in-flight RPCs may finish after SIGTERM."""


def grpc_address(endpoint: str) -> str:
    """The gRPC bind address of a CSI endpoint: ``unix:///abs/path`` as is, ``tcp://host:port`` → ``host:port``.

    Raises:
        InvalidArgument: another scheme, or a relative unix path.
    """
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://"):]
        if not path.startswith("/"):
            raise InvalidArgument(f"unix endpoint needs an absolute path: {endpoint!r}")
        return f"unix://{path}"
    if endpoint.startswith("tcp://"):
        return endpoint[len("tcp://"):]
    raise InvalidArgument(f"endpoint must be unix:///path or tcp://host:port, got {endpoint!r}")


def _remove_stale_socket(address: str) -> None:
    """A previous process's socket file blocks the bind: remove it (only if it is a socket)."""
    if not address.startswith("unix://"):
        return
    path = address[len("unix://"):]
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)


@dataclass
class Plugin:
    """The assembled services of one process (``node`` is ``None`` in controller mode, ``controller`` and
    ``group_controller`` in node mode)."""

    config: DriverConfig
    identity: IdentityService
    controller: ControllerService | None
    node: NodeService | None
    group_controller: GroupControllerService | None = None

    @classmethod
    def build(cls, config: DriverConfig, mounter: Mounter | None = None) -> Plugin:
        node = None
        if config.mode.node:
            node = NodeService(config, StateStore(config.state_dir), mounter or Mounter())
        controller = ControllerService(config) if config.mode.controller else None
        group_controller = GroupControllerService(controller) if controller is not None else None
        return cls(config, IdentityService(config), controller, node, group_controller)

    def add_to(self, server: grpc.aio.Server) -> None:
        csi_pb2_grpc.add_IdentityServicer_to_server(self.identity, server)
        if self.controller is not None:
            csi_pb2_grpc.add_ControllerServicer_to_server(self.controller, server)
        if self.group_controller is not None:
            csi_pb2_grpc.add_GroupControllerServicer_to_server(self.group_controller, server)
        if self.node is not None:
            csi_pb2_grpc.add_NodeServicer_to_server(self.node, server)


async def serve(config: DriverConfig, endpoint: str, mounter: Mounter | None = None) -> None:
    """Load the node state (node mode), serve on ``endpoint`` until SIGTERM/SIGINT, and meanwhile restore the
    recorded mounts and keep repairing stale ones (:meth:`NodeService.watch`).

    Raises:
        InvalidArgument: a bad endpoint.  ValueError: an unreadable node state file.
        RuntimeError: the address cannot be bound.
    """
    address = grpc_address(endpoint)
    plugin = Plugin.build(config, mounter)
    if plugin.node is not None:
        plugin.node.load()
    server = grpc.aio.server()
    plugin.add_to(server)
    _remove_stale_socket(address)
    if server.add_insecure_port(address) == 0 and not address.startswith("unix://"):
        raise RuntimeError(f"cannot bind {address}")
    await server.start()
    log.info("callfs-csi %s serving %s on %s (node id %s)", config.mode.value, config.name, endpoint,
             config.node_id)
    watcher = None
    if plugin.node is not None:
        watcher = asyncio.create_task(plugin.node.watch(config.repair_interval), name="restore and repair mounts")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        log.info("stopping (mounts stay up)")
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await server.stop(GRACE_SECONDS)
