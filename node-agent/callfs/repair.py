"""Background upkeep of block copies (see :mod:`callfs.replication`): repair and scrub. Run by the node's
primary process (:func:`callfs.server._background_jobs`).

* **Repair** (:meth:`Upkeep.repair`): for every node that is down, the referenced blocks with a copy there are
  looked at; a block with fewer live copies than ``backend.replicas`` counts as under-replicated. Its repair
  leader (the live holder with the smallest id, :func:`callfs.placement.repair_leader`, so one node per block)
  copies it to other live nodes once the down node's last heartbeat is more than ``replica_repair_grace``
  seconds old (a node restarting briefly causes no copying). The down node's row stays: if it comes back, the
  block simply has one copy more, and the collector frees them all in the end. Up to
  :data:`REPAIR_CONCURRENCY` blocks are copied at once.
  A node that is *leaving* (being drained, :mod:`callfs.drain`) is handled like one gone past the grace period,
  although it is up: its copies do not count (:func:`callfs.placement.live_holders`), so every block it holds is
  copied at once until ``backend.replicas`` copies exist on nodes that stay.
  A node declared *lost* (forgotten, :meth:`callfs.drain.Drains.forget`) is leaving too; besides, its row is
  dropped by the block's leader once the block has ``backend.replicas`` live copies (its disk is gone, so the row
  names nothing), until no row names it.
* **Scrub** (:meth:`Upkeep.scrub`): every copy this node holds is read and re-hashed at most
  ``scrub_bytes_per_second`` bytes a second; a corrupt copy is replaced by one that reads back intact from
  another holder. A copy held for another node that no ``block_replicas`` row names (a push that failed after
  the bytes landed, a repair that raced the collector) is deleted once it is older than ``orphan_age``: it is
  first renamed aside, the rows are read again, and it is put back if a writer recorded it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from callfs.backends.base import Backend
from callfs.backends.dirsync import fsync_directory
from callfs.backends.localfs import LocalFSBackend
from callfs.blocks import codec
from callfs.blocks.layout import BLOCK_SIZE
from callfs.errors import ServiceUnavailable
from callfs.metrics import Metrics
from callfs.models import utcnow
from callfs.placement import live_holders, repair_leader
from callfs.replication import Replication

log = logging.getLogger(__name__)

REPAIR_CONCURRENCY = 4
"""Blocks one repair pass copies at once (memory: about two stored blocks each, so 32 MiB at most)."""

PAGE = 500
"""Block rows read per query while looking for blocks to repair."""


@dataclass
class RepairPass:
    """What one repair pass found: blocks this node leads with too few live copies (``under_replicated``),
    copies made (``repaired``), and blocks left under-replicated (``backlog``)."""

    under_replicated: int = 0
    repaired: int = 0
    backlog: int = 0


class Upkeep:
    """Repair and scrub of this node's block copies. ``grace`` and times in seconds, ``scrub_rate`` in bytes
    per second."""

    def __init__(self, replication: Replication, backends: Mapping[str, Backend], metrics: Metrics, *,
                 grace: float, scrub_rate: int, orphan_age: float) -> None:
        self.replication = replication
        self.backends = backends
        self.metrics = metrics
        self.grace = grace
        self.scrub_rate = scrub_rate
        self.orphan_age = orphan_age

    def _replicated(self) -> list[Backend]:
        return [b for b in self.backends.values() if b.node_local]

    async def repair(self) -> int:
        """One repair pass over every node-local backend; the number of copies made (see the module docstring).
        Sets the ``callfs_blocks_under_replicated`` and ``callfs_block_repair_backlog`` gauges."""
        views = await self.replication.membership.nodes()
        now = utcnow()
        down = [v for v in views if v.instance_id is not None and v.source == "metadata" and v.state == "down"]
        grace = timedelta(seconds=self.grace)
        gone: set[str | None] = {v.instance_id for v in down
                                 if v.last_heartbeat is not None and now - v.last_heartbeat > grace}
        leaving = [c.instance_id for c in await self.replication.candidates(fresh=True) if c.leaving]
        gone.update(leaving)
        nodes = [v.instance_id for v in down if v.instance_id]
        nodes += [node for node in leaving if node not in nodes]
        lost = set(await self.replication.store.lost_nodes())
        made = 0
        for backend in self._replicated():
            found = await self._repair_backend(backend, nodes, gone, lost)
            self.metrics.blocks_under_replicated.labels(backend.name).set(found.under_replicated)
            self.metrics.block_repair_backlog.labels(backend.name).set(found.backlog)
            made += found.repaired
        return made

    async def _repair_backend(self, backend: Backend, nodes: list[str], gone: set[str | None],
                              lost: set[str]) -> RepairPass:
        """Look at the blocks with a copy on ``nodes`` (down or leaving); copy those this node leads whose
        missing copies were on ``gone`` nodes (down past the grace period, or leaving), and drop the rows of
        ``lost`` nodes of those it leads that have ``want`` live copies."""
        replication = self.replication
        candidates = await replication.candidates(fresh=True)
        want = await replication.target()
        found = RepairPass()
        seen: set[tuple[str, str]] = set()
        limit = asyncio.Semaphore(REPAIR_CONCURRENCY)

        async def forget_lost(location: str, block_hash: str, holders: list[str]) -> None:
            for node in holders:
                if node in lost:
                    await replication.store.drop_block_replica(backend.name, location, block_hash, node)

        async def repair_one(location: str, block_hash: str, holders: list[str], live: int) -> None:
            async with limit:
                try:
                    added = await replication.repair(backend, location, block_hash, holders, want - live)
                except (codec.CorruptBlock, ServiceUnavailable) as exc:
                    log.error("cannot repair block %s: %s", block_hash, exc)
                    added = []
            found.repaired += len(added)
            if live + len(added) < want:
                found.backlog += 1
            else:
                await forget_lost(location, block_hash, holders)

        for node in nodes:
            after = ("", "")
            while True:
                page = await replication.store.replicas_on_node(backend.name, node, after, PAGE)
                due = []
                for location, block_hash in page:
                    if (location, block_hash) in seen:
                        continue
                    seen.add((location, block_hash))
                    holders = await replication.holders(backend, location, block_hash)
                    live = live_holders(holders, candidates)
                    if repair_leader(holders, candidates) != replication.instance_id:
                        continue
                    if len(live) >= want:
                        await forget_lost(location, block_hash, holders)
                        continue
                    found.under_replicated += 1
                    if not any(h in gone for h in holders if h not in live):
                        found.backlog += 1  # its node may come back within the grace period
                        continue
                    due.append(repair_one(location, block_hash, holders, len(live)))
                await asyncio.gather(*due)
                if len(page) < PAGE:
                    break
                after = page[-1]
        return found

    async def scrub(self) -> int:
        """One scrub pass over every copy this node holds; the number of corrupt copies replaced. Reads at
        most ``scrub_rate`` bytes a second (sleeping between blocks)."""
        replaced = 0
        for backend in self._replicated():
            for location in await self.replication.held_locations(backend):
                blocks = self.replication.copies(backend, location)
                if location != self.replication.instance_id:
                    await self._drop_orphans(backend, location)
                async for block_hash in blocks.list():
                    try:
                        stored = await blocks.read_stored(block_hash)
                    except FileNotFoundError:
                        continue  # collected meanwhile
                    except codec.CorruptBlock:
                        stored = b""
                    self.metrics.block_scrubbed_bytes.labels(backend.name).inc(len(stored))
                    try:
                        await asyncio.to_thread(codec.decode, stored, block_hash, max_size=BLOCK_SIZE)
                    except codec.CorruptBlock as exc:
                        self.metrics.block_scrub_errors.labels(backend.name).inc()
                        log.warning("scrub: this node's copy of block %s is corrupt: %s", block_hash, exc)
                        replaced += await self._replace(backend, location, block_hash)
                    await asyncio.sleep(max(len(stored), 1) / self.scrub_rate)
        return replaced

    async def _drop_orphans(self, backend: Backend, location: str) -> int:
        """Delete the copies held for ``location`` that no row names and that are older than ``orphan_age``;
        how many (see the module docstring for the rename-aside protocol)."""
        blocks = self.replication.copies(backend, location)
        held = blocks.backend
        if not isinstance(held, LocalFSBackend):
            return 0
        me = self.replication.instance_id
        dropped = 0
        async for block_hash in blocks.list(min_age=self.orphan_age):
            if me in await self.replication.store.block_replicas(backend.name, location, block_hash):
                continue
            path = held.blob_path(block_hash)
            aside = path.with_name(f"{block_hash}.orphan")
            try:
                await asyncio.to_thread(os.rename, path, aside)
            except FileNotFoundError:
                continue
            # A writer may have recorded this copy meanwhile: then it is put back, unless its own push has
            # written the block again already (the set-aside duplicate then goes).
            recorded = me in await self.replication.store.block_replicas(backend.name, location, block_hash)
            if recorded and not await asyncio.to_thread(path.exists):
                await asyncio.to_thread(os.rename, aside, path)
                await asyncio.to_thread(fsync_directory, path.parent)
                continue
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, aside)
            if not recorded:
                dropped += 1
                log.info("scrub: deleted an unrecorded copy of block %s held for node %s", block_hash, location)
        return dropped

    async def _replace(self, backend: Backend, location: str, block_hash: str) -> int:
        """Overwrite this node's corrupt copy with one that reads back intact elsewhere; 1 when done, 0 when no
        other copy does (logged; the copy stays and reads keep skipping it)."""
        try:
            good = await self.replication.fetch_stored(backend, location, block_hash, skip_self=True)
        except (codec.CorruptBlock, ServiceUnavailable) as exc:
            log.error("scrub: no good copy of block %s to repair this node's from: %s", block_hash, exc)
            return 0
        await (await self.replication.started_copies(backend, location)).write(good)
        self.metrics.block_scrub_repairs.labels(backend.name).inc()
        return 1
