#!/usr/bin/env bash
# Installs everything (Debian packages, the locked Python dependencies into .venv, test tools, the images a real
# node runs) and runs the whole test suite: lint (ruff), types (mypy), then pytest (unit, integration against
# real PostgreSQL/Redis/S3, e2e against a real Kubernetes control plane), then the real-node tests on their own
# (pods on a real kubelet; one real node per machine: no workers). REAL_NODE=0 leaves the real-node lane out;
# REAL_NODE=only runs lint, types and the real-node tests without the rest of the suite. Extra arguments go to
# both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install.sh
# Everything below, and every process the tests start, runs from the project environment.
export PATH="$PWD/.venv/bin:$PATH" VIRTUAL_ENV="$PWD/.venv"
python -m ruff check node-agent csi operator tests bench
python -m mypy
bash hack/tools.sh install >/dev/null || { echo "hack/test.sh: building the Kubernetes tools (hack/tools.sh) failed" >&2; [ "${CI:-}" != true ]; }
# Workers: one more than the cores (much of a test's time is spent waiting on servers). Every test that uses
# the Kubernetes control plane (all of tests/e2e) runs on one worker, since two control planes on a small
# machine starve each other; the other workers share the rest, test by test (`--dist loadgroup` selects that
# scheduling, defined in tests/support/kube.py). PYTEST_WORKERS overrides the count (0 runs in this
# process); it is not a CALLFS_* name, which a node would read as its configuration. The servers the
# fixtures start (PostgreSQL, Redis, S3, the control plane) are per worker.
rc=0
if [ "${REAL_NODE:-1}" != only ]; then
  python -m pytest -n "${PYTEST_WORKERS:-$(($(nproc) + 1))}" --dist loadgroup -m "not realnode" "$@" || rc=$?
fi
# The real-node lane (tests/realnode: pods on a real kubelet, see README) runs alone, after the rest: it needs
# root and /dev/fuse, builds the images (hack/images.sh, cached; minutes the first time) and installs the
# node's Debian packages.
if [ "${REAL_NODE:-1}" != 0 ]; then
  bash hack/images.sh build >/dev/null || { echo "hack/test.sh: building the images (hack/images.sh) failed" >&2; [ "${CI:-}" != true ]; }
  bash hack/real-node.sh install-deps || { echo "hack/test.sh: installing the real node's packages failed" >&2; [ "${CI:-}" != true ]; }
  python -m pytest -n 0 -m realnode tests/realnode "$@" || { status=$?; ((rc)) || rc=$status; }
fi
exit "$rc"
