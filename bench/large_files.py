#!/usr/bin/env python3
"""Large-file throughput of one storage node, next to this machine's own limits measured in the same run.

For each concurrency ``c`` (default 1 and 4), in this order so that each pair is measured close in time:

1. disk reference: ``c`` parallel ``dd bs=1M conv=fsync`` copies of a ``--size`` file to the node's disk;
2. loopback reference: the ``c`` dd outputs ``sendfile(2)``-ed at once over loopback to a reader that discards;
   and the same copies behind a bare HTTP answer to this script's own aiohttp GET reader (the client ceiling);
3. PUT: ``c`` different files of ``--size`` bytes uploaded at once through ``PUT /v1/files/...``, each body
   streamed from a generator (1 MiB pieces, never the whole file in memory);
4. GET: the ``c`` files downloaded at once, bodies read in 1 MiB chunks and discarded;
5. the files are deleted through the API (and the dd copies removed) before the next ``c``.

Throughput is aggregate (``c * size / wall seconds``, MiB/s); the ratio compares PUT with the disk reference
and GET with the loopback reference at the same ``c``; for GET the client ceiling and the ratio to it are
shown too, since the benchmark's Python client shares the 2 cores with the node. ``node peak RSS`` is the
node process's ``VmHWM`` during the phase (reset before it through ``/proc/<pid>/clear_refs``): it shows
whether memory per transfer stays bounded. The node runs on the embedded defaults (SQLite, in-process
locks, local-disk blobs) in a temporary directory that is removed at the end.

With ``--repeat N`` every phase runs N rounds and the fastest counts (later PUT rounds overwrite the files).

Usage: ``python3 bench/large_files.py [--size 1G] [--concurrency 1,4] [--repeat 1] [--dir /var/tmp]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from figures import MIB, human_bytes, mib_per_second, parse_int_list, parse_size, ratio, table
from machine_limits import dd_write, sendfile_http_server, sendfile_over_loopback
from process_memory import reset_peak, resident_bytes
from services import NodeProcess, running_node

CHUNK_BYTES = MIB
"""Upload piece and download read size (bytes)."""


@dataclass(frozen=True)
class Phase:
    """One measured phase: ``nbytes`` moved in ``seconds`` (wall); ``peak_rss`` of the node in bytes (or None)."""

    name: str
    concurrency: int
    nbytes: int
    seconds: float
    peak_rss: int | None = None

    @property
    def mib_s(self) -> float:
        return mib_per_second(self.nbytes, self.seconds)


def write_pattern_file(path: Path, size: int, block: bytes) -> None:
    """Write ``size`` bytes of ``block`` repeated to ``path`` (the same bytes the uploads send)."""
    with path.open("wb") as out:
        remaining = size
        while remaining > 0:
            piece = block[: min(len(block), remaining)]
            out.write(piece)
            remaining -= len(piece)


async def pattern_body(size: int, block: bytes) -> AsyncIterator[bytes]:
    """``size`` bytes of ``block`` repeated, yielded in ``len(block)`` pieces (memory: one block)."""
    remaining = size
    while remaining > 0:
        piece = block if remaining >= len(block) else block[:remaining]
        remaining -= len(piece)
        yield piece


def file_url(node: NodeProcess, path: str) -> str:
    """``<node url>/v1/files/<path>``: the API address of file ``path`` on ``node``."""
    return f"{node.url}/v1/files/{path.lstrip('/')}"


async def put_file(session: aiohttp.ClientSession, node: NodeProcess, path: str, size: int, block: bytes,
                   request_id: str | None = None) -> int:
    """Upload ``size`` bytes of ``block`` repeated to ``path`` on ``node`` (``Content-Length`` set, body streamed);
    returns the status (201 created, 200 overwritten). Raises ``RuntimeError`` with the request, its
    ``X-Request-ID`` (default ``bench-put-<file name>``) and the answer on any other status."""
    request_id = request_id or f"bench-put-{path.rsplit('/', 1)[-1]}"
    headers = {"Content-Length": str(size), "X-Request-ID": request_id}
    async with session.put(file_url(node, path), data=pattern_body(size, block), headers=headers) as response:
        body = await response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"PUT {path} [{request_id}] -> {response.status}: {body[:300]!r}")
        return response.status


async def get_file(session: aiohttp.ClientSession, url: str, size: int, request_id: str | None = None) -> None:
    """Download ``url`` reading the body in 1 MiB chunks that are discarded. Raises ``RuntimeError`` with the
    request and its ``X-Request-ID`` (default ``bench-get-<file name>``) on a status other than 200 or a body
    of another length than ``size`` bytes."""
    request_id = request_id or f"bench-get-{url.rsplit('/', 1)[-1]}"
    headers = {"X-Request-ID": request_id}
    async with session.get(url, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url} [{request_id}] -> {response.status}: {(await response.read())[:300]!r}")
        received = 0
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            received += len(chunk)
    if received != size:
        raise RuntimeError(f"GET {url} [{request_id}] delivered {received} bytes, expected {size}")


async def _delete(session: aiohttp.ClientSession, node: NodeProcess, path: str) -> None:
    async with session.delete(file_url(node, path)) as response:
        if response.status != 204:
            raise RuntimeError(f"DELETE {path} -> {response.status}: {(await response.read())[:300]!r}")


async def api_phases(node: NodeProcess, concurrency: int, size: int, block: bytes, repeat: int = 1) -> list[Phase]:
    """PUT then GET ``concurrency`` files of ``size`` bytes at once, each ``repeat`` times (later PUTs overwrite);
    delete them. Per phase: the fastest round's seconds and the highest node peak RSS of all rounds."""
    assert node.process is not None
    pid = node.process.pid
    paths = [f"/bench/large/c{concurrency}-{i}.bin" for i in range(concurrency)]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {node.api_key}"}
    phases = []
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as session:
        for name in ("PUT", "GET"):
            best, peak = float("inf"), None
            for _ in range(repeat):
                peak_known = reset_peak(pid)
                start = time.monotonic()
                if name == "PUT":
                    await asyncio.gather(*(put_file(session, node, path, size, block) for path in paths))
                else:
                    await asyncio.gather(*(get_file(session, file_url(node, path), size) for path in paths))
                best = min(best, time.monotonic() - start)
                if peak_known:
                    peak = max(peak or 0, resident_bytes(pid)[1])
            phases.append(Phase(name, concurrency, size * concurrency, best, peak))
        await asyncio.gather(*(_delete(session, node, path) for path in paths))
    return phases


async def client_ceiling(base_url: str, concurrency: int, size: int) -> float:
    """Seconds for this benchmark's GET code to read ``concurrency`` files at once from a bare sendfile server."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.monotonic()
        await asyncio.gather(*(get_file(session, f"{base_url}/{i}", size) for i in range(concurrency)))
        return time.monotonic() - start


def reference_phases(source: Path, scratch: Path, concurrency: int, repeat: int = 1) -> list[Phase]:
    """dd ``concurrency`` copies of ``source`` into ``scratch`` at once, then send them over loopback twice:
    raw sendfile to a discarding reader, and sendfile behind HTTP to this benchmark's aiohttp reader.
    Each is done ``repeat`` times; the fastest round counts."""
    size = source.stat().st_size
    targets = [scratch / f"dd-{concurrency}-{i}.bin" for i in range(concurrency)]
    try:
        dd_seconds = min(dd_write(source, targets) for _ in range(repeat))
        loop_seconds = min(sendfile_over_loopback(targets) for _ in range(repeat))
        with sendfile_http_server(targets) as url:
            client_seconds = min(asyncio.run(client_ceiling(url, concurrency, size)) for _ in range(repeat))
    finally:
        for target in targets:
            target.unlink(missing_ok=True)
    return [
        Phase("dd write (conv=fsync)", concurrency, size * concurrency, dd_seconds),
        Phase("loopback sendfile", concurrency, size * concurrency, loop_seconds),
        Phase("aiohttp GET from sendfile", concurrency, size * concurrency, client_seconds),
    ]


def source_dir(size: int) -> Path | None:
    """``/dev/shm`` when it has room for the dd source (so dd reads from RAM, not the disk it writes to)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 2 * size:
        return shm
    return None


def report(size: int, results: dict[int, dict[str, Phase]], baseline_rss: int, repeat: int) -> str:
    """The figures as a Markdown table, one row per API phase with its machine reference and ratio."""
    rows = []
    for concurrency, phases in results.items():
        for name, reference in (("PUT", "dd write (conv=fsync)"), ("GET", "loopback sendfile")):
            phase, ref = phases[name], phases[reference]
            client = phases["aiohttp GET from sendfile"] if name == "GET" else None
            rows.append([
                name, str(concurrency), human_bytes(phase.nbytes), f"{phase.seconds:.2f}", f"{phase.mib_s:.0f}",
                f"{reference} {ref.mib_s:.0f}", f"{ratio(phase.mib_s, ref.mib_s):.2f}",
                f"{client.mib_s:.0f} ({ratio(phase.mib_s, client.mib_s):.2f})" if client else "-",
                human_bytes(phase.peak_rss) if phase.peak_rss is not None else "n/a",
            ])
    headers = ["op", "c", "total", "seconds", "MiB/s (aggregate)", "machine reference MiB/s", "ratio",
               "client ceiling MiB/s (ratio)", "node peak RSS"]
    return (f"file size {human_bytes(size)}; best of {repeat} round(s); node RSS at start "
            f"{human_bytes(baseline_rss)}\n"
            + table(headers, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"),
                        help="bytes per file, e.g. 1G (default), 256M")
    parser.add_argument("--concurrency", type=parse_int_list, default=[1, 4],
                        help="comma-separated concurrencies (default 1,4)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds per phase; the fastest counts (default 1; 3 steadies a shared machine)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent of the temporary directory (node data, dd copies); default $TMPDIR")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    size: int = args.size
    block = os.urandom(CHUNK_BYTES)
    base = Path(tempfile.mkdtemp(prefix="callfs-bench-large-", dir=args.dir))
    shm_source: Path | None = None
    try:
        with running_node(base / "node") as node:
            assert node.process is not None
            baseline_rss = resident_bytes(node.process.pid)[0]
            scratch = base / "node" / "dd"  # same filesystem as the node's blobs
            scratch.mkdir()
            shm = source_dir(size)
            source = (shm or base) / f"callfs-bench-source-{os.getpid()}.bin"
            shm_source = source
            write_pattern_file(source, size, block)
            results: dict[int, dict[str, Phase]] = {}
            for concurrency in args.concurrency:
                print(f"c={concurrency}: machine references ...", file=sys.stderr, flush=True)
                phases = reference_phases(source, scratch, concurrency, args.repeat)
                print(f"c={concurrency}: PUT/GET through the API ...", file=sys.stderr, flush=True)
                phases += asyncio.run(api_phases(node, concurrency, size, block, args.repeat))
                results[concurrency] = {phase.name: phase for phase in phases}
                for phase in phases:
                    print(f"  {phase.name:<22} c={concurrency} {phase.seconds:7.2f} s {phase.mib_s:8.0f} MiB/s",
                          file=sys.stderr, flush=True)
    finally:
        if shm_source is not None:
            shm_source.unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)
    print(report(size, results, baseline_rss, args.repeat))
    client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"benchmark client peak RSS {human_bytes(client_peak)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
