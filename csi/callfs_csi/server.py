"""The gRPC server of one ``callfs-csi`` process: Identity plus the Controller (with the GroupController) and/or
Node service (grpc.aio)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from callfs_csi import csi_pb2_grpc
from callfs_csi.config import DriverConfig
from callfs_csi.controller import ControllerService
from callfs_csi.errors import InvalidArgument
from callfs_csi.group_controller import GroupControllerService
from callfs_csi.health import HealthServer, parse_http_endpoint
from callfs_csi.identity import IdentityService
from callfs_csi.mounter import Mounter
from callfs_csi.node import NodeService
from callfs_csi.registration import RegistrationServer, RegistrationService
from callfs_csi.state import StateStore

__all__ = ["Plugin", "SelfServices", "grpc_address", "serve"]

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


@dataclass(frozen=True)
class SelfServices:
    """What the plugin serves in place of the sidecars: ``registration_socket`` and ``kubelet_endpoint`` (the CSI
    socket as the kubelet sees it) register a node plugin with the kubelet (:mod:`callfs_csi.registration`);
    ``http_endpoint`` (``HOST:PORT``) serves ``/healthz`` (:mod:`callfs_csi.health`). ``None``: not served."""

    registration_socket: str | None = None
    kubelet_endpoint: str | None = None
    http_endpoint: str | None = None


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


async def serve(config: DriverConfig, endpoint: str, mounter: Mounter | None = None,
                self_services: SelfServices | None = None) -> None:
    """Load the node state (node mode), serve on ``endpoint`` until SIGTERM/SIGINT, and meanwhile restore the
    recorded mounts and keep repairing stale ones (:meth:`NodeService.watch`). ``self_services``: ``/healthz``
    and the kubelet registration, started once the CSI socket answers (the kubelet calls ``NodeGetInfo`` as soon
    as it sees the registration socket); on stop the registration socket goes first.

    Raises:
        InvalidArgument: a bad endpoint or HTTP endpoint.  ValueError: an unreadable node state file.
        RuntimeError: the address cannot be bound.  OSError: the HTTP endpoint cannot be bound.
    """
    extras = self_services or SelfServices()
    health_at = None
    if extras.http_endpoint is not None:
        try:
            health_at = parse_http_endpoint(extras.http_endpoint)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
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
    registration = health = watcher = None
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        if extras.registration_socket is not None and extras.kubelet_endpoint is not None:
            registration = RegistrationServer(RegistrationService(config.name, extras.kubelet_endpoint),
                                              extras.registration_socket)
            await registration.start()
        if health_at is not None:
            health = HealthServer(address, *health_at, extra_check=_registration_check(registration))
            await health.start()
        if plugin.node is not None:
            watcher = asyncio.create_task(plugin.node.watch(config.repair_interval),
                                          name="restore and repair mounts")
        await stopping.wait()
    finally:
        log.info("stopping (mounts stay up)")
        if registration is not None:
            await registration.stop()
        if health is not None:
            await health.stop()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await server.stop(GRACE_SECONDS)


def _registration_check(registration: RegistrationServer | None) -> Callable[[], str | None]:
    """The health check's extra condition: the registration socket (if any) is still in place."""

    def check() -> str | None:
        if registration is None or registration.socket_present():
            return None
        return f"the registration socket {registration.path} is gone"

    return check
