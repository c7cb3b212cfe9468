"""Daemonisation and the readiness pipe (csi/callfs_csi/fuse/daemon.py), with real forks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from callfs_csi.fuse.daemon import Readiness, parse_readiness, spawn_daemon, wait_for_readiness


def test_parse_readiness() -> None:
    assert parse_readiness(b"PID 42\nOK\n") == parse_readiness(b"PID 42\nOK")
    report = parse_readiness(b"PID 42\nOK\n")
    assert (report.pid, report.ok, report.error) == (42, True, None)
    report = parse_readiness(b"PID 7\nERR volume path /x does not exist\n")
    assert (report.pid, report.ok, report.error) == (7, False, "volume path /x does not exist")
    assert parse_readiness(b"PID 7\n").error is None
    assert parse_readiness(b"ERR\n").error == "mount failed"


def test_wait_reports_a_silent_end_of_file() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"PID 3\n")
    os.close(write_end)
    report = wait_for_readiness(read_end, timeout=5)
    os.close(read_end)
    assert not report.ok and report.error == "the mount daemon exited before the mount was ready"


def test_wait_times_out() -> None:
    read_end, write_end = os.pipe()
    started = time.monotonic()
    report = wait_for_readiness(read_end, timeout=0.3)
    os.close(read_end)
    os.close(write_end)
    assert time.monotonic() - started < 5
    assert report.error == "not mounted after 0s"


def test_ready_daemon_runs_in_its_own_session(tmp_path: Path) -> None:
    out = tmp_path / "daemon.txt"

    def run(readiness: Readiness) -> int:
        out.write_text(f"{os.getpid()} {os.getsid(0)} {os.getppid()}")
        readiness.ready()
        return 0

    assert spawn_daemon(run, output_path=str(tmp_path / "log"), timeout=10) == 0
    pid, sid, _ = map(int, out.read_text().split())
    assert sid != os.getsid(0)
    assert pid != sid  # the session leader forked again: the daemon can never regain a terminal


def test_failing_daemon_makes_the_command_fail_with_its_line(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    def run(readiness: Readiness) -> int:
        readiness.fail("mountpoint /m is busy:\nsomething is mounted")
        return 1

    assert spawn_daemon(run, output_path=None, timeout=10) == 1
    assert capsys.readouterr().err == "callfs-mount: mountpoint /m is busy: something is mounted\n"


def test_crashing_daemon_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(readiness: Readiness) -> int:
        raise RuntimeError("boom")

    assert spawn_daemon(run, output_path=str(tmp_path / "log"), timeout=10) == 1
    assert capsys.readouterr().err == "callfs-mount: RuntimeError: boom\n"
    assert "RuntimeError: boom" in (tmp_path / "log").read_text()
