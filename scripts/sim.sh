#!/usr/bin/env bash
# Runs the deterministic cluster simulator (bin/ringraft-sim.rs) in release.
# Works from any directory. Uses feature sim-mutants iff --mutant is given.
# Examples:
#   scripts/sim.sh --seeds 2000
#   scripts/sim.sh --node --seeds 300        (whole nodes on simulated disks)
#   scripts/sim.sh --node --mutant checkpoint-single-copy --seeds 300
#   scripts/sim.sh --seed 42 --trace
#   scripts/sim.sh --mutant double-vote --seeds 2000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
features=sim
for arg in "$@"; do
  if [[ "$arg" == "--mutant" ]]; then
    features=sim-mutants
  fi
done
exec cargo run --quiet --release --manifest-path "$root/Cargo.toml" --features "$features" --bin ringraft-sim -- "$@"
