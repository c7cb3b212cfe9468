#!/usr/bin/env bash
# Builds the container images a real node runs, without any registry: a Debian bookworm base made by mmdebstrap
# from the machine's own apt sources, our images from the unchanged Dockerfile.node and Dockerfile.operator
# (buildah), PostgreSQL and Redis images from Debian's packages for the operator's managed dependencies, and
# the CSI controller sidecars from the binaries hack/tools.sh built. Each image is exported as an OCI archive
# into a cache outside the repository and rebuilt only when its inputs change.
#
#   hack/images.sh build [IMAGE...]   build the images (all by default) whose inputs changed; prints the archives
#   hack/images.sh list               print "ARCHIVE REF [ALIAS...]" for every image (fails when one is not built)
#   hack/images.sh check              exit 0 when every image is built for the current inputs
#   hack/images.sh install-deps       install the Debian packages the build needs (buildah, mmdebstrap)
#
# Images (name: reference):
#   base      docker.io/library/python:3.11-slim-bookworm: what the Dockerfiles start FROM; Debian's python3 (3.11),
#             pip and fuse3, with pip allowed to install system-wide like in the official image
#   node      ghcr.io/callfs/callfs-node:0.1.0 (Dockerfile.node; the chart's and the operator's default)
#   operator  ghcr.io/callfs/callfs-operator:0.1.0 (Dockerfile.operator)
#   postgres  localhost/callfs-dev/postgres:15-bookworm: Debian's PostgreSQL 15 behind an entrypoint with the
#             official image's interface (hack/images/postgres-entrypoint.sh); alias of the operator's default
#   redis     localhost/callfs-dev/redis:7.0-bookworm: Debian's Redis 7.0; alias of the operator's default
#   pause     localhost/callfs-dev/pause:catatonit: every pod's sandbox (holds its namespaces), Debian's static
#             catatonit in pause mode
#   csi-provisioner, csi-resizer: the chart's sidecar references, one static binary each (hack/tools.sh)
# An alias is a second name the real node's containerd gives the same image (hack/real-node.sh), so that a
# CallFSCluster with the default images (examples/minimal.yaml) runs these stand-ins.
#
# Cache: ${CALLFS_IMAGES_CACHE:-~/.cache/callfs-images}/<image>/<input hash>/image.tar. The input hash covers
# the recipe in this script, the files the image is built from (for node and operator: the Dockerfile and the
# tracked files it copies) and the hash of the image below it, so a changed Python file rebuilds node and
# operator only. pip and uv inside a build reach the package index through the machine's CA bundle, mounted
# into the build (never into the image).
#
# Measured on the 2-core machine: see bench/README.md ("Real-node lane").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${CALLFS_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/callfs-images}"
SUITE=bookworm
CA_BUNDLE=${CALLFS_IMAGES_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ALL_IMAGES=(base node operator postgres redis pause csi-provisioner csi-resizer)
# runc: buildah runs the Dockerfiles' RUN steps with it, and Debian's buildah only recommends an OCI runtime (the
# packages are installed without recommends).
DEBIAN_PACKAGES=(buildah mmdebstrap catatonit runc)

BASE_REF=docker.io/library/python:3.11-slim-bookworm
NODE_REF=ghcr.io/callfs/callfs-node:0.1.0
OPERATOR_REF=ghcr.io/callfs/callfs-operator:0.1.0
POSTGRES_REF=localhost/callfs-dev/postgres:15-bookworm
REDIS_REF=localhost/callfs-dev/redis:7.0-bookworm
PAUSE_REF=localhost/callfs-dev/pause:catatonit
# The operator's default dependency images (operator/callfs_operator/spec.py), aliased to the two above.
POSTGRES_ALIAS=docker.io/library/postgres:16-alpine
REDIS_ALIAS=docker.io/library/redis:7-alpine
# The chart's sidecar references (charts/callfs/values.yaml), built from hack/tools.sh's binaries.
PROVISIONER_REF=registry.k8s.io/sig-storage/csi-provisioner:v6.3.0
RESIZER_REF=registry.k8s.io/sig-storage/csi-resizer:v2.2.0
# What the node and operator Dockerfiles copy from the repository.
DOCKERFILE_INPUTS=(hack/uv-requirements.txt pyproject.toml uv.lock README.md node-agent csi operator)

log() { printf 'images.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ref_of() {
    case "$1" in
        base) echo "$BASE_REF" ;;
        node) echo "$NODE_REF" ;;
        operator) echo "$OPERATOR_REF" ;;
        postgres) echo "$POSTGRES_REF" ;;
        redis) echo "$REDIS_REF" ;;
        pause) echo "$PAUSE_REF" ;;
        csi-provisioner) echo "$PROVISIONER_REF" ;;
        csi-resizer) echo "$RESIZER_REF" ;;
        *) die "unknown image '$1' (known: ${ALL_IMAGES[*]})" ;;
    esac
}

aliases_of() {
    case "$1" in
        postgres) echo "$POSTGRES_ALIAS" ;;
        redis) echo "$REDIS_ALIAS" ;;
        *) ;;
    esac
}

# tracked_files_hash PATH...: hash of the contents of the files git tracks under PATHs (as in the work tree).
tracked_files_hash() {
    (cd "$ROOT" && git ls-files -z -- "$@" | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

tools_bin() { bash "$ROOT/hack/tools.sh" bin-dir; }

# inputs_of IMAGE: everything that identifies a build of IMAGE (hashed into its cache directory).
inputs_of() {
    local image=$1
    printf 'recipe %s\n' "$(recipe_of "$image" | sha256sum | cut -c1-16)"
    printf 'ref %s\n' "$(ref_of "$image")"
    case "$image" in
        base) printf 'suite %s\n' "$SUITE" ;;
        node | operator)
            printf 'base %s\n' "$(hash_of base)"
            printf 'dockerfile %s\n' "$(sha256sum <"$ROOT/Dockerfile.$image" | cut -c1-16)"
            printf 'files %s\n' "$(tracked_files_hash "${DOCKERFILE_INPUTS[@]}")"
            ;;
        postgres)
            printf 'suite %s\nentrypoint %s\n' "$SUITE" \
                "$(sha256sum <"$ROOT/hack/images/postgres-entrypoint.sh" | cut -c1-16)"
            ;;
        redis) printf 'suite %s\n' "$SUITE" ;;
        pause) printf 'catatonit %s\n' "$(sha256sum </usr/bin/catatonit | cut -c1-16)" ;;
        csi-provisioner | csi-resizer)
            local bin
            bin="$(tools_bin)/$image"
            [[ -f $bin ]] || die "$bin is not built (bash hack/tools.sh install $image)"
            printf 'binary %s\n' "$(sha256sum <"$bin" | cut -c1-16)"
            ;;
    esac
}

hash_of() { inputs_of "$1" | sha256sum | cut -c1-16; }
archive_of() { echo "$CACHE/$1/$(hash_of "$1")/image.tar"; }

# debian_rootfs OUT.tar PACKAGE...: a minimal bookworm root filesystem with PACKAGEs (no recommends), from the
# machine's apt sources; CUSTOMIZE (a shell snippet run with the root directory as $1) may adjust it.
debian_rootfs() {
    local out=$1 sources; shift
    sources=/etc/apt/sources.list.d/debian.sources
    [[ -f $sources ]] || sources=/etc/apt/sources.list
    [[ -f $sources ]] || die "no apt sources on this machine (/etc/apt/sources.list.d/debian.sources)"
    local include
    include=$(IFS=,; echo "$*")
    mmdebstrap --quiet --variant=minbase --include="$include" --aptopt='APT::Install-Recommends "false"' \
        --skip=output/dev --customize-hook="${CUSTOMIZE:-true}" \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
        "$SUITE" "$out" "$sources"
}

# rootfs_image ROOTFS.tar REF CONFIG...: commit a one-layer image of ROOTFS named REF; CONFIG are `buildah
# config` options.
rootfs_image() {
    local rootfs=$1 ref=$2 ctr; shift 2
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$rootfs" / >/dev/null
    buildah config --os linux --arch amd64 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 "$@" "$ctr"
    buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
}

# binary_image BINARY REF: an image holding only the static BINARY, as its entrypoint.
binary_image() {
    local bin=$1 ref=$2 ctr
    ctr=$(buildah from scratch)
    buildah copy --quiet --chmod 0755 "$ctr" "$bin" "/${bin##*/}" >/dev/null
    buildah config --os linux --arch amd64 --entrypoint "[\"/${bin##*/}\"]" --user 65532:65532 "$ctr"
    buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
}

# build_IMAGE WORKDIR REF: build that image into buildah's storage, named REF. Each recipe is hashed into its
# image's inputs, so changing one rebuilds that image (and those built on it) only.
build_base() {
    # Debian's python3 is 3.11 in bookworm; like the official python image, pip may install system-wide.
    CUSTOMIZE='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
        debian_rootfs "$1/rootfs.tar" python3 python3-pip python-is-python3 fuse3 ca-certificates
    rootfs_image "$1/rootfs.tar" "$2" --cmd '["python3"]'
}

build_dockerfile() {
    local work=$1 ref=$2 dockerfile=$3
    ensure_loaded base
    # The CA bundle is mounted for pip (Debian's pip reads the system bundle) and named for uv through a uv.toml
    # that exists only during the build (/etc/uv/uv.toml is uv's system-level configuration).
    printf 'native-tls = true\n' >"$work/uv.toml"
    (cd "$ROOT" && buildah bud --quiet --network host --layers=false --pull-never \
        -v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro" -v "$work/uv.toml:/etc/uv/uv.toml:ro" \
        -f "$dockerfile" -t "$ref" . >/dev/null)
}

build_postgres() {
    local work=$1 ref=$2 ctr hook
    # No cluster in the image (the entrypoint makes one in PGDATA), and the postgres user and group get uid and
    # gid 70, those of the official Alpine image, which the operator runs the container as.
    hook=$(cat <<'HOOK'
rm -rf "$1"/etc/postgresql/*/main "$1"/var/lib/postgresql/*/main
! grep -qE '^[^:]*:[^:]*:70:' "$1/etc/passwd" "$1/etc/group" || { echo "uid or gid 70 is taken" >&2; exit 1; }
ou=$(stat -c %u "$1/var/lib/postgresql"); og=$(stat -c %g "$1/var/lib/postgresql")
sed -i -E 's/^(postgres:[^:]*):[0-9]+:[0-9]+:/\1:70:70:/' "$1/etc/passwd"
sed -i -E 's/^(postgres:[^:]*):[0-9]+:/\1:70:/' "$1/etc/group"
find "$1" -xdev -user "$ou" -exec chown -h 70 {} +
find "$1" -xdev -group "$og" -exec chgrp -h 70 {} +
HOOK
)
    CUSTOMIZE=$hook debian_rootfs "$work/rootfs.tar" postgresql-15 util-linux
    rootfs_image "$work/rootfs.tar" "$ref" --env PGDATA=/var/lib/postgresql/data \
        --env PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --entrypoint '["/usr/local/bin/postgres-entrypoint.sh"]' --cmd '["postgres"]' --port 5432
    ctr=$(buildah from --pull-never "$ref")
    buildah copy --quiet --chmod 0755 "$ctr" "$ROOT/hack/images/postgres-entrypoint.sh" \
        /usr/local/bin/postgres-entrypoint.sh >/dev/null
    buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
}

build_redis() {
    CUSTOMIZE='mkdir -p "$1"/data' debian_rootfs "$1/rootfs.tar" redis-server
    rootfs_image "$1/rootfs.tar" "$2" --workingdir /data --cmd '["redis-server"]' --port 6379
}

build_pause() {
    local ctr
    ctr=$(buildah from scratch)
    buildah copy --quiet --chmod 0755 "$ctr" /usr/bin/catatonit /catatonit >/dev/null
    buildah config --os linux --arch amd64 --entrypoint '["/catatonit", "-P"]' --user 65535:65535 "$ctr"
    buildah commit --quiet --rm "$ctr" "$2" >/dev/null
}

# recipe_of IMAGE: the shell functions that build IMAGE.
recipe_of() {
    case "$1" in
        base) declare -f build_base debian_rootfs rootfs_image ;;
        node | operator) declare -f build_dockerfile ;;
        postgres) declare -f build_postgres debian_rootfs rootfs_image ;;
        redis) declare -f build_redis debian_rootfs rootfs_image ;;
        pause) declare -f build_pause ;;
        csi-provisioner | csi-resizer) declare -f binary_image ;;
    esac
}

# build_image IMAGE WORKDIR: build IMAGE into buildah's storage, named by its reference.
build_image() {
    local image=$1 work=$2 ref
    ref=$(ref_of "$image")
    case "$image" in
        base) build_base "$work" "$ref" ;;
        node | operator) build_dockerfile "$work" "$ref" "Dockerfile.$image" ;;
        postgres) build_postgres "$work" "$ref" ;;
        redis) build_redis "$work" "$ref" ;;
        pause) build_pause "$work" "$ref" ;;
        csi-provisioner | csi-resizer) binary_image "$(tools_bin)/$image" "$ref" ;;
        *) die "unknown image '$image'" ;;
    esac
}

# ensure_loaded IMAGE: IMAGE's current build is in buildah's storage (loaded from its archive if needed).
ensure_loaded() {
    local image=$1 ref archive
    ref=$(ref_of "$image")
    archive=$(archive_of "$image")
    [[ -f $archive ]] || build_one "$image"
    if [[ "$(buildah inspect --type image --format '{{.FromImageID}}' "$ref" 2>/dev/null)" != "$(cat "$archive.id")" ]]; then
        buildah pull --quiet "oci-archive:$archive" >/dev/null
        buildah tag "$(cat "$archive.id")" "$ref"
    fi
}

build_one() {
    local image=$1 archive dir tmp start
    archive=$(archive_of "$image")
    [[ -f $archive ]] && return 0
    dir=$(dirname "$archive")
    mkdir -p "$dir"
    tmp=$(mktemp -d "$CACHE/.build-$image.XXXXXX")
    log "building $image ($(ref_of "$image")) ..."
    start=$SECONDS
    if ! build_image "$image" "$tmp"; then rm -rf "$tmp"; die "building $image failed"; fi
    buildah push --quiet "$(ref_of "$image")" "oci-archive:$tmp/image.tar:$(ref_of "$image")" >/dev/null
    buildah inspect --type image --format '{{.FromImageID}}' "$(ref_of "$image")" >"$tmp/image.tar.id"
    inputs_of "$image" >"$tmp/inputs"
    mv -f "$tmp/image.tar" "$tmp/image.tar.id" "$tmp/inputs" "$dir/"
    rm -rf "$tmp"
    log "built $image in $((SECONDS - start)) s: $archive ($(du -m "$archive" | cut -f1) MiB)"
}

install_deps() {
    local pkg missing=()
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

cmd_build() {
    local images=("$@") image
    ((${#images[@]})) || images=("${ALL_IMAGES[@]}")
    install_deps
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    for image in "${images[@]}"; do
        ref_of "$image" >/dev/null
        build_one "$image"
        archive_of "$image"
    done
}

cmd_list() {
    local image archive
    for image in "${ALL_IMAGES[@]}"; do
        [[ $image == base ]] && continue
        archive=$(archive_of "$image")
        [[ -f $archive ]] || die "$image is not built for the current inputs (bash hack/images.sh build)"
        echo "$archive $(ref_of "$image") $(aliases_of "$image")" | sed 's/ *$//'
    done
}

cmd_check() {
    local image rc=0
    for image in "${ALL_IMAGES[@]}"; do
        [[ -f $(archive_of "$image") ]] || { log "not built: $image"; rc=1; }
    done
    return $rc
}

case "${1:-}" in
    build) shift; cmd_build "$@" ;;
    list) cmd_list ;;
    check) cmd_check ;;
    install-deps) install_deps ;;
    *) echo "usage: $0 build [IMAGE...] | list | check | install-deps" >&2; exit 2 ;;
esac
