"""What the machine must provide for a test (a device, a binary, a cgroup hierarchy, a built tool).

:func:`require` is the one way a test or fixture gives up when such a feature is missing: on a developer's
machine the test is *skipped* with the reason, but under ``CI=true`` (set by CI, see ``.ci/run`` and
``hack/test.sh``) it *fails*, so that CI cannot go green by silently skipping what it was meant to run.
Skips for other reasons (a server that cannot report what a test checks) stay plain ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the tests run in CI (environment variable ``CI`` is ``true``)."""
    return os.environ.get("CI") == "true"


def require(condition: object, reason: str) -> None:
    """Go on when ``condition`` is truthy; else skip the test with ``reason``, or fail it in CI.

    ``reason`` says what is missing and, ideally, how to provide it (``hack/install.sh`` installs the Debian
    packages, ``hack/tools.sh install`` builds the Kubernetes tools).
    """
    if not condition:
        unavailable(reason)


def unavailable(reason: str) -> NoReturn:
    """:func:`require` for a feature already known to be missing: skip with ``reason``, or fail in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing machine feature fails the test instead of skipping it)",
                    pytrace=False)
    pytest.skip(reason)


def fuse_missing() -> str | None:
    """``None`` when FUSE mounts can be made (``/dev/fuse`` and ``fusermount3``), else what is missing."""
    missing = []
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse")
    if shutil.which("fusermount3") is None:
        missing.append("fusermount3 (Debian package fuse3)")
    return ", ".join(missing) or None


def require_fuse() -> None:
    """:func:`require` what a real FUSE mount needs: the ``/dev/fuse`` device and ``fusermount3``."""
    missing = fuse_missing()
    require(missing is None, f"FUSE mounts need {missing}")


@contextlib.contextmanager
def tmpfs_mount(mount_point: Path, size: str) -> Iterator[Path]:
    """Create the directory ``mount_point`` and mount a tmpfs of ``size`` (as ``mount -o size=``, e.g.
    ``"2m"``) on it, for a test that must fill a disk; lazily unmounted on exit.

    Needs (:func:`require`) root, ``mount(8)`` and a mount that succeeds.
    """
    require(os.geteuid() == 0 and shutil.which("mount") is not None,
            f"a {size} tmpfs mount (a small disk to fill) needs root and mount(8)")
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True, check=False)
    require(mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)
