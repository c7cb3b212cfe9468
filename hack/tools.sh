#!/usr/bin/env bash
# Builds, from the Go module proxy, the Kubernetes tools the e2e tests and hack/dev-cluster.sh need,
# and caches them outside the repository, once per machine.
#
#   hack/tools.sh install [TOOL...]  build the tools (all by default) that are not built yet; prints the bin dir
#   hack/tools.sh bin-dir            print the directory holding the binaries (it may not exist yet)
#   hack/tools.sh check [TOOL...]    exit 0 when the tools (all by default) are built at their pinned versions
#   hack/tools.sh versions           print the pinned versions
#   hack/tools.sh pin                regenerate the wrapper modules (hack/kube/tools/*/go.mod, go.sum)
#                                    from the versions below; run it after changing one and commit the result
#
# Tools: kube-apiserver kube-controller-manager kube-scheduler kubectl (one build: "kubernetes"),
# etcd, kwok, csi-sanity, helm, csi-provisioner, csi-resizer, csi-snapshotter and snapshot-controller (one build:
# "external-snapshotter", which also writes the snapshot CRDs of that release to snapshot-crds.yaml); for a real
# node (hack/real-node.sh): kubelet and kube-proxy (one build: "kubelet"), coredns, cni-plugins (bridge,
# host-local, loopback, portmap in bin/cni/).
#
# Cache: ${CALLFS_TOOLS_CACHE:-~/.cache/callfs-tools}/<pin set id>/bin, where the id is a hash of the pins
# below, so changing a pin builds into a new directory. Every binary has a stamp (version + hash of its
# wrapper go.mod/go.sum); a binary whose stamp matches is not rebuilt. Builds are serialised with flock, so
# two concurrent "install" runs do not build twice. Go's own caches (GOPATH, GOCACHE) are left at their
# defaults, so a rebuild after a pin change only compiles what changed.
#
# Measured on the 2-core machine, shared with other work (see README, "Try it without a cluster"): a cold
# build of everything, module downloads included, about 26 minutes (kubernetes 10, csi-provisioner 6, helm 4,
# kwok 3, etcd 1.5, csi-sanity 0.7); relinking everything from a warm Go cache after a recipe change 26 s
# (65 s when csi-resizer was added, with other builds running); a warm "install" (all stamps match) about 0.05 s.
# csi-resizer alone, cold, module downloads included: 4 minutes; 4 s once csi-provisioner's libraries are built.
# external-snapshotter (both binaries), module downloads included, after the others: about 2 minutes.
# coredns cold, module downloads included: 6 minutes (352 s, beside other builds); the CNI plugins 15 s; kubelet and
# kube-proxy 52 s from the control plane's warm Go cache (about 6 minutes cold).
set -euo pipefail

# ---- Pinned versions: the one place to change them -------------------------------------------------------
# Kubernetes: newest release at the time of pinning; it builds with Go 1.26 (its go.mod says go 1.26.0).
KUBERNETES_VERSION=v1.36.3
# etcd: 3.6 is the line Kubernetes 1.36 is tested against (Debian's 3.4.23 is below the supported minimum).
ETCD_VERSION=v3.6.16
# kwok: fake nodes whose pods go Running and Ready without a kubelet or a container runtime.
KWOK_VERSION=v0.8.0
# csi-sanity: the CSI spec conformance suite run against the CallFS CSI driver.
CSI_TEST_VERSION=v5.6.0
# helm 3: installs/lints the operator chart.
HELM_VERSION=v3.22.0
# csi-provisioner: v6.4.0 needs sig-storage-lib-external-provisioner v13.1.0, which the module proxy reachable
# here does not serve; v6.3.0 (sig-storage-lib v13.0.0) builds.
CSI_PROVISIONER_VERSION=v6.3.0
# csi-resizer: turns a PVC size patch into ControllerExpandVolume. v2.2.0 is built against the Kubernetes 1.36
# libraries and CSI spec v1.12.0 (those pinned above); v2.3.0 moved to Kubernetes 1.37 and CSI v1.13. Its go.mod
# has no replace block, so it is installed like csi-sanity, without a wrapper module.
CSI_RESIZER_VERSION=v2.2.0
# external-snapshotter: csi-snapshotter (VolumeSnapshotContent -> CreateSnapshot/DeleteSnapshot), snapshot-controller
# (VolumeSnapshot -> VolumeSnapshotContent) and the snapshot CRDs. v8.6.0 is built against Kubernetes 1.36 and CSI
# spec v1.12.0; v8.7.0 moved to 1.37. Its go.mod replaces k8s.io modules: built through a wrapper module.
EXTERNAL_SNAPSHOTTER_VERSION=v8.6.0
# The real-node lane (hack/real-node.sh): kubelet and kube-proxy come from the Kubernetes release above (their own
# wrapper module, so the control-plane build is not touched); CoreDNS serves the cluster's Service names; the CNI
# reference plugins (bridge, host-local, loopback, portmap) give pods their network.
COREDNS_VERSION=v1.14.7
CNI_PLUGINS_VERSION=v1.9.1
# -----------------------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODS="$ROOT/hack/kube/tools"
CACHE_ROOT="${CALLFS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/callfs-tools}"
PIN_ID=$(printf '%s\n' "$KUBERNETES_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$CSI_TEST_VERSION" \
    "$HELM_VERSION" "$CSI_PROVISIONER_VERSION" "$CSI_RESIZER_VERSION" "$EXTERNAL_SNAPSHOTTER_VERSION" \
    "$COREDNS_VERSION" "$CNI_PLUGINS_VERSION" \
    | sha256sum | cut -c1-12)
TOOLS_DIR="$CACHE_ROOT/$PIN_ID"
BIN_DIR="$TOOLS_DIR/bin"
STAMP_DIR="$TOOLS_DIR/stamps"
ALL_TOOLS=(kubernetes etcd kwok csi-sanity helm csi-provisioner csi-resizer external-snapshotter kubelet coredns
    cni-plugins)
# The CNI plugins, in the bin dir's cni/ subdirectory (the directory containerd's CNI configuration names).
CNI_PLUGINS=(bridge host-local loopback portmap)

# Never let a module's "toolchain" line download another Go: fail with the installed one instead.
export GOTOOLCHAIN=local
export CGO_ENABLED=0

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# binaries_of TOOL: the files (executables, and kwok's stage configuration) one tool build puts in the bin dir.
binaries_of() {
    case "$1" in
        kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler kubectl ;;
        kwok) echo kwok kwok-stages.yaml ;;
        external-snapshotter) echo csi-snapshotter snapshot-controller snapshot-crds.yaml ;;
        kubelet) echo kubelet kube-proxy ;;
        cni-plugins) printf 'cni/%s ' "${CNI_PLUGINS[@]}" ;;
        *) echo "$1" ;;
    esac
}

# stamp_of TOOL: what identifies a build of TOOL: its pinned version, the hash of its wrapper module (if any)
# and the hash of the build recipe (the functions below), so that changing how a tool is built rebuilds it.
stamp_of() {
    local tool=$1 version mod="" recipe
    recipe=$(declare -f build_tool binaries_of version_ldflags | sha256sum | cut -c1-12)
    case "$tool" in
        kubernetes) version=$KUBERNETES_VERSION; mod=kubernetes ;;
        kubelet) version=$KUBERNETES_VERSION; mod=kubelet ;;
        coredns) version=$COREDNS_VERSION ;;
        cni-plugins) version=$CNI_PLUGINS_VERSION ;;
        etcd) version=$ETCD_VERSION; mod=etcd ;;
        csi-provisioner) version=$CSI_PROVISIONER_VERSION; mod=csi-provisioner ;;
        kwok) version=$KWOK_VERSION ;;
        csi-sanity) version=$CSI_TEST_VERSION ;;
        csi-resizer) version=$CSI_RESIZER_VERSION ;;
        external-snapshotter) version=$EXTERNAL_SNAPSHOTTER_VERSION; mod=external-snapshotter ;;
        helm) version=$HELM_VERSION ;;
        *) die "unknown tool '$tool' (known: ${ALL_TOOLS[*]})" ;;
    esac
    if [[ -n $mod ]]; then
        printf '%s mod=%s recipe=%s\n' "$version" \
            "$(cat "$MODS/$mod/go.mod" "$MODS/$mod/go.sum" | sha256sum | cut -c1-16)" "$recipe"
    else
        printf '%s recipe=%s\n' "$version" "$recipe"
    fi
}

is_built() {
    local tool=$1 b
    [[ -f "$STAMP_DIR/$tool" && "$(cat "$STAMP_DIR/$tool")" == "$(stamp_of "$tool")" ]] || return 1
    for b in $(binaries_of "$tool"); do [[ -f "$BIN_DIR/$b" ]] || return 1; done
}

# require_wrapper MOD MODULE VERSION: the committed wrapper module must pin VERSION of MODULE.
require_wrapper() {
    local mod=$1 module=$2 version=$3
    [[ -f "$MODS/$mod/go.mod" && -f "$MODS/$mod/go.sum" ]] || die "missing $MODS/$mod/go.{mod,sum}: run hack/tools.sh pin"
    (cd "$MODS/$mod" && go list -m -f '{{.Version}}' "$module") | grep -qxF "$version" \
        || die "$MODS/$mod/go.mod does not pin $module $version: run hack/tools.sh pin and commit the result"
}

# version_ldflags PKG VERSION: the -X flags that make a Kubernetes binary report VERSION.
version_ldflags() {
    local pkg=$1 version=$2 major minor
    major=${version#v}; major=${major%%.*}
    minor=${version#v*.}; minor=${minor%%.*}
    printf -- '-X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
        "$pkg" "$version" "$pkg" "$major" "$pkg" "$minor" "$pkg"
    printf -- '-X %s.gitCommit=0000000000000000000000000000000000000000 -X %s.buildDate=1970-01-01T00:00:00Z ' \
        "$pkg" "$pkg"
}

# build_tool TOOL OUT_DIR: compile TOOL's binaries into OUT_DIR.
build_tool() {
    local tool=$1 out=$2 ldflags
    case "$tool" in
        kubernetes)
            require_wrapper kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
            ldflags="-s -w $(version_ldflags k8s.io/component-base/version "$KUBERNETES_VERSION")"
            ldflags+="$(version_ldflags k8s.io/client-go/pkg/version "$KUBERNETES_VERSION")"
            (cd "$MODS/kubernetes" && go build -o "$out/" -ldflags "$ldflags" \
                k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
                k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
            ;;
        kubelet)
            require_wrapper kubelet k8s.io/kubernetes "$KUBERNETES_VERSION"
            ldflags="-s -w $(version_ldflags k8s.io/component-base/version "$KUBERNETES_VERSION")"
            (cd "$MODS/kubelet" && go build -o "$out/" -ldflags "$ldflags" \
                k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
            ;;
        coredns)
            (cd "$out" && GOBIN="$out" go install \
                -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
                "github.com/coredns/coredns@$COREDNS_VERSION")
            ;;
        cni-plugins)
            local p pkgs=()
            for p in main/bridge ipam/host-local main/loopback meta/portmap; do
                pkgs+=("github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION")
            done
            mkdir -p "$out/cni"
            (cd "$out" && GOBIN="$out/cni" go install \
                -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
                "${pkgs[@]}")
            ;;
        etcd)
            require_wrapper etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
            (cd "$MODS/etcd" && go build -o "$out/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3)
            ;;
        csi-provisioner)
            require_wrapper csi-provisioner github.com/kubernetes-csi/external-provisioner/v6 "$CSI_PROVISIONER_VERSION"
            (cd "$MODS/csi-provisioner" && go build -o "$out/csi-provisioner" \
                -ldflags "-s -w -X main.version=$CSI_PROVISIONER_VERSION" \
                github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner)
            ;;
        kwok)
            (cd "$out" && GOBIN="$out" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
            # The stand-alone kwok controller needs its stages as configuration (kwokctl embeds the same
            # defaults): nodes become Ready and renew a lease, pods go Running/Ready, completed and deleted
            # pods are finished. They come from the same kwok release, as shipped in its module.
            local src f
            src=$(cd "$out" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
                | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
            [[ -n $src && -d $src/kustomize/stage ]] || die "kwok $KWOK_VERSION module has no kustomize/stage"
            for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
                pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
                printf -- '---\n'
                cat "$src/kustomize/stage/$f.yaml"
            done >"$out/kwok-stages.yaml"
            ;;
        csi-sanity)
            (cd "$out" && GOBIN="$out" go install -ldflags "-s -w -X main.VERSION=$CSI_TEST_VERSION" \
                "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$CSI_TEST_VERSION")
            ;;
        csi-resizer)
            (cd "$out" && GOBIN="$out" go install -ldflags "-s -w -X main.version=$CSI_RESIZER_VERSION" \
                "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer@$CSI_RESIZER_VERSION")
            ;;
        external-snapshotter)
            require_wrapper external-snapshotter github.com/kubernetes-csi/external-snapshotter/v8 \
                "$EXTERNAL_SNAPSHOTTER_VERSION"
            (cd "$MODS/external-snapshotter" && go build -o "$out/" \
                -ldflags "-s -w -X main.version=$EXTERNAL_SNAPSHOTTER_VERSION" \
                github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter \
                github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller)
            # The VolumeSnapshot CRDs of the same release (Apache-2.0), as its client module ships them.
            local crds f
            crds=$(cd "$MODS/external-snapshotter" && go mod download -json \
                "github.com/kubernetes-csi/external-snapshotter/client/v8@$EXTERNAL_SNAPSHOTTER_VERSION" \
                | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/config/crd
            for f in volumesnapshotclasses volumesnapshotcontents volumesnapshots; do
                [[ -f $crds/snapshot.storage.k8s.io_$f.yaml ]] || die "no $f CRD in $crds"
                printf -- '---\n'
                cat "$crds/snapshot.storage.k8s.io_$f.yaml"
            done >"$out/snapshot-crds.yaml"
            ;;
        helm)
            (cd "$out" && GOBIN="$out" go install \
                -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
                "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
            ;;
        *) die "unknown tool '$tool' (known: ${ALL_TOOLS[*]})" ;;
    esac
}

cmd_install() {
    local tools=("$@") tool b tmp start
    ((${#tools[@]})) || tools=("${ALL_TOOLS[@]}")
    command -v go >/dev/null || die "go is not installed (needed to build the Kubernetes tools)"
    mkdir -p "$BIN_DIR" "$STAMP_DIR"
    exec 9>"$TOOLS_DIR/.lock"
    flock 9
    for tool in "${tools[@]}"; do
        stamp_of "$tool" >/dev/null
        if is_built "$tool"; then continue; fi
        log "building $tool ($(stamp_of "$tool")) ..."
        start=$SECONDS
        tmp=$(mktemp -d "$TOOLS_DIR/.build-$tool.XXXXXX")
        if ! build_tool "$tool" "$tmp"; then
            rm -rf "$tmp"
            die "building $tool failed"
        fi
        for b in $(binaries_of "$tool"); do
            [[ -f "$tmp/$b" ]] || { rm -rf "$tmp"; die "building $tool produced no $b"; }
            mkdir -p "$(dirname "$BIN_DIR/$b")"
            mv -f "$tmp/$b" "$BIN_DIR/$b"
        done
        rm -rf "$tmp"
        stamp_of "$tool" >"$STAMP_DIR/$tool"
        log "built $tool in $((SECONDS - start)) s"
    done
    echo "$BIN_DIR"
}

cmd_check() {
    local tools=("$@") tool missing=0
    ((${#tools[@]})) || tools=("${ALL_TOOLS[@]}")
    for tool in "${tools[@]}"; do
        if ! is_built "$tool"; then log "not built: $tool"; missing=1; fi
    done
    return $missing
}

# ---- pin: regenerate the wrapper modules --------------------------------------------------------------------

# module_gomod MODULE@VERSION: path of that module's go.mod in the module cache (downloaded if needed).
module_gomod() {
    local path
    path=$(go mod download -json "$1" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
    [[ -n $path && -f $path ]] || die "cannot download the go.mod of $1"
    echo "$path"
}

header() {
    printf '// Wrapper module: %s\n' "$1"
    printf "// Generated by 'hack/tools.sh pin' from the versions pinned in hack/tools.sh; do not edit.\n"
    printf 'module callfs.invalid/hack/kube/tools/%s\n\ngo 1.26.0\n\n' "$2"
}

pin_kubernetes() {
    local gomod minor m
    gomod=$(module_gomod "k8s.io/kubernetes@$KUBERNETES_VERSION")
    minor="v0.${KUBERNETES_VERSION#v1.}"
    {
        header "builds the Kubernetes control-plane binaries and kubectl; every k8s.io staging module
// that k8s.io/kubernetes requires (at v0.0.0, replaced by ./staging in its own repo) is replaced by its
// published release." kubernetes
        grep -E '^godebug ' "$gomod" && echo
        printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
        for m in $(sed -n '/^replace (/,/^)/p' "$gomod" | awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}'); do
            grep -qE "^\s$m v0\.0\.0\$" "$gomod" && printf '\t%s => %s %s\n' "$m" "$m" "$minor"
        done
        printf ')\n\ntool (\n'
        printf '\tk8s.io/kubernetes/cmd/%s\n' kube-apiserver kube-controller-manager kube-scheduler kubectl
        printf ')\n'
    } >"$MODS/kubernetes/go.mod"
}

# pin_kubelet: the kubelet's wrapper module has the control plane's replace block and requires, and its own tools.
pin_kubelet() {
    sed -e 's#^// Wrapper module: builds the Kubernetes control-plane binaries and kubectl;#// Wrapper module: builds the kubelet and kube-proxy;#' \
        -e 's#^module callfs.invalid/hack/kube/tools/kubernetes$#module callfs.invalid/hack/kube/tools/kubelet#' \
        -e '/^tool (/,$d' "$MODS/kubernetes/go.mod" >"$MODS/kubelet/go.mod"
    printf 'tool (\n\tk8s.io/kubernetes/cmd/kubelet\n\tk8s.io/kubernetes/cmd/kube-proxy\n)\n' >>"$MODS/kubelet/go.mod"
}

pin_etcd() {
    local gomod
    gomod=$(module_gomod "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
    {
        header "builds etcd; etcd's modules replace each other with relative paths, which a plain
// 'go install' refuses, so each is replaced here by the same release." etcd
        printf 'require go.etcd.io/etcd/server/v3 %s\n\nreplace (\n' "$ETCD_VERSION"
        sed -n '/^replace (/,/^)/p' "$gomod" | awk -v v="$ETCD_VERSION" \
            '$2 == "=>" && $3 ~ /^\.\./ {printf "\t%s => %s %s\n", $1, $1, v}'
        printf ')\n\ntool go.etcd.io/etcd/server/v3\n'
    } >"$MODS/etcd/go.mod"
}

pin_csi_provisioner() {
    local gomod
    gomod=$(module_gomod "github.com/kubernetes-csi/external-provisioner/v6@$CSI_PROVISIONER_VERSION")
    {
        header "builds csi-provisioner with the replace block of its own go.mod." csi-provisioner
        printf 'require github.com/kubernetes-csi/external-provisioner/v6 %s\n\nreplace (\n' "$CSI_PROVISIONER_VERSION"
        { sed -n 's/^replace \(.* => .*\)$/\1/p' "$gomod"
          sed -n '/^replace (/,/^)/p' "$gomod" | awk '$2 == "=>" {print $1, $2, $3, $4}'; } \
            | sed 's/^[[:space:]]*//' | sort -u | sed 's/^/\t/'
        printf ')\n\ntool github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner\n'
    } >"$MODS/csi-provisioner/go.mod"
}

pin_external_snapshotter() {
    local gomod v=$EXTERNAL_SNAPSHOTTER_VERSION
    gomod=$(module_gomod "github.com/kubernetes-csi/external-snapshotter/v8@$v")
    {
        header "builds csi-snapshotter and snapshot-controller with the replace block of their go.mod (its
// ./client replacement becomes the published client module of the same release)." external-snapshotter
        printf 'require (\n\tgithub.com/kubernetes-csi/external-snapshotter/v8 %s\n' "$v"
        printf '\tgithub.com/kubernetes-csi/external-snapshotter/client/v8 %s\n)\n\nreplace (\n' "$v"
        { sed -n 's/^replace \(.* => .*\)$/\1/p' "$gomod"
          sed -n '/^replace (/,/^)/p' "$gomod" | awk '$2 == "=>" {print $1, $2, $3, $4}'; } \
            | sed 's/^[[:space:]]*//' | grep -v ' => \./' | sort -u | sed 's/^/\t/'
        printf ')\n\ntool (\n'
        printf '\tgithub.com/kubernetes-csi/external-snapshotter/v8/cmd/%s\n' csi-snapshotter snapshot-controller
        printf ')\n'
    } >"$MODS/external-snapshotter/go.mod"
}

cmd_pin() {
    local mod
    mkdir -p "$MODS/kubernetes" "$MODS/kubelet" "$MODS/etcd" "$MODS/csi-provisioner" "$MODS/external-snapshotter"
    cd "$MODS"
    pin_kubernetes
    pin_kubelet
    pin_etcd
    pin_csi_provisioner
    pin_external_snapshotter
    for mod in kubernetes kubelet etcd csi-provisioner external-snapshotter; do
        log "go mod tidy in hack/kube/tools/$mod"
        (cd "$MODS/$mod" && rm -f go.sum && go mod tidy)
    done
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    bin-dir) echo "$BIN_DIR" ;;
    check) shift; cmd_check "$@" ;;
    versions)
        printf 'kubernetes %s\netcd %s\nkwok %s\ncsi-sanity %s\nhelm %s\ncsi-provisioner %s\ncsi-resizer %s\n' \
            "$KUBERNETES_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$CSI_TEST_VERSION" "$HELM_VERSION" \
            "$CSI_PROVISIONER_VERSION" "$CSI_RESIZER_VERSION"
        printf 'external-snapshotter %s\n' "$EXTERNAL_SNAPSHOTTER_VERSION"
        printf 'kubelet %s\ncoredns %s\ncni-plugins %s\n' "$KUBERNETES_VERSION" "$COREDNS_VERSION" "$CNI_PLUGINS_VERSION"
        ;;
    pin) cmd_pin ;;
    *) echo "usage: $0 install [TOOL...] | bin-dir | check [TOOL...] | versions | pin" >&2; exit 2 ;;
esac
