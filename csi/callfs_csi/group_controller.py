"""CSI GroupController service: volume group snapshots (spec, "Group Controller Service RPCs", CSI v1.12).

A group snapshot is one ordinary snapshot per source volume (:meth:`ControllerService.take_snapshot`, a
copy-on-write copy under ``/snapshots``) plus a group record ``/snapshots/.csi/groups/<name>.json``
(:class:`snapshot.GroupRecord`) listing the sources and members. Member ``i`` is the snapshot
:func:`snapshot.member_name` of the group name and source ``i``; its record and every ``Snapshot`` reported for it
carry the group's ID in ``group_snapshot_id``, and ``DeleteSnapshot`` refuses it while the group exists. Group IDs
follow the volume ID grammar (:func:`callfs_csi.volume.parse_volume_id`): the name, plus ``@<server>`` off the
default cluster.

What the group guarantees — less than the spec asks. The spec wants the members "taken at the same point-in-time
relative to a stream of write traffic" (write-order consistency). CallFS cannot freeze a directory against the pods
writing to it, and the members are copied one after the other: each is its volume at one instant (one metadata
transaction; while that copy runs, if the server has no copy-on-write copies and it is streamed), but the instants
differ by the time between them (milliseconds with copy-on-write). While copying, this service holds the group's
lock and the snapshot lock of every member (taken in sorted order), so no other
``CreateSnapshot``/``DeleteSnapshot``/group RPC of this controller touches the members meanwhile; those locks do not
stop writes to the source volumes. The set is therefore consistent only when the application does not write to the
volumes for the duration of the call (quiesced or frozen by the user or a hook), exactly as for a single snapshot
(:mod:`callfs_csi.snapshot`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence

import grpc

from callfs.client import CallFSClient
from callfs_csi import csi_pb2, csi_pb2_grpc, snapshot
from callfs_csi.controller import ControllerService, check_snapshot_parameters
from callfs_csi.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, rpc
from callfs_csi.params import Credentials, credentials
from callfs_csi.volume import VolumeRef, parse_volume_id

__all__ = ["GROUP_CONTROLLER_CAPABILITIES", "GroupControllerService", "check_members", "group_sources"]

log = logging.getLogger(__name__)

_RPC = csi_pb2.GroupControllerServiceCapability.RPC
GROUP_CONTROLLER_CAPABILITIES = (_RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,)


def group_sources(source_volume_ids: Sequence[str]) -> tuple[list[VolumeRef], str | None]:
    """The refs of a group's source volumes and the one server they share (``None``: the default cluster).

    Raises:
        InvalidArgument: no source, an empty or repeated ID (spec: ``source_volume_ids`` is REQUIRED).
        NotFound: an ID no volume can have.
        FailedPrecondition: sources on different clusters (spec: "Cannot snapshot multiple volumes together").
    """
    if not source_volume_ids:
        raise InvalidArgument("source_volume_ids is required")
    if any(not volume_id for volume_id in source_volume_ids):
        raise InvalidArgument("source_volume_ids must not contain an empty ID")
    if len(set(source_volume_ids)) != len(source_volume_ids):
        raise InvalidArgument("source_volume_ids must not repeat a volume")
    refs = []
    for volume_id in source_volume_ids:
        ref = parse_volume_id(volume_id)
        if ref is None:
            raise NotFound(f"source volume {volume_id} does not exist")
        refs.append(ref)
    servers = {ref.server for ref in refs}
    if len(servers) > 1:
        raise FailedPrecondition("source volumes of one group snapshot must be on one CallFS cluster")
    return refs, servers.pop()


def check_members(record: snapshot.GroupRecord, snapshot_ids: Sequence[str]) -> None:
    """Check a request's ``snapshot_ids`` against the group's members; an empty list is not checked (this driver
    finds the members from its record).

    Raises:
        InvalidArgument: the IDs are not exactly the members (spec, "Snapshot list mismatch").
    """
    if snapshot_ids and not record.same_members(list(snapshot_ids)):
        raise InvalidArgument(f"snapshot_ids {sorted(snapshot_ids)} are not the members of group snapshot "
                              f"{record.name} ({sorted(record.snapshot_ids)})")


class GroupControllerService(csi_pb2_grpc.GroupControllerServicer):
    """Volume group snapshots of ``csi.callfs.io``, made of the :class:`ControllerService`'s snapshots (it shares
    that service's locks and snapshot machinery)."""

    def __init__(self, controller: ControllerService) -> None:
        self.controller = controller

    def _locate(self, group_snapshot_id: str, secrets: Mapping[str, str]) -> tuple[VolumeRef, Credentials] | None:
        """The group an ID names and the credentials to reach it; ``None``: no group can have that ID."""
        ref = parse_volume_id(group_snapshot_id)
        if ref is None:
            return None
        return ref, credentials(secrets, ref.server, self.controller.config.default)

    def _group_lock(self, ref: VolumeRef) -> contextlib.AbstractAsyncContextManager[None]:
        return self.controller.locks.hold("group-snapshot:" + ref.volume_id)

    def _member_ref(self, member_id: str) -> VolumeRef:
        ref = parse_volume_id(member_id)
        if ref is None:  # the record holds only IDs this driver made
            raise ValueError(f"group record names an impossible snapshot ID {member_id!r}")
        return ref

    async def _members(
        self, fs: CallFSClient, record: snapshot.GroupRecord, group_snapshot_id: str
    ) -> list[csi_pb2.Snapshot]:
        """The members as CSI reports them; a member whose record is missing is reported not ready."""
        members = []
        for source_id, member_id in zip(record.source_volume_ids, record.snapshot_ids, strict=True):
            found = await snapshot.read_record(fs, self._member_ref(member_id).name)
            if found is None:
                members.append(csi_pb2.Snapshot(snapshot_id=member_id, source_volume_id=source_id,
                                                ready_to_use=False, group_snapshot_id=group_snapshot_id))
            else:
                members.append(found.to_proto(member_id))
        return members

    @rpc
    async def GroupControllerGetCapabilities(
        self, request: csi_pb2.GroupControllerGetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GroupControllerGetCapabilitiesResponse:
        cap = csi_pb2.GroupControllerServiceCapability
        return csi_pb2.GroupControllerGetCapabilitiesResponse(
            capabilities=[cap(rpc=cap.RPC(type=t)) for t in GROUP_CONTROLLER_CAPABILITIES]
        )

    @rpc
    async def CreateVolumeGroupSnapshot(
        self, request: csi_pb2.CreateVolumeGroupSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.CreateVolumeGroupSnapshotResponse:
        """Snapshot every source volume, one after the other, as members of group ``name`` (see the module
        docstring for what that guarantees).

        Idempotent by name: the same name and the same set of sources (any order) return the same group, finishing
        one a crash cut short; another set of sources → ``ALREADY_EXISTS``. The group record is written before the
        first member; when a member fails, the members taken so far and the record are removed again (spec: no
        snapshots leaked when no group ID was handed out) and the error is returned.

        Raises:
            InvalidArgument: no name, no sources, a malformed name or an unsupported parameter.
            NotFound: a source volume does not exist.  AlreadyExists: see above.
            FailedPrecondition: sources on different clusters.
        """
        name = snapshot.validate_group_name(request.name)
        source_ids = list(request.source_volume_ids)
        sources, server = group_sources(source_ids)
        check_snapshot_parameters(request.parameters)
        default_server = self.controller.default_server()
        creds = credentials(request.secrets, server, self.controller.config.default)
        group_ref = VolumeRef.on(name, creds.server, default_server)
        member_refs = [VolumeRef.on(snapshot.member_name(name, s), creds.server, default_server) for s in source_ids]
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._group_lock(group_ref))
            for ref in sorted(member_refs, key=lambda r: r.volume_id):
                await stack.enter_async_context(self.controller.snapshot_lock(ref))
            fs = await stack.enter_async_context(self.controller.client(creds))
            record = await snapshot.read_group_record(fs, name)
            if record is not None and not record.same_sources(source_ids):
                raise AlreadyExists(f"group snapshot {name} exists for other volumes "
                                    f"({', '.join(sorted(record.source_volume_ids))})")
            fresh = record is None
            if record is None:
                for source_id, source in zip(source_ids, sources, strict=True):
                    if not await fs.exists(source.path):
                        raise NotFound(f"source volume {source_id} does not exist")
                record = snapshot.GroupRecord(name, source_ids, [r.volume_id for r in member_refs], snapshot.now())
                await snapshot.write_group_record(fs, record)
            by_source = dict(zip(source_ids, sources, strict=True))
            try:
                for source_id, member_id in zip(record.source_volume_ids, record.snapshot_ids, strict=True):
                    await self.controller.take_snapshot(fs, self._member_ref(member_id), source_id,
                                                        by_source[source_id], group_ref.volume_id)
            except Exception:
                if fresh:
                    await self._remove(fs, record)
                raise
            members = await self._members(fs, record, group_ref.volume_id)
        if fresh:
            log.info("group snapshot %s of %s: %d members", group_ref.volume_id, ", ".join(source_ids), len(members))
        return csi_pb2.CreateVolumeGroupSnapshotResponse(group_snapshot=record.to_proto(group_ref.volume_id, members))

    async def _remove(self, fs: CallFSClient, record: snapshot.GroupRecord) -> None:
        """Delete every member, then the group record (so a retry after a crash still finds the members)."""
        for member_id in record.snapshot_ids:
            await self.controller.remove_snapshot(fs, self._member_ref(member_id))
        await snapshot.delete_group_record(fs, record.name)

    @rpc
    async def GetVolumeGroupSnapshot(
        self, request: csi_pb2.GetVolumeGroupSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetVolumeGroupSnapshotResponse:
        """The group and its members.

        Raises:
            InvalidArgument: no ID, or ``snapshot_ids`` that are not the members (spec, "Snapshot list mismatch").
            NotFound: no such group (spec, "GetVolumeGroupSnapshot Errors").
        """
        if not request.group_snapshot_id:
            raise InvalidArgument("group_snapshot_id is required")
        located = self._locate(request.group_snapshot_id, request.secrets)
        if located is None:
            raise NotFound(f"group snapshot {request.group_snapshot_id} does not exist")
        ref, creds = located
        async with self.controller.client(creds) as fs:
            record = await snapshot.read_group_record(fs, ref.name)
            if record is None:
                raise NotFound(f"group snapshot {request.group_snapshot_id} does not exist")
            check_members(record, request.snapshot_ids)
            members = await self._members(fs, record, ref.volume_id)
        return csi_pb2.GetVolumeGroupSnapshotResponse(group_snapshot=record.to_proto(ref.volume_id, members))

    @rpc
    async def DeleteVolumeGroupSnapshot(
        self, request: csi_pb2.DeleteVolumeGroupSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.DeleteVolumeGroupSnapshotResponse:
        """Delete every member snapshot and the group record; an unknown group is success (spec: idempotent).

        Raises:
            InvalidArgument: no ID, or ``snapshot_ids`` that are not the members (nothing is deleted then).
        """
        if not request.group_snapshot_id:
            raise InvalidArgument("group_snapshot_id is required")
        located = self._locate(request.group_snapshot_id, request.secrets)
        if located is None:
            return csi_pb2.DeleteVolumeGroupSnapshotResponse()
        ref, creds = located
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._group_lock(ref))
            fs = await stack.enter_async_context(self.controller.client(creds))
            record = await snapshot.read_group_record(fs, ref.name)
            if record is None:
                return csi_pb2.DeleteVolumeGroupSnapshotResponse()
            check_members(record, request.snapshot_ids)
            for member in sorted((self._member_ref(m) for m in record.snapshot_ids), key=lambda r: r.volume_id):
                await stack.enter_async_context(self.controller.snapshot_lock(member))
            await self._remove(fs, record)
        log.info("deleted group snapshot %s and its %d members", ref.volume_id, len(record.snapshot_ids))
        return csi_pb2.DeleteVolumeGroupSnapshotResponse()
