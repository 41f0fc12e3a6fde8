#!/usr/bin/env bash
# Runs the simulator once per deliberate bug in the core (cargo feature
# `sim-mutants`), and the storage fault tests (tests/fs_faults_*.rs) once
# per deliberate bug in the storage around it (RINGRAFT_FS_MUTANT), and
# fails unless every one of them is caught. Prints how many seeds or cases
# each mutant took to be caught.
#
#   scripts/mutants.sh [--seeds N] [--cases N]
#       (default 2000 simulator seeds, 2000 fault-test cases per mutant)
set -uo pipefail
cd "$(dirname "$0")/.."
seeds=2000
cases=2000
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --cases) cases="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown flag: $1 (try --help)" >&2; exit 2 ;;
    esac
done
mutants="commit-prev-term double-vote skip-up-to-date ack-before-persist lease-after-timeout-now lease-too-long resume-other-content promote-unchecked"
escaped=0
for m in $mutants; do
    out=$(scripts/sim.sh --mutant "$m" --seeds "$seeds" 2>&1)
    status=$?
    summary=$(printf '%s\n' "$out" | grep -E '^seeds=' | tail -n 1)
    if [ $status -ne 0 ] && printf '%s' "$summary" | grep -q 'violations=[1-9]'; then
        first=$(printf '%s' "$summary" | grep -oE 'first_violation_seed=[0-9]+' | cut -d= -f2)
        echo "mutant $m: caught at seed ${first:-?} (after $(( ${first:-0} + 1 )) seeds)"
    else
        echo "mutant $m: NOT caught in $seeds seeds (exit $status)"
        printf '%s\n' "$out" | tail -n 5
        escaped=1
    fi
done
# Storage mutants: NAME:TEST (the fault test that must catch it). Each
# test prints 'fs-faults: violation at case N' when it finds one.
fs_mutants="recover-keeps-stale-tail:fs_faults_recover snapshot-fsync-retry:fs_faults_service checkpoint-single-copy:fs_faults_service snapshot-incoming-race:fs_faults_service"
for entry in $fs_mutants; do
    m="${entry%%:*}"
    t="${entry#*:}"
    out=$(RINGRAFT_FS_MUTANT="$m" FS_FAULTS_CASES="$cases" \
        cargo test --quiet --release --features sim-mutants --test "$t" -- --nocapture --test-threads=1 2>&1)
    status=$?
    # (not anchored: libtest's progress dots may share the line)
    line=$(printf '%s\n' "$out" | grep -oE 'fs-faults: violation at case [0-9]+' | head -n 1)
    if [ $status -ne 0 ] && [ -n "$line" ]; then
        n=$(printf '%s' "$line" | sed -E 's/^fs-faults: violation at case ([0-9]+).*/\1/')
        echo "mutant $m: caught after $((n + 1)) cases of $t"
    else
        echo "mutant $m: NOT caught in $cases cases of $t (exit $status)"
        printf '%s\n' "$out" | tail -n 5
        escaped=1
    fi
done
exit $escaped
