#!/usr/bin/env bash
# The project's whole test suite, as CI runs it (`.ci/run` calls this).
#
#   scripts/test.sh            everything: format, lints, unit/scenario/sim
#                              tests, a simulator run and the mutant check
#   SIM_SEEDS=2000 scripts/test.sh   a longer simulator run
#   NODE_SEEDS=2000 scripts/test.sh  a longer node-simulator run (whole
#                              nodes on simulated disks)
#   FUZZ_RUNS=100000 scripts/test.sh    quicker fuzzing (cargo-fuzz is
#                              installed by scripts/fuzz.sh when missing)
#   NEMESIS_MINUTES=1 scripts/test.sh   a shorter nemesis run (real servers
#                              under faults; scripts/nemesis.sh --minutes 30
#                              is the soak)
#
# Runs over every crate of the workspace. Needs only a Rust toolchain
# (cargo, rustfmt, clippy); it installs the
# rustfmt/clippy components through rustup when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SIM_SEEDS="${SIM_SEEDS:-300}"
NODE_SEEDS="${NODE_SEEDS:-300}"
FUZZ_RUNS="${FUZZ_RUNS:-1000000}"
MUTANT_SEEDS="${MUTANT_SEEDS:-2000}"
NEMESIS_MINUTES="${NEMESIS_MINUTES:-3}"

# Each step prints its elapsed seconds when it ends, and the run ends with
# a table of them (also when a step fails), so CI logs show where the time
# goes (the budget: under 30 minutes on 2 cores).
STEP_NAME=""
STEP_START=$SECONDS
STEP_TIMES=()
end_step() {
    if [ -n "$STEP_NAME" ]; then
        local took=$((SECONDS - STEP_START))
        printf '=== %s: %d s\n' "$STEP_NAME" "$took"
        STEP_TIMES+=("$(printf '%6d s  %s' "$took" "$STEP_NAME")")
        STEP_NAME=""
    fi
}
step() {
    end_step
    printf '\n=== %s\n' "$*"
    STEP_NAME="$*"
    STEP_START=$SECONDS
}
print_times() {
    local status=$?
    end_step
    printf '\n=== step times (exit status %d)\n' "$status"
    printf '%s\n' "${STEP_TIMES[@]}"
    printf '%6d s  total\n' "$SECONDS"
}
trap print_times EXIT

ensure_component() {
    if ! cargo "$1" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            rustup component add "$2"
        else
            echo "cargo $1 is missing and rustup is not available to install $2" >&2
            exit 1
        fi
    fi
}
ensure_component fmt rustfmt
ensure_component clippy clippy

step "format"
cargo fmt --all --check

step "house rules (file size, headers, import cycles, the Fs seam)"
scripts/house.sh

step "clippy (every crate, all targets, all features)"
cargo clippy --workspace --all-targets --features sim-mutants -- -D warnings

step "rustdoc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --lib --quiet

step "unit, scenario and simulator tests"
cargo test --workspace --features sim

step "benches compile"
cargo bench --features sim --no-run

step "simulator: ${SIM_SEEDS} seeds"
scripts/sim.sh --seeds "$SIM_SEEDS"

step "node simulator: ${NODE_SEEDS} seeds"
node_out=$(scripts/sim.sh --node --seeds "$NODE_SEEDS")
printf '%s\n' "$node_out" | tail -n 2
# Every kind of fault the node simulator adds must really have happened.
for key in faults_fs_lost_unsynced faults_fs_torn faults_fs_enospc faults_fs_eio faults_clock_step \
    faults_restart client_ops; do
    if ! printf '%s\n' "$node_out" | tail -n 1 | grep -qE " $key=[1-9]"; then
        echo "node simulator: $key is 0 over $NODE_SEEDS seeds" >&2
        exit 1
    fi
done

step "mutants: every deliberate bug must be caught"
scripts/mutants.sh --seeds "$MUTANT_SEEDS"

step "nemesis: ${NEMESIS_MINUTES} minutes of real servers under faults"
scripts/nemesis.sh --minutes "$NEMESIS_MINUTES" --seconds 40

step "fuzz the RPC decoders: ${FUZZ_RUNS} runs per target"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    FUZZ_RUNS="$FUZZ_RUNS" scripts/fuzz.sh
else
    echo "skipped fuzzing: no nightly toolchain on this machine (cargo-fuzz needs one: rustup toolchain install nightly)"
fi

end_step
printf '\n=== all tests passed\n'
