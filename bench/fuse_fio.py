#!/usr/bin/env python3
"""fio through a ``callfs-mount`` FUSE mount, next to a direct HTTP GET of the same file and the raw disk.

One node (embedded defaults: SQLite, in-process locks, local-disk blobs) in a temporary directory; its volume
``/volumes/bench`` mounted with the daemonised ``callfs-mount`` (as the CSI node plugin mounts it). In one run:

1. sequential write, 1 MiB blocks, ``--size`` bytes, ``end_fsync=1`` (the upload on fsync is timed) — on the
   raw disk (a file beside the node's data directory) and through the mount;
2. sequential read, 1 MiB blocks, of the same files (``invalidate=1``: page cache dropped first);
3. the same file fetched with a direct HTTP GET (aiohttp, 1 MiB chunks, discarded), and the raw-disk file
   uploaded with a direct PUT (``CallFSClient.upload`` from the file, as the mount uploads its buffer): the
   API's own ceilings;
4. random read, 4 KiB blocks, ``--runtime`` seconds — raw disk and mount (IOPS);
5. small files: ``--files`` files of 128 KiB created and written through the mount (files/s), then each one
   ``stat``-ed after the attribute cache expired (a HEAD each; stats/s).

The last column is the mount daemon's CPU time (user + system, from ``/proc/<pid>/stat``) per MiB or per
operation of each workload through the mount: unlike rates, it hardly moves when other work shares the
machine. Ratios compare the mount with the raw disk, and the mount's sequential write and read with the direct PUT and
GET. Memory,
CPU and disk are shared by the node, the mount daemon and fio on this machine.

Usage: ``python3 bench/fuse_fio.py [--size 256M] [--runtime 10] [--files 200] [--dir /var/tmp]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from callfs.client import CallFSClient, files_url_path
from figures import human_bytes, mib_per_second, parse_size, ratio, table
from services import mounted_volume, running_node

SMALL_FILE = 128 * 1024


def fio(name: str, filename: Path, rw: str, bs: str, size: int, *, runtime: int | None = None) -> dict[str, Any]:
    """Run one fio job; returns its JSON ``jobs[0]`` section. Raises ``RuntimeError`` when fio fails."""
    args = ["fio", f"--name={name}", f"--filename={filename}", f"--rw={rw}", f"--bs={bs}", f"--size={size}",
            "--ioengine=psync", "--fallocate=none", "--invalidate=1", "--output-format=json"]
    if rw == "write":
        args.append("--end_fsync=1")
    if runtime is not None:
        args += [f"--runtime={runtime}", "--time_based"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"fio {name} failed: {result.stderr}")
    job: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{"):])["jobs"][0]
    return job


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads; proc(5) fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds process ``pid`` spends between :meth:`start` and :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._started = 0.0

    def start(self) -> None:
        self._started = cpu_seconds(self._pid)

    def stop(self) -> float:
        return cpu_seconds(self._pid) - self._started


def bandwidth(job: dict[str, Any], kind: str) -> float:
    """MiB/s of the ``read`` or ``write`` side of a fio job."""
    return float(job[kind]["bw_bytes"]) / (1024 * 1024)


async def http_get_seconds(url: str, key: str, path: str) -> tuple[int, float]:
    """Bytes and seconds of one streamed GET of ``path`` (1 MiB chunks, discarded)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        started = time.perf_counter()
        total = 0
        async with http.get(url + files_url_path(path)) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_chunked(1024 * 1024):
                total += len(chunk)
        return total, time.perf_counter() - started


async def http_put_seconds(url: str, key: str, source: Path, path: str) -> tuple[int, float]:
    """Bytes and seconds of one streamed PUT of the local file ``source`` to ``path``."""
    async with CallFSClient(url, key) as client:
        size = source.stat().st_size
        started = time.perf_counter()
        await client.upload(path, source, size=size)
        return size, time.perf_counter() - started


async def make_volume(url: str, key: str, path: str) -> None:
    async with CallFSClient(url, key) as client:
        await client.mkdir(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"))
    parser.add_argument("--runtime", type=int, default=10, help="seconds of 4 KiB random reads")
    parser.add_argument("--files", type=int, default=200, help="small files of 128 KiB")
    parser.add_argument("--dir", default=None, help="where the node, the mount and the raw-disk file live")
    args = parser.parse_args()
    if shutil.which("fio") is None:
        print("fio is not installed (Debian package fio)", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="callfs-fuse-fio-", dir=args.dir))
    raw = base / "raw"
    raw.mkdir()
    try:
        with running_node(base / "node") as node:
            asyncio.run(make_volume(node.url, node.key_for("root"), "/volumes/bench"))
            with mounted_volume(node, "/volumes/bench", base / "mount") as mount:
                return run(args, node.url, node.key_for("root"), mount.path, raw, CpuMeter(mount.pid))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(args: argparse.Namespace, url: str, key: str, mountpoint: Path, raw: Path, meter: CpuMeter) -> int:
    size = args.size
    mib = size / (1024 * 1024)
    rows: list[list[str]] = []
    raw_write = fio("raw-write", raw / "seq", "write", "1M", size)
    meter.start()
    fuse_write = fio("fuse-write", mountpoint / "seq", "write", "1M", size)
    cpu_write = meter.stop()
    raw_read = fio("raw-read", raw / "seq", "read", "1M", size)
    meter.start()
    fuse_read = fio("fuse-read", mountpoint / "seq", "read", "1M", size)
    cpu_read = meter.stop()
    got, seconds = asyncio.run(http_get_seconds(url, key, "/volumes/bench/seq"))
    assert got == size, f"GET returned {got} bytes, expected {size}"
    http_read = mib_per_second(got, seconds)
    put, seconds = asyncio.run(http_put_seconds(url, key, raw / "seq", "/volumes/bench/direct-put"))
    http_write = mib_per_second(put, seconds)
    raw_rand = fio("raw-randread", raw / "seq", "randread", "4k", size, runtime=args.runtime)
    meter.start()
    fuse_rand = fio("fuse-randread", mountpoint / "seq", "randread", "4k", size, runtime=args.runtime)
    cpu_rand = meter.stop()

    w_raw, w_fuse = bandwidth(raw_write, "write"), bandwidth(fuse_write, "write")
    r_raw, r_fuse = bandwidth(raw_read, "read"), bandwidth(fuse_read, "read")
    rows.append(["seq write 1 MiB (MiB/s)", f"{w_raw:.0f}", f"{w_fuse:.0f}", f"{http_write:.0f} (PUT)",
                 f"{ratio(w_fuse, w_raw):.2f} (vs PUT {ratio(w_fuse, http_write):.2f})",
                 f"{cpu_write / mib * 1000:.1f} ms/MiB"])
    rows.append(["seq read 1 MiB (MiB/s)", f"{r_raw:.0f}", f"{r_fuse:.0f}", f"{http_read:.0f} (GET)",
                 f"{ratio(r_fuse, r_raw):.2f} (vs GET {ratio(r_fuse, http_read):.2f})",
                 f"{cpu_read / mib * 1000:.1f} ms/MiB"])
    i_raw, i_fuse = float(raw_rand["read"]["iops"]), float(fuse_rand["read"]["iops"])
    reads = max(1, int(fuse_rand["read"]["total_ios"]))
    rows.append(["rand read 4 KiB (IOPS)", f"{i_raw:.0f}", f"{i_fuse:.0f}", "-", f"{ratio(i_fuse, i_raw):.3f}",
                 f"{cpu_rand / reads * 1e6:.0f} µs/op"])

    small = mountpoint / "small"
    small.mkdir()
    payload = os.urandom(SMALL_FILE)
    meter.start()
    started = time.perf_counter()
    for index in range(args.files):
        (small / f"f{index}").write_bytes(payload)
    create_rate = args.files / (time.perf_counter() - started)
    cpu_create = meter.stop()
    raw_small = raw / "small"
    raw_small.mkdir()
    started = time.perf_counter()
    for index in range(args.files):
        (raw_small / f"f{index}").write_bytes(payload)
    raw_create_rate = args.files / (time.perf_counter() - started)
    time.sleep(1.2)  # attribute cache (1 s) and kernel entry cache expire: every stat asks the server
    meter.start()
    started = time.perf_counter()
    for index in range(args.files):
        os.stat(small / f"f{index}")
    stat_rate = args.files / (time.perf_counter() - started)
    cpu_stat = meter.stop()
    started = time.perf_counter()
    for index in range(args.files):
        os.stat(raw_small / f"f{index}")
    raw_stat_rate = args.files / (time.perf_counter() - started)
    rows.append(["create+write 128 KiB (files/s)", f"{raw_create_rate:.0f}", f"{create_rate:.0f}", "-",
                 f"{ratio(create_rate, raw_create_rate):.3f}", f"{cpu_create / args.files * 1e6:.0f} µs/op"])
    rows.append(["stat, cold cache (stats/s)", f"{raw_stat_rate:.0f}", f"{stat_rate:.0f}", "-",
                 f"{ratio(stat_rate, raw_stat_rate):.4f}", f"{cpu_stat / args.files * 1e6:.0f} µs/op"])
    print(f"file size {human_bytes(size)}, random reads {args.runtime}s, {args.files} small files")
    print(table(["workload", "raw disk", "FUSE mount", "direct HTTP", "mount / raw", "daemon CPU"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
