#!/usr/bin/env bash
# Fuzzes the RPC decoders (issue 5) with cargo-fuzz / libFuzzer.
#
#   scripts/fuzz.sh                    every target, 1,000,000 runs each
#   FUZZ_RUNS=100000 scripts/fuzz.sh   fewer runs
#   scripts/fuzz.sh body_decoder       one target
#
# Needs a nightly toolchain (rustup); installs cargo-fuzz if it is missing.
# Each target starts from its seed corpus in fuzz/corpus/<target>/ (copied
# to a scratch directory, so the repo's corpus is not modified). Exits
# non-zero on the first crash; the crashing input is left in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_RUNS="${FUZZ_RUNS:-1000000}"
# Build directory of the fuzz binaries (kept apart from the main target/).
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(frame_decoder body_decoder)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for t in "${TARGETS[@]}"; do
    printf '\n=== fuzz %s: %s runs\n' "$t" "$FUZZ_RUNS"
    mkdir -p "$scratch/$t"
    cp fuzz/corpus/"$t"/* "$scratch/$t"/
    # libFuzzer exits non-zero on a crash, a leak or a timeout; set -e stops here.
    cargo +nightly fuzz run --target-dir "$FUZZ_TARGET_DIR" "$t" "$scratch/$t" -- \
        -runs="$FUZZ_RUNS" -max_len=4096 -timeout=10 -print_final_stats=1
done
printf '\n=== fuzz: no crashes in %s\n' "${TARGETS[*]}"
