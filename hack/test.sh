#!/usr/bin/env bash
# Installs everything (Debian packages, the locked Python dependencies into .venv, test tools, the images a real
# node runs) and runs the whole test suite: lint (ruff), types (mypy), then pytest (unit, integration against real
# PostgreSQL/Redis/S3, e2e against a real Kubernetes control plane), then the real-node tests on their own (one
# real node per machine: no workers). Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install.sh
# Everything below, and every process the tests start, runs from the project environment.
export PATH="$PWD/.venv/bin:$PATH" VIRTUAL_ENV="$PWD/.venv"
python -m ruff check node-agent csi operator tests bench
python -m mypy
bash hack/tools.sh install >/dev/null || { echo "hack/test.sh: building the Kubernetes tools (hack/tools.sh) failed" >&2; [ "${CI:-}" != true ]; }
# The images of the real node (cached; a few minutes the first time) and the Debian packages it runs on. When they
# cannot be had, the real-node tests fail under CI=true (support/realnode.py) and skip elsewhere.
bash hack/images.sh build >/dev/null || { echo "hack/test.sh: building the images (hack/images.sh) failed" >&2; [ "${CI:-}" != true ]; }
bash hack/real-node.sh install-deps || { echo "hack/test.sh: installing the real node's packages failed" >&2; [ "${CI:-}" != true ]; }
# Workers: one per core; more starve the Kubernetes control planes each worker runs (PYTEST_WORKERS overrides
# it, 0 runs in this process; not a CALLFS_* name, which a node would read as its configuration). Tests are
# spread one by one and an idle worker takes over another's queue (worksteal), so one long file cannot hold up
# the end of the run; the servers the fixtures start (PostgreSQL, Redis, S3, the Kubernetes control plane) are
# per worker.
rc=0
python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist worksteal -m "not realnode" "$@" || rc=$?
python -m pytest -n 0 -m realnode tests/realnode "$@" || { status=$?; ((rc)) || rc=$status; }
exit "$rc"
