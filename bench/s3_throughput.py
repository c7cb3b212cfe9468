#!/usr/bin/env python3
"""Throughput of the S3 byte backend next to a direct aiobotocore transfer to the same server, in the same run.

The script starts SeaweedFS (``weed server`` with its S3 gateway, as the tests do: ``tests/support/s3.py``) on
loopback in a temporary directory, creates a bucket, then for each of ``--repeat`` rounds measures, in this
order so that each pair is close in time (odd rounds swap backend and direct within each pair):

1. backend write: ``S3Backend.create`` → ``write`` in 1 MiB chunks → ``commit`` of a ``--size`` blob
   (multipart with ``--part-size`` parts, one part in flight while the next fills);
2. direct write: CreateMultipartUpload, UploadPart of ready-made ``--part-size`` bodies one after the other,
   CompleteMultipartUpload (the same part size; no buffering at all: the reference);
3. backend read: ``open`` → ``iter_range(0, size, 1 MiB)``, chunks discarded;
4. direct read: one GetObject, body read in 1 MiB chunks and discarded;
5. both objects are deleted.

Figures are medians over the rounds (MiB/s, wall clock); the ratio is backend / direct (1.00 = no overhead).
The server, its data and the temporary directory are removed at the end.

Usage: ``python3 bench/s3_throughput.py [--size 256M] [--part-size 8M] [--repeat 3] [--dir /var/tmp]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from figures import MIB, human_bytes, mib_per_second, parse_size, ratio, table

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from callfs.backends.s3 import S3Backend  # noqa: E402
from support.s3 import S3Server, running_seaweedfs  # noqa: E402

CHUNK_BYTES = MIB
"""Write piece and read size (bytes), as the HTTP layer of a node uses."""


def direct_client_config() -> AioConfig:
    """The reference client: path-style, one connection pool, no optional checksums (like the backend's)."""
    return AioConfig(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        read_timeout=120,
    )


async def timed(action: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def backend_write(backend: S3Backend, blob_id: str, size: int, block: bytes) -> None:
    writer = await backend.create(blob_id)
    remaining = size
    while remaining > 0:
        piece = block if remaining >= len(block) else block[:remaining]
        await writer.write(piece)
        remaining -= len(piece)
    await writer.commit()


async def backend_read(backend: S3Backend, blob_id: str, size: int) -> None:
    reader = await backend.open(blob_id)
    got = 0
    async for piece in reader.iter_range(0, size, CHUNK_BYTES):
        got += len(piece)
    await reader.close()
    if got != size:
        raise RuntimeError(f"backend read {got} bytes, expected {size}")


async def direct_write(client: Any, bucket: str, key: str, size: int, part_size: int, block: bytes) -> None:
    full_part = block * (part_size // len(block)) + block[: part_size % len(block)]
    upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    offset, number = 0, 1
    while offset < size:
        body = full_part if size - offset >= part_size else full_part[: size - offset]
        response = await client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=body
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
        offset += len(body)
        number += 1
    await client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


async def direct_read(client: Any, bucket: str, key: str, size: int) -> None:
    response = await client.get_object(Bucket=bucket, Key=key)
    got = 0
    async with response["Body"] as body:
        while chunk := await body.read(CHUNK_BYTES):
            got += len(chunk)
    if got != size:
        raise RuntimeError(f"direct read {got} bytes, expected {size}")


async def measure(server: S3Server, bucket: str, size: int, part_size: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per phase and round: ``{"backend write": [...], "direct write": [...], ...}``."""
    block = os.urandom(CHUNK_BYTES)
    seconds: dict[str, list[float]] = {
        "backend write": [], "direct write": [], "backend read": [], "direct read": []
    }  # fmt: skip
    backend = S3Backend(server.backend_config(bucket), part_size=part_size)
    await backend.start()
    session = get_session()
    try:
        async with session.create_client(
            "s3", endpoint_url=server.endpoint, region_name=server.region, aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key, config=direct_client_config(),
        ) as client:  # fmt: skip
            for round_number in range(repeat):
                blob_id, direct_key = secrets.token_hex(16), f"direct/{secrets.token_hex(8)}"
                phases = {
                    "backend write": partial(backend_write, backend, blob_id, size, block),
                    "direct write": partial(direct_write, client, bucket, direct_key, size, part_size, block),
                    "backend read": partial(backend_read, backend, blob_id, size),
                    "direct read": partial(direct_read, client, bucket, direct_key, size),
                }
                order = list(phases)
                if round_number % 2:  # odd rounds: direct first, so neither side always runs second
                    order = ["direct write", "backend write", "direct read", "backend read"]
                for phase in order:
                    seconds[phase].append(await timed(phases[phase]))
                await backend.delete(blob_id)
                await client.delete_object(Bucket=bucket, Key=direct_key)
    finally:
        await backend.close()
    return seconds


def report(size: int, part_size: int, repeat: int, seconds: dict[str, list[float]]) -> str:
    rates = {phase: mib_per_second(size, statistics.median(values)) for phase, values in seconds.items()}
    rows = []
    for op in ("write", "read"):
        backend_rate, direct_rate = rates[f"backend {op}"], rates[f"direct {op}"]
        rows.append([op, f"{backend_rate:.0f}", f"{direct_rate:.0f}", f"{ratio(backend_rate, direct_rate):.2f}"])
    header = (
        f"S3 backend vs direct aiobotocore, SeaweedFS on loopback: blob {human_bytes(size)}, "
        f"parts {human_bytes(part_size)}, median of {repeat} rounds"
    )
    return header + "\n\n" + table(["op", "backend MiB/s", "direct MiB/s", "backend/direct"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"), help="blob size (default 256M)")
    parser.add_argument("--part-size", type=parse_size, default=parse_size("8M"), help="part size (default 8M)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary server directory")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    base = Path(tempfile.mkdtemp(prefix="callfs-s3-bench-", dir=args.dir))
    try:
        with running_seaweedfs(base / "seaweedfs") as server:
            bucket = f"callfs-bench-{secrets.token_hex(4)}"
            server.client().create_bucket(Bucket=bucket)
            seconds = asyncio.run(measure(server, bucket, args.size, args.part_size, args.repeat))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(report(args.size, args.part_size, args.repeat, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
