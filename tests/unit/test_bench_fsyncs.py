"""The pure part of bench/fsyncs_per_put.py: reading the summary ``strace -c`` writes."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fsyncs_per_put import sync_calls

SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 93.10    0.289421        1008       287           fsync
  6.90    0.021000         700        30         2 fdatasync
------ ----------- ----------- --------- --------- ----------------
100.00    0.310421        1000       317         2 total
"""


def test_sync_calls_reads_the_calls_column() -> None:
    assert sync_calls(SUMMARY) == {"fsync": 287, "fdatasync": 30}


def test_sync_calls_of_an_empty_summary_is_empty() -> None:
    header = SUMMARY.splitlines()[:2]
    assert sync_calls("\n".join(header)) == {}
