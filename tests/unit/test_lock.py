"""The lock file (uv.lock) agrees with pyproject.toml, so a fresh install gets exactly what CI tested."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = ["bash", str(ROOT / "hack" / "uv.sh")]


def lock_check(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UV, "--directory", str(project), "lock", "--check", "--offline"],
                          capture_output=True, text=True, timeout=120)


def test_lock_agrees_with_pyproject() -> None:
    result = lock_check(ROOT)
    assert result.returncode == 0, result.stderr


def test_lock_check_fails_when_pyproject_gains_a_dependency(tmp_path: Path) -> None:
    shutil.copy(ROOT / "uv.lock", tmp_path / "uv.lock")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dependencies = [\n' in pyproject
    grown = pyproject.replace('dependencies = [\n', 'dependencies = [\n    "six",\n', 1)
    (tmp_path / "pyproject.toml").write_text(grown)
    result = lock_check(tmp_path)
    assert result.returncode != 0
    assert "lock" in result.stderr.lower()
