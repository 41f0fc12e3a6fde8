//! Catch-up under load: a follower that missed 500,000 entries is restarted
//! and catches up from the leader's log (this runtime sends no snapshots)
//! while the leader keeps committing new proposals. A 3-node in-process
//! cluster loses one follower (killed, as a crash), commits the entries
//! through the other two from windowed proposer threads, measures the commit
//! latency of sequential proposals (the baseline), restarts the follower and
//! measures the same latency while it catches up. Printed: p50/p99/max
//! latency before and during the catch-up, how long it took and its rate.
//! Asserted: every proposal during the catch-up succeeds, and the follower
//! ends up having applied exactly the leader's sequence. The cluster uses
//! 1–2 s election timeouts: with the 300 ms of the other pipeline tests, a
//! debug build on an overloaded 2-core machine lost its leader now and then
//! (check-quorum), which would fail "every proposal succeeds".

mod pipeline_common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pipeline_common::*;
use ringraft::node::{NodeError, NodeHandle};
use ringraft::pipeline::completion::Callback;

const THREADS: u64 = 8;
const WINDOW: usize = 256;
/// The baseline probe runs for this long or `PROBE_BASELINE_MAX` proposals.
const PROBE_BASELINE_TIME: Duration = Duration::from_secs(2);
const PROBE_BASELINE_MAX: usize = 500;
/// How long the follower may take to catch up.
const CATCHUP_DEADLINE: Duration = Duration::from_secs(300);
/// Ids of probe proposals start here (load ids are `thread << 32 | n`).
const PROBE_ID_BASE: u64 = 1 << 60;

/// Entries the follower misses (`PIPELINE_CATCHUP_ENTRIES` overrides).
fn entries() -> u64 {
    std::env::var("PIPELINE_CATCHUP_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(500_000)
}

/// Commits `count` proposals through `h`, keeping `WINDOW` in flight; every
/// one must succeed (the leader does not change in this test).
fn load(t: u64, mut h: NodeHandle, count: u64) {
    let (tx, rx) = mpsc::channel::<(u64, Result<Bytes, NodeError>)>();
    let (mut sent, mut acked, mut inflight) = (0u64, 0u64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked < count {
        assert!(Instant::now() < deadline, "load thread {t}: only {acked} of {count} acknowledged in 300 s");
        while inflight < WINDOW && sent < count {
            let id = (t << 32) | sent;
            let tx = tx.clone();
            let done = Callback::new(move |r| {
                let _ = tx.send((id, r));
            });
            match h.propose(GROUP, payload(id), done) {
                Ok(()) => {
                    sent += 1;
                    inflight += 1;
                }
                Err(NodeError::Busy) => break, // the intake ring is full: wait for answers
                Err(e) => panic!("load thread {t}: proposal {id:#x} refused: {e}"),
            }
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((id, r)) => {
                inflight -= 1;
                acked += 1;
                if let Err(e) = r {
                    panic!("load thread {t}: proposal {id:#x} failed: {e}");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("load thread {t}: {e}"),
        }
    }
}

/// p50, p99 and max of `lat`, in milliseconds.
fn percentiles(lat: &[Duration]) -> (f64, f64, f64) {
    assert!(!lat.is_empty(), "no latency samples");
    let mut v: Vec<Duration> = lat.to_vec();
    v.sort();
    let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1e3;
    (at(50), at(99), v[v.len() - 1].as_secs_f64() * 1e3)
}

/// One sequential proposal; returns its index and latency.
fn probe(h: &mut NodeHandle, id: u64) -> (u64, Duration) {
    let t = Instant::now();
    let b = propose_within(h, payload(id), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("probe proposal {id:#x} failed: {e}"));
    (u64::from_le_bytes(b[..8].try_into().unwrap()), t.elapsed())
}

#[test]
fn follower_catches_up_while_the_leader_keeps_committing() {
    let mut c = Cluster::start_timed("catchup", PATIENT_ELECTIONS);
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = (leader + 1) % 3;
    eprintln!("catch-up: leader node {}, restarted follower node {}", leader + 1, follower + 1);
    c.kill(follower);

    // The follower misses `entries()` entries.
    let total = entries();
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = c.handle(leader);
            let count = total / THREADS + u64::from(t < total % THREADS);
            std::thread::spawn(move || load(t, h, count))
        })
        .collect();
    for w in workers {
        w.join().expect("a load thread panicked");
    }
    let load_time = started.elapsed();
    let mut h = c.handle(leader);
    let behind = h.status(GROUP).expect("leader status").commit_index.0;
    eprintln!(
        "catch-up: committed {total} entries without the follower in {:.1} s ({:.0}/s); leader commit index {behind}",
        load_time.as_secs_f64(),
        total as f64 / load_time.as_secs_f64()
    );

    // Baseline: sequential commit latency with two live nodes.
    let mut next_id = PROBE_ID_BASE;
    let mut before = Vec::new();
    let t0 = Instant::now();
    while before.len() < PROBE_BASELINE_MAX && t0.elapsed() < PROBE_BASELINE_TIME {
        before.push(probe(&mut h, next_id).1);
        next_id += 1;
    }

    // Restart the follower and probe until it has applied every probe so far.
    let t_restart = Instant::now();
    c.restart_timed(follower, PATIENT_ELECTIONS);
    let restart_time = t_restart.elapsed();
    let mut during = Vec::new();
    let caught_up = loop {
        let (index, lat) = probe(&mut h, next_id);
        next_id += 1;
        during.push(lat);
        let applied = c.applied[follower].lock().last().map(|e| e.0).unwrap_or(0);
        if applied >= index {
            break t_restart.elapsed();
        }
        assert!(
            t_restart.elapsed() < CATCHUP_DEADLINE,
            "the follower applied only up to {applied} of {index} within {CATCHUP_DEADLINE:?}"
        );
    };

    let (b50, b99, bmax) = percentiles(&before);
    let (d50, d99, dmax) = percentiles(&during);
    let caught = c.applied[follower].lock().len();
    eprintln!(
        "catch-up: commit latency before: p50 {b50:.2} ms, p99 {b99:.2} ms, max {bmax:.2} ms ({} proposals)",
        before.len()
    );
    eprintln!(
        "catch-up: commit latency during: p50 {d50:.2} ms, p99 {d99:.2} ms, max {dmax:.2} ms ({} proposals)",
        during.len()
    );
    eprintln!(
        "catch-up: follower applied {caught} entries in {:.2} s ({:.0} entries/s; restart itself {:.0} ms)",
        caught_up.as_secs_f64(),
        caught as f64 / caught_up.as_secs_f64(),
        restart_time.as_secs_f64() * 1e3
    );

    // The follower applied exactly the leader's sequence.
    let last = c.applied[leader].lock().last().map(|e| e.0).expect("the leader applied entries");
    c.wait_applied(follower, last, Duration::from_secs(60));
    let leader_seq = c.applied[leader].lock().clone();
    let follower_seq = c.applied[follower].lock().clone();
    assert_eq!(
        leader_seq.len() as u64,
        total + before.len() as u64 + during.len() as u64,
        "the leader applied a different number of entries than were acknowledged"
    );
    assert_eq!(follower_seq.len(), leader_seq.len(), "the follower applied a different number of entries");
    if let Some(i) = (0..leader_seq.len()).find(|&i| leader_seq[i] != follower_seq[i]) {
        panic!("entry {i}: the leader applied {:?}, the follower {:?}", leader_seq[i], follower_seq[i]);
    }
    c.shutdown();
}
