#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, without Docker: etcd -> kube-apiserver -> kube-controller-manager
# -> kube-scheduler -> kwok, which runs N fake nodes (pods scheduled to them go Running and Ready; no container
# ever runs). The binaries come from hack/tools.sh (built once per machine from the Go module proxy).
#
#   hack/dev-cluster.sh up [--dir DIR] [--nodes N] [--volumes N] [--real-node]
#                                                    start it, wait until it is ready, print `export KUBECONFIG=...`;
#                                                    --real-node adds one real node (hack/real-node.sh: containerd,
#                                                    kubelet, kube-proxy, CoreDNS; our images from hack/images.sh)
#   hack/dev-cluster.sh env [--dir DIR]              print the export lines again (KUBECONFIG, PATH with kubectl)
#   hack/dev-cluster.sh status [--dir DIR]           list the components and whether their process is alive
#   hack/dev-cluster.sh down [--dir DIR]             take the real node down (if any), stop every process `up`
#                                                    started (by PID) and remove DIR
#
# DIR (default ${CALLFS_DEV_CLUSTER_DIR:-~/.local/state/callfs-dev-cluster}) holds everything: pki/ (a throwaway
# CA, the API server's serving certificate, client certificates), the kubeconfigs, etcd's data, pids/, logs/
# (one log per component) and ports.env. Every port is a free loopback port picked at `up`, so several
# clusters (a developer's and the test suite's) run side by side. Authentication is by client certificate,
# authorisation by RBAC (+ Node); the API server advertises 127.0.0.1.
#
# `up` also creates a default StorageClass `standard` (no provisioner, Immediate binding) and VOLUMES (default 32)
# pre-created 100Gi PersistentVolumes of it (hostPath under DIR/volumes; kwok never mounts them), so claims that
# name no class, such as those of examples/minimal.yaml, bind. A released volume (its claim deleted) is not
# reused; `up` again for a fresh pool.
#
# This script is the one implementation: the pytest fixtures (tests/support/kube.py) call it with their own DIR.
# If the tools are not built yet, `up` builds them first (the first time takes tens of minutes).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="${CALLFS_DEV_CLUSTER_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/callfs-dev-cluster}"
NODES=3
REAL_NODE=false
# Pre-created PersistentVolumes of the default StorageClass, and the capacity of each.
VOLUMES=${CALLFS_DEV_CLUSTER_VOLUMES:-32}
VOLUME_SIZE=100Gi
DEFAULT_STORAGE_CLASS=standard
# Seconds to wait for each component, and for the whole cluster to be ready.
READY_TIMEOUT=${CALLFS_DEV_CLUSTER_TIMEOUT:-180}
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
# Order matters: `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf 'dev-cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# ---- processes ---------------------------------------------------------------------------------------------

# pid_alive, start, stop, wait_for, proc_pid (PROC_DIR is DIR, set once --dir is read).
source "$ROOT/hack/lib/processes.sh"

# ---- configuration -----------------------------------------------------------------------------------------

# free_ports N: N distinct free TCP ports on 127.0.0.1, one a line.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# issue NAME SUBJECT EXTENSIONS: an EC P-256 key and a certificate signed by the cluster CA, in pki/.
issue() {
    local name=$1 subject=$2 ext=$3
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
        -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
    printf '%b\n' "$ext" >"$PKI/$name.ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 30 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
    PKI="$DIR/pki"
    mkdir -p "$PKI"
    chmod 700 "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -sha256 \
        -subj "/CN=callfs-dev-cluster-ca" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
    local client="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth"
    issue apiserver "/CN=kube-apiserver" \
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    issue admin "/O=system:masters/CN=callfs-dev-admin" "$client"
    issue kube-controller-manager "/CN=system:kube-controller-manager" "$client"
    issue kube-scheduler "/CN=system:kube-scheduler" "$client"
    issue kwok "/O=system:masters/CN=kwok-controller" "$client"
    # The API server's identity towards kubelets (logs, exec, port-forward on a real node).
    issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
    # The API server's identity towards aggregated API servers (and the request-header CA the controller
    # manager and scheduler read from kube-system/extension-apiserver-authentication).
    issue front-proxy-client "/CN=front-proxy-client" "$client"
    # Service-account token signing key pair.
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
    openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# kubeconfig FILE USER: a kubeconfig for the client certificate pki/USER.{crt,key}.
kubeconfig() {
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: callfs-dev
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: callfs-dev
  context:
    cluster: callfs-dev
    user: $2
current-context: callfs-dev
EOF
}

# nodes_manifest N: N Node objects that kwok manages (annotation kwok.x-k8s.io/node=fake), not tainted, so
# ordinary workloads schedule onto them.
nodes_manifest() {
    local i
    for ((i = 0; i < $1; i++)); do
        cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
    done
}

# storage_manifest N: the default StorageClass (no provisioner: the PersistentVolume controller binds claims
# to the pre-created volumes, at once) and N PersistentVolumes of it, hostPath under DIR/volumes.
storage_manifest() {
    local i
    cat <<EOF
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $DEFAULT_STORAGE_CLASS
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
EOF
    for ((i = 0; i < $1; i++)); do
        cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $DEFAULT_STORAGE_CLASS-$i
  labels:
    callfs.io/dev-cluster-pool: $DEFAULT_STORAGE_CLASS
spec:
  storageClassName: $DEFAULT_STORAGE_CLASS
  capacity: {storage: $VOLUME_SIZE}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $DIR/volumes/$DEFAULT_STORAGE_CLASS-$i, type: DirectoryOrCreate}
EOF
    done
}

# ---- commands ----------------------------------------------------------------------------------------------

print_env() {
    printf 'export KUBECONFIG=%q\n' "$DIR/kubeconfig"
    printf 'export PATH=%q:"$PATH"\n' "$BIN"
}

cmd_up() {
    local name
    for name in "${COMPONENTS[@]}"; do
        pid_alive "$name" && die "a cluster is already running in $DIR (hack/dev-cluster.sh down --dir $DIR)"
    done
    # Reuse DIR only if it is empty or a (stopped) dev cluster's: `up` clears it.
    if [[ -d $DIR && -n "$(ls -A "$DIR")" && ! -f $DIR/ports.env && ! -d $DIR/pids ]]; then
        die "$DIR is not empty and is not a dev cluster directory; choose another --dir"
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR/logs" "$DIR/pids"
    # Stop whatever was started if `up` fails half-way.
    trap 'log "up failed; stopping what was started (logs kept in $DIR/logs)"; stop_all' EXIT

    local ports
    mapfile -t ports < <(free_ports 5)
    ETCD_PORT=${ports[0]} ETCD_PEER_PORT=${ports[1]} API_PORT=${ports[2]} KCM_PORT=${ports[3]} SCHED_PORT=${ports[4]}
    printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPI_PORT=%s\nKCM_PORT=%s\nSCHED_PORT=%s\n' \
        "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$KCM_PORT" "$SCHED_PORT" >"$DIR/ports.env"

    make_pki
    kubeconfig "$DIR/kubeconfig" admin
    kubeconfig "$DIR/kube-controller-manager.kubeconfig" kube-controller-manager
    kubeconfig "$DIR/kube-scheduler.kubeconfig" kube-scheduler
    kubeconfig "$DIR/kwok.kubeconfig" kwok
    local kc="$DIR/kubeconfig" started=$SECONDS

    start etcd "$BIN/etcd" --name callfs-dev --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "callfs-dev=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --quota-backend-bytes=2147483648 --log-level=warn
    wait_for etcd "etcd /health" curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

    start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
        --cert-dir="$PKI" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" --authorization-mode=Node,RBAC --anonymous-auth=false \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
        --requestheader-client-ca-file="$PKI/ca.crt" --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-preferred-address-types=InternalIP \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
        --endpoint-reconciler-type=none --profiling=false
    wait_for kube-apiserver "kube-apiserver /readyz" "$BIN/kubectl" --kubeconfig "$kc" get --raw /readyz

    start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$DIR/kube-controller-manager" \
        --leader-elect=false --use-service-account-credentials=true \
        --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
        --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --profiling=false
    start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$DIR/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$DIR/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$DIR/kube-scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$DIR/kube-scheduler" \
        --leader-elect=false --profiling=false
    start kwok "$BIN/kwok" --kubeconfig="$DIR/kwok.kubeconfig" --config="$BIN/kwok-stages.yaml" \
        --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --node-lease-duration-seconds=40
    wait_for kube-controller-manager "kube-controller-manager /healthz" \
        curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
    wait_for kube-scheduler "kube-scheduler /healthz" curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"

    nodes_manifest "$NODES" | "$BIN/kubectl" --kubeconfig "$kc" create -f - >/dev/null
    wait_for kwok "$NODES nodes Ready" "$BIN/kubectl" --kubeconfig "$kc" wait --for=condition=Ready node \
        --selector=type=kwok --timeout=5s
    storage_manifest "$VOLUMES" | "$BIN/kubectl" --kubeconfig "$kc" apply -f - >/dev/null
    # Pods need their namespace's default service account, which the controller manager creates.
    wait_for kube-controller-manager "the default service account" \
        "$BIN/kubectl" --kubeconfig "$kc" get serviceaccount default --namespace default
    if $REAL_NODE; then
        bash "$ROOT/hack/real-node.sh" up --dir "$DIR"
    fi
    trap - EXIT
    log "ready in $((SECONDS - started)) s: $NODES kwok nodes$($REAL_NODE && echo ' and real node callfs-real-node'), default StorageClass $DEFAULT_STORAGE_CLASS with $VOLUMES volumes, API server https://127.0.0.1:$API_PORT, state in $DIR"
    print_env
}

stop_all() {
    local i
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[i]}"; done
}

cmd_down() {
    [[ -d $DIR ]] || { log "nothing to stop: $DIR does not exist"; return 0; }
    # Refuse to delete a directory that is not a dev cluster's.
    [[ -f $DIR/ports.env || -d $DIR/pids ]] || die "$DIR does not look like a dev cluster directory"
    if [[ -d $DIR/real-node ]]; then
        bash "$ROOT/hack/real-node.sh" down --dir "$DIR"
    fi
    stop_all
    rm -rf "$DIR"
    log "stopped; removed $DIR"
}

cmd_status() {
    local name state rc=0
    [[ -f $DIR/ports.env ]] || die "no cluster in $DIR"
    for name in "${COMPONENTS[@]}"; do
        if pid_alive "$name"; then state="running (pid $(proc_pid "$name"))"; else state="not running"; rc=1; fi
        printf '%-24s %s\n' "$name" "$state"
    done
    return $rc
}

main() {
    local cmd=${1:-}
    (($#)) && shift
    while (($#)); do
        case "$1" in
            --dir) DIR=$2; shift 2 ;;
            --dir=*) DIR=${1#*=}; shift ;;
            --nodes) NODES=$2; shift 2 ;;
            --nodes=*) NODES=${1#*=}; shift ;;
            --volumes) VOLUMES=$2; shift 2 ;;
            --volumes=*) VOLUMES=${1#*=}; shift ;;
            --real-node) REAL_NODE=true; shift ;;
            *) usage ;;
        esac
    done
    [[ $NODES =~ ^[0-9]+$ ]] || die "--nodes needs a number"
    [[ $VOLUMES =~ ^[0-9]+$ ]] || die "--volumes needs a number"
    DIR=$(realpath -m "$DIR")
    PROC_DIR=$DIR
    PKI="$DIR/pki"
    BIN=$(bash "$ROOT/hack/tools.sh" bin-dir)
    case "$cmd" in
        up)
            if ! bash "$ROOT/hack/tools.sh" check kubernetes etcd kwok 2>/dev/null; then
                log "building the Kubernetes tools first (hack/tools.sh install; tens of minutes the first time)"
                bash "$ROOT/hack/tools.sh" install kubernetes etcd kwok >/dev/null
            fi
            cmd_up
            ;;
        down) cmd_down ;;
        env) [[ -f $DIR/kubeconfig ]] || die "no cluster in $DIR"; print_env ;;
        status) cmd_status ;;
        *) usage ;;
    esac
}

main "$@"
