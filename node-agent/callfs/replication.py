"""Copies of the blocks of the local-disk backend on several nodes: writing them, reading any of them, freeing
them, and the peer side of the transfers. Where copies go is decided by :mod:`callfs.placement` (pure).

A block is named by its backend, its *location* (the instance id of the node owning the file, as in the
``blocks`` table) and its SHA-256. Each node keeps the copies it holds:

* of its own location in the backend's block store (``objects/``, as before replication);
* of another node's location ``L`` in ``<localfs root>/replicas/L/objects/``, so a copy held for a peer is never
  confused with (or freed as) one of the node's own blocks with the same hash.

``block_replicas`` rows in the metadata store list the nodes holding a copy. A row is written **before** the
copy's bytes (like a block's reservation), so every copy that may exist is known to the collector, which frees
them all when the block is unreferenced; a block without rows (written before replication) lives on its
location's node only.

Durability rule of a write (:meth:`Replication.place`): the block is written (temp file, ``fsync``, rename,
directory ``fsync``) on this node and on ``target - 1`` live peers at once; the call returns only when
``target`` distinct nodes have made it durable, trying further peers when one fails, and raises
``ServiceUnavailable`` (503) when fewer than ``target`` nodes can take it. The caller commits the file's
metadata only after that, so an acknowledged write survives the loss of any ``target - 1`` nodes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from callfs.backends.base import Backend
from callfs.backends.localfs import LocalFSBackend
from callfs.blocks import codec
from callfs.blocks.layout import BLOCK_SIZE
from callfs.blocks.store import STORED_OVERHEAD, BlockStore
from callfs.errors import BadGateway, BadRequest, NotFound, ServiceUnavailable
from callfs.membership import Membership
from callfs.metadata.base import MetadataStore
from callfs.metrics import Metrics
from callfs.models import utcnow
from callfs.peers import PeerClient
from callfs.placement import Candidate, choose_nodes, live_holders, replica_target

log = logging.getLogger(__name__)

MAX_STORED = BLOCK_SIZE + STORED_OVERHEAD
"""Largest stored form of a block, in bytes (a peer refuses a larger body with 413)."""

VIEW_SECONDS = 1.0
"""How long the membership view used for placement and reads is reused (seconds)."""

REPLICAS_DIR = "replicas"
"""Directory under the local-disk backend's root holding the copies kept for other nodes."""

REDUNDANCY_SECONDS = 5.0
"""How long a count of under-replicated blocks (:meth:`Replication.redundancy`, one scan of the block rows) is
reused (seconds)."""

_LOCATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_location(location: str) -> str:
    """``location`` when it can name a directory of copies (an instance id: letters, digits, ``._-``, at most
    128 characters, not starting with a dot or dash). Raises ``BadRequest``."""
    if not _LOCATION.fullmatch(location):
        raise BadRequest(f"invalid block location {location!r}")
    return location


def check_hash(block_hash: str) -> str:
    """``block_hash`` when it is a block name (64 lowercase hex digits). Raises ``BadRequest``."""
    if not codec.is_block_hash(block_hash):
        raise BadRequest(f"invalid block hash {block_hash!r}")
    return block_hash


@dataclass(frozen=True, slots=True)
class Redundancy:
    """How redundant a backend's blocks are: ``replicas`` copies wanted, ``under_replicated`` referenced blocks
    with fewer copies on live nodes (the whole cluster's, from the metadata store)."""

    backend: str
    replicas: int
    under_replicated: int


class ReplicaSource:
    """The blocks of one backend and location read from any copy (see :meth:`Replication.fetch`); a
    :class:`~callfs.blocks.reader.BlockSource`."""

    def __init__(self, replication: Replication, backend: Backend, location: str) -> None:
        self._replication = replication
        self._backend = backend
        self._location = location

    async def get(self, block_hash: str) -> bytes:
        """The verified plaintext of a block from the first copy that reads back intact. Raises
        :class:`~callfs.blocks.codec.CorruptBlock` when no copy does."""
        return await self._replication.fetch(self._backend, self._location, block_hash)


class Replication:
    """Block copies of this node (``instance_id``). ``configured``: ``backend.replicas`` (``None``: 2 in a
    cluster, 1 alone, see :func:`callfs.placement.replica_target`)."""

    def __init__(self, *, store: MetadataStore, metrics: Metrics, membership: Membership, peers: PeerClient,
                 instance_id: str, configured: int | None, compress: bool = True) -> None:
        self.store = store
        self.metrics = metrics
        self.membership = membership
        self.peers = peers
        self.instance_id = instance_id
        self.configured = configured
        self.compress = compress
        self._view: tuple[float, list[Candidate]] = (0.0, [])
        self._copies: dict[tuple[str, str], BlockStore] = {}
        self._started: set[str] = set()
        self._redundancy: dict[str, tuple[float, Redundancy]] = {}

    # ------------------------------------------------------------------ membership

    async def candidates(self, *, fresh: bool = False) -> list[Candidate]:
        """Every registered node with its state (this node always up) and whether it is leaving (being drained,
        :mod:`callfs.drain`), reused for :data:`VIEW_SECONDS`."""
        at, view = self._view
        if fresh or not view or time.monotonic() - at > VIEW_SECONDS:
            view = await self._read_view(set(await self.store.leaving_nodes()))
            self._view = (time.monotonic(), view)
        return view

    async def _read_view(self, leaving: set[str]) -> list[Candidate]:
        """Every registered node with its state, read now (not kept), ``leaving`` the nodes being drained."""
        nodes = await self.membership.nodes()
        view = [Candidate(v.instance_id, up=v.state == "up" or v.is_self, leaving=v.instance_id in leaving)
                for v in nodes if v.instance_id is not None and v.source == "metadata"]
        if not any(c.instance_id == self.instance_id for c in view):
            view.append(Candidate(self.instance_id, leaving=self.instance_id in leaving))
        return view

    async def target(self) -> int:
        """Copies each block needs now (see :func:`callfs.placement.replica_target`)."""
        return replica_target(self.configured, len(await self.candidates()))

    async def redundancy(self, backend: Backend) -> Redundancy:
        """The cluster-wide redundancy of ``backend``'s blocks: copies wanted and blocks with fewer on live nodes
        (heartbeat within the node timeout); reused for :data:`REDUNDANCY_SECONDS`."""
        at, found = self._redundancy.get(backend.name, (0.0, None))
        if found is None or time.monotonic() - at > REDUNDANCY_SECONDS:
            want = await self.target()
            since = utcnow() - timedelta(seconds=self.membership.node_timeout)
            found = Redundancy(backend.name, want, await self.store.count_under_replicated(backend.name, since, want))
            self._redundancy[backend.name] = (time.monotonic(), found)
        return found

    # ------------------------------------------------------------------ local copies

    def copies(self, backend: Backend, location: str) -> BlockStore:
        """This node's store of the copies of ``backend``'s blocks of ``location`` (see the module docstring).
        Raises ``BadRequest`` for a location that cannot name a directory."""
        key = (backend.name, location)
        found = self._copies.get(key)
        if found is None or (location == self.instance_id and found.backend is not backend):
            if location == self.instance_id:
                held: Backend = backend
            else:
                held = LocalFSBackend(self.replica_root(backend) / check_location(location))
            found = self._copies[key] = BlockStore(held, self.metrics, compress=self.compress)
        return found

    @staticmethod
    def replica_root(backend: Backend) -> Path:
        """The directory of the copies ``backend`` keeps for other nodes."""
        assert isinstance(backend, LocalFSBackend), "only the local-disk backend keeps copies"
        return backend.root / REPLICAS_DIR

    async def started_copies(self, backend: Backend, location: str) -> BlockStore:
        """:meth:`copies`, its directories created (once per location), ready for writing."""
        blocks = self.copies(backend, location)
        key = f"{backend.name}/{location}"
        if location != self.instance_id and key not in self._started:
            await blocks.backend.start()
            self._started.add(key)
        return blocks

    async def held_locations(self, backend: Backend) -> list[str]:
        """Every location this node keeps copies of on ``backend``: its own first, then those of other nodes."""
        root = self.replica_root(backend)

        def others() -> list[str]:
            if not root.is_dir():
                return []
            return sorted(e.name for e in root.iterdir()
                          if e.is_dir() and _LOCATION.fullmatch(e.name) and e.name != self.instance_id)

        return [self.instance_id, *await asyncio.to_thread(others)]

    # ------------------------------------------------------------------ writing

    async def place(self, backend: Backend, location: str, encoded: codec.Encoded) -> list[str]:
        """Store ``encoded`` durably on this node and on enough live peers that :meth:`target` nodes hold it;
        the nodes that do. Raises ``ServiceUnavailable`` (fewer live nodes than needed, or too many refused;
        the copies made are left to the collector, recorded), and what the local write raises."""
        want = await self.target()
        candidates = await self.candidates()
        order = choose_nodes(encoded.hash, candidates, [self.instance_id], want - 1)
        if len(order) < want - 1:
            raise ServiceUnavailable(f"a write needs {want} live nodes for its {want} copies, "
                                     f"{len(order) + 1} are up; nothing was written")
        name = backend.name
        await self.store.add_block_replica(name, location, encoded.hash, self.instance_id)
        local = (await self.started_copies(backend, location)).write(encoded)
        placed = await asyncio.gather(local, self._spread(backend, location, encoded, order, want - 1),
                                      return_exceptions=True)
        if isinstance(placed[0], BaseException):
            raise placed[0]
        if isinstance(placed[1], BaseException):
            raise placed[1]
        peers = placed[1]
        if len(peers) < want - 1:
            raise ServiceUnavailable(f"block {encoded.hash} reached {len(peers) + 1} of the {want} nodes it "
                                     "needs; nothing was written")
        return [self.instance_id, *peers]

    async def top_up(self, backend: Backend, location: str, encoded: codec.Encoded) -> list[str]:
        """For a block this node stored already (it has references): make sure :meth:`target` live nodes hold it
        before a new write may name it (it may date from a smaller ``replicas``, or a holder may be down and not
        repaired yet), copying ``encoded`` to more live peers when needed; the nodes added. Raises
        ``ServiceUnavailable`` as :meth:`place` does."""
        name = backend.name
        holders = await self.store.block_replicas(name, location, encoded.hash)
        if not holders:  # stored before replication: its one copy is the location's node's
            await self.store.add_block_replica(name, location, encoded.hash, location)
            holders = [location]
        want = await self.target()
        candidates = await self.candidates()
        need = want - len(live_holders(holders, candidates))
        if need <= 0:
            return []
        order = choose_nodes(encoded.hash, candidates, holders, need)
        added = await self._spread(backend, location, encoded, order, min(need, len(order)))
        if len(added) < need:
            raise ServiceUnavailable(f"block {encoded.hash} has {want - need + len(added)} of the {want} live "
                                     "copies it needs; nothing was written")
        return added

    async def _spread(
        self, backend: Backend, location: str, encoded: codec.Encoded, order: list[str], need: int
    ) -> list[str]:
        """Copy ``encoded`` to ``need`` of the nodes in ``order`` (best first), ``need`` at a time, moving on
        to the next when one fails (its row is dropped); the nodes that acknowledged."""
        pending = iter(order)

        async def one() -> str | None:
            for node in pending:  # shared: each worker takes the next node not tried yet
                await self.store.add_block_replica(backend.name, location, encoded.hash, node)
                try:
                    await self.peers.put_block(node, backend.name, location, encoded.hash, encoded.stored)
                    return node
                except BadGateway as exc:
                    log.warning("could not copy block %s to node %s: %s", encoded.hash, node, exc)
                    try:
                        await self.store.drop_block_replica(backend.name, location, encoded.hash, node)
                    except Exception as drop:  # the row stays: the collector deletes the (absent) copy
                        log.warning("could not drop the row of a failed copy: %s", drop)
            return None

        done = await asyncio.gather(*(one() for _ in range(need)))
        return [node for node in done if node is not None]

    async def repair(self, backend: Backend, location: str, block_hash: str, holders: list[str],
                     need: int) -> list[str]:
        """Copy the block to ``need`` more live nodes beside ``holders``, from a copy that reads back intact
        (this node's first); the nodes that took it. Raises ``CorruptBlock`` when no copy reads back."""
        encoded = await self.fetch_stored(backend, location, block_hash, holders)
        order = choose_nodes(block_hash, await self.candidates(fresh=True), holders, need)
        peers = await self._spread(backend, location, encoded, order, min(need, len(order)))
        self.metrics.blocks_repaired.labels(backend.name).inc(len(peers))
        self.metrics.block_repaired_bytes.labels(backend.name).inc(len(encoded.stored) * len(peers))
        return peers

    # ------------------------------------------------------------------ reading

    async def holders(self, backend: Backend, location: str, block_hash: str) -> list[str]:
        """The nodes recorded as holding a copy (the location's node alone when none is recorded)."""
        return await self.store.block_replicas(backend.name, location, block_hash) or [location]

    async def _read_order(self, holders: list[str], *, skip_self: bool = False) -> list[str]:
        """``holders`` in the order to try them: this node, the live ones, the others (perhaps back)."""
        up = {c.instance_id for c in await self.candidates() if c.up}
        others = sorted(h for h in holders if h != self.instance_id)
        first = [self.instance_id] if self.instance_id in holders and not skip_self else []
        return first + [h for h in others if h in up] + [h for h in others if h not in up]

    async def fetch_stored(self, backend: Backend, location: str, block_hash: str, holders: list[str] | None = None,
                           *, skip_self: bool = False) -> codec.Encoded:
        """The stored form of the block from the first copy that verifies (this node's first unless
        ``skip_self``). Raises :class:`~callfs.blocks.codec.CorruptBlock` naming every copy's failure, or
        ``ServiceUnavailable`` when every node holding a copy is unreachable (none was found bad)."""
        return (await self._first_intact(backend, location, block_hash, holders, skip_self=skip_self))[0]

    async def fetch(self, backend: Backend, location: str, block_hash: str) -> bytes:
        """The verified plaintext of a block from any copy: this node's first, then live peers, then the rest;
        a copy that is missing, unreachable or fails its SHA-256 check is skipped. Raises
        :class:`~callfs.blocks.codec.CorruptBlock` when none reads back intact (never wrong bytes), and
        ``ServiceUnavailable`` (503) when no node holding one answers."""
        return (await self._first_intact(backend, location, block_hash, None))[1]

    async def _first_intact(self, backend: Backend, location: str, block_hash: str, holders: list[str] | None,
                            *, skip_self: bool = False) -> tuple[codec.Encoded, bytes]:
        holders = holders or await self.holders(backend, location, block_hash)
        failures = []
        unreachable = 0
        for node in await self._read_order(holders, skip_self=skip_self):
            try:
                if node == self.instance_id:
                    stored = await self.copies(backend, location).read_stored(block_hash)
                else:
                    stored = await self.peers.get_block(node, backend.name, location, block_hash, MAX_STORED)
                return await asyncio.to_thread(codec.verified, stored, block_hash, max_size=BLOCK_SIZE)
            except FileNotFoundError:
                failures.append(f"{node}: missing")
            except BadGateway as exc:
                unreachable += 1
                failures.append(f"{node}: {exc}")
            except (codec.CorruptBlock, OSError) as exc:
                failures.append(f"{node}: {exc}")
            self.metrics.block_read_errors.labels(backend.name).inc()
        if failures and unreachable == len(failures):
            raise ServiceUnavailable(f"no node holding a copy of block {block_hash} answers ({'; '.join(failures)}); "
                                     "retry once one is back")
        raise codec.CorruptBlock(f"no copy of block {block_hash} reads back intact ({'; '.join(failures)})")

    def source(self, backend: Backend, location: str) -> ReplicaSource:
        """A block source reading ``backend``'s blocks of ``location`` from any copy."""
        return ReplicaSource(self, backend, location)

    # ------------------------------------------------------------------ freeing

    async def _departure_view(self) -> tuple[set[str], list[Candidate]]:
        """``(departed, view)``: the nodes that were drained (or declared lost, which makes them leaving for ever)
        and are down, gone for good as far as copies go
        (their copies are neither counted nor reachable, nothing is written to them), and the membership view
        they were read from (empty when no node is leaving: one query then). Read now, never kept for
        placement: a node starting collects before its peers are all registered."""
        leaving = set(await self.store.leaving_nodes())
        if not leaving:
            return set(), []
        view = await self._read_view(leaving)
        return {c.instance_id for c in view if c.leaving and not c.up}, view

    async def adopted_locations(self) -> list[str]:
        """The locations of departed nodes (see :meth:`free`) whose blocks this node collects: those of every
        departed node when this node is the first (smallest id) of the live nodes that stay, else none. A
        location's collector is normally its own node, which a departed node no longer runs."""
        departed, view = await self._departure_view()
        staying = sorted(c.instance_id for c in view if c.up and not c.leaving)
        if not departed or not staying or staying[0] != self.instance_id:
            return []
        return sorted(departed)

    async def departed(self) -> set[str]:
        """The nodes that were drained and are down (see :meth:`_departure_view`)."""
        return (await self._departure_view())[0]

    async def free(self, backend: Backend, location: str, block_hash: str, departed: Collection[str] = ()) -> bool:
        """Delete every copy of a block being collected and its rows; ``True`` when all are gone (a node that
        cannot be reached keeps its copy and row: the next collection tries again). The copy of a ``departed``
        node (:meth:`departed`, read once per collection) is not asked for: its row goes (the node's disk goes
        with the node)."""
        complete = True
        for node in await self.holders(backend, location, block_hash):
            if node in departed:
                await self.store.drop_block_replica(backend.name, location, block_hash, node)
                continue
            try:
                if node == self.instance_id:
                    await self.copies(backend, location).delete(block_hash)
                else:
                    await self.peers.delete_block(node, backend.name, location, block_hash)
            except (BadGateway, OSError) as exc:
                log.warning("could not delete the copy of block %s on node %s (%s); will retry", block_hash, node,
                            exc)
                complete = False
                continue
            await self.store.drop_block_replica(backend.name, location, block_hash, node)
        return complete

    # ------------------------------------------------------------------ peer side

    async def accept(self, backend: Backend, location: str, block_hash: str, stored: bytes) -> None:
        """Keep a copy a peer sent (its stored form), verified first and durable on return. Raises
        ``BadRequest`` (bad name, or bytes that are not the block), ``InsufficientStorage``, ``OSError``."""
        check_hash(block_hash)
        try:
            encoded, _ = await asyncio.to_thread(codec.verified, stored, block_hash, max_size=BLOCK_SIZE)
        except codec.CorruptBlock as exc:
            raise BadRequest(f"the body is not block {block_hash}: {exc}") from exc
        await (await self.started_copies(backend, check_location(location))).write(encoded)

    async def serve(self, backend: Backend, location: str, block_hash: str) -> bytes:
        """The stored form of this node's copy, unverified (the reader checks it). Raises ``BadRequest``,
        ``NotFound`` (no copy here)."""
        check_hash(block_hash)
        try:
            return await self.copies(backend, check_location(location)).read_stored(block_hash)
        except FileNotFoundError:
            raise NotFound(f"this node holds no copy of block {block_hash}") from None
        except codec.CorruptBlock as exc:
            raise NotFound(f"this node's copy of block {block_hash} is unusable: {exc}") from exc

    async def discard(self, backend: Backend, location: str, block_hash: str) -> None:
        """Delete this node's copy (absent: no-op). Raises ``BadRequest``."""
        check_hash(block_hash)
        await self.copies(backend, check_location(location)).delete(block_hash)
