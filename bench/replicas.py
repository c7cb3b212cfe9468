#!/usr/bin/env python3
"""Files stored in replicated blocks at ``backend.replicas`` 1 and 2, next to the raw disk, and the repair of a
dead node's copies, measured in one run.

For each replica count (RF) a 3-node cluster is started (``services.running_cluster``: one PostgreSQL, one
Redis), every node with that ``backend.replicas`` and a fast repair (``replica_repair_grace`` 3 s,
``replica_repair_interval`` 0.5 s). ``whole_files_in_blocks`` is left unset, so a whole PUT is one blob served
with ``sendfile`` at RF 1 and is stored in 4 MiB blocks with their copies at RF 2. Two files are written
through node A (``node-0``, their owner), then per round, in this order:

1. ``raw disk``: ``dd bs=1M conv=fsync`` of a ``--size`` file (from ``/dev/shm`` when it fits) into the same
   temporary directory as the nodes' data (``machine_limits.dd_write``): what this disk takes right now, the
   reference for the PUTs;
2. ``PUT ranged``: all the bytes of the first file with one ranged PUT (``Content-Range: bytes 0-<size-1>/*``)
   through A, stored in blocks at both RFs (at RF 2 each block is also sent to, verified and fsynced on a peer
   before the write is acknowledged); then ``GET owner`` from A and ``GET other`` from B (``node-1``), which
   reads each block from a copy: its own when it holds one, else A's over the peer route;
3. ``PUT whole``: the second file with a plain PUT (``Content-Length``, no ``Content-Range``) through A; then
   ``GET owner`` and ``GET other`` of it (at RF 1 B forwards the GET of the blob to A).

Bodies are streamed from a generator over 16 random 1 MiB chunks, each starting with the file's *salt* (a
number per round and file) and its own number, so the data does not compress, no two 4 MiB blocks are alike,
and no round rewrites a block already stored (a block stored and referenced is not written again, which would
measure hashing, not writing). After the first round the bytes of every node's blob and block files are summed
(one version of both files: RF 2 doubles them).

At RF 2, after the rounds, ``node-2`` (which holds copies of A's blocks) is SIGKILLed. Polled every 0.2 s: the
referenced blocks with fewer than 2 copies on ``node-0`` and ``node-1`` (PostgreSQL) and the sum of their
``callfs_block_repaired_bytes_total``. Printed: the seconds from the kill to the first repaired byte (the
node is repaired once its last heartbeat is older than both the node timeout, 15 s here, and the grace) and to
full redundancy, the bytes repaired, and the rate from the first repaired byte seen to
full redundancy. Both files are then read back from ``node-1`` and their SHA-256 compared with what was sent.

Figures are medians over the rounds (MiB/s, wall clock), their ratio to the raw disk (PUTs) and RF 2 / RF 1.
``peak RSS`` is the highest ``VmHWM`` of the live nodes during a phase (reset before each phase through
``/proc/<pid>/clear_refs``), highest over the rounds: memory per transfer must stay bounded by a few blocks.

Usage: ``python3 bench/replicas.py [--size 256M] [--repeat 3] [--dir /var/tmp]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp

from figures import human_bytes, mib_per_second, parse_size, ratio, table
from large_files import CHUNK_BYTES, file_url, get_file, source_dir, write_pattern_file
from machine_limits import dd_write
from process_memory import reset_peak, resident_bytes
from services import CLUSTER_DISCOVERY, NodeProcess, running_cluster
from support.replicas import metric, under_replicated

RANGED_PATH = "/bench/replicas/ranged.bin"
WHOLE_PATH = "/bench/replicas/whole.bin"
POOL_CHUNKS = 16
DISK = "raw disk (dd)"
PHASES = ("PUT ranged", "GET owner ranged", "GET other ranged", "PUT whole", "GET owner whole", "GET other whole")
REPAIR_BACKEND = {"replica_repair_grace": 3.0, "replica_repair_interval": 0.5}
"""``backend`` settings of both clusters (seconds): a node down 3 s past its heartbeat timeout is repaired."""
REPAIR_POLL = 0.2
REPAIR_TIMEOUT = 300.0
"""Seconds from the kill within which every block must have its two live copies again (else the run fails)."""
REPAIRED_BYTES = "callfs_block_repaired_bytes_total"
KILLED = 2
"""Index of the node SIGKILLed at RF 2 (``node-2``); A (0) and B (1) survive."""


@dataclass
class PhaseRounds:
    """Wall seconds of each round of one phase; ``peak_rss`` the highest node ``VmHWM`` seen (bytes, or None
    when the kernel refused the peak reset)."""

    seconds: list[float] = field(default_factory=list)
    peak_rss: int | None = None

    def median_mib_s(self, size: int) -> float:
        return mib_per_second(size, statistics.median(self.seconds)) if self.seconds else math.nan


@dataclass
class Repair:
    """The repair after the kill (seconds from the kill; bytes; ``verified`` maps each file to its read-back)."""

    held_files: int
    first_byte: float
    redundant: float
    bytes_at_first: int
    repaired: int
    peak_rss: int | None
    verified: dict[str, float] = field(default_factory=dict)

    @property
    def window(self) -> float:
        """Seconds from the first repaired byte seen to full redundancy."""
        return self.redundant - self.first_byte

    @property
    def mib_s(self) -> float:
        """Repair rate over :attr:`window`: the bytes repaired after the first poll that saw any."""
        return mib_per_second(self.repaired - self.bytes_at_first, self.window)


@dataclass
class ClusterFigures:
    """Everything measured on one cluster."""

    phases: dict[str, PhaseRounds]
    stored: int
    baseline_rss: int
    repair: Repair | None = None


def chunks(size: int, pool: list[bytes], salt: int) -> Iterator[bytes]:
    """``size`` bytes: the chunks of ``pool`` in turn, each starting with ``salt`` and its own number (8 bytes
    each, big-endian), so that no two blocks of one body, nor of two bodies of different salts, are alike."""
    left, number = size, 0
    while left > 0:
        chunk = pool[number % len(pool)]
        piece = (salt.to_bytes(8, "big") + number.to_bytes(8, "big") + chunk[16:])[: min(left, len(chunk))]
        left -= len(piece)
        number += 1
        yield piece


async def _body(size: int, pool: list[bytes], salt: int) -> AsyncIterator[bytes]:
    for piece in chunks(size, pool, salt):
        yield piece


def body_digest(size: int, pool: list[bytes], salt: int) -> str:
    """SHA-256 (hex) of the body :func:`chunks` makes."""
    digest = hashlib.sha256()
    for piece in chunks(size, pool, salt):
        digest.update(piece)
    return digest.hexdigest()


async def _put(session: aiohttp.ClientSession, node: NodeProcess, path: str, size: int, pool: list[bytes],
               salt: int, *, ranged: bool) -> float:
    """Write the whole file ``path`` through ``node``: one ranged PUT (the file exists) or a plain PUT."""
    headers = {"Content-Range": f"bytes 0-{size - 1}/*"} if ranged else {"Content-Length": str(size)}
    headers["X-Request-ID"] = f"bench-replicas-put-{salt}"
    start = time.monotonic()
    async with session.put(file_url(node, path), data=_body(size, pool, salt), headers=headers) as response:
        text = await response.text()
        if response.status not in ((200,) if ranged else (200, 201)):
            raise RuntimeError(f"PUT {path} through {node.url} -> {response.status}: {text[:300]}")
    return time.monotonic() - start


async def _get(session: aiohttp.ClientSession, node: NodeProcess, path: str, size: int) -> float:
    start = time.monotonic()
    await get_file(session, file_url(node, path), size)
    return time.monotonic() - start


async def read_digest(session: aiohttp.ClientSession, node: NodeProcess, path: str) -> tuple[str, int]:
    """``(SHA-256 hex, bytes)`` of the file ``path`` downloaded from ``node`` (read in 1 MiB chunks)."""
    digest, received = hashlib.sha256(), 0
    async with session.get(file_url(node, path)) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {path} from {node.url} -> {response.status}: {(await response.read())[:300]!r}")
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            digest.update(chunk)
            received += len(chunk)
    return digest.hexdigest(), received


def _pid(node: NodeProcess) -> int:
    if node.process is None:
        raise RuntimeError(f"node {node.url} is not running")
    return node.process.pid


def _reset_peaks(nodes: list[NodeProcess]) -> bool:
    return all([reset_peak(_pid(node)) for node in nodes])


def _peak(nodes: list[NodeProcess]) -> int:
    return max(resident_bytes(_pid(node))[1] for node in nodes)


def stored_bytes(nodes: list[NodeProcess]) -> int:
    """Bytes of every blob and block file the nodes keep (their own, under ``objects/``, and the copies held
    for peers, under ``replicas/<id>/objects/``); temp files are not counted."""
    return sum(path.stat().st_size for node in nodes for path in (node.data_dir / "blobs").rglob("*")
               if path.is_file() and path.parent.parent.name == "objects")


def metadata_dsn(node: NodeProcess) -> str:
    """The PostgreSQL DSN in the node's config file (``metadata_store.dsn``)."""
    return str(json.loads(node.config_path.read_text())["metadata_store"]["dsn"])


async def measure(nodes: list[NodeProcess], base: Path, size: int, pool: list[bytes], repeat: int,
                  ) -> tuple[dict[str, PhaseRounds], int, dict[str, str]]:
    """``repeat`` rounds of the raw disk reference and the phases; ``(phases, stored bytes after the first
    round, {path: SHA-256 of its last body})``. The dd source lives in ``/dev/shm`` when it fits (dd then reads
    RAM, and no writeback of the source competes with the copy), else in ``base``."""
    source = (source_dir(size) or base) / f"callfs-bench-replicas-source-{os.getpid()}.bin"
    target = base / "dd-target.bin"
    write_pattern_file(source, size, pool[0])
    try:
        return await _rounds(nodes, source, target, size, pool, repeat)
    finally:
        source.unlink()


async def _rounds(nodes: list[NodeProcess], source: Path, target: Path, size: int, pool: list[bytes], repeat: int,
                  ) -> tuple[dict[str, PhaseRounds], int, dict[str, str]]:
    a, b = nodes[0], nodes[1]
    results = {name: PhaseRounds() for name in (DISK, *PHASES)}
    digests: dict[str, str] = {}
    stored = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Authorization": f"Bearer {a.api_key}"}) as session:
        async with session.put(file_url(a, RANGED_PATH), data=b"") as response:
            if response.status != 201:
                raise RuntimeError(f"creating {RANGED_PATH} answered {response.status}")
        for round_number in range(repeat):
            ranged_salt, whole_salt = 2 * round_number + 1, 2 * round_number + 2
            steps = (
                (DISK, partial(asyncio.to_thread, dd_write, source, [target])),
                ("PUT ranged", partial(_put, session, a, RANGED_PATH, size, pool, ranged_salt, ranged=True)),
                ("GET owner ranged", partial(_get, session, a, RANGED_PATH, size)),
                ("GET other ranged", partial(_get, session, b, RANGED_PATH, size)),
                ("PUT whole", partial(_put, session, a, WHOLE_PATH, size, pool, whole_salt, ranged=False)),
                ("GET owner whole", partial(_get, session, a, WHOLE_PATH, size)),
                ("GET other whole", partial(_get, session, b, WHOLE_PATH, size)),
            )
            for name, run in steps:
                peaks_known = _reset_peaks(nodes)
                seconds = await run()
                phase = results[name]
                phase.seconds.append(seconds)
                if peaks_known and name != DISK:
                    phase.peak_rss = max(phase.peak_rss or 0, _peak(nodes))
                target.unlink(missing_ok=True)
                print(f"  round {round_number + 1}/{repeat} {name:<17} {seconds:7.2f} s "
                      f"{mib_per_second(size, seconds):7.0f} MiB/s", file=sys.stderr, flush=True)
            if round_number == 0:
                stored = stored_bytes(nodes)
        digests[RANGED_PATH] = await asyncio.to_thread(body_digest, size, pool, ranged_salt)
        digests[WHOLE_PATH] = await asyncio.to_thread(body_digest, size, pool, whole_salt)
    return results, stored, digests


async def repair(nodes: list[NodeProcess], digests: dict[str, str], size: int) -> Repair:
    """SIGKILL ``nodes[KILLED]``, wait until every referenced block has two copies on the others, then read
    every file of ``digests`` back from B and check it. Raises ``RuntimeError`` when the killed node held no
    copy, the repair does not complete within :data:`REPAIR_TIMEOUT` seconds, or a file reads back wrong."""
    victim, live = nodes[KILLED], [node for i, node in enumerate(nodes) if i != KILLED]
    live_ids = [f"node-{i}" for i in range(len(nodes)) if i != KILLED]
    held = sum(1 for path in (victim.data_dir / "blobs" / "replicas").rglob("*") if path.is_file())
    if not held:
        raise RuntimeError(f"node-{KILLED} holds no copy of a peer's blocks: nothing to repair")
    dsn = metadata_dsn(live[0])
    if await under_replicated(dsn, [*live_ids, f"node-{KILLED}"], 2):
        raise RuntimeError("blocks are under-replicated before the kill")

    async def repaired_bytes() -> int:
        return int(sum([await metric(node, REPAIRED_BYTES) for node in live]))

    baseline = await repaired_bytes()
    peaks_known = _reset_peaks(live)
    killed = time.monotonic()
    victim.kill()
    print(f"  node-{KILLED} killed ({held} block files held for peers); waiting for repair",
          file=sys.stderr, flush=True)
    first: tuple[float, int] | None = None
    while True:
        now = time.monotonic()
        done = await repaired_bytes() - baseline
        if first is None and done > 0:
            first = (now - killed, done)
            print(f"  first repaired bytes seen {first[0]:.1f} s after the kill", file=sys.stderr, flush=True)
        if await under_replicated(dsn, live_ids, 2) == 0:
            redundant = now - killed
            break
        if now - killed > REPAIR_TIMEOUT:
            raise RuntimeError(f"blocks still under-replicated {REPAIR_TIMEOUT:.0f} s after the kill "
                               f"({done} bytes repaired):\n{live[0].log_tail()}")
        await asyncio.sleep(REPAIR_POLL)
    # A copy's row is written before its bytes and the counter after them: let the last copy be counted.
    await asyncio.sleep(2 * REPAIR_BACKEND["replica_repair_interval"])
    total = await repaired_bytes() - baseline
    result = Repair(held, first[0] if first else redundant, redundant, first[1] if first else total, total,
                    _peak(live) if peaks_known else None)
    print(f"  redundant again {redundant:.1f} s after the kill; {human_bytes(total)} repaired",
          file=sys.stderr, flush=True)
    b = nodes[1]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Authorization": f"Bearer {b.api_key}"}) as session:
        for path, expected in digests.items():
            start = time.monotonic()
            got, received = await read_digest(session, b, path)
            seconds = time.monotonic() - start
            if (got, received) != (expected, size):
                raise RuntimeError(f"{path} read back from node-1 after the repair: {received} bytes, SHA-256 "
                                   f"{got}; sent {size} bytes, SHA-256 {expected}")
            result.verified[path] = seconds
    return result


async def run_cluster(nodes: list[NodeProcess], base: Path, size: int, pool: list[bytes], repeat: int,
                      rf: int) -> ClusterFigures:
    """The rounds on one cluster, then (RF >= 2) the repair."""
    baseline_rss = max(resident_bytes(_pid(node))[0] for node in nodes)
    phases, stored, digests = await measure(nodes, base, size, pool, repeat)
    figures = ClusterFigures(phases, stored, baseline_rss)
    if rf >= 2:
        figures.repair = await repair(nodes, digests, size)
    return figures


def _rss(value: int | None) -> str:
    return human_bytes(value) if value is not None else "-"


def report(size: int, repeat: int, by_rf: dict[int, ClusterFigures]) -> str:
    """The printed figures: the phases table, then the repair table (RF 1 and 2 must both be in ``by_rf``)."""
    one, two = by_rf[1], by_rf[2]
    disk = {rf: figures.phases[DISK].median_mib_s(size) for rf, figures in by_rf.items()}
    rows = [[DISK, f"{disk[1]:.0f}", "1", f"{disk[2]:.0f}", "1", f"{ratio(disk[2], disk[1]):.2f}", "-", "-"]]
    for name in PHASES:
        rates = {rf: figures.phases[name].median_mib_s(size) for rf, figures in by_rf.items()}
        to_disk = {rf: f"{ratio(rates[rf], disk[rf]):.2f}" if name.startswith("PUT") else "-" for rf in rates}
        rows.append([name, f"{rates[1]:.0f}", to_disk[1], f"{rates[2]:.0f}", to_disk[2],
                     f"{ratio(rates[2], rates[1]):.2f}", _rss(one.phases[name].peak_rss),
                     _rss(two.phases[name].peak_rss)])
    written = 2 * size
    rows.append(["stored bytes, one version of both files", human_bytes(one.stored), f"{one.stored / written:.2f}",
                 human_bytes(two.stored), f"{two.stored / written:.2f}", f"{ratio(two.stored, one.stored):.2f}",
                 "-", "-"])
    headers = ["phase", "RF 1 MiB/s", "RF 1 / disk", "RF 2 MiB/s", "RF 2 / disk", "RF 2 / RF 1",
               "peak RSS RF 1", "peak RSS RF 2"]
    text = (f"file size {human_bytes(size)}; median of {repeat} round(s); 3 nodes; node RSS at start "
            f"{_rss(one.baseline_rss)} (RF 1), {_rss(two.baseline_rss)} (RF 2); stored bytes: 'RF n / disk' column "
            f"holds stored / written\n" + table(headers, rows))
    fixed = two.repair
    if fixed is not None:
        repair_rows = [
            ["block files node-2 held for peers", str(fixed.held_files)],
            [f"kill -> first repaired byte seen (node timeout {CLUSTER_DISCOVERY['node_timeout']:.0f} s and grace "
             f"{REPAIR_BACKEND['replica_repair_grace']:.0f} s, both from the last heartbeat)",
             f"{fixed.first_byte:.1f} s"],
            ["kill -> every block with 2 live copies", f"{fixed.redundant:.1f} s"],
            ["first repaired byte seen -> full redundancy", f"{fixed.window:.1f} s"],
            ["bytes repaired", human_bytes(fixed.repaired)],
            ["repair rate", f"{fixed.mib_s:.0f} MiB/s = {fixed.mib_s * 60 / 1024:.2f} GiB/min"],
            ["repair rate / raw disk (RF 2 cluster)", f"{ratio(fixed.mib_s, disk[2]):.2f}"],
            ["peak RSS of the live nodes during repair", _rss(fixed.peak_rss)],
            *([f"{path} read back from node-1: SHA-256 ok",
               f"{mib_per_second(size, seconds):.0f} MiB/s"] for path, seconds in fixed.verified.items()),
        ]
        text += "\n\nrepair at RF 2 after SIGKILL of node-2\n" + table(["measure", "value"], repair_rows)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"), help="bytes of each file (256M)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.size < 1:
        parser.error("--repeat and --size must be >= 1")
    pool = [os.urandom(CHUNK_BYTES) for _ in range(POOL_CHUNKS)]
    by_rf: dict[int, ClusterFigures] = {}
    for rf in (1, 2):
        base = Path(tempfile.mkdtemp(prefix=f"callfs-bench-replicas-{rf}-", dir=args.dir))
        try:
            print(f"RF {rf}:", file=sys.stderr, flush=True)
            with running_cluster(base, 3, backend={"replicas": rf, **REPAIR_BACKEND}) as nodes:
                by_rf[rf] = asyncio.run(run_cluster(nodes, base, args.size, pool, args.repeat, rf))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    print(report(args.size, args.repeat, by_rf))
    return 0


if __name__ == "__main__":
    sys.exit(main())
