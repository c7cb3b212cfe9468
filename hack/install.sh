#!/usr/bin/env bash
# Installs everything the project and its test suite need on a fresh Debian machine:
# Debian packages (PostgreSQL, Redis, FUSE, fio) and the Python package with its dev extras.
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(postgresql redis-server fuse3 libfuse3-dev fio curl ca-certificates openssl git)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian packages start system services on install; the test suite runs its own throwaway servers.
python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
