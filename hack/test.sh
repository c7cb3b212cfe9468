#!/usr/bin/env bash
# Installs everything (Debian packages, the locked Python dependencies into .venv, test tools) and runs the
# whole test suite: lint (ruff), types (mypy), then pytest (unit, integration against real PostgreSQL/Redis/S3,
# e2e against a real Kubernetes control plane). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install.sh
# Everything below, and every process the tests start, runs from the project environment.
export PATH="$PWD/.venv/bin:$PATH" VIRTUAL_ENV="$PWD/.venv"
python -m ruff check node-agent csi operator tests bench
python -m mypy
bash hack/tools.sh install >/dev/null || { echo "hack/test.sh: building the Kubernetes tools (hack/tools.sh) failed" >&2; [ "${CI:-}" != true ]; }
# Workers: one per core; more starve the Kubernetes control planes each worker runs (PYTEST_WORKERS overrides
# it, 0 runs in this process; not a CALLFS_* name, which a node would read as its configuration). Tests are
# spread one by one and an idle worker takes over another's queue (worksteal), so one long file cannot hold up
# the end of the run; the servers the fixtures start (PostgreSQL, Redis, S3, the Kubernetes control plane) are
# per worker.
python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist worksteal "$@"
