//! The staged pipeline end to end: a 3-node in-process cluster (real log
//! engines on temporary directories, in-process transport) commits 200,000
//! proposals from 8 proposer threads while its leader is killed (dropped
//! without shutdown) half-way and later restarted from disk. Every node
//! must apply the same sequence, and every acknowledged proposal must be in
//! it at the index it was acknowledged with.

mod pipeline_common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pipeline_common::*;
use ringraft::node::{NodeError, NodeHandle};

const THREADS: u64 = 8;

/// Proposals each thread gets acknowledged (`PIPELINE_PER_THREAD` overrides).
fn per_thread() -> u64 {
    std::env::var("PIPELINE_PER_THREAD").ok().and_then(|v| v.parse().ok()).unwrap_or(25_000)
}
const WINDOW: usize = 256;

/// The handle proposers should use, replaced by the test when the leader changes.
#[derive(Clone)]
struct Router(Arc<Mutex<(u64, Option<NodeHandle>)>>);

impl Router {
    fn set(&self, h: NodeHandle) {
        let mut g = self.0.lock();
        g.0 += 1;
        g.1 = Some(h);
    }
    fn get(&self) -> (u64, Option<NodeHandle>) {
        let g = self.0.lock();
        (g.0, g.1.clone())
    }
}

/// Proposes until `PER_THREAD` proposals of this thread are acknowledged;
/// returns the acknowledged (id, index) pairs.
fn proposer(t: u64, router: Router, acked_total: Arc<AtomicU64>) -> Vec<(u64, u64)> {
    let (tx, rx) = mpsc::channel::<(u64, Result<u64, String>)>();
    let mut acked = Vec::with_capacity(per_thread() as usize);
    let mut inflight = 0usize;
    let mut next_id = t << 32;
    let (mut gen, mut handle) = router.get();
    let deadline = Instant::now() + Duration::from_secs(600);
    while (acked.len() as u64) < per_thread() {
        assert!(Instant::now() < deadline, "proposer {t} stuck at {} acks", acked.len());
        while inflight < WINDOW && (acked.len() + inflight) < per_thread() as usize {
            let Some(h) = handle.as_mut() else { break };
            let id = next_id;
            let tx = tx.clone();
            let done = ringraft::pipeline::completion::Callback::new(move |r: Result<bytes::Bytes, NodeError>| {
                let r = r.map(|b| u64::from_le_bytes(b[..8].try_into().unwrap())).map_err(|e| e.to_string());
                let _ = tx.send((id, r));
            });
            match h.propose(GROUP, payload(id), done) {
                Ok(()) => {
                    next_id += 1;
                    inflight += 1;
                }
                Err(_) => break, // busy or shutting down: wait for answers, then retry
            }
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok((id, r)) => {
                inflight -= 1;
                match r {
                    Ok(index) => {
                        acked.push((id, index));
                        acked_total.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            Err(_) => {
                if std::env::var("PIPELINE_DEBUG").is_ok() {
                    eprintln!(
                        "proposer {t}: acked {} inflight {inflight} gen {gen} handle {}",
                        acked.len(),
                        handle.is_some()
                    );
                }
                let (g, h) = router.get();
                if g != gen {
                    gen = g;
                    handle = h;
                }
            }
        }
    }
    acked
}

#[test]
fn two_hundred_thousand_proposals_survive_a_leader_kill() {
    let mut c = Cluster::start("cluster");
    let leader = c.wait_leader(Duration::from_secs(20));
    let router = Router(Arc::new(Mutex::new((0, None))));
    router.set(c.handle(leader));
    let acked_total = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (r, a) = (router.clone(), acked_total.clone());
            std::thread::spawn(move || proposer(t, r, a))
        })
        .collect();

    // Half-way, kill the leader (no shutdown) and route to the new one.
    let half = THREADS * per_thread() / 2;
    let wait_until = Instant::now() + Duration::from_secs(300);
    let mut report = Instant::now();
    while acked_total.load(Ordering::Relaxed) < half {
        if report.elapsed() > Duration::from_secs(2) {
            report = Instant::now();
            let st = c.nodes[leader].as_ref().unwrap().stats();
            eprintln!(
                "progress: {} acks, leader {st:?}, net {:?}",
                acked_total.load(Ordering::Relaxed),
                c.net.counts()
            );
        }
        assert!(Instant::now() < wait_until, "only {} acks before the kill", acked_total.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats_before = c.nodes[leader].as_ref().unwrap().stats();
    c.kill(leader);
    let new_leader = c.wait_leader(Duration::from_secs(30));
    assert_ne!(new_leader, leader);
    router.set(c.handle(new_leader));

    let mut report = Instant::now();
    while !workers.iter().all(|w| w.is_finished()) {
        if report.elapsed() > Duration::from_secs(5) {
            report = Instant::now();
            eprintln!("progress: {} acks, net {:?}", acked_total.load(Ordering::Relaxed), c.net.counts());
            for n in c.nodes.iter().flatten() {
                eprintln!("  node {}: {:?} {:?}", n.id(), n.handle().status(GROUP), n.stats());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut acked: Vec<(u64, u64)> = Vec::new();
    for w in workers {
        acked.extend(w.join().expect("proposer panicked"));
    }
    let elapsed = started.elapsed();
    assert_eq!(acked.len() as u64, THREADS * per_thread());

    c.restart(leader);
    let max_index = acked.iter().map(|a| a.1).max().unwrap();
    for i in 0..3 {
        c.wait_applied(i, max_index, Duration::from_secs(120));
    }

    // Every node applied the same sequence, in index order (no-op entries
    // of new leaders are not given to the state machine).
    let seqs: Vec<Vec<(u64, u64)>> = c.applied.iter().map(|a| a.lock().clone()).collect();
    let common = seqs.iter().map(Vec::len).min().unwrap();
    for (n, s) in seqs.iter().enumerate() {
        for w in s.windows(2) {
            assert!(w[0].0 < w[1].0, "node {} applied index {} after {}", n + 1, w[1].0, w[0].0);
        }
        assert_eq!(&s[..common], &seqs[0][..common], "node {} applied a different sequence", n + 1);
    }
    // Nothing acknowledged was lost, and each is where it was acknowledged.
    let by_index: HashMap<u64, u64> = seqs[0].iter().copied().collect();
    for (id, index) in &acked {
        assert_eq!(by_index.get(index), Some(id), "acknowledged proposal {id:#x} at {index} is not there");
    }
    let stats_after = c.nodes[new_leader].as_ref().unwrap().stats();
    eprintln!(
        "200k proposals (8 threads, leader killed half-way): {:.1} s, {:.0} acks/s; entries per fsync: old leader {:.1}, new leader {:.1}",
        elapsed.as_secs_f64(),
        acked.len() as f64 / elapsed.as_secs_f64(),
        stats_before.entries_written as f64 / stats_before.fsync_batches.max(1) as f64,
        stats_after.entries_written as f64 / stats_after.fsync_batches.max(1) as f64,
    );
    c.shutdown();
}

/// A network that remembers the leader's answers to one follower's
/// forwarded reads and, once `replay` is set (the follower restarted),
/// delivers the old answer to a context id again just before a new request
/// with the same id reaches the leader: a late duplicate of the previous
/// incarnation's answer, as a slow network can deliver it. While `hold` is
/// set, the leader's appends to the follower are lost, so the follower
/// cannot apply anything new.
struct LateAnswers {
    net: Arc<ringraft::pipeline::transport::InProcNetwork>,
    reader: AtomicU64,
    answers: Mutex<HashMap<u64, ringraft::core::Message>>,
    replay: AtomicBool,
    hold: AtomicBool,
    replayed: AtomicU64,
}

impl ringraft::pipeline::transport::RaftTransport for LateAnswers {
    fn send(&self, to: ringraft::core::NodeId, mut msgs: Vec<ringraft::core::Message>) {
        use ringraft::core::MessageBody;
        let reader = ringraft::core::NodeId(self.reader.load(Ordering::Acquire));
        let replay = self.replay.load(Ordering::Acquire);
        if to == reader && self.hold.load(Ordering::Acquire) {
            msgs.retain(|m| !matches!(m.body, MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. }));
        }
        for m in &msgs {
            match &m.body {
                MessageBody::ReadIndexResponse { ctx, index: Some(_) } if to == reader && !replay => {
                    self.answers.lock().insert(*ctx, m.clone());
                }
                MessageBody::ReadIndexRequest { ctx } if m.from == reader && replay => {
                    let old = self.answers.lock().get(ctx).cloned();
                    if let Some(old) = old {
                        self.replayed.fetch_add(1, Ordering::Relaxed);
                        self.net.send(reader, vec![old]);
                    }
                }
                _ => {}
            }
        }
        self.net.send(to, msgs);
    }
}

/// Defect 02: a follower's read context ids must never repeat across its
/// restarts. They started at the core's start time, which the pipeline's
/// clock counts from process start, so every incarnation reused the same
/// ids, and a leader's late answer to the previous incarnation's read
/// completed a new read with an older index: a stale read.
///
/// The follower restarts while the log moves on, and gets none of the new
/// entries until the end (`hold`): no read it asks may complete before
/// then, since each must wait to apply the leader's current commit index.
/// A read that completes anyway took an old answer.
#[test]
fn defect_02_a_late_answer_to_a_previous_incarnations_read_does_not_serve_a_new_read() {
    use ringraft::core::NodeId;
    use ringraft::node::{Node, NodeConfig};
    use ringraft::pipeline::completion::Callback;
    use ringraft::pipeline::transport::{InProcNetwork, RaftTransport};

    const READS: usize = 5000;
    let tmp = TempDir::new("late-read");
    let net = InProcNetwork::new();
    let tap = Arc::new(LateAnswers {
        net: net.clone(),
        reader: AtomicU64::new(0),
        answers: Mutex::new(HashMap::new()),
        replay: AtomicBool::new(false),
        hold: AtomicBool::new(false),
        replayed: AtomicU64::new(0),
    });
    let start = |id: NodeId| {
        let dir = tmp.0.join(format!("n{}", id.0));
        let sm = Box::new(Recorder(Default::default()));
        let transport: Arc<dyn RaftTransport> = tap.clone();
        let node = Node::start(NodeConfig::new(id, &dir), vec![(group_config(id), sm)], transport).unwrap();
        net.register(id, node.inbound());
        node
    };
    let mut nodes: Vec<Option<Node>> = ids().into_iter().map(|id| Some(start(id))).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let st = |n: &Option<Node>| n.as_ref().and_then(|n| n.handle().status(GROUP).ok());
        if let Some(i) = nodes.iter().position(|n| st(n).is_some_and(|s| s.role == ringraft::core::Role::Leader)) {
            break i;
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(10));
    };
    let r = (leader + 1) % 3;
    tap.reader.store(ids()[r].0, Ordering::Release);
    let mut lh = nodes[leader].as_ref().unwrap().handle();
    for i in 0..5 {
        propose_within(&mut lh, payload(i), Duration::from_secs(10)).unwrap();
    }
    // Incarnation 1: follower reads one at a time, each its own forwarded
    // batch (its own context id); the network keeps the answers.
    let mut h = nodes[r].as_ref().unwrap().handle();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = 0;
    while done < READS {
        assert!(Instant::now() < deadline, "only {done} of {READS} follower reads within 120 s");
        match h.read_index_wait_until(GROUP, Instant::now() + Duration::from_secs(5)) {
            Ok(_) => done += 1,
            Err(e) if e.is_retryable() => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("follower read failed: {e}"),
        }
    }
    // The follower restarts cut off from new entries; the log moves on.
    nodes[r].take().unwrap().shutdown();
    tap.hold.store(true, Ordering::Release);
    tap.replay.store(true, Ordering::Release);
    for i in 5..25 {
        propose_within(&mut lh, payload(i), Duration::from_secs(10)).unwrap();
    }
    nodes[r] = Some(start(ids()[r]));
    let mut h = nodes[r].as_ref().unwrap().handle();
    let served_early = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let holding = Arc::new(AtomicBool::new(true));
    let mut asked = 0u64;
    for _ in 0..READS {
        let (early, answered, holding) = (served_early.clone(), answered.clone(), holding.clone());
        let done = Callback::new(move |res: Result<ringraft::core::LogIndex, NodeError>| {
            if res.is_ok() && holding.load(Ordering::Acquire) {
                early.fetch_add(1, Ordering::Relaxed);
            }
            answered.fetch_add(1, Ordering::Relaxed);
        });
        if h.read_index(GROUP, done).is_ok() {
            asked += 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    // Let every read finish: the follower catches up and answers them.
    holding.store(false, Ordering::Release);
    tap.hold.store(false, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < asked {
        assert!(Instant::now() < deadline, "{} of {asked} reads answered", answered.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (early, replayed) = (served_early.load(Ordering::Relaxed), tap.replayed.load(Ordering::Relaxed));
    assert_eq!(
        early, 0,
        "{early} follower reads were served before the follower could apply the leader's commit index \
         (stale reads; {replayed} requests reused a context id of the previous incarnation)"
    );
    assert_eq!(replayed, 0, "a context id was used by both incarnations");
    for n in nodes.into_iter().flatten() {
        n.shutdown();
    }
}
