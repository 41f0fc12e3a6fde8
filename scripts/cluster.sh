#!/usr/bin/env bash
# A local ringraft cluster of N ringraft-server processes on 127.0.0.1, for
# trying the CLI and the SDK by hand.
#
#   scripts/cluster.sh start [--dir DIR] [--nodes 3] [--base-port 7100] [--cluster-id 1]
#   scripts/cluster.sh status [--dir DIR]        exits as `ringraft status` does (0 all well)
#   scripts/cluster.sh stop [--dir DIR]          SIGTERM every node, wait for them
#   scripts/cluster.sh kill N [--dir DIR]        SIGKILL node N (a crash)
#   scripts/cluster.sh restart N [--dir DIR]     stop node N if running, start it again and
#                                                wait until it serves (fails if it exits)
#
# Node i (1..N) listens on 127.0.0.1:BASE_PORT+i, keeps its data in DIR/nI
# and logs to DIR/nodeI.log. The first start bootstraps the cluster; later
# starts restart the nodes on their data. The pids of the processes this
# script started are in DIR/pids ("node pid" lines): only those are ever
# signalled. The release binaries are built when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
SERVER="$BIN_DIR/ringraft-server"
CLI="$BIN_DIR/ringraft"

DIR=/tmp/ringraft-cluster
NODES=3
BASE_PORT=7100
CLUSTER_ID=1
LEADER_WAIT_S=20
STOP_WAIT_S=15

usage() {
    sed -n '2,16s/^# \{0,1\}//p' "$0"
}

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

usage_error() {
    echo "cluster.sh: $*" >&2
    echo "Try 'scripts/cluster.sh --help'." >&2
    exit 2
}

is_number() {
    [[ "$1" =~ ^[0-9]+$ ]]
}

# Parse: the command, an optional node number, then options in any order.
CMD=""
NODE=""
OPT_NODES=""
OPT_BASE_PORT=""
OPT_CLUSTER_ID=""
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --dir) (($# >= 2)) || usage_error "--dir needs a value"; DIR="$2"; shift 2 ;;
        --nodes) (($# >= 2)) && is_number "$2" || usage_error "--nodes needs a number"; OPT_NODES="$2"; shift 2 ;;
        --base-port) (($# >= 2)) && is_number "$2" || usage_error "--base-port needs a number"; OPT_BASE_PORT="$2"; shift 2 ;;
        --cluster-id) (($# >= 2)) && is_number "$2" || usage_error "--cluster-id needs a number"; OPT_CLUSTER_ID="$2"; shift 2 ;;
        start | status | stop | kill | restart)
            [[ -z "$CMD" ]] || usage_error "one command at a time"
            CMD="$1"; shift ;;
        *)
            if [[ -n "$CMD" && -z "$NODE" ]] && is_number "$1"; then
                NODE="$1"; shift
            else
                usage_error "unexpected argument: $1"
            fi ;;
    esac
done
[[ -n "$CMD" ]] || usage_error "no command (start, status, stop, kill N, restart N)"

PIDS="$DIR/pids"
SETTINGS="$DIR/cluster.env"

# A started cluster's settings replace the defaults; flags given on the
# command line must agree with them.
if [[ -f "$SETTINGS" ]]; then
    # shellcheck disable=SC1090
    source "$SETTINGS"
    for k in NODES BASE_PORT CLUSTER_ID; do
        opt="OPT_$k"
        if [[ -n "${!opt:-}" && "${!opt}" != "${!k}" ]]; then
            die "$DIR holds a cluster with $k=${!k}; drop the flag or use another --dir"
        fi
    done
fi
NODES="${OPT_NODES:-$NODES}"
BASE_PORT="${OPT_BASE_PORT:-$BASE_PORT}"
CLUSTER_ID="${OPT_CLUSTER_ID:-$CLUSTER_ID}"

addr_of() { echo "127.0.0.1:$((BASE_PORT + $1))"; }

servers() {
    local i out=""
    for ((i = 1; i <= NODES; i++)); do out+="${out:+,}$(addr_of "$i")"; done
    echo "$out"
}

peers() {
    local i out=""
    for ((i = 1; i <= NODES; i++)); do out+="${out:+,}$i=$(addr_of "$i")"; done
    echo "$out"
}

# The pid recorded for node $1, or nothing.
pid_of() {
    [[ -f "$PIDS" ]] || return 0
    awk -v n="$1" '$1 == n { print $2 }' "$PIDS"
}

# True when pid $1 is a live (not zombie) ringraft-server.
alive() {
    local pid="$1"
    [[ -n "$pid" ]] || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        local state
        state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || true)"
        [[ -n "$state" && "$state" != Z ]] || return 1
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ringraft-server
    else
        kill -0 "$pid" 2>/dev/null
    fi
}

set_pid() {
    local tmp="$PIDS.tmp"
    { [[ -f "$PIDS" ]] && awk -v n="$1" '$1 != n' "$PIDS"; [[ -z "${2:-}" ]] || echo "$1 $2"; } >"$tmp" || true
    mv "$tmp" "$PIDS"
}

# Waits until pid $1 is gone, up to $2 seconds; false if it is not.
wait_gone() {
    local pid="$1" deadline=$((SECONDS + $2))
    while alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

ensure_bins() {
    if [[ ! -x "$SERVER" || ! -x "$CLI" ]]; then
        echo "building the release binaries ..."
        (cd "$ROOT" && cargo build --release --bins)
    fi
}

start_node() {
    local i="$1" mode=()
    if alive "$(pid_of "$i")"; then
        echo "node $i already running (pid $(pid_of "$i"))"
        return 0
    fi
    mkdir -p "$DIR/n$i"
    if [[ ! -f "$DIR/n$i/IDENTITY" ]]; then
        mode=(--bootstrap --cluster-id "$CLUSTER_ID")
    fi
    RUST_LOG="${RUST_LOG:-info}" nohup "$SERVER" --node-id "$i" --data-dir "$DIR/n$i" \
        --listen "$(addr_of "$i")" --peers "$(peers)" "${mode[@]}" >>"$DIR/node$i.log" 2>&1 </dev/null &
    set_pid "$i" "$!"
    echo "node $i: pid $! on $(addr_of "$i")${mode[0]:+ (bootstrap)}, log $DIR/node$i.log"
}

# Waits until node $1 serves (its status lists its group); fails, with the
# end of its log, when the process exits first (a node that cannot start
# dies at once: a bad data directory, a port in use).
wait_serving() {
    local i="$1" pid line deadline=$((SECONDS + LEADER_WAIT_S))
    pid="$(pid_of "$i")"
    while :; do
        if ! alive "$pid"; then
            set_pid "$i"
            echo "cluster.sh: node $i (pid $pid) exited at once; the end of $DIR/node$i.log:" >&2
            tail -n 15 "$DIR/node$i.log" >&2 || true
            exit 1
        fi
        line="$("$CLI" --servers "$(addr_of "$i")" --cluster-id "$CLUSTER_ID" status --json 2>/dev/null || true)"
        if [[ "$line" == *'"groups":[{'* ]]; then
            echo "node $i serving"
            return 0
        fi
        ((SECONDS < deadline)) || die "node $i (pid $pid) is not serving after ${LEADER_WAIT_S}s; see $DIR/node$i.log"
        sleep 0.2
    done
}

status_table() {
    "$CLI" --servers "$(servers)" --cluster-id "$CLUSTER_ID" status
}

wait_leader() {
    local deadline=$((SECONDS + LEADER_WAIT_S)) i
    # status exits 1 while any node is down or starting; a leader is all
    # this waits for (pipefail would otherwise take status's exit code).
    until { status_table 2>/dev/null || true; } | awk '$4 == "leader" { found = 1 } END { exit !found }'; do
        if ((SECONDS >= deadline)); then
            status_table || true
            die "no leader within ${LEADER_WAIT_S}s; see $DIR/node*.log"
        fi
        for ((i = 1; i <= NODES; i++)); do
            alive "$(pid_of "$i")" || die "node $i exited; see $DIR/node$i.log"
        done
        sleep 0.2
    done
}

cmd_start() {
    local i
    ((NODES >= 1)) || usage_error "--nodes must be at least 1"
    ensure_bins
    mkdir -p "$DIR"
    printf 'NODES=%s\nBASE_PORT=%s\nCLUSTER_ID=%s\n' "$NODES" "$BASE_PORT" "$CLUSTER_ID" >"$SETTINGS"
    for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
    wait_leader
    for ((i = 1; i <= NODES; i++)); do wait_serving "$i" >/dev/null; done
    status_table || true
    echo
    echo "cluster up. Use:  --servers $(servers) --cluster-id $CLUSTER_ID"
    echo "e.g.  $CLI --servers $(servers) --cluster-id $CLUSTER_ID create orders"
}

cmd_status() {
    local i
    [[ -f "$PIDS" ]] || die "no cluster in $DIR (no $PIDS)"
    for ((i = 1; i <= NODES; i++)); do
        local pid
        pid="$(pid_of "$i")"
        if alive "$pid"; then echo "node $i: pid $pid running"; else echo "node $i: not running"; fi
    done
    echo
    [[ -x "$CLI" ]] || die "$CLI is missing (cargo build --release --bins)"
    status_table
}

# Stops node $1: SIGTERM (unless $2 is "sent": a second SIGTERM would make
# the server exit at once instead of cleanly), wait, SIGKILL past the wait.
stop_node() {
    local i="$1" pid
    pid="$(pid_of "$i")"
    if ! alive "$pid"; then
        [[ "${2:-}" != sent ]] || echo "node $i (pid $pid) stopped"
        set_pid "$i"
        return 0
    fi
    [[ "${2:-}" == sent ]] || kill -TERM "$pid"
    if wait_gone "$pid" "$STOP_WAIT_S"; then
        echo "node $i (pid $pid) stopped"
    else
        echo "node $i (pid $pid) ignored SIGTERM for ${STOP_WAIT_S}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || die "node $i (pid $pid) would not die"
    fi
    set_pid "$i"
}

cmd_stop() {
    [[ -f "$PIDS" ]] || { echo "no cluster running in $DIR"; return 0; }
    local pids=() i
    for ((i = 1; i <= NODES; i++)); do
        local pid
        pid="$(pid_of "$i")"
        if alive "$pid"; then kill -TERM "$pid" && pids+=("$i"); fi
    done
    for i in "${pids[@]}"; do stop_node "$i" sent; done
    echo "cluster in $DIR stopped (data kept; 'start' restarts it)"
}

need_node() {
    [[ -n "$NODE" ]] || usage_error "$CMD needs a node number"
    ((NODE >= 1 && NODE <= NODES)) || usage_error "node $NODE is not in 1..$NODES"
}

cmd_kill() {
    need_node
    local pid
    pid="$(pid_of "$NODE")"
    alive "$pid" || die "node $NODE is not running"
    kill -KILL "$pid"
    wait_gone "$pid" 5 || die "node $NODE (pid $pid) is still there after SIGKILL"
    set_pid "$NODE"
    echo "node $NODE (pid $pid) killed with SIGKILL"
}

cmd_restart() {
    need_node
    [[ -f "$DIR/n$NODE/IDENTITY" ]] || die "node $NODE has no data in $DIR/n$NODE; use 'start'"
    ensure_bins
    stop_node "$NODE"
    start_node "$NODE"
    wait_serving "$NODE"
}

case "$CMD" in
    start) cmd_start ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    kill) cmd_kill ;;
    restart) cmd_restart ;;
esac
