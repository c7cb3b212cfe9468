"""CSI Controller service: volumes as quota-limited directories on a CallFS cluster (spec, "Controller Service RPC").

* ``CreateVolume`` → record ``/volumes/.csi/<name>.json``, directory ``/volumes/<name>``, quota of the requested
  capacity on it; the directory belongs to the volume's own user, whose key reaches that directory only
  (:mod:`callfs_csi.volume_keys`), written for the nodes into a Secret when the driver runs with
  ``--volume-secret-namespace`` (:mod:`callfs_csi.volume_secrets`). Idempotent by name: an existing volume
  whose quota satisfies the capacity range is returned as is; one that does not → ``ALREADY_EXISTS``.
* ``DeleteVolume`` → by the volume's ``onDelete`` policy (from its record): remove, keep, or move to
  ``/archive``, then drop the record, revoke the volume's key and delete its Secret; an unknown or already
  deleted volume is success, and a directory without a record is never removed (so a retried delete of a
  retained volume keeps it).
* ``CreateVolume`` with a ``volume_content_source`` copies that volume or snapshot (:mod:`callfs_csi.clone`).
* Snapshots are full copies under ``/snapshots`` (:mod:`callfs_csi.snapshot`); a volume can be made from one.
* ``ControllerExpandVolume`` raises the quota; nothing is needed on the node (FUSE ``statfs`` reads the quota).
* ``ListVolumes`` pages through ``/volumes`` of the default cluster by name; ``GetCapacity`` reports the free
  bytes of the cluster's nodes (:mod:`callfs_csi.cluster`).

Quota changes are root-only on the server: the credentials used here must be a ``root`` key (see
:mod:`callfs_csi.params`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc

from callfs import errors as fs_errors
from callfs.client import CallFSClient, QuotaInfo
from callfs_csi import csi_pb2, csi_pb2_grpc, snapshot
from callfs_csi.capabilities import check_capabilities, check_well_formed, unsupported_reason
from callfs_csi.clone import share_tree
from callfs_csi.cluster import client_for, cluster_free_bytes
from callfs_csi.config import DriverConfig
from callfs_csi.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, OutOfRange, rpc
from callfs_csi.inflight import KeyedLocks
from callfs_csi.params import (
    Credentials,
    OnDelete,
    credentials,
    parse_mutable_parameters,
    parse_parameters,
)
from callfs_csi.snapshot import read_record as read_snapshot_record
from callfs_csi.snapshot import snapshot_path
from callfs_csi.volume import (
    ARCHIVE_ROOT,
    VOLUMES_ROOT,
    VolumeRef,
    archive_path,
    capacity_fits,
    decode_list_token,
    encode_list_token,
    parse_volume_id,
    requested_capacity,
    validate_name,
)
from callfs_csi.volume_keys import secret_data, secret_name, volume_key, volume_user
from callfs_csi.volume_secrets import KubernetesVolumeSecrets, VolumeSecrets

__all__ = ["ControllerService", "check_snapshot_parameters"]

log = logging.getLogger(__name__)

_RPC = csi_pb2.ControllerServiceCapability.RPC
CONTROLLER_CAPABILITIES = (
    _RPC.CREATE_DELETE_VOLUME,
    _RPC.LIST_VOLUMES,
    _RPC.GET_CAPACITY,
    _RPC.EXPAND_VOLUME,
    _RPC.SINGLE_NODE_MULTI_WRITER,
    _RPC.GET_VOLUME,
    _RPC.VOLUME_CONDITION,
    _RPC.MODIFY_VOLUME,
    _RPC.CLONE_VOLUME,
    _RPC.CREATE_DELETE_SNAPSHOT,
    _RPC.LIST_SNAPSHOTS,
    _RPC.GET_SNAPSHOT,
)


def volume_context(ref: VolumeRef, server: str) -> dict[str, str]:
    """What the node needs to mount a volume: the cluster URL and the directory (``volume_context``)."""
    return {"server": server, "path": ref.path}


class ControllerService(csi_pb2_grpc.ControllerServicer):
    """The controller of ``csi.callfs.io`` over the CallFS REST API."""

    def __init__(self, config: DriverConfig, volume_secrets: VolumeSecrets | None = None) -> None:
        """``volume_secrets``: where each volume's key goes for the nodes; ``None``: Kubernetes Secrets in
        ``config.volume_secret_namespace`` when that is set, else nowhere (the node-stage secret of the
        StorageClass is then what nodes mount with)."""
        self.config = config
        self.locks = KeyedLocks()
        if volume_secrets is None and config.volume_secret_namespace:
            volume_secrets = KubernetesVolumeSecrets(config.volume_secret_namespace)
        self.volume_secrets = volume_secrets

    def client(self, creds: Credentials) -> CallFSClient:
        """A REST client of the cluster ``creds`` name, with the driver's request timeout (seconds)."""
        return client_for(creds, self.config.request_timeout)

    def default_server(self) -> str | None:
        """The default cluster's URL, which IDs of its volumes and snapshots leave out; ``None``: no default."""
        return self.config.default.server if self.config.default else None

    def _locate(self, volume_id: str, secrets: Mapping[str, str]) -> tuple[VolumeRef | None, Credentials | None]:
        """The volume an ID names and the credentials to reach it (``None, None``: no volume has that ID)."""
        ref = parse_volume_id(volume_id)
        if ref is None:
            return None, None
        return ref, credentials(secrets, ref.server, self.config.default)

    # ---- CreateVolume / DeleteVolume ------------------------------------------------------------------------

    @rpc
    async def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.CreateVolumeResponse:
        name = validate_name(request.name)
        if self.volume_secrets is not None:
            secret_name(name)  # a name no Secret can have is refused before anything is made
        check_capabilities(request.volume_capabilities)
        source = _volume_source(request)
        params = parse_parameters(request.parameters)
        mutable = parse_mutable_parameters(request.mutable_parameters)
        on_delete = mutable.on_delete or params.on_delete
        max_inodes = mutable.max_inodes or params.max_inodes
        required, limit = request.capacity_range.required_bytes, request.capacity_range.limit_bytes
        capacity = requested_capacity(required, limit, self.config.default_capacity)
        creds = credentials(request.secrets, params.server_for(request.secrets), self.config.default)
        ref = VolumeRef.on(name, creds.server, self.default_server())
        if source is not None and source.ref.server != ref.server:
            raise InvalidArgument(f"source {source.id} is on another cluster than {ref.volume_id}")
        async with self.locks.hold(ref.volume_id), self.client(creds) as fs:
            existing = await _quota_or_none(fs, ref.path)
            if existing is not None and existing.bytes_limit is not None:
                if not capacity_fits(existing.bytes_limit, required, limit):
                    raise AlreadyExists(
                        f"volume {name} exists with {existing.bytes_limit} bytes, outside the requested range "
                        f"[{required}, {limit or 'unbounded'}]"
                    )
                capacity = existing.bytes_limit
                record = await _read_record(fs, ref) or {}
                recorded_source = record.get("content_source")
                if (source.key if source else None) != recorded_source:
                    raise AlreadyExists(f"volume {name} exists with another content source ({recorded_source})")
                if source is not None and record.get("complete") is False:
                    await self._clone(fs, source, ref, record)  # finish a copy cut short
                await self._give_key(fs, ref, creds)
            else:
                if source is not None:
                    source_capacity = await _source_capacity(fs, source)
                    if capacity < source_capacity:
                        if limit and limit < source_capacity:
                            raise OutOfRange(f"a volume from {source.id} needs at least {source_capacity} bytes")
                        capacity = source_capacity
                record = {"name": name, "capacity_bytes": capacity, "on_delete": on_delete.value,
                          "created": datetime.now(UTC).isoformat()}
                if source is not None:
                    record |= {"content_source": source.key, "complete": False}
                await _write_record(fs, ref, record)
                await fs.mkdir(ref.path)
                await fs.set_quota(ref.path, bytes_limit=capacity, inodes_limit=max_inodes)
                if source is not None:
                    await self._clone(fs, source, ref, record)
                await self._give_key(fs, ref, creds)
                log.info("created volume %s (%d bytes) on %s", ref.volume_id, capacity, creds.server)
        volume = csi_pb2.Volume(volume_id=ref.volume_id, capacity_bytes=capacity,
                                volume_context=volume_context(ref, creds.server))
        if source is not None:
            volume.content_source.CopyFrom(request.volume_content_source)
        return csi_pb2.CreateVolumeResponse(volume=volume)

    async def _clone(self, fs: CallFSClient, source: ContentSource, ref: VolumeRef, record: dict[str, object]) -> None:
        # The source is not locked: two clones of each other would wait on each other forever. A source deleted
        # mid-copy fails this call, and the CO's retry (the record still says incomplete) reports NOT_FOUND.
        if not await fs.exists(source.path):
            raise NotFound(f"source {source.id} does not exist")
        await share_tree(fs, source.path, ref.path, owner=volume_user(ref.name))
        record["complete"] = True
        await _write_record(fs, ref, record)

    async def _give_key(self, fs: CallFSClient, ref: VolumeRef, creds: Credentials) -> None:
        """Give the volume directory to the volume's user, register its key confined to the directory, and hand
        the key to :attr:`volume_secrets`. Every step is idempotent: a retried ``CreateVolume`` repeats them."""
        user = volume_user(ref.name)
        key = volume_key(creds.api_key, ref.volume_id)
        await fs.chown(ref.path, user)
        await fs.register_key(user, key, ref.path)
        if self.volume_secrets is not None:
            data = secret_data(creds.server, key, creds.ca_bundle)
            await self.volume_secrets.put(secret_name(ref.name), ref.name, data)

    async def _take_key(self, fs: CallFSClient, ref: VolumeRef) -> None:
        """Revoke the volume's key (at once, on every node of the cluster) and delete its Secret."""
        await fs.revoke_keys(volume_user(ref.name))
        if self.volume_secrets is not None:
            with contextlib.suppress(InvalidArgument):  # a name no Secret can have: it never had one
                await self.volume_secrets.delete(secret_name(ref.name))

    @rpc
    async def DeleteVolume(
        self, request: csi_pb2.DeleteVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.DeleteVolumeResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        ref, creds = self._locate(request.volume_id, request.secrets)
        if ref is None or creds is None:
            return csi_pb2.DeleteVolumeResponse()  # no volume can have this ID: already gone
        async with self.locks.hold(ref.volume_id), self.client(creds) as fs:
            policy = await _on_delete_policy(fs, ref)
            outcome = "was already gone"  # an idempotent retry, or a directory removed by hand
            if await fs.exists(ref.path):
                if policy is OnDelete.DELETE:
                    with contextlib.suppress(fs_errors.NotFound):
                        await fs.delete(ref.path, recursive=True)
                    outcome = "deleted its directory"
                elif policy is OnDelete.ARCHIVE:
                    destination = archive_path(ref.name, datetime.now(UTC))
                    await fs.mkdir(ARCHIVE_ROOT)
                    await fs.move(ref.path, destination, create_parents=True)
                    outcome = f"archived its directory to {destination}"
                else:
                    outcome = f"kept its directory {ref.path}"
            with contextlib.suppress(fs_errors.NotFound):
                await fs.delete(ref.record_path)
            await self._take_key(fs, ref)
        log.info("deleted volume %s (onDelete=%s): %s", ref.volume_id, policy.value, outcome)
        return csi_pb2.DeleteVolumeResponse()

    # ---- capabilities, validation ---------------------------------------------------------------------------

    @rpc
    async def ControllerGetCapabilities(
        self, request: csi_pb2.ControllerGetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ControllerGetCapabilitiesResponse:
        cap = csi_pb2.ControllerServiceCapability
        return csi_pb2.ControllerGetCapabilitiesResponse(
            capabilities=[cap(rpc=cap.RPC(type=t)) for t in CONTROLLER_CAPABILITIES]
        )

    @rpc
    async def ValidateVolumeCapabilities(
        self, request: csi_pb2.ValidateVolumeCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        if not request.volume_capabilities:
            raise InvalidArgument("volume_capabilities are required")
        for index, capability in enumerate(request.volume_capabilities):
            check_well_formed(capability, f"volume_capabilities[{index}]")
        ref, creds = self._locate(request.volume_id, request.secrets)
        if ref is None or creds is None:
            raise NotFound(f"volume {request.volume_id} does not exist")
        async with self.client(creds) as fs:
            if not await fs.exists(ref.path):
                raise NotFound(f"volume {request.volume_id} does not exist")
        reasons = [r for r in map(unsupported_reason, request.volume_capabilities) if r]
        try:
            parse_parameters(request.parameters)
        except InvalidArgument as exc:
            reasons.append(str(exc))
        if reasons:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message="; ".join(reasons))
        confirmed = csi_pb2.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=request.volume_context, volume_capabilities=request.volume_capabilities,
            parameters=request.parameters, mutable_parameters=request.mutable_parameters,
        )
        return csi_pb2.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    # ---- listing, capacity ----------------------------------------------------------------------------------

    def _default_creds(self, what: str) -> Credentials:
        if self.config.default is None:
            raise FailedPrecondition(f"{what} needs a default cluster (callfs-csi --server and --api-key-file)")
        return self.config.default

    @rpc
    async def ListVolumes(
        self, request: csi_pb2.ListVolumesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ListVolumesResponse:
        """Volumes of the default cluster, sorted by name; ``next_token`` resumes after the page's last name."""
        if request.max_entries < 0:
            raise InvalidArgument("max_entries must not be negative")
        after = decode_list_token(request.starting_token) if request.starting_token else None
        creds = self._default_creds("ListVolumes")
        async with self.client(creds) as fs:
            try:
                items = await fs.list_dir(VOLUMES_ROOT)
            except fs_errors.NotFound:
                items = []
            names = sorted(i.name for i in items if i.is_dir and not i.name.startswith("."))
            if after is not None:
                names = [n for n in names if n > after]
            page = names[: request.max_entries] if request.max_entries else names
            entries = []
            for name in page:
                ref = VolumeRef(name)
                found = await _quota_or_none(fs, ref.path)
                condition = csi_pb2.VolumeCondition(abnormal=found is None,
                                                    message="no quota set" if found is None else "")
                entries.append(csi_pb2.ListVolumesResponse.Entry(
                    volume=csi_pb2.Volume(
                        volume_id=ref.volume_id,
                        capacity_bytes=(found.bytes_limit or 0) if found else 0,
                        volume_context=volume_context(ref, creds.server),
                    ),
                    status=csi_pb2.ListVolumesResponse.VolumeStatus(volume_condition=condition),
                ))
        next_token = encode_list_token(page[-1]) if page and len(page) < len(names) else ""
        return csi_pb2.ListVolumesResponse(entries=entries, next_token=next_token)

    @rpc
    async def ControllerGetVolume(
        self, request: csi_pb2.ControllerGetVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ControllerGetVolumeResponse:
        """The volume with its capacity and a condition: abnormal when its quota is gone."""
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        ref, creds = self._locate(request.volume_id, {})
        if ref is None or creds is None:
            raise NotFound(f"volume {request.volume_id} does not exist")
        async with self.client(creds) as fs:
            if not await fs.exists(ref.path):
                raise NotFound(f"volume {request.volume_id} does not exist")
            found = await _quota_or_none(fs, ref.path)
        condition = csi_pb2.VolumeCondition(abnormal=found is None, message="no quota set" if found is None else "")
        return csi_pb2.ControllerGetVolumeResponse(
            volume=csi_pb2.Volume(volume_id=ref.volume_id,
                                  capacity_bytes=(found.bytes_limit or 0) if found else 0,
                                  volume_context=volume_context(ref, creds.server)),
            status=csi_pb2.ControllerGetVolumeResponse.VolumeStatus(volume_condition=condition),
        )

    @rpc
    async def GetCapacity(
        self, request: csi_pb2.GetCapacityRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetCapacityResponse:
        """Free bytes of the cluster the parameters name (default: the default cluster); 0 for capabilities
        this driver cannot serve (spec, ``GetCapacity``)."""
        for capability in request.volume_capabilities:
            check_well_formed(capability)
            if unsupported_reason(capability) is not None:
                return csi_pb2.GetCapacityResponse(available_capacity=0)
        params = parse_parameters(request.parameters)
        creds = credentials({}, params.server, self.config.default)
        free = await cluster_free_bytes(creds, self.config.request_timeout)
        return csi_pb2.GetCapacityResponse(available_capacity=free)

    # ---- expansion ------------------------------------------------------------------------------------------

    @rpc
    async def ControllerExpandVolume(
        self, request: csi_pb2.ControllerExpandVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ControllerExpandVolumeResponse:
        """Raise the quota to the requested capacity (never lowers it); ``node_expansion_required`` is false."""
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        if not request.HasField("capacity_range"):
            raise InvalidArgument("capacity_range is required")
        if request.HasField("volume_capability"):
            check_capabilities([request.volume_capability])
        required, limit = request.capacity_range.required_bytes, request.capacity_range.limit_bytes
        wanted = requested_capacity(required, limit, 0)
        if not wanted:
            raise InvalidArgument("capacity_range must give required_bytes or limit_bytes")
        ref, creds = self._locate(request.volume_id, request.secrets)
        if ref is None or creds is None:
            raise NotFound(f"volume {request.volume_id} does not exist")
        async with self.locks.hold(ref.volume_id), self.client(creds) as fs:
            found = await _quota_or_none(fs, ref.path)
            if found is None:
                if not await fs.exists(ref.path):
                    raise NotFound(f"volume {request.volume_id} does not exist")
                current = 0
            else:
                current = found.bytes_limit or 0
            capacity = max(current, wanted)
            if capacity != current:
                await fs.set_quota(ref.path, bytes_limit=capacity,
                                   inodes_limit=found.inodes_limit if found else None)
                log.info("expanded volume %s from %d to %d bytes", ref.volume_id, current, capacity)
        return csi_pb2.ControllerExpandVolumeResponse(capacity_bytes=capacity, node_expansion_required=False)

    @rpc
    async def ControllerModifyVolume(
        self, request: csi_pb2.ControllerModifyVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ControllerModifyVolumeResponse:
        """Apply mutable parameters (a VolumeAttributesClass): ``onDelete`` rewrites the record, ``maxInodes``
        changes the quota's inode limit (the byte limit is kept)."""
        if not request.volume_id:
            raise InvalidArgument("volume_id is required")
        mutable = parse_mutable_parameters(request.mutable_parameters)
        ref, creds = self._locate(request.volume_id, request.secrets)
        if ref is None or creds is None:
            raise NotFound(f"volume {request.volume_id} does not exist")
        async with self.locks.hold(ref.volume_id), self.client(creds) as fs:
            if not await fs.exists(ref.path):
                raise NotFound(f"volume {request.volume_id} does not exist")
            if mutable.on_delete is not None:
                await _write_policy(fs, ref, mutable.on_delete)
            if mutable.max_inodes is not None:
                found = await _quota_or_none(fs, ref.path)
                await fs.set_quota(ref.path, bytes_limit=found.bytes_limit if found else None,
                                   inodes_limit=mutable.max_inodes)
        log.info("modified volume %s: %s", ref.volume_id, dict(request.mutable_parameters))
        return csi_pb2.ControllerModifyVolumeResponse()



    # ---- snapshots ------------------------------------------------------------------------------------------

    @rpc
    async def CreateSnapshot(
        self, request: csi_pb2.CreateSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.CreateSnapshotResponse:
        """Copy the source volume to ``/snapshots/<name>``; idempotent by name and source (another source under
        the same name → ``ALREADY_EXISTS``); an interrupted copy is finished by the CO's retry."""
        name = validate_name(request.name)
        if not request.source_volume_id:
            raise InvalidArgument("source_volume_id is required")
        check_snapshot_parameters(request.parameters)
        source = parse_volume_id(request.source_volume_id)
        if source is None:
            raise NotFound(f"source volume {request.source_volume_id} does not exist")
        creds = credentials(request.secrets, source.server, self.config.default)
        ref = VolumeRef.on(name, creds.server, self.default_server())
        async with self.snapshot_lock(ref), self.client(creds) as fs:
            record = await self.take_snapshot(fs, ref, request.source_volume_id, source)
        return csi_pb2.CreateSnapshotResponse(snapshot=_snapshot_response(ref.volume_id, record))

    def snapshot_lock(self, ref: VolumeRef) -> contextlib.AbstractAsyncContextManager[None]:
        """The lock every RPC holds while it creates or deletes snapshot ``ref``."""
        return self.locks.hold("snapshot:" + ref.volume_id)

    async def take_snapshot(
        self, fs: CallFSClient, ref: VolumeRef, source_volume_id: str, source: VolumeRef, group_snapshot_id: str = ""
    ) -> snapshot.SnapshotRecord:
        """Copy volume ``source`` to snapshot ``ref`` unless a ready copy exists (the caller holds
        :meth:`snapshot_lock`); ``group_snapshot_id`` marks a member of a volume group snapshot.

        Raises:
            AlreadyExists: a snapshot of that name exists for another volume, or in another group (or outside one).
            NotFound: the source volume's directory does not exist.
        """
        record = await snapshot.read_record(fs, ref.name)
        if record is not None and record.source_volume_id != source_volume_id:
            raise AlreadyExists(f"snapshot {ref.name} exists for another volume ({record.source_volume_id})")
        if record is not None and record.group_snapshot_id != group_snapshot_id:
            where = f"in group snapshot {record.group_snapshot_id}" if record.group_snapshot_id else "outside a group"
            raise AlreadyExists(f"snapshot {ref.name} exists {where}")
        if record is None or not record.ready:
            if not await fs.exists(source.path):
                raise NotFound(f"source volume {source_volume_id} does not exist")
            record = record or snapshot.SnapshotRecord(ref.name, source_volume_id, snapshot.now(),
                                                       group_snapshot_id=group_snapshot_id)
            await snapshot.write_record(fs, record)
            await fs.mkdir(snapshot_path(ref))
            _, record.size_bytes = await share_tree(fs, source.path, snapshot_path(ref))
            record.ready = True
            await snapshot.write_record(fs, record)
            log.info("snapshot %s of %s: %d bytes", ref.volume_id, source_volume_id, record.size_bytes)
        return record

    async def remove_snapshot(self, fs: CallFSClient, ref: VolumeRef) -> None:
        """Delete snapshot ``ref``'s copy, then its record (the caller holds :meth:`snapshot_lock`); a snapshot
        already gone is no error."""
        with contextlib.suppress(fs_errors.NotFound):
            await fs.delete(snapshot_path(ref), recursive=True)
        await snapshot.delete_record(fs, ref.name)

    @rpc
    async def DeleteSnapshot(
        self, request: csi_pb2.DeleteSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.DeleteSnapshotResponse:
        """Delete the copy and its record; an unknown snapshot is success. A member of a volume group snapshot whose
        group still exists → ``FAILED_PRECONDITION`` (spec, ``Snapshot.group_snapshot_id`` and "DeleteSnapshot
        Errors", snapshot in use)."""
        if not request.snapshot_id:
            raise InvalidArgument("snapshot_id is required")
        ref, creds = self._locate(request.snapshot_id, request.secrets)
        if ref is None or creds is None:
            return csi_pb2.DeleteSnapshotResponse()
        async with self.snapshot_lock(ref), self.client(creds) as fs:
            record = await snapshot.read_record(fs, ref.name)
            if record is not None and record.group_snapshot_id:
                group = parse_volume_id(record.group_snapshot_id)
                if group is not None and await snapshot.read_group_record(fs, group.name) is not None:
                    # spec, Snapshot.group_snapshot_id: a member that MUST NOT be deleted alone carries its
                    # group's ID; the CO deletes it with DeleteVolumeGroupSnapshot.
                    raise FailedPrecondition(f"snapshot {request.snapshot_id} belongs to group snapshot "
                                             f"{record.group_snapshot_id}: delete the group instead")
            await self.remove_snapshot(fs, ref)
        return csi_pb2.DeleteSnapshotResponse()

    @rpc
    async def GetSnapshot(
        self, request: csi_pb2.GetSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetSnapshotResponse:
        if not request.snapshot_id:
            raise InvalidArgument("snapshot_id is required")
        ref, creds = self._locate(request.snapshot_id, request.secrets)
        if ref is None or creds is None:
            raise NotFound(f"snapshot {request.snapshot_id} does not exist")
        async with self.client(creds) as fs:
            record = await snapshot.read_record(fs, ref.name)
        if record is None:
            raise NotFound(f"snapshot {request.snapshot_id} does not exist")
        return csi_pb2.GetSnapshotResponse(snapshot=_snapshot_response(ref.volume_id, record))

    @rpc
    async def ListSnapshots(
        self, request: csi_pb2.ListSnapshotsRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ListSnapshotsResponse:
        """Snapshots of the default cluster (or the secret's ``serverURL``) sorted by name, optionally only the one
        with ``snapshot_id`` or those of ``source_volume_id``; paged like ``ListVolumes``."""
        if request.max_entries < 0:
            raise InvalidArgument("max_entries must not be negative")
        after = decode_list_token(request.starting_token) if request.starting_token else None
        creds = credentials(request.secrets, None, self.config.default)
        async with self.client(creds) as fs:
            if request.snapshot_id:
                ref = parse_volume_id(request.snapshot_id)
                one = await snapshot.read_record(fs, ref.name) if ref is not None and ref.server is None else None
                records = [one] if one is not None else []
            else:
                records = await snapshot.list_records(fs)
        if request.source_volume_id:
            records = [r for r in records if r.source_volume_id == request.source_volume_id]
        if after is not None:
            records = [r for r in records if r.name > after]
        total = len(records)
        page = records[: request.max_entries] if request.max_entries else records
        next_token = encode_list_token(page[-1].name) if page and len(page) < total else ""
        entries = [csi_pb2.ListSnapshotsResponse.Entry(snapshot=_snapshot_response(r.name, r)) for r in page]
        return csi_pb2.ListSnapshotsResponse(entries=entries, next_token=next_token)


@dataclass(frozen=True, slots=True)
class ContentSource:
    """What a new volume is filled from: ``kind`` ``volume`` or ``snapshot``, its CSI ``id``, where it lives
    (``ref``), and the directory copied (``path``)."""

    kind: str
    id: str
    ref: VolumeRef
    path: str

    @property
    def key(self) -> str:
        """How the new volume's record names its source: ``volume:<id>`` or ``snapshot:<id>``."""
        return f"{self.kind}:{self.id}"



def check_snapshot_parameters(parameters: Mapping[str, str]) -> None:
    """Snapshots take no parameters of their own (Kubernetes' ``csi.storage.k8s.io/*`` keys are ignored).

    Raises:
        InvalidArgument: any other key (a typo would otherwise be ignored silently).
    """
    unknown = sorted(k for k in parameters if not k.startswith("csi.storage.k8s.io/"))
    if unknown:
        raise InvalidArgument(f"unsupported snapshot parameter(s) {', '.join(unknown)}")


def _snapshot_response(snapshot_id: str, record: snapshot.SnapshotRecord) -> csi_pb2.Snapshot:
    return record.to_proto(snapshot_id)


def _volume_source(request: csi_pb2.CreateVolumeRequest) -> ContentSource | None:
    """The volume or snapshot a ``CreateVolume`` copies, if any.

    Raises:
        InvalidArgument: an empty source ID or an unknown source type.
        NotFound: a source ID nothing can have (spec: source not found → ``NOT_FOUND``).
    """
    if not request.HasField("volume_content_source"):
        return None
    content = request.volume_content_source
    kind = content.WhichOneof("type")
    if kind == "volume":
        source_id = content.volume.volume_id
    elif kind == "snapshot":
        source_id = content.snapshot.snapshot_id
    else:
        raise InvalidArgument("volume_content_source must name a volume or a snapshot")
    if not source_id:
        raise InvalidArgument(f"volume_content_source.{kind} ID is required")
    ref = parse_volume_id(source_id)
    if ref is None:
        raise NotFound(f"source {kind} {source_id} does not exist")
    path = ref.path if kind == "volume" else snapshot_path(ref)
    return ContentSource(kind, source_id, ref, path)


async def _source_capacity(fs: CallFSClient, source: ContentSource) -> int:
    """Bytes a volume made from ``source`` needs at least: the source volume's capacity, or the snapshot's size.

    Raises:
        NotFound: the source does not exist (or the snapshot is not ready).
    """
    if source.kind == "snapshot":
        record = await read_snapshot_record(fs, source.ref.name)
        if record is None or not record.ready or not await fs.exists(source.path):
            raise NotFound(f"source snapshot {source.id} does not exist")
        return record.size_bytes
    quota = await _quota_or_none(fs, source.path)
    if quota is None and not await fs.exists(source.path):
        raise NotFound(f"source volume {source.id} does not exist")
    return (quota.bytes_limit or 0) if quota else 0


async def _read_record(fs: CallFSClient, ref: VolumeRef) -> dict[str, object] | None:
    """The volume's record; ``None`` when it has none or it is not a JSON object."""
    try:
        record = json.loads(await fs.read(ref.record_path))
    except (fs_errors.NotFound, ValueError):
        return None
    return record if isinstance(record, dict) else None


async def _write_record(fs: CallFSClient, ref: VolumeRef, record: dict[str, object]) -> None:
    await fs.upload(ref.record_path, json.dumps(record).encode())


async def _write_policy(fs: CallFSClient, ref: VolumeRef, policy: OnDelete) -> None:
    """Set ``on_delete`` in the volume's record (creating the record for a directory that had none)."""
    record = await _read_record(fs, ref) or {"name": ref.name}
    record["on_delete"] = policy.value
    await _write_record(fs, ref, record)


async def _quota_or_none(fs: CallFSClient, path: str) -> QuotaInfo | None:
    """The quota on ``path``; ``None`` when the directory or its quota does not exist."""
    try:
        return await fs.get_quota(path)
    except fs_errors.NotFound:
        return None


async def _on_delete_policy(fs: CallFSClient, ref: VolumeRef) -> OnDelete:
    """The policy in the volume's record; ``retain`` when there is no usable record.

    No record means the directory was not provisioned by this driver, or a previous ``DeleteVolume`` already
    applied the policy and removed the record (COs retry deletes): either way the data is left alone. Every
    volume ``CreateVolume`` makes has a record, written before its directory.
    """
    try:
        raw = await fs.read(ref.record_path)
    except fs_errors.NotFound:
        return OnDelete.RETAIN
    try:
        return OnDelete(json.loads(raw).get("on_delete", OnDelete.DELETE.value))
    except (ValueError, AttributeError):
        log.warning("volume %s: unreadable record %s; leaving the directory", ref.volume_id, ref.record_path)
        return OnDelete.RETAIN
