#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, exactly as locked in uv.lock, into the project's
# virtual environment .venv (never into the system Python):
#
#   bash hack/install.sh             Debian packages (PostgreSQL, Redis, FUSE, fio) for the test suite, then the
#                                    package with its runtime and dev (test, lint) dependencies
#   bash hack/install.sh --runtime   the package and its runtime dependencies only (what `callfs server` needs)
#
# Python dependencies come only from uv.lock (hashes checked); `uv sync --locked` refuses to run when
# pyproject.toml and the lock disagree. Upgrade the lock with `bash hack/uv.sh lock --upgrade` and commit it.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_only=false
case "${1:-}" in
  --runtime) runtime_only=true ;;
  "") ;;
  *) echo "usage: bash hack/install.sh [--runtime]" >&2; exit 2 ;;
esac

if ! $runtime_only; then
  DEBIAN_PACKAGES=(postgresql redis-server fuse3 libfuse3-dev fio curl ca-certificates openssl git attr)
  missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # The Debian packages start system services on install; the test suite runs its own throwaway servers.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

if $runtime_only; then
  bash hack/uv.sh sync --locked --no-dev --quiet
else
  bash hack/uv.sh sync --locked --quiet
fi
