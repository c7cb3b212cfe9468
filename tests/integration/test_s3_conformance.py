"""S3 compatibility: the MinIO Go SDK's functional test suite (built by ``hack/s3-conformance.sh``) against a node.

The suite runs in full mode with ``RUN_ON_FAIL=1``: every test runs whatever failed before it, and a test whose
server answered ``NotImplemented`` (or that found a feature missing) is reported ``NA`` (not applicable). A test
counts as passed when it logged a PASS and no FAIL. This test asserts that every test of the suite ran and
ended as expected, and that the node never answered it with a 500 (``InternalError``):

- NA only for the tests in :data:`KNOWN_NA`, each naming the feature docs/s3.md lists as not served;
- FAIL only for the tests in :data:`KNOWN_FAILURES`, each with the reason it fails here;
- PASS for every other test, and for none of the listed ones (a listed test that passes is taken off the list).

The counts (docs/s3.md quotes them) are printed: ``pytest -s`` shows them.

The suite's versioning tests make their bucket with object lock, which the node refuses, so they end NA before
sending a versioning request. A second run uses the suite's versioning variant (``hack/s3-conformance.sh
build-versioning``: those tests make their bucket without object lock, nothing else changed) and asserts that
they pass (:data:`VERSIONING_OUTCOMES`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.app_node import AppNode
from support.kube import REPO
from support.s3_face import credentials, s3_url

SCRIPT = REPO / "hack" / "s3-conformance.sh"
BUILD_TIMEOUT = 600  # seconds; about 50 s cold on the 2-core machine, module downloads included
RUN_TIMEOUT = 600  # seconds; the suite itself takes about a minute

SUITE_SIZE = 87
"""Tests in the suite at the pinned minio-go version: fewer results mean the suite stopped early."""

_V2 = "signs with AWS Signature Version 2, which the node refuses (deprecated by AWS; docs/s3.md)"
_TRAILER_MD5 = "sends x-amz-checksum-md5, a checksum S3 does not define; the node checks the S3 set only"
KNOWN_FAILURES: dict[str, str] = {
    **{name: _V2 for name in (
        "testComposeMultipleSources", "testComposeObjectErrorCasesWrapper", "testCopyObjectV2",
        "testCopyObjectWithChecksums", "testFGetObjectContextV2", "testFPutObjectContextV2", "testFPutObjectV2",
        "testFunctionalV2", "testGetObjectClosedTwiceV2", "testGetObjectContextV2", "testGetObjectReadAtFunctionalV2",
        "testGetObjectReadSeekFunctionalV2", "testMakeBucketErrorV2", "testMakeBucketRegionsV2",
        "testPutObject0ByteV2", "testPutObjectContextV2", "testPutObjectMetadataNonUSASCIIV2",
        "testPutObjectNoLengthV2", "testPutObjectsUnknownV2", "testReplaceObjectWithChecksums",
        "testUserMetadataCopyingWrapper",
    )},
    "testPutObjectWithChecksums": _TRAILER_MD5,
    "testPutObjectWithTrailingChecksums": _TRAILER_MD5,
    "testPutMultipartObjectWithChecksums": _TRAILER_MD5,
    "testTrailingChecksums": "expects the object's CRC32C of the upload back on GET (x-amz-checksum-crc32c); the "
                             "node checks checksums on upload but does not store them",
    "testPresignedPostPolicy": "POST-form (browser) uploads are not served (docs/s3.md, out of scope)",
    "testPresignedPostPolicyEmptyFileName": "POST-form (browser) uploads are not served",
    "testPresignedPostPolicyWrongFile": "POST-form (browser) uploads are not served",
    "testListUnsorted": "asks for MinIO's ListObjects extension with user metadata (metadata=true), which S3 "
                        "does not define",
    "testGetObjectAttributesErrorCases": "enables versioning, then expects NoSuchKey from GetObjectAttributes "
                                         "(not served: NotImplemented) on a missing key",
    "testListObjectsChecksums": "uploads with the CRC64NVME trailing checksum, which the node does not check "
                                "(x-amz-trailer: InvalidRequest)",
}

_LOCK = "makes a bucket with object lock (docs/s3.md: object lock is not served)"
KNOWN_NA: dict[str, str] = {
    **{name: _LOCK for name in (
        "testListMultipartUpload", "testRemoveMultipleObjectsWithResult", "testRemoveObjects", "testRemoveObjectsIter",
        "testGetBucketTagging", "testSetBucketTagging", "testRemoveBucketTagging",
        # The versioning tests make their bucket with object lock before enabling versioning.
        "testPutObjectWithVersioning", "testListObjectVersions", "testStatObjectWithVersioning",
        "testGetObjectWithVersioning", "testCopyObjectWithVersioning", "testConcurrentCopyObjectWithVersioning",
        "testComposeObjectWithVersioning", "testRemoveObjectWithVersioning", "testRemoveObjectsWithVersioning",
        "testObjectTaggingWithVersioning",
    )},
    "testGetObjectAttributes": "enables versioning, then calls GetObjectAttributes (docs/s3.md: not served)",
    "testCors": "bucket CORS (docs/s3.md: not served)",
    "testCorsSetGetDelete": "bucket CORS (docs/s3.md: not served)",
    "testFunctional": "bucket policies (docs/s3.md: not served)",
    "testGetObjectACLContext": "ACLs (docs/s3.md: not served)",
    "testBucketNotification": "bucket notifications (docs/s3.md: not served; the suite skips it without a target)",
    "testGetObjectS3Zip": "MinIO's s3zip extension (docs/s3.md: MinIO extensions are not served)",
    "testObjectAnnotations": "MinIO's object annotations (docs/s3.md: MinIO extensions are not served)",
    "testPutObjectWithAutomaticChecksums": "expects the upload's checksum echoed by PutObject (docs/s3.md: "
                                           "checksums are checked, not stored or returned)",
}


VERSIONING_OUTCOMES: dict[str, str] = {
    **{name: "PASS" for name in (
        "testPutObjectWithVersioning", "testListObjectVersions", "testStatObjectWithVersioning",
        "testGetObjectWithVersioning", "testCopyObjectWithVersioning", "testConcurrentCopyObjectWithVersioning",
        "testComposeObjectWithVersioning", "testRemoveObjectWithVersioning", "testRemoveObjectsWithVersioning",
    )},
    "testObjectTaggingWithVersioning": "NA",  # object tagging (docs/s3.md: not served)
}
"""The outcomes of the versioning tests in the versioning variant of the suite."""


@dataclass
class Outcome:
    """What the suite said of one test: ``status`` (PASS, FAIL or NA) and the first failure's text."""

    status: str = "NA"
    detail: str = ""
    steps: list[str] = field(default_factory=list)


def outcomes(lines: Iterable[str]) -> dict[str, Outcome]:
    """Fold the suite's JSON log lines into one :class:`Outcome` per test name (``minio-go: `` prefix dropped):
    FAIL if any step failed, else PASS if any passed, else NA. Lines that are not JSON objects are ignored."""
    result: dict[str, Outcome] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "status" not in entry:
            continue
        name = str(entry.get("name", "")).removeprefix("minio-go: ")
        outcome = result.setdefault(name, Outcome())
        status = entry["status"]
        outcome.steps.append(status)
        if status == "FAIL" and outcome.status != "FAIL":
            outcome.status = "FAIL"
            outcome.detail = f"{entry.get('function', '')}: {entry.get('error') or entry.get('message', '')}"
        elif status == "PASS" and outcome.status == "NA":
            outcome.status = "PASS"
    return result


def build(target: str) -> Path:
    """The suite binary ``hack/s3-conformance.sh <target>`` builds (``build`` or ``build-versioning``)."""
    done = subprocess.run(["bash", str(SCRIPT), target], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, f"hack/s3-conformance.sh {target} failed:\n{done.stderr[-4000:]}"
    return Path(done.stdout.strip())


@pytest.fixture(scope="session")
def suite_binary() -> Path:
    return build("build")


@pytest.fixture(scope="session")
def versioning_binary() -> Path:
    return build("build-versioning")


def run_suite(binary: Path, node: AppNode, tmp_path: Path) -> tuple[dict[str, Outcome], str]:
    """Run the suite ``binary`` against ``node`` as alice: the outcome of every test and a summary line. Asserts
    that the node never answered with a 500 and that every test ran."""
    access_key, secret = credentials(node, "alice")
    env = {**os.environ, "SERVER_ENDPOINT": s3_url(node).removeprefix("http://"),
           "ACCESS_KEY": access_key, "SECRET_KEY": secret, "ENABLE_HTTPS": "0", "ENABLE_KMS": "0",
           "MINT_MODE": "full", "RUN_ON_FAIL": "1", "MINT_DATA_DIR": ""}
    log = tmp_path / "suite.jsonl"
    with log.open("w") as out:
        # The suite writes its scratch files (FPutObject/FGetObject) to its working directory.
        subprocess.run([str(binary)], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                       timeout=RUN_TIMEOUT, check=False)
    text = log.read_text()
    results = outcomes(text.splitlines())
    counts = {status: sum(o.status == status for o in results.values()) for status in ("PASS", "FAIL", "NA")}
    summary = f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['NA']} not applicable of {len(results)}"
    print(f"minio-go functional suite ({binary.name}): {summary}")
    # minio-go logs an error's message (ours: "We encountered an internal error"), or the status of a HEAD.
    assert not re.search(r"internal ?error|internal server error", text, re.IGNORECASE), \
        f"the node answered a request of the suite with a 500; see {log}"
    assert len(results) >= SUITE_SIZE, f"the suite stopped early ({summary}); its log is in {log}"
    return results, summary


@pytest.mark.timeout(BUILD_TIMEOUT + RUN_TIMEOUT)
def test_minio_go_functional_suite(suite_binary: Path, s3_node_sqlite: AppNode, tmp_path: Path) -> None:
    results, summary = run_suite(suite_binary, s3_node_sqlite, tmp_path)
    expected = {name: "FAIL" for name in KNOWN_FAILURES} | {name: "NA" for name in KNOWN_NA}
    wrong = {name: o for name, o in results.items() if o.status != expected.get(name, "PASS")}
    assert not wrong, f"tests not ending as expected ({summary}):\n" + "\n".join(
        f"  {name}: {o.status}, expected {expected.get(name, 'PASS')} {o.detail[:300]}"
        for name, o in sorted(wrong.items()))


@pytest.mark.timeout(BUILD_TIMEOUT + RUN_TIMEOUT)
def test_minio_go_versioning_tests(versioning_binary: Path, s3_node_sqlite: AppNode, tmp_path: Path) -> None:
    results, summary = run_suite(versioning_binary, s3_node_sqlite, tmp_path)
    wrong = {name: results.get(name, Outcome("missing")) for name, status in VERSIONING_OUTCOMES.items()
             if results.get(name, Outcome("missing")).status != status}
    assert not wrong, f"versioning tests not ending as expected ({summary}):\n" + "\n".join(
        f"  {name}: {o.status}, expected {VERSIONING_OUTCOMES[name]} {o.detail[:300]}"
        for name, o in sorted(wrong.items()))


def test_outcomes_fold_steps_per_test() -> None:
    lines = [
        json.dumps({"name": "minio-go: testA", "function": "f", "status": "PASS"}),
        json.dumps({"name": "minio-go: testA", "function": "g", "status": "FAIL", "error": "boom"}),
        json.dumps({"name": "minio-go: testB", "status": "NA"}),
        json.dumps({"name": "minio-go: testC", "status": "NA"}),
        json.dumps({"name": "minio-go: testC", "status": "PASS"}),
        "not json", "[1]",
    ]
    result = outcomes(lines)
    assert {name: o.status for name, o in result.items()} == {"testA": "FAIL", "testB": "NA", "testC": "PASS"}
    assert result["testA"].detail == "g: boom"
