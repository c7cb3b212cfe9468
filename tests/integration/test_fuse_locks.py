"""``flock`` and ``fcntl``/``lockf`` locks through real mounts (``callfs-mount``): between processes of one mount,
between two mounts of one volume on two nodes sharing PostgreSQL and Redis, released when the holding process
exits and when a killed mount's lock session expires."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from support.app_node import AppNode
from support.machine import require_fuse
from support.mount import MountedVolume
from support.node import new_auth_section, postgres_redis_sections
from support.waiting import wait_for

MountFactory = Callable[..., MountedVolume]

HOLDER = r"""
import fcntl, os, sys, time
path, how, start, length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDWR)
if how == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX)
elif how == "flock-shared":
    fcntl.flock(fd, fcntl.LOCK_SH)
elif how == "lockf":
    fcntl.lockf(fd, fcntl.LOCK_EX, length, start)
elif how == "lockf-shared":
    fcntl.lockf(fd, fcntl.LOCK_SH, length, start)
print("locked", flush=True)
sys.stdin.readline()
"""
"""A process that takes one lock (waiting for it), says ``locked`` and holds it until its stdin gets a line."""


@pytest.fixture(autouse=True)
def _fuse() -> None:
    require_fuse()


@contextmanager
def holder(path: Path, how: str, start: int = 0, length: int = 0) -> Iterator[subprocess.Popen[str]]:
    """A :data:`HOLDER` process holding its lock (``locked`` read) for the block; killed at the end."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), how, str(start), str(length)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "locked", f"holder did not lock {path}: {line!r}"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def release(process: subprocess.Popen[str]) -> None:
    """Let a holder close its file and exit."""
    assert process.stdin is not None
    process.stdin.write("\n")
    process.stdin.flush()
    process.wait(10)


def can_flock(path: Path, op: int = fcntl.LOCK_EX) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)  # at once: the release at close would come just after close returns
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def flock_freed(path: Path) -> None:
    """Wait until an exclusive ``flock`` can be taken: the kernel sends the release of a closed file's ``flock``
    lock to the mount just after the last ``close`` returns (an asynchronous FUSE ``RELEASE``)."""
    wait_for(lambda: can_flock(path), 10, f"the flock lock on {path} to go", 0.02)


def can_lockf(path: Path, start: int = 0, length: int = 0, op: int = fcntl.LOCK_EX) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, op | fcntl.LOCK_NB, length, start)
        return True
    except OSError as exc:
        assert exc.errno in (11, 13), exc  # EAGAIN (or EACCES, which POSIX also allows)
        return False
    finally:
        os.close(fd)


def get_lock(path: Path, start: int, length: int, kind: int = fcntl.F_WRLCK) -> tuple[int, int, int, int]:
    """``F_GETLK``: ``(l_type, l_start, l_len, l_pid)`` of the lock in the way (``l_type`` ``F_UNLCK``: none)."""
    fd = os.open(path, os.O_RDWR)
    try:
        query = struct.pack("hhqqi4x", kind, os.SEEK_SET, start, length, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    finally:
        os.close(fd)
    l_type, _, l_start, l_len, l_pid = struct.unpack("hhqqi4x", answer)
    return l_type, l_start, l_len, l_pid


def new_file(mount: MountedVolume, name: str = "f") -> Path:
    path = mount.path / name
    path.write_bytes(b"x" * 100)
    return path


def test_flock_between_processes_of_one_mount(app_node: AppNode, mount_factory: MountFactory) -> None:
    path = new_file(mount_factory(app_node))
    with holder(path, "flock") as process:
        assert not can_flock(path)
        assert not can_flock(path, fcntl.LOCK_SH)
        release(process)
    flock_freed(path)
    with holder(path, "flock-shared") as process:
        assert can_flock(path, fcntl.LOCK_SH)
        assert not can_flock(path)
        release(process)


def test_flock_belongs_to_the_open_file(app_node: AppNode, mount_factory: MountFactory) -> None:
    path = new_file(mount_factory(app_node))
    first, second = os.open(path, os.O_RDWR), os.open(path, os.O_RDWR)
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
        copy = os.dup(first)
        os.close(copy)  # a duplicate shares the open file description: the lock stays
        with pytest.raises(BlockingIOError):
            fcntl.flock(second, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(first, fcntl.LOCK_SH)  # downgrade
        fcntl.flock(second, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(second, fcntl.LOCK_UN)
        # fcntl locks are separate from flock locks
        fcntl.lockf(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(first)
    # The last close released the first file's lock: FUSE sends that release just after close returns.
    wait_for(lambda: try_flock(second), 10, "the closed file's flock lock to go", 0.02)
    os.close(second)


def test_record_locks_between_processes_of_one_mount(app_node: AppNode, mount_factory: MountFactory) -> None:
    path = new_file(mount_factory(app_node))
    with holder(path, "lockf", 10, 20) as process:
        assert not can_lockf(path, 15, 1)
        assert not can_lockf(path, 0, 0)
        assert can_lockf(path, 0, 10)
        assert can_lockf(path, 30, 0)
        l_type, l_start, l_len, l_pid = get_lock(path, 0, 0)
        assert (l_type, l_start, l_len) == (fcntl.F_WRLCK, 10, 20)
        assert l_pid == process.pid
        assert get_lock(path, 30, 5)[0] == fcntl.F_UNLCK
        release(process)
    assert can_lockf(path, 0, 0)
    with holder(path, "lockf-shared", 0, 0) as process:
        assert can_lockf(path, 0, 0, fcntl.LOCK_SH)
        assert not can_lockf(path, 50, 1)
        release(process)


def test_record_locks_of_one_process_split_and_merge(app_node: AppNode, mount_factory: MountFactory) -> None:
    path = new_file(mount_factory(app_node))
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
        fcntl.lockf(fd, fcntl.LOCK_UN, 20, 40)  # [0,40) and [60,100) stay
        with holder(path, "lockf", 45, 10) as process:
            assert get_lock(path, 0, 0)[:3] in ((fcntl.F_WRLCK, 0, 40), (fcntl.F_WRLCK, 45, 10))
            release(process)
        fcntl.lockf(fd, fcntl.LOCK_SH, 0, 0)  # downgrade all
        assert can_lockf(path, 0, 0, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def test_locks_released_when_the_holder_dies(app_node: AppNode, mount_factory: MountFactory) -> None:
    path = new_file(mount_factory(app_node))
    for how, check in (("flock", can_flock), ("lockf", can_lockf)):
        with holder(path, how) as process:
            assert not check(path)
            process.kill()
            process.wait(10)
            wait_for(lambda check=check: check(path), 10, f"the {how} lock of a killed process to go", 0.05)


def test_blocking_waits_until_released(app_node: AppNode, mount_factory: MountFactory) -> None:
    path = new_file(mount_factory(app_node))
    for how, take in (("flock", lambda fd: fcntl.flock(fd, fcntl.LOCK_EX)),
                      ("lockf", lambda fd: fcntl.lockf(fd, fcntl.LOCK_EX))):
        with holder(path, how) as process:
            timer = subprocess.Popen(["sleep", "0.7"])
            started = time.monotonic()
            fd = os.open(path, os.O_RDWR)
            try:
                timer.wait()
                release(process)
                take(fd)  # granted once the holder's close released the lock
            finally:
                os.close(fd)
            assert time.monotonic() - started >= 0.7


def test_a_signal_interrupts_a_blocking_wait(app_node: AppNode, mount_factory: MountFactory) -> None:
    path = new_file(mount_factory(app_node))
    # The handler raises: Python retries a system call a signal interrupted when the handler returns (PEP 475).
    waiter_code = (
        "import fcntl, os, signal, sys\n"
        "def alarm(*_):\n"
        "    raise TimeoutError\n"
        "signal.signal(signal.SIGALRM, alarm)\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "signal.alarm(1)\n"
        "try:\n"
        "    fcntl.lockf(fd, fcntl.LOCK_EX)\n"
        "    print('granted')\n"
        "except TimeoutError:\n"
        "    print('interrupted')\n"
    )
    with holder(path, "lockf") as process:
        waiter = subprocess.run([sys.executable, "-c", waiter_code, str(path)], capture_output=True, text=True,
                                timeout=30)
        assert waiter.stdout.strip() == "interrupted", waiter
        release(process)


def _cluster_pair(request: pytest.FixtureRequest, app_node_factory: Callable[..., AppNode],
                  **dlm: Any) -> tuple[AppNode, AppNode]:
    shared: dict[str, Any] = {"auth": new_auth_section(), **postgres_redis_sections(request)}
    shared["dlm"] = {**shared["dlm"], **dlm}

    def copy() -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in shared.items()}

    return app_node_factory(**copy()), app_node_factory(**copy())


def test_two_mounts_on_two_nodes(request: pytest.FixtureRequest, app_node_factory: Callable[..., AppNode],
                                 mount_factory: MountFactory) -> None:
    first_node, second_node = _cluster_pair(request, app_node_factory)
    first = mount_factory(first_node)
    second = mount_factory(second_node, first.volume, create=False)
    path_one = new_file(first)
    path_two = second.path / path_one.name
    wait_for(path_two.exists, 10, "the file on the second mount", 0.05)
    with holder(path_one, "flock") as process:
        assert not can_flock(path_two)
        release(process)
    flock_freed(path_two)
    with holder(path_two, "lockf", 0, 50) as process:
        assert not can_lockf(path_one, 49, 1)
        assert can_lockf(path_one, 50, 0)
        l_type, l_start, l_len, l_pid = get_lock(path_one, 0, 0)
        assert (l_type, l_start, l_len, l_pid) == (fcntl.F_WRLCK, 0, 50, 0)  # another mount's: no pid
        release(process)
    assert can_lockf(path_one)


def test_killed_mount_loses_its_locks_after_the_session_ttl(
    request: pytest.FixtureRequest, app_node_factory: Callable[..., AppNode], mount_factory: MountFactory,
) -> None:
    first_node, second_node = _cluster_pair(request, app_node_factory, lock_session_ttl=2)
    doomed = mount_factory(first_node)
    survivor = mount_factory(second_node, doomed.volume, create=False)
    path = new_file(doomed)
    other = survivor.path / path.name
    wait_for(other.exists, 10, "the file on the second mount", 0.05)
    with holder(path, "flock") as process:
        assert not can_flock(other)
        os.kill(doomed.pid(), signal.SIGKILL)
        started = time.monotonic()
        wait_for(lambda: can_flock(other), 15, "the killed mount's lock to expire", 0.2)
        assert time.monotonic() - started > 0.5  # not at once: the session lived on until its TTL ran out
        process.kill()


def test_unmount_releases_the_mounts_locks(request: pytest.FixtureRequest,
                                           app_node_factory: Callable[..., AppNode],
                                           mount_factory: MountFactory) -> None:
    node = app_node_factory(dlm={"lock_session_ttl": 600})
    first = mount_factory(node)
    second = mount_factory(node, first.volume, create=False)
    path = new_file(first)
    other = second.path / path.name
    wait_for(other.exists, 10, "the file on the second mount", 0.05)
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert not can_flock(other)
    subprocess.run(["umount", "-l", str(first.path)], check=True, timeout=30)
    os.close(fd)  # the last close lets the lazily unmounted mount go; its session ends
    wait_for(lambda: can_flock(other), 15, "the unmounted mount's lock to go", 0.2)


def child_can_lock(path: Path, how: str) -> bool:
    """Whether another process can take an exclusive ``flock``/``lockf`` lock on ``path`` without waiting."""
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    if sys.argv[2] == 'flock':\n"
        "        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "    else:\n"
        "        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "    print('yes')\n"
        "except OSError:\n"
        "    print('no')\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path), how], capture_output=True, text=True,
                            timeout=30, check=True)
    return result.stdout.strip() == "yes"


def test_a_file_just_created_can_be_locked(app_node: AppNode, mount_factory: MountFactory) -> None:
    mount = mount_factory(app_node)
    for how in ("flock", "lockf"):
        path = mount.path / f"new-{how}.lock"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)  # nothing on the server before the first close
        try:
            if how == "flock":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert not child_can_lock(path, how)
        finally:
            os.close(fd)
