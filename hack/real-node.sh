#!/usr/bin/env bash
# One real Kubernetes node beside a dev cluster's kwok nodes: containerd + runc run the pods, a kubelet
# registers node callfs-real-node, kube-proxy programs Services, CoreDNS answers cluster names, and a CNI bridge
# gives pods addresses. Our images (hack/images.sh) are imported into its containerd; nothing is pulled.
#
#   hack/real-node.sh up --dir DIR      add the node to the running dev cluster in DIR (hack/dev-cluster.sh up)
#   hack/real-node.sh down --dir DIR    stop it and remove every trace of it (see below)
#   hack/real-node.sh status --dir DIR  list its processes and whether they are alive
#   hack/real-node.sh install-deps      install the Debian packages it needs (containerd, runc, iptables, ...)
#
# Network: bridge callfs-rn0 (POD_CIDR, the host end POD_GATEWAY) exists only on this machine. Pods have routes
# to the pod and Service ranges only, through the host end; nothing is masqueraded and the host forwards nothing
# from the bridge to any other interface (a FORWARD rule drops it). The host end carries what pods reach on the
# host: the API server (through a TCP relay to its loopback port, the `kubernetes` Service's endpoint), CoreDNS
# (the pods' name server; no upstream, so only cluster names resolve) and the kubelet (its API, for logs/exec).
#
# One real node per machine (its ports and /var/lib/kubelet are fixed): `up` takes the lock file
# /run/callfs-real-node.lock and fails when another is up. Machine-wide state it creates or changes, all undone
# by `down`: /var/lib/kubelet (the kubelet's root; CSI plugins expect it there), /var/lib/callfs-real-node
# (containerd's content and snapshots, pod logs, CNI IP allocations), /run/callfs-real-node (sockets,
# containerd state, pod network namespaces), the bridge, the iptables rules of kube-proxy and of the lane, the
# cgroups of the pods, the kubelet's KUBE-FIREWALL and canary chains, sysctls net.ipv4.ip_forward and net.bridge.bridge-nf-call-iptables (restored), and
# /var/lib/callfs-csi (the CSI node plugin's state, a hostPath of the chart). Logs, configuration and PIDs live
# in DIR/real-node.
#
# The kubelet runs on cgroup v1 with the cgroupfs driver and no per-QoS cgroups, and containerd does not raise
# OOM score adjustments (restrict_oom_score_adj): what a machine without CAP_SYS_RESOURCE and systemd allows.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=""
NODE_NAME=callfs-real-node
BRIDGE=callfs-rn0
POD_CIDR=10.244.0.0/24
POD_GATEWAY=10.244.0.1
POD_RANGE_START=10.244.0.10
POD_RANGE_END=10.244.0.250
SERVICE_CIDR=10.96.0.0/16
CLUSTER_DNS=$POD_GATEWAY
API_RELAY_PORT=6443
KUBELET_DIR=/var/lib/kubelet
STATE=/var/lib/callfs-real-node
RUN=/run/callfs-real-node
LOCK=/run/callfs-real-node.lock
CSI_STATE=/var/lib/callfs-csi
READY_TIMEOUT=${CALLFS_REAL_NODE_TIMEOUT:-180}
DEBIAN_PACKAGES=(containerd runc iptables conntrack socat iproute2 util-linux)
# Order matters: `down` stops them in reverse.
COMPONENTS=(containerd api-relay coredns kube-proxy kubelet)

log() { printf 'real-node: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# ---- processes ---------------------------------------------------------------------------------------------

# pid_alive, start, stop, wait_for, proc_pid (PROC_DIR is RN, set once --dir is read).
source "$ROOT/hack/lib/processes.sh"

kubectl() { "$BIN/kubectl" --kubeconfig "$DIR/kubeconfig" "$@"; }
ctr() { command ctr --address "$RUN/containerd.sock" --namespace k8s.io "$@"; }

install_deps() {
    local pkg missing=()
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    # containerd's package starts the system containerd; the lane runs its own, on its own socket.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---- configuration ----------------------------------------------------------------------------------------

# issue NAME SUBJECT: a client certificate signed by the dev cluster's CA, in RN/pki.
issue() {
    local name=$1 subject=$2
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
        -keyout "$RN/pki/$name.key" -out "$RN/pki/$name.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' \
        >"$RN/pki/$name.ext"
    openssl x509 -req -in "$RN/pki/$name.csr" -CA "$DIR/pki/ca.crt" -CAkey "$DIR/pki/ca.key" -CAcreateserial \
        -days 30 -sha256 -extfile "$RN/pki/$name.ext" -out "$RN/pki/$name.crt" 2>/dev/null
    rm -f "$RN/pki/$name.csr" "$RN/pki/$name.ext"
}

# kubeconfig FILE NAME: a kubeconfig for RN/pki/NAME.{crt,key} against the dev cluster's API server.
kubeconfig() {
    local server
    server=$(sed -n 's/^ *server: //p' "$DIR/kubeconfig" | head -n 1)
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: callfs-dev
  cluster: {server: "$server", certificate-authority: "$DIR/pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$RN/pki/$2.crt", client-key: "$RN/pki/$2.key"}
contexts:
- name: callfs-dev
  context: {cluster: callfs-dev, user: $2}
current-context: callfs-dev
EOF
}

write_configs() {
    mkdir -p "$RN/pki" "$RN/cni" "$STATE" "$RUN"
    issue kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
    issue kube-proxy "/CN=system:kube-proxy"
    issue coredns "/CN=callfs-real-node:coredns"
    kubeconfig "$RN/kubelet.kubeconfig" kubelet
    kubeconfig "$RN/kube-proxy.kubeconfig" kube-proxy
    kubeconfig "$RN/coredns.kubeconfig" coredns

    cat >"$RN/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$RUN/containerd.sock"
[ttrpc]
  address = "$RUN/containerd-ttrpc.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$BIN/cni"
    conf_dir = "$RN/cni"
    max_conf_num = 1
EOF

    cat >"$RN/cni/10-callfs-real-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "callfs-real-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni-ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "$POD_RANGE_START", "rangeEnd": "$POD_RANGE_END",
                     "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "$POD_CIDR"}, {"dst": "$SERVICE_CIDR", "gw": "$POD_GATEWAY"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF

    # No upstream resolver: only names of the cluster resolve.
    printf 'search %s\n' "cluster.local" >"$RN/resolv.conf"
    cat >"$RN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $POD_GATEWAY
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$DIR/pki/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$RUN/containerd.sock
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
clusterDNS: [$CLUSTER_DNS]
clusterDomain: cluster.local
resolvConf: "$RN/resolv.conf"
podCIDR: $POD_CIDR
podLogsDir: $STATE/pod-logs
serializeImagePulls: false
# The images are imported once and never pulled: no image garbage collection, no eviction on a full disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
nodeStatusReportFrequency: 10s
EOF

    cat >"$RN/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$RN/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$POD_GATEWAY/32"]
iptables: {localhostNodePorts: false, masqueradeAll: false}
conntrack: {maxPerCore: 0, min: 0}
EOF

    cat >"$RN/Corefile" <<EOF
.:53 {
    bind $POD_GATEWAY
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $RN/coredns.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
}

# rbac: what kube-proxy and CoreDNS may read (the Node authorizer covers the kubelet), the `kubernetes` Service's
# endpoint (the relay; the API server is started without an endpoint reconciler), and the kube-dns Service.
cluster_objects() {
    cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: callfs-real-node:kube-proxy}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node-proxier}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:kube-proxy}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: callfs-real-node:coredns}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: callfs-real-node:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: callfs-real-node:coredns}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "callfs-real-node:coredns"}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-real-node
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: callfs-real-node}
addressType: IPv4
endpoints: [{addresses: ["$POD_GATEWAY"], conditions: {ready: true}}]
ports: [{name: https, port: $API_RELAY_PORT, protocol: TCP}]
EOF
}

# ---- host network -----------------------------------------------------------------------------------------

# iptables rules of the lane: traffic between pods passes, nothing from the bridge leaves through another
# interface, nothing from elsewhere is forwarded onto it.
LANE_RULES=(
    "FORWARD -i $BRIDGE -o $BRIDGE -j ACCEPT -m comment --comment callfs-real-node"
    "FORWARD -i $BRIDGE -j DROP -m comment --comment callfs-real-node"
    "FORWARD -o $BRIDGE -j DROP -m comment --comment callfs-real-node"
)

network_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    ip addr replace "$POD_GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # Restored by `down`.
    printf 'net.ipv4.ip_forward=%s\nnet.bridge.bridge-nf-call-iptables=%s\n' \
        "$(cat /proc/sys/net/ipv4/ip_forward)" "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo 0)" \
        >"$RUN/sysctl.restore"
    modprobe br_netfilter 2>/dev/null || true
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1
    local i
    # Inserted in reverse so that they end up in order at the top of FORWARD.
    for ((i = ${#LANE_RULES[@]} - 1; i >= 0; i--)); do
        # shellcheck disable=SC2086
        iptables -I ${LANE_RULES[i]}
    done
}

network_down() {
    local rule
    for rule in "${LANE_RULES[@]}"; do
        # shellcheck disable=SC2086
        while iptables -D $rule 2>/dev/null; do :; done
    done
    # The chains the kubelet creates (a canary, a hint of the iptables mode, and KUBE-FIREWALL: no martian access
    # to 127.0.0.0/8).
    local ipt table chain
    for ipt in iptables ip6tables; do
        command -v "$ipt" >/dev/null || continue
        while "$ipt" -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
        while "$ipt" -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
        for table in filter nat mangle; do
            for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
                "$ipt" -t "$table" -F "$chain" 2>/dev/null && "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    if [[ -f $RUN/sysctl.restore ]]; then
        sysctl -qp "$RUN/sysctl.restore" >/dev/null || true
    fi
}

# ---- commands ---------------------------------------------------------------------------------------------

# open_volumes: the dev cluster's pre-created PersistentVolumes are hostPath directories under DIR/volumes. The
# kubelet would create them root-owned, mode 0755, and applies no fsGroup to a hostPath volume, while the pods
# of a CallFSCluster (storage nodes, PostgreSQL, Redis) run as non-root users: create them beforehand,
# writable by every user (sticky, like /tmp). (A provisioner of a real cluster hands the pod's fsGroup the
# volume.) They go with DIR.
open_volumes() {
    local path
    for path in $(kubectl get pv -l callfs.io/dev-cluster-pool -o jsonpath='{.items[*].spec.hostPath.path}'); do
        [[ $path == "$DIR"/* ]] || continue
        mkdir -p "$path"
        chmod 1777 "$path"
    done
}

load_images() {
    local archive ref alias
    while read -r archive ref alias; do
        ctr images import "$archive" >/dev/null
        # An OCI archive names its image by the reference given at export; make sure it carries that name.
        # (The list is read whole: `grep -q` closing the pipe early would fail the pipeline under pipefail.)
        local names
        names=$(ctr images ls -q)
        grep -qxF "$ref" <<<"$names" || die "importing $archive did not create image $ref"
        if [[ -n ${alias:-} ]]; then
            ctr images rm "$alias" >/dev/null 2>&1 || true
            ctr images tag "$ref" "$alias" >/dev/null
        fi
    done < <(bash "$ROOT/hack/images.sh" list)
}

cmd_up() {
    [[ -f $DIR/kubeconfig && -f $DIR/pki/ca.key ]] || die "no dev cluster in $DIR (hack/dev-cluster.sh up --dir $DIR)"
    install_deps
    bash "$ROOT/hack/tools.sh" check kubelet coredns cni-plugins 2>/dev/null \
        || die "kubelet, coredns and the CNI plugins are not built (bash hack/tools.sh install kubelet coredns cni-plugins)"
    bash "$ROOT/hack/images.sh" check 2>/dev/null || die "the images are not built (bash hack/images.sh build)"
    PAUSE_IMAGE=$(bash "$ROOT/hack/images.sh" list | awk '$2 ~ /pause/ {print $2}')

    exec 8>"$LOCK"
    flock -n 8 || die "another real node is up on this machine ($(cat "$RUN/owner" 2>/dev/null || echo '?'))"
    [[ -e $RUN || -e $STATE || -e $KUBELET_DIR ]] && \
        die "$RUN, $STATE or $KUBELET_DIR exists: a real node was not taken down (hack/real-node.sh down --dir $(cat "$RUN/owner" 2>/dev/null || echo DIR))"
    rm -rf "$RN"
    mkdir -p "$RN/logs" "$RN/pids" "$RUN" "$STATE" "$KUBELET_DIR"
    echo "$DIR" >"$RUN/owner"
    trap 'log "up failed; taking down what was started (logs kept in $RN/logs)"; cp -r "$RN/logs" "$DIR/real-node-logs" 2>/dev/null; teardown' EXIT
    local started=$SECONDS

    # The kubelet's root is a shared mount of its own, so that mounts made inside a container with
    # Bidirectional propagation (the CSI node plugin's) reach the pods that use them.
    mount --bind "$KUBELET_DIR" "$KUBELET_DIR"
    mount --make-rshared "$KUBELET_DIR"

    write_configs
    network_up

    start containerd containerd --config "$RN/containerd.toml"
    wait_for containerd "containerd" ctr version
    local t=$SECONDS
    load_images
    log "images imported in $((SECONDS - t)) s"

    kubectl apply -f - >/dev/null < <(cluster_objects)
    open_volumes
    local api
    api=$(sed -n 's#^ *server: https://127.0.0.1:##p' "$DIR/kubeconfig" | head -n 1)
    start api-relay socat "TCP-LISTEN:$API_RELAY_PORT,bind=$POD_GATEWAY,reuseaddr,fork" "TCP:127.0.0.1:$api"
    start coredns "$BIN/coredns" -conf "$RN/Corefile"
    start kube-proxy "$BIN/kube-proxy" --config "$RN/kube-proxy.yaml"
    start kubelet "$BIN/kubelet" --config "$RN/kubelet.yaml" --kubeconfig "$RN/kubelet.kubeconfig" \
        --hostname-override "$NODE_NAME" --node-ip "$POD_GATEWAY" --root-dir "$KUBELET_DIR" \
        --cert-dir "$RN/kubelet-pki" --node-labels "callfs.io/real-node=true"
    wait_for kubelet "node $NODE_NAME Ready" kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
    wait_for coredns "CoreDNS" bash -c "exec 3<>/dev/tcp/$POD_GATEWAY/53"
    wait_for kube-proxy "kube-proxy /healthz" curl -fsS http://127.0.0.1:10256/healthz
    trap - EXIT
    log "node $NODE_NAME Ready in $((SECONDS - started)) s (pods in $POD_CIDR on bridge $BRIDGE)"
}

# teardown: stop the node and remove every trace of it (used by `down` and by a failed `up`).
teardown() {
    local i pid
    stop kubelet
    # Every pod's containers: kill and delete their tasks, so that no shim keeps a mount or a network namespace.
    if pid_alive containerd; then
        for i in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$i" >/dev/null 2>&1 || true; done
        sleep 1
        for i in $(ctr tasks ls -q 2>/dev/null); do ctr tasks delete -f "$i" >/dev/null 2>&1 || true; done
    fi
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop "${COMPONENTS[i]}"; done
    # Shims of this containerd (found by its socket path, which is this lane's own) that outlived it.
    for pid in $(grep -lsF -- "$RUN/containerd" /proc/[0-9]*/cmdline | cut -d/ -f3); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    [[ -x $BIN/kube-proxy ]] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    network_down
    # Mounts under the lane's directories (pod volumes, network namespaces, overlay snapshots), deepest first.
    local m
    for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($KUBELET_DIR|$STATE|$RUN|$CSI_STATE)(/|$)" | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    # Cgroups the pods' containers were put in (cgroupfs driver, no QoS cgroups).
    local cg
    for cg in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
        [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$KUBELET_DIR" "$STATE" "$RUN" "$CSI_STATE"
    kubectl delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kubectl delete -f - --ignore-not-found >/dev/null 2>&1 < <(cluster_objects) || true
}

cmd_down() {
    [[ -d $RN || -e $RUN ]] || { log "nothing to take down in $DIR"; return 0; }
    if [[ -f $RUN/owner && "$(cat "$RUN/owner")" != "$DIR" ]]; then
        die "the real node on this machine belongs to $(cat "$RUN/owner"), not $DIR"
    fi
    teardown
    rm -rf "$RN"
    log "taken down; removed $RN, $KUBELET_DIR, $STATE, $RUN and bridge $BRIDGE"
}

cmd_status() {
    local name state rc=0
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
            *) usage ;;
        esac
    done
    BIN=$(bash "$ROOT/hack/tools.sh" bin-dir)
    case "$cmd" in
        install-deps) install_deps; return ;;
        up | down | status) ;;
        *) usage ;;
    esac
    [[ -n $DIR ]] || DIR="${CALLFS_DEV_CLUSTER_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/callfs-dev-cluster}"
    DIR=$(realpath -m "$DIR")
    RN="$DIR/real-node"
    PROC_DIR=$RN
    case "$cmd" in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
    esac
}

main "$@"
