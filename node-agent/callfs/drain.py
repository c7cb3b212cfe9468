"""Draining a storage node before it is removed (scale-down): the node is marked *leaving* in the metadata store,
then the cluster moves everything that relies on it elsewhere, and reports when nothing does any more.

While a node is leaving:

* placement never chooses it for a new copy (:func:`callfs.placement.choose_nodes`), and its copies no longer
  count towards the ``backend.replicas`` a block needs (:func:`callfs.placement.live_holders`);
* repair (:meth:`callfs.repair.Upkeep.repair`, the same pass that re-replicates the blocks of a dead node) copies
  every referenced block with a copy on the leaving node, at once (no grace period), until ``replicas`` copies
  exist on live nodes that stay;
* the leaving node itself (:meth:`Drains.run`) moves each file whose bytes are one blob on its local disk to a
  node that stays, with the relocation peers already use (``PATCH`` with ``instance``): the node chosen pulls the
  bytes, switches the file's metadata in one transaction, then frees the old blob. The file keeps its layout and
  its durability (one copy, as its writer chose): converting it to replicated blocks is a step of its own
  (:mod:`callfs.convert`), and moving it is the operation an administrator did by hand before. It also records a
  replica row for its blocks stored before replication, so that repair sees them.

A node that went down for good without a drain (its disk lost with it) is **forgotten** (:meth:`Drains.forget`,
root only, refused while its heartbeat is recent): it is recorded *lost*, which makes it leaving for ever (a
cancelled drain leaves it lost), so the cluster treats it as a drained node gone down: repair copies its blocks at
once, the first live node that stays collects its location and drops its rows instead of asking it, and repair
drops its row of each block back at ``replicas`` live copies (:mod:`callfs.repair`). Files whose bytes were one
blob on its disk are lost: their metadata stays (reads fail, a delete frees them) and :class:`LostReport` lists
them. A lost node never registers again under its instance id (:meth:`callfs.membership.Membership.heartbeat`).

The node is **drained** (:class:`DrainProgress`) when no referenced block relies on it (a copy there and fewer
than ``replicas`` copies on live nodes that stay) and no file's bytes are a blob on it. During the drain every
block keeps at least the copies it had: copies are added, never removed, and the leaving node keeps serving its
own until it is shut down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from callfs.engine import Engine
from callfs.errors import BadGateway, CallFSError, NodeLive, NotFound, PermissionDenied
from callfs.membership import Membership
from callfs.models import utcnow
from callfs.peers import PeerClient
from callfs.permissions import Caller
from callfs.placement import new_home
from callfs.replication import Replication

log = logging.getLogger(__name__)

DRAINING: Final = "draining"
DRAINED: Final = "drained"

FILE_PAGE = 100
"""Files read per query while moving a leaving node's blobs."""

ACTING_USER = "root"
"""Who the relocation of a drained file acts as (it needs write permission on every file)."""


@dataclass(frozen=True, slots=True)
class DrainProgress:
    """What a drain of node ``instance_id`` has left: ``blocks_left`` referenced blocks that still rely on it
    for their copies, ``files_left`` files whose bytes are one blob on its disk."""

    instance_id: str
    blocks_left: int
    files_left: int

    @property
    def state(self) -> str:
        """``drained`` when nothing is left, else ``draining``."""
        return DRAINED if self.blocks_left == 0 and self.files_left == 0 else DRAINING

    def to_json(self) -> dict[str, object]:
        """``{"instance_id", "state", "blocks_left", "files_left"}`` (the REST body)."""
        return {"instance_id": self.instance_id, "state": self.state, "blocks_left": self.blocks_left,
                "files_left": self.files_left}


LOST: Final = "lost"

LOST_FILES_SHOWN = 1000
"""Paths of lost files a :class:`LostReport` lists at most (``files_lost`` counts them all)."""


@dataclass(frozen=True, slots=True)
class LostReport:
    """What a node declared lost (``instance_id``, since ``since``) still leaves behind: ``block_copies`` rows of
    ``block_replicas`` naming it (each dropped once its block has ``replicas`` live copies again, or collected),
    ``blocks_left`` referenced blocks short of copies that had one there, and ``files_lost`` files whose bytes
    were one blob on its disk (the first :data:`LOST_FILES_SHOWN` paths in ``lost_files``)."""

    instance_id: str
    since: datetime
    block_copies: int
    blocks_left: int
    files_lost: int
    lost_files: list[str]

    def to_json(self) -> dict[str, object]:
        """``{"instance_id", "state": "lost", "since" (RFC 3339), "block_copies", "blocks_left", "files_lost",
        "lost_files"}`` (the REST body)."""
        return {"instance_id": self.instance_id, "state": LOST,
                "since": self.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "block_copies": self.block_copies,
                "blocks_left": self.blocks_left, "files_lost": self.files_lost, "lost_files": self.lost_files}


class Drains:
    """Start, follow and cancel drains (root only), and this node's part of them (:meth:`run`)."""

    def __init__(self, engine: Engine, membership: Membership, peers: PeerClient, replication: Replication) -> None:
        self.engine = engine
        self.replication = replication
        self.store = engine.store
        self.membership = membership
        self.peers = peers
        self.instance_id = engine.instance_id

    async def _known(self, caller: Caller, instance_id: str) -> None:
        # SECURITY: draining moves every file of a node and changes where copies go: an administrator's act.
        if not caller.is_superuser:
            raise PermissionDenied("only root may drain a node")
        if instance_id not in {n.instance_id for n in await self.store.list_nodes()}:
            raise NotFound(f"no node {instance_id!r} is registered")

    async def start(self, caller: Caller, instance_id: str) -> DrainProgress:
        """Mark node ``instance_id`` leaving (again: no-op) and return its progress. Raises
        ``PermissionDenied`` (not root), ``NotFound`` (no such registered node)."""
        await self._known(caller, instance_id)
        if await self.store.mark_leaving(instance_id, utcnow()):
            log.info("node %s is leaving: draining it", instance_id)
        return await self._progress(instance_id)

    async def progress(self, caller: Caller, instance_id: str) -> DrainProgress:
        """The progress of the drain of ``instance_id``. Raises ``PermissionDenied``, ``NotFound`` (no such
        node, or it is not being drained)."""
        await self._known(caller, instance_id)
        if instance_id not in await self.store.leaving_nodes():
            raise NotFound(f"node {instance_id} is not being drained")
        return await self._progress(instance_id)

    async def cancel(self, caller: Caller, instance_id: str) -> bool:
        """Stop draining ``instance_id`` (it takes copies again; what was copied stays); ``True`` when it was
        being drained. Raises ``PermissionDenied``, ``NotFound`` (no such node)."""
        await self._known(caller, instance_id)
        cancelled = await self.store.unmark_leaving(instance_id)
        if cancelled:
            log.info("node %s is no longer leaving", instance_id)
        return cancelled

    async def forget(self, caller: Caller, instance_id: str) -> LostReport:
        """Declare node ``instance_id`` lost for good (again: no-op) and return what it leaves behind. Raises
        ``PermissionDenied`` (not root), ``NotFound`` (no such registered node), ``NodeLive`` (this node, or
        one whose last heartbeat is within the node timeout: a running node is drained, not forgotten)."""
        if not caller.is_superuser:
            raise PermissionDenied("only root may forget a node")
        nodes = {n.instance_id: n for n in await self.store.list_nodes()}
        if instance_id not in nodes:
            raise NotFound(f"no node {instance_id!r} is registered")
        if instance_id not in await self.store.lost_nodes():
            live_since = utcnow() - timedelta(seconds=self.membership.node_timeout)
            if instance_id == self.instance_id or nodes[instance_id].last_heartbeat >= live_since:
                raise NodeLive(f"node {instance_id} is live (heartbeat within {self.membership.node_timeout:g} s): "
                               "stop it first, or drain it")
            if await self.store.mark_lost(instance_id, utcnow()):
                log.warning("node %s was declared lost for good: its copies no longer count", instance_id)
        return await self._lost_report(instance_id)

    async def lost(self, caller: Caller, instance_id: str) -> LostReport:
        """What lost node ``instance_id`` leaves behind. Raises ``PermissionDenied``, ``NotFound`` (no such node,
        or it was not declared lost)."""
        await self._known(caller, instance_id)
        if instance_id not in await self.store.lost_nodes():
            raise NotFound(f"node {instance_id} was not declared lost")
        return await self._lost_report(instance_id)

    async def _lost_report(self, instance_id: str) -> LostReport:
        since = (await self.store.lost_nodes())[instance_id]
        copies = 0
        for backend in self.engine.backends.values():
            if self.engine.block_files.replicated(backend) is not None:
                copies += await self.store.count_node_replicas(backend.name, instance_id)
        progress = await self._progress(instance_id)
        files = await self.store.node_blob_files(instance_id, None, LOST_FILES_SHOWN)
        return LostReport(instance_id, since, copies, progress.blocks_left, progress.files_left,
                          [path for path, _, _ in files])

    async def _progress(self, instance_id: str) -> DrainProgress:
        blocks = 0
        want = await self.replication.target()
        live_since = utcnow() - timedelta(seconds=self.membership.node_timeout)
        for backend in self.engine.backends.values():
            if self.engine.block_files.replicated(backend) is not None:
                blocks += await self.store.blocks_relying_on(backend.name, instance_id, live_since, want)
        return DrainProgress(instance_id, blocks, await self.store.count_node_blob_files(instance_id))

    async def run(self) -> int:
        """This node's part of its own drain, when it is leaving: record its unrecorded blocks, then move every
        file whose bytes are a blob here to a node that stays; the number of files moved. A file that cannot be
        moved now (no node to take it, a node that fails, a concurrent write) is tried again next pass."""
        if self.instance_id not in await self.store.leaving_nodes():
            return 0
        await self._record_blocks()
        moved = 0
        after = None
        while True:
            page = await self.store.node_blob_files(self.instance_id, after, FILE_PAGE)
            for path, backend, _ in page:
                moved += await self._move(path, backend)
            if len(page) < FILE_PAGE:
                return moved
            after = page[-1][2]

    async def _record_blocks(self) -> None:
        """Give this node's blocks stored before replication (no replica row) a row naming this node, so that
        repair copies them like any other."""
        for backend in self.engine.backends.values():
            if self.engine.block_files.replicated(backend) is None:
                continue
            while hashes := await self.store.unrecorded_blocks(backend.name, self.instance_id, FILE_PAGE):
                for block_hash in hashes:
                    await self.store.add_block_replica(backend.name, self.instance_id, block_hash, self.instance_id)

    async def _move(self, path: str, backend: str) -> int:
        """Move one file's blob to the best node that takes it; 1 when moved, 0 otherwise (logged)."""
        for node in new_home(path, await self.replication.candidates(fresh=True), self.instance_id):
            try:
                await self.peers.relocate(node, path, backend, ACTING_USER)
                log.info("drain: moved the bytes of %s to node %s", path, node)
                return 1
            except NotFound:
                return 0  # deleted meanwhile
            except BadGateway as exc:
                log.warning("drain: node %s could not take %s: %s", node, path, exc)
            except CallFSError as exc:
                log.warning("drain: could not move %s to node %s: %s; will retry", path, node, exc)
                return 0
        return 0
