//! Process crash test of the log engine: `ringraft-logtool stress` appends
//! random batches (truncating appends, purges, resets, segment rotation and
//! deletion) and is `SIGKILL`ed at seeded random moments, 200 times on one
//! directory. After every kill the parent reopens the log in-process and
//! checks it against what the child acknowledged:
//!
//! * every acknowledged entry is there with its term and exact bytes, with
//!   acknowledged truncations, purges and resets applied;
//! * of the one batch being written at the kill, only a prefix of its
//!   records may be there, and nothing else is served past the tail;
//! * the next round's child opens the same directory in the state the parent
//!   verified and keeps appending.
//!
//! Half the checks run on a copy of the directory, so the next child, not
//! the parent, recovers the torn tail; some children are killed while they
//! open (recover) the log.
//!
//! `SIGKILL` keeps the page cache, so this is the process-crash half;
//! `storage_powerloss.rs` drops what was not synced. `RINGRAFT_SEED=<n>`
//! replays a run.

mod storage_common;

use storage_common::{
    check_start_state, copy_dir, mix, reopen_and_check, report, run_stress, test_seed, KillPlan, Model, Rng,
    StressArgs, Tally, TempDir,
};

const ROUNDS: u64 = 200;
/// Batches per child: a round is short, the directory carries on.
const BATCHES: u64 = 32;

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let seed = test_seed(0x5EED_C8A5);
    report(&format!("storage_crash: seed {seed} (RINGRAFT_SEED={seed} replays the plan; kill moments are real time)"));
    let dir = TempDir::new("crash");
    let scratch = TempDir::new("crash-copy");
    let (mut killed_in_open, mut checked_on_copy) = (0, 0);
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    for round in 0..ROUNDS {
        let args = StressArgs::new(mix(seed ^ round), BATCHES);
        // Kill at a write (sometimes right at it, sometimes within the
        // pwrite/fdatasync window, sometimes a few batches later) or, past
        // the last write, let the child finish.
        let delay_us = match rng.below(4) {
            0 => 0,
            1 => rng.below(300),
            _ => rng.below(4000),
        };
        let writes = if rng.below(10) == 0 { 0 } else { 1 + rng.below(BATCHES + 2) };
        let plan = KillPlan::AfterWrites { writes, delay_us };
        let run = run_stress(dir.path(), &args, &[], plan);
        let ctx = format!("round {round} (test seed {seed}, child seed {}, {plan:?})", args.seed);
        assert!(run.killed || run.status.success(), "{ctx}: child failed: {:?}\n{}", run.status, run.stderr);
        check_start_state(&run.transcript, &model).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        tally.kills += usize::from(run.killed);
        killed_in_open += usize::from(run.killed && !run.transcript.opened);
        tally.completed += usize::from(run.transcript.done);
        tally.add_run(&run.transcript);
        for rec in run.transcript.acked_recs() {
            model.apply(&rec);
        }
        let inflight = run.transcript.inflight().map(|b| b.recs.clone()).unwrap_or_default();
        let on_copy = rng.below(2) == 0;
        let check_dir = if on_copy {
            copy_dir(dir.path(), scratch.path());
            checked_on_copy += 1;
            scratch.path()
        } else {
            dir.path()
        };
        let checked = reopen_and_check(check_dir, &model, &inflight).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        tally.add_check(&checked);
        model = checked.model;
    }

    // A last child runs to its end on the directory 200 crashes left behind.
    let args = StressArgs::new(mix(seed ^ ROUNDS), BATCHES);
    let run = run_stress(dir.path(), &args, &[], KillPlan::Never);
    assert!(run.status.success() && run.transcript.done, "final run failed: {:?}\n{}", run.status, run.stderr);
    check_start_state(&run.transcript, &model).unwrap();
    tally.completed += 1;
    tally.add_run(&run.transcript);
    for rec in run.transcript.acked_recs() {
        model.apply(&rec);
    }
    let checked = reopen_and_check(dir.path(), &model, &[]).unwrap_or_else(|e| panic!("after the final run: {e}"));
    tally.add_check(&checked);
    tally.print("storage_crash");
    report(&format!(
        "storage_crash: {checked_on_copy} checks ran on a copy (the next child recovered the original); \
         {killed_in_open} children were killed before their log was open"
    ));
    report(&format!(
        "storage_crash: the log ends with {} entries in {} groups; {:.1} s",
        model.entries(),
        model.groups.len(),
        started.elapsed().as_secs_f64()
    ));
    assert!(tally.kills >= ROUNDS as usize / 2, "too few rounds ended in a kill ({}) to mean anything", tally.kills);
}

/// The operator side of the tool: `verify` and `dump` on a healthy log, and
/// `verify` on a log with a damaged record before its tail, which must exit
/// 2 naming the file and byte offset.
#[test]
fn logtool_verify_and_dump_report_health_and_name_corruption() {
    use std::process::Command;
    use storage_common::LOGTOOL;

    let dir = TempDir::new("logtool");
    let run = run_stress(dir.path(), &StressArgs::new(7, 40), &[], KillPlan::Never);
    assert!(run.status.success(), "{}", run.stderr);
    let tool = |args: &[&str]| Command::new(LOGTOOL).args(args).arg("--dir").arg(dir.path()).output().unwrap();
    let ok = tool(&["verify"]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "verify on a healthy log: {out}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(out.contains("group 1: first") && out.contains("every checksum verified"), "{out}");
    let dump = tool(&["dump", "--group", "1", "--count", "3"]);
    let lines = String::from_utf8_lossy(&dump.stdout).lines().filter(|l| l.starts_with("group 1 index")).count();
    assert_eq!((dump.status.code(), lines), (Some(0), 3), "{}", String::from_utf8_lossy(&dump.stdout));

    // Flip a payload byte of the first record of the oldest segment: valid
    // records follow it, so this is corruption, not a torn tail.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[32 + 8 + 3] ^= 0x40;
    std::fs::write(&segs[0], &bytes).unwrap();
    let bad = tool(&["verify"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "verify on a corrupt log must exit 2: {err}");
    let name = segs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&name) && err.contains("byte offset 32"), "the message must name file and offset: {err}");
    let usage = Command::new(LOGTOOL).args(["verify", "--dir"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(1), "a usage error exits 1");
    report(&format!("storage_crash: logtool verify on a damaged log: exit 2, {}", err.trim()));
}

/// Found by CI (round 149 of the test above: "group 3: log holds 1..=0,
/// expected 4475..=4474"): a group whose log is empty after a reset is known
/// to the log only while the segment holding the reset lives; once other
/// groups' traffic has that segment deleted, a reopen finds no record of
/// the group. That is the engine's documented behaviour (a node's state
/// file restates the start), but the crash test's model called it a loss.
/// Deterministic here: the model's check must accept it, and what it
/// returns must let the group start afresh.
#[test]
fn an_empty_group_whose_reset_went_with_its_segment_is_no_loss() {
    use ringraft::core::{Entry, GroupId, LogIndex, LogOp, Membership, NodeId, SnapshotMeta, Term};
    use storage_common::{derived_payload, engine_config, reopen_and_check, Model, Rec};
    let dir = TempDir::new("forgotten");
    let mut model = Model::default();
    {
        let mut log = ringraft::storage::LogEngine::open(dir.path(), engine_config()).expect("open");
        let meta =
            SnapshotMeta { last_index: LogIndex(4474), last_term: Term(7), membership: Membership::new([NodeId(1)]) };
        log.write(&[(GroupId(3), LogOp::Reset(meta))]).expect("reset");
        model.apply(&Rec::Reset { group: 3, index: 4474, term: 7 });
        // Group 1's traffic fills segments; purging it lets them go, the
        // one with group 3's reset among them.
        for i in 1..=400u64 {
            let payload = derived_payload(9, 1, i, 1, 1024);
            let e = Entry { term: Term(1), index: LogIndex(i), payload };
            log.write(&[(GroupId(1), LogOp::Append(vec![e]))]).expect("append");
            model.apply(&Rec::Entry { group: 1, index: i, term: 1, seed: 9, max_bytes: 1024 });
        }
        log.write(&[(GroupId(1), LogOp::Purge(LogIndex(399)))]).expect("purge");
        model.apply(&Rec::Purge { group: 1, index: 399 });
    }
    let checked = reopen_and_check(dir.path(), &model, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!checked.model.groups.contains_key(&3), "the forgotten group starts afresh in the model");
}
