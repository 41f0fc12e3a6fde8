#!/usr/bin/env bash
# Runs the core simulator once per deliberate bug in the core (cargo
# feature `sim-mutants`), and the node simulator (scripts/sim.sh --node)
# once per deliberate bug in the storage around it, and fails unless every
# one of them is caught. Prints the seed that caught each mutant.
#
#   scripts/mutants.sh [--seeds N] [--node-seeds N]
#       (default 2000 core-simulator seeds, 300 node-simulator seeds per
#       mutant)
set -uo pipefail
cd "$(dirname "$0")/.."
seeds=2000
node_seeds=300
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --node-seeds) node_seeds="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
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
# Node mutants: deliberate bugs in the layers around the core (storage,
# recovery, the service) and in what only whole nodes exercise (read
# contexts across restarts, persist reports of writes that took seconds),
# run on the node simulator (whole nodes on simulated disks,
# scripts/sim.sh --node).
node_mutants="recover-keeps-stale-tail snapshot-fsync-retry checkpoint-single-copy snapshot-incoming-race \
read-ctx-from-zero persist-ack-aba log-time-unbounded delete-not-deduplicated"
for m in $node_mutants; do
    out=$(scripts/sim.sh --node --mutant "$m" --seeds "$node_seeds" 2>&1)
    status=$?
    summary=$(printf '%s\n' "$out" | grep -E '^seeds=' | tail -n 1)
    if [ $status -ne 0 ] && printf '%s' "$summary" | grep -q 'violations=[1-9]'; then
        first=$(printf '%s' "$summary" | grep -oE 'first_violation_seed=[0-9]+' | cut -d= -f2)
        echo "mutant $m: caught at seed ${first:-?} of the node simulator (after $(( ${first:-0} + 1 )) seeds)"
    else
        echo "mutant $m: NOT caught in $node_seeds node seeds (exit $status)"
        printf '%s\n' "$out" | tail -n 5
        escaped=1
    fi
done
exit $escaped
