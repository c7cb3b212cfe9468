#!/usr/bin/env python3
"""The S3 face of a node next to SeaweedFS's S3 gateway, same client, same run.

Starts one node (``callfs server`` on its embedded defaults: SQLite, in-process locks, local-disk blobs) with
its S3 listener, and SeaweedFS (``weed server`` with its S3 gateway, as the tests start it:
``tests/support/s3.py``), both on loopback in a temporary directory. Then, for each server in turn, with one
boto3 client (path-style, SigV4, signed payloads: what boto3 sends over plain HTTP):

1. ``--count`` PutObject of 4 KiB objects one after the other, then as many GetObject (objects per second);
2. one ``--size`` object uploaded with ``upload_fileobj`` (multipart, 8 MiB parts, s3transfer's default 10
   threads) from a repeating in-memory pattern, and downloaded with ``download_fileobj`` into a sink that
   discards (MiB/s);
3. CompleteMultipartUpload alone (seconds) of a ``--completion-size`` object, twice: uploaded in 8 MiB parts
   (block-aligned: CallFS shares the parts' blocks) and in parts of 8 MiB less 64 KiB (unaligned: CallFS copies
   the parts' bytes into the object, as every completion did before block sharing). The parts are uploaded
   first, one after the other, outside the timing.

The ratio is CallFS / SeaweedFS (above 1.00: CallFS faster). Everything started is stopped and removed.

Usage: ``python3 bench/s3_face.py [--count 300] [--size 256M] [--completion-size 1G] [--dir /var/tmp]``
(``--size 1G`` for the 1 GiB figure).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

from figures import MIB, human_bytes, mib_per_second, parse_size, ratio, table
from services import running_node

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from support.ports import free_port  # noqa: E402
from support.s3 import running_seaweedfs  # noqa: E402

SMALL = 4096


class Pattern(io.RawIOBase):
    """``size`` bytes of a repeating 1 MiB pattern, read without holding them (the upload's source)."""

    def __init__(self, size: int) -> None:
        self._block = os.urandom(MIB)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left, MIB)
        buffer[:n] = self._block[:n]
        self._left -= n
        return n


class Sink(io.RawIOBase):
    """Counts and discards what is written (the download's target)."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.count += len(data)
        return len(data)


def make_client(endpoint: str, access_key: str, secret: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret,
                        region_name="us-east-1",
                        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                          max_pool_connections=16, read_timeout=300))


def timed(job: Callable[[], object]) -> float:
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


def measure(s3: Any, bucket: str, count: int, size: int) -> dict[str, float]:
    """Rates for one server: 4 KiB PUT and GET (objects/s), large upload and download (MiB/s)."""
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(SMALL)
    put = timed(lambda: [s3.put_object(Bucket=bucket, Key=f"small/{i}", Body=body) for i in range(count)])
    get = timed(lambda: [s3.get_object(Bucket=bucket, Key=f"small/{i}")["Body"].read() for i in range(count)])
    transfer = TransferConfig(multipart_chunksize=8 * MIB)
    up = timed(lambda: s3.upload_fileobj(Pattern(size), bucket, "large", Config=transfer))
    sink = Sink()
    down = timed(lambda: s3.download_fileobj(bucket, "large", sink, Config=transfer))
    if sink.count != size:
        raise RuntimeError(f"downloaded {sink.count} bytes of {size}")
    return {"put": count / put, "get": count / get, "up": mib_per_second(size, up),
            "down": mib_per_second(size, down)}


ALIGNED_PART = 8 * MIB
UNALIGNED_PART = 8 * MIB - 64 * 1024


def completion_seconds(s3: Any, bucket: str, key: str, size: int, part_size: int) -> float:
    """Upload ``size`` random bytes to ``key`` in parts of ``part_size`` bytes (the last shorter), then time
    CompleteMultipartUpload alone (seconds)."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, size, part_size), start=1):
        body = os.urandom(min(part_size, size - offset))
        tag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": tag})
    elapsed = timed(lambda: s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                                         MultipartUpload={"Parts": parts}))
    if s3.head_object(Bucket=bucket, Key=key)["ContentLength"] != size:
        raise RuntimeError(f"{key} is not {size} bytes long after completion")
    return elapsed


def measure_completion(s3: Any, bucket: str, size: int) -> dict[str, float]:
    """CompleteMultipartUpload seconds for one server: block-aligned and unaligned parts."""
    return {"aligned": completion_seconds(s3, bucket, "joined-aligned", size, ALIGNED_PART),
            "unaligned": completion_seconds(s3, bucket, "joined-unaligned", size, UNALIGNED_PART)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="4 KiB objects written and read")
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"), help="the large object")
    parser.add_argument("--completion-size", type=parse_size, default=parse_size("256M"),
                        help="the object whose CompleteMultipartUpload is timed")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary directory goes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="callfs-bench-s3-", dir=args.dir))
    results: dict[str, dict[str, float]] = {}
    completions: dict[str, dict[str, float]] = {}
    try:
        with running_node(work / "node", s3={"listen_addr": f"127.0.0.1:{free_port()}"}) as node:
            config = json.loads(node.config_path.read_text())
            key, credential = next(iter(config["auth"]["s3_credentials"].items()))
            s3 = make_client("http://" + config["s3"]["listen_addr"], key, credential["secret"])
            results["CallFS"] = measure(s3, "bench", args.count, args.size)
            completions["CallFS"] = measure_completion(s3, "bench", args.completion_size)
        with running_seaweedfs(work / "seaweedfs") as server:
            s3 = make_client(server.endpoint, server.access_key, server.secret_key)
            results["SeaweedFS"] = measure(s3, "bench", args.count, args.size)
            completions["SeaweedFS"] = measure_completion(s3, "bench", args.completion_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours, theirs = results["CallFS"], results["SeaweedFS"]

    def row(label: str, key: str) -> list[str]:
        return [label, f"{ours[key]:.0f}", f"{theirs[key]:.0f}", f"{ratio(ours[key], theirs[key]):.2f}"]

    large = human_bytes(args.size)
    rows = [row("4 KiB PUT (objects/s)", "put"), row("4 KiB GET (objects/s)", "get"),
            row(f"{large} upload (MiB/s)", "up"), row(f"{large} download (MiB/s)", "down")]
    print(table(["", "CallFS S3", "SeaweedFS S3", "ratio"], rows))
    print()
    whole = human_bytes(args.completion_size)
    ours_done, theirs_done = completions["CallFS"], completions["SeaweedFS"]
    done_rows = [[f"CompleteMultipartUpload of {whole}, {label} (s)", f"{ours_done[key]:.3f}",
                  f"{theirs_done[key]:.3f}"]
                 for label, key in (("8 MiB parts", "aligned"), ("8 MiB - 64 KiB parts", "unaligned"))]
    print(table(["", "CallFS S3", "SeaweedFS S3"], done_rows))


if __name__ == "__main__":
    main()
