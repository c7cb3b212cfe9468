"""CSI Identity service: plugin name and version, capabilities, and ``Probe`` (spec, "Identity Service RPC")."""

from __future__ import annotations

import grpc
from google.protobuf import wrappers_pb2

from callfs_csi import csi_pb2, csi_pb2_grpc
from callfs_csi.cluster import client_for
from callfs_csi.config import DriverConfig, driver_version
from callfs_csi.errors import rpc

__all__ = ["IdentityService"]


class IdentityService(csi_pb2_grpc.IdentityServicer):
    """Identity of ``csi.callfs.io``; ``Probe`` is ready when the default CallFS cluster answers ``/ready``."""

    def __init__(self, config: DriverConfig) -> None:
        self.config = config

    @rpc
    async def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name=self.config.name, vendor_version=driver_version())

    @rpc
    async def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        cap = csi_pb2.PluginCapability
        capabilities = [cap(volume_expansion=cap.VolumeExpansion(type=cap.VolumeExpansion.ONLINE))]
        if self.config.mode.controller:  # the process that serves the Controller serves the GroupController too
            capabilities[:0] = [cap(service=cap.Service(type=cap.Service.CONTROLLER_SERVICE)),
                                cap(service=cap.Service(type=cap.Service.GROUP_CONTROLLER_SERVICE))]
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=capabilities)

    @rpc
    async def Probe(self, request: csi_pb2.ProbeRequest, context: grpc.aio.ServicerContext) -> csi_pb2.ProbeResponse:
        """Ready when the default cluster's ``/ready`` answers 200 (its metadata store and lock service are up);
        a plugin without a default cluster has nothing to wait for and is ready."""
        if self.config.default is None:
            return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=True))
        async with client_for(self.config.default, timeout=min(self.config.request_timeout, 10.0)) as fs:
            ready = await fs.ready()
        return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=ready))
