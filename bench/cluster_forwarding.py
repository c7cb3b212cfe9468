#!/usr/bin/env python3
"""Large-file GET and PUT through a node that forwards to the owning node, next to the same transfer served by
the owner itself, measured in the same run.

Two nodes form one cluster (``services.running_cluster``: one PostgreSQL, one Redis, one ``auth`` section):
``A`` (``node-0``) and ``B`` (``node-1``). One file of ``--size`` bytes is created through A, so its bytes live on
A's disk and its metadata records ``node-0`` as owner. Then, for each of ``--repeat`` rounds:

1. ``PUT local``: the file overwritten through A; ``PUT forwarded``: overwritten through B, which forwards the
   request body to A (any node serving a request for a file forwards the same ``/v1/files/...`` request to
   the owning peer; docs/architecture.md). After each PUT the owner is checked to be still ``node-0``;
2. ``GET local``: the file downloaded from A; ``GET forwarded``: downloaded from B, which streams it from A.

Within each pair the order alternates between rounds (odd rounds: forwarded first), so that neither side
always runs second. Bodies are streamed from a generator (PUT) and read in 1 MiB chunks that are discarded
(GET), as in ``large_files.py``. Figures are medians over the rounds (MiB/s, wall clock); ``ratio`` is
forwarded / local (1.00 = forwarding costs nothing). Peak RSS is ``VmHWM`` of the node process during the phase
(reset through ``/proc/<pid>/clear_refs`` before it), the highest over the rounds: B's peak in the forwarded
phases shows whether the forwarding node's memory stays bounded (compare ``--size 64M`` with ``1G``).

Usage: ``python3 bench/cluster_forwarding.py [--size 1G] [--repeat 3] [--dir /var/tmp]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from figures import human_bytes, mib_per_second, parse_size, ratio, table
from large_files import CHUNK_BYTES, file_url, get_file, put_file
from process_memory import reset_peak, resident_bytes
from services import NodeProcess, running_cluster
from small_files import log_digest

FILE_PATH = "/bench/forwarding/owned-by-a.bin"
OWNER_ID = "node-0"
PHASES = ("PUT local", "PUT forwarded", "GET local", "GET forwarded")


@dataclass
class PhaseRounds:
    """Wall seconds of each round of one phase, and the highest ``VmHWM`` (bytes) of A and B over the rounds."""

    seconds: list[float] = field(default_factory=list)
    peak_a: int | None = None
    peak_b: int | None = None


class TransferFailed(RuntimeError):
    """A benchmark request failed; ``request_id`` is its ``X-Request-ID`` (for the node logs)."""

    def __init__(self, request_id: str, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id


def _pid(node: NodeProcess) -> int:
    if node.process is None:
        raise RuntimeError(f"node {node.url} is not running")
    pid: int = node.process.pid
    return pid


async def owner_of(session: aiohttp.ClientSession, node: NodeProcess, path: str) -> str | None:
    """``X-CallFS-Instance-ID`` of ``path`` as ``node`` answers ``HEAD`` (the node holding the bytes)."""
    async with session.head(file_url(node, path)) as response:
        if response.status != 200:
            raise RuntimeError(f"HEAD {path} on {node.url} -> {response.status}")
        return response.headers.get("X-CallFS-Instance-ID")


async def timed_transfer(session: aiohttp.ClientSession, op: str, via: NodeProcess, size: int, block: bytes,
                         request_id: str) -> float:
    """One PUT (overwrite, expects 200) or GET of :data:`FILE_PATH` sent to ``via``; wall seconds.

    Raises :class:`TransferFailed` on any unexpected status, short body or transport error.
    """
    start = time.monotonic()
    try:
        if op == "PUT":
            status = await put_file(session, via, FILE_PATH, size, block, request_id)
            if status != 200:
                raise RuntimeError(f"PUT {FILE_PATH} [{request_id}] -> {status}, expected 200 (overwrite)")
        else:
            await get_file(session, file_url(via, FILE_PATH), size, request_id)
    except (RuntimeError, aiohttp.ClientError, TimeoutError) as exc:
        raise TransferFailed(request_id, f"{op} via {via.url}: {exc!r}") from exc
    return time.monotonic() - start


async def measure(a: NodeProcess, b: NodeProcess, size: int, block: bytes, repeat: int) -> dict[str, PhaseRounds]:
    """Create the file on A, then ``repeat`` rounds of the four phases; ``{phase name: PhaseRounds}``.

    Raises :class:`TransferFailed` when a request fails, ``RuntimeError`` when the file's owner is not A.
    """
    results = {name: PhaseRounds() for name in PHASES}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    headers = {"Authorization": f"Bearer {a.api_key}"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        status = await put_file(session, a, FILE_PATH, size, block, "bench-fwd-create")
        if status != 201:
            raise RuntimeError(f"creating {FILE_PATH} on A answered {status}, expected 201")
        for round_number in range(repeat):
            for op in ("PUT", "GET"):
                pair = [("local", a), ("forwarded", b)]
                if round_number % 2:
                    pair.reverse()
                for where, via in pair:
                    name = f"{op} {where}"
                    peaks_known = reset_peak(_pid(a)) and reset_peak(_pid(b))
                    request_id = f"bench-fwd-r{round_number}-{op.lower()}-{where}"
                    seconds = await timed_transfer(session, op, via, size, block, request_id)
                    phase = results[name]
                    phase.seconds.append(seconds)
                    if peaks_known:
                        phase.peak_a = max(phase.peak_a or 0, resident_bytes(_pid(a))[1])
                        phase.peak_b = max(phase.peak_b or 0, resident_bytes(_pid(b))[1])
                    print(f"  round {round_number + 1}/{repeat} {name:<14} {seconds:7.2f} s "
                          f"{mib_per_second(size, seconds):7.0f} MiB/s", file=sys.stderr, flush=True)
                    if op == "PUT":
                        owner = await owner_of(session, b, FILE_PATH)
                        if owner != OWNER_ID:
                            raise RuntimeError(f"after {name} the file is owned by {owner!r}, not {OWNER_ID}")
    return results


def blob_files(node: NodeProcess) -> int:
    """Number of files under the node's local blob store (``<data_dir>/blobs``)."""
    root = node.data_dir / "blobs"
    return sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0


def report(size: int, repeat: int, results: dict[str, PhaseRounds], baseline: tuple[int, int]) -> str:
    """The figures as a Markdown table: one row per phase, with the forwarded / local ratio."""
    rows = []
    for name in PHASES:
        phase = results[name]
        op, where = name.split()
        rate = mib_per_second(size, statistics.median(phase.seconds))
        local = mib_per_second(size, statistics.median(results[f"{op} local"].seconds))
        rates = [mib_per_second(size, seconds) for seconds in phase.seconds]
        rows.append([
            op, "A (owner)" if where == "local" else "B -> A", f"{statistics.median(phase.seconds):.2f}",
            f"{rate:.0f}", f"{min(rates):.0f}-{max(rates):.0f}",
            f"{ratio(rate, local):.2f}" if where == "forwarded" else "1",
            human_bytes(phase.peak_a) if phase.peak_a is not None else "n/a",
            (human_bytes(phase.peak_b) if phase.peak_b is not None else "n/a") if where == "forwarded" else "-",
        ])
    headers = ["op", "sent to", "seconds (median)", "MiB/s (median)", "MiB/s range", "ratio to local",
               "A peak RSS", "B peak RSS (forwarder)"]
    return (f"file size {human_bytes(size)}; median of {repeat} round(s); node RSS at start: "
            f"A {human_bytes(baseline[0])}, B {human_bytes(baseline[1])}\n" + table(headers, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"),
                        help="bytes of the file, e.g. 1G (default), 64M")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed (default 3)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the temporary directory (node data); default $TMPDIR")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    block = os.urandom(CHUNK_BYTES)
    base = Path(tempfile.mkdtemp(prefix="callfs-bench-forwarding-", dir=args.dir))
    try:
        with running_cluster(base, 2) as (a, b):
            baseline = (resident_bytes(_pid(a))[0], resident_bytes(_pid(b))[0])
            try:
                results = asyncio.run(measure(a, b, args.size, block, args.repeat))
            except TransferFailed as failure:
                print(f"FAILED: {failure}")
                for label, node in (("A", a), ("B", b)):
                    print(f"node {label} log ({node.log_path}) for [{failure.request_id}] / at error level:")
                    print("\n".join(f"  {line}" for line in log_digest(node, {failure.request_id})) or "  (none)")
                return 1
            stray = blob_files(b)
            if stray:
                print(f"FAILED: B holds {stray} blob file(s); every PUT should have been written on A")
                return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(report(args.size, args.repeat, results, baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
