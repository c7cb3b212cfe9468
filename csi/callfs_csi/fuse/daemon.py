"""Daemonisation of the mount: its own session (``setsid``, double fork) and a readiness pipe.

The CSI node plugin runs ``callfs-mount``; the mount must outlive the plugin process that started
it (docs/architecture.md, "Pod mount"). So the command forks a daemon that is no child of the caller —
the intermediate process calls
``setsid`` and forks again, then exits — and the command waits on a pipe: the daemon writes ``OK`` once the
kernel has the mount (libfuse ``init``), or ``ERR <one line>`` when it cannot mount, and the command exits
0 or 1 accordingly (the command's usage: :mod:`callfs_csi.mount_main`). A daemon that dies before either message is a
failure too (the pipe reaches end-of-file).

Wire format of the pipe (pure, :func:`parse_readiness`): ``PID <n>\\n`` first, then ``OK\\n`` or
``ERR <message>\\n``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """What the daemon said: its ``pid`` (``None`` if it never said), ``ok`` once mounted, else ``error``."""

    pid: int | None
    ok: bool
    error: str | None


def parse_readiness(data: bytes) -> ReadinessReport:
    """Decode everything the daemon wrote to the pipe before closing it (or before the wait timed out)."""
    pid: int | None = None
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("PID ") and line[4:].isdigit():
            pid = int(line[4:])
        elif line == "OK":
            return ReadinessReport(pid, True, None)
        elif line.startswith("ERR"):
            return ReadinessReport(pid, False, line[3:].strip() or "mount failed")
    return ReadinessReport(pid, False, None)


class Readiness:
    """The daemon's end of the pipe (or nothing in ``--foreground`` mode). Each method sends at most once."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def _send(self, text: str) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, text.encode())

    def announce_pid(self) -> None:
        """Send ``PID <getpid()>`` so the waiting command can stop a daemon that never gets ready."""
        self._send(f"PID {os.getpid()}\n")

    def ready(self) -> None:
        """Send ``OK`` and close: the mount is live."""
        self._send("OK\n")
        self.close()

    def fail(self, message: str) -> None:
        """Send ``ERR <message>`` (one line) and close."""
        self._send("ERR " + " ".join(message.split()) + "\n")
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def wait_for_readiness(fd: int, timeout: float) -> ReadinessReport:
    """Read the pipe until end-of-file, an ``OK``/``ERR`` line, or ``timeout`` seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        report = parse_readiness(data)
        if report.ok or report.error is not None:
            return report
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ReadinessReport(report.pid, False, f"not mounted after {timeout:.0f}s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            final = parse_readiness(data)
            if final.ok or final.error is not None:
                return final
            return ReadinessReport(final.pid, False, "the mount daemon exited before the mount was ready")
        data += chunk


def spawn_daemon(run: Callable[[Readiness], int], *, output_path: str | None, timeout: float) -> int:
    """Run ``run(readiness)`` in a daemon (own session, not a child of the caller) and wait for readiness.

    Returns the exit code for the calling command: 0 when the daemon reported ``OK``; 1 (after printing
    ``callfs-mount: <error>`` on stderr) when it reported an error, died, or stayed silent for ``timeout``
    seconds (it is then sent SIGTERM). The daemon's stdin is ``/dev/null`` and its stdout/stderr go to
    ``output_path`` (appended; ``/dev/null`` when ``None``), so libfuse's own messages land in the log. The
    daemon exits with ``run``'s return value. Must be called before any thread is started (``fork``).
    """
    read_end, write_end = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(write_end)
        os.waitpid(first, 0)
        try:
            report = wait_for_readiness(read_end, timeout)
        finally:
            os.close(read_end)
        if report.ok:
            return 0
        if report.pid is not None and report.error is not None and report.error.startswith("not mounted after"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(report.pid, signal.SIGTERM)
        print(f"callfs-mount: {report.error}", file=sys.stderr)
        return 1
    # First child: a new session without a controlling terminal, then the daemon as its child.
    code = 1
    try:
        os.close(read_end)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        out = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640) if output_path else null
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        # Python-level output follows the descriptors even if sys.stdout/stderr had been replaced.
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the daemon
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        readiness = Readiness(write_end)
        readiness.announce_pid()
        try:
            code = run(readiness)
        except BaseException as exc:  # the daemon must report, whatever happened
            traceback.print_exc()
            readiness.fail(f"{type(exc).__name__}: {exc}")
        finally:
            readiness.fail("the mount daemon stopped before the mount was ready")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
