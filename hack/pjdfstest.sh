#!/usr/bin/env bash
# POSIX conformance of the FUSE mount: runs pjdfstest (the Rust rewrite, crates.io "pjdfstest") as root inside a
# callfs-mount of one volume on a fresh SQLite node (a "callfs server" subprocess), and prints its counts.
#
#   hack/pjdfstest.sh install          install pjdfstest (pinned below) when not installed yet; prints its path
#   hack/pjdfstest.sh path             print the binary's path (it may not exist yet)
#   hack/pjdfstest.sh run [PATTERN...] install, then start a node, mount a volume, run the suite (only the tests
#                                      whose names contain a PATTERN, when given) and print every test's result,
#                                      then one line "pjdfstest: P passed, F failed, S skipped, T total"
#
# The binary is installed with "cargo install" into ${CALLFS_TOOLS_CACHE:-~/.cache/callfs-tools}/pjdfstest (its
# bin/), outside the repository; a binary of another version there is replaced. Measured on the 2-core machine:
# about 3 minutes cold (crate downloads included), nothing once installed. "run" needs root and /dev/fuse; its node, mount and pjdfstest configuration live in a temporary
# directory removed afterwards (KEEP=1 keeps it, with the node and mount logs). The test
# tests/integration/test_pjdfstest.py runs "run" and holds the passed count to a recorded floor.
set -euo pipefail

# pjdfstest: the newest release at the time of pinning.
PJDFSTEST_VERSION=0.2.2

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${CALLFS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/callfs-tools}/pjdfstest"
BINARY="$CACHE/bin/pjdfstest"

log() { printf 'pjdfstest.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

installed() { [[ -x $BINARY && $("$BINARY" --version 2>/dev/null) == "pjdfstest $PJDFSTEST_VERSION" ]]; }

install() {
    installed && { echo "$BINARY"; return; }
    command -v cargo >/dev/null || die "cargo is not installed"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    installed && { echo "$BINARY"; return; }
    cargo install --quiet --force --locked --root "$CACHE" --version "$PJDFSTEST_VERSION" pjdfstest >&2 \
        || die "cargo install pjdfstest $PJDFSTEST_VERSION failed"
    echo "$BINARY"
}

case "${1:-}" in
    install) install ;;
    path) echo "$BINARY" ;;
    run)
        shift
        [[ $(id -u) == 0 ]] || die "run needs root (pjdfstest switches users; callfs-mount mounts)"
        binary=$(install)
        cd "$REPO"
        PATH="$REPO/.venv/bin:$PATH" PYTHONPATH="$REPO/tests${PYTHONPATH:+:$PYTHONPATH}" \
            exec "$REPO/.venv/bin/python" -m support.pjdfstest "$binary" "$@"
        ;;
    *) echo "usage: hack/pjdfstest.sh install|path|run [PATTERN...]" >&2; exit 2 ;;
esac
