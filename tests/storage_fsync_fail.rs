//! Failed-fsync test of the log engine: under the `LD_PRELOAD` shim
//! `tests/shims/fsync_eio.c`, `fdatasync` returns EIO after N successful
//! calls. The child (`ringraft-logtool stress`) must fail stop: exit with
//! `FAIL_STOP_EXIT_CODE` (86) and a stderr message with "FATAL" and
//! "fdatasync", acknowledging nothing after the failed call (the shim
//! announces it on the child's stdout, so the order is exact). Reopening
//! then shows every record acknowledged before the failure; the log keeps
//! working for the next child.
//!
//! Without gcc the test prints `skipped:` and returns.

mod storage_common;

use ringraft::storage::FAIL_STOP_EXIT_CODE;
use storage_common::{
    build_shim, check_start_state, mix, reopen_and_check, report, run_stress, skip, test_seed, KillPlan, Model, Rng,
    StressArgs, Tally, TempDir,
};

const BATCHES: u64 = 40;

#[test]
fn a_failed_fdatasync_stops_the_process_and_loses_nothing_acknowledged() {
    let shim = match build_shim("fsync_eio") {
        Ok(p) => p,
        Err(why) => return skip("storage_fsync_fail", &why),
    };
    let seed = test_seed(0xE10_F5C);
    report(&format!("storage_fsync_fail: seed {seed} (RINGRAFT_SEED={seed} replays this run)"));
    let dir = TempDir::new("fsync-fail");
    let mut rng = Rng::new(seed);
    // 0 fails the very first sync (the first segment's header, while
    // opening); small numbers hit rotations; the rest land mid-run.
    let mut fail_after: Vec<u64> = vec![0, 1, 2, 3, 5, 8, 13, 21, 34];
    fail_after.extend((0..6).map(|_| rng.below(BATCHES)));
    let mut model = Model::default();
    let mut tally = Tally::default();
    let shim_path = shim.display().to_string();
    for (round, n) in fail_after.iter().enumerate() {
        let args = StressArgs::new(mix(seed ^ round as u64), BATCHES);
        let n_text = n.to_string();
        let env = [("LD_PRELOAD", shim_path.as_str()), ("RINGRAFT_FSYNC_EIO_AFTER", n_text.as_str())];
        let run = run_stress(dir.path(), &args, &env, KillPlan::Never);
        let ctx =
            format!("round {round} (test seed {seed}, child seed {}, fdatasync fails after {n} calls)", args.seed);
        assert_eq!(
            run.status.code(),
            Some(FAIL_STOP_EXIT_CODE),
            "{ctx}: the child must fail stop; it exited {:?}\nstderr: {}",
            run.status,
            run.stderr
        );
        assert!(
            run.stderr.contains("FATAL") && run.stderr.contains("fdatasync") && run.stderr.contains(".seg"),
            "{ctx}: the message must say FATAL, fdatasync and name the segment; stderr: {}",
            run.stderr
        );
        let t = &run.transcript;
        assert!(t.foreign.iter().any(|l| l.starts_with("fsync-eio:")), "{ctx}: the shim never failed a call");
        assert_eq!(t.acks_after_foreign, 0, "{ctx}: records were acknowledged after the failed fdatasync");
        check_start_state(t, &model).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        tally.add_run(t);
        for rec in t.acked_recs() {
            model.apply(&rec);
        }
        let inflight = t.inflight().map(|b| b.recs.clone()).unwrap_or_default();
        let checked = reopen_and_check(dir.path(), &model, &inflight).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        println!(
            "storage_fsync_fail: round {round}: fdatasync call {} failed; exit {}; {} batches acknowledged before \
             it; {} of the {} records in flight found after reopening",
            n + 1,
            FAIL_STOP_EXIT_CODE,
            t.acked_batches(),
            checked.inflight_applied,
            checked.inflight_len
        );
        tally.add_check(&checked);
        model = checked.model;
    }

    // Without the shim, the log takes appends again.
    let args = StressArgs::new(mix(seed ^ 999), BATCHES);
    let run = run_stress(dir.path(), &args, &[], KillPlan::Never);
    assert!(run.status.success() && run.transcript.done, "clean run failed: {:?}\n{}", run.status, run.stderr);
    check_start_state(&run.transcript, &model).unwrap();
    tally.completed += 1;
    tally.add_run(&run.transcript);
    for rec in run.transcript.acked_recs() {
        model.apply(&rec);
    }
    let checked = reopen_and_check(dir.path(), &model, &[]).unwrap_or_else(|e| panic!("after the clean run: {e}"));
    tally.add_check(&checked);
    tally.print("storage_fsync_fail");
    report(&format!(
        "storage_fsync_fail: every one of {} failing children exited {FAIL_STOP_EXIT_CODE} with FATAL ... fdatasync",
        fail_after.len()
    ));
}
