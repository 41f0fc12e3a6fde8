//! The simulated world and its event loop.
//!
//! One priority queue of timed events (message deliveries, timer ticks,
//! disk completions, applies, client and nemesis actions) drives every node;
//! ties break by insertion order, so a seed fixes the whole run. A run is a
//! fault phase of `Knobs::steps` events, then a heal phase: faults stop,
//! every node is up, the network is perfect, and the cluster must converge
//! (a leader, every acknowledged proposal applied on every voter) within
//! `Knobs::heal_timeouts` election timeouts of virtual time.
//!
//! What happens inside a step lives beside this file: driver.rs (carrying
//! out a `Ready`, disk and apply completions), observe.rs (the per-step
//! checks of a node), client.rs (proposals and reads) and nemesis.rs
//! (faults, snapshots).

use std::panic::{catch_unwind, AssertUnwindSafe};

use ringraft::core::{Message, MessageBody, Role};

use super::checker::{Check, Checker, Violation};
use super::disk::{Durable, StoredSnapshot};
use super::knobs::Knobs;
use super::model::Model;
use super::network::Network;
use super::node::SimNode;
use super::outcome::Outcome;
use super::queue::{EventQueue, Timed};
use super::rng::{FastMap, Rng};
use super::stats::{FaultKind, Stats};
use super::trace::{Ev, Trace};

/// Most events the heal phase may take, whatever the virtual time: a guard
/// against a core that asks to be ticked at the same instant forever.
const HEAL_STEPS_MAX: u64 = 400_000;

/// What happens at an instant.
#[derive(Debug)]
pub(crate) enum EventKind {
    /// A message arrives.
    Deliver(Box<Message>),
    /// A node's timer fires.
    Tick { node: usize, inc: u64 },
    /// A node's oldest write completes.
    DiskDone { node: usize, inc: u64, job: u64 },
    /// A node's state machine catches up with its apply queue.
    Apply { node: usize, inc: u64 },
    /// A crashed node comes back.
    Restart { node: usize, inc: u64 },
    /// Crash a node (if still in this incarnation).
    Crash { node: usize, inc: u64 },
    /// Carry out a node's `Ready` (batched inputs).
    Flush { node: usize, inc: u64 },
    /// A timed partition ends (if no later one replaced it).
    NetHeal { generation: u64 },
    /// Cut a node off (after a leader transfer).
    Isolate { node: usize },
    /// A client proposes.
    Propose,
    /// A client reads.
    Read,
    /// The nemesis acts.
    Nemesis,
    /// Some node takes a snapshot.
    Snapshot,
}

/// A read in flight: who was asked, and the highest acknowledged index when
/// it was issued (the read must observe at least that).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadRec {
    pub node: usize,
    pub floor: u64,
}

/// The simulated cluster.
pub struct World {
    pub(crate) k: Knobs,
    /// Simulated time, µs.
    pub(crate) now: u64,
    queue: EventQueue<EventKind>,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) net: Network,
    pub(crate) checker: Checker,
    pub(crate) stats: Stats,
    pub(crate) trace: Trace,
    pub(crate) rng_net: Rng,
    pub(crate) rng_disk: Rng,
    pub(crate) rng_client: Rng,
    pub(crate) rng_nemesis: Rng,
    /// The heal phase has begun: no more faults or client load.
    pub(crate) healing: bool,
    pub(crate) next_pid: u64,
    pub(crate) next_read: u64,
    pub(crate) reads: FastMap<u64, ReadRec>,
}

impl World {
    /// A world for `k`; `print_trace` writes every event to stdout.
    pub fn new(k: Knobs, print_trace: bool) -> World {
        let seed = k.seed;
        let n = k.voters_initial + k.spares;
        let nodes = k
            .node_ids()
            .map(|id| {
                let voters = if (id.0 as usize) <= k.voters_initial { k.initial_voters().collect() } else { vec![] };
                let rec = ringraft::core::Recovered::bootstrap(voters);
                let data = Model::default().encode(k.snapshot_pad_bytes, 0);
                let snapshot = StoredSnapshot { meta: rec.snapshot, data, chain: super::model::CHAIN_ZERO };
                SimNode::new(&k, id, Durable { snapshot, ..Durable::default() })
            })
            .collect();
        World {
            k,
            now: 0,
            queue: EventQueue::new(),
            nodes,
            net: Network::new(n),
            checker: Checker::new(),
            stats: Stats::default(),
            trace: Trace::new(print_trace),
            rng_net: Rng::fork(seed, 1),
            rng_disk: Rng::fork(seed, 2),
            rng_client: Rng::fork(seed, 3),
            rng_nemesis: Rng::fork(seed, 4),
            healing: false,
            next_pid: 1,
            next_read: 1,
            reads: FastMap::default(),
        }
    }

    /// Schedules `kind` at simulated time `at`.
    pub(crate) fn schedule(&mut self, at: u64, kind: EventKind) {
        self.queue.push(at, kind);
    }

    /// The node index of a node id, if it is in the universe.
    #[inline]
    pub(crate) fn index_of(&self, id: ringraft::core::NodeId) -> Option<usize> {
        let i = id.0.checked_sub(1)? as usize;
        (i < self.nodes.len()).then_some(i)
    }

    /// Runs the whole simulation.
    pub fn run(mut self) -> Outcome {
        let result = self.run_phases();
        self.stats.elections = self.checker.elections;
        self.stats.commits = self.checker.commit_max();
        self.stats.sim_time_us = self.now;
        Outcome {
            seed: self.k.seed,
            stats: self.stats,
            trace_hash: self.trace.hash(),
            violation: result.err(),
            tail: self.trace.tail(),
            knobs: self.k,
        }
    }

    fn run_phases(&mut self) -> Check {
        self.boot()?;
        while self.stats.steps < self.k.steps {
            let Some(ev) = self.queue.pop() else { break };
            self.guarded_step(ev)?;
        }
        self.begin_heal()?;
        let deadline = self.now + self.k.heal_timeouts * self.k.election_max_ms * 1000;
        let mut heal_steps = 0;
        while !self.converged() {
            let Some(ev) = self.queue.pop() else { break };
            if ev.at > deadline || heal_steps >= HEAL_STEPS_MAX {
                return Err(Violation::new("liveness", self.describe_cluster()));
            }
            heal_steps += 1;
            self.guarded_step(ev)?;
        }
        if !self.converged() {
            return Err(Violation::new("liveness", self.describe_cluster()));
        }
        self.checker.final_check()
    }

    /// One step, with a panic in the core (an assertion) reported as a
    /// violation instead of tearing down the run.
    fn guarded_step(&mut self, ev: Timed<EventKind>) -> Check {
        match super::panics::in_step(|| catch_unwind(AssertUnwindSafe(|| self.step(ev)))) {
            Ok(r) => r,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "non-string panic".into());
                let at = super::panics::take_panic_location().map(|l| format!(" at {l}")).unwrap_or_default();
                Err(Violation::new("panic", format!("{msg}{at}")))
            }
        }
    }

    fn boot(&mut self) -> Check {
        for i in 0..self.nodes.len() {
            if self.nodes[i].clock.ppm != 0 {
                self.stats.fault(FaultKind::ClockSkew);
            }
            self.nodes[i].start(&self.k, 0).map_err(|e| Violation::new("storage", e))?;
            self.drive(i)?;
        }
        let k = &self.k;
        let (p, r, n, s) = (k.propose_interval_us, k.read_interval_us, k.nemesis_interval_us, k.snapshot_interval_us);
        self.schedule(p, EventKind::Propose);
        self.schedule(r, EventKind::Read);
        self.schedule(n, EventKind::Nemesis);
        self.schedule(s, EventKind::Snapshot);
        Ok(())
    }

    fn step(&mut self, ev: Timed<EventKind>) -> Check {
        self.now = ev.at;
        self.stats.steps += 1;
        match ev.kind {
            EventKind::Deliver(m) => self.deliver(*m),
            EventKind::Tick { node, inc } => self.on_tick(node, inc),
            EventKind::DiskDone { node, inc, job } => self.on_disk_done(node, inc, job),
            EventKind::Apply { node, inc } => self.on_apply_due(node, inc),
            EventKind::Restart { node, inc } => self.on_restart(node, inc),
            EventKind::Crash { node, inc } => self.on_crash_event(node, inc),
            EventKind::Flush { node, inc } => self.on_flush(node, inc),
            EventKind::NetHeal { generation } => {
                if self.net.generation == generation && self.net.partitioned() {
                    self.net.heal();
                    self.trace.record(self.now, Ev::Fault { what: "network healed", a: 0, b: 0 });
                }
                Ok(())
            }
            EventKind::Isolate { node } => self.isolate(node, FaultKind::IsolateLeader),
            EventKind::Propose => self.on_propose(),
            EventKind::Read => self.on_read(),
            EventKind::Nemesis => self.on_nemesis(),
            EventKind::Snapshot => self.on_snapshot_event(),
        }
    }

    fn deliver(&mut self, m: Message) -> Check {
        let (Some(from), Some(to)) = (self.index_of(m.from), self.index_of(m.to)) else { return Ok(()) };
        let kind = m.body.kind();
        let why = if !self.nodes[to].up() {
            "down"
        } else if !self.net.link_up(from, to) {
            "partition"
        } else {
            ""
        };
        if !why.is_empty() {
            self.trace.record(self.now, Ev::Lost { from: m.from.0, to: m.to.0, kind, why });
            return Ok(());
        }
        let (a, b, c) = message_numbers(&m.body);
        self.trace.record(self.now, Ev::Deliver { from: m.from.0, to: m.to.0, kind, term: m.term.0, a, b, c });
        let time = self.nodes[to].time(self.now);
        if let Some(core) = self.nodes[to].core.as_mut() {
            core.step(time, m);
        }
        self.drive(to)
    }

    /// Sends `m` through the network (faults apply), after checking that
    /// what it asserts is durable on the sender.
    pub(crate) fn send(&mut self, m: Message) -> Check {
        let (Some(from), Some(to)) = (self.index_of(m.from), self.index_of(m.to)) else { return Ok(()) };
        self.check_send(from, &m)?;
        if !self.net.link_up(from, to) {
            return Ok(());
        }
        let plan = self.net.plan(&mut self.rng_net, &self.k, &mut self.stats);
        if plan.len == 2 {
            self.schedule(self.now + plan.delays[1], EventKind::Deliver(Box::new(m.clone())));
        }
        if plan.len >= 1 {
            self.schedule(self.now + plan.delays[0], EventKind::Deliver(Box::new(m)));
        }
        Ok(())
    }

    /// Persistence before sending: a granted vote leaves only once the vote
    /// is durable, and a leader's messages of term T only once term T is
    /// durable (a leader that could forget its term could lead it twice).
    fn check_send(&self, from: usize, m: &Message) -> Check {
        let hs = self.nodes[from].disk.durable.hard_state;
        let leader_msg = matches!(
            m.body,
            MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::TimeoutNow
        );
        // A vote of an older term is covered by a durable later term: the
        // node can never vote in that term again.
        // A follower's acknowledgement of `match_index` must stay true: no
        // write in flight may replace an entry at or below it (a stale
        // persist report that matched a truncated and re-appended entry
        // broke this: issue 15, defect 04, mutant persist-aba).
        if let MessageBody::AppendEntriesResponse { match_index, reject: None } = m.body {
            if let Some(first) = self.nodes[from].disk.pending_rewrite_at_or_below(match_index.0) {
                return Err(Violation::new(
                    "ack-rewritten",
                    format!(
                        "n{} acknowledges index {match_index} to n{} while a write in flight rewrites the log from \
                         index {first}",
                        m.from, m.to
                    ),
                ));
            }
        }
        let vote = matches!(m.body, MessageBody::VoteResponse { granted: true });
        let unsynced_term = (leader_msg || vote) && hs.term < m.term;
        let unsynced_vote = vote && hs.term == m.term && hs.vote != m.to;
        if unsynced_term || unsynced_vote {
            return Err(Violation::new(
                "persist-before-send",
                format!(
                    "n{} sends {} in term {} to n{} but its durable hard state is term {} vote n{}",
                    m.from,
                    m.body.kind(),
                    m.term,
                    m.to,
                    hs.term,
                    hs.vote
                ),
            ));
        }
        Ok(())
    }

    fn on_tick(&mut self, node: usize, inc: u64) -> Check {
        let n = &mut self.nodes[node];
        if n.incarnation != inc || n.tick_at != self.now {
            return Ok(());
        }
        n.tick_at = u64::MAX;
        let time = n.time(self.now);
        if let Some(core) = n.core.as_mut() {
            core.tick(time);
        }
        self.trace.record(self.now, Ev::Tick { node: n.id.0 });
        self.drive(node)
    }

    fn on_restart(&mut self, node: usize, inc: u64) -> Check {
        if self.nodes[node].incarnation != inc || self.nodes[node].up() {
            return Ok(());
        }
        self.restart(node)
    }

    /// Brings a down node back from its durable store.
    pub(crate) fn restart(&mut self, node: usize) -> Check {
        self.nodes[node].start(&self.k, self.now).map_err(|e| Violation::new("storage", e))?;
        let id = self.nodes[node].id.0;
        self.trace.record(self.now, Ev::Fault { what: "restart", a: id, b: self.nodes[node].commit_index().0 });
        self.drive(node)
    }

    fn begin_heal(&mut self) -> Check {
        self.healing = true;
        self.net.heal();
        self.net.perfect = true;
        self.trace.record(self.now, Ev::Fault { what: "HEAL PHASE: all faults stop", a: 0, b: 0 });
        for i in 0..self.nodes.len() {
            self.nodes[i].slow_disk_until = 0;
            if !self.nodes[i].up() {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    /// The leader with the highest term among up nodes, if any.
    pub(crate) fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].core.as_ref().is_some_and(|c| c.role() == Role::Leader))
            .max_by_key(|i| self.nodes[*i].core.as_ref().map(|c| c.term()))
    }

    /// Liveness goal of the heal phase: a leader whose whole log is
    /// committed and covers every acknowledged proposal, applied by every
    /// voter of its configuration.
    fn converged(&self) -> bool {
        let Some(l) = self.leader() else { return false };
        let Some(core) = self.nodes[l].core.as_ref() else { return false };
        let commit = core.commit_index();
        if commit < core.last_index() || commit.0 < self.checker.max_acked {
            return false;
        }
        core.membership()
            .all_voters()
            .into_iter()
            .all(|v| self.index_of(v).is_some_and(|i| self.nodes[i].up() && self.nodes[i].model.applied >= commit.0))
    }

    /// One line per node, for liveness failures.
    fn describe_cluster(&self) -> String {
        let mut s = format!(
            "the cluster did not converge within {} election timeouts of healing (max acked {}): ",
            self.k.heal_timeouts, self.checker.max_acked
        );
        for n in &self.nodes {
            match n.core.as_ref() {
                Some(c) => s.push_str(&format!(
                    "[n{} {:?} t{} leader n{} last {} commit {} applied {} voters {:?}] ",
                    n.id,
                    c.role(),
                    c.term(),
                    c.leader(),
                    c.last_index(),
                    c.commit_index(),
                    n.model.applied,
                    c.membership().all_voters().iter().map(|v| v.0).collect::<Vec<_>>()
                )),
                None => s.push_str(&format!("[n{} down] ", n.id)),
            }
        }
        s
    }
}

/// Numbers worth showing in the trace for a message body.
fn message_numbers(body: &MessageBody) -> (u64, u64, u64) {
    match body {
        MessageBody::PreVote { last_log_term, last_log_index } => (last_log_term.0, last_log_index.0, 0),
        MessageBody::Vote { last_log_term, last_log_index, transfer } => {
            (last_log_term.0, last_log_index.0, u64::from(*transfer))
        }
        MessageBody::PreVoteResponse { granted } | MessageBody::VoteResponse { granted } => (u64::from(*granted), 0, 0),
        MessageBody::AppendEntries { prev_log_index, entries, commit, .. } => {
            (prev_log_index.0, entries.len() as u64, commit.0)
        }
        MessageBody::AppendEntriesResponse { match_index, reject } => {
            (match_index.0, u64::from(reject.is_some()), reject.map(|r| r.conflict_index.0).unwrap_or(0))
        }
        MessageBody::Heartbeat { commit, read_round } => (commit.0, *read_round, 0),
        MessageBody::HeartbeatResponse { read_round } => (*read_round, 0, 0),
        MessageBody::TimeoutNow => (0, 0, 0),
        MessageBody::InstallSnapshot { meta, offset, done, .. } => (meta.last_index.0, *offset, u64::from(*done)),
        MessageBody::InstallSnapshotResponse { last_index, next_offset, done } => {
            (last_index.0, *next_offset, u64::from(*done))
        }
        MessageBody::ReadIndexRequest { ctx } => (*ctx, 0, 0),
        MessageBody::ReadIndexResponse { ctx, index } => (*ctx, index.map(|i| i.0).unwrap_or(0), 0),
    }
}
