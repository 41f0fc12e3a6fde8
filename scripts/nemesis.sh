#!/usr/bin/env bash
# Fault injection at process level (issue 7): real ringraft-server
# processes on 127.0.0.1, every peer link through a fault-injecting proxy,
# clients appending and reading with sessions, and a nemesis injecting on a
# seeded schedule: kill -9 + restart, SIGSTOP/SIGCONT, partitions (minority,
# one-way, bridge), delay, dropped frames, cut connections, leader transfer,
# membership changes, snapshots, a full disk (tmpfs), a failing fsync
# (LD_PRELOAD shim) and a power cut (copy of a loop-mounted ext4 image).
# Then it heals, reads every replica and checks the history.
#
#   scripts/nemesis.sh                    one 60 s run on 3 servers
#   scripts/nemesis.sh --seed 42          replay the fault schedule of seed 42
#   scripts/nemesis.sh --minutes 30       the soak: runs back to back
#   scripts/nemesis.sh --check FILE       check a recorded history alone
#
# Any other flag goes to ringraft-nemesis (see `--help`). The output ends
# with one summary line of key=value pairs (runs=, seeds=, ops=, acked=,
# unknown=, failed=, reads=, faults_<kind>=, anomalies=N); the exit status
# is 1 when N > 0, 2 for bad usage or a setup failure. Disk faults need root
# (mount) and gcc; without them those kinds are skipped and the output says
# why.
set -euo pipefail

cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

args=()
for a in "$@"; do
  args+=("$a")
done
# A --check path is relative to where the script was called from.
for i in "${!args[@]}"; do
  if [[ "${args[$i]}" == --check && -n "${args[$((i + 1))]:-}" ]]; then
    f="${args[$((i + 1))]}"
    [[ "$f" = /* ]] || f="$OLDPWD/$f"
    args[$((i + 1))]="$f"
  fi
done

cargo build --release --quiet --bin ringraft-nemesis --bin ringraft-server
exec "${CARGO_TARGET_DIR:-target}/release/ringraft-nemesis" "${args[@]}"
