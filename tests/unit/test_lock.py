"""The lock file (uv.lock) agrees with pyproject.toml, so a fresh install gets exactly what CI tested."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = ["bash", str(ROOT / "hack" / "uv.sh")]


def lock_check(project: Path, *, offline: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs ``uv lock --check`` in ``project``; offline unless told otherwise (a fresh uv cache holds no index)."""
    args = [*UV, "--directory", str(project), "lock", "--check"]
    return subprocess.run([*args, "--offline"] if offline else args, capture_output=True, text=True, timeout=120)


def test_lock_agrees_with_pyproject() -> None:
    result = lock_check(ROOT)
    assert result.returncode == 0, result.stderr


def test_lock_check_fails_when_pyproject_drops_a_dependency(tmp_path: Path) -> None:
    # Re-resolving needs the package index: offline, uv fails for want of a cache on a fresh machine instead of
    # reporting the disagreement, so this check reaches PyPI (as the install itself does).
    shutil.copy(ROOT / "uv.lock", tmp_path / "uv.lock")
    pyproject = (ROOT / "pyproject.toml").read_text()
    line = '    "prometheus-client>=0.20",\n'
    assert line in pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject.replace(line, "", 1))
    result = lock_check(tmp_path, offline=False)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr, result.stderr
