#!/usr/bin/env python3
"""Random 4 KiB writes, each followed by ``fsync``, through a ``callfs-mount`` FUSE mount and on the local disk.

One node (embedded defaults) in a temporary directory; its volume mounted with the daemonised ``callfs-mount``.
A file of ``--size`` bytes of random data is written to the local disk and uploaded to the node with one
direct ``PUT`` (timed). Then one loop — ``pwrite`` 4 KiB of fresh random bytes at a random 4 KiB-aligned
offset, ``fsync``, for ``--ops`` operations — runs on that file through the mount and on the local copy, with
the same offsets and bytes, so both files end identical (checked by SHA-256 at the end).

Printed: operations per second of each, the bytes the node received per operation (from its
``callfs_http_received_bytes_total`` counter) and the mount daemon's CPU per operation. The mount uploads only
what a write changed; the scheme it replaced uploaded the whole file on every ``fsync``, so that scheme's row
is *implied* from this run's own direct ``PUT`` of the file: one such upload per operation (``--size`` bytes,
the PUT's seconds), a ceiling it could not beat.

Usage: ``python3 bench/fuse_random_writes.py [--size 64M] [--ops 300] [--dir /var/tmp]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from callfs.client import CallFSClient
from figures import human_bytes, parse_size, ratio, table
from fuse_fio import CpuMeter, make_volume
from services import mounted_volume, running_node

BLOCK = 4096
VOLUME = "/volumes/bench"


def random_writes(size: int, ops: int, seed: int) -> list[tuple[int, bytes]]:
    """``ops`` (offset, 4 KiB of random bytes) pairs at 4 KiB-aligned offsets inside ``size`` bytes."""
    chooser = random.Random(seed)
    return [(chooser.randrange(0, size // BLOCK) * BLOCK, chooser.randbytes(BLOCK)) for _ in range(ops)]


def write_loop(path: Path, writes: list[tuple[int, bytes]]) -> float:
    """Seconds to ``pwrite`` + ``fsync`` every write into the existing file ``path``, in order."""
    fd = os.open(path, os.O_RDWR)
    try:
        started = time.perf_counter()
        for offset, data in writes:
            os.pwrite(fd, data, offset)
            os.fsync(fd)
        return time.perf_counter() - started
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def received_bytes(url: str, key: str) -> float:
    """The node's ``callfs_http_received_bytes_total``."""

    async def read() -> str:
        async with CallFSClient(url, key) as client:
            return await client.metrics()

    for line in asyncio.run(read()).splitlines():
        if line.startswith("callfs_http_received_bytes_total "):
            return float(line.split()[1])
    raise RuntimeError("the node reports no callfs_http_received_bytes_total")


def timed(operation: Callable[[CallFSClient], object], url: str, key: str) -> float:
    async def run() -> float:
        async with CallFSClient(url, key) as client:
            started = time.perf_counter()
            await operation(client)  # type: ignore[misc]
            return time.perf_counter() - started

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("64M"), help="bytes of the file")
    parser.add_argument("--ops", type=int, default=300, help="4 KiB writes, each followed by fsync")
    parser.add_argument("--dir", default=None, help="where the node, the mount and the local file live")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="callfs-fuse-writes-", dir=args.dir))
    local = base / "local.bin"
    with local.open("wb") as out:
        for _ in range(args.size // (1 << 20)):
            out.write(os.urandom(1 << 20))
        out.write(os.urandom(args.size % (1 << 20)))
    try:
        with running_node(base / "node") as node:
            url, key = node.url, node.key_for("root")
            asyncio.run(make_volume(url, key, VOLUME))
            put_seconds = timed(lambda c: c.upload(f"{VOLUME}/data.bin", local), url, key)
            with mounted_volume(node, VOLUME, base / "mount") as mount:
                return run(args, url, key, local, mount.path / "data.bin", CpuMeter(mount.pid), put_seconds)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(args: argparse.Namespace, url: str, key: str, local: Path, mounted: Path, meter: CpuMeter,
        put_seconds: float) -> int:
    writes = random_writes(args.size, args.ops, seed=1)
    warm_up = random_writes(args.size, 1, seed=2)  # the node converts the file to blocks on its first write
    write_loop(mounted, warm_up)
    write_loop(local, warm_up)
    received = received_bytes(url, key)
    meter.start()
    mount_seconds = write_loop(mounted, writes)
    cpu = meter.stop()
    sent_per_op = (received_bytes(url, key) - received) / args.ops
    local_seconds = write_loop(local, writes)
    same = sha256_of(mounted) == sha256_of(local)

    local_iops = args.ops / local_seconds
    mount_iops = args.ops / mount_seconds
    whole_iops = 1 / put_seconds
    rows = [
        ["local disk", f"{local_iops:.0f}", "-", "-", "1"],
        ["mount, ranged uploads (measured)", f"{mount_iops:.1f}", human_bytes(sent_per_op),
         f"{cpu / args.ops * 1e6:.0f} µs", f"{ratio(mount_iops, local_iops):.4f}"],
        ["mount, whole-file uploads (implied)", f"≤ {whole_iops:.2f}", human_bytes(args.size), "-",
         f"{ratio(whole_iops, local_iops):.5f}"],
    ]
    print(f"file {human_bytes(args.size)}, {args.ops} random 4 KiB writes, fsync after each; "
          f"direct PUT of the file: {put_seconds:.2f} s")
    print(table(["4 KiB write + fsync", "ops/s", "sent to node per op", "daemon CPU per op", "vs local disk"],
                rows))
    print(f"ranged / whole-file: {ratio(mount_iops, whole_iops):.0f}x the operations, "
          f"{ratio(args.size, sent_per_op):.0f}x fewer bytes sent per operation")
    print(f"mount file and local file identical after the loop: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
