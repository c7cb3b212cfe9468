#!/usr/bin/env python3
"""Renames against subtree size, and lookups against path depth, on SQLite and on PostgreSQL + Redis.

For each store, one node (the store's own server started by the script on loopback):

1. **rename**: for each ``--sizes`` entry ``n``, a directory holding ``n`` empty files in ``n / 100``
   subdirectories is moved (``PATCH`` with a destination) back and forth ``--repeat`` times; the median wall time
   of one move, and its ratio to the smallest tree's. Directory entries keyed by ``(parent_ino, name)`` make a
   move one row whatever lies below it, so the ratio stays near 1.
2. **lookup**: ``HEAD`` of a file at depth 1 and at ``--depth``, ``--repeat`` x 20 times each; the median time of
   one, and the deep one's ratio to the shallow one's (the walk down the path is one statement, one primary-key
   lookup per component).

Usage: ``python3 bench/renames.py [--sizes 100,1000,10000] [--depth 64] [--repeat 5] [--stores sqlite,postgres]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

from figures import table
from services import NodeProcess, running_node, running_postgres_and_redis

CONCURRENCY = 16
"""Requests in flight while a tree is filled."""


async def fill(http: aiohttp.ClientSession, top: str, count: int) -> None:
    """``count`` empty files under ``top``, 100 per subdirectory."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(f"/v1/files{top}/d{i // 100:04d}/f{i % 100:02d}")

    async def worker() -> None:
        while not queue.empty():
            async with http.put(queue.get_nowait(), data=b"") as response:
                response.raise_for_status()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def timed(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> float:
    """Seconds one request takes; raises on an error status."""
    started = time.perf_counter()
    async with http.request(method, path, **kwargs) as response:
        response.raise_for_status()
    return time.perf_counter() - started


async def measure(node: NodeProcess, sizes: list[int], depth: int, repeat: int) -> list[list[str]]:
    rows: list[list[str]] = []
    headers = {"Authorization": f"Bearer {node.key_for('root')}"}
    async with aiohttp.ClientSession(node.url, headers=headers) as http:
        first = None
        for size in sizes:
            top, away = f"/tree-{size}", f"/moved-{size}"
            await fill(http, top, size)
            moves = []
            for i in range(repeat):
                src, dst = (top, away) if i % 2 == 0 else (away, top)
                moves.append(await timed(http, "PATCH", f"/v1/files{src}", json={"destination": dst}))
            median = statistics.median(moves)
            first = first or median
            rows.append([f"rename {size:,} entries", f"{median * 1000:.2f}", f"{median / first:.2f}"])
        shallow, deep = "/shallow", "/" + "/".join(f"level{i}" for i in range(depth - 1)) + "/f"
        for path in (shallow, deep):
            async with http.put(f"/v1/files{path}", data=b"x") as response:
                response.raise_for_status()
        times = {}
        for path in (shallow, deep):
            times[path] = statistics.median(
                [await timed(http, "HEAD", f"/v1/files{path}") for _ in range(20 * repeat)]
            )
        rows.append(["HEAD at depth 1", f"{times[shallow] * 1000:.2f}", "1.00"])
        rows.append([f"HEAD at depth {depth}", f"{times[deep] * 1000:.2f}", f"{times[deep] / times[shallow]:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory(prefix="callfs-bench-renames-", dir=args.dir) as tmp, ExitStack() as stack:
            sections = stack.enter_context(running_postgres_and_redis(Path(tmp))) if store == "postgres" else {}
            node = stack.enter_context(running_node(Path(tmp) / "node", **sections))
            rows = asyncio.run(measure(node, sizes, args.depth, args.repeat))
        print(f"\n{store}:")
        print(table(["operation", "median ms", "ratio to the first row of its kind"], rows))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
