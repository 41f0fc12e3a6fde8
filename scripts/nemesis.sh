#!/usr/bin/env bash
# Fault injection at process level (issue 7). Built so far: the history
# checker. `scripts/nemesis.sh --check FILE` checks a recorded history
# (format: src/nemesis/history.rs) and ends with one summary line of
# key=value pairs (ops=, acked=, unknown=, failed=, reads=, faults_<kind>=,
# anomalies=N); it exits 1 when anomalies were found, 2 for a history that
# does not parse. The runner (--minutes, --seed) is not built yet.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/nemesis.sh --check FILE

  --check FILE   check a recorded nemesis history and print its anomalies,
                 each with the history lines that show it, then the summary
                 line; exit 0 (none), 1 (anomalies), 2 (unreadable history)

Not built yet (issue 7): running a cluster through faults (--minutes N,
--seed S).
USAGE
}

cd "$(dirname "$0")/.."
case "${1:-}" in
  --check)
    [[ $# -eq 2 ]] || { usage >&2; exit 2; }
    file="$2"
    [[ "$file" = /* ]] || file="$OLDPWD/$file"
    cargo build --release --quiet --bin ringraft-nemesis
    exec target/release/ringraft-nemesis --check "$file"
    ;;
  -h|--help)
    usage
    ;;
  *)
    echo "scripts/nemesis.sh: only --check FILE is built so far (the fault runner is issue 7's next part)" >&2
    usage >&2
    exit 2
    ;;
esac
