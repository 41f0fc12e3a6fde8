//! The deterministic simulator as a test: a modest number of seeds in the
//! test profile must break no invariant, a seed must replay to the same
//! trace hash, and every fault kind must really have been injected.
//!
//! The long runs belong to `scripts/sim.sh` (thousands of seeds, release).

#![cfg(feature = "sim")]

use std::sync::OnceLock;

use ringraft_tools::sim::{failure_report, run_many, run_seed, FaultKind, RunOptions, Summary};

/// Seeds and steps kept small enough for a debug build (well under a minute).
const SEEDS: u64 = 300;
const STEPS: u64 = 5000;

fn summary() -> &'static Summary {
    static SUMMARY: OnceLock<Summary> = OnceLock::new();
    SUMMARY.get_or_init(|| {
        let opts = RunOptions {
            first_seed: 0,
            seeds: SEEDS,
            steps: STEPS,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            mutant: None,
            stop_at_first: false,
            deadline: None,
            node: false,
        };
        run_many(&opts)
    })
}

#[test]
fn seeds_break_no_invariant() {
    let sum = summary();
    if let Some(f) = sum.failures.first() {
        panic!("{} of {} seeds failed; first:\n{}", sum.failures.len(), sum.seeds_run, failure_report(f));
    }
    assert_eq!(sum.seeds_run, SEEDS);
    assert!(sum.stats.elections > 0 && sum.stats.acked > 0, "nothing happened: {}", sum.line(None));
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    let a = run_seed(7, 1500, None, false);
    let b = run_seed(7, 1500, None, false);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.stats, b.stats);
    let c = run_seed(8, 1500, None, false);
    assert_ne!(a.trace_hash, c.trace_hash, "different seeds should differ");
}

fn injected(kind: FaultKind) {
    let n = summary().stats.faults_of(kind);
    assert!(n > 0, "no {} fault in {} seeds: {}", kind.name(), SEEDS, summary().line(None));
}

#[test]
fn fault_drop_happens() {
    injected(FaultKind::Drop);
}

#[test]
fn fault_duplicate_happens() {
    injected(FaultKind::Duplicate);
}

#[test]
fn fault_reorder_happens() {
    injected(FaultKind::Reorder);
}

#[test]
fn fault_delay_happens() {
    injected(FaultKind::Delay);
}

#[test]
fn fault_partition_happens() {
    injected(FaultKind::Partition);
}

#[test]
fn fault_asym_partition_happens() {
    injected(FaultKind::AsymPartition);
}

#[test]
fn fault_isolate_leader_happens() {
    injected(FaultKind::IsolateLeader);
}

#[test]
fn fault_crash_happens() {
    injected(FaultKind::Crash);
}

#[test]
fn fault_torn_write_happens() {
    injected(FaultKind::TornWrite);
}

#[test]
fn fault_slow_disk_happens() {
    injected(FaultKind::SlowDisk);
}

#[test]
fn fault_clock_skew_happens() {
    injected(FaultKind::ClockSkew);
}

#[test]
fn fault_conf_change_happens() {
    injected(FaultKind::ConfChange);
}

#[test]
fn fault_transfer_happens() {
    injected(FaultKind::Transfer);
}

#[test]
fn fault_snapshot_happens() {
    injected(FaultKind::Snapshot);
}

#[test]
fn every_fault_kind_has_a_test() {
    // Keeps this file honest when a kind is added to the simulator.
    assert_eq!(FaultKind::ALL.len(), 14);
}
