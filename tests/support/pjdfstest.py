"""pjdfstest (the Rust rewrite) inside a ``callfs-mount`` of one volume on a fresh node.

``python -m support.pjdfstest BINARY [PATTERN...]`` (what ``hack/pjdfstest.sh run`` runs, as root): writes a node
config (:func:`support.node.write_node_config`: embedded SQLite metadata and in-process locks, or the config
sections given as a JSON object in the environment variable :data:`SECTIONS_VARIABLE`, e.g. PostgreSQL and
Redis), starts ``callfs server`` as a
subprocess, creates the volume ``/volumes/pjdfstest``, mounts it with the daemonised ``callfs-mount`` (as the CSI
node plugin does), runs ``BINARY -c <config> -p <mountpoint> [PATTERN...]`` there, prints its output and then
:func:`summary_line`; unmounts and stops the node whatever happened. Exit code: 0 when the suite ran to its
summary (whatever it counted), 1 otherwise.

The pjdfstest configuration (:data:`CONFIG`) names the dummy users the suite switches to: ``nobody``/``nogroup``
and ``daemon``/``daemon``, present on Debian-based systems (the suite's own defaults name a ``tests`` user that
would have to be created).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from support.mount import is_mounted, make_volume, mount_args, unmount, wait_for_exit

VOLUME = "/volumes/pjdfstest"
SECTIONS_VARIABLE = "PJDFSTEST_NODE_SECTIONS"
"""Environment variable holding node config sections (a JSON object) for the node under test."""

CONFIG = """\
[features]
# Opt-in features Linux has (``pjdfstest -l`` lists them all).
utimensat = {}
utime_now = {}
posix_fallocate = {}
rename_ctime = {}

[settings]
# Sleeps between timestamp checks, in seconds: above the mount's timestamp granularity.
naptime = 1.1
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"""
"""The pjdfstest configuration file (TOML) the run uses."""

RUN_TIMEOUT = 1800
"""Seconds the suite may take before it is stopped."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY = re.compile(
    r"Summary: (?P<failed>\d+) failed, (?P<skipped>\d+) skipped, (?P<passed>\d+) passed, "
    r"(?P<expected>\d+) expected failures, (?P<total>\d+) total")
_RESULT = re.compile(r"^(?P<name>\S+)\s+(?P<status>ok|FAILED|skipped|failed as expected|PASSED UNEXPECTEDLY)$")
_LINE = re.compile(r"pjdfstest: (?P<passed>\d+) passed, (?P<failed>\d+) failed, (?P<skipped>\d+) skipped, "
                   r"(?P<total>\d+) total")


@dataclass(frozen=True, slots=True)
class Counts:
    """Test-case counts of one run: ``passed``, ``failed`` (unexpected passes included), ``skipped``, ``total``."""

    passed: int
    failed: int
    skipped: int
    total: int


def parse_output(text: str) -> tuple[Counts, dict[str, str]]:
    """pjdfstest's output (colours allowed) → its summary :class:`Counts` and every test's status by name
    (``ok``, ``FAILED``, ``skipped``, ...).

    Raises:
        ValueError: no summary line (the suite did not run to its end).
    """
    plain = _ANSI.sub("", text)
    found = _SUMMARY.search(plain)
    if found is None:
        raise ValueError("pjdfstest printed no summary line")
    statuses = {m["name"]: m["status"] for m in map(_RESULT.match, plain.splitlines()) if m is not None}
    counts = Counts(passed=int(found["passed"]), failed=int(found["failed"]), skipped=int(found["skipped"]),
                    total=int(found["total"]))
    return counts, statuses


def summary_line(counts: Counts) -> str:
    """The last line ``hack/pjdfstest.sh run`` prints: ``pjdfstest: P passed, F failed, S skipped, T total``."""
    return (f"pjdfstest: {counts.passed} passed, {counts.failed} failed, {counts.skipped} skipped, "
            f"{counts.total} total")


def parse_summary_line(text: str) -> Counts:
    """The :class:`Counts` of the last :func:`summary_line` in ``text``.

    Raises:
        ValueError: ``text`` holds no such line.
    """
    found = list(_LINE.finditer(text))
    if not found:
        raise ValueError("no 'pjdfstest: ... total' line")
    last = found[-1]
    return Counts(passed=int(last["passed"]), failed=int(last["failed"]), skipped=int(last["skipped"]),
                  total=int(last["total"]))


def run_suite(binary: str, mountpoint: Path, config: Path, patterns: list[str]) -> tuple[str, Counts]:
    """Run ``binary`` with ``config`` in ``mountpoint`` (only the tests matching ``patterns``, when given);
    returns its output (stdout and stderr) and counts.

    Raises:
        ValueError: the suite ended without its summary (its output is in the message).
        subprocess.TimeoutExpired: it ran longer than :data:`RUN_TIMEOUT` seconds.
    """
    result = subprocess.run([binary, "-c", str(config), "-p", str(mountpoint), *patterns], capture_output=True,
                            text=True, timeout=RUN_TIMEOUT, errors="replace")
    output = result.stdout + result.stderr
    try:
        counts, _ = parse_output(output)
    except ValueError as exc:
        raise ValueError(f"{exc} (exit {result.returncode}):\n{output[-4000:]}") from exc
    return output, counts


def main(argv: list[str]) -> int:
    """``BINARY [PATTERN...]``: the run described in the module docstring."""
    if not argv:
        print("usage: python -m support.pjdfstest BINARY [PATTERN...]", file=sys.stderr)
        return 2
    from support.node import write_node_config

    binary, patterns = argv[0], argv[1:]
    base = Path(tempfile.mkdtemp(prefix="callfs-pjdfstest-"))
    base.chmod(0o755)  # the dummy users reach the mountpoint through it (the key file stays root's: 0600)
    node = write_node_config(base / "node", **json.loads(os.environ.get(SECTIONS_VARIABLE) or "{}"))
    mountpoint = base / "mnt"
    mountpoint.mkdir()
    mountpoint.chmod(0o755)
    key_file = base / "key"
    key_file.write_text(node.key_for("root"))
    key_file.chmod(0o600)
    config = base / "pjdfstest.toml"
    config.write_text(CONFIG)
    pid_file, log_file = base / "mount.pid", base / "mount.log"
    try:
        node.start()
        make_volume(node, VOLUME)
        mounted = subprocess.run(mount_args(node, VOLUME, mountpoint, key_file, pid_file=pid_file,
                                            log_file=log_file), capture_output=True, text=True, timeout=90)
        if mounted.returncode != 0:
            print(f"callfs-mount failed ({mounted.returncode}): {mounted.stderr}", file=sys.stderr)
            return 1
        try:
            output, counts = run_suite(binary, mountpoint, config, patterns)
        except (ValueError, subprocess.TimeoutExpired) as exc:
            print(f"pjdfstest did not complete: {exc}", file=sys.stderr)
            return 1
        print(_ANSI.sub("", output), end="" if output.endswith("\n") else "\n")
        print(summary_line(counts), flush=True)
        return 0
    finally:
        if is_mounted(mountpoint):
            unmount(mountpoint)
        if pid_file.exists():
            wait_for_exit(int(pid_file.read_text().strip()))
        node.stop()
        if os.environ.get("KEEP") == "1":
            print(f"kept {base} (node.log, mount.log)", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
