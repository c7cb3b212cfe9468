#!/usr/bin/env python3
"""fsync system calls per small PUT of one storage node (PostgreSQL + Redis, one worker process).

Starts a throwaway PostgreSQL and Redis and a node (``services.running_node``), attaches
``strace -c -f -e trace=fsync,fdatasync,syncfs,sync_file_range`` to the node process, PUTs ``--ops`` new files of
``--file-size`` bytes with ``c`` requests in flight (each value of ``--concurrency`` in turn, fresh paths), and
prints the calls counted per PUT. PostgreSQL's own fsyncs happen in its processes and are not counted (the
benchmark PostgreSQL runs with ``fsync=off`` anyway). strace slows the traced process; the counts, not the time,
are the figure.

Usage: ``python3 bench/fsyncs_per_put.py [--ops 200] [--concurrency 1,16,64] [--file-size 4096]``
(needs ``strace`` and permission to trace the node: root or ``ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from figures import parse_int_list, parse_size, table
from services import NodeProcess, running_node, running_postgres_and_redis

TRACED = "fsync,fdatasync,syncfs,sync_file_range"


async def put_files(node: NodeProcess, prefix: str, ops: int, concurrency: int, body: bytes) -> None:
    """PUT ``ops`` new files ``/<prefix>/f<i>`` with ``concurrency`` requests in flight; raises
    ``RuntimeError`` on any answer but 201."""
    headers = {"Authorization": f"Bearer {node.api_key}"}
    pending = list(range(ops))
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            while pending:
                i = pending.pop()
                async with session.put(f"{node.url}/v1/files/{prefix}/f{i}", data=body) as response:
                    if response.status != 201:
                        raise RuntimeError(f"PUT {prefix}/f{i} -> {response.status}: {await response.text()}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def sync_calls(summary: str) -> dict[str, int]:
    """``{syscall: calls}`` from the table ``strace -c`` writes (rows: time, seconds, usecs/call, calls,
    [errors,] name)."""
    calls: dict[str, int] = {}
    for line in summary.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in TRACED.split(",") and re.fullmatch(r"\d+", fields[3]):
            calls[fields[-1]] = int(fields[3])
    return calls


def measure(node: NodeProcess, out: Path, prefix: str, ops: int, concurrency: int, body: bytes) -> dict[str, int]:
    """Trace the node while the PUTs run; the sync calls strace counted."""
    assert node.process is not None
    tracer = subprocess.Popen(["strace", "-c", "-f", "-e", f"trace={TRACED}", "-o", str(out),
                               "-p", str(node.process.pid)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # strace attaches to every thread of the node
        asyncio.run(put_files(node, prefix, ops, concurrency, body))
        time.sleep(0.5)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    return sync_calls(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--concurrency", type=parse_int_list, default=[1, 16, 64])
    parser.add_argument("--file-size", type=parse_size, default=4096)
    args = parser.parse_args()
    if shutil.which("strace") is None:
        print("strace not found", file=sys.stderr)
        return 2
    body = b"x" * args.file_size
    base = Path(tempfile.mkdtemp(prefix="callfs-bench-fsyncs-"))
    rows = []
    try:
        with running_postgres_and_redis(base) as sections, running_node(base / "node", **sections) as node:
            for c in args.concurrency:
                calls = measure(node, base / f"strace-c{c}.txt", f"c{c}", args.ops, c, body)
                total = sum(calls.values())
                rows.append([str(c), str(args.ops), str(total), f"{total / args.ops:.2f}",
                             ", ".join(f"{name} {n}" for name, n in sorted(calls.items())) or "-"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.file_size}-byte new files, one node process (PostgreSQL + Redis)")
    print(table(["c", "PUTs", "sync calls", "per PUT", "calls"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
