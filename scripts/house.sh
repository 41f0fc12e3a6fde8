#!/usr/bin/env bash
# The house rules (crates/house): no source file over 1,000 lines, every
# source file opens with a `//!` header and is compiled by some crate, no
# import cycle between crates, folders or the files of a folder, and no
# direct file-system call on the storage paths outside the Fs seam.
# Prints each violation with the file and line that makes it; exit 1 if any.
#   scripts/house.sh            check
#   scripts/house.sh --edges    also print every import edge
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exec cargo run --quiet --manifest-path "$root/Cargo.toml" -p ringraft-house -- "$@" "$root"
