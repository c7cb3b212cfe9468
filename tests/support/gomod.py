"""A Go module fetched through the Go module proxy (``go mod download -json``), for tests that compare our
vendored or re-written files with their upstream text. Without ``go`` the caller is skipped on a developer
machine and fails under CI (``CI=true``, where the toolchain is part of the environment)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from support.machine import require

DOWNLOAD_TIMEOUT = 240  # seconds for one module download (the proxy is slow from here at times)


def download(module: str, version: str, sum_: str, work: Path) -> Path:
    """The directory of ``module@version`` in the Go module cache, after checking that its go.sum hash is
    ``sum_`` (the exact tree of that release). ``work`` is a scratch directory to run ``go`` in.

    Raises ``AssertionError`` when the download fails or the hash differs."""
    go = shutil.which("go")
    require(go is not None, f"the Go toolchain is needed to fetch {module}")
    assert go is not None
    env = {**os.environ, "GO111MODULE": "on", "GOTOOLCHAIN": "local", "GOFLAGS": ""}
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT, check=False)
    info = json.loads(proc.stdout) if proc.stdout.strip() else {}
    assert proc.returncode == 0 and "Error" not in info, f"go mod download failed: {info.get('Error') or proc.stderr}"
    assert info["Version"] == version
    assert info["Sum"] == sum_, f"{module}@{version}: go.sum hash {info['Sum']}, expected {sum_}"
    return Path(info["Dir"])
