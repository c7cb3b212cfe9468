"""The parser of pjdfstest's output (``support.pjdfstest``), which the conformance floor relies on."""

from __future__ import annotations

import pytest

from support.pjdfstest import Counts, parse_output, parse_summary_line, summary_line

OUTPUT = (
    "chmod::change_perm::regular                                               \x1b[32mok\x1b[0m\n"
    "chmod::update_ctime::fifo                                                 \x1b[31mFAILED\x1b[0m\n"
    "\tcalled `Result::unwrap()` on an `Err` value: ENOSYS\n"
    "posix_fallocate::enospc                                                   \x1b[33mskipped\x1b[0m\n"
    "\trequires features: posix_fallocate\n"
    "\n\x1b[1;31mSummary\x1b[0m: 1 \x1b[31mfailed\x1b[0m, 1 skipped, 1 passed, 0 expected failures, 3 total\n"
)


def test_counts_and_statuses_come_from_the_coloured_output() -> None:
    counts, statuses = parse_output(OUTPUT)
    assert counts == Counts(passed=1, failed=1, skipped=1, total=3)
    assert statuses == {"chmod::change_perm::regular": "ok", "chmod::update_ctime::fifo": "FAILED",
                        "posix_fallocate::enospc": "skipped"}


def test_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no summary"):
        parse_output(OUTPUT.rsplit("\n\n", 1)[0])


def test_summary_line_round_trips_and_the_last_one_counts() -> None:
    first, last = Counts(1, 2, 3, 6), Counts(10, 0, 2, 12)
    assert parse_summary_line(f"{summary_line(first)}\nnoise\n{summary_line(last)}\n") == last
    with pytest.raises(ValueError):
        parse_summary_line("pjdfstest did not complete")
