"""The S3 face with the real aws-cli (the ``awscli`` dev dependency, run as a process) against a node: the
high-level ``aws s3`` commands (multipart uploads included), ``aws s3api`` calls, presigned URLs, error codes,
and the REST view of what aws-cli wrote."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from support.app_node import AppNode
from support.s3_face import REGION, credentials, s3_url

AWS = Path(sys.executable).parent / "aws"
MIB = 1024 * 1024


class AwsCli:
    """``aws`` for one user of a node, with a configuration of its own in ``home`` (path-style addressing,
    Signature Version 4 for presigned URLs too, multipart above 5 MiB in
    parts of 5 MiB, no retries), never the machine's ``~/.aws``."""

    def __init__(self, node: AppNode, home: Path, user: str = "alice") -> None:
        access_key, secret = credentials(node, user)
        config = home / "aws-config"
        config.write_text(
            "[default]\n"
            f"region = {REGION}\n"
            "max_attempts = 1\n"
            "s3 =\n"
            "    addressing_style = path\n"
            "    signature_version = s3v4\n"
            "    multipart_threshold = 5MB\n"
            "    multipart_chunksize = 5MB\n"
        )
        self.endpoint = s3_url(node)
        self.env = {**os.environ, "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
                    "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret, "HOME": str(home),
                    "AWS_PAGER": ""}
        self.cwd = home

    def run(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``aws --endpoint-url <node> <args>`` (``input_text`` on its standard input); the caller checks
        the exit status."""
        return subprocess.run([str(AWS), "--endpoint-url", self.endpoint, *args], env=self.env, cwd=self.cwd,
                              input=input_text, capture_output=True, text=True, timeout=120, check=False)

    def ok(self, *args: str, input_text: str | None = None) -> str:
        """Run and expect success; the standard output."""
        done = self.run(*args, input_text=input_text)
        assert done.returncode == 0, f"aws {' '.join(args)}: {done.returncode}\n{done.stderr}"
        return done.stdout

    def api(self, *args: str) -> Any:
        """``aws s3api <args>`` expecting success, its JSON answer (``None`` when it prints nothing)."""
        out = self.ok("s3api", *args, "--output", "json")
        return json.loads(out) if out.strip() else None

    def error(self, *args: str) -> str:
        """Run and expect a failure answered by the node; the standard error (it names the S3 error code)."""
        done = self.run(*args)
        assert done.returncode != 0, f"aws {' '.join(args)} succeeded: {done.stdout}"
        assert "InternalError" not in done.stderr and "(500)" not in done.stderr, done.stderr
        return done.stderr


def _file(path: Path, size: int) -> str:
    """Write ``size`` pseudo-random bytes to ``path`` (streamed, 1 MiB at a time); their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        block = hashlib.sha256(path.name.encode()).digest() * (MIB // 32)
        written = 0
        while written < size:
            piece = block[: min(MIB, size - written)]
            piece = bytes([written // MIB % 251]) + piece[1:]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def aws(s3_node_sqlite: AppNode, tmp_path: Path) -> AwsCli:
    return AwsCli(s3_node_sqlite, tmp_path)


def test_high_level_commands(aws: AwsCli, s3_node_sqlite: AppNode, tmp_path: Path) -> None:
    aws.ok("s3", "mb", "s3://cli")
    assert "cli" in aws.ok("s3", "ls").split()
    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_bytes(b"hello from aws-cli\n")
    big_sha = _file(big, 12 * MIB + 123)  # three parts of a multipart upload
    aws.ok("s3", "cp", str(small), "s3://cli/docs/small.txt")
    aws.ok("s3", "cp", str(big), "s3://cli/data/big.bin")
    listing = aws.ok("s3", "ls", "--recursive", "s3://cli")
    assert "docs/small.txt" in listing and "data/big.bin" in listing
    assert aws.ok("s3", "ls", "s3://cli/").split() == ["PRE", "data/", "PRE", "docs/"]

    back = tmp_path / "back.bin"
    aws.ok("s3", "cp", "s3://cli/data/big.bin", str(back))
    assert _sha256(back) == big_sha
    assert aws.ok("s3", "cp", "s3://cli/docs/small.txt", "-") == "hello from aws-cli\n"

    # The REST view of the same objects.
    rest = requests.get(f"{s3_node_sqlite.url}/v1/files/cli/docs/small.txt", timeout=10,
                        headers={"Authorization": f"Bearer {s3_node_sqlite.key_for('alice')}"})
    assert rest.status_code == 200 and rest.content == b"hello from aws-cli\n"

    aws.ok("s3", "cp", "s3://cli/data/big.bin", "s3://cli/copy/big.bin")  # a server-side copy
    synced = tmp_path / "synced"
    aws.ok("s3", "sync", "s3://cli", str(synced))
    assert _sha256(synced / "copy" / "big.bin") == big_sha
    assert (synced / "docs" / "small.txt").read_bytes() == b"hello from aws-cli\n"

    aws.ok("s3", "rm", "--recursive", "s3://cli/data")
    assert "data/big.bin" not in aws.ok("s3", "ls", "--recursive", "s3://cli")
    assert "BucketNotEmpty" in aws.error("s3", "rb", "s3://cli")
    aws.ok("s3", "rb", "--force", "s3://cli")
    assert "cli" not in aws.ok("s3", "ls").split()


def test_s3api_calls_and_presigned_urls(aws: AwsCli, tmp_path: Path) -> None:
    aws.api("create-bucket", "--bucket", "api")
    body = tmp_path / "body.txt"
    body.write_bytes(b"0123456789")
    put = aws.api("put-object", "--bucket", "api", "--key", "k.txt", "--body", str(body),
                  "--content-type", "text/plain", "--metadata", "colour=blue")
    head = aws.api("head-object", "--bucket", "api", "--key", "k.txt")
    assert head["ETag"] == put["ETag"] and head["ContentLength"] == 10
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"colour": "blue"}
    part = tmp_path / "part.txt"
    got = aws.api("get-object", "--bucket", "api", "--key", "k.txt", "--range", "bytes=2-5", str(part))
    assert got["ContentRange"] == "bytes 2-5/10" and part.read_bytes() == b"2345"
    listed = aws.api("list-objects-v2", "--bucket", "api")
    assert [o["Key"] for o in listed["Contents"]] == ["k.txt"]

    url = aws.ok("s3", "presign", "s3://api/k.txt", "--expires-in", "60").strip()
    answer = requests.get(url, timeout=10)
    assert answer.content == b"0123456789", (url, answer.text)
    assert requests.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=10).status_code == 403

    aws.api("delete-object", "--bucket", "api", "--key", "k.txt")
    aws.api("delete-bucket", "--bucket", "api")


def test_client_mistakes_answer_s3_error_codes(aws: AwsCli, s3_node_sqlite: AppNode, tmp_path: Path) -> None:
    aws.ok("s3", "mb", "s3://mine")
    assert "(404)" in aws.error("s3api", "head-bucket", "--bucket", "absent")  # HEAD answers carry no code
    assert "NoSuchKey" in aws.error("s3api", "get-object", "--bucket", "mine", "--key", "nope", str(tmp_path / "x"))
    assert "NoSuchBucket" in aws.error("s3", "ls", "s3://absent")
    assert "InvalidBucketName" in aws.error("s3api", "create-bucket", "--bucket", "Not_A_Bucket")
    aws.ok("s3", "cp", "-", "s3://mine/k", input_text="tiny")
    assert "InvalidRange" in aws.error("s3api", "get-object", "--bucket", "mine", "--key", "k", "--range",
                                       "bytes=100-200", str(tmp_path / "x"))
    bob = AwsCli(s3_node_sqlite, tmp_path, user="bob")
    assert "AccessDenied" in bob.error("s3", "ls", "s3://mine")
    forged = AwsCli(s3_node_sqlite, tmp_path)
    forged.env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-of-alice-at-all"
    assert "SignatureDoesNotMatch" in forged.error("s3", "ls", "s3://mine")
    unknown = AwsCli(s3_node_sqlite, tmp_path)
    unknown.env["AWS_ACCESS_KEY_ID"] = "NOSUCHKEYID"
    assert "InvalidAccessKeyId" in unknown.error("s3", "ls")


def test_versioning_with_s3api(aws: AwsCli, s3_node_sqlite: AppNode, tmp_path: Path) -> None:
    aws.ok("s3", "mb", "s3://history")
    assert aws.api("get-bucket-versioning", "--bucket", "history") is None
    aws.api("put-bucket-versioning", "--bucket", "history", "--versioning-configuration", "Status=Enabled")
    assert aws.api("get-bucket-versioning", "--bucket", "history")["Status"] == "Enabled"
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"first version")
    second.write_bytes(b"second version")
    old = aws.api("put-object", "--bucket", "history", "--key", "doc.txt", "--body", str(first))["VersionId"]
    new = aws.api("put-object", "--bucket", "history", "--key", "doc.txt", "--body", str(second))["VersionId"]
    listed = aws.api("list-object-versions", "--bucket", "history")
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(new, True), (old, False)]
    out = tmp_path / "out"
    got = aws.api("get-object", "--bucket", "history", "--key", "doc.txt", "--version-id", old, str(out))
    assert (got["VersionId"], out.read_bytes()) == (old, b"first version")
    marker = aws.api("delete-object", "--bucket", "history", "--key", "doc.txt")
    assert marker["DeleteMarker"] is True
    assert "NoSuchKey" in aws.error("s3api", "get-object", "--bucket", "history", "--key", "doc.txt", str(out))
    assert "NoSuchVersion" in aws.error("s3api", "get-object", "--bucket", "history", "--key", "doc.txt",
                                        "--version-id", "0" * 32, str(out))
    aws.api("delete-object", "--bucket", "history", "--key", "doc.txt", "--version-id", marker["VersionId"])
    answer = requests.get(f"{s3_node_sqlite.url}/v1/files/history/doc.txt", timeout=10,
                          headers={"Authorization": f"Bearer {s3_node_sqlite.key_for('alice')}"})
    assert (answer.status_code, answer.content) == (200, b"second version")
