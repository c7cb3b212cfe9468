"""``callfs-operator`` as a real subprocess for e2e tests (``python -m callfs_operator.main``).

Health and metrics listen on 127.0.0.1 only; every run of one :class:`OperatorProcess` appends to its log.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.ports import free_port
from support.waiting import wait_for

START_TIMEOUT = 60.0
"""Seconds allowed for the operator's ``/healthz`` to answer after launch."""


@dataclass
class OperatorProcess:
    """The operator with ``kubeconfig``'s identity. ``scope`` is ``["--all-namespaces"]`` or
    ``["--namespace", NS, ...]``; ``extra`` are further arguments (e.g. ``--peering``)."""

    kubeconfig: Path
    log: Path
    scope: Sequence[str] = ("--all-namespaces",)
    extra: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, resync: float = 2.0) -> None:
        """Launch with a drift check every ``resync`` seconds and wait for ``/healthz``; raises
        ``AssertionError`` with the log tail when it exits or does not answer within :data:`START_TIMEOUT`."""
        port = free_port()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "callfs_operator.main", *self.scope, "--kubeconfig", str(self.kubeconfig),
                 "--listen-address", "127.0.0.1", "--health-port", str(port), "--resync-interval", str(resync),
                 *self.extra],
                stdout=out, stderr=subprocess.STDOUT,
            )
        process = self.process

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"operator exited with {process.returncode}:\n{self.read_log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_for(healthy, START_TIMEOUT, "the operator's /healthz")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` and wait (SIGKILL after 30 s); a no-op when not running."""
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def read_log(self) -> str:
        return self.log.read_text(errors="replace")
