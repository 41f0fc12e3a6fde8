//! Node recovery on the simulated file system (issue 18): the storage a
//! follower keeps for two groups, driven by random Raft traffic, crashed at
//! random operations, and recovered after every crash by the step
//! `Node::start` runs for each group, `ringraft::node::recover_group`.
//!
//! A follower's append stage writes, in this order: each group's state
//! file (term, vote, snapshot meta), then one log batch for all groups
//! (received snapshot chunks come first, but they are the state machine's
//! and are not modelled). So a received snapshot whose last entry the log
//! does not hold with that term reaches disk as its meta in the state file
//! FIRST and as `LogOp::Reset` in the log after it; a crash can come
//! between the two (defect 03). The traffic (`recover_common`): leaders
//! appending in their terms, new leaders that drop uncommitted entries
//! (the follower overwrites its conflicting tail), partitions that leave
//! the follower with an old leader's uncommitted tail, votes, received
//! snapshots (the log kept when it holds the snapshot's entry, else
//! reset), local snapshots and the purges behind them. The faults: a crash
//! at any operation (also inside recovery), failed fsyncs (fail-stop), a
//! full disk (waited out, as the append stage does).
//!
//! The contract, checked after every crash and every clean power-off:
//! * recovery succeeds: every state a crash leaves is one the design
//!   recovers from;
//! * the recovered entries continue the recovered snapshot: consecutive
//!   from `snapshot.last_index + 1` to the log's end, the log holds the
//!   snapshot's index with the snapshot's term or starts right after it,
//!   and every entry served was written by a leader whose log held the
//!   snapshot's entry (nothing from a history the snapshot replaced);
//! * the recovered state and entries are exactly what a correct recovery
//!   makes of some crash point of the batch in flight: nothing
//!   acknowledged is lost unless that batch replaced it (an overwrite, a
//!   reset, a snapshot the old log does not continue), and nothing is
//!   served that was never written.
//!
//! `FS_FAULTS_CASES` cases (default 2000, about 2 s in release, 17 s in debug), the
//! first seed `FS_FAULTS_SEED` (default 18_300; case N runs seed
//! `FS_FAULTS_SEED + N - 1`, so one case replays alone). A violation prints
//! `fs-faults: violation at case N (seed S): <what>` and panics; the
//! counters go to stderr at the end.

mod recover_common;
mod storage_common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use recover_common::{
    after_prefix, bootstrap_disk, expected, gen_batch, to_ops, Batch, Cluster, Disk, GroupDisk, LogModel, Tally, View,
    GROUPS, MAX_BYTES, ME, VOTERS,
};
use ringraft::core::{GroupId, LogIndex, Recovered};
use ringraft::fs::sim::{is_sim_crash, quiet_crash_panics};
use ringraft::fs::SimFs;
use ringraft::node::{recover_group, GroupConfig, NodeError};
use ringraft::storage::{EngineConfig, GroupState, LogEngine, StateFile};
use storage_common::{derived_payload, report, Rng};

/// The follower's data directory (the log is in `log/` under it).
const DATA_DIR: &str = "/data/n1";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Small segments, so rotation and segment deletion happen often.
fn cfg(fs: &SimFs) -> EngineConfig {
    EngineConfig { segment_bytes: 8 << 10, cache_bytes_per_group: 1 << 10, fs: fs.arc() }
}

/// Writes `b` as the append stage does: the state files, then the log
/// batch; a full disk is waited out (here: the budget raised) and the
/// write retried.
fn write(fs: &SimFs, engine: &mut LogEngine, states: &StateFile, b: &Batch, seed: u64, t: &mut Tally) {
    for (g, st) in &b.states {
        while let Err(e) = states.store(GroupId(*g), st) {
            assert!(e.is_no_space(), "storing group {g}'s state failed: {e}");
            t.full += 1;
            fs.set_budget(u64::MAX);
        }
    }
    let ops = to_ops(&b.recs, seed);
    if ops.is_empty() {
        return;
    }
    while let Err(e) = engine.write(&ops) {
        assert!(e.is_no_space(), "writing the log failed: {e}");
        t.full += 1;
        fs.set_budget(u64::MAX);
    }
}

/// What `Node::start` does to storage (less the directory lock and the
/// state machines): open the log and the state files, recover each group.
fn recover_all(fs: &SimFs) -> Result<(LogEngine, StateFile, BTreeMap<u64, Recovered>), NodeError> {
    let dir = Path::new(DATA_DIR);
    let mut engine = LogEngine::open(&dir.join("log"), cfg(fs))?;
    let states = StateFile::on(fs.arc(), dir)?;
    let mut out = BTreeMap::new();
    for g in GROUPS {
        let config = GroupConfig::new(ME, GroupId(g), VOTERS);
        out.insert(g, recover_group(&mut engine, &states, &config)?);
    }
    Ok((engine, states, out))
}

/// [`recover_all`], a full disk waited out.
fn recover_waiting(fs: &SimFs, t: &mut Tally) -> Result<(LogEngine, StateFile, BTreeMap<u64, Recovered>), NodeError> {
    loop {
        match recover_all(fs) {
            Err(NodeError::Storage(e)) if e.is_no_space() => {
                t.full += 1;
                fs.set_budget(u64::MAX);
            }
            r => return r,
        }
    }
}

/// The world of one case: the clusters and what the follower acknowledged.
struct World {
    clusters: BTreeMap<u64, Cluster>,
    /// What the follower's completed writes made durable.
    acked: Disk,
}

/// How one life of the follower ended.
enum End {
    /// It wrote every batch it meant to.
    Clean,
    /// It crashed (or failed stop) with this batch in flight (empty: none).
    Crashed(Batch),
}

/// One life: start (recover), then write `batches` batches.
///
/// # Errors
/// Recovery at start failed (a violation).
fn life(fs: &SimFs, rng: &mut Rng, world: &mut World, batches: u64, seed: u64, t: &mut Tally) -> Result<End, String> {
    t.lives += 1;
    let mut inflight = Batch::default();
    let run = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let (mut engine, states, got) = recover_waiting(fs, t).map_err(|e| format!("recovery at start failed: {e}"))?;
        // The disk is as the last check left it: recovery finds the same.
        check_crash_point(&got, &world.acked, &Batch::default())
            .map_err(|e| format!("recovery at start differs from the check before: {e}"))?;
        let commit = got.iter().map(|(g, r)| (*g, r.snapshot.last_index.0)).collect();
        let mut view = View { disk: world.acked.clone(), commit };
        for _ in 0..batches {
            let b = gen_batch(rng, &mut world.clusters, &mut view, t);
            inflight = b.clone();
            write(fs, &mut engine, &states, &b, seed, t);
            world.acked = view.disk.clone();
            inflight = Batch::default();
            t.batches += 1;
        }
        Ok(())
    }));
    match run {
        Ok(Ok(())) => Ok(End::Clean),
        Ok(Err(e)) => Err(e),
        Err(p) if is_sim_crash(&*p) => Ok(End::Crashed(inflight)),
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// The recovered state of every group continues its snapshot and serves
/// only entries of histories that hold the snapshot.
fn check_continues(
    engine: &LogEngine,
    got: &BTreeMap<u64, Recovered>,
    clusters: &BTreeMap<u64, Cluster>,
    seed: u64,
) -> Result<(), String> {
    for (&g, r) in got {
        let (s, st) = (r.snapshot.last_index.0, r.snapshot.last_term.0);
        let (first, last) = (engine.first_index(GroupId(g)).0, engine.last_index(GroupId(g)).0);
        let held = engine.term_at(GroupId(g), LogIndex(s)).map(|t| t.0);
        match held {
            _ if s == 0 => {}
            Some(t) if t != st => {
                return Err(format!(
                    "group {g}: the log holds term {t} at index {s}, but the recovered snapshot there has term \
                     {st}: a stale tail the snapshot replaced is kept (log {first}..={last})"
                ))
            }
            None if last < s => {
                return Err(format!(
                    "group {g}: the log ends at index {last}, before the recovered snapshot at {s}: the next \
                     append at {} would leave a gap",
                    s + 1
                ))
            }
            None if first != s + 1 => {
                return Err(format!(
                    "group {g}: the log ({first}..={last}) neither knows the term at the snapshot's index {s} nor \
                     starts right after it"
                ))
            }
            _ => {}
        }
        if first > s + 1 {
            return Err(format!(
                "group {g}: the log starts at {first}, after the snapshot at {s}: entries are missing"
            ));
        }
        for (n, e) in r.entries.iter().enumerate() {
            if e.index.0 != s + 1 + n as u64 {
                return Err(format!(
                    "group {g}: entry #{n} served is {}, not {} (a gap after snapshot {s})",
                    e.index,
                    s + 1 + n as u64
                ));
            }
        }
        let end = r.entries.last().map_or(s, |e| e.index.0);
        if end != last.max(s) {
            return Err(format!("group {g}: the entries served end at {end}, but the log holds up to {last}"));
        }
        let cl = &clusters[&g];
        for e in &r.entries {
            let (i, t) = (e.index.0, e.term.0);
            let Some(leader) = cl.leader_log(t).filter(|l| l.get(i as usize - 1) == Some(&t)) else {
                return Err(format!("group {g}: entry {i} of term {t} is served, but no leader ever wrote it"));
            };
            if s > 0 && leader.get(s as usize - 1) != Some(&st) {
                return Err(format!(
                    "group {g}: entry {i} of term {t} is served after the snapshot at {s} (term {st}), but its \
                     leader's log had term {:?} at {s}: it belongs to a history the snapshot replaced",
                    leader.get(s as usize - 1)
                ));
            }
            if e.payload != derived_payload(seed, g, i, t, MAX_BYTES) {
                return Err(format!("group {g}: entry {i} of term {t} is served with a payload never written"));
            }
        }
    }
    Ok(())
}

/// What recovery met: how many records of the batch in flight were found,
/// and whether a stale log had to be reset to its snapshot.
struct Met {
    inflight_recs: usize,
    /// Groups whose log held the snapshot's index with another term.
    reset_other_term: u64,
    /// Groups whose log ended before the snapshot.
    reset_behind: u64,
}

fn summary(r: &Recovered) -> String {
    let s = r.snapshot.last_index.0;
    let entries = match (r.entries.first(), r.entries.last()) {
        (Some(a), Some(b)) => format!("entries {}..={}", a.index, b.index),
        _ => "no entries".to_string(),
    };
    format!(
        "term {} vote {} snapshot {s} (term {}) {entries}",
        r.hard_state.term, r.hard_state.vote, r.snapshot.last_term
    )
}

/// The recovered state is what a correct recovery makes of some crash
/// point of the batch in flight `b`: the first `stored` of its state files
/// durable and, once all are, the first `recs` of its log records.
fn check_crash_point(got: &BTreeMap<u64, Recovered>, acked: &Disk, b: &Batch) -> Result<Met, String> {
    let n = b.states.len();
    for stored in 0..=n {
        for recs in 0..=b.recs.len() {
            if recs > 0 && stored < n {
                continue;
            }
            let disk = after_prefix(acked, b, stored, recs);
            let (mut reset_other_term, mut reset_behind) = (0, 0);
            let same = GROUPS.iter().all(|g| {
                let (gd, r) = (&disk[g], &got[g]);
                let Ok(entries) = expected(gd) else { return false };
                if !gd.log.continues(&gd.state.snapshot) {
                    if gd.log.last() < gd.state.snapshot.last_index.0 {
                        reset_behind += 1;
                    } else {
                        reset_other_term += 1;
                    }
                }
                r.hard_state == gd.state.hard_state
                    && r.snapshot == gd.state.snapshot
                    && r.entries.iter().map(|e| (e.index.0, e.term.0)).eq(entries.iter().copied())
            });
            if same {
                return Ok(Met { inflight_recs: recs, reset_other_term, reset_behind });
            }
        }
    }
    Err(explain(got, acked, b))
}

/// Why no crash point explains what was recovered, for the first group
/// that shows it.
fn explain(got: &BTreeMap<u64, Recovered>, acked: &Disk, b: &Batch) -> String {
    let inflight = format!("{} state files and {} log records in flight", b.states.len(), b.recs.len());
    for g in GROUPS {
        let (r, a) = (&got[&g], &acked[&g]);
        let state = GroupState { hard_state: r.hard_state, snapshot: r.snapshot.clone() };
        let stored = b.states.iter().any(|(h, st)| *h == g && *st == state);
        if state != a.state && !stored {
            return format!(
                "group {g}: recovered {}, a state neither acknowledged (term {} vote {} snapshot {}) nor stored \
                 by the batch in flight ({inflight})",
                summary(r),
                a.state.hard_state.term,
                a.state.hard_state.vote,
                a.state.snapshot.last_index
            );
        }
        let acked_entries = expected(a).unwrap_or_default();
        let kept = |i: u64, t: u64| r.entries.iter().any(|e| e.index.0 == i && e.term.0 == t);
        if let Some((i, t)) = acked_entries.iter().find(|(i, t)| *i > r.snapshot.last_index.0 && !kept(*i, *t)) {
            return format!(
                "group {g}: acknowledged entry {i} (term {t}) is lost (recovered {}), and no crash point of the \
                 batch in flight ({inflight}) replaces it",
                summary(r)
            );
        }
    }
    let all: Vec<String> = GROUPS.iter().map(|g| format!("group {g}: {}", summary(&got[g]))).collect();
    format!(
        "recovered {}: not the acknowledged state plus any crash point of the batch in flight ({inflight})",
        all.join("; ")
    )
}

/// The durable state recovery left, as the model holds it.
fn disk_of(got: &BTreeMap<u64, Recovered>) -> Disk {
    got.iter()
        .map(|(g, r)| {
            let state = GroupState { hard_state: r.hard_state, snapshot: r.snapshot.clone() };
            let log = LogModel { offset: r.snapshot.last_index.0, terms: r.entries.iter().map(|e| e.term.0).collect() };
            (*g, GroupDisk { state, log })
        })
        .collect()
}

fn violation(case: u64, seed: u64, what: &str) -> ! {
    report(&format!("fs-faults: violation at case {case} (seed {seed}): {what}"));
    panic!("fs_faults_recover failed at case {case}; replay it alone: FS_FAULTS_SEED={seed} FS_FAULTS_CASES=1");
}

/// After a crash (or a clean power-off): recovery crashes now and then
/// (resetting a stale log, bootstrapping), then runs to the end and is
/// checked; the model takes what it left.
fn recover_and_check(
    fs: &SimFs,
    rng: &mut Rng,
    world: &mut World,
    inflight: &Batch,
    case: u64,
    seed: u64,
    t: &mut Tally,
) {
    for _ in 0..rng.below(3) {
        fs.crash_after(1 + rng.below(40));
        let r = catch_unwind(AssertUnwindSafe(|| recover_all(fs).map(drop)));
        fs.no_crash_point();
        match r {
            Err(p) if is_sim_crash(&*p) => {
                t.recovery_crashes += 1;
                fs.crash();
            }
            Err(p) => std::panic::resume_unwind(p),
            Ok(Err(NodeError::Storage(e))) if e.is_no_space() => fs.set_budget(u64::MAX),
            Ok(Err(e)) => violation(case, seed, &format!("recovery failed: {e}")),
            Ok(Ok(())) => {}
        }
    }
    fs.set_fsync_fail_ppm(0);
    fs.set_budget(u64::MAX);
    let (engine, _, got) = match recover_all(fs) {
        Ok(x) => x,
        Err(e) => violation(case, seed, &format!("recovery failed: {e}")),
    };
    if let Err(what) = check_continues(&engine, &got, &world.clusters, seed) {
        violation(case, seed, &what);
    }
    match check_crash_point(&got, &world.acked, inflight) {
        Ok(met) => {
            t.inflight_found += met.inflight_recs as u64;
            t.stale_other_term += met.reset_other_term;
            t.stale_behind += met.reset_behind;
        }
        Err(what) => violation(case, seed, &what),
    }
    world.acked = disk_of(&got);
}

/// One case: a fresh disk and cluster, eight lives of the follower.
fn run_case(case: u64, seed: u64, t: &mut Tally) {
    let fs = SimFs::new(seed);
    let mut rng = Rng::new(seed ^ 0x2EC0_7E2D);
    let fsync_fail_ppm = if rng.below(3) == 0 { rng.below(20_000) as u32 } else { 0 };
    let mut world = World { clusters: GROUPS.iter().map(|g| (*g, Cluster::new())).collect(), acked: bootstrap_disk() };
    for _ in 0..8 {
        fs.set_fsync_fail_ppm(fsync_fail_ppm);
        if rng.below(4) == 0 {
            fs.set_budget(fs.used() + rng.below(40 << 10));
        }
        fs.crash_after(1 + rng.below(150));
        let batches = 1 + rng.below(40);
        let inflight = match life(&fs, &mut rng, &mut world, batches, seed, t) {
            Ok(End::Clean) => {
                t.clean_lives += 1;
                Batch::default()
            }
            Ok(End::Crashed(b)) => {
                t.crashes += 1;
                b
            }
            Err(what) => violation(case, seed, &what),
        };
        // The power fails (after a clean life too: everything was synced).
        fs.crash();
        recover_and_check(&fs, &mut rng, &mut world, &inflight, case, seed, t);
    }
    t.failed_syncs += fs.counters().2;
}

#[test]
fn recovery_continues_the_snapshot_and_keeps_what_was_acknowledged_on_a_faulty_disk() {
    quiet_crash_panics();
    let cases = env_u64("FS_FAULTS_CASES", 2000);
    let first = env_u64("FS_FAULTS_SEED", 18_300);
    let started = Instant::now();
    let mut t = Tally::default();
    for case in 1..=cases {
        run_case(case, first + case - 1, &mut t);
    }
    report(&format!(
        "fs_faults_recover: {cases} cases from seed {first} in {:.1} s: {} lives ({} clean), {} crashes ({} more \
         during recovery), {} batches acknowledged, {} refused for space and retried, {} failed syncs \
         (fail-stop); traffic: {} elections ({} voted in, {} leaving this follower cut off with the old leader), \
         {} overwrites, {} snapshots received ({} kept the log, {} reset it), {} local snapshots ({} purges); \
         recovery: {} in-flight records found, logs reset to the snapshot: {} holding another term at its \
         index, {} ending before it",
        started.elapsed().as_secs_f64(),
        t.lives,
        t.clean_lives,
        t.crashes,
        t.recovery_crashes,
        t.batches,
        t.full,
        t.failed_syncs,
        t.elections,
        t.votes,
        t.partitions,
        t.overwrites,
        t.installs_kept + t.installs_reset,
        t.installs_kept,
        t.installs_reset,
        t.local_snapshots,
        t.purges,
        t.inflight_found,
        t.stale_other_term,
        t.stale_behind,
    ));
    if cases >= 100 {
        assert!(t.crashes > cases, "too few crashes ({}) to mean anything", t.crashes);
        assert!(
            t.recovery_crashes > 0 && t.full > 0 && t.failed_syncs > 0 && t.stale_other_term > 0 && t.stale_behind > 0,
            "a fault or a recovery path never happened"
        );
    }
}
