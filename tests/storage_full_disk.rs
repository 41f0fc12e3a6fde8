//! Full-disk test of the log engine, on a 1 MiB tmpfs mounted for the test
//! (root only: without the permission to mount, the test prints `skipped:`
//! and returns). A filler file takes most of the space; the log appends
//! until the disk is full, which must come back as the typed
//! `StorageError::NoSpace`, with no panic and no damage: the engine's own
//! view and a reopened log both hold every acknowledged entry (and at most a
//! prefix of the failed batch). After the filler is deleted the same batch
//! is retried and appending goes on. Then the same through the child
//! process: `ringraft-logtool stress` on the full disk exits with status 3
//! and a "no space" message, acknowledging nothing it did not write.
//!
//! The tmpfs is unmounted when the test ends, also when it fails.

mod storage_common;
#[path = "storage_common/tmpfs.rs"]
mod tmpfs;

use std::path::Path;
use std::process::Command;

use ringraft::core::{Entry, GroupId, LogIndex, LogOp, Term};
use ringraft::storage::{EngineConfig, LogEngine, StorageError};
use storage_common::{
    check, derived_payload, mix, reopen_and_check, report, run_stress, skip, test_seed, KillPlan, Model, Rec, Rng,
    StressArgs, Tally, TempDir, SEGMENT_BYTES,
};
use tmpfs::Tmpfs;

const DISK_BYTES: u64 = 1 << 20;
const FILLER_BYTES: u64 = 640 << 10;
const MAX_BYTES: u64 = 2048;

fn fill(path: &Path, bytes: u64) {
    std::fs::write(path, vec![0xA5u8; bytes as usize]).unwrap();
}

/// A batch of appends to groups 1..=3, each continuing its group's log.
fn gen_batch(rng: &mut Rng, model: &Model, seed: u64) -> (Vec<Rec>, Vec<(GroupId, LogOp)>) {
    let mut recs = Vec::new();
    let mut ops = Vec::new();
    let mut next: std::collections::BTreeMap<u64, u64> = model.groups.iter().map(|(g, m)| (*g, m.last() + 1)).collect();
    for _ in 0..1 + rng.below(3) {
        let group = 1 + rng.below(3);
        let first = *next.entry(group).or_insert(1);
        let count = 1 + rng.below(6);
        let mut entries = Vec::new();
        for index in first..first + count {
            recs.push(Rec::Entry { group, index, term: 1, seed, max_bytes: MAX_BYTES });
            let payload = derived_payload(seed, group, index, 1, MAX_BYTES);
            entries.push(Entry { term: Term(1), index: LogIndex(index), payload });
        }
        next.insert(group, first + count);
        ops.push((GroupId(group), LogOp::Append(entries)));
    }
    (recs, ops)
}

#[test]
fn a_full_disk_is_a_typed_error_that_loses_nothing_and_passes() {
    let root = TempDir::new("full-disk");
    let mnt = root.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _tmpfs = match Tmpfs::mount(&mnt, DISK_BYTES) {
        Ok(t) => t,
        Err(why) => return skip("storage_full_disk", &why),
    };
    let seed = test_seed(0xF011_D15C);
    report(&format!("storage_full_disk: seed {seed}; {DISK_BYTES}-byte tmpfs at {}", mnt.display()));
    let dir = mnt.join("log");
    let filler = mnt.join("filler");
    fill(&filler, FILLER_BYTES);
    let cfg = EngineConfig { segment_bytes: SEGMENT_BYTES, cache_bytes_per_group: 4 << 10, ..EngineConfig::default() };
    let mut log = LogEngine::open(&dir, cfg.clone()).unwrap();
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut acked = 0;
    let (failed_recs, failed_ops, err) = loop {
        let (recs, ops) = gen_batch(&mut rng, &model, seed);
        match log.write(&ops) {
            Ok(()) => {
                recs.iter().for_each(|r| model.apply(r));
                acked += 1;
                assert!(acked < 10_000, "a 1 MiB disk never filled up");
            }
            Err(e) => break (recs, ops, e),
        }
    };
    let segments = std::fs::read_dir(&dir).unwrap().count();
    report(&format!(
        "storage_full_disk: after {acked} acknowledged batches ({} entries, {segments} segments of {SEGMENT_BYTES} \
         bytes) the disk is full: {err}",
        model.entries()
    ));
    assert!(matches!(err, StorageError::NoSpace { .. }), "expected NoSpace, got {err:?}");
    assert!(err.is_no_space());

    // The engine's own view: the acknowledged batches plus a prefix of the
    // failed one (the part synced before the segment change that failed).
    let mine = check(&mut log, &model, &failed_recs).unwrap_or_else(|e| panic!("engine view after NoSpace: {e}"));
    report(&format!(
        "storage_full_disk: the engine kept {} of the {} records of the failed batch",
        mine.inflight_applied, mine.inflight_len
    ));
    let model_after = mine.model;
    // Retrying while the disk is still full fails the same way, and changes nothing.
    let again = log.write(&failed_ops).expect_err("the disk is still full");
    assert!(again.is_no_space(), "expected NoSpace again, got {again:?}");
    check(&mut log, &model_after, &[]).unwrap_or_else(|e| panic!("engine view after a second NoSpace: {e}"));
    drop(log);
    let reopened = reopen_and_check(&dir, &model_after, &[])
        .unwrap_or_else(|e| panic!("reopened after NoSpace, the log differs from the engine's view: {e}"));
    report(&format!("storage_full_disk: reopened on the full disk: {} entries, all intact", reopened.entries));

    // Free space: the failed batch goes through on retry, and more after it.
    std::fs::remove_file(&filler).unwrap();
    let mut log = LogEngine::open(&dir, cfg.clone()).unwrap();
    log.write(&failed_ops).unwrap_or_else(|e| panic!("retry after freeing space: {e}"));
    let mut model = model_after;
    failed_recs.iter().for_each(|r| model.apply(r));
    for _ in 0..20 {
        let (recs, ops) = gen_batch(&mut rng, &model, seed);
        log.write(&ops).unwrap_or_else(|e| panic!("append after freeing space: {e}"));
        recs.iter().for_each(|r| model.apply(r));
    }
    drop(log);
    let c = reopen_and_check(&dir, &model, &[]).unwrap_or_else(|e| panic!("after freeing space: {e}"));
    report(&format!(
        "storage_full_disk: after deleting the filler: retry and 20 more batches acknowledged, {} entries intact",
        c.entries
    ));

    // The same through the child process. Fill what is free again.
    let free = DISK_BYTES.saturating_sub(used_bytes(&mnt));
    fill(&filler, free.saturating_sub(SEGMENT_BYTES / 2));
    let args = StressArgs { max_bytes: MAX_BYTES, ..StressArgs::new(mix(seed), 10_000) };
    let run = run_stress(&dir, &args, &[], KillPlan::Never);
    assert_eq!(run.status.code(), Some(3), "stress on a full disk must exit 3: {:?}\n{}", run.status, run.stderr);
    assert!(run.stderr.contains("no space left"), "stderr must say why: {}", run.stderr);
    assert!(run.transcript.batches.iter().any(|b| b.error.is_some()), "the child printed no error line");
    let mut tally = Tally::default();
    tally.add_run(&run.transcript);
    for rec in run.transcript.acked_recs() {
        model.apply(&rec);
    }
    let inflight = run.transcript.inflight().map(|b| b.recs.clone()).unwrap_or_default();
    let c = reopen_and_check(&dir, &model, &inflight).unwrap_or_else(|e| panic!("after the child hit NoSpace: {e}"));
    tally.add_check(&c);
    report(&format!("storage_full_disk: child: {}", run.stderr.trim()));
    tally.print("storage_full_disk (child)");

    // Deleting old data frees space too: purge every group (the disk is
    // still full), and appends go on.
    let mut model = c.model;
    let mut log = LogEngine::open(&dir, cfg).unwrap();
    let purges: Vec<(GroupId, LogOp)> =
        model.groups.iter().map(|(g, m)| (GroupId(*g), LogOp::Purge(LogIndex(m.last())))).collect();
    let before = std::fs::read_dir(&dir).unwrap().count();
    log.write(&purges).unwrap_or_else(|e| panic!("purging on a full disk: {e}"));
    for (g, op) in &purges {
        if let LogOp::Purge(i) = op {
            model.apply(&Rec::Purge { group: g.0, index: i.0 });
        }
    }
    let after = std::fs::read_dir(&dir).unwrap().count();
    for _ in 0..5 {
        let (recs, ops) = gen_batch(&mut rng, &model, seed);
        log.write(&ops).unwrap_or_else(|e| panic!("append after purging: {e}"));
        recs.iter().for_each(|r| model.apply(r));
    }
    drop(log);
    let c = reopen_and_check(&dir, &model, &[]).unwrap_or_else(|e| panic!("after purging: {e}"));
    report(&format!(
        "storage_full_disk: purging every group on the full disk deleted {} of {before} segments; 5 batches \
         appended after it; {} entries intact",
        before - after,
        c.entries
    ));
    assert!(after < before, "purging everything freed no segment");

    std::fs::remove_file(&filler).unwrap();
    let run = run_stress(
        &dir,
        &StressArgs { max_bytes: MAX_BYTES, ..StressArgs::new(mix(seed ^ 1), 10) },
        &[],
        KillPlan::Never,
    );
    assert!(run.status.success(), "after freeing space the child must append: {:?}\n{}", run.status, run.stderr);
    let mut model = c.model;
    run.transcript.acked_recs().iter().for_each(|r| model.apply(r));
    reopen_and_check(&dir, &model, &[]).unwrap_or_else(|e| panic!("after the last child: {e}"));
    report("storage_full_disk: with space freed, the next child appended 10 batches");
}

/// Bytes in use on the filesystem of `path` (from `df`, in 1 KiB blocks).
fn used_bytes(path: &Path) -> u64 {
    let out = Command::new("df").args(["-k", "--output=used"]).arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).and_then(|l| l.trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}
