#!/usr/bin/env python3
"""Writing and reading a file stored in blocks at ``backend.replicas`` 1 and 2, measured in the same run.

For each replica count a 3-node cluster is started (``services.running_cluster``: one PostgreSQL, one Redis),
all nodes configured with that ``backend.replicas``. A file of ``--size`` bytes is created empty through node
A (``node-0``, its owner), then per round:

1. ``PUT``: its bytes written with one ranged PUT (``Content-Range: bytes 0-<size-1>/*``) through A, which
   stores the file in 4 MiB blocks; at RF 2 each block is also sent to, verified and fsynced on a peer before
   the write is acknowledged. The body is streamed from a generator cycling over 16 random 1 MiB chunks, each
   numbered (incompressible, and no two blocks alike);
2. ``GET owner``: the file downloaded from A (its own copies);
3. ``GET other``: the file downloaded from B (``node-1``), which reads each block from a copy: its own at RF 2
   when it holds one, else A's over the peer route.

Figures are medians over the rounds (MiB/s, wall clock) and the ratio RF 2 / RF 1 per phase. The stored bytes
of every node's block directories are summed at the end of each cluster's rounds (RF 2 doubles them).

Usage: ``python3 bench/replicas.py [--size 256M] [--repeat 3] [--dir /var/tmp]``
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
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from figures import human_bytes, mib_per_second, parse_size, ratio, table
from services import NodeProcess, running_cluster

FILE_PATH = "/bench/replicas/file.bin"
CHUNK_BYTES = 1 << 20
PHASES = ("PUT", "GET owner", "GET other")


async def _body(size: int, pool: list[bytes]) -> AsyncIterator[bytes]:
    """``size`` bytes: the random 1 MiB chunks of ``pool`` in turn, each starting with its own number, so that
    the data does not compress and no two 4 MiB blocks are identical (identical blocks are stored once, which
    would hide the cost of writing them)."""
    left, number = size, 0
    while left > 0:
        block = pool[number % len(pool)]
        piece = (number.to_bytes(8, "big") + block[8:])[: min(left, len(block))]
        left -= len(piece)
        number += 1
        yield piece


async def _put(session: aiohttp.ClientSession, node: NodeProcess, size: int, pool: list[bytes]) -> float:
    start = time.monotonic()
    headers = {"Content-Range": f"bytes 0-{size - 1}/*"}
    async with session.put(f"{node.url}/v1/files{FILE_PATH}", data=_body(size, pool), headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"ranged PUT through {node.url} -> {response.status}: {await response.text()}")
    return time.monotonic() - start


async def _get(session: aiohttp.ClientSession, node: NodeProcess, size: int) -> float:
    start = time.monotonic()
    got = 0
    async with session.get(f"{node.url}/v1/files{FILE_PATH}") as response:
        if response.status != 200:
            raise RuntimeError(f"GET through {node.url} -> {response.status}")
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            got += len(chunk)
    if got != size:
        raise RuntimeError(f"GET through {node.url} returned {got} of {size} bytes")
    return time.monotonic() - start


async def measure(nodes: list[NodeProcess], size: int, pool: list[bytes], repeat: int) -> dict[str, list[float]]:
    """Create the file on A, then ``repeat`` rounds of the phases; ``{phase: [seconds per round]}``."""
    a, b = nodes[0], nodes[1]
    results: dict[str, list[float]] = {name: [] for name in PHASES}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Authorization": f"Bearer {a.api_key}"}) as session:
        async with session.put(f"{a.url}/v1/files{FILE_PATH}", data=b"") as response:
            if response.status != 201:
                raise RuntimeError(f"creating {FILE_PATH} answered {response.status}")
        for round_number in range(repeat):
            for name, run in (("PUT", _put(session, a, size, pool)), ("GET owner", _get(session, a, size)),
                              ("GET other", _get(session, b, size))):
                seconds = await run
                results[name].append(seconds)
                print(f"  round {round_number + 1}/{repeat} {name:<10} {seconds:7.2f} s "
                      f"{mib_per_second(size, seconds):7.0f} MiB/s", file=sys.stderr, flush=True)
    return results


def stored_bytes(nodes: list[NodeProcess]) -> int:
    """Bytes of every block file the nodes keep (their own and those held for peers)."""
    total = 0
    for node in nodes:
        root = node.data_dir / "blobs"
        total += sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and len(p.name) == 64)
    return total


def report(size: int, repeat: int, by_rf: dict[int, dict[str, list[float]]], stored: dict[int, int]) -> str:
    rows = []
    for name in PHASES:
        rates = {rf: mib_per_second(size, statistics.median(by_rf[rf][name])) for rf in by_rf}
        rows.append([name, *(f"{rates[rf]:.0f}" for rf in sorted(rates)),
                     f"{ratio(rates[2], rates[1]):.2f}" if {1, 2} <= set(rates) else "-"])
    rows.append(["stored bytes", *(human_bytes(stored[rf]) for rf in sorted(stored)), "-"])
    headers = ["phase", *(f"RF {rf} MiB/s (median)" for rf in sorted(by_rf)), "RF 2 / RF 1"]
    return f"file size {human_bytes(size)}; median of {repeat} round(s); 3 nodes\n" + table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"), help="bytes of the file (256M)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.size < 1:
        parser.error("--repeat and --size must be >= 1")
    pool = [os.urandom(CHUNK_BYTES) for _ in range(16)]
    by_rf: dict[int, dict[str, list[float]]] = {}
    stored: dict[int, int] = {}
    for rf in (1, 2):
        base = Path(tempfile.mkdtemp(prefix=f"callfs-bench-replicas-{rf}-", dir=args.dir))
        try:
            print(f"RF {rf}:", file=sys.stderr, flush=True)
            with running_cluster(base, 3, backend={"replicas": rf}) as nodes:
                by_rf[rf] = asyncio.run(measure(nodes, args.size, pool, args.repeat))
                stored[rf] = stored_bytes(nodes)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    print(report(args.size, args.repeat, by_rf, stored))
    return 0


if __name__ == "__main__":
    sys.exit(main())
