//! The `Node` API end to end on single-node and 3-node in-process groups:
//! backpressure, graceful shutdown and crash recovery, the data-directory
//! lock, refused configurations, corrupt logs, reads, leader transfer and
//! membership changes.

mod pipeline_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use pipeline_common::*;
use ringraft::core::{ConfChange, GroupId, LogIndex, NodeId, Role};
use ringraft::node::{GroupConfig, Node, NodeConfig, NodeError, StateMachine};
use ringraft::pipeline::completion::Callback;
use ringraft::pipeline::transport::InProcNetwork;

const SOLO: NodeId = NodeId(1);

fn solo_group() -> GroupConfig {
    let mut g = GroupConfig::new(SOLO, GROUP, [SOLO]);
    g.raft.election_timeout_min_ms = 100;
    g.raft.election_timeout_max_ms = 200;
    g.raft.heartbeat_interval_ms = 20;
    g.raft.lease_drift_ms = 20;
    g
}

fn start_solo(dir: &std::path::Path, cfg: Option<NodeConfig>, sm: Box<dyn StateMachine>) -> Node {
    let cfg = cfg.unwrap_or_else(|| NodeConfig::new(SOLO, dir));
    Node::start(cfg, vec![(solo_group(), sm)], InProcNetwork::new()).expect("start single node")
}

/// Proposes until a proposal is accepted (a fresh single node needs an
/// election first); returns its answer.
fn propose_retry(node: &Node, data: Bytes) -> Bytes {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut h = node.handle();
    loop {
        match h.propose_wait(GROUP, data.clone()) {
            Ok(b) => return b,
            Err(e) if e.is_retryable() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("proposal failed: {e}"),
        }
    }
}

fn index_of(answer: &Bytes) -> u64 {
    u64::from_le_bytes(answer[..8].try_into().unwrap())
}

/// A state machine that blocks in `apply` until its gate opens.
struct Gated {
    gate: Arc<(Mutex<bool>, Condvar)>,
    applied: Applied,
}

impl StateMachine for Gated {
    fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes {
        let (open, cv) = &*self.gate;
        let mut g = open.lock();
        while !*g {
            cv.wait(&mut g);
        }
        Recorder(self.applied.clone()).apply(index, data)
    }
}

#[test]
fn a_full_pipeline_answers_busy_and_loses_nothing_accepted() {
    let tmp = TempDir::new("busy");
    let gate = Arc::new((Mutex::new(true), Condvar::new()));
    let applied: Applied = Default::default();
    let mut cfg = NodeConfig::new(SOLO, &tmp.0);
    cfg.intake_capacity = 64;
    cfg.stage_capacity = 64;
    let node = start_solo(&tmp.0, Some(cfg), Box::new(Gated { gate: gate.clone(), applied: applied.clone() }));
    propose_retry(&node, payload(0));

    // Close the gate: the FSM caller blocks, its ring and then the core's
    // backlog fill up, and proposals must be refused, never blocked: at
    // once when the intake ring is full, by the core when its backlog is.
    *gate.0.lock() = false;
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>();
    let mut h = node.handle();
    let (mut accepted, mut busy_at_once) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut busy_answers = 0u64;
    let mut ok_answers = Vec::new();
    while busy_answers == 0 || busy_at_once == 0 {
        assert!(Instant::now() < deadline, "no Busy after {accepted} accepted proposals");
        let tx = tx.clone();
        let done = Callback::new(move |r: Result<Bytes, NodeError>| {
            let _ = tx.send(r.map_err(|e| format!("{e:?}")));
        });
        match h.propose(GROUP, payload(accepted + 1), done) {
            Ok(()) => accepted += 1,
            Err(NodeError::Busy) => {
                busy_at_once += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) => panic!("unexpected refusal {e}"),
        }
        while let Ok(r) = rx.try_recv() {
            match r {
                Ok(b) => ok_answers.push(index_of(&b)),
                Err(e) if e == "Busy" => busy_answers += 1,
                Err(e) => panic!("unexpected answer {e}"),
            }
        }
        if accepted > 200_000 {
            panic!("200,000 proposals accepted with the state machine blocked: no backpressure");
        }
    }
    eprintln!("backpressure: {accepted} accepted, {busy_at_once} refused at once, {busy_answers} refused by the core");

    // Open the gate: every accepted proposal gets exactly one answer.
    {
        let (open, cv) = &*gate;
        *open.lock() = true;
        cv.notify_all();
    }
    let mut answered = ok_answers.len() as u64 + busy_answers;
    while answered < accepted {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(b)) => {
                ok_answers.push(index_of(&b));
                answered += 1;
            }
            Ok(Err(e)) if e == "Busy" => answered += 1,
            Ok(Err(e)) => panic!("unexpected answer {e}"),
            Err(_) => panic!("only {answered} of {accepted} accepted proposals were answered"),
        }
    }
    // Every acknowledged proposal was applied at its index; the node works on.
    let got: std::collections::HashSet<u64> = applied.lock().iter().map(|a| a.0).collect();
    for i in &ok_answers {
        assert!(got.contains(i), "acknowledged index {i} was not applied");
    }
    propose_retry(&node, payload(u64::MAX - 1));
    node.shutdown();
}

#[test]
fn graceful_shutdown_and_restart_keep_every_acknowledged_entry() {
    let tmp = TempDir::new("restart");
    let applied: Applied = Default::default();
    let node = start_solo(&tmp.0, None, Box::new(Recorder(applied.clone())));
    let acked: Vec<(u64, u64)> = (0..300u64).map(|id| (id, index_of(&propose_retry(&node, payload(id))))).collect();
    node.shutdown();

    let replayed: Applied = Default::default();
    let node = start_solo(&tmp.0, None, Box::new(Recorder(replayed.clone())));
    // The log is replayed into the fresh state machine once the restarted
    // node commits in its new term.
    propose_retry(&node, payload(999));
    let got: std::collections::HashMap<u64, u64> = replayed.lock().iter().copied().collect();
    for (id, index) in &acked {
        assert_eq!(got.get(index), Some(id), "entry {id} at {index} lost across a restart");
    }
    node.shutdown();
}

#[test]
fn a_killed_node_recovers_everything_it_acknowledged() {
    let tmp = TempDir::new("kill");
    let node = start_solo(&tmp.0, None, Box::new(Recorder(Default::default())));
    propose_retry(&node, payload(0));
    // A windowed proposer; the node is killed while proposals are in flight.
    let acked = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let answered = Arc::new(AtomicU64::new(0));
    let mut h = node.handle();
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < 2_000 {
        assert!(Instant::now() < deadline, "proposals stalled");
        if sent - answered.load(Ordering::Relaxed) < 128 {
            let (acked, answered, id) = (acked.clone(), answered.clone(), sent + 1);
            let done = Callback::new(move |r: Result<Bytes, NodeError>| {
                if let Ok(b) = r {
                    acked.lock().push((id, index_of(&b)));
                }
                answered.fetch_add(1, Ordering::Relaxed);
            });
            if h.propose(GROUP, payload(id), done).is_ok() {
                sent += 1;
            }
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    node.kill();
    // Every callback was answered (the kill fails what it interrupts).
    assert_eq!(answered.load(Ordering::Relaxed), sent, "a callback was never answered");

    let replayed: Applied = Default::default();
    let node = start_solo(&tmp.0, None, Box::new(Recorder(replayed.clone())));
    propose_retry(&node, payload(u64::MAX - 1));
    let got: std::collections::HashMap<u64, u64> = replayed.lock().iter().copied().collect();
    let acked = acked.lock();
    assert!(acked.len() >= 2_000 - 128, "too few acknowledged: {}", acked.len());
    for (id, index) in acked.iter() {
        assert_eq!(got.get(index), Some(id), "acknowledged entry {id} at {index} lost by a kill");
    }
    node.shutdown();
}

#[test]
fn a_data_directory_runs_one_node_at_a_time() {
    let tmp = TempDir::new("lock");
    let node = start_solo(&tmp.0, None, Box::new(Recorder(Default::default())));
    let second = Node::start(
        NodeConfig::new(SOLO, &tmp.0),
        vec![(solo_group(), Box::new(Recorder(Default::default())))],
        InProcNetwork::new(),
    );
    match second {
        Err(NodeError::Start(msg)) => assert!(msg.contains("in use"), "unclear message: {msg}"),
        Err(e) => panic!("wrong error for a locked directory: {e}"),
        Ok(_) => panic!("two nodes started on one data directory"),
    }
    node.shutdown();
    let again = start_solo(&tmp.0, None, Box::new(Recorder(Default::default())));
    again.shutdown();
}

#[test]
fn bad_configurations_are_refused_with_a_reason() {
    let tmp = TempDir::new("badcfg");
    let sm = || -> Box<dyn StateMachine> { Box::new(Recorder(Default::default())) };
    let net = InProcNetwork::new();
    let start = |cfg: NodeConfig, groups: Vec<(GroupConfig, Box<dyn StateMachine>)>| match Node::start(
        cfg,
        groups,
        net.clone(),
    ) {
        Ok(n) => {
            n.shutdown();
            panic!("a bad configuration was accepted")
        }
        Err(e) => e.to_string(),
    };
    let e = start(NodeConfig::new(NodeId(0), tmp.0.join("a")), vec![]);
    assert!(e.contains("node id 0"), "{e}");
    let e = start(NodeConfig::new(SOLO, tmp.0.join("b")), vec![(solo_group(), sm()), (solo_group(), sm())]);
    assert!(e.contains("twice"), "{e}");
    let e = start(NodeConfig::new(NodeId(2), tmp.0.join("c")), vec![(solo_group(), sm())]);
    assert!(e.contains("configured for node"), "{e}");
    let mut g = solo_group();
    g.raft.election_timeout_max_ms = g.raft.election_timeout_min_ms;
    let e = start(NodeConfig::new(SOLO, tmp.0.join("d")), vec![(g, sm())]);
    assert!(e.contains("group 1"), "{e}");
    let mut g = solo_group();
    g.initial_voters.clear();
    let e = start(NodeConfig::new(SOLO, tmp.0.join("e")), vec![(g, sm())]);
    assert!(e.contains("no initial voters"), "{e}");
}

#[test]
fn a_corrupt_log_stops_the_start_with_the_file_named() {
    let tmp = TempDir::new("corrupt");
    let node = start_solo(&tmp.0, None, Box::new(Recorder(Default::default())));
    for id in 0..50 {
        propose_retry(&node, payload(id));
    }
    node.shutdown();
    let seg = std::fs::read_dir(tmp.0.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg") || p.to_string_lossy().contains("seg"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&seg).unwrap();
    // Flip a byte inside the first record's body (after the 32-byte header).
    bytes[32 + 20] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let r = Node::start(
        NodeConfig::new(SOLO, &tmp.0),
        vec![(solo_group(), Box::new(Recorder(Default::default())))],
        InProcNetwork::new(),
    );
    match r {
        Err(NodeError::Storage(e)) => {
            let msg = e.to_string();
            let name = seg.file_name().unwrap().to_string_lossy().to_string();
            assert!(msg.contains(&name), "the error does not name {name}: {msg}");
        }
        Err(e) => panic!("wrong error for a corrupt log: {e}"),
        Ok(n) => {
            n.shutdown();
            panic!("a corrupt log was accepted")
        }
    }
}

#[test]
fn unknown_groups_followers_and_stopped_nodes_refuse_clearly() {
    let c = Cluster::start("refuse");
    let l = c.wait_leader(Duration::from_secs(20));
    let f = (l + 1) % 3;
    let mut h = c.handle(f);
    match h.propose_wait(GROUP, payload(1)) {
        Err(NodeError::NotLeader { leader: Some(id) }) => assert_eq!(id, ids()[l]),
        other => panic!("a follower answered {other:?}"),
    }
    match c.handle(l).propose_wait(GroupId(77), payload(1)) {
        Err(NodeError::UnknownGroup(GroupId(77))) => {}
        other => panic!("an unknown group answered {other:?}"),
    }
    assert!(matches!(c.handle(l).status(GroupId(77)), Err(NodeError::UnknownGroup(_))));
    let mut stale = c.handle(f);
    c.shutdown();
    assert!(matches!(stale.propose_wait(GROUP, payload(2)), Err(NodeError::ShuttingDown)));
}

#[test]
fn reads_transfers_and_membership_changes_work_through_the_pipeline() {
    let c = Cluster::start("admin");
    let l = c.wait_leader(Duration::from_secs(20));
    let mut h = c.handle(l);
    let mut last = 0;
    for id in 0..20 {
        last = index_of(&h.propose_wait(GROUP, payload(id)).expect("propose"));
    }
    // A read barrier on the leader and on a follower covers every write.
    let read = h.read_index_wait(GROUP).expect("leader read");
    assert!(read.0 >= last, "leader read index {read} < last write {last}");
    let f = (l + 1) % 3;
    let read = c.handle(f).read_index_wait(GROUP).expect("follower read");
    assert!(read.0 >= last, "follower read index {read} < last write {last}");
    assert!(c.applied[f].lock().iter().any(|a| a.0 == last), "follower read before applying {last}");

    // Hand leadership to a follower.
    let target = ids()[f];
    h.transfer_leader(GROUP, target).expect("transfer");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.handle(f).status(GROUP).expect("status");
        if s.role == Role::Leader {
            break;
        }
        assert!(Instant::now() < deadline, "transfer to {target} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Remove the old leader, then add it back.
    let mut nh = c.handle(f);
    let old = ids()[l];
    // A new leader takes membership changes once its first entry commits
    // (ConfChangeInProgress until then): both changes retry.
    let change = |nh: &mut ringraft::node::NodeHandle, cc: ConfChange, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match nh.change_membership(GROUP, cc.clone()) {
                Ok(_) => break,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    };
    change(&mut nh, ConfChange::RemoveNode(old), "remove");
    assert!(!nh.status(GROUP).unwrap().membership.contains(old));
    // Back as a learner first: only a caught-up learner may become a voter.
    change(&mut nh, ConfChange::AddLearner(old), "add back as a learner");
    change(&mut nh, ConfChange::AddVoter(old), "promote");
    assert!(nh.status(GROUP).unwrap().membership.is_voter(old));
    nh.propose_wait(GROUP, payload(1000)).expect("propose after changes");
    c.shutdown();
}

/// Panics on the payload "boom" (a broken user state machine).
struct Fragile;

impl StateMachine for Fragile {
    fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes {
        if &data[..] == b"boom" {
            panic!("state machine refuses entry {index} (test)");
        }
        Bytes::new()
    }
}

#[test]
fn a_dead_state_machine_thread_makes_the_node_step_down_and_refuse() {
    let tmp = TempDir::new("fragile");
    let node = start_solo(&tmp.0, None, Box::new(Fragile));
    propose_retry(&node, payload(1));
    let mut h = node.handle();
    let boom = h.propose_wait_until(GROUP, Bytes::from_static(b"boom"), Instant::now() + Duration::from_secs(10));
    assert!(boom.is_err(), "a proposal whose apply panicked was acknowledged");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match h.propose_wait_until(GROUP, payload(2), Instant::now() + Duration::from_secs(5)) {
            Err(NodeError::Failed(msg)) => {
                assert!(msg.contains("FSM"), "{msg}");
                break;
            }
            other => assert!(Instant::now() < deadline, "a node without its FSM thread still answers {other:?}"),
        }
    }
    assert_ne!(h.status(GROUP).expect("status").role, Role::Leader);
    node.shutdown();
}

#[test]
fn a_forwarded_read_whose_request_is_lost_fails_instead_of_hanging() {
    let c = Cluster::start("lostread");
    let l = c.wait_leader(Duration::from_secs(20));
    let f = (l + 1) % 3;
    c.handle(l).propose_wait(GROUP, payload(1)).expect("propose");
    // The follower still hears the leader, but nothing it sends arrives.
    c.net.block(ids()[f], ids()[l]);
    let started = Instant::now();
    let r = c.handle(f).read_index_wait_until(GROUP, Instant::now() + Duration::from_secs(30));
    assert!(matches!(r, Err(NodeError::ReadFailed)), "a lost forwarded read answered {r:?}");
    eprintln!("lost forwarded read failed after {:?}", started.elapsed());
    c.net.unblock(ids()[f], ids()[l]);
    let read = c.handle(f).read_index_wait(GROUP).expect("read once the link heals");
    assert!(read.0 >= 1);
    c.shutdown();
}

#[test]
fn a_follower_with_a_blocked_state_machine_keeps_its_backlog_bounded() {
    let tmp = TempDir::new("slowfsm");
    let net = InProcNetwork::new();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let mut applied: Vec<Applied> = Vec::new();
    let mut nodes = Vec::new();
    for id in ids() {
        let a = Applied::default();
        let mut cfg = NodeConfig::new(id, tmp.0.join(format!("n{}", id.0)));
        cfg.stage_capacity = 64;
        let sm: Box<dyn StateMachine> = if id == NodeId(3) {
            Box::new(Gated { gate: gate.clone(), applied: a.clone() })
        } else {
            Box::new(Recorder(a.clone()))
        };
        let node = Node::start(cfg, vec![(group_config(id), sm)], net.clone()).expect("start");
        net.register(id, node.inbound());
        nodes.push(node);
        applied.push(a);
    }
    // Lead from node 1, so that the gated node only follows.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes[0].handle().status(GROUP).is_ok_and(|s| s.role == Role::Leader) {
        assert!(Instant::now() < deadline, "node 1 never led");
        for n in &nodes {
            if n.handle().status(GROUP).is_ok_and(|s| s.role == Role::Leader) {
                let _ = n.handle().transfer_leader(GROUP, NodeId(1));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Many small batches: each becomes an FSM task on every node.
    let (tx, rx) = mpsc::channel::<Result<Bytes, NodeError>>();
    let mut h = nodes[0].handle();
    let (mut sent, mut answered, mut last) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered < 10_000 {
        assert!(Instant::now() < deadline, "only {answered} answered");
        while sent - answered < 8 && sent < 10_000 {
            let tx = tx.clone();
            if h.propose(GROUP, payload(sent), Callback::new(move |r| drop(tx.send(r)))).is_err() {
                break;
            }
            sent += 1;
        }
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(100)) {
            answered += 1;
            last = last.max(index_of(&r.expect("a proposal failed")));
        }
    }
    let peak = nodes[2].stats().fsm_backlog_peak;
    eprintln!("blocked follower: FSM backlog peak {peak} tasks over 10,000 proposals");
    assert!(peak <= 256 + 64, "the blocked follower's FSM backlog grew to {peak} tasks");
    {
        let (open, cv) = &*gate;
        *open.lock() = true;
        cv.notify_all();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied[2].lock().last().map(|a| a.0).unwrap_or(0) < last {
        assert!(Instant::now() < deadline, "the unblocked follower never caught up to {last}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(*applied[2].lock(), *applied[0].lock(), "the follower applied a different sequence");
    for n in nodes {
        n.shutdown();
    }
}

/// A state machine that holds a snapshot at `at` (its recover says so) and
/// records what it applies after it.
struct HoldsSnapshot {
    at: LogIndex,
    applied: Applied,
}

impl StateMachine for HoldsSnapshot {
    fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes {
        Recorder(self.applied.clone()).apply(index, data)
    }

    fn recover(&mut self, _snapshot: &ringraft::core::SnapshotMeta) -> Result<LogIndex, String> {
        Ok(self.at)
    }
}

/// Defect 03: a crash between storing a received snapshot in the state
/// file and the log's `Reset` leaves the old log behind the snapshot. Its
/// entries after the snapshot do not follow it (entry 5 has term 1, the
/// snapshot says term 2), so recovery must drop them; a node that kept
/// them committed and applied entries of a history the snapshot replaced.
#[test]
fn defect_03_recovery_drops_a_log_tail_that_does_not_follow_the_snapshot() {
    use ringraft::core::{Entry, HardState, LogOp, Membership, Payload, SnapshotMeta, Term};
    use ringraft::storage::{EngineConfig, GroupState, LogEngine, StateFile};

    let tmp = TempDir::new("stale-tail");
    {
        let mut engine = LogEngine::open(&tmp.0.join("log"), EngineConfig::default()).unwrap();
        let old: Vec<Entry> = (1..=10)
            .map(|i| Entry { term: Term(1), index: LogIndex(i), payload: Payload::Normal(payload(900 + i)) })
            .collect();
        engine.write(&[(GROUP, LogOp::Append(old))]).unwrap();
        let snapshot =
            SnapshotMeta { last_index: LogIndex(5), last_term: Term(2), membership: Membership::new([SOLO]) };
        let state = GroupState { hard_state: HardState { term: Term(2), vote: NodeId::NONE }, snapshot };
        StateFile::new(&tmp.0).unwrap().store(GROUP, &state).unwrap();
    }
    let applied: Applied = Default::default();
    let sm = HoldsSnapshot { at: LogIndex(5), applied: applied.clone() };
    let node = start_solo(&tmp.0, None, Box::new(sm));
    let answer = propose_retry(&node, payload(1));
    let at = index_of(&answer);
    let got = applied.lock().clone();
    node.shutdown();
    let stale: Vec<(u64, u64)> = got.iter().copied().filter(|(_, id)| *id > 900).collect();
    assert!(stale.is_empty(), "applied entries of the log the snapshot replaced: {stale:?} (all: {got:?})");
    assert_eq!(at, 7, "the new entry follows the snapshot (5) and the leader's no-op (6)");
}

/// A log that starts past the entry after the state file's snapshot is
/// missing entries: the node refuses to start with a message that says so
/// (it used to panic in the core's recovery).
#[test]
fn a_log_starting_past_the_snapshot_is_refused_with_a_clear_error() {
    use ringraft::core::{Entry, HardState, LogOp, Membership, Payload, SnapshotMeta, Term};
    use ringraft::storage::{EngineConfig, GroupState, LogEngine, StateFile};

    let tmp = TempDir::new("log-gap");
    {
        let mut engine = LogEngine::open(&tmp.0.join("log"), EngineConfig::default()).unwrap();
        let old: Vec<Entry> = (1..=10)
            .map(|i| Entry { term: Term(2), index: LogIndex(i), payload: Payload::Normal(payload(i)) })
            .collect();
        engine.write(&[(GROUP, LogOp::Append(old)), (GROUP, LogOp::Purge(LogIndex(8)))]).unwrap();
        let snapshot =
            SnapshotMeta { last_index: LogIndex(5), last_term: Term(2), membership: Membership::new([SOLO]) };
        let state = GroupState { hard_state: HardState { term: Term(2), vote: NodeId::NONE }, snapshot };
        StateFile::new(&tmp.0).unwrap().store(GROUP, &state).unwrap();
    }
    let sm = HoldsSnapshot { at: LogIndex(5), applied: Default::default() };
    let cfg = NodeConfig::new(SOLO, &tmp.0);
    match Node::start(cfg, vec![(solo_group(), Box::new(sm))], InProcNetwork::new()) {
        Err(NodeError::Start(msg)) => assert!(msg.contains("missing") && msg.contains("6..8"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a node started on a log with a gap after its snapshot"),
    }
}

/// Writes a log of `entries` (index, term) for the group and a state file
/// whose snapshot is `(snapshot_index, snapshot_term)`, as a crash between
/// storing a received snapshot and resetting the log leaves them.
fn crashed_before_reset(dir: &std::path::Path, entries: &[(u64, u64)], snapshot: (u64, u64)) {
    use ringraft::core::{Entry, HardState, LogOp, Membership, Payload, SnapshotMeta, Term};
    use ringraft::storage::{EngineConfig, GroupState, LogEngine, StateFile};
    let mut engine = LogEngine::open(&dir.join("log"), EngineConfig::default()).unwrap();
    let old: Vec<Entry> = entries
        .iter()
        .map(|&(i, t)| Entry { term: Term(t), index: LogIndex(i), payload: Payload::Normal(payload(900 + i)) })
        .collect();
    engine.write(&[(GROUP, LogOp::Append(old))]).unwrap();
    let meta = SnapshotMeta {
        last_index: LogIndex(snapshot.0),
        last_term: Term(snapshot.1),
        membership: Membership::new([SOLO]),
    };
    let state = GroupState { hard_state: HardState { term: Term(snapshot.1), vote: NodeId::NONE }, snapshot: meta };
    StateFile::new(dir).unwrap().store(GROUP, &state).unwrap();
}

/// Defect 03, a log that ends before the snapshot (a lagging follower sent
/// a snapshot, crashed before the reset): the node must start and take new
/// entries after the snapshot (the append stage used to refuse the gap and
/// stop, at every restart).
#[test]
fn defect_03_recovery_resets_a_log_that_ends_before_the_snapshot() {
    let tmp = TempDir::new("short-log");
    crashed_before_reset(&tmp.0, &[(1, 1), (2, 1), (3, 1)], (5, 2));
    let applied: Applied = Default::default();
    let node = start_solo(&tmp.0, None, Box::new(HoldsSnapshot { at: LogIndex(5), applied: applied.clone() }));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut h = node.handle();
    let at = loop {
        match h.propose_wait_until(GROUP, payload(1), Instant::now() + Duration::from_secs(2)) {
            Ok(b) => break index_of(&b),
            Err(e) => assert!(Instant::now() < deadline, "no proposal committed after the snapshot: {e}"),
        }
    };
    node.shutdown();
    assert_eq!(at, 7, "the snapshot (5), the leader's no-op (6), then the entry");
}

/// Defect 03, a log whose last entry is the snapshot's index with another
/// term: kept, it made the next restart drop entries acknowledged after
/// it. The entry written after the snapshot must survive a restart.
#[test]
fn defect_03_an_entry_after_a_mismatching_snapshot_point_survives_a_restart() {
    let tmp = TempDir::new("same-last");
    crashed_before_reset(&tmp.0, &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)], (5, 2));
    let applied: Applied = Default::default();
    let node = start_solo(&tmp.0, None, Box::new(HoldsSnapshot { at: LogIndex(5), applied: applied.clone() }));
    let at = index_of(&propose_retry(&node, payload(1)));
    node.shutdown();
    let again: Applied = Default::default();
    let node = start_solo(&tmp.0, None, Box::new(HoldsSnapshot { at: LogIndex(5), applied: again.clone() }));
    propose_retry(&node, payload(2));
    node.shutdown();
    let replayed: Vec<(u64, u64)> = again.lock().clone();
    assert!(replayed.contains(&(at, 1)), "entry {at} (acknowledged) is gone after a restart: {replayed:?}");
}
