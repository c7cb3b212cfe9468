"""Converting the files stored as one blob to blocks, in place and without downtime (an upgrade of how older files
are stored; docs/operations.md, "Upgrading: convert old files").

A file is converted by :meth:`callfs.engine.Engine.convert_blob`: its blocks are written from its blob (with their
copies on the replicated local backend), then, under the file's lock, one metadata transaction swaps its layout,
keeping its size, times, version and ETag; the blob is freed after that commit. A file changed meanwhile is left
as it is and tried again by a later pass; nothing is ever lost, since the blob stays until the transaction naming
its blocks has committed.

Who converts what: the bytes of a file on the local-disk backend are a blob on one node's disk, and that node
(its owner) converts them, reading its own disk. A blob on a shared backend (S3) is reachable from every node;
the **live node with the smallest instance id** converts those (the same rule as the collection of a departed
node's blocks), so two nodes never read the same blob; when that node goes down, the next one takes over.

A pass (:meth:`Converter.run_pass`) pages through the remaining blob files by path, so it needs no state to
resume after a restart: it simply finds the files still stored as a blob. It reads at most
``backend.convert_bytes_per_second`` bytes a second on average (after each block read it sleeps as long as the
block's bytes take at that rate, so a large file is paced too). The background job (``backend.convert_blobs``)
runs a pass at start and every ``backend.convert_interval`` seconds in the node's primary process;
``POST /v1/cluster/convert`` starts a one-off pass on every node (:meth:`Converter.start`), whether the job is
enabled or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from callfs.engine import Engine
from callfs.errors import BadGateway, CallFSError, Conflict, LockTimeout, PermissionDenied
from callfs.membership import Membership
from callfs.peers import PeerClient
from callfs.permissions import Caller

log = logging.getLogger(__name__)

FILE_PAGE = 100
"""Files read per query while a pass looks for blob files."""


@dataclass(slots=True)
class Tally:
    """What this process converted since it started: ``files`` and ``bytes`` converted, ``failures`` (errors,
    tried again next pass), ``skipped`` (changed while converted, or its lock held by a writer past
    ``dlm.wait_timeout``: tried again next pass), ``passes`` finished."""

    files: int = 0
    bytes: int = 0
    failures: int = 0
    skipped: int = 0
    passes: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Remaining:
    """Files of this node still stored as one blob: ``files`` (each inode once) and their ``bytes``, per backend
    in ``by_backend`` (``{name: (files, bytes)}``)."""

    files: int
    bytes: int
    by_backend: dict[str, tuple[int, int]] = field(default_factory=dict)


class Converter:
    """This node's conversion of blob files to blocks. ``rate`` in bytes per second."""

    def __init__(self, engine: Engine, membership: Membership, peers: PeerClient, *, rate: int) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 bytes per second")
        self.engine = engine
        self.membership = membership
        self.peers = peers
        self.metrics = engine.metrics
        self.store = engine.store
        self.rate = rate
        self.tally = Tally()
        self._running: asyncio.Task[int] | None = None
        self._pass_lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        """True while a pass runs in this process."""
        return self._pass_lock.locked()

    async def shared_leader(self) -> bool:
        """True when this node converts the blobs of shared backends: it is the live node with the smallest
        instance id (or no node is live in the store's view, as on a node alone before its first heartbeat)."""
        live = sorted(v.instance_id for v in await self.membership.nodes()
                      if v.instance_id is not None and v.state == "up")
        return not live or live[0] == self.engine.instance_id

    async def _owned(self) -> list[tuple[str, str | None]]:
        """``(backend, owner)`` of the blob files this node converts: its node-local backends with itself as
        owner, and the shared ones (owner ``None``) when it is their leader. Unavailable backends are left out."""
        out: list[tuple[str, str | None]] = []
        leader: bool | None = None
        for name, backend in self.engine.backends.items():
            if name in self.engine.unavailable:
                continue
            if backend.node_local:
                out.append((name, self.engine.instance_id))
                continue
            if leader is None:
                leader = await self.shared_leader()
            if leader:
                out.append((name, None))
        return out

    async def remaining(self) -> Remaining:
        """The blob files this node converts that are left (from the metadata store), and sets the
        ``callfs_blob_files_unconverted``/``callfs_blob_bytes_unconverted`` gauges."""
        by_backend = {}
        for name, owner in await self._owned():
            files, size = await self.store.count_blob_files(name, owner)
            by_backend[name] = (files, size)
            self.metrics.blob_files_unconverted.labels(name).set(files)
            self.metrics.blob_bytes_unconverted.labels(name).set(size)
        return Remaining(sum(f for f, _ in by_backend.values()), sum(b for _, b in by_backend.values()), by_backend)

    async def run_pass(self) -> int:
        """Convert every blob file this node converts; the number converted. A file that fails or changed
        meanwhile is counted (``failures``, ``skipped``) and left for the next pass. A pass already running in
        this process is waited for instead of running twice."""
        if self._pass_lock.locked():
            async with self._pass_lock:
                return 0
        async with self._pass_lock:
            converted = 0
            for name, owner in await self._owned():
                after = None
                while True:
                    page = await self.store.blob_files(name, owner, after, FILE_PAGE)
                    for path, _size, _ in page:
                        converted += await self._convert(name, path)
                    if len(page) < FILE_PAGE:
                        break
                    after = page[-1][2]
            self.tally.passes += 1
            await self.remaining()
            return converted

    async def _convert(self, backend: str, path: str) -> int:
        """Convert one file, pausing after each block read as long as it takes at :attr:`rate`; 1 when
        converted."""
        try:
            converted = await self.engine.convert_blob(path, pace=self._pace)
        except (Conflict, LockTimeout) as exc:
            self.tally.skipped += 1
            log.info("conversion of %s skipped, the file changed or is being written: %s", path, exc)
            return 0
        except (CallFSError, OSError) as exc:
            self.tally.failures += 1
            self.tally.last_error = f"{path}: {exc}"
            self.metrics.blob_conversion_failures.labels(backend).inc()
            log.warning("could not convert %s to blocks: %s; will retry", path, exc)
            return 0
        if converted is None:
            return 0
        self.tally.files += 1
        self.tally.bytes += converted.size
        self.metrics.blob_files_converted.labels(backend).inc()
        self.metrics.blob_bytes_converted.labels(backend).inc(converted.size)
        return 1

    async def _pace(self, size: int) -> None:
        """After each block read (``size`` bytes), pause as long as it takes at :attr:`rate`."""
        pause = size / self.rate
        if pause > 0:
            self.metrics.blob_conversion_throttled_seconds.inc(pause)
            await asyncio.sleep(pause)

    def start(self) -> bool:
        """Start a one-off pass in the background (``POST /v1/cluster/convert``); ``False`` when one runs
        already in this process (it carries on)."""
        if self.running or (self._running is not None and not self._running.done()):
            return False
        self._running = asyncio.create_task(self._one_off(), name="blob-conversion")
        return True

    async def _one_off(self) -> int:
        try:
            done = await self.run_pass()
            log.info("conversion pass: %d files converted to blocks", done)
            return done
        except Exception:
            log.warning("conversion pass failed; it can be started again", exc_info=True)
            raise

    async def stop(self) -> None:
        """Cancel a one-off pass running in this process (at shutdown); a file being converted is left as it
        was or converted whole (its transaction commits or not)."""
        task, self._running = self._running, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # logged by the task itself
                await task

    async def report(self) -> dict[str, object]:
        """This node's progress: ``{"instance_id", "running", "remaining_files", "remaining_bytes",
        "converted_files", "converted_bytes", "failures", "skipped", "passes", "last_error"}`` (the counters of
        this process since it started; the remaining ones from the metadata store)."""
        left = await self.remaining()
        return {
            "instance_id": self.engine.instance_id, "running": self.running,
            "remaining_files": left.files, "remaining_bytes": left.bytes,
            "converted_files": self.tally.files, "converted_bytes": self.tally.bytes,
            "failures": self.tally.failures, "skipped": self.tally.skipped, "passes": self.tally.passes,
            "last_error": self.tally.last_error,
        }

    # ------------------------------------------------------------ the whole cluster (REST, root only)

    async def cluster(self, caller: Caller, *, start: bool) -> dict[str, object]:
        """Every registered node's conversion report (:meth:`report`; from the node itself, through the peer
        route), after starting a one-off pass on each when ``start``, and the totals: ``{"nodes": [...],
        "remaining_files", "remaining_bytes", "converted_files", "converted_bytes", "failures"}``. A node down
        (no recent heartbeat) is not asked; one that is down or does not answer is listed with ``"reachable":
        false``, ``"error"`` and its remaining files on node-local backends counted from the metadata store.
        Raises ``PermissionDenied`` (not root)."""
        # SECURITY: a pass reads and rewrites every old file of the cluster: an administrator's act.
        if not caller.is_superuser:
            raise PermissionDenied("only root may convert files to blocks")
        nodes: list[dict[str, object]] = []
        for view in await self.membership.nodes():
            if view.instance_id is None:
                continue
            if view.instance_id == self.engine.instance_id:
                if start:
                    self.start()
                nodes.append({**await self.report(), "reachable": True})
                continue
            if view.state == "down":  # no heartbeat within instance_discovery.node_timeout: not asked
                nodes.append(await self._unreachable(view.instance_id, "the node is down (no recent heartbeat)"))
                continue
            try:
                nodes.append({**await self.peers.conversion(view.instance_id, start=start), "reachable": True})
            except BadGateway as exc:
                nodes.append(await self._unreachable(view.instance_id, str(exc)))
        totals = {key: sum(_count(n.get(key)) for n in nodes)
                  for key in ("remaining_files", "remaining_bytes", "converted_files", "converted_bytes", "failures")}
        return {"nodes": sorted(nodes, key=lambda n: str(n["instance_id"])), **totals}

    async def _unreachable(self, instance_id: str, error: str) -> dict[str, object]:
        files = size = 0
        for name, backend in self.engine.backends.items():
            if backend.node_local:
                more_files, more_bytes = await self.store.count_blob_files(name, instance_id)
                files, size = files + more_files, size + more_bytes
        return {"instance_id": instance_id, "reachable": False, "error": error, "running": None,
                "remaining_files": files, "remaining_bytes": size}


def _count(value: object) -> int:
    """A count of a node's report (a peer's JSON): an int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
