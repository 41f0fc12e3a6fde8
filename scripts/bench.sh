#!/usr/bin/env bash
# Runs every benchmark of ringraft: the micro-benches in benches/ (core,
# log_append, rpc, pipeline, service), then a default run of the
# whole-system benchmark bin/ringraft-bench.rs (3 local servers), which
# prints each figure beside this machine's ideal (fdatasync, loopback RTT).
# Works from any directory; builds in release. Extra arguments after `--`
# go to ringraft-bench.
# Examples:
#   scripts/bench.sh
#   scripts/bench.sh --quick
#   scripts/bench.sh -- --clients 256 --json
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/bench.sh [--quick] [-- RINGRAFT_BENCH_ARGS...]

Runs, in release:
  cargo bench --features sim --bench core
  cargo bench --bench log_append
  cargo bench --bench rpc
  cargo bench --bench pipeline
  cargo bench --bench service
  ringraft-bench (defaults: --spawn 3 --clients 16 --window 1 --size 128
                  --duration 10 --warmup 2)

Options:
  --quick   shorter runs: micro-bench knobs cut down (LOG_APPEND_SECS,
            RPC_BENCH_SECS, TIMER_BENCH_*) and ringraft-bench
            --duration 3 --warmup 1
  -h, --help  this text
Environment: CARGO_TARGET_DIR is honoured (default: target/).
USAGE
}

quick=0
bench_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; bench_args=("$@"); break ;;
    *) echo "scripts/bench.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="$root/Cargo.toml"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

if [[ $quick -eq 1 ]]; then
  export LOG_APPEND_SECS="${LOG_APPEND_SECS:-0.5}"
  export RPC_BENCH_SECS="${RPC_BENCH_SECS:-0.5}"
  export TIMER_BENCH_PAIRS="${TIMER_BENCH_PAIRS:-100000}"
  export TIMER_BENCH_TIMERS="${TIMER_BENCH_TIMERS:-2000}"
  bench_args=(--duration 3 --warmup 1 "${bench_args[@]}")
fi

section() { printf '\n=== %s ===\n' "$*"; }

section "core (cargo bench --features sim --bench core)"
cargo bench --quiet --manifest-path "$manifest" --features sim --bench core
for b in log_append rpc pipeline service; do
  section "$b (cargo bench --bench $b)"
  cargo bench --quiet --manifest-path "$manifest" --bench "$b"
done

section "ringraft-bench ${bench_args[*]}"
cargo build --quiet --release --manifest-path "$manifest" --bin ringraft-server --bin ringraft-bench
RINGRAFT_SERVER_BIN="$target_dir/release/ringraft-server" \
  "$target_dir/release/ringraft-bench" "${bench_args[@]}"
