#!/usr/bin/env python3
"""Snapshot time against volume size: a copy-on-write copy (``POST /v1/copies``) next to a streamed copy.

For each ``--sizes`` entry, one volume directory is filled with files of ``--file-size`` bytes stored in blocks
(each created empty, then written with one partial ``PUT``, random bytes so that no block is shared), then:

1. **copy-on-write**: ``POST /v1/copies`` of the volume into a new directory (what the CSI controller does for
   ``CreateSnapshot`` and clones): wall seconds, and the bytes the node's object store grew by (should be 0);
2. **streamed** (up to ``--stream-max``): the same tree copied by the client file by file (``callfs_csi.clone
   .copy_tree``, what the controller does against a node without copies): wall seconds and bytes added.

One node on the embedded defaults (SQLite, in-process locks, local disk) in a temporary directory removed at the
end. Usage: ``python3 bench/snapshots.py [--sizes 64M,256M,1G] [--file-size 64M] [--stream-max 256M]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from figures import MIB, human_bytes, parse_size, table
from services import NodeProcess, running_node

BLOCK = 4 * MIB


def stored_bytes(node: NodeProcess) -> int:
    """Bytes of every object (blob or block) the node holds on disk."""
    return sum(p.stat().st_size for p in node.data_dir.rglob("objects/*/*") if p.is_file())


async def random_body(size: int) -> AsyncIterator[bytes]:
    """``size`` random bytes in 4 MiB pieces (memory: one piece)."""
    remaining = size
    while remaining > 0:
        piece = min(BLOCK, remaining)
        yield os.urandom(piece)
        remaining -= piece


async def fill(http: aiohttp.ClientSession, volume: str, size: int, file_size: int) -> int:
    """Files of ``file_size`` bytes under ``volume`` adding up to ``size``; how many."""
    count = 0
    for offset in range(0, size, file_size):
        path = f"/v1/files{volume}/f{count:04d}.bin"
        length = min(file_size, size - offset)
        async with http.put(path, data=b"") as response:
            response.raise_for_status()
        headers = {"Content-Range": f"bytes 0-{length - 1}/*", "Content-Length": str(length)}
        async with http.put(path, data=random_body(length), headers=headers) as response:
            response.raise_for_status()
        count += 1
    return count


async def run(node: NodeProcess, sizes: list[int], file_size: int, stream_max: int) -> list[list[str]]:
    from callfs.client import CallFSClient
    from callfs_csi.clone import copy_tree

    rows = []
    headers = {"Authorization": f"Bearer {node.key_for('root')}"}
    async with aiohttp.ClientSession(node.url, headers=headers) as http:
        for size in sizes:
            volume = f"/vol-{size}"
            files = await fill(http, volume, size, file_size)
            before = stored_bytes(node)
            started = time.perf_counter()
            async with http.post("/v1/copies", json={"source": volume, "destination": f"/snap-{size}",
                                                     "recursive": True}) as response:
                response.raise_for_status()
            cow = time.perf_counter() - started
            cow_added = stored_bytes(node) - before
            streamed, streamed_added = "-", "-"
            if size <= stream_max:
                before = stored_bytes(node)
                started = time.perf_counter()
                async with CallFSClient(node.url, node.key_for("root")) as fs:
                    await fs.mkdir(f"/stream-{size}")
                    await copy_tree(fs, volume, f"/stream-{size}")
                streamed = f"{time.perf_counter() - started:.2f}"
                streamed_added = human_bytes(stored_bytes(node) - before)
            rows.append([human_bytes(size), str(files), f"{cow * 1000:.1f}", human_bytes(cow_added), streamed,
                         streamed_added])
            for top in (volume, f"/snap-{size}", f"/stream-{size}"):
                async with http.delete(f"/v1/files{top}", params={"recursive": "true"}) as response:
                    if response.status not in (204, 404):
                        response.raise_for_status()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64M,256M,1G")
    parser.add_argument("--file-size", default="64M")
    parser.add_argument("--stream-max", default="256M")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="callfs-bench-snap-", dir=args.dir) as tmp, \
            running_node(Path(tmp) / "node") as node:
        rows = asyncio.run(run(node, sizes, parse_size(args.file_size), parse_size(args.stream_max)))
    print(table(["volume", "files", "copy-on-write ms", "bytes added", "streamed s", "bytes added"], rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
