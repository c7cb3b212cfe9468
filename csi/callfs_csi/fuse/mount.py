"""One mount's life: checks before mounting, the FUSE loop, the cleanup — shared by daemon and foreground.

Before mounting, a bad setup fails with one line for the caller (contract: "bad key, missing volume path,
mountpoint busy..."): the key is checked and the volume directory stat-ed on the server, the mountpoint must
be an existing, empty-or-not, *unmounted* directory (a stale FUSE mount answers ENOTCONN and must be
unmounted first — the CSI node plugin does that). Then libfuse mounts (``fsname=callfs:<VOLUME_PATH>``,
``subtype=callfs`` → type ``fuse.callfs`` in ``/proc/self/mountinfo``) and runs multithreaded until
unmounted (``fusermount3 -u``, ``umount``, or SIGTERM/SIGINT/SIGHUP); the exit code is then 0.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import ssl
from typing import Any

from callfs.client import CallFSUnavailable
from callfs.errors import AuthenticationFailed, CallFSError, NotFound, PermissionDenied

from .bridge import Bridge
from .daemon import Readiness
from .fs import CallFSFuse, CallFSOperations
from .options import MountSettings

log = logging.getLogger(__name__)


class MountError(Exception):
    """A reason not to mount, as the one-line message the caller prints."""


def check_mountpoint(path: str) -> None:
    """The mountpoint must be a directory that nothing is mounted on.

    Raises:
        MountError: missing, not a directory, already a mount point, or a stale mount (ENOTCONN).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise MountError(f"mountpoint {path} does not exist") from exc
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise MountError(f"mountpoint {path} is a stale mount (ENOTCONN): unmount it first") from exc
        raise MountError(f"mountpoint {path}: {exc.strerror}") from exc
    if not os.path.isdir(path):
        raise MountError(f"mountpoint {path} is not a directory")
    if os.path.ismount(path):
        raise MountError(f"mountpoint {path} is busy: something is already mounted there")
    del st


def check_volume(bridge: Bridge, volume_path: str) -> None:
    """The key must be accepted and ``volume_path`` must be a directory on the server.

    Raises:
        MountError: with the reason (bad key, missing volume, not a directory, unreachable server).
    """
    try:
        info = bridge.call(lambda c: c.stat(volume_path))
    except AuthenticationFailed as exc:
        raise MountError("the server rejected the API key (401)") from exc
    except PermissionDenied as exc:
        raise MountError(f"the API key may not access {volume_path} (403)") from exc
    except NotFound as exc:
        raise MountError(f"volume path {volume_path} does not exist on the server") from exc
    except CallFSUnavailable as exc:
        raise MountError(f"cannot reach the server: {exc}") from exc
    except CallFSError as exc:
        raise MountError(f"checking {volume_path}: {exc}") from exc
    if not info.is_dir:
        raise MountError(f"volume path {volume_path} is not a directory")


def fuse_options(settings: MountSettings) -> dict[str, Any]:
    """The keyword options handed to mfusepy/libfuse (pure).

    ``allow_other`` (pods run as other users) with ``default_permissions`` (the kernel checks modes against
    the uid/gid we report), no ``hard_remove`` (an open file unlinked is renamed aside to ``.fuse_hidden…`` until
    its last close, POSIX's open-unlinked file), ``use_ino`` (``st_ino`` is the server's inode number, the same
    for every name of a hard-linked file), kernel attribute and
    entry caching for ``attr_timeout`` seconds, ``ro`` when read-only, then the caller's extra options.
    """
    options: dict[str, Any] = {
        "foreground": True,
        "nothreads": False,
        "fsname": settings.fsname,
        "subtype": "callfs",
        "allow_other": True,
        "default_permissions": True,
        "hard_remove": False,
        "use_ino": True,
        "attr_timeout": settings.attr_timeout,
        "entry_timeout": settings.attr_timeout,
        "negative_timeout": settings.negative_timeout,
    }
    if settings.read_only:
        options["ro"] = True
    for key, value in settings.fuse_options.items():
        options[key] = True if value is None else value
    return options


def run_mount(settings: MountSettings, api_key: str, readiness: Readiness, pid_file: str | None = None,
              *, ssl_context: ssl.SSLContext | None = None) -> int:
    """Check, mount and serve until unmounted; returns the process exit code (0 after a clean unmount).
    ``ssl_context`` verifies an ``https://`` server (``None``: the system's trust store).

    Failures before the mount is live are reported through ``readiness`` (one line) and return 1.
    """
    os.makedirs(settings.spool_dir, exist_ok=True)
    bridge = Bridge(settings.server_url, api_key, request_deadline=settings.request_deadline, ssl=ssl_context)
    try:
        bridge.start()
        try:
            check_mountpoint(settings.mountpoint)
            check_volume(bridge, settings.volume_path)
        except MountError as exc:
            log.error("not mounting: %s", exc)
            readiness.fail(str(exc))
            return 1
        if pid_file:
            with open(pid_file, "w") as out:
                out.write(f"{os.getpid()}\n")
        operations = CallFSOperations(settings, bridge, on_ready=readiness.ready)
        try:
            CallFSFuse(operations, settings.mountpoint, raw_fi=True, **fuse_options(settings))
        except RuntimeError as exc:
            log.error("libfuse failed: %s", exc)
            readiness.fail(f"mounting {settings.mountpoint} failed (libfuse returned {exc}); see the log")
            return 1
        log.info("mount loop ended for %s", settings.mountpoint)
        return 0
    finally:
        bridge.close()
        if pid_file:
            with contextlib.suppress(OSError):
                os.unlink(pid_file)
