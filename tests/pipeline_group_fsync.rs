//! Group fsync: the log-append stage writes whatever the core handed it
//! since its last write with ONE `fdatasync`, so concurrent proposers share
//! fsyncs. A 3-node in-process cluster takes blocking `propose_wait` calls
//! from 8 and then 64 proposer threads; the append stage's counters
//! ([`ringraft::node::NodeStats`]: `entries_written` over `fsync_batches`)
//! give the entries per fsync on the leader and on a follower, printed for
//! both loads. At 64 proposers the leader must average well over one entry
//! per fsync: 64 blocking proposers keep up to 64 proposals in flight, and
//! proposals that arrive while a write is under way share the next one.

mod pipeline_common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pipeline_common::*;
use ringraft::node::NodeStats;

/// Entries per fsync the leader must average at 64 proposers.
const ENTRIES_PER_FSYNC_MIN_AT_64: f64 = 1.5;

struct Load {
    entries_per_fsync_leader: f64,
    entries_per_fsync_follower: f64,
}

fn ratio(before: NodeStats, after: NodeStats) -> f64 {
    let entries = after.entries_written - before.entries_written;
    let fsyncs = after.fsync_batches - before.fsync_batches;
    entries as f64 / fsyncs.max(1) as f64
}

/// Runs `proposers` threads of `each` blocking proposals against the leader;
/// returns the entries per fsync on the leader and on `follower` meanwhile.
fn run_load(c: &Cluster, leader: usize, follower: usize, proposers: u64, each: u64) -> Load {
    // Settle: everything before this load is durable and applied everywhere.
    let commit = c.handle(leader).status(GROUP).expect("leader status").commit_index.0;
    for i in 0..3 {
        c.wait_applied_index(i, commit, Duration::from_secs(30));
    }
    let stats = |i: usize| c.nodes[i].as_ref().expect("node is up").stats();
    let (l0, f0) = (stats(leader), stats(follower));
    let start = Arc::new(Barrier::new(proposers as usize + 1));
    let workers: Vec<_> = (0..proposers)
        .map(|t| {
            let mut h = c.handle(leader);
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let deadline = Instant::now() + Duration::from_secs(120);
                for n in 0..each {
                    assert!(Instant::now() < deadline, "proposer {t} made only {n} of {each} proposals in 120 s");
                    let id = (proposers << 48) | (t << 32) | n;
                    propose_within(&mut h, payload(id), Duration::from_secs(60))
                        .unwrap_or_else(|e| panic!("proposer {t}: proposal {n} failed: {e}"));
                }
            })
        })
        .collect();
    start.wait();
    let started = Instant::now();
    for w in workers {
        w.join().expect("a proposer panicked");
    }
    let elapsed = started.elapsed();
    // The follower's writes of this load end shortly after the leader's
    // commits: wait until it applied everything the leader committed.
    let commit = c.handle(leader).status(GROUP).expect("leader status").commit_index.0;
    c.wait_applied_index(follower, commit, Duration::from_secs(30));
    let (l1, f1) = (stats(leader), stats(follower));
    let load = Load { entries_per_fsync_leader: ratio(l0, l1), entries_per_fsync_follower: ratio(f0, f1) };
    let total = proposers * each;
    eprintln!(
        "group fsync: {proposers} proposers -> {:.1} entries per fsync (leader), {:.1} (follower); \
         {total} proposals in {:.2} s ({:.0}/s); leader {} entries in {} fsyncs, follower {} in {}",
        load.entries_per_fsync_leader,
        load.entries_per_fsync_follower,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        l1.entries_written - l0.entries_written,
        l1.fsync_batches - l0.fsync_batches,
        f1.entries_written - f0.entries_written,
        f1.fsync_batches - f0.fsync_batches,
    );
    assert!(
        l1.entries_written - l0.entries_written >= total,
        "the leader wrote {} entries for {total} proposals",
        l1.entries_written - l0.entries_written
    );
    load
}

#[test]
fn concurrent_proposers_share_fsyncs() {
    let c = Cluster::start_timed("group-fsync", PATIENT_ELECTIONS);
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = (leader + 1) % 3;

    let at_8 = run_load(&c, leader, follower, 8, 1000);
    let at_64 = run_load(&c, leader, follower, 64, 200);
    // A leader change during the loads would have failed a proposal above.
    assert_eq!(c.wait_leader(Duration::from_secs(20)), leader, "the leader changed during the test");

    assert!(
        at_64.entries_per_fsync_leader > ENTRIES_PER_FSYNC_MIN_AT_64,
        "64 concurrent proposers averaged only {:.2} entries per leader fsync (8 proposers: {:.2})",
        at_64.entries_per_fsync_leader,
        at_8.entries_per_fsync_leader,
    );
    c.shutdown();
}
