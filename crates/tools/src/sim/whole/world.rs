//! The node simulator's world: three whole nodes, the network between them,
//! clients, and a nemesis, driven by one event queue from one seed.
//!
//! Every event touches at most one node; the node's layers run as the
//! production threads run them, each as its step function: the core thread
//! ([`GroupCore::carry_out`](ringraft::pipeline::GroupCore)), the log-append
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

use parking_lot::Mutex;

use ringraft::core::{LogIndex, LogOp, Message, MessageBody, ReadId, ReadMode, Role, Time};
use ringraft::fs::sim::is_sim_crash;
use ringraft::node::NodeError;
use ringraft::pipeline::completion::Callback;
use ringraft::rpc::ErrorCode;
use ringraft_service::command::{Command, Stamped};

use super::super::checker::Violation;
use super::super::knobs::{Knobs, GROUP};
use super::super::network::Network;
use super::super::outcome::Outcome;
use super::super::panics::{in_step, take_panic_location};
use super::super::queue::{EventQueue, Timed};
use super::super::rng::{fnv1a, fold, Rng};
use super::super::stats::{FaultKind, NodeCounters, Stats};
use super::clients::{self, Client, Consistency, FinalStream, HOp, Reply, Req, STREAMS};
use super::knobs::NodeKnobs;
use super::proc::{Applied, Proc};

mod actors;

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
    Persisted { n: usize, inc: u64, points: Vec<(ringraft::core::GroupId, ringraft::core::PersistPoint)> },
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
        let procs = (1..=nodes as u64).map(|i| Proc::new(ringraft::core::NodeId(i), seed, &nk)).collect();
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
    fn persisted(&mut self, n: usize, points: Vec<(ringraft::core::GroupId, ringraft::core::PersistPoint)>) -> Check {
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
