#!/usr/bin/env bash
# Runs the simulator once per deliberate bug (cargo feature `sim-mutants`)
# and fails unless every one of them is caught. Prints how many seeds each
# mutant took to be caught.
#
#   scripts/mutants.sh [--seeds N]     (default 2000 seeds per mutant)
set -uo pipefail
cd "$(dirname "$0")/.."
seeds=2000
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
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
exit $escaped
