"""Registration of the node plugin with the kubelet, done by the plugin itself (no node-driver-registrar).

The kubelet's plugin watcher watches ``<kubelet dir>/plugins_registry`` for unix sockets; on each one it dials
the ``pluginregistration.Registration`` service (``proto/pluginregistration.proto``, the kubelet's
``k8s.io/kubelet/pkg/apis/pluginregistration/v1``): ``GetInfo`` must answer within one second with type
``CSIPlugin``, the driver name, the CSI endpoint *as the kubelet sees it* (a host path, which differs from the
path inside the plugin's container) and the CSI versions spoken; the kubelet then calls ``NodeGetInfo`` on that
endpoint, records the driver in the node's CSINode object, and reports the outcome with
``NotifyRegistrationStatus``. Removing the socket deregisters the driver; a new socket at the same path (a new
inode, as after a restart) registers it again.

The socket appears only once it answers: it is bound under a hidden name (the watcher ignores names starting
with ``.``) and renamed into place after the server has started, so the kubelet never dials a socket that is not
listening yet.

A failed registration is logged and the plugin keeps serving: the kubelet retries on its own for as long as the
socket exists (every second after a refused ``RegisterPlugin``, with back-off after other errors). Unlike
node-driver-registrar, which exits on a failed status, the plugin does not restart itself: without the mount
service its FUSE daemons would go down with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from callfs_csi import pluginregistration_pb2 as pb
from callfs_csi import pluginregistration_pb2_grpc as pb_grpc

__all__ = ["CSI_PLUGIN_TYPE", "SUPPORTED_VERSIONS", "RegistrationServer", "RegistrationService",
           "registration_socket_path"]

log = logging.getLogger(__name__)

CSI_PLUGIN_TYPE = "CSIPlugin"
"""``PluginInfo.type`` of a CSI driver (the kubelet's ``registerapi.CSIPlugin``)."""

SUPPORTED_VERSIONS = ("1.0.0",)
"""CSI versions announced to the kubelet, which accepts any 1.x (it rejects 0.x and 2.x)."""


def registration_socket_path(registry_dir: str, driver_name: str) -> str:
    """``<registry_dir>/<driver_name>-reg.sock``: where node-driver-registrar puts the socket, so that the
    plugin and the sidecar are interchangeable."""
    return os.path.join(registry_dir, f"{driver_name}-reg.sock")


@dataclass
class RegistrationService(pb_grpc.RegistrationServicer):
    """``pluginregistration.Registration`` for driver ``name`` whose CSI socket the kubelet reaches at
    ``endpoint`` (an absolute host path). ``registered``/``error`` hold the last status the kubelet reported
    (``None`` before the first)."""

    name: str
    endpoint: str
    registered: bool | None = field(default=None, init=False)
    error: str = field(default="", init=False)

    def info(self) -> pb.PluginInfo:
        """The ``PluginInfo`` this plugin registers with."""
        return pb.PluginInfo(type=CSI_PLUGIN_TYPE, name=self.name, endpoint=self.endpoint,
                             supported_versions=list(SUPPORTED_VERSIONS))

    async def GetInfo(self, request: pb.InfoRequest, context: grpc.aio.ServicerContext) -> pb.PluginInfo:
        return self.info()

    async def NotifyRegistrationStatus(
        self, request: pb.RegistrationStatus, context: grpc.aio.ServicerContext
    ) -> pb.RegistrationStatusResponse:
        if request.plugin_registered:
            if self.registered is not True:
                log.info("registered with the kubelet as %s (CSI endpoint %s)", self.name, self.endpoint)
        else:
            # The kubelet retries while the socket exists (see the module docstring): keep serving.
            log.error("the kubelet refused the registration of %s: %s", self.name, request.error)
        self.registered, self.error = request.plugin_registered, request.error
        return pb.RegistrationStatusResponse()


class RegistrationServer:
    """Serves a :class:`RegistrationService` on the unix socket ``path`` (see the module docstring for how the
    socket appears); :meth:`stop` removes the socket, which deregisters the driver."""

    def __init__(self, service: RegistrationService, path: str) -> None:
        if not os.path.isabs(path):
            raise ValueError(f"the registration socket needs an absolute path: {path!r}")
        self.service = service
        self.path = path
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Bind, start, then rename the socket into place.

        Raises:
            RuntimeError: the hidden socket cannot be bound (its directory is missing or not writable).
        """
        path = Path(self.path)
        hidden = path.with_name(f".{path.name}.starting")
        for stale in (hidden, path):  # a previous run's socket (a crash leaves it behind)
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        server = grpc.aio.server()
        pb_grpc.add_RegistrationServicer_to_server(self.service, server)
        server.add_insecure_port(f"unix://{hidden}")
        await server.start()
        if not hidden.exists():
            await server.stop(None)
            raise RuntimeError(f"cannot listen on {hidden}")
        os.rename(hidden, path)
        self._server = server
        log.info("registration socket %s ready for the kubelet", path)

    def socket_present(self) -> bool:
        """Whether the socket is still where the kubelet looks (someone may have wiped the directory)."""
        return self._server is not None and Path(self.path).is_socket()

    async def stop(self) -> None:
        """Remove the socket (the kubelet deregisters the driver) and stop serving."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._server is not None:
            await self._server.stop(None)
            self._server = None
