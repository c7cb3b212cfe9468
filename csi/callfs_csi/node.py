"""CSI Node service: FUSE mounts of CallFS volumes and bind mounts into pods (spec, "Node Service RPC").

* ``NodeStageVolume`` starts ``callfs-mount`` (its own process and session, so it outlives this plugin) for the
  volume directory at the staging path.
* ``NodePublishVolume`` bind-mounts the staging path at the target path, read-only when the request or a
  reader-only access mode says so, with the capability's mount flags.
* Unpublish/unstage are idempotent and work on already-gone or stale (``ENOTCONN``) mounts.
* What is staged/published where is persisted (:mod:`callfs_csi.state`) before each mount and after each unmount;
  :meth:`NodeService.recover` rebuilds from it at start-up and repairs stale mounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from pathlib import Path

import grpc

from callfs import errors as fs_errors
from callfs.client import CallFSUnavailable, canonical
from callfs_csi import csi_pb2, csi_pb2_grpc
from callfs_csi.capabilities import check_capabilities, is_read_only_mode
from callfs_csi.cluster import client_for
from callfs_csi.config import DriverConfig
from callfs_csi.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound, rpc
from callfs_csi.inflight import KeyedLocks
from callfs_csi.mounter import Mounter, PathStatus, mount_flag_options, normalise, path_status
from callfs_csi.params import Credentials, credentials
from callfs_csi.state import NodeState, PublishedTarget, StagedVolume, StateStore
from callfs_csi.volume import parse_volume_id

__all__ = ["NODE_CAPABILITIES", "NodeService"]

log = logging.getLogger(__name__)

_RPC = csi_pb2.NodeServiceCapability.RPC
NODE_CAPABILITIES = (
    _RPC.STAGE_UNSTAGE_VOLUME,
    _RPC.GET_VOLUME_STATS,
    _RPC.EXPAND_VOLUME,
    _RPC.VOLUME_CONDITION,
    _RPC.SINGLE_NODE_MULTI_WRITER,
    _RPC.VOLUME_MOUNT_GROUP,
)
_SNSW = csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_SINGLE_WRITER
STAT_TIMEOUT = 2.0
"""Seconds a health ``stat`` of a mount may take before it counts as alive-but-slow."""


def mount_group(value: str) -> int | None:
    """The gid of a CSI ``volume_mount_group`` (Kubernetes passes the pod's ``fsGroup`` as a decimal string).

    Raises:
        InvalidArgument: not a non-negative decimal integer.
    """
    if not value:
        return None
    if not value.isdigit():
        raise InvalidArgument(f"volume_mount_group must be a numeric group ID, got {value!r}")
    return int(value)


def _required(value: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} is required")
    return value


class NodeService(csi_pb2_grpc.NodeServicer):
    """The node plugin of ``csi.callfs.io``. Call :meth:`load` before serving and run :meth:`watch` beside it."""

    def __init__(self, config: DriverConfig, store: StateStore, mounter: Mounter) -> None:
        self.config = config
        self.store = store
        self.mounter = mounter
        self.state = NodeState()
        self.locks = KeyedLocks()

    # ---- start-up -------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the saved state (before serving: every RPC consults it).

        Raises:
            ValueError: the state file is unreadable (refusing to start beats forgetting live mounts).
        """
        self.store.ensure_dirs()
        self.state = self.store.load()
        log.info("node state loaded: %d staged volume(s)", len(self.state.volumes))

    async def recover(self) -> None:
        """Make every recorded mount live again (the start-up pass of :meth:`watch`).

        For each staged volume: a staging path that is stale (daemon killed) or no longer mounted gets a fresh
        ``callfs-mount``; each recorded target whose bind mount is stale or gone is bound again (a bind of a
        dead FUSE connection stays dead even after the staging path is re-mounted, so those are renewed too).
        Failures are logged per volume and leave the record in place for the next pass or the CO's retry.
        CallFS mounts that the state does not know are reported and left alone.
        """
        await self.repair_stale_mounts()
        known = {v.staging_path for v in self.state.volumes.values()}
        known |= {t for v in self.state.volumes.values() for t in v.targets}
        for entry in self.mounter.entries():
            if entry.is_callfs and entry.mount_point not in known:
                log.warning("CallFS mount %s (%s) is not in the node state; leaving it alone",
                            entry.mount_point, entry.source)
        self.store.save(self.state)
        log.info("node state restored: %d staged volume(s)", len(self.state.volumes))

    async def repair_stale_mounts(self) -> int:
        """One pass over the staged volumes: re-mount a staging path that is stale or no longer mounted and
        re-bind its targets; a stale or missing target alone is bound again. Returns how many volumes had to be
        re-mounted. Each volume is repaired under its lock, so no RPC on it runs meanwhile."""
        repaired = 0
        for volume_id in list(self.state.volumes):
            async with self.locks.hold(volume_id):
                volume = self.state.volumes.get(volume_id)
                if volume is None:
                    continue
                try:
                    remounted = await self._ensure_staged(volume_id, volume)
                    for target_path, target in volume.targets.items():
                        await self._ensure_published(volume, target_path, target, force=remounted)
                except Exception:  # keep watching the other volumes
                    log.exception("could not repair volume %s", volume_id)
                    continue
                if remounted:
                    repaired += 1
                    log.warning("repaired the mounts of volume %s", volume_id)
        return repaired

    async def watch(self, interval: float) -> None:
        """:meth:`recover` at once, then repair stale mounts every ``interval`` seconds (0: never again) until
        cancelled: a FUSE daemon may die at any time, not only while the plugin is down.

        Runs beside the gRPC server, so a slow or unreachable cluster does not hold up the plugin's registration;
        an RPC on a volume still being repaired waits for it (both hold the volume's lock).
        """
        await self.recover()
        while interval > 0:
            await asyncio.sleep(interval)
            await self.repair_stale_mounts()

    async def _ensure_staged(self, volume_id: str, volume: StagedVolume) -> bool:
        """Re-mount ``volume`` at its staging path when it is stale or not mounted; True when it had to be.

        Only ``ENOTCONN`` (the daemon is gone) counts as stale: a mount whose ``stat`` fails otherwise (the cluster
        is briefly unreachable and the daemon answers ``EIO``) is alive and left alone, or an outage would tear
        down every mount on the node.
        """
        mounted = self.mounter.is_mount_point(volume.staging_path)
        if mounted and self._daemon_alive(volume_id, volume):
            return False  # no stat needed, so a pass never queues behind a slow cluster
        status = await _status(volume.staging_path)
        if mounted and status != PathStatus.STALE:
            return False
        if mounted:
            log.warning("staging path %s is stale; re-mounting", volume.staging_path)
            await self.mounter.unmount(volume.staging_path)
        await asyncio.to_thread(os.makedirs, volume.staging_path, exist_ok=True)
        await self.mounter.mount_fuse(volume.server, volume.volume_path, volume.staging_path, volume.key_file,
                                      read_only=volume.read_only, log_file=self._log_file(),
                                      pid_file=str(self.store.pid_file_for(volume_id)), gid=volume.gid,
                                      ca_file=volume.ca_file)
        return True

    async def _ensure_published(self, volume: StagedVolume, target_path: str, target: PublishedTarget,
                                *, force: bool) -> None:
        mounted = self.mounter.is_mount_point(target_path)
        if mounted and not force and await _status(target_path) != PathStatus.STALE:
            return
        if mounted:
            await self.mounter.unmount(target_path)
        await asyncio.to_thread(os.makedirs, target_path, exist_ok=True)
        await self.mounter.bind_mount(volume.staging_path, target_path,
                                      mount_flag_options(target.mount_flags, target.read_only))
        log.info("re-published %s at %s", volume.volume_path, target_path)

    def _daemon_alive(self, volume_id: str, volume: StagedVolume) -> bool:
        """True when the FUSE daemon recorded in the volume's pid file runs and serves its staging path (the
        command line is checked, so a recycled pid does not count)."""
        try:
            pid = int(self.store.pid_file_for(volume_id).read_text().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except (OSError, ValueError):
            return False
        return volume.staging_path.encode() in argv

    def _log_file(self) -> str:
        return str(Path(self.store.dir) / "callfs-mount.log")

    # ---- identity of the node -------------------------------------------------------------------------------

    @rpc
    async def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeGetInfoResponse:
        return csi_pb2.NodeGetInfoResponse(node_id=self.config.node_id,
                                           max_volumes_per_node=self.config.max_volumes_per_node)

    @rpc
    async def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        cap = csi_pb2.NodeServiceCapability
        return csi_pb2.NodeGetCapabilitiesResponse(capabilities=[cap(rpc=cap.RPC(type=t)) for t in NODE_CAPABILITIES])

    # ---- stage / unstage ------------------------------------------------------------------------------------

    def _volume_location(self, request: csi_pb2.NodeStageVolumeRequest) -> tuple[str, str]:
        """``(server or "", volume path)`` from the volume context, else from the volume ID."""
        ref = parse_volume_id(request.volume_id)
        context = request.volume_context
        raw_path = context.get("path") or (ref.path if ref else "")
        if not raw_path:
            raise NotFound(f"volume {request.volume_id} does not exist (unknown ID and no path in its context)")
        try:
            volume_path = canonical(raw_path)
        except fs_errors.BadRequest as exc:
            raise InvalidArgument(f"volume_context path {raw_path!r}: {exc}") from exc
        server = context.get("server") or (ref.server if ref and ref.server else "")
        return server, volume_path

    @rpc
    async def NodeStageVolume(
        self, request: csi_pb2.NodeStageVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeStageVolumeResponse:
        volume_id = _required(request.volume_id, "volume_id")
        staging = normalise(_required(request.staging_target_path, "staging_target_path"))
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        check_capabilities([request.volume_capability])
        server, volume_path = self._volume_location(request)
        creds = credentials(request.secrets, server or None, self.config.default)
        read_only = is_read_only_mode(request.volume_capability)
        gid = mount_group(request.volume_capability.mount.volume_mount_group)
        async with self.locks.hold(volume_id):
            existing = self.state.volumes.get(volume_id)
            if existing is not None:
                if existing.staging_path != staging or existing.read_only != read_only or existing.gid != gid:
                    raise AlreadyExists(
                        f"volume {volume_id} is already staged at {existing.staging_path} "
                        f"({'read-only' if existing.read_only else 'read-write'})"
                    )
                await self._ensure_staged(volume_id, existing)
                return csi_pb2.NodeStageVolumeResponse()
            await self._check_exists(creds, volume_id, volume_path)
            key_file = self.store.write_key(volume_id, creds.api_key)
            ca_file = self.store.write_ca(volume_id, creds.ca_bundle) if creds.ca_bundle else None
            volume = StagedVolume(server=creds.server, volume_path=volume_path, staging_path=staging,
                                  key_file=str(key_file), read_only=read_only, gid=gid,
                                  ca_file=str(ca_file) if ca_file else None)
            self.state.volumes[volume_id] = volume
            self.store.save(self.state)  # before mounting: a crash after the mount still knows about it
            try:
                await self._ensure_staged(volume_id, volume)
            except BaseException:
                del self.state.volumes[volume_id]
                self.store.save(self.state)
                self.store.remove_key(volume_id)
                raise
        log.info("staged %s (%s on %s) at %s", volume_id, volume_path, creds.server, staging)
        return csi_pb2.NodeStageVolumeResponse()

    async def _check_exists(self, creds: Credentials, volume_id: str, volume_path: str) -> None:
        async with client_for(creds, self.config.request_timeout) as fs:
            try:
                info = await fs.stat(volume_path)
            except fs_errors.NotFound:
                raise NotFound(f"volume {volume_id}: {volume_path} does not exist on {creds.server}") from None
        if not info.is_dir:
            raise NotFound(f"volume {volume_id}: {volume_path} is not a directory")

    @rpc
    async def NodeUnstageVolume(
        self, request: csi_pb2.NodeUnstageVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeUnstageVolumeResponse:
        volume_id = _required(request.volume_id, "volume_id")
        staging = normalise(_required(request.staging_target_path, "staging_target_path"))
        async with self.locks.hold(volume_id):
            volume = self.state.volumes.get(volume_id)
            if volume is not None and volume.staging_path != staging:
                raise NotFound(f"volume {volume_id} is staged at {volume.staging_path}, not at {staging}")
            if volume is not None or self._callfs_mounted(staging):
                await self.mounter.unmount(staging)
            if volume is not None:
                del self.state.volumes[volume_id]
                self.store.save(self.state)
                self.store.remove_key(volume_id)
                log.info("unstaged %s from %s", volume_id, staging)
        return csi_pb2.NodeUnstageVolumeResponse()

    def _callfs_mounted(self, path: str) -> bool:
        return any(e.mount_point == path and e.is_callfs for e in self.mounter.entries())

    # ---- publish / unpublish --------------------------------------------------------------------------------

    @rpc
    async def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        volume_id = _required(request.volume_id, "volume_id")
        target_path = normalise(_required(request.target_path, "target_path"))
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        staging = normalise(_required(request.staging_target_path, "staging_target_path"))
        check_capabilities([request.volume_capability])
        read_only = request.readonly or is_read_only_mode(request.volume_capability)
        flags = list(request.volume_capability.mount.mount_flags)
        options = mount_flag_options(flags, read_only)
        mode = request.volume_capability.access_mode.mode
        async with self.locks.hold(volume_id):
            volume = self.state.volumes.get(volume_id)
            if volume is None:
                if parse_volume_id(volume_id) is None:
                    raise NotFound(f"volume {volume_id} does not exist")
                raise FailedPrecondition(f"volume {volume_id} is not staged at {staging}")
            if volume.staging_path != staging:
                raise FailedPrecondition(f"volume {volume_id} is staged at {volume.staging_path}, not at {staging}")
            others = [p for p in volume.targets if p != target_path]
            if others and (mode == _SNSW or any(volume.targets[p].access_mode == _SNSW for p in others)):
                raise FailedPrecondition(
                    f"volume {volume_id} is single-node single-writer and already published at {others[0]}"
                )
            existing = volume.targets.get(target_path)
            if existing is not None:
                if existing.read_only != read_only or existing.mount_flags != flags:
                    raise AlreadyExists(f"volume {volume_id} is already published at {target_path} "
                                        "with other options")
                await self._ensure_published(volume, target_path, existing, force=False)
                return csi_pb2.NodePublishVolumeResponse()
            await self._ensure_staged(volume_id, volume)
            target = PublishedTarget(read_only=read_only, mount_flags=flags, access_mode=mode)
            volume.targets[target_path] = target
            self.store.save(self.state)
            try:
                await self._publish_fresh(volume, target_path, options)
            except BaseException:
                del volume.targets[target_path]
                self.store.save(self.state)
                raise
        log.info("published %s at %s%s", volume_id, target_path, " (read-only)" if read_only else "")
        return csi_pb2.NodePublishVolumeResponse()

    async def _publish_fresh(self, volume: StagedVolume, target_path: str, options: list[str]) -> None:
        status = await _status(target_path)
        if status == PathStatus.STALE or (status == PathStatus.DIRECTORY and self._callfs_mounted(target_path)):
            await self.mounter.unmount(target_path)
        elif status == PathStatus.OTHER:
            raise FailedPrecondition(f"target_path {target_path} exists and is not a directory")
        try:
            os.mkdir(target_path, 0o750)
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise FailedPrecondition(f"the parent of target_path {target_path} does not exist") from None
        await self.mounter.bind_mount(volume.staging_path, target_path, options)

    @rpc
    async def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        volume_id = _required(request.volume_id, "volume_id")
        target_path = normalise(_required(request.target_path, "target_path"))
        async with self.locks.hold(volume_id):
            volume = self.state.volumes.get(volume_id)
            recorded = volume is not None and target_path in volume.targets
            if recorded or self._callfs_mounted(target_path):
                await self.mounter.unmount(target_path)
            try:
                os.rmdir(target_path)  # the spec: the SP removes the target path it created
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno == errno.ENOTEMPTY:
                    raise Internal(f"{target_path} is not empty after unmounting; left in place") from exc
                if exc.errno != errno.ENOTDIR:
                    raise
            if volume is not None and recorded:
                del volume.targets[target_path]
                self.store.save(self.state)
                log.info("unpublished %s from %s", volume_id, target_path)
        return csi_pb2.NodeUnpublishVolumeResponse()

    # ---- stats, expansion -----------------------------------------------------------------------------------

    def _volume_at(self, volume_id: str, volume_path: str) -> StagedVolume:
        volume = self.state.volumes.get(volume_id)
        if volume is None:
            raise NotFound(f"volume {volume_id} is not staged on this node")
        path = normalise(volume_path)
        if path != volume.staging_path and path not in volume.targets:
            raise NotFound(f"volume {volume_id} is not mounted at {volume_path}")
        return volume

    def _creds_of(self, volume: StagedVolume) -> Credentials:
        try:
            key = Path(volume.key_file).read_text()
            ca_bundle = Path(volume.ca_file).read_text() if volume.ca_file else None
        except FileNotFoundError:
            raise Internal(f"the key or CA file of {volume.volume_path} is missing: re-stage the volume") from None
        return Credentials(volume.server, key, ca_bundle)

    @rpc
    async def NodeGetVolumeStats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        """Bytes and inodes from the volume's quota; ``VolumeCondition`` abnormal when the mount is stale or the
        cluster cannot be reached."""
        volume_id = _required(request.volume_id, "volume_id")
        volume_path = _required(request.volume_path, "volume_path")
        volume = self._volume_at(volume_id, volume_path)
        status = await _status(normalise(volume_path))
        if status == PathStatus.MISSING:
            raise NotFound(f"{volume_path} does not exist")
        problems = []
        if status == PathStatus.STALE:
            problems.append(f"mount at {volume_path} is stale (its FUSE daemon is gone)")
        usage: list[csi_pb2.VolumeUsage] = []
        try:
            async with client_for(self._creds_of(volume), self.config.request_timeout) as fs:
                quota = await fs.get_quota(volume.volume_path)
        except CallFSUnavailable as exc:
            problems.append(f"CallFS cluster {volume.server} unreachable: {exc}")
        except fs_errors.NotFound:
            problems.append(f"{volume.volume_path} has no quota on {volume.server}")
        except fs_errors.CallFSError as exc:
            problems.append(f"CallFS {exc.code}: {exc}")
        else:
            usage.append(_usage(csi_pb2.VolumeUsage.BYTES, quota.bytes_limit, quota.bytes_used))
            usage.append(_usage(csi_pb2.VolumeUsage.INODES, quota.inodes_limit, quota.inodes_used))
        condition = csi_pb2.VolumeCondition(abnormal=bool(problems), message="; ".join(problems) or "healthy")
        return csi_pb2.NodeGetVolumeStatsResponse(usage=usage, volume_condition=condition)

    @rpc
    async def NodeExpandVolume(
        self, request: csi_pb2.NodeExpandVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeExpandVolumeResponse:
        """Nothing to do on the node (the quota is the size, raised by the controller); reports the capacity."""
        volume_id = _required(request.volume_id, "volume_id")
        volume_path = _required(request.volume_path, "volume_path")
        if request.HasField("volume_capability"):
            check_capabilities([request.volume_capability])
        volume = self._volume_at(volume_id, volume_path)
        async with client_for(self._creds_of(volume), self.config.request_timeout) as fs:
            try:
                quota = await fs.get_quota(volume.volume_path)
            except fs_errors.NotFound:
                raise NotFound(f"{volume.volume_path} has no quota") from None
        return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=quota.bytes_limit or 0)


def _usage(unit: csi_pb2.VolumeUsage.Unit, limit: int | None, used: int) -> csi_pb2.VolumeUsage:
    """A usage entry; without a limit ``total`` and ``available`` are unknown (0)."""
    if limit is None:
        return csi_pb2.VolumeUsage(unit=unit, used=used)
    return csi_pb2.VolumeUsage(unit=unit, total=limit, used=used, available=max(0, limit - used))


async def _status(path: str) -> str:
    """:func:`path_status` off the event loop, given :data:`STAT_TIMEOUT` seconds.

    A dead daemon's mount answers ``ENOTCONN`` at once; a live daemon whose cluster is unreachable may take its
    whole retry deadline to answer, so a slow or failing ``stat`` means "alive" (``OTHER``), never "stale".
    """
    with contextlib.suppress(OSError, TimeoutError):
        return await asyncio.wait_for(asyncio.to_thread(path_status, path), STAT_TIMEOUT)
    return PathStatus.OTHER
