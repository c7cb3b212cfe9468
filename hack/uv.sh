#!/usr/bin/env bash
# Runs the pinned uv (hack/uv-requirements.txt) with the given arguments, installing it first when missing.
# uv is kept outside the repository, in ${XDG_CACHE_HOME:-~/.cache}/callfs-uv/<version>, installed by pip with
# --require-hashes into a virtual environment of its own; everything else comes from uv.lock through uv.
#
#   bash hack/uv.sh sync --locked      what hack/install.sh runs
#   bash hack/uv.sh lock --upgrade     upgrade every locked dependency (commit uv.lock afterwards)
#   bash hack/uv.sh lock --check       exit non-zero when pyproject.toml and uv.lock disagree
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PINS="$ROOT/hack/uv-requirements.txt"
VERSION=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$PINS")
UV_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/callfs-uv/$VERSION"
if ! "$UV_HOME/bin/uv" --version >/dev/null 2>&1; then
  rm -rf "$UV_HOME"
  python3 -m venv "$UV_HOME"
  "$UV_HOME/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$PINS"
fi
# Never download a Python: the lock is made for, and installed into, the machine's python3.
export UV_PYTHON_DOWNLOADS=never UV_PYTHON="${UV_PYTHON:-python3}"
# Trust the machine's CA bundle (as pip does here) rather than uv's built-in roots.
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-true}"
cd "$ROOT"
exec "$UV_HOME/bin/uv" "$@"
