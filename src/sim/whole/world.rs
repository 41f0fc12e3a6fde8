//! The node simulator's world: three whole nodes, the network between them,
//! clients, and a nemesis, driven by one event queue from one seed.
//!
//! Every event touches at most one node; the node's layers run as the
//! production threads run them, each as its step function: the core thread
//! ([`GroupCore::carry_out`](crate::pipeline::GroupCore)), the log-append
//! stage (`AppendSteps::write_batch`, with the disk's latency), the FSM
//! caller (`FsmSteps::step`, with the service state machine, its inline
//! checkpoints and snapshots), and the snapshot sender
//! (`SenderSteps::on_request`, its bandwidth wait as simulated time). A
//! simulated crash (the disk's crash point, or a failed fsync's fail-stop)
//! inside any of them powers the node off; it restarts later through the
//! real start code with a new monotonic clock at 0.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::core::{LogIndex, LogOp, Message, MessageBody, ReadId, ReadMode, Role, Time};
use crate::fs::sim::is_sim_crash;
use crate::node::NodeError;
use crate::pipeline::completion::Callback;
use crate::rpc::ErrorCode;
use crate::service::command::{Command, Stamped};

use super::super::checker::Violation;
use super::super::knobs::{Knobs, GROUP};
use super::super::network::Network;
use super::super::queue::{EventQueue, Timed};
use super::super::rng::{fnv1a, fold, Rng};
use super::super::runner::{in_step, take_panic_location};
use super::super::stats::{FaultKind, NodeCounters, Stats};
use super::super::world::Outcome;
use super::clients::{self, Client, Consistency, FinalStream, HOp, Reply, Req, STREAMS};
use super::knobs::NodeKnobs;
use super::proc::{Applied, Proc};

type Check = Result<(), Violation>;

/// Most events the heal phase may take.
const HEAL_STEPS_MAX: u64 = 400_000;
/// Simulated time the heal phase may take, µs.
const HEAL_US: u64 = 120_000_000;
/// Trace lines kept for a failure report.
const TAIL: usize = 60;
/// Most time a stage's report spends in the core's intake ring, µs.
const INTAKE_DELAY_MAX_US: u64 = 3_000;
/// FSM tasks waiting before the core holds committed entries back (as the
/// core thread's `FSM_BACKLOG_PAUSE`).
const FSM_BACKLOG_PAUSE: usize = 256;

#[derive(Debug)]
enum Ev {
    Deliver(Box<Message>),
    Tick { n: usize, inc: u64 },
    Append { n: usize, inc: u64 },
    Persisted { n: usize, inc: u64, points: Vec<(crate::core::GroupId, crate::core::PersistPoint)> },
    Fsm { n: usize, inc: u64 },
    Sender { n: usize, inc: u64 },
    Restart { n: usize, inc: u64 },
    Request { n: usize, op: usize, attempt: u32 },
    Answer { op: usize, reply: Reply },
    Timeout { op: usize, attempt: u32 },
    ClientAct { c: usize },
    Nemesis,
    NetHeal { generation: u64 },
    DiskRoom { n: usize, until: u64 },
    DiskHealthy { n: usize, until: u64 },
    DrillEnd,
}

/// Answers the nodes' callbacks produced, in order: (op, reply).
type Outbox = Arc<Mutex<Vec<(usize, Reply)>>>;

/// The simulated cluster of whole nodes.
pub struct NodeWorld {
    k: Knobs,
    nk: NodeKnobs,
    now: u64,
    queue: EventQueue<Ev>,
    procs: Vec<Proc>,
    net: Network,
    clients: Vec<Client>,
    ops: Vec<HOp>,
    outbox: Outbox,
    /// Every entry as first applied anywhere.
    applied: BTreeMap<u64, Applied>,
    stats: Stats,
    nc: NodeCounters,
    rng_net: Rng,
    rng_disk: Rng,
    rng_client: Rng,
    rng_nemesis: Rng,
    rng_epoch: Rng,
    healing: bool,
    trace_hash: u64,
    tail: std::collections::VecDeque<String>,
    print: bool,
    /// Each term's leader, and when it was seen leading.
    leaders: BTreeMap<u64, (usize, u64)>,
    /// When each entry of `applied` was first applied.
    applied_at: BTreeMap<u64, u64>,
    /// Per node, every read context it sent, with the life that sent it.
    read_ctxs: Vec<hashbrown::HashMap<u64, u64>>,
    /// The ABA drill in progress, if any.
    drill: Drill,
}

/// A drill aimed at defect 04's chain (five voters): follower `f`'s disk
/// stalls with leader `l`'s entries in flight; `f` is cut off with `l`, so
/// the others elect `x`; the moment `x` leads it is cut off with `f` alone
/// (its first entry reaches only `f`, replacing `l`'s there); the moment
/// `l` leads again the network heals and `l` gives `f` its entries back,
/// all before `f`'s stalled write ends and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drill {
    Idle,
    WaitX { l: usize, f: usize },
    WaitL { l: usize },
}

fn panic_at() -> String {
    take_panic_location().map(|l| format!(" at {l}")).unwrap_or_default()
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into())
}

impl NodeWorld {
    /// The world of `seed`.
    pub fn new(seed: u64, steps: u64, mutant: Option<&str>, print: bool) -> NodeWorld {
        let (k, nk) = NodeKnobs::from_seed(seed, steps, mutant.map(str::to_string));
        let nodes = k.voters_initial;
        let procs = (1..=nodes as u64).map(|i| Proc::new(crate::core::NodeId(i), seed, &nk)).collect();
        let clients = (0..nk.clients).map(|_| Client::default()).collect();
        NodeWorld {
            net: Network::new(nodes),
            procs,
            clients,
            ops: Vec::new(),
            outbox: Arc::default(),
            applied: BTreeMap::new(),
            stats: Stats::default(),
            nc: NodeCounters::default(),
            rng_net: Rng::fork(seed, 11),
            rng_disk: Rng::fork(seed, 12),
            rng_client: Rng::fork(seed, 13),
            rng_nemesis: Rng::fork(seed, 14),
            rng_epoch: Rng::fork(seed, 15),
            healing: false,
            trace_hash: 0x6e6f_6465,
            tail: std::collections::VecDeque::new(),
            print,
            leaders: BTreeMap::new(),
            applied_at: BTreeMap::new(),
            read_ctxs: vec![hashbrown::HashMap::new(); nodes],
            drill: Drill::Idle,
            now: 0,
            queue: EventQueue::new(),
            k,
            nk,
        }
    }

    /// Nodes in the cluster.
    fn nodes(&self) -> usize {
        self.procs.len()
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.queue.push(at, ev);
    }

    fn note(&mut self, line: String) {
        self.trace_hash = fold(fold(self.trace_hash, self.now), fnv1a(line.as_bytes()));
        if self.print {
            println!("{:>10} {line}", self.now);
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(format!("{:>10} {line}", self.now));
    }

    /// Runs the seed.
    pub fn run(mut self) -> Outcome {
        let mut result = self.run_phases();
        let stopped = self.stop_all();
        if result.is_ok() {
            result = stopped;
        }
        self.stats.sim_time_us = self.now;
        self.stats.elections = self.leaders.len() as u64;
        for p in &self.procs {
            let f = p.fs.faults();
            self.nc.fs_enospc += f.enospc;
            self.nc.fs_eio += f.eio;
            self.nc.fs_lost_unsynced += f.lost_unsynced;
            self.nc.fs_torn += f.torn;
        }
        self.nc.client_ops = self.ops.len() as u64;
        self.stats.acked = self.ops.iter().filter(|o| o.ok().is_some()).count() as u64;
        self.stats.reads_ok =
            self.ops.iter().filter(|o| o.answers.iter().any(|(_, r)| matches!(r, Reply::Read { .. }))).count() as u64;
        self.stats.commits = self.applied.keys().next_back().copied().unwrap_or(0);
        self.stats.node = Some(self.nc);
        let mut knobs = self.k.clone();
        knobs.node = Some(format!("{:?}", self.nk));
        Outcome {
            seed: self.k.seed,
            stats: self.stats,
            trace_hash: self.trace_hash,
            violation: result.err(),
            tail: self.tail.into_iter().collect(),
            knobs,
        }
    }

    /// Stops every node gracefully (a stop writes a last checkpoint; a
    /// failed flush or sync then fails stop, which is no violation).
    fn stop_all(&mut self) -> Check {
        for n in 0..self.nodes() {
            let life = self.procs[n].life.take();
            match in_step(|| catch_unwind(AssertUnwindSafe(move || drop(life)))) {
                Ok(()) => {}
                Err(p) if is_sim_crash(&*p) => self.procs[n].fs.crash(),
                Err(p) => {
                    return Err(Violation::new(
                        "panic",
                        format!("n{} stopping: {}{}", n + 1, panic_text(&*p), panic_at()),
                    ))
                }
            }
        }
        Ok(())
    }

    fn run_phases(&mut self) -> Check {
        for n in 0..self.nodes() {
            self.restart(n)?;
        }
        for c in 0..self.clients.len() {
            let at = self.rng_client.range(1, self.nk.client_interval_us);
            self.schedule(at, Ev::ClientAct { c });
        }
        self.schedule(self.k.nemesis_interval_us, Ev::Nemesis);
        while self.stats.steps < self.k.steps {
            let Some(ev) = self.queue.pop() else { break };
            self.step(ev)?;
        }
        self.begin_heal()?;
        let deadline = self.now + HEAL_US;
        let mut heal_steps = 0;
        while !self.converged() {
            let Some(ev) = self.queue.pop() else { break };
            if ev.at > deadline || heal_steps >= HEAL_STEPS_MAX {
                return Err(Violation::new("liveness", self.describe()));
            }
            heal_steps += 1;
            self.step(ev)?;
        }
        if !self.converged() {
            return Err(Violation::new("liveness", self.describe()));
        }
        self.final_check()
    }

    fn step(&mut self, e: Timed<Ev>) -> Check {
        self.now = e.at;
        self.stats.steps += 1;
        let r = match e.kind {
            Ev::Deliver(m) => self.on_node(m.to.0 as usize - 1, |w, n| w.deliver(n, *m)),
            Ev::Tick { n, inc } => self.on_node_of(n, inc, Self::tick),
            Ev::Append { n, inc } => self.on_node_of(n, inc, Self::append_run),
            Ev::Persisted { n, inc, points } => {
                if self.procs[n].inc == inc {
                    self.on_node(n, |w, n| w.persisted(n, points))
                } else {
                    Ok(())
                }
            }
            Ev::Fsm { n, inc } => self.on_node_of(n, inc, Self::fsm_run),
            Ev::Sender { n, inc } => self.on_node_of(n, inc, Self::sender_run),
            Ev::Restart { n, inc } => {
                if self.procs[n].inc == inc && !self.procs[n].up() {
                    self.procs[n].restart_scheduled = false;
                    self.restart(n)
                } else {
                    Ok(())
                }
            }
            Ev::Request { n, op, attempt } => self.on_node(n, |w, n| w.request(n, op, attempt)),
            Ev::Answer { op, reply } => self.on_answer(op, reply),
            Ev::Timeout { op, attempt } => self.on_timeout(op, attempt),
            Ev::ClientAct { c } => self.client_act(c),
            Ev::Nemesis => self.nemesis(),
            Ev::NetHeal { generation } => {
                if self.net.generation == generation {
                    self.net.heal();
                    self.note("network healed".into());
                }
                Ok(())
            }
            Ev::DrillEnd => {
                if self.drill != Drill::Idle {
                    self.drill = Drill::Idle;
                    self.net.heal();
                    self.note("drill over".into());
                }
                Ok(())
            }
            Ev::DiskHealthy { n, until } => {
                if self.procs[n].eio_until == until && !self.healing {
                    self.procs[n].fs.set_fsync_fail_ppm(self.nk.fsync_fail_ppm);
                    self.note(format!("n{} disk healthy again", n + 1));
                }
                Ok(())
            }
            Ev::DiskRoom { n, until } => {
                if self.procs[n].full_until == until {
                    self.procs[n].fs.set_budget(u64::MAX);
                    self.note(format!("n{} disk has room again", n + 1));
                }
                Ok(())
            }
        };
        self.flush_outbox();
        r
    }

    /// Runs `f` on up node `n` in this incarnation.
    fn on_node_of(&mut self, n: usize, inc: u64, f: fn(&mut Self, usize) -> Check) -> Check {
        if self.procs[n].inc != inc || !self.procs[n].up() {
            return Ok(());
        }
        self.on_node(n, f)
    }

    /// Runs `f` on node `n` if it is up; a simulated crash inside powers
    /// it off, any other panic is a violation.
    fn on_node(&mut self, n: usize, f: impl FnOnce(&mut Self, usize) -> Check) -> Check {
        if n >= self.nodes() || !self.procs[n].up() {
            return Ok(());
        }
        match in_step(|| catch_unwind(AssertUnwindSafe(|| f(self, n)))) {
            Ok(r) => r,
            Err(p) if is_sim_crash(&*p) => {
                self.note(format!("n{} crashed inside a step (disk crash point or fail-stop)", n + 1));
                self.power_off(n)
            }
            Err(p) => Err(Violation::new("panic", format!("n{}: {}{}", n + 1, panic_text(&*p), panic_at()))),
        }
    }

    fn power_off(&mut self, n: usize) -> Check {
        // What the node applied before the power went is checked all the same.
        let applied = self.take_applied(n);
        self.procs[n].power_off();
        // A process that is gone answers nobody: its callbacks' errors
        // never leave it.
        self.outbox.lock().clear();
        if !self.healing && self.rng_nemesis.percent(self.nk.garble_percent) && self.procs[n].garble_checkpoint() {
            self.nc.checkpoint_lost += 1;
            self.note(format!("n{} lost its checkpoint database", n + 1));
        }
        self.stats.fault(FaultKind::Crash);
        if !self.procs[n].restart_scheduled {
            self.procs[n].restart_scheduled = true;
            // Often back at once (a supervisor restarts it), now and then
            // long enough for the others to compact their logs past it (it
            // then needs a snapshot).
            let down = if self.healing {
                1_000
            } else {
                match self.rng_nemesis.below(10) {
                    0..=2 => self.rng_nemesis.range(1_000, 10_000),
                    3..=5 => self.rng_nemesis.range(10_000, 3_000_000),
                    _ => self.rng_nemesis.range(10_000, self.k.down_max_us.max(20_000)),
                }
            };
            let inc = self.procs[n].inc;
            self.schedule(self.now + down, Ev::Restart { n, inc });
        }
        applied
    }

    fn restart(&mut self, n: usize) -> Check {
        let epoch = self.rng_epoch.next_u64();
        let now = self.now;
        let (k, mut nk) = (self.k.clone(), self.nk.clone());
        if self.healing {
            nk.kv_flush_fail_ppm = 0;
        }
        let p = &mut self.procs[n];
        let r = in_step(|| catch_unwind(AssertUnwindSafe(|| p.start(&k, &nk, now, epoch))));
        match r {
            Ok(Ok(())) => {
                if self.procs[n].inc > 0 {
                    self.nc.restart += 1;
                }
                self.note(format!("n{} started", n + 1));
                self.on_node(n, Self::drive)
            }
            Ok(Err(e)) => {
                self.procs[n].life = None;
                if self.healing {
                    // No fault is injected any more: a node that cannot
                    // start now never will.
                    Err(Violation::new("start", format!("n{} cannot start: {e}", n + 1)))
                } else {
                    // A start the disk's faults refused (a full disk, a
                    // failed flush or sync): the process exits with its
                    // error and is started again; the heal phase checks it
                    // starts once the faults stop.
                    self.note(format!("n{} cannot start yet: {e}", n + 1));
                    self.nc.start_refused += 1;
                    self.power_off(n)
                }
            }
            Err(p) if is_sim_crash(&*p) => {
                self.note(format!("n{} crashed while starting", n + 1));
                self.procs[n].life = None;
                self.power_off(n)
            }
            Err(p) => Err(Violation::new("panic", format!("n{} starting: {}{}", n + 1, panic_text(&*p), panic_at()))),
        }
    }

    /// Carries out the node's `Ready`s, then re-arms its timer.
    fn drive(&mut self, n: usize) -> Check {
        let now = self.now;
        let apply_delay = self.rng_disk.range(0, self.k.apply_delay_max_us.max(1));
        let mut sends = Vec::new();
        let mut wake: Vec<(u64, Ev)> = Vec::new();
        let mut lines = Vec::new();
        let mut receiving = false;
        let mut newly_leading = false;
        let inc = self.procs[n].inc;
        {
            let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
            let id = life.id();
            for _ in 0..8 {
                if !life.gc.core.has_ready() {
                    break;
                }
                let rd = life.gc.core.take_ready();
                if let Some(ss) = rd.soft_state {
                    if ss.role == Role::Leader {
                        newly_leading = true;
                    }
                    if ss.role == Role::Leader && !self.leaders.contains_key(&ss.term.0) {
                        self.leaders.insert(ss.term.0, (n, now));
                        lines.push(format!("n{} leads term {}", n + 1, ss.term));
                    }
                }
                let c = life.gc.carry_out(id, GROUP, rd);
                if c.append.as_ref().is_some_and(|j| j.snapshot_chunks.iter().any(|ch| ch.offset == 0)) {
                    receiving = true;
                }
                if let Some(job) = c.append {
                    life.append_q.push(job);
                    if !life.append_scheduled {
                        life.append_scheduled = true;
                        wake.push((now, Ev::Append { n, inc }));
                    }
                }
                life.sender_q.extend(c.snapshot_sends);
                if !life.sender_q.is_empty() && !life.sender_scheduled {
                    life.sender_scheduled = true;
                    wake.push((now.max(life.sender_busy_until), Ev::Sender { n, inc }));
                }
                life.fsm_q.extend(c.fsm);
                sends.extend(c.messages);
            }
            if !life.fsm_q.is_empty() && !life.fsm.holding() && now + apply_delay < life.fsm_at {
                life.fsm_at = now + apply_delay;
                wake.push((now + apply_delay, Ev::Fsm { n, inc }));
            }
            let paused = life.fsm_q.len() >= FSM_BACKLOG_PAUSE;
            if paused != life.apply_paused {
                life.apply_paused = paused;
                life.gc.core.set_apply_paused(paused);
            }
            let deadline = life.gc.core.next_deadline();
            if deadline != Time::NEVER {
                let at = life.sim_time_of(deadline).max(now);
                if at < life.tick_at {
                    life.tick_at = at;
                    wake.push((at, Ev::Tick { n, inc }));
                }
            }
        }
        for (at, ev) in wake {
            self.schedule(at, ev);
        }
        for l in lines {
            self.note(l);
        }
        if newly_leading {
            self.drill_on_leader(n);
        }
        if receiving && !self.healing && self.rng_nemesis.percent(self.nk.eio_on_receive_percent) {
            // Aimed at a rare path: one of the next few syncs fails as a
            // snapshot starts to arrive (most others fail the node stop).
            let k = self.rng_nemesis.range(1, 12);
            self.procs[n].fs.fail_sync_after(Some(k));
            self.note(format!("n{} will fail its {k}th sync from now", n + 1));
        }
        for m in sends {
            self.send(m, 0)?;
        }
        Ok(())
    }

    fn send(&mut self, m: Message, extra_us: u64) -> Check {
        let (from, to) = (m.from.0 as usize - 1, m.to.0 as usize - 1);
        if from >= self.nodes() || to >= self.nodes() {
            return Ok(());
        }
        // A follower's acknowledgement of `match_index` must stay true: no
        // write in flight may replace an entry at or below it (defect 04).
        if let MessageBody::AppendEntriesResponse { match_index, reject: None } = m.body {
            if let Some(life) = self.procs[from].life.as_ref() {
                let pending = life.append.pending_ops().iter().map(|(_, op)| op);
                let queued = life.append_batch.iter().chain(life.append_q.iter()).flat_map(|j| j.log_ops.iter());
                let rewrites = pending.chain(queued).find_map(|op| match op {
                    LogOp::Append(es) => es.first().map(|e| e.index).filter(|i| *i <= match_index),
                    LogOp::Reset(_) | LogOp::Purge(_) => None,
                });
                if let Some(first) = rewrites {
                    return Err(Violation::new(
                        "ack-rewritten",
                        format!(
                            "n{} acknowledges index {match_index} to n{} while a write in flight rewrites the log \
                             from index {first}",
                            from + 1,
                            to + 1
                        ),
                    ));
                }
            }
        }
        // A read context is never used again by a later life of the node
        // (defect 02: an answer sent to an earlier life matched a new read).
        if let MessageBody::ReadIndexRequest { ctx } = m.body {
            let inc = self.procs[from].inc;
            match self.read_ctxs[from].insert(ctx, inc) {
                Some(earlier) if earlier != inc => {
                    return Err(Violation::new(
                        "read-ctx-reused",
                        format!("n{} asks a read with context {ctx}, which its life {earlier} used", from + 1),
                    ))
                }
                _ => {}
            }
        }
        if !self.net.link_up(from, to) {
            return Ok(());
        }
        let plan = self.net.plan(&mut self.rng_net, &self.k, &mut self.stats);
        if plan.len == 2 {
            self.schedule(self.now + extra_us + plan.delays[1], Ev::Deliver(Box::new(m.clone())));
        }
        if plan.len >= 1 {
            self.schedule(self.now + extra_us + plan.delays[0], Ev::Deliver(Box::new(m)));
        }
        Ok(())
    }

    fn deliver(&mut self, n: usize, m: Message) -> Check {
        let from = m.from.0 as usize - 1;
        if !self.net.link_up(from, n) {
            return Ok(());
        }
        let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
        let t = life.time(self.now);
        if let MessageBody::InstallSnapshot { .. } = m.body {
            if !life.gc.snapshots {
                return Ok(());
            }
        }
        life.gc.core.step(t, m);
        self.drive(n)
    }

    fn tick(&mut self, n: usize) -> Check {
        let now = self.now;
        let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
        if life.tick_at != now {
            return Ok(());
        }
        life.tick_at = u64::MAX;
        let t = life.time(now);
        if life.gc.core.next_deadline() <= t {
            life.gc.core.tick(t);
        }
        life.gc.expire_reads(t);
        self.drive(n)
    }

    /// The log-append stage: an event either takes the queued jobs as a
    /// batch (as the thread drains its ring) and starts writing it, or
    /// finishes the batch in flight after the disk's latency, when its
    /// writes and fsyncs run; jobs queued meanwhile wait for the next batch.
    fn append_run(&mut self, n: usize) -> Check {
        let now = self.now;
        let inc = self.procs[n].inc;
        let slow = now < self.procs[n].slow_until;
        let (lo, hi) = if slow {
            // A stalled disk: a write may take seconds.
            (self.k.slow_disk_min_us, self.k.slow_disk_max_us * 10)
        } else {
            (self.k.disk_delay_min_us, self.k.disk_delay_max_us + 1)
        };
        let mut latency = self.rng_disk.range(lo, hi);
        if now < self.procs[n].stall_until {
            // A stalled disk: this write ends when the stall does.
            latency = latency.max(self.procs[n].stall_until - now);
        }
        let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
        life.append_scheduled = false;
        if life.append_batch.is_empty() {
            if life.append_q.is_empty() {
                return Ok(());
            }
            life.append_batch = std::mem::take(&mut life.append_q);
            life.append_scheduled = true;
            self.schedule(now + latency, Ev::Append { n, inc });
            return Ok(());
        }
        let t = life.time(now);
        let mut messages = Vec::new();
        let mut retry = None;
        let mut points = None;
        match life.append.write_batch(&mut life.append_batch) {
            Ok(rel) => {
                if life.append_failing {
                    life.append_failing = false;
                    life.gc.core.on_storage_recovered();
                }
                life.append_retry_us = 10_000;
                // The points reach the core through its intake ring: other
                // inputs may come first (a stale report then finds the log
                // rewritten since). The messages go out at once.
                if !rel.points.is_empty() {
                    points = Some(rel.points);
                }
                messages = rel.messages;
                if !life.append_q.is_empty() {
                    life.append_scheduled = true;
                    self.schedule(now, Ev::Append { n, inc });
                }
            }
            Err(f) => {
                if !life.append_failing {
                    life.append_failing = true;
                    life.gc.core.on_storage_failed(t);
                }
                retry = Some(format!(
                    "n{} append refused ({}: {}); retry in {} µs",
                    n + 1,
                    f.what,
                    f.error,
                    life.append_retry_us
                ));
                life.append_scheduled = true;
                let at = now + life.append_retry_us;
                life.append_retry_us = (life.append_retry_us * 2).min(1_000_000);
                self.schedule(at, Ev::Append { n, inc });
            }
        }
        if let Some(line) = retry {
            self.note(line);
        }
        if let Some(points) = points {
            let at = now + self.rng_disk.range(0, INTAKE_DELAY_MAX_US);
            self.schedule(at, Ev::Persisted { n, inc, points });
        }
        for (_, msgs) in messages {
            for m in msgs {
                self.send(m, 0)?;
            }
        }
        self.drive(n)
    }

    /// The core takes the append stage's persist points.
    fn persisted(&mut self, n: usize, points: Vec<(crate::core::GroupId, crate::core::PersistPoint)>) -> Check {
        let now = self.now;
        let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
        life.time(now);
        for (g, point) in points {
            if let Some(task) = life.gc.on_persisted(g, point) {
                life.fsm_q.push_back(task);
                self.stats.snapshot_installs += 1;
            }
        }
        self.drive(n)
    }

    fn fsm_run(&mut self, n: usize) -> Check {
        let now = self.now;
        let inc = self.procs[n].inc;
        if !self.healing && self.rng_nemesis.chance_ppm(self.nk.crash_in_fsm_ppm) {
            // Aimed at the service's own writes: a crash point inside the
            // checkpoint, snapshot or install this step may run.
            let ops = self.rng_nemesis.range(1, 80);
            self.procs[n].fs.crash_after(ops);
            self.note(format!("n{} will crash at its {ops}th file operation from now (FSM)", n + 1));
        }
        let apply_delay = self.rng_disk.range(0, self.k.apply_delay_max_us.max(1));
        let mut wake = Vec::new();
        {
            let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
            if life.fsm_at != now {
                return Ok(());
            }
            life.fsm_at = u64::MAX;
            life.time(now);
            let poll_due = life.fsm_poll_at.is_some_and(|t| t <= now);
            if poll_due {
                life.fsm_poll_at = None;
            }
            let tasks: Vec<_> = if life.fsm.holding() { Vec::new() } else { life.fsm_q.drain(..).collect() };
            let out = life.fsm.step(tasks, poll_due);
            for (_, i) in out.applied {
                life.gc.on_applied(i);
            }
            for (_, i) in out.snapshots {
                if life.gc.core.on_snapshot_created(i).is_ok() {
                    self.stats.fault(FaultKind::Snapshot);
                }
                drop(life.gc.core.take_compacted());
            }
            if let Some(d) = life.fsm.next_poll() {
                let at = now + d.as_micros() as u64;
                if life.fsm_poll_at.is_none_or(|p| at < p) {
                    life.fsm_poll_at = Some(at);
                }
            }
            let mut next = life.fsm_poll_at.unwrap_or(u64::MAX);
            if !life.fsm_q.is_empty() && !life.fsm.holding() {
                next = next.min(now + apply_delay);
            }
            if next != u64::MAX {
                life.fsm_at = next.max(now + 1);
                wake.push(life.fsm_at);
            }
        }
        for at in wake {
            self.schedule(at, Ev::Fsm { n, inc });
        }
        self.take_applied(n)?;
        self.drive(n)
    }

    fn sender_run(&mut self, n: usize) -> Check {
        let now = self.now;
        let inc = self.procs[n].inc;
        let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
        life.sender_scheduled = false;
        if now < life.sender_busy_until {
            life.sender_scheduled = true;
            let at = life.sender_busy_until;
            self.schedule(at, Ev::Sender { n, inc });
            return Ok(());
        }
        let Some(req) = life.sender_q.pop_front() else { return Ok(()) };
        life.time(now);
        let mono = std::time::Duration::from_micros(now - life.born);
        let out = life.sender.on_request(req, mono);
        let mut again = None;
        if let Some((_, wait)) = &out {
            life.sender_busy_until = now + wait.as_micros() as u64;
        }
        if !life.sender_q.is_empty() {
            life.sender_scheduled = true;
            again = Some(life.sender_busy_until.max(now));
        }
        if let Some(at) = again {
            self.schedule(at, Ev::Sender { n, inc });
        }
        if let Some((m, wait)) = out {
            self.send(m, wait.as_micros() as u64)?;
        }
        Ok(())
    }

    /// Moves what node `n`'s state machine applied into the global record,
    /// checking every entry against the first application of its index.
    fn take_applied(&mut self, n: usize) -> Check {
        let Some(life) = self.procs[n].life.as_ref() else { return Ok(()) };
        let got = std::mem::take(&mut *life.applied.lock());
        for a in got {
            match self.applied.get(&a.index) {
                None => {
                    self.applied_at.insert(a.index, self.now);
                    self.applied.insert(a.index, a);
                }
                Some(first) if *first == a => {}
                Some(first) => {
                    return Err(Violation::new(
                        "replicas-differ",
                        format!("n{} applied entry {} as {a:?}; first applied as {first:?}", n + 1, a.index),
                    ))
                }
            }
        }
        Ok(())
    }

    // ---- clients ----

    fn client_act(&mut self, c: usize) -> Check {
        if self.healing {
            return Ok(());
        }
        let next = self.now + self.rng_client.range(1, 2 * self.nk.client_interval_us);
        self.schedule(next, Ev::ClientAct { c });
        let cl = &self.clients[c];
        if cl.session == 0 {
            if cl.opening.is_none() {
                let op = self.new_op(c, Req::Cmd(Command::OpenSession { ttl_ms: self.nk.session_ttl_ms }), 0, 0);
                self.clients[c].opening = Some(op);
                self.send_op(op);
            }
            return Ok(());
        }
        if cl.inflight.len() >= self.nk.client_inflight_max {
            return Ok(());
        }
        let stream = STREAMS[self.rng_client.index(STREAMS.len())].to_string();
        let session = cl.session;
        let seq = cl.next_seq + 1;
        let roll = self.rng_client.below(100);
        let (req, sessioned) = if roll < 65 {
            let n = self.clients[c].appended + 1;
            self.clients[c].appended = n;
            let value = Bytes::from(format!("c{c}-{n}"));
            (Req::Cmd(Command::Append { stream, session, seq, records: vec![value] }), true)
        } else if roll < 85 {
            let mode = [Consistency::Linearizable, Consistency::Lease, Consistency::Follower][self.rng_client.index(3)];
            let seen = self.clients[c].seen.get(&stream).map_or(0, |s| s.1);
            let from = if seen > 0 { self.rng_client.below(seen) } else { 0 };
            (Req::Read { stream, from, mode }, false)
        } else if roll < 92 {
            let cmd = Command::Create {
                stream,
                retention_bytes: self.nk.retention_bytes,
                retention_age_ms: self.nk.retention_age_ms,
                session,
                seq,
            };
            (Req::Cmd(cmd), true)
        } else if roll < 97 {
            let seen = self.clients[c].seen.get(&stream).map_or(0, |s| s.1);
            let before = self.rng_client.below(seen + 1);
            (Req::Cmd(Command::Trim { stream, before, session, seq }), true)
        } else {
            let inc =
                if self.rng_client.percent(50) { 0 } else { self.clients[c].seen.get(&stream).map_or(0, |s| s.0) };
            (Req::Cmd(Command::Delete { stream, session, seq, incarnation: inc }), true)
        };
        let (s, q) = if sessioned {
            self.clients[c].next_seq = seq;
            (session, seq)
        } else {
            (0, 0)
        };
        let op = self.new_op(c, req, s, q);
        self.clients[c].inflight.push(op);
        self.send_op(op);
        Ok(())
    }

    fn new_op(&mut self, client: usize, req: Req, session: u64, seq: u64) -> usize {
        self.note(format!(
            "client {client} op {} invokes {} (session {session} seq {seq})",
            self.ops.len(),
            req_short(&req)
        ));
        self.ops.push(HOp {
            client,
            req,
            session,
            seq,
            invoked: self.now,
            attempts: 0,
            answers: Vec::new(),
            done: false,
        });
        self.ops.len() - 1
    }

    /// Sends the next attempt of `op` to the node the client believes
    /// leads (or any, for a follower read or without a belief).
    fn send_op(&mut self, op: usize) {
        let c = self.ops[op].client;
        self.ops[op].attempts += 1;
        let attempt = self.ops[op].attempts;
        let follower = matches!(self.ops[op].req, Req::Read { mode: Consistency::Follower, .. });
        let n = match self.clients[c].leader {
            Some(l) if !follower && self.rng_client.percent(90) => l,
            _ => self.rng_client.index(self.nodes()),
        };
        let delay = self.rng_net.range(self.k.net_delay_min_us, self.k.net_delay_max_us + 1);
        self.schedule(self.now + delay, Ev::Request { n, op, attempt });
        self.schedule(self.now + self.nk.client_timeout_us, Ev::Timeout { op, attempt });
    }

    /// Node `n` takes a client's request, as the service's front end does.
    fn request(&mut self, n: usize, op: usize, _attempt: u32) -> Check {
        let now = self.now;
        let wall = self.procs[n].wall_ms(now);
        let outbox = Arc::clone(&self.outbox);
        let req = self.ops[op].req.clone();
        let mut jump = None;
        let Some(life) = self.procs[n].life.as_mut() else { return Ok(()) };
        let t = life.time(now);
        let leader = life.gc.core.role() == Role::Leader;
        let hint = life.gc.core.leader();
        let not_leader = move |outbox: &Outbox| {
            outbox.lock().push((op, Reply::NotProposed(hint.is_some().then_some(hint.0))));
        };
        match req {
            Req::Cmd(command) => {
                if !leader {
                    not_leader(&outbox);
                    return Ok(());
                }
                let seen = life.seen.get();
                let watch = &life.gc.watch;
                let term = watch.term();
                let caught_up = || watch.caught_up();
                let Some(stamp) = life.log_clock.stamp_as_leader(term, wall, life.seen.now(), seen, caught_up) else {
                    // As the front end: Busy, nothing proposed.
                    outbox.lock().push((op, Reply::NotProposed(Some(life.id().0))));
                    return Ok(());
                };
                if stamp > seen.0 + 5_000 {
                    jump = Some(format!(
                        "n{} stamps log time {stamp}, {} ms past the {} it applied (wall clock {wall})",
                        n + 1,
                        stamp - seen.0,
                        seen.0
                    ));
                }
                let data = Stamped { time_ms: stamp, command }
                    .encode()
                    .map_err(|e| Violation::new("client", format!("a simulated command does not encode: {e}")))?;
                match life.gc.core.propose_batch(std::iter::once(data)) {
                    Ok((first, _)) => {
                        let term = life.gc.core.term();
                        let o = Arc::clone(&outbox);
                        let done = Callback::new(move |r: Result<Bytes, NodeError>| {
                            let reply = match r {
                                Ok(out) => Reply::of_outcome(&out),
                                Err(NodeError::Dropped) => Reply::NotProposed(None),
                                Err(_) => Reply::Unknown,
                            };
                            o.lock().push((op, reply));
                        });
                        life.fsm_q.push_back(crate::pipeline::FsmTask::Register {
                            group: GROUP,
                            term,
                            first,
                            done: vec![done],
                        });
                    }
                    Err(_) => not_leader(&outbox),
                }
            }
            Req::Read { stream, from, mode } => {
                let mode = match mode {
                    Consistency::Linearizable | Consistency::Lease if !leader => {
                        not_leader(&outbox);
                        return Ok(());
                    }
                    Consistency::Linearizable | Consistency::Follower => ReadMode::ReadIndex,
                    Consistency::Lease => ReadMode::Lease,
                };
                let state = Arc::clone(&life.state);
                let o = Arc::clone(&outbox);
                let done = Callback::new(move |r: Result<LogIndex, NodeError>| {
                    let reply = match r {
                        Ok(_) => {
                            let st = state.lock();
                            let inc = st.streams.get(&stream).map_or(0, |s| s.id);
                            match st.read(&stream, from, 1 << 20, 1 << 30) {
                                Ok(recs) => Reply::Read {
                                    inc,
                                    from: recs.first_offset,
                                    next: recs.next_offset,
                                    values: recs.records,
                                },
                                Err((code, _)) => Reply::Refused(code),
                            }
                        }
                        Err(_) => Reply::ReadFailed,
                    };
                    o.lock().push((op, reply));
                });
                let id = ReadId(life.next_read);
                life.next_read += 1;
                life.gc.read(t, id, mode, done);
            }
        }
        if let Some(line) = jump {
            self.note(line);
        }
        self.drive(n)
    }

    /// Sends the nodes' answers on their way to the clients.
    fn flush_outbox(&mut self) {
        let out = std::mem::take(&mut *self.outbox.lock());
        for (op, reply) in out {
            let delay = self.rng_net.range(self.k.net_delay_min_us, self.k.net_delay_max_us + 1);
            self.schedule(self.now + delay, Ev::Answer { op, reply });
        }
    }

    fn on_answer(&mut self, op: usize, reply: Reply) -> Check {
        let c = self.ops[op].client;
        let now = self.now;
        self.note(format!("client {c} op {op} answered {}", short(&reply)));
        self.ops[op].answers.push((now, reply.clone()));
        if self.ops[op].done {
            return Ok(());
        }
        let retry = match &reply {
            Reply::NotProposed(hint) => {
                self.clients[c].leader = hint.map(|l| l as usize - 1);
                true
            }
            Reply::Unknown | Reply::ReadFailed => self.ops[op].session != 0 || self.is_read(op),
            Reply::Refused(ErrorCode::SessionExpired) => {
                self.clients[c].session = 0;
                false
            }
            _ => false,
        };
        if let Reply::Ok(a, b) = reply {
            self.learn(op, a, b);
        }
        if let Reply::Read { inc, next, .. } = &reply {
            if let Req::Read { stream, .. } = &self.ops[op].req {
                self.clients[c].seen.insert(stream.clone(), (*inc, *next));
            }
        }
        if retry && self.ops[op].attempts < 4 && !self.healing {
            self.send_op(op);
        } else {
            self.finish(op);
        }
        Ok(())
    }

    fn is_read(&self, op: usize) -> bool {
        matches!(self.ops[op].req, Req::Read { .. })
    }

    /// What a successful answer teaches the client.
    fn learn(&mut self, op: usize, a: u64, _b: u64) {
        let c = self.ops[op].client;
        match &self.ops[op].req {
            Req::Cmd(Command::OpenSession { .. }) => {
                self.clients[c].session = a;
                self.clients[c].next_seq = 0;
            }
            Req::Cmd(Command::Append { stream, .. }) => {
                let e = self.clients[c].seen.entry(stream.clone()).or_insert((0, 0));
                e.1 = e.1.max(a + 1);
            }
            Req::Cmd(Command::Create { stream, .. }) => {
                self.clients[c].seen.insert(stream.clone(), (a, 0));
            }
            _ => {}
        }
    }

    fn on_timeout(&mut self, op: usize, attempt: u32) -> Check {
        if self.ops[op].done || self.ops[op].attempts != attempt {
            return Ok(());
        }
        self.clients[self.ops[op].client].leader = None;
        if (self.ops[op].session != 0 || self.is_read(op)) && attempt < 4 && !self.healing {
            self.send_op(op);
        } else {
            self.finish(op);
        }
        Ok(())
    }

    fn finish(&mut self, op: usize) {
        self.ops[op].done = true;
        let c = self.ops[op].client;
        self.clients[c].inflight.retain(|o| *o != op);
        if self.clients[c].opening == Some(op) {
            self.clients[c].opening = None;
        }
    }

    // ---- the nemesis ----

    fn nemesis(&mut self) -> Check {
        if self.healing {
            return Ok(());
        }
        let next = self.now + self.rng_nemesis.range(1, 2 * self.k.nemesis_interval_us);
        self.schedule(next, Ev::Nemesis);
        if self.drill != Drill::Idle {
            // The drill's partitions stand until it is over.
            return Ok(());
        }
        let w = self.nk.weights;
        match self.rng_nemesis.weighted(&w) {
            0 => {
                let side = self.rng_nemesis.range(1, (1 << self.nodes()) - 1);
                self.net.split(side);
                self.stats.fault(FaultKind::Partition);
                let g = self.net.generation;
                let d = self.rng_nemesis.range(10_000, self.k.fault_duration_max_us);
                self.schedule(self.now + d, Ev::NetHeal { generation: g });
                self.note(format!("partition {side:b}"));
            }
            1 => {
                self.net.heal();
                self.note("heal".into());
            }
            2 => {
                // A minority down at most (one of three, two of five).
                let down = self.procs.iter().filter(|p| !p.up()).count();
                if down >= (self.nodes() - 1) / 2 {
                    return Ok(());
                }
                let n = self.rng_nemesis.index(self.nodes());
                if self.rng_nemesis.percent(self.nk.crash_mid_op_percent) {
                    let most = if self.rng_nemesis.percent(50) { 30 } else { 400 };
                    let ops = self.rng_nemesis.range(1, most);
                    self.procs[n].fs.crash_after(ops);
                    self.note(format!("n{} will crash at its {ops}th file operation from now", n + 1));
                } else {
                    self.note(format!("n{} crashes", n + 1));
                    self.power_off(n)?;
                }
            }
            3 => {
                let n = self.rng_nemesis.index(self.nodes());
                let p = &mut self.procs[n];
                let room = self.rng_nemesis.range(0, 64 << 10);
                p.fs.set_budget(p.fs.used() + room);
                let until = self.now + self.rng_nemesis.range(10_000, self.k.fault_duration_max_us);
                p.full_until = until;
                self.schedule(until, Ev::DiskRoom { n, until });
                self.note(format!("n{} disk full ({room} bytes left)", n + 1));
            }
            8 => self.drill_start(),
            7 => {
                let n = self.rng_nemesis.index(self.nodes());
                let until = self.now + self.rng_nemesis.range(10_000, self.k.fault_duration_max_us);
                self.procs[n].slow_until = until;
                self.stats.fault(FaultKind::SlowDisk);
                self.note(format!("n{} disk slow until {until}", n + 1));
            }
            5 => {
                // A failing disk for a while: many syncs fail (each one
                // fails the node stop). Often the node furthest behind: the
                // one most likely receiving a snapshot.
                let behind = (0..self.nodes())
                    .filter_map(|i| self.procs[i].life.as_ref().map(|l| (l.gc.core.commit_index(), i)))
                    .min()
                    .map(|(_, i)| i);
                let n = match behind {
                    Some(i) if self.rng_nemesis.percent(50) => i,
                    _ => self.rng_nemesis.index(self.nodes()),
                };
                self.failing_disk(n, 20_000, 300_000, self.k.fault_duration_max_us);
            }
            4 => {
                let n = self.rng_nemesis.index(self.nodes());
                let ms = self.rng_nemesis.range(100, 120_000) as i64;
                let step = if self.rng_nemesis.percent(50) { ms } else { -ms };
                self.procs[n].wall_offset_ms += step;
                self.nc.clock_step += 1;
                self.note(format!("n{} wall clock steps {step} ms", n + 1));
            }
            _ => {
                let leader = (0..self.nodes())
                    .find(|&i| self.procs[i].life.as_ref().is_some_and(|l| l.gc.core.role() == Role::Leader));
                if let Some(l) = leader {
                    let target = crate::core::NodeId(self.rng_nemesis.range(1, self.nodes() as u64 + 1));
                    let now = self.now;
                    let ok = self.procs[l].life.as_mut().is_some_and(|life| {
                        let t = life.time(now);
                        life.gc.core.transfer_leader(t, target).is_ok()
                    });
                    if ok {
                        self.stats.fault(FaultKind::Transfer);
                        self.note(format!("n{} transfers leadership to {target}", l + 1));
                        return self.on_node(l, Self::drive);
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts the ABA drill ([`Drill`]) with five voters all up.
    fn drill_start(&mut self) {
        if self.nodes() < 5 || self.drill != Drill::Idle || self.procs.iter().any(|p| !p.up()) {
            return;
        }
        let leading = |p: &Proc| p.life.as_ref().is_some_and(|l| l.gc.core.role() == Role::Leader);
        let Some(l) = self.procs.iter().position(leading) else { return };
        let f = (l + 1 + self.rng_nemesis.index(self.nodes() - 1)) % self.nodes();
        let span = 40 * self.k.election_max_ms * 1000;
        self.procs[f].stall_until = self.now + span;
        // The writes after the stalled one are slow too: the rewrites the
        // drill brings are still in flight when the stalled write reports.
        self.procs[f].slow_until = self.now + 2 * span;
        self.net.split((1 << l) | (1 << f));
        self.drill = Drill::WaitX { l, f };
        self.schedule(self.now + span, Ev::DrillEnd);
        self.note(format!("drill: n{} stalls with leader n{}, cut off with it", f + 1, l + 1));
    }

    /// A node began leading: the drill's next move, if it waits for one.
    fn drill_on_leader(&mut self, n: usize) {
        match self.drill {
            Drill::WaitX { l, f } if n != l && n != f => {
                self.net.split((1 << n) | (1 << f));
                self.drill = Drill::WaitL { l };
                self.note(format!("drill: n{} leads; cut off with n{} alone", n + 1, f + 1));
            }
            Drill::WaitL { l } if n == l => {
                self.net.heal();
                self.drill = Drill::Idle;
                self.note(format!("drill: n{} leads again; network healed", l + 1));
            }
            _ => {}
        }
    }

    /// Node `n`'s disk fails many of its syncs (`ppm_min..ppm_max` in a
    /// million) for up to `for_max_us`.
    fn failing_disk(&mut self, n: usize, ppm_min: u64, ppm_max: u64, for_max_us: u64) {
        let ppm = self.rng_nemesis.range(ppm_min, ppm_max) as u32;
        self.procs[n].fs.set_fsync_fail_ppm(ppm);
        let until = self.now + self.rng_nemesis.range(1_000, for_max_us);
        self.procs[n].eio_until = until;
        self.schedule(until, Ev::DiskHealthy { n, until });
        self.note(format!("n{} disk fails {ppm} syncs in a million", n + 1));
    }

    // ---- heal and the end ----

    fn begin_heal(&mut self) -> Check {
        self.healing = true;
        self.drill = Drill::Idle;
        self.net.heal();
        self.net.perfect = true;
        self.note("heal phase".into());
        for n in 0..self.nodes() {
            let p = &mut self.procs[n];
            p.fs.set_fsync_fail_ppm(0);
            p.fs.fail_sync_after(None);
            p.eio_until = 0;
            p.fs.no_crash_point();
            p.fs.set_budget(u64::MAX);
            p.full_until = 0;
            p.slow_until = 0;
            p.stall_until = 0;
            if !p.up() {
                self.restart(n)?;
            }
        }
        Ok(())
    }

    fn converged(&self) -> bool {
        let Some(leader) = self.procs.iter().filter_map(|p| p.life.as_ref()).find(|l| l.gc.core.role() == Role::Leader)
        else {
            return false;
        };
        let last = leader.gc.core.last_index();
        if leader.gc.core.commit_index() != last {
            return false;
        }
        self.procs.iter().all(|p| {
            p.life.as_ref().is_some_and(|l| {
                l.gc.core.commit_index() == last
                    && l.gc.core.applied_index() == last
                    && l.append_q.is_empty()
                    && l.append_batch.is_empty()
                    && l.fsm_q.is_empty()
                    && !l.fsm.holding()
            })
        }) && self.ops.iter().all(|o| o.done)
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            match &p.life {
                None => s.push_str(&format!("n{} down; ", p.id)),
                Some(l) => s.push_str(&format!(
                    "n{} {:?} term {} commit {} applied {} last {} append_q {} fsm_q {} holding {}; ",
                    p.id,
                    l.gc.core.role(),
                    l.gc.core.term(),
                    l.gc.core.commit_index(),
                    l.gc.core.applied_index(),
                    l.gc.core.last_index(),
                    l.append_q.len(),
                    l.fsm_q.len(),
                    l.fsm.holding()
                )),
            }
        }
        for p in &self.procs {
            let Some(l) = p.life.as_ref().filter(|l| l.gc.core.role() == Role::Leader) else { continue };
            for peer in l.gc.core.membership().members() {
                if let Some(pr) = l.gc.core.progress(peer) {
                    s.push_str(&format!("n{} sees n{peer}: {pr:?}; ", p.id));
                }
            }
            s.push_str(&format!("n{} snapshot {:?}; ", p.id, l.gc.core.snapshot_meta().last_index));
        }
        let open = self.ops.iter().filter(|o| !o.done).count();
        s.push_str(&format!("client ops open {open}"));
        s
    }

    fn final_check(&mut self) -> Check {
        let mut dumps: Vec<BTreeMap<String, FinalStream>> = Vec::new();
        for n in 0..self.nodes() {
            self.take_applied(n)?;
            let Some(life) = self.procs[n].life.as_ref() else {
                return Err(Violation::new("liveness", format!("n{} down at the end", n + 1)));
            };
            let st = life.state.lock();
            let mut d = BTreeMap::new();
            for (name, s) in st.streams.iter() {
                let recs = if s.next > s.first {
                    st.read(name, s.first, usize::MAX, usize::MAX)
                        .map_err(|(c, m)| Violation::new("final-read", format!("n{} {name}: {c:?} {m}", n + 1)))?
                        .records
                } else {
                    Vec::new()
                };
                d.insert(name.clone(), FinalStream { inc: s.id, first: s.first, next: s.next, values: recs });
            }
            dumps.push(d);
        }
        for n in 1..self.nodes() {
            if dumps[n] != dumps[0] {
                return Err(Violation::new(
                    "replicas-differ",
                    format!("n{}'s streams differ from n1's after heal: {:?} vs {:?}", n + 1, dumps[n], dumps[0]),
                ));
            }
        }
        let ctx = clients::Context {
            applied: &self.applied,
            applied_at: &self.applied_at,
            finals: &dumps[0],
            leaders_at: self.leaders.values().map(|(_, at)| *at).collect(),
            session_ttl_ms: self.nk.session_ttl_ms,
            retention_age_ms: self.nk.retention_age_ms,
            retention_bytes: self.nk.retention_bytes,
        };
        let bad = clients::check(&self.ops, &ctx);
        self.nc.history_anomalies = bad.len() as u64;
        if let Some(first) = bad.first() {
            return Err(Violation::new("history", format!("{} anomalies; first: {first}", bad.len())));
        }
        Ok(())
    }
}

fn short(r: &Reply) -> String {
    match r {
        Reply::Read { inc, from, next, values } => format!("read inc {inc} {from}..{next} ({} records)", values.len()),
        other => format!("{other:?}"),
    }
}

fn req_short(r: &Req) -> String {
    match r {
        Req::Cmd(Command::Append { stream, records, .. }) => format!("append {stream} {:?}", records.first()),
        Req::Cmd(c) => format!("{c:?}"),
        Req::Read { stream, from, mode } => format!("read {stream} from {from} {mode:?}"),
    }
}

/// Runs one seed of the node simulator; `mutant` names a deliberate bug
/// (a core one is switched on here; a storage or service one must also be
/// switched on in the environment: `RINGRAFT_FS_MUTANT`, which
/// `ringraft-sim --node --mutant` sets).
pub fn run_node_seed(seed: u64, steps: u64, mutant: Option<&str>, print_trace: bool) -> Outcome {
    NodeWorld::new(seed, steps, mutant, print_trace).run()
}
