"""Mounts on this node: ``/proc/self/mountinfo`` parsing, stale-mount detection, FUSE and bind mounts.

Pure parts first (:func:`parse_mountinfo`, :func:`mount_flag_options`), then thin async shells that run
``callfs-mount`` (the FUSE daemon, usage in :mod:`callfs_csi.mount_main`), ``mount --bind`` and ``umount``.

A FUSE mount of volume ``/volumes/x`` shows in mountinfo with type ``fuse.callfs`` and source ``callfs:/volumes/x``;
its bind mounts show the same type and source at their own mount points. When the daemon dies the mount stays
but every access fails with ``ENOTCONN``: that is a *stale* mount, repaired by unmounting and mounting again.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import stat as stat_module
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from callfs_csi.errors import Internal, InvalidArgument

__all__ = [
    "FUSE_FSTYPE",
    "MOUNTINFO",
    "CommandResult",
    "MountEntry",
    "Mounter",
    "PathStatus",
    "mount_flag_options",
    "parse_mountinfo",
    "path_status",
    "run_command",
]

MOUNTINFO: Final = "/proc/self/mountinfo"
FUSE_FSTYPE: Final = "fuse.callfs"
SOURCE_PREFIX: Final = "callfs:"
COMMAND_TIMEOUT: Final = 60.0
"""Seconds allowed for one mount/umount command (``callfs-mount`` waits for the mount to be live)."""

BIND_FLAGS: Final = frozenset({
    "ro", "rw", "noexec", "exec", "nosuid", "suid", "nodev", "dev", "noatime", "atime", "nodiratime",
    "diratime", "relatime", "norelatime", "strictatime", "nostrictatime",
})
"""Per-mount (VFS) flags a bind mount can carry: the ``mount_flags`` a publish may ask for."""
_ESCAPE: Final = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of ``/proc/<pid>/mountinfo`` (proc(5)); paths unescaped (``\\040`` → space)."""

    mount_id: int
    parent_id: int
    device: str
    root: str
    mount_point: str
    options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def is_callfs(self) -> bool:
        return self.fstype == FUSE_FSTYPE or self.source.startswith(SOURCE_PREFIX)


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse the text of a mountinfo file (proc(5): ``id parent major:minor root mount-point options
    [optional...] - fstype source super-options``); malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            entries.append(MountEntry(
                mount_id=int(fields[0]), parent_id=int(fields[1]), device=fields[2], root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]), options=tuple(fields[5].split(",")),
                fstype=fields[sep + 1], source=_unescape(fields[sep + 2]),
                super_options=tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),
            ))
        except (ValueError, IndexError):
            continue
    return entries


def mounts_at(entries: Iterable[MountEntry], path: str) -> list[MountEntry]:
    """The entries mounted exactly at ``path`` (a normalised absolute path), the topmost last."""
    return [e for e in entries if e.mount_point == path]


def mount_flag_options(flags: Sequence[str], read_only: bool) -> list[str]:
    """The ``-o`` options of a bind remount for CSI ``mount_flags`` and the publish's read-only state.

    Each flag may itself be a comma-separated list (as Kubernetes ``mountOptions`` sometimes are).

    Raises:
        InvalidArgument: a flag a bind mount cannot carry (filesystem options belong to the FUSE mount); or
            ``rw`` asked for a read-only publish.
    """
    options: list[str] = []
    for flag in flags:
        for option in (part.strip() for part in flag.split(",")):
            if not option:
                continue
            if option not in BIND_FLAGS:
                supported = ", ".join(sorted(BIND_FLAGS))
                raise InvalidArgument(f"mount flag {option!r} is not supported; supported: {supported}")
            if option == "rw" and read_only:
                raise InvalidArgument("mount flag 'rw' conflicts with a read-only publish")
            if option not in options:
                options.append(option)
    if read_only and "ro" not in options:
        options.insert(0, "ro")
    return options


def normalise(path: str) -> str:
    """``path`` absolute with its parent's symlinks resolved (the path itself is not touched: it may be a
    stale mount that cannot be stat'ed)."""
    absolute = os.path.abspath(path)
    parent, name = os.path.split(absolute)
    return os.path.join(os.path.realpath(parent), name) if name else absolute


class PathStatus:
    """What :func:`path_status` finds at a path."""

    MISSING: Final = "missing"
    STALE: Final = "stale"
    DIRECTORY: Final = "directory"
    OTHER: Final = "other"


def path_status(path: str) -> str:
    """:class:`PathStatus` of ``path``: a dead FUSE daemon's mount answers ``ENOTCONN`` (→ ``STALE``)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return PathStatus.MISSING
    except OSError as exc:
        if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
            return PathStatus.STALE
        raise
    return PathStatus.DIRECTORY if stat_module.S_ISDIR(st.st_mode) else PathStatus.OTHER


def default_mount_command() -> list[str]:
    """``callfs-mount`` beside the running interpreter (a virtualenv's bin), else from ``PATH``."""
    beside = Path(sys.executable).with_name("callfs-mount")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("callfs-mount")
    return [found] if found else [sys.executable, "-m", "callfs_csi.mount_main"]


class Mounter:
    """Runs the mount commands; ``mountinfo`` is the file read to find mounts (tests may point elsewhere)."""

    def __init__(self, mount_command: Sequence[str] | None = None, mountinfo: str = MOUNTINFO) -> None:
        self.mount_command = list(mount_command) if mount_command else default_mount_command()
        self.mountinfo = mountinfo

    def entries(self) -> list[MountEntry]:
        """The current mount table."""
        with open(self.mountinfo) as handle:
            return parse_mountinfo(handle.read())

    def is_mount_point(self, path: str) -> bool:
        """True when something is mounted exactly at ``path``."""
        return bool(mounts_at(self.entries(), normalise(path)))

    async def mount_fuse(
        self, server: str, volume_path: str, mount_point: str, key_file: str, *, read_only: bool,
        log_file: str | None = None, pid_file: str | None = None, gid: int | None = None,
        ca_file: str | None = None,
    ) -> None:
        """Start ``callfs-mount`` for ``server``/``volume_path`` at ``mount_point``; returns once it is live.

        The daemon detaches into its own session (so it outlives this process); ``start_new_session`` keeps
        even its first process out of our process group.

        Raises:
            Internal: the command failed (its one-line error in the message) or timed out.
        """
        argv = [*self.mount_command, server, volume_path, mount_point, "--key-file", key_file,
                "--fs-name", f"{SOURCE_PREFIX}{volume_path}"]
        if read_only:
            argv.append("--read-only")
        if gid is not None:
            argv += ["--gid", str(gid)]
        if ca_file:
            argv += ["--ca-file", ca_file]
        if log_file:
            argv += ["--log-file", log_file]
        if pid_file:
            argv += ["--pid-file", pid_file]
        await _run(argv, "callfs-mount")

    async def bind_mount(self, source: str, target: str, options: Sequence[str]) -> None:
        """Bind-mount ``source`` at ``target``, then remount it with ``options`` (a bind mount takes per-mount
        flags such as ``ro`` only on a remount).

        Raises:
            Internal: a mount command failed (the bind is undone when the remount fails).
        """
        await _run(["mount", "--bind", source, target], "mount --bind")
        if options:
            try:
                await _run(["mount", "-o", ",".join(["remount", "bind", *options]), target], "mount -o remount")
            except Internal:
                await self.unmount(target)
                raise

    async def unmount(self, path: str) -> None:
        """Unmount everything stacked at ``path``; nothing mounted is fine. A mount that is busy or whose
        daemon is gone is detached lazily (``umount -l``) rather than left behind.

        Raises:
            Internal: ``path`` stays mounted.
        """
        target = normalise(path)
        for _ in range(16):
            if not mounts_at(self.entries(), target):
                return
            try:
                await _run(["umount", target], "umount")
            except Internal:
                await _run(["umount", "-l", target], "umount -l")
        raise Internal(f"{path} is still mounted after repeated umount")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command ended: its exit ``code`` (``None`` when it was killed after the timeout) and the last
    64 KiB of its ``stderr``, decoded."""

    code: int | None
    stderr: str

    def last_line(self) -> str:
        """The last line of ``stderr`` (a failing ``callfs-mount`` says why there), or ``"no message"``."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else "no message"


async def run_command(argv: Sequence[str], time_limit: float) -> CommandResult:
    """Run ``argv`` in its own session (stdin and stdout ``/dev/null``) and wait up to ``time_limit`` seconds;
    a command still running then is killed (SIGKILL) and its result has ``code=None``."""
    # stderr goes to a file, not a pipe: a daemonising child could keep a pipe open long after its parent has
    # exited, and we wait for the parent only.
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=errors,
            start_new_session=True,
        )
        code: int | None
        try:
            code = await asyncio.wait_for(process.wait(), time_limit)
        except TimeoutError:
            process.kill()
            await process.wait()
            code = None
        errors.seek(0, os.SEEK_END)
        errors.seek(max(0, errors.tell() - 65536))
        return CommandResult(code, errors.read().decode(errors="replace"))


async def _run(argv: list[str], what: str) -> None:
    result = await run_command(argv, COMMAND_TIMEOUT)
    if result.code is None:
        raise Internal(f"{what} timed out after {COMMAND_TIMEOUT:.0f}s")
    if result.code != 0:
        raise Internal(f"{what} failed ({result.code}): {result.last_line()}")
