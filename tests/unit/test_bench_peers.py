"""The pure parts of the peer benchmark (bench/peers.py): the load generator's targets and its report."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from peers import NO_MORE_TARGETS, System, parse_report, targets_text


def _report(codes: dict[str, int], errors: list[str], requests: int) -> str:
    latencies = {"50th": 2_000_000, "99th": 9_000_000}
    return json.dumps({"requests": requests, "throughput": 123.5, "latencies": latencies,
                       "status_codes": codes, "errors": errors})  # fmt: skip


def test_targets_are_one_block_per_request_with_headers_and_body(tmp_path: Path) -> None:
    body = tmp_path / "b"
    text = targets_text("PUT", ["http://h/a", "http://h/b"], ["Authorization: Bearer k"], body)
    block = "PUT http://h/{}\nAuthorization: Bearer k\n@" + str(body)
    assert text == block.format("a") + "\n\n" + block.format("b") + "\n"


def test_workers_reaching_the_end_of_the_targets_are_not_requests() -> None:
    result = parse_report(_report({"201": 100, "0": 3}, [NO_MORE_TARGETS], 103))
    assert (result.requests, result.ok, result.status_codes) == (100, True, {"201": 100})
    assert result.p50 == pytest.approx(0.002) and result.p99 == pytest.approx(0.009)


@pytest.mark.parametrize(
    ("codes", "errors"), [({"201": 99, "500": 1}, []), ({"201": 99, "0": 2}, ["dial tcp: refused"])]
)
def test_any_failed_request_fails_the_phase(codes: dict[str, int], errors: list[str]) -> None:
    assert not parse_report(_report(codes, [*errors, NO_MORE_TARGETS], 100)).ok


def test_urls_of_each_api() -> None:
    ours = System("callfs", "callfs", "http://n", "k")
    weed = System("seaweedfs", "seaweedfs", "http://f", put_query="?fsync=true")
    assert (ours.file_url("/a/b"), ours.mkdir_url("/d"), ours.list_url("/d", 10)) == (
        "http://n/v1/files/a/b", "http://n/v1/files/d/", "http://n/v1/directories/d")
    assert (weed.file_url("/a/b"), weed.mkdir_url("/d"), weed.list_url("/d", 10)) == (
        "http://f/a/b", "http://f/d/", "http://f/d/?limit=10")
    assert ours.headers() == ["Authorization: Bearer k"] and weed.headers() == []
