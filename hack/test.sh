#!/usr/bin/env bash
# Installs everything (Debian packages, Python deps, test tools) and runs the whole test suite:
# lint (ruff), types (mypy), then pytest (unit, integration against real PostgreSQL/Redis, e2e).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install.sh
python3 -m ruff check node-agent csi operator tests bench
python3 -m mypy
bash hack/tools.sh install >/dev/null || { echo "hack/test.sh: building the Kubernetes tools (hack/tools.sh) failed" >&2; [ "${CI:-}" != true ]; }
python3 -m pytest "$@"
