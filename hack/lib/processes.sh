# Background processes of hack/dev-cluster.sh and hack/real-node.sh: start, check, wait for, stop.
# Sourced, not run. The caller sets PROC_DIR (pid files go in PROC_DIR/pids, logs in PROC_DIR/logs),
# READY_TIMEOUT (seconds wait_for polls before giving up), and defines log and die.

# A pid file holds "PID BINARY": the process started for NAME and the file name of the binary it runs.

# proc_pid NAME: the PID recorded for NAME (empty if none).
proc_pid() {
    local pidfile="$PROC_DIR/pids/$1.pid" pid binary
    [[ -f $pidfile ]] || return 0
    read -r pid binary <"$pidfile" || true
    printf '%s' "$pid"
}

# argv0_of PID: the file name of the program PID runs (its argv[0] without the directory); fails if it is gone.
argv0_of() {
    local argv0
    [[ -r /proc/$1/cmdline ]] || return 1
    IFS= read -r -d '' argv0 <"/proc/$1/cmdline" || [[ -n $argv0 ]] || return 1
    printf '%s' "${argv0##*/}"
}

# pid_alive NAME: the process recorded for NAME still runs, and still runs that binary (so a recycled PID
# is not taken for it).
pid_alive() {
    local pidfile="$PROC_DIR/pids/$1.pid" pid binary argv0
    [[ -f $pidfile ]] || return 1
    read -r pid binary <"$pidfile" || true
    [[ -n $pid && -d /proc/$pid ]] || return 1
    argv0=$(argv0_of "$pid") || return 1
    [[ $argv0 == "${binary:-$1}" ]]
}

# start NAME ARGV...: run ARGV in the background in its own session, logging to PROC_DIR/logs/NAME.log, and
# return once it runs ARGV[0] (or has already exited). Until the forked shell has exec'd, /proc/PID/cmdline
# is this shell's own, and pid_alive would take the process for a dead one.
start() {
    local name=$1 binary=${2##*/} pid i argv0; shift
    mkdir -p "$PROC_DIR/pids" "$PROC_DIR/logs"
    setsid "$@" </dev/null >>"$PROC_DIR/logs/$name.log" 2>&1 &
    pid=$!
    # setsid execs ARGV in the same process (it is not a process group leader here, so it does not fork).
    for ((i = 0; i < 200; i++)); do
        argv0=$(argv0_of "$pid") || break
        [[ $argv0 == "$binary" ]] && break
        sleep 0.05
    done
    printf '%s %s\n' "$pid" "$binary" >"$PROC_DIR/pids/$name.pid"
}

# stop NAME: SIGTERM, then SIGKILL after 15 s, the process recorded for NAME.
stop() {
    local name=$1 pid i
    pid_alive "$name" || { rm -f "$PROC_DIR/pids/$name.pid"; return 0; }
    pid=$(proc_pid "$name")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        log "$name (pid $pid) did not stop on SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PROC_DIR/pids/$name.pid"
}

# wait_for NAME DESCRIPTION COMMAND...: poll COMMAND until it succeeds; fail early if NAME's process died.
wait_for() {
    local name=$1 what=$2 deadline=$((SECONDS + READY_TIMEOUT)); shift 2
    until "$@" >/dev/null 2>&1; do
        if ! pid_alive "$name"; then
            log "$name exited; last lines of $PROC_DIR/logs/$name.log:"
            tail -n 30 "$PROC_DIR/logs/$name.log" >&2 || true
            die "$name did not start"
        fi
        ((SECONDS < deadline)) || { tail -n 30 "$PROC_DIR/logs/$name.log" >&2 || true; die "timed out waiting for $what"; }
        sleep 0.2
    done
}
