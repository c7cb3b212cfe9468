#!/usr/bin/env bash
# Builds the public S3 compatibility suite the S3 face is measured against: the functional tests of the MinIO Go
# SDK (functional_tests.go of github.com/minio/minio-go/v7, the suite MinIO's "mint" runs against S3 services),
# taken from the Go module proxy at the pinned version below and cached outside the repository, once per machine.
# tests/integration/test_s3_conformance.py runs it against a node and checks its results.
#
#   hack/s3-conformance.sh build              build the suite when not built yet; prints the binary's path
#   hack/s3-conformance.sh build-versioning   the same for the versioning variant (below)
#   hack/s3-conformance.sh path               print the binary's path (it may not exist yet)
#
# The versioning variant differs in one thing: the suite's ten versioning tests (test*WithVersioning,
# testListObjectVersions) make their bucket without object lock (``ObjectLocking: false``). They ask for object
# lock only when making the bucket, and the node refuses object-lock buckets (docs/s3.md), so the suite as
# published reports them not applicable before any versioning request is sent.
#
# The suite is one file with a "mint" build tag in the SDK module's root, where it shares the directory with the
# SDK's own package; it is built from a copy of the module with that file moved into a command directory, so
# every dependency resolves through the module's own go.mod and go.sum. Measured on the 2-core machine: 10 s
# with a warm module cache (module downloads add a few seconds); a built binary is reused (stamp = version).
#
# Running it (the test does this): SERVER_ENDPOINT=host:port ACCESS_KEY=... SECRET_KEY=... ENABLE_HTTPS=0
# MINT_MODE=full RUN_ON_FAIL=1 ENABLE_KMS=0 <binary>; it prints one JSON object per test step on stdout, with
# "name" (the test), "function", "status" (PASS, FAIL, or NA when the server answered NotImplemented), and
# "error"/"message" on a failure.
set -euo pipefail

# minio-go: the newest release at the time of pinning.
MINIO_GO_VERSION=v7.4.1

CACHE="${CALLFS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/callfs-tools}/s3-conformance/minio-go-$MINIO_GO_VERSION"
BINARY="$CACHE/minio-go-functional"
VERSIONING_BINARY="$CACHE/minio-go-functional-versioning"
VERSIONING_TESTS=10

# Never let a module's "toolchain" line download another Go: fail with the installed one instead. Modules come
# from the Go module proxy only (no "direct" fallback to version control).
GOPROXY=$(go env GOPROXY 2>/dev/null || true)
GOPROXY=${GOPROXY//,direct/}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOPROXY=${GOPROXY:-https://proxy.golang.org}

log() { printf 's3-conformance.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Make the versioning tests of main.go ($1) create their bucket without object lock; fail unless all of them did.
unlock_versioning_tests() {
    local main=$1 changed
    awk '/^func / { inside = ($0 ~ /^func test[A-Za-z]*WithVersioning\(/ || $0 ~ /^func testListObjectVersions\(/) }
         inside && /ObjectLocking: true/ { sub(/ObjectLocking: true/, "ObjectLocking: false"); changed++ }
         { print }
         END { print changed > "/dev/stderr" }' "$main" > "$main.new" 2> "$main.count"
    changed=$(cat "$main.count")
    [[ $changed == "$VERSIONING_TESTS" ]] || die "expected $VERSIONING_TESTS versioning tests with object lock, found $changed"
    mv "$main.new" "$main"
    rm -f "$main.count"
}

# build [versioning]: the suite, or its versioning variant.
build() {
    local variant=${1:-} target=$BINARY
    [[ $variant == versioning ]] && target=$VERSIONING_BINARY
    [[ -x $target ]] && { echo "$target"; return; }
    command -v go >/dev/null || die "go is not installed"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    [[ -x $target ]] && { echo "$target"; return; }
    local src work
    src=$(cd "$CACHE" && go mod download -json "github.com/minio/minio-go/v7@$MINIO_GO_VERSION" \
        | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [[ -n $src && -f $src/functional_tests.go ]] || die "minio-go $MINIO_GO_VERSION has no functional_tests.go"
    work=$(mktemp -d "$CACHE/build.XXXXXX")
    trap 'rm -rf "$work"' RETURN
    cp -r "$src/." "$work/"
    chmod -R u+w "$work"
    mkdir "$work/callfs-functional"
    mv "$work/functional_tests.go" "$work/callfs-functional/main.go"
    [[ $variant == versioning ]] && unlock_versioning_tests "$work/callfs-functional/main.go"
    (cd "$work" && go build -tags mint -trimpath -ldflags "-s -w" -o "$target.tmp" ./callfs-functional) \
        || die "building the minio-go functional tests failed"
    mv "$target.tmp" "$target"
    echo "$target"
}

case "${1:-}" in
    build) build ;;
    build-versioning) build versioning ;;
    path) echo "$BINARY" ;;
    *) echo "usage: hack/s3-conformance.sh build|build-versioning|path" >&2; exit 2 ;;
esac
