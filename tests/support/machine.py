"""What the machine must provide for a test (a device, a binary, a cgroup hierarchy, a built tool).

:func:`require` is the one way a test or fixture gives up when such a feature is missing: on a developer's
machine the test is *skipped* with the reason, but under ``CI=true`` (set by CI, see ``.ci/run`` and
``hack/test.sh``) it *fails*, so that CI cannot go green by silently skipping what it was meant to run.
Skips for other reasons (a server that cannot report what a test checks) stay plain ``pytest.skip``.
"""

from __future__ import annotations

import os
import shutil
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
