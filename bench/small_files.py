#!/usr/bin/env python3
"""Small-file operation rates of one storage node on both metadata stores, and of a cluster of nodes.

For each store (``sqlite``: the embedded defaults, SQLite + in-process locks; ``postgres``: a real PostgreSQL
and a real Redis started by this script on loopback in a throwaway directory) and each concurrency ``c``
(default 16 and 64), four phases run one after the other on ``--ops`` distinct files of ``--file-size`` bytes
(default 4 KiB):

* ``PUT`` creates each file (201), ``GET`` reads it back whole (200, body length checked), ``HEAD`` stats it
  (200), ``DELETE`` removes it (204).

With ``--nodes 1,3`` the ``postgres`` store also runs as a cluster of 3 nodes (``services.running_cluster``: one
PostgreSQL, one Redis, one ``auth`` section); the single node runs with the same cluster settings. Requests go
round-robin over the nodes: PUT of file ``i`` goes to node ``i mod n`` (which then owns its bytes); GET, HEAD and
DELETE of file ``i`` go to node ``(i + i div n) mod n``, so 1 in ``n`` of them reaches the owner and the others
are forwarded to it (GET, DELETE) or answered from the shared metadata (HEAD). ``sqlite`` is one node only.

``c`` workers share one aiohttp session whose connector allows ``c`` connections in all (over all nodes); each
worker takes the next file and sends its request, so at most ``c`` requests are in flight. A phase's figure is
``ops / wall seconds``; p50/p99 are per-request latencies in milliseconds. An answer with another status, or a
transport error, counts as an error and is listed at the end with its request ID and the node log lines that
carry the same ID. The client runs on the same 2 cores as the node, so the figures include the client's cost.

Usage: ``python3 bench/small_files.py [--ops 2000] [--concurrency 16,64] [--stores sqlite,postgres] [--nodes 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from figures import parse_int_list, parse_size, percentile, table
from services import NodeProcess, running_cluster, running_node

STORES = ("sqlite", "postgres")
EXPECTED_STATUS = {"PUT": 201, "GET": 200, "HEAD": 200, "DELETE": 204}
"""The answer each phase expects for a file it created (docs/rest-api.md)."""


@dataclass(frozen=True)
class Failure:
    """One unexpected answer: the request, the status (0 for a transport error) and what came back."""

    method: str
    path: str
    request_id: str
    status: int
    detail: str


@dataclass
class PhaseResult:
    """``ops`` requests of one method in ``seconds`` (wall); ``latencies`` in seconds, one per request."""

    store: str
    concurrency: int
    method: str
    ops: int
    nodes: int = 1
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("inf")


async def _one(session: aiohttp.ClientSession, url: str, method: str, path: str, request_id: str,
               body: bytes, result: PhaseResult) -> None:
    headers = {"X-Request-ID": request_id}
    start = time.monotonic()
    try:
        async with session.request(method, url, data=body if method == "PUT" else None,
                                   headers=headers) as response:
            content = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.failures.append(Failure(method, path, request_id, 0, repr(exc)))
        return
    finally:
        result.latencies.append(time.monotonic() - start)
    if status != EXPECTED_STATUS[method]:
        result.failures.append(Failure(method, path, request_id, status, content[:300].decode(errors="replace")))
    elif method == "GET" and len(content) != len(body):
        result.failures.append(Failure(method, path, request_id, status,
                                       f"body of {len(content)} bytes, expected {len(body)}"))


def target_node(method: str, index: int, count: int) -> int:
    """Which of ``count`` nodes (0-based) gets request ``index`` of ``method``: PUT round-robin (``i mod n``, so
    file ``i`` is owned by node ``i mod n``); the other methods shifted by ``i div n``, so that over each ``n * n``
    files every node serves every node's files once (1 in ``n`` requests local, the rest forwarded)."""
    if method == "PUT":
        return index % count
    return (index + index // count) % count


async def run_phase(session: aiohttp.ClientSession, nodes: list[NodeProcess], result: PhaseResult, prefix: str,
                    body: bytes) -> None:
    """Send ``result.ops`` requests of ``result.method`` with ``result.concurrency`` workers, to the node chosen
    by :func:`target_node` among ``nodes``; fill ``result``."""
    next_index = iter(range(result.ops))
    tag = f"bench-{result.store}-n{len(nodes)}-c{result.concurrency}-{result.method.lower()}"

    async def worker() -> None:
        for i in next_index:
            path = f"{prefix}/f{i:06d}.bin"
            url = f"{nodes[target_node(result.method, i, len(nodes))].url}/v1/files{path}"
            await _one(session, url, result.method, path, f"{tag}-{i}", body, result)

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(result.concurrency)))
    result.seconds = time.monotonic() - start


async def run_store(nodes: list[NodeProcess], store: str, concurrencies: list[int], ops: int,
                    body: bytes) -> list[PhaseResult]:
    """All phases at every concurrency against ``nodes`` (one cluster; all share the API key of ``nodes[0]``);
    the files of each concurrency live in their own directory."""
    results = []
    for concurrency in concurrencies:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=120)
        headers = {"Authorization": f"Bearer {nodes[0].api_key}"}
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
            for method in EXPECTED_STATUS:
                result = PhaseResult(store, concurrency, method, ops, len(nodes))
                await run_phase(session, nodes, result, f"/bench/small-c{concurrency}", body)
                results.append(result)
                print(f"  {store:<8} nodes={len(nodes)} c={concurrency:<3} {method:<6} "
                      f"{result.ops_per_second:8.0f} ops/s "
                      f"p50 {percentile(result.latencies, 50) * 1000:6.1f} ms "
                      f"p99 {percentile(result.latencies, 99) * 1000:6.1f} ms errors {len(result.failures)}",
                      file=sys.stderr, flush=True)
    return results


@contextmanager
def nodes_for(store: str, count: int, base: Path) -> Iterator[list[NodeProcess]]:
    """``count`` nodes on ``store``, everything under ``base``: for ``sqlite`` one node on the embedded defaults
    (``ValueError`` when ``count`` > 1); for ``postgres`` a cluster of ``count`` nodes sharing a PostgreSQL and a
    Redis (``services.running_cluster``, also for one node, so 1 and n nodes run with the same settings)."""
    if store == "sqlite":
        if count != 1:
            raise ValueError("the sqlite store is one node only; a cluster needs postgres")
        with running_node(base / "node") as node:
            yield [node]
    else:
        with running_cluster(base, count) as nodes:
            yield nodes


def summarize_log_line(line: str) -> str:
    """A one-line digest of a node log line: for JSON, ``timestamp level event [request_id]: last exception line``."""
    if not line.startswith("{"):
        return line[:300]
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return line[:300]
    digest = f"{record.get('timestamp', '')} {record.get('level', '')} {record.get('event', '')}"
    if record.get("request_id"):
        digest += f" [{record['request_id']}]"
    exception = str(record.get("exception", "")).strip().splitlines()
    if exception:
        digest += f": {exception[-1]}"
    return digest


def log_digest(node: NodeProcess, request_ids: set[str], limit: int = 10) -> list[str]:
    """Digests of node log lines that mention one of ``request_ids`` or are at error level, identical digests
    (ignoring timestamp and request ID) counted once with ``(xN)``; at most ``limit`` distinct ones."""
    if not node.log_path.exists():
        return []
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for line in node.log_path.read_text(errors="replace").splitlines():
        level = ""
        if line.startswith("{"):
            try:
                level = str(json.loads(line).get("level", "")).lower()
            except json.JSONDecodeError:
                level = ""
        if not (level in ("error", "critical") or any(rid in line for rid in request_ids)):
            continue
        digest = summarize_log_line(line)
        key = re.sub(r"^\S+ |\[[^]]*\]", "", digest)
        if key not in counts and len(counts) >= limit:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, digest)
    return [f"{first[key]} (x{count})" if count > 1 else first[key] for key, count in counts.items()]


def report(results: list[PhaseResult]) -> str:
    """The figures as a Markdown table: one row per store, concurrency and method."""
    rows = [
        [r.store, str(r.nodes), str(r.concurrency), r.method, str(r.ops), f"{r.seconds:.2f}", f"{r.ops_per_second:.0f}",
         f"{percentile(r.latencies, 50) * 1000:.1f}", f"{percentile(r.latencies, 99) * 1000:.1f}",
         str(len(r.failures))]
        for r in results
    ]
    headers = ["store", "nodes", "c", "op", "ops", "seconds", "ops/s", "p50 ms", "p99 ms", "errors"]
    return table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=2000, help="requests per phase (default 2000)")
    parser.add_argument("--concurrency", type=parse_int_list, default=[16, 64],
                        help="comma-separated concurrencies (default 16,64)")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated: sqlite, postgres")
    parser.add_argument("--nodes", type=parse_int_list, default=[1],
                        help="comma-separated node counts, e.g. 1,3 (default 1; more than 1 for postgres only)")
    parser.add_argument("--file-size", type=parse_size, default=4096, help="bytes per file (default 4096)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    args = parser.parse_args(argv)
    stores = [store.strip() for store in args.stores.split(",") if store.strip()]
    unknown = set(stores) - set(STORES)
    if unknown or args.ops < 1:
        parser.error(f"unknown store(s) {sorted(unknown)}" if unknown else "--ops must be >= 1")
    runs = [(store, count) for store in stores for count in args.nodes if store == "postgres" or count == 1]
    if not runs:
        parser.error("nothing to run: sqlite runs on one node only (add 1 to --nodes or the postgres store)")
    body = os.urandom(args.file_size)
    base = Path(tempfile.mkdtemp(prefix="callfs-bench-small-", dir=args.dir))
    results: list[PhaseResult] = []
    problems: list[str] = []
    try:
        for store, count in runs:
            label = f"{store} x{count}"
            print(f"{label}: starting ...", file=sys.stderr, flush=True)
            with nodes_for(store, count, base / f"{store}-{count}") as nodes:
                store_results = asyncio.run(run_store(nodes, store, args.concurrency, args.ops, body))
                results += store_results
                failures = [failure for result in store_results for failure in result.failures]
                if failures:
                    kinds = Counter(f"{f.method} -> {f.status}" for f in failures)
                    problems.append(f"{label}: {len(failures)} failed requests ("
                                    + ", ".join(f"{kind} x{n}" for kind, n in kinds.items()) + "); first ones:")
                    problems += [f"  {f.method} {f.path} [{f.request_id}] -> {f.status}: {f.detail}"
                                 for f in failures[:5]]
                for i, node in enumerate(nodes):
                    lines = log_digest(node, {failure.request_id for failure in failures[:5]})
                    if lines:
                        problems.append(f"{label}: node-{i} log ({node.log_path}) for those requests / at error "
                                        "level:")
                        problems += [f"  {line}" for line in lines]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.ops} ops per phase, {args.file_size}-byte files")
    print(report(results))
    if problems:
        print("Phases with errors > 0 do not measure the operation (failed requests are counted in ops/s).")
        print("\n".join(problems))
    return 1 if any(result.failures for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
