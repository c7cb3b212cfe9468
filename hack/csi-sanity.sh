#!/usr/bin/env bash
# Runs the CSI conformance suite (csi-sanity, the full suite: no --ginkgo.skip/focus) against callfs-csi, exactly
# as CI does (tests/integration/test_csi_sanity.py runs this script):
#
#   1. a fresh CallFS storage node on loopback, on real PostgreSQL + Redis (started here on throwaway data dirs;
#      CSI_SANITY_STORE=sqlite uses the embedded SQLite store and in-process locks instead);
#   2. callfs-csi --mode all on a unix socket in a temporary directory, its default cluster being that node;
#   3. csi-sanity (built by hack/tools.sh) with volume parameters, secrets (a root API key: the controller sets
#      quotas), staging/target directories, volume and expansion sizes, and a JUnit report;
#   4. everything is stopped and every mount under the temporary directory removed, whatever happened.
#
# Usage: hack/csi-sanity.sh [extra csi-sanity arguments...]
# Environment: CSI_SANITY_STORE=postgres|sqlite (default postgres), CSI_SANITY_KEEP=1 keeps the work directory
# (logs: node.log, csi.log, callfs-mount.log, junit.xml), CSI_SANITY_JUNIT=FILE copies the JUnit report there.
# Needs root (FUSE and bind mounts), fuse3, and for the default store the Debian postgresql and redis-server
# packages (hack/install.sh installs them). Exit status: csi-sanity's.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STORE=${CSI_SANITY_STORE:-postgres}
BIN_DIR=$(bash "$ROOT/hack/tools.sh" bin-dir)
SANITY="$BIN_DIR/csi-sanity"

log() { printf 'csi-sanity.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$SANITY" ] || die "$SANITY not built: run 'bash hack/tools.sh install csi-sanity'"
[ "$(id -u)" = 0 ] || die "needs root (FUSE and bind mounts)"
command -v fusermount3 >/dev/null || die "fusermount3 missing: install the Debian package fuse3"
command -v callfs-csi >/dev/null || die "callfs-csi missing: run bash hack/install.sh and put .venv/bin on PATH"

WORK=$(mktemp -d /tmp/callfs-csi-sanity.XXXXXX)
chmod 711 "$WORK"  # the postgres system user must reach its data directory below
NODE_PID= CSI_PID= PG_BIN= REDIS_PID=

unmount_all() {
    # Deepest first; lazily when busy or stale, so that nothing is left mounted under $WORK.
    local mp
    awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r mp; do
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done
}

stop_pid() {  # stop_pid PID: SIGTERM, then SIGKILL after 15 s
    local pid=$1 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    stop_pid "$CSI_PID"
    unmount_all
    stop_pid "$NODE_PID"
    [ -n "$REDIS_PID" ] && stop_pid "$REDIS_PID"
    if [ -n "$PG_BIN" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ "${CSI_SANITY_KEEP:-}" = 1 ] || [ $status -ne 0 ]; then
        log "work directory kept: $WORK"
        [ $status -ne 0 ] && for f in node.log csi.log; do
            [ -f "$WORK/$f" ] && { log "--- tail of $f"; tail -n 30 "$WORK/$f" >&2; }
        done
    else
        rm -rf "$WORK"
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
token() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$(( $(date +%s) + seconds ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "$what not ready after ${seconds}s"
        sleep 0.2
    done
}

# ---- 1. metadata store, lock service, storage node -----------------------------------------------------------
STORE_SECTIONS='"metadata_store": {"type": "sqlite"}, "dlm": {"type": "local", "wait_timeout": 10}'
if [ "$STORE" = postgres ]; then
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$PG_BIN/initdb" ] || die "PostgreSQL server binaries not found (Debian package postgresql)"
    command -v redis-server >/dev/null || die "redis-server not found (Debian package redis-server)"
    mkdir -p "$WORK/pg" && chown postgres:postgres "$WORK/pg"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C \
        --no-sync >"$WORK/pg/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$WORK/pg/initdb.log")"
    PG_PORT=$(free_port)
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$WORK/pg -c fsync=off" \
        start >/dev/null || die "PostgreSQL did not start: $(tail -n 5 "$WORK/pg/server.log")"
    REDIS_PORT=$(free_port) REDIS_PASSWORD=$(token)
    mkdir -p "$WORK/redis"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --requirepass "$REDIS_PASSWORD" --dir "$WORK/redis" \
        --save "" --appendonly no --daemonize no --logfile "$WORK/redis/redis.log" &
    REDIS_PID=$!
    wait_for 30 "redis-server" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -a "$REDIS_PASSWORD" --no-auth-warning ping
    STORE_SECTIONS="\"metadata_store\": {\"type\": \"postgres\", \"dsn\": \"postgresql://postgres@127.0.0.1:$PG_PORT/postgres\"},
      \"dlm\": {\"type\": \"redis\", \"redis_addr\": \"127.0.0.1:$REDIS_PORT\", \"redis_password\": \"$REDIS_PASSWORD\",
                \"wait_timeout\": 10}"
elif [ "$STORE" != sqlite ]; then
    die "CSI_SANITY_STORE must be postgres or sqlite, not $STORE"
fi

NODE_PORT=$(free_port)
URL="http://127.0.0.1:$NODE_PORT"
ROOT_KEY=$(token) USER_KEY=$(token)
cat >"$WORK/node.json" <<EOF
{
  "data_dir": "$WORK/node-data",
  "server": {"listen_addr": "127.0.0.1:$NODE_PORT", "shutdown_timeout": 10},
  "auth": {"api_key_users": {"root": "$ROOT_KEY", "api-user-0": "$USER_KEY"},
           "internal_proxy_secret": "$(token)", "single_use_link_secret": "$(token)"},
  "log": {"level": "info", "format": "json"},
  $STORE_SECTIONS
}
EOF
chmod 600 "$WORK/node.json"
(cd "$WORK" && exec python3 -m callfs server -c "$WORK/node.json") >"$WORK/node.log" 2>&1 &
NODE_PID=$!
wait_for 60 "CallFS node ($STORE)" python3 -c "import urllib.request as u; u.urlopen('$URL/ready', timeout=1)"
log "CallFS node on $URL ($STORE store)"

# ---- 2. the CSI driver ---------------------------------------------------------------------------------------
SOCKET="$WORK/csi.sock"
printf '%s' "$ROOT_KEY" >"$WORK/root.key" && chmod 600 "$WORK/root.key"
callfs-csi --endpoint "unix://$SOCKET" --mode all --node-id csi-sanity-node --state-dir "$WORK/state" \
    --server "$URL" --api-key-file "$WORK/root.key" >"$WORK/csi.log" 2>&1 &
CSI_PID=$!
wait_for 60 "callfs-csi" test -S "$SOCKET"

# ---- 3. csi-sanity -------------------------------------------------------------------------------------------
# Every RPC that takes secrets gets the root key and the cluster URL, as the standard StorageClass secret
# parameters would make Kubernetes send them.
SECRET_BLOCK="  apiKey: \"$ROOT_KEY\"
  serverURL: \"$URL\""
: >"$WORK/secrets.yaml"
for rpc in CreateVolumeSecret DeleteVolumeSecret ControllerPublishVolumeSecret ControllerUnpublishVolumeSecret \
           ControllerValidateVolumeCapabilitiesSecret NodeStageVolumeSecret NodePublishVolumeSecret \
           CreateSnapshotSecret DeleteSnapshotSecret ControllerExpandVolumeSecret ControllerModifyVolumeSecret \
           ListSnapshotsSecret GetSnapshotSecret; do
    printf '%s:\n%s\n' "$rpc" "$SECRET_BLOCK" >>"$WORK/secrets.yaml"
done
chmod 600 "$WORK/secrets.yaml"
printf 'server: "%s"\nonDelete: delete\n' "$URL" >"$WORK/parameters.yaml"
printf 'maxInodes: "1000000"\n' >"$WORK/mutable-parameters.yaml"

log "running csi-sanity $("$SANITY" -version 2>/dev/null | head -n 1 || true)"
set +e
"$SANITY" \
    --csi.endpoint "unix://$SOCKET" \
    --csi.stagingdir "$WORK/staging" \
    --csi.mountdir "$WORK/target" \
    --csi.secrets "$WORK/secrets.yaml" \
    --csi.testvolumeparameters "$WORK/parameters.yaml" \
    --csi.testvolumemutableparameters "$WORK/mutable-parameters.yaml" \
    --csi.testvolumesize $((1 << 30)) \
    --csi.testvolumeexpandsize $((2 << 30)) \
    --csi.testvolumeaccesstype mount \
    --ginkgo.no-color \
    --ginkgo.junit-report "$WORK/junit.xml" \
    "$@"
STATUS=$?
set -e
[ -n "${CSI_SANITY_JUNIT:-}" ] && cp "$WORK/junit.xml" "$CSI_SANITY_JUNIT"
kill -0 "$CSI_PID" 2>/dev/null || { log "callfs-csi died during the suite"; STATUS=1; }
exit $STATUS
