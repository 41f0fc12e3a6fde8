//! Scenario tests of the sans-IO Raft core, in the spirit of etcd/raft's
//! interaction tests: every `tests/scenarios/<topic>/<name>.txt` is a script
//! of commands, each followed by the trace it must print.
//!
//! # File format
//!
//! ```text
//! # What the scenario proves, in a few comment lines.
//!
//! cluster voters=1,2,3
//! ----
//! clocks at 1000ms; election deadlines 1@1313ms 2@1144ms 3@1527ms
//!
//! # A comment before a command explains the step.
//! campaign 1
//! ----
//! 1 tick @1313ms
//! 1 became pre-candidate t0
//! ...
//! ```
//!
//! A command line, a `----` line, then the expected output up to the next
//! blank line (`ok` when a command prints nothing). `#` lines are comments.
//! Every block is checked; a mismatch prints the file, line and command with
//! a diff (`- expected`, `+ actual`), and the test fails after every file
//! has run, naming the failing ones. `REWRITE=1 cargo test --test scenarios`
//! rewrites the expected sections from the actual output, for review.
//!
//! # Commands
//!
//! | command | effect |
//! | --- | --- |
//! | `cluster voters=1,2,3 [learners=4] [joining=5] [pre_vote=B] [check_quorum=B] [append_entries_max=N] [append_bytes_max=N] [inflight_msgs_max=N] [trailing=N] [chunk=BYTES] [election=MIN..MAX] [heartbeat=MS] [drift=MS]` | a fresh cluster; `joining` nodes start with no membership; every clock starts at 1000ms |
//! | `campaign N` | N's clock jumps to its election deadline and N ticks |
//! | `tick N MS` | N's clock alone moves MS forward; N ticks once |
//! | `advance MS` | every clock moves MS forward, each node ticking at each of its deadlines, in time order; messages wait on the wire |
//! | `run MS` | like `advance`, with `stabilize` after every timer that fires |
//! | `propose N DATA...` | one proposal per word, then one ready |
//! | `deliver [F->T] [KIND] [COUNT \| #N]` / `drop ...` | deliver or drop the matching messages in flight, oldest first (`*` for any node; `#N`: only the N-th match) |
//! | `net` | list the messages in flight |
//! | `persist [N...] [writes=K]` | N's pending writes (or the first K) become durable: released messages go out, `on_persisted` |
//! | `apply [N...]` | apply what N has committed, `on_applied` |
//! | `stabilize` | deliver everything, then persist, then apply, until quiet (no time passes) |
//! | `partition 1 \| 2,3` / `heal` | cut the network into groups (unnamed nodes form one more) |
//! | `read N ID... [lease]` | ReadIndex (or lease) reads, all before one ready |
//! | `transfer N M` | N hands leadership to M |
//! | `conf N add-voter M \| add-learner M \| remove M \| change-peers voters=.. learners=..` | propose a membership change |
//! | `snapshot N INDEX` | N's state machine stores a snapshot at INDEX; the core compacts |
//! | `crash N` / `restart N` | lose N's core, pending writes and in-flight messages to it / start it from disk |
//! | `status [N...]` / `log [N...]` | print role, term, indexes, membership, peers' progress / the log |
//! | `hide KIND...` / `show KIND...\|all` | leave message kinds out of the trace |
//!
//! # Trace notation
//!
//! `i/t` is the entry at index `i` of term `t`; long entry lists print as
//! runs, `[4..9/2]`. `1->2 App t2 prev=3/1 ents=[4/2 noop] commit=3` is a
//! message as sent; `(lost: partition)` marks one that never arrives.
//! `2 write: ...` is a pending write, `2 persisted ...` its completion;
//! `1 committed 4..5` hands entries to the state machine, `1 applied 4..5`
//! applies them; `1 read 7 ok index=5` confirms a read.

#[path = "scenario_harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

use harness::script;

fn scenario_files() -> Vec<PathBuf> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("tests/scenarios");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "txt") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn short_name(path: &Path) -> String {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// Runs one file; returns a failure report, if any.
fn check_file(path: &Path, rewrite: bool) -> Option<String> {
    let name = short_name(path);
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {name}: {e}"));
    let parsed = match script::parse(&text) {
        Ok(s) => s,
        Err(e) => return Some(format!("--- {name}: {e}\n")),
    };
    let actual = match std::panic::catch_unwind(|| script::run(&parsed)) {
        Ok(a) => a,
        Err(p) => {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Some(format!("--- {name}: panicked: {why}\n"));
        }
    };
    if rewrite {
        let new = script::rewrite(&parsed, &actual);
        if new != text {
            std::fs::write(path, new).unwrap_or_else(|e| panic!("writing {name}: {e}"));
            eprintln!("rewrote {name}");
        }
        return None;
    }
    script::compare(&name, &parsed, &actual)
}

#[test]
fn scenarios() {
    let rewrite = std::env::var_os("REWRITE").is_some_and(|v| v != "0");
    let files = scenario_files();
    assert!(!files.is_empty(), "no scenario files under tests/scenarios");
    let mut failed = Vec::new();
    for path in &files {
        if let Some(report) = check_file(path, rewrite) {
            eprintln!("{report}");
            failed.push(short_name(path));
        }
    }
    assert!(failed.is_empty(), "{} of {} scenario files failed:\n  {}", failed.len(), files.len(), failed.join("\n  "));
}

/// Editing one expected line of a passing scenario must make it fail: the
/// comparison really looks at every line.
#[test]
fn a_changed_expected_line_fails() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("tests/scenarios/election/basic.txt");
    let text = std::fs::read_to_string(&path).expect("election/basic.txt exists");
    let parsed = script::parse(&text).expect("parses");
    let actual = script::run(&parsed);
    assert_eq!(script::compare("basic", &parsed, &actual), None, "the file itself passes");
    for (bi, block) in parsed.blocks.iter().enumerate() {
        for li in 0..block.expected.len() {
            let mut edited = parsed.clone();
            edited.blocks[bi].expected[li].push_str(" x");
            let report = script::compare("basic", &edited, &actual).expect("an edited line must fail");
            assert!(report.contains(&format!("- {} x", block.expected[li])), "{report}");
        }
    }
    let mut dropped = parsed.clone();
    let last = dropped.blocks.len() - 1;
    dropped.blocks[last].expected.pop();
    assert!(script::compare("basic", &dropped, &actual).is_some(), "a missing line must fail");
}

#[test]
fn rewrite_round_trips() {
    for path in scenario_files() {
        let text = std::fs::read_to_string(&path).expect("readable");
        let parsed = script::parse(&text).expect("parses");
        let expected: Vec<Vec<String>> = parsed.blocks.iter().map(|b| b.expected.clone()).collect();
        assert_eq!(script::rewrite(&parsed, &expected), text, "{} is not in canonical form", short_name(&path));
    }
}
