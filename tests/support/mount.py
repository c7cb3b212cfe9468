"""Real FUSE mounts of a node's volume with ``callfs-mount``, unmounted in teardown whatever happened.

Fixture ``mount_factory(node, volume="/volumes/<name>", *, user="root", options=(), read_only=False,
mount_command=MOUNT_COMMAND)`` creates the volume directory (as root), mounts it under the test's temporary
directory with the daemonised ``callfs-mount`` (the CLI, as the CSI node plugin runs it; ``mount_command`` may
add options in front, e.g. ``--via-service``) and returns a :class:`MountedVolume`; ``node`` is any
:class:`~support.node.ServedNode`, usually the in-process ``app_node``. Teardown: ``fusermount3 -u``
every mountpoint (``umount -l`` when that fails, e.g. a busy or stale mount), then waits for each daemon to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from callfs.client import CallFSClient
from support.machine import require_fuse
from support.node import ServedNode
from support.waiting import wait_for

STARTER = (
    "import subprocess, sys, time\n"
    "result = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(result.returncode, result.stderr.strip().replace('\\n', ' '), flush=True)\n"
    "time.sleep(600)\n"
)
"""A stand-in for the CSI node plugin: runs ``callfs-mount``, prints its exit code and stderr, stays alive."""

MOUNT_COMMAND = [sys.executable, "-m", "callfs_csi.mount_main"]
"""``callfs-mount`` through the interpreter running the tests (same environment as the console script)."""


@dataclass
class MountedVolume:
    """A live mount: ``path`` the mountpoint, ``volume`` the server directory, ``pid_file``/``log_file`` of the
    daemon, ``node`` the server."""

    path: Path
    volume: str
    node: ServedNode
    pid_file: Path
    log_file: Path
    starter: subprocess.Popen[str] | None = None
    """With ``via_starter=True``: the still-running process that ran ``callfs-mount`` (own process group)."""

    def pid(self) -> int:
        """The daemon's pid (from its pid file)."""
        return int(self.pid_file.read_text().strip())

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def mount_args(node: ServedNode, volume: str, mountpoint: Path, key_file: Path, *, pid_file: Path,
               log_file: Path, options: Sequence[str] = (), read_only: bool = False,
               mount_command: Sequence[str] = MOUNT_COMMAND) -> list[str]:
    """The ``callfs-mount`` command line for these arguments."""
    args = [*mount_command, node.url, volume, str(mountpoint), "--key-file", str(key_file),
            "--pid-file", str(pid_file), "--log-file", str(log_file)]
    for option in options:
        args += ["--option", option]
    if read_only:
        args.append("--read-only")
    return args


def is_mounted(path: Path) -> bool:
    """True when ``path`` is a mount point in ``/proc/self/mountinfo`` (stale ones included)."""
    target = str(path)
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == target for line in mountinfo)


def unmount(path: Path) -> None:
    """``fusermount3 -u``; ``umount -l`` when that did not do it. Never raises."""
    if not is_mounted(path):
        return
    subprocess.run(["fusermount3", "-u", str(path)], capture_output=True, timeout=30)
    if is_mounted(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def has_exited(pid: int) -> bool:
    """True when process ``pid`` is gone, or a zombie whose threads have all exited (a thread-group leader
    turns zombie while other threads still run and hold the FUSE device open)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z" and threads <= 1


def wait_for_exit(pid: int, timeout: float = 15.0, what: str = "") -> None:
    """Poll until :func:`has_exited` (``pid``); ``AssertionError`` (naming ``what``) after ``timeout`` seconds."""
    wait_for(lambda: has_exited(pid), timeout, what or f"process {pid} to exit", 0.05)


def make_volume(node: ServedNode, volume: str) -> None:
    """Create ``volume`` on ``node`` as root."""

    async def create() -> None:
        async with CallFSClient(node.url, node.key_for("root")) as client:
            await client.mkdir(volume)

    asyncio.run(create())


@pytest.fixture
def mount_factory(tmp_path: Path) -> Iterator[Callable[..., MountedVolume]]:
    require_fuse()
    mounted: list[MountedVolume] = []

    def make(node: ServedNode, volume: str | None = None, *, user: str = "root", options: Sequence[str] = (),
             read_only: bool = False, create: bool = True, via_starter: bool = False,
             mount_command: Sequence[str] = MOUNT_COMMAND) -> MountedVolume:
        volume = volume or f"/volumes/pvc-{secrets.token_hex(4)}"
        if create:
            make_volume(node, volume)
        index = len(mounted)
        base = tmp_path / f"mount{index}"
        base.mkdir()
        mountpoint = base / "mnt"
        mountpoint.mkdir()
        key_file = base / "key"
        key_file.write_text(node.key_for(user))
        key_file.chmod(0o600)
        mount = MountedVolume(path=mountpoint, volume=volume, node=node, pid_file=base / "pid",
                              log_file=base / "mount.log")
        args = mount_args(node, volume, mountpoint, key_file, pid_file=mount.pid_file, log_file=mount.log_file,
                          options=options, read_only=read_only, mount_command=mount_command)
        mounted.append(mount)
        if via_starter:
            mount.starter = subprocess.Popen([sys.executable, "-c", STARTER, *args], stdout=subprocess.PIPE,
                                             text=True, start_new_session=True)
            assert mount.starter.stdout is not None
            code, _, error = mount.starter.stdout.readline().strip().partition(" ")
        else:
            result = subprocess.run(args, capture_output=True, text=True, timeout=90)
            code, error = str(result.returncode), result.stderr
        if code != "0":
            raise RuntimeError(f"callfs-mount failed ({code}): {error}\n{mount.log_tail()}")
        return mount

    yield make
    for mount in mounted:
        if mount.starter is not None and mount.starter.poll() is None:
            os.killpg(mount.starter.pid, signal.SIGKILL)
            mount.starter.wait()
        unmount(mount.path)
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = mount.pid()
            try:
                wait_for_exit(pid)
            except AssertionError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
