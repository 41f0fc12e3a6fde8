//! The real log engine and state file on the simulated file system
//! (`ringraft::fs::SimFs`, issue 18): random batches, crashes at random
//! operations, torn and reordered sector writes, lost directory entries,
//! failed fsyncs and a full disk, deterministically from a seed.
//!
//! The contract, after every crash: the reopened log is the acknowledged
//! history plus some prefix (possibly empty) of the one batch in flight,
//! exactly (`storage_common::check`); opening never fails; a state file
//! reads as the last acknowledged state or the one being stored.
//!
//! `FS_FAULTS_CASES` (default 1000 for the log, 150 for the state file) cases per test; `FS_FAULTS_SEED` the
//! first seed (default fixed: CI runs the same cases every time).

mod storage_common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ringraft::core::{Entry, GroupId, HardState, LogIndex, LogOp, Membership, NodeId, SnapshotMeta, Term};
use ringraft::fs::sim::{is_sim_crash, quiet_crash_panics};
use ringraft::fs::{Fs, SimFs};
use ringraft::storage::{EngineConfig, GroupState, LogEngine, StateFile, StorageError};
use storage_common::{check, derived_payload, Model, Rec, Rng};

const MAX_BYTES: u64 = 300;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn cfg(fs: &SimFs) -> EngineConfig {
    EngineConfig { segment_bytes: 8 << 10, cache_bytes_per_group: 1 << 10, fs: fs.arc() }
}

/// A batch of 1..=3 runs of records valid against `model` (the engine's
/// rules: no gaps). Purges and resets may fall anywhere, also inside what
/// the same batch appended: since a batch never spans two segments, any
/// batch a full disk interrupts is retryable as a whole.
fn gen_batch(rng: &mut Rng, model: &Model, seed: u64) -> Vec<Rec> {
    let mut view = model.clone();
    let mut recs = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let group = 1 + rng.below(3);
        let g = view.groups.get(&group).cloned().unwrap_or_default();
        let term = g.entries.back().map_or(g.offset_term.unwrap_or(1), |e| e.term).max(1);
        let roll = rng.below(100);
        let run: Vec<Rec> = if !view.groups.contains_key(&group) || roll < 80 {
            let count = 1 + rng.below(6);
            let (first, term) = if g.last() > g.offset && rng.below(100) < 10 {
                (g.offset + 1 + rng.below(g.last() - g.offset), term + 1)
            } else {
                (g.last() + 1, term)
            };
            (first..first + count).map(|index| Rec::Entry { group, index, term, seed, max_bytes: MAX_BYTES }).collect()
        } else if roll < 95 {
            // Up to a few past the end: the engine clamps a purge to the log.
            vec![Rec::Purge { group, index: g.offset + rng.below(g.last() - g.offset + 3) }]
        } else {
            vec![Rec::Reset { group, index: g.last() + rng.below(10), term: term + 1 }]
        };
        for r in &run {
            view.apply(r);
        }
        recs.extend(run);
    }
    recs
}

fn to_ops(recs: &[Rec]) -> Vec<(GroupId, LogOp)> {
    recs.iter()
        .map(|r| match *r {
            Rec::Entry { group, index, term, seed, max_bytes } => (
                GroupId(group),
                LogOp::Append(vec![Entry {
                    term: Term(term),
                    index: LogIndex(index),
                    payload: derived_payload(seed, group, index, term, max_bytes),
                }]),
            ),
            Rec::Purge { group, index } => (GroupId(group), LogOp::Purge(LogIndex(index))),
            Rec::Reset { group, index, term } => (
                GroupId(group),
                LogOp::Reset(SnapshotMeta {
                    last_index: LogIndex(index),
                    last_term: Term(term),
                    membership: Membership::new([NodeId(1)]),
                }),
            ),
        })
        .collect()
}

/// The documented limit of the engine (ARCHITECTURE.md, "Recovery"): a
/// group whose only records (a purge or reset marker) sat in deleted
/// segments is forgotten by a reopen; the state file's snapshot meta is the
/// authority for its start. Such groups leave the model; the number is
/// returned.
fn forget_empty_groups(model: &mut Model, log: &LogEngine) -> u64 {
    let listed = log.groups();
    let before = model.groups.len();
    model.groups.retain(|g, m| !m.entries.is_empty() || listed.contains(&GroupId(*g)));
    (before - model.groups.len()) as u64
}

/// Opens the log to check it, as often as failed syncs crash the opening
/// (recovery syncs what it repairs, and the directories it may create).
fn open_for_check(fs: &SimFs, dir: &Path, seed: u64) -> LogEngine {
    for _ in 0..100 {
        match catch_unwind(AssertUnwindSafe(|| LogEngine::open(dir, cfg(fs)))) {
            Ok(Ok(log)) => return log,
            Ok(Err(StorageError::NoSpace { .. })) => fs.set_budget(u64::MAX),
            Ok(Err(e)) => panic!("seed {seed}: the log does not open: {e}"),
            Err(p) if is_sim_crash(&*p) => fs.crash(),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    panic!("seed {seed}: the log did not open in 100 tries");
}

/// How one life of the process ended.
enum End {
    /// It wrote every batch it meant to.
    Done,
    /// It crashed (or failed stop) with this batch in flight (empty: none).
    Crashed(Vec<Rec>),
}

/// One life: open the log, write `batches` batches; a full disk is waited
/// out (the budget raised) and the batch retried, as a node does.
fn life(fs: &SimFs, dir: &Path, model: &mut Model, rng: &mut Rng, seed: u64, batches: u64, full: &mut u64) -> End {
    let mut inflight: Vec<Rec> = Vec::new();
    let run = catch_unwind(AssertUnwindSafe(|| {
        // A full disk at open (a new segment) is waited out, as a node does.
        let mut log = loop {
            match LogEngine::open(dir, cfg(fs)) {
                Ok(log) => break log,
                Err(StorageError::NoSpace { .. }) => fs.set_budget(u64::MAX),
                Err(e) => panic!("seed {seed}: open failed: {e}"),
            }
        };
        for _ in 0..batches {
            let recs = gen_batch(rng, model, seed);
            inflight = recs.clone();
            let ops = to_ops(&recs);
            let shape = |log: &LogEngine| -> Vec<(GroupId, LogIndex, LogIndex)> {
                log.groups().into_iter().map(|g| (g, log.first_index(g), log.last_index(g))).collect()
            };
            let before = shape(&log);
            loop {
                match log.write(&ops) {
                    Ok(()) => break,
                    Err(StorageError::NoSpace { .. }) => {
                        // Nothing of a refused batch is applied: the retry
                        // starts from the same log.
                        assert_eq!(shape(&log), before, "seed {seed}: a batch refused for space changed the log");
                        *full += 1;
                        fs.set_budget(u64::MAX);
                    }
                    Err(e) => panic!("seed {seed}: write failed: {e}; batch {recs:?}"),
                }
            }
            for r in &recs {
                model.apply(r);
            }
            inflight.clear();
        }
    }));
    match run {
        Ok(()) => End::Done,
        Err(p) if is_sim_crash(&*p) => End::Crashed(inflight),
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[test]
fn the_log_engine_recovers_exactly_what_it_acknowledged_on_a_faulty_disk() {
    quiet_crash_panics();
    let cases = env_u64("FS_FAULTS_CASES", 1000);
    let first = env_u64("FS_FAULTS_SEED", 18_000);
    let (mut crashes, mut clean_lives, mut inflight_kept, mut forgotten) = (0u64, 0u64, 0u64, 0u64);
    let (mut full, mut recovery_crashes, mut failed_syncs) = (0u64, 0u64, 0u64);
    for seed in first..first + cases {
        let fs = SimFs::new(seed);
        let mut rng = Rng::new(seed);
        // The engine creates the directories, as at a node's first start.
        let dir = PathBuf::from("/data/raft/log");
        if rng.below(3) == 0 {
            fs.set_fsync_fail_ppm(rng.below(20_000) as u32);
        }
        let mut model = Model::default();
        for _round in 0..6 {
            if rng.below(4) == 0 {
                fs.set_budget(fs.used() + rng.below(40 << 10));
            }
            fs.crash_after(1 + rng.below(200));
            let batches = 1 + rng.below(60);
            match life(&fs, &dir, &mut model, &mut rng, seed, batches, &mut full) {
                End::Done => {
                    // Power off after a clean run: everything was synced.
                    fs.crash();
                }
                End::Crashed(inflight) => {
                    crashes += 1;
                    fs.crash();
                    // Recovery itself crashes now and then (cutting a torn
                    // tail, removing a blank segment): the next one copes.
                    for _ in 0..rng.below(3) {
                        fs.crash_after(1 + rng.below(40));
                        let r = catch_unwind(AssertUnwindSafe(|| LogEngine::open(&dir, cfg(&fs)).map(drop)));
                        fs.no_crash_point();
                        match r {
                            Err(p) if is_sim_crash(&*p) => {
                                recovery_crashes += 1;
                                fs.crash();
                            }
                            Err(p) => std::panic::resume_unwind(p),
                            Ok(Err(StorageError::NoSpace { .. })) => fs.set_budget(u64::MAX),
                            Ok(r) => r.unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}")),
                        }
                    }
                    fs.set_fsync_fail_ppm(0);
                    fs.set_budget(u64::MAX);
                    let mut log = open_for_check(&fs, &dir, seed);
                    forgotten += forget_empty_groups(&mut model, &log);
                    let checked = check(&mut log, &model, &inflight)
                        .unwrap_or_else(|e| panic!("seed {seed}: after a crash: {e}"));
                    inflight_kept += checked.inflight_applied as u64;
                    model = checked.model;
                    continue;
                }
            }
            let mut log = open_for_check(&fs, &dir, seed);
            forgotten += forget_empty_groups(&mut model, &log);
            check(&mut log, &model, &[]).unwrap_or_else(|e| panic!("seed {seed}: after a clean run: {e}"));
            clean_lives += 1;
        }
        failed_syncs += fs.counters().2;
    }
    println!(
        "fs_faults_log: {cases} cases from seed {first}: {crashes} crashes ({recovery_crashes} more during \
         recovery), {clean_lives} clean lives, {full} batches refused for space and retried, {failed_syncs} \
         failed syncs (fail-stop), {inflight_kept} in-flight records found after crashes, {forgotten} empty \
         groups forgotten"
    );
    assert!(crashes > cases, "too few crashes ({crashes}) to mean anything");
    assert!(recovery_crashes > 0 && full > 0 && failed_syncs > 0, "a fault kind never happened");
}

#[test]
fn a_state_file_reads_as_the_last_acknowledged_state_or_the_one_being_stored() {
    quiet_crash_panics();
    let cases = env_u64("FS_FAULTS_CASES", 150);
    let first = env_u64("FS_FAULTS_SEED", 18_000);
    let state = |t: u64| GroupState {
        hard_state: HardState { term: Term(t), vote: NodeId(t % 3 + 1) },
        snapshot: SnapshotMeta {
            last_index: LogIndex(t * 10),
            last_term: Term(t),
            membership: Membership::new([NodeId(1), NodeId(2)]),
        },
    };
    for seed in first..first + cases {
        let fs = SimFs::new(seed);
        let mut rng = Rng::new(seed ^ 0x57A7E);
        let dir = PathBuf::from("/data/raft");
        let arc: Arc<dyn Fs> = fs.arc();
        let mut acked: Option<u64> = None;
        let mut next = 1u64;
        for _ in 0..8 {
            if rng.below(3) == 0 {
                fs.set_fsync_fail_ppm(rng.below(100_000) as u32);
            }
            fs.crash_after(1 + rng.below(30));
            let mut trying = None;
            let run = catch_unwind(AssertUnwindSafe(|| {
                let files = StateFile::on(Arc::clone(&arc), &dir).expect("state dir");
                for _ in 0..5 {
                    trying = Some(next);
                    files.store(GroupId(1), &state(next)).expect("store");
                    acked = Some(next);
                    next += 1;
                }
            }));
            if let Err(p) = run {
                assert!(is_sim_crash(&*p), "seed {seed}: a panic that is not a crash");
                next += 1;
            }
            fs.crash();
            fs.set_fsync_fail_ppm(0);
            let files = StateFile::on(Arc::clone(&arc), &dir).expect("state dir");
            let got = files.load(GroupId(1)).unwrap_or_else(|e| panic!("seed {seed}: load after a crash: {e}"));
            let allowed: Vec<Option<GroupState>> =
                [acked.map(state), trying.filter(|t| Some(*t) != acked).map(state)].into_iter().collect();
            assert!(
                allowed.contains(&got),
                "seed {seed}: state file holds {got:?}; acknowledged {acked:?}, in flight {trying:?}"
            );
            if let Some(g) = got {
                acked = Some(g.hard_state.term.0);
            }
        }
    }
}
