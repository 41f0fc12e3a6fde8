//! The core thread: every group's [`RaftCore`] of this node lives here. It
//! drains the intake ring as one batch, feeds each input to its core
//! (proposals of one group in the batch become one `propose_batch`), ticks
//! the cores whose deadline passed, then carries out each core's `Ready`:
//!
//! * hard state + log ops + persisted messages → one job on the append ring;
//! * messages → the peer's replicator (or inline, see replicator.rs), before
//!   the local fsync — the leader's parallel append;
//! * proposal callbacks, committed entries and confirmed reads → the FSM
//!   caller's ring, in that order;
//! * the earliest deadline of all cores → one wheel-timer timeout that
//!   publishes `Tick`.
//!
//! The thread never blocks on another stage: when the append or FSM ring is
//! full it keeps the task in a local backlog and retries after its next
//! batch, and at least every millisecond while the backlog lasts (a stage
//! does not always publish when it makes room). Inputs meanwhile still
//! arrive; proposals are refused with `Busy` once the backlog holds
//! `BACKLOG_MAX` tasks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use parking_lot::Mutex;

use super::append::AppendJob;
use super::completion::Callback;
use super::contract::{GroupStatus, PeerStatus};
use super::error::NodeError;
use super::fsm::FsmTask;
use super::input::Input;
use super::replicator::Replicators;
use super::ring::{Recv, RingReceiver, RingSender, SendError};
use super::snapshot_sender::SnapshotSender;
use crate::core::{GroupId, LogIndex, Message, NodeId, RaftCore, ReadId, ReadMode, Ready, SnapshotMeta, Time};
use crate::storage::Reaper;
use crate::timer::{HashedWheelTimer, TimerHandle};

/// Most `take_ready` rounds per group per batch.
const READY_ROUNDS_MAX: usize = 8;
/// Tasks the core keeps aside while a stage ring is full before it refuses
/// proposals.
const BACKLOG_MAX: usize = 1024;
/// FSM tasks kept aside before the cores stop handing out committed entries
/// (`RaftCore::set_apply_paused`): a follower, which never refuses the
/// leader's entries, keeps its backlog bounded this way.
const FSM_BACKLOG_PAUSE: usize = 256;

/// The monotonic clock the cores see (microseconds since the node started).
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { epoch: Instant::now() }
    }

    pub fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_micros() as u64)
    }

    pub fn instant_of(&self, t: Time) -> Instant {
        self.epoch + Duration::from_micros(t.0)
    }
}

/// One group on the core thread.
pub struct GroupCore {
    /// The group's sans-IO Raft core.
    pub core: RaftCore,
    /// The role and leader as other threads see them.
    pub watch: Arc<super::watch::RoleWatch>,
    /// Reads waiting for the core to confirm them, with when they were asked.
    reads: HashMap<ReadId, (Time, Callback<crate::core::LogIndex>)>,
    /// The group's state machine can send and take snapshots.
    pub snapshots: bool,
    /// A received snapshot to install once its log reset is durable.
    pending_restore: Option<SnapshotMeta>,
    /// The snapshot index the state file was last given.
    stored_snapshot: LogIndex,
}

/// What one `Ready` of a group asks of the other stages
/// ([`GroupCore::carry_out`]).
#[derive(Default)]
pub struct Carried {
    /// Hard state, log ops, received chunks and persisted messages: one
    /// job for the log-append stage.
    pub append: Option<AppendJob>,
    /// Messages to send now (before the local fsync: the leader's parallel
    /// append).
    pub messages: Vec<Message>,
    /// Snapshot chunks to fill and send (the snapshot sender).
    pub snapshot_sends: Vec<Message>,
    /// Committed entries, then confirmed reads, for the FSM caller.
    pub fsm: Vec<FsmTask>,
}

impl GroupCore {
    /// The core thread's side of a group: its core, the watch other threads
    /// read its role through, and whether its state machine has snapshots.
    pub fn new(core: RaftCore, watch: Arc<super::watch::RoleWatch>, snapshots: bool) -> GroupCore {
        let stored_snapshot = core.snapshot_meta().last_index;
        GroupCore { core, watch, reads: HashMap::new(), snapshots, pending_restore: None, stored_snapshot }
    }

    /// Decides what one `Ready` asks of the stages (see src/core/ready.rs
    /// for the contract); the core thread hands it on, a simulation
    /// carries it out itself. Reads the core failed are answered here.
    pub fn carry_out(&mut self, id: NodeId, group: GroupId, mut rd: Ready) -> Carried {
        if let Some(ss) = rd.soft_state {
            log::info!("node {id} group {group}: {:?} in term {}, leader {}", ss.role, ss.term, ss.leader);
            if ss.role == crate::core::Role::Leader {
                // The leader's no-op is in the log by now: the first entry
                // of its term, or (proposals in the same batch) before it.
                self.watch.set_leadership(ss.term, self.core.last_index());
            }
            self.watch.set(ss.role, ss.leader);
        }
        assert!(
            self.snapshots || (rd.snapshot_chunks.is_empty() && rd.restore_snapshot.is_none()),
            "node {id} group {group}: the core installs a snapshot, but the group has no snapshot store"
        );
        if let Some(meta) = rd.restore_snapshot.take() {
            self.pending_restore = Some(meta);
        }
        let mut out = Carried { snapshot_sends: std::mem::take(&mut rd.snapshot_sends), ..Carried::default() };
        let reads: Vec<(LogIndex, Callback<LogIndex>)> =
            rd.read_states.iter().filter_map(|r| self.reads.remove(&r.id).map(|(_, d)| (r.index, d))).collect();
        for rid in &rd.failed_reads {
            if let Some((_, done)) = self.reads.remove(rid) {
                log::debug!("node {id} group {group}: read {rid:?} failed (no leader, or leadership lost)");
                done.call(Err(NodeError::ReadFailed));
            }
        }
        // The snapshot meta shares the state file with the hard state: a new
        // snapshot (compaction or install) is stored before the log op that
        // follows it (a purge or a reset) is written.
        let meta = self.core.snapshot_meta();
        let hard_state = match rd.hard_state {
            Some(hs) => Some((hs, meta.clone())),
            None if meta.last_index != self.stored_snapshot => Some((self.core.hard_state(), meta.clone())),
            None => None,
        };
        self.stored_snapshot = meta.last_index;
        let persist_point = rd.persist_point();
        let log_ops = std::mem::take(&mut rd.log_ops);
        let persisted_messages = std::mem::take(&mut rd.persisted_messages);
        let snapshot_chunks = std::mem::take(&mut rd.snapshot_chunks);
        if hard_state.is_some() || !log_ops.is_empty() || !persisted_messages.is_empty() || !snapshot_chunks.is_empty()
        {
            out.append =
                Some(AppendJob { group, hard_state, log_ops, snapshot_chunks, persisted_messages, persist_point });
        }
        out.messages = std::mem::take(&mut rd.messages);
        if !rd.committed_entries.is_empty() {
            out.fsm.push(FsmTask::Apply { group, entries: std::mem::take(&mut rd.committed_entries) });
        }
        for (index, done) in reads {
            out.fsm.push(FsmTask::Read { group, index, done });
        }
        out
    }

    /// The log-append stage made `point` durable. A received snapshot is
    /// installed once its data and the log reset are durable, before any
    /// entry after it is handed to the FSM caller: the task to hand it, if
    /// that time came. (The core's own persisted mark, not the report's
    /// index: a report of an older term is ignored by the core and must
    /// not trigger the install.)
    pub fn on_persisted(&mut self, group: GroupId, point: crate::core::PersistPoint) -> Option<FsmTask> {
        self.core.on_persisted(point);
        let durable = self.core.persisted_index();
        if self.pending_restore.as_ref().is_some_and(|m| durable >= m.last_index) {
            return self.pending_restore.take().map(|meta| FsmTask::Restore { group, meta });
        }
        None
    }

    /// The FSM caller applied up to `index`.
    pub fn on_applied(&mut self, index: LogIndex) {
        self.core.on_applied(index);
        self.watch.set_applied(index);
    }

    /// Asks the core to confirm a read; `done` is answered by
    /// [`GroupCore::carry_out`] (or [`GroupCore::expire_reads`]).
    pub fn read(&mut self, now: Time, id: ReadId, mode: ReadMode, done: Callback<LogIndex>) {
        self.reads.insert(id, (now, done));
        self.core.read_index(now, id, mode);
    }

    /// Fails reads the core has not confirmed within two maximal election
    /// timeouts: a forwarded read whose request or answer was lost (the
    /// transports may drop) would otherwise wait for ever. The caller
    /// retries.
    pub fn expire_reads(&mut self, now: Time) {
        if self.reads.is_empty() {
            return;
        }
        let limit_us = 2 * 1000 * self.core.config().election_timeout_max_ms;
        let mut expired: Vec<ReadId> =
            self.reads.iter().filter(|(_, (at, _))| now.0.saturating_sub(at.0) > limit_us).map(|(id, _)| *id).collect();
        expired.sort_unstable_by_key(|r| r.0);
        for id in expired {
            if let Some((_, done)) = self.reads.remove(&id) {
                log::debug!(
                    "group {}: read {id:?} unconfirmed after {} ms; failed",
                    self.core.config().group,
                    limit_us / 1000
                );
                done.call(Err(NodeError::ReadFailed));
            }
        }
    }
}

/// Everything the core thread talks to.
pub(crate) struct CoreWiring {
    pub rx: RingReceiver<Input>,
    pub append: RingSender<AppendJob>,
    pub fsm: RingSender<FsmTask>,
    pub replicators: Replicators,
    pub timer: Arc<HashedWheelTimer>,
    /// The timer's sender into the intake ring (shared by its timeouts).
    pub timer_tx: Arc<Mutex<RingSender<Input>>>,
    pub clock: Clock,
    pub killed: Arc<AtomicBool>,
    pub counters: Arc<CoreCounters>,
    /// Fills and sends snapshot chunks (groups with a snapshot store).
    pub snapshot_sender: Option<SnapshotSender>,
}

/// Counters of the core thread, shared with the node's status.
#[derive(Debug, Default)]
pub(crate) struct CoreCounters {
    /// The longest the FSM backlog has been.
    pub fsm_backlog_peak: AtomicU64,
    /// AppendEntries messages sent (as leader, all groups).
    pub appends_sent: AtomicU64,
    /// Entries those messages carried.
    pub entries_sent: AtomicU64,
}

/// The core thread's state.
pub(crate) struct CoreStage {
    id: NodeId,
    groups: HashMap<GroupId, GroupCore>,
    w: CoreWiring,
    append_backlog: VecDeque<AppendJob>,
    fsm_backlog: VecDeque<FsmTask>,
    /// The deadline the wheel timer is armed for, and its handle.
    armed: Option<(Time, TimerHandle)>,
    /// A stage whose ring closed under us (its thread died): the node stops
    /// leading and refuses proposals until restarted.
    failed_stage: Option<&'static str>,
    /// The cores were told to hold committed entries back.
    apply_paused: bool,
    counters: Arc<CoreCounters>,
    next_read: u64,
    /// Frees compacted log prefixes (hundreds of thousands of payloads,
    /// tens of milliseconds) off the core thread.
    dropper: Reaper,
}

impl CoreStage {
    pub fn new(id: NodeId, groups: HashMap<GroupId, GroupCore>, w: CoreWiring) -> CoreStage {
        let counters = Arc::clone(&w.counters);
        CoreStage {
            id,
            groups,
            w,
            append_backlog: VecDeque::new(),
            fsm_backlog: VecDeque::new(),
            armed: None,
            failed_stage: None,
            apply_paused: false,
            counters,
            next_read: 1,
            dropper: Reaper::new(format!("n{id}-drop")),
        }
    }

    /// Runs until `Shutdown` (or every intake sender is gone); then closes
    /// the downstream rings so the stages drain and exit.
    pub fn run(mut self) {
        let mut inputs: Vec<Input> = Vec::with_capacity(4096);
        let mut proposals: HashMap<GroupId, (Vec<Bytes>, Vec<Callback<Bytes>>)> = HashMap::new();
        // Without this a node that receives nothing would never time out
        // into an election (found by the first real 3-process cluster).
        let start = self.w.clock.now();
        self.arm_timer(start);
        loop {
            let retry = (!self.append_backlog.is_empty() || !self.fsm_backlog.is_empty())
                .then(|| Instant::now() + Duration::from_millis(1));
            let closed = matches!(self.w.rx.recv_batch(&mut inputs, retry), Recv::Closed);
            if self.w.killed.load(Ordering::Acquire) {
                // Replicators see the flag and send nothing more.
                self.w.replicators.shutdown();
                return;
            }
            let now = self.w.clock.now();
            let mut stop = closed;
            for input in inputs.drain(..) {
                stop |= self.on_input(now, input, &mut proposals);
            }
            self.propose_all(&mut proposals);
            self.tick_due(now);
            self.drive_all();
            self.flush_backlogs();
            self.pace_apply();
            if stop {
                break;
            }
            self.arm_timer(now);
        }
        self.finish();
    }

    /// Feeds one input; returns whether it asks the thread to stop.
    fn on_input(
        &mut self,
        now: Time,
        input: Input,
        proposals: &mut HashMap<GroupId, (Vec<Bytes>, Vec<Callback<Bytes>>)>,
    ) -> bool {
        match input {
            Input::Propose { group, data, done } => {
                if !self.groups.contains_key(&group) {
                    done.call(Err(NodeError::UnknownGroup(group)));
                } else if let Some(stage) = self.failed_stage {
                    done.call(Err(NodeError::Failed(format!("the {stage} thread died"))));
                } else if self.append_backlog.len() + self.fsm_backlog.len() >= BACKLOG_MAX {
                    done.call(Err(NodeError::Busy));
                } else {
                    let p = proposals.entry(group).or_default();
                    p.0.push(data);
                    p.1.push(done);
                }
            }
            Input::Raft(m) => self.on_message(now, m),
            Input::Tick => {}
            Input::Persisted(points) => {
                for (g, point) in points {
                    if let Some(task) = self.groups.get_mut(&g).and_then(|gc| gc.on_persisted(g, point)) {
                        self.hand_to_fsm(task);
                    }
                }
            }
            Input::SnapshotCreated(g, index) => {
                if let Some(gc) = self.groups.get_mut(&g) {
                    match gc.core.on_snapshot_created(index) {
                        Ok(meta) => {
                            log::info!("node {} group {g}: snapshot at {}; log compacted", self.id, meta.last_index)
                        }
                        Err(e) => log::debug!("node {} group {g}: snapshot at {index} not used: {e}", self.id),
                    }
                    if let Some(dead) = gc.core.take_compacted() {
                        self.dropper.run(move || drop(dead));
                    }
                }
            }
            Input::Applied(points) => {
                for (g, index) in points {
                    if let Some(gc) = self.groups.get_mut(&g) {
                        gc.on_applied(index);
                    }
                }
            }
            Input::ReadIndex { group, mode, done } => self.on_read(now, group, mode, done),
            Input::ChangeMembership { group, change, done } => self.on_change(group, change, done),
            Input::TransferLeader { group, target, done } => match self.groups.get_mut(&group) {
                None => done.call(Err(NodeError::UnknownGroup(group))),
                Some(gc) => done.call(gc.core.transfer_leader(now, target).map_err(NodeError::Transfer)),
            },
            Input::Status { group, done } => match self.groups.get(&group) {
                None => done.call(Err(NodeError::UnknownGroup(group))),
                Some(gc) => done.call(Ok(status_of(&gc.core))),
            },
            Input::StorageFailed(failed) => {
                for gc in self.groups.values_mut() {
                    if failed || self.failed_stage.is_some() {
                        gc.core.on_storage_failed(now);
                    } else {
                        gc.core.on_storage_recovered();
                    }
                }
            }
            Input::Shutdown => return true,
        }
        false
    }

    fn on_message(&mut self, now: Time, m: Message) {
        if let crate::core::MessageBody::InstallSnapshot { .. } = m.body {
            if !self.groups.get(&m.group).is_some_and(|g| g.snapshots) {
                // Taking one would reset the log durably with nowhere to put
                // the data.
                log::warn!(
                    "node {}: dropping an InstallSnapshot from node {} for group {}, whose state machine takes no snapshots",
                    self.id,
                    m.from,
                    m.group
                );
                return;
            }
        }
        if m.to != self.id {
            log::warn!("node {}: dropping a {} for node {} (misrouted)", self.id, m.body.kind(), m.to);
            return;
        }
        match self.groups.get_mut(&m.group) {
            Some(gc) => gc.core.step(now, m),
            None => log::debug!("node {}: dropping a {} for unknown group {}", self.id, m.body.kind(), m.group),
        }
    }

    fn on_read(&mut self, now: Time, group: GroupId, mode: ReadMode, done: Callback<crate::core::LogIndex>) {
        let Some(gc) = self.groups.get_mut(&group) else {
            return done.call(Err(NodeError::UnknownGroup(group)));
        };
        let id = ReadId(self.next_read);
        self.next_read += 1;
        gc.read(now, id, mode, done);
    }

    fn on_change(&mut self, group: GroupId, change: crate::core::ConfChange, done: Callback<crate::core::LogIndex>) {
        let Some(gc) = self.groups.get_mut(&group) else {
            return done.call(Err(NodeError::UnknownGroup(group)));
        };
        match gc.core.propose_conf_change(change) {
            Ok(index) => {
                let term = gc.core.term();
                self.hand_to_fsm(FsmTask::RegisterConf { group, term, index, done });
            }
            Err(e) => done.call(Err(NodeError::from_propose(e))),
        }
    }

    /// Proposes each group's proposals of this batch as one batch.
    fn propose_all(&mut self, proposals: &mut HashMap<GroupId, (Vec<Bytes>, Vec<Callback<Bytes>>)>) {
        for (group, (data, done)) in proposals.drain() {
            let Some(gc) = self.groups.get_mut(&group) else { continue };
            match gc.core.propose_batch(data) {
                Ok((first, _)) => {
                    let term = gc.core.term();
                    self.hand_to_fsm(FsmTask::Register { group, term, first, done });
                }
                Err(e) => {
                    for d in done {
                        d.call(Err(NodeError::from_propose(e)));
                    }
                }
            }
        }
    }

    fn tick_due(&mut self, now: Time) {
        for gc in self.groups.values_mut() {
            if gc.core.next_deadline() <= now {
                gc.core.tick(now);
            }
            gc.expire_reads(now);
        }
    }

    fn drive_all(&mut self) {
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        for g in ids {
            for _ in 0..READY_ROUNDS_MAX {
                let Some(gc) = self.groups.get_mut(&g) else { break };
                if !gc.core.has_ready() {
                    break;
                }
                let rd = gc.core.take_ready();
                self.carry_out(g, rd);
            }
        }
    }

    /// Does what one `Ready` asks (see src/core/ready.rs for the contract):
    /// [`GroupCore::carry_out`] decides, this hands it to the stages.
    fn carry_out(&mut self, group: GroupId, rd: Ready) {
        let Some(gc) = self.groups.get_mut(&group) else { return };
        let c = gc.carry_out(self.id, group, rd);
        for m in c.snapshot_sends {
            match &self.w.snapshot_sender {
                Some(s) => s.send(m),
                None => log::warn!("node {} group {group}: node {} needs a snapshot; none can be sent", self.id, m.to),
            }
        }
        if let Some(job) = c.append {
            self.hand_to_append(job);
        }
        self.send(c.messages);
        for task in c.fsm {
            self.hand_to_fsm(task);
        }
    }

    /// Groups messages by destination and hands them to the replicators.
    fn send(&mut self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let mut by_peer: Vec<(crate::core::NodeId, Vec<Message>)> = Vec::new();
        let (mut appends, mut entries) = (0u64, 0u64);
        for m in msgs {
            if let crate::core::MessageBody::AppendEntries { entries: e, .. } = &m.body {
                appends += 1;
                entries += e.len() as u64;
            }
            match by_peer.iter_mut().find(|(to, _)| *to == m.to) {
                Some((_, v)) => v.push(m),
                None => by_peer.push((m.to, vec![m])),
            }
        }
        if appends > 0 {
            self.counters.appends_sent.fetch_add(appends, Ordering::Relaxed);
            self.counters.entries_sent.fetch_add(entries, Ordering::Relaxed);
        }
        for (to, v) in by_peer {
            self.w.replicators.send(to, v);
        }
    }

    fn hand_to_append(&mut self, job: AppendJob) {
        if !hand_off(&mut self.w.append, &mut self.append_backlog, job) {
            self.on_stage_failed("log-append");
        }
    }

    fn hand_to_fsm(&mut self, task: FsmTask) {
        if !hand_off(&mut self.w.fsm, &mut self.fsm_backlog, task) {
            self.on_stage_failed("FSM caller");
        }
    }

    /// A stage's ring closed while the core runs: its thread died. Nothing
    /// this node writes or applies can be trusted to happen any more, so every
    /// group steps down for good and proposals are refused.
    fn on_stage_failed(&mut self, stage: &'static str) {
        if self.failed_stage.is_some() {
            return;
        }
        log::error!("node {}: the {stage} thread died; stepping down in every group, restart the node", self.id);
        self.failed_stage = Some(stage);
        let now = self.w.clock.now();
        for gc in self.groups.values_mut() {
            gc.core.on_storage_failed(now);
        }
    }

    /// Moves backlogged tasks into their rings, in order, while room lasts.
    fn flush_backlogs(&mut self) {
        flush(&mut self.w.append, &mut self.append_backlog);
        flush(&mut self.w.fsm, &mut self.fsm_backlog);
    }

    /// Pauses handing out committed entries while the FSM backlog is long,
    /// resumes (and hands them out) once it drained.
    fn pace_apply(&mut self) {
        let paused = self.fsm_backlog.len() >= FSM_BACKLOG_PAUSE;
        if paused != self.apply_paused {
            self.apply_paused = paused;
            for gc in self.groups.values_mut() {
                gc.core.set_apply_paused(paused);
            }
            if !paused {
                self.drive_all();
            }
        }
        self.counters.fsm_backlog_peak.fetch_max(self.fsm_backlog.len() as u64, Ordering::Relaxed);
    }

    /// Keeps one wheel-timer timeout armed at the earliest core deadline.
    fn arm_timer(&mut self, now: Time) {
        if self.armed.as_ref().is_some_and(|(at, _)| *at <= now) {
            // Fired (or about to): its Tick may have found the ring full.
            self.armed = None;
        }
        let next = self.groups.values().map(|g| g.core.next_deadline()).min().unwrap_or(Time::NEVER);
        if next == Time::NEVER || self.armed.as_ref().is_some_and(|(at, _)| *at <= next) {
            return;
        }
        if let Some((_, h)) = self.armed.take() {
            h.cancel();
        }
        let tx = Arc::clone(&self.w.timer_tx);
        let handle = self.w.timer.schedule_at(self.w.clock.instant_of(next), move || {
            // A full ring means the core is busy and will look at its
            // deadlines after this batch anyway.
            let _ = tx.lock().try_send(Input::Tick);
        });
        self.armed = Some((next, handle));
    }

    /// Drains what is left into the stages and closes their rings.
    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut late = Vec::new();
        while (!self.append_backlog.is_empty() || !self.fsm_backlog.is_empty()) && Instant::now() < deadline {
            self.flush_backlogs();
            // Keep the intake moving so a stage publishing into it never
            // waits on us.
            self.w.rx.try_recv_batch(&mut late);
            late.clear(); // dropped callbacks answer `ShuttingDown`
            std::thread::park_timeout(Duration::from_micros(200));
        }
        self.w.rx.try_recv_batch(&mut late);
        late.clear(); // dropped callbacks answer `ShuttingDown`
        if let Some((_, h)) = self.armed.take() {
            h.cancel();
        }
        for gc in self.groups.values_mut() {
            for (_, (_, done)) in gc.reads.drain() {
                done.call(Err(NodeError::ShuttingDown));
            }
        }
        self.w.replicators.shutdown();
        log::debug!("node {}: core thread exiting", self.id);
    }
}

/// Publishes `item` into a stage's ring, or queues it behind the backlog
/// (order is kept: nothing overtakes a backlogged task). False when the
/// stage is gone.
fn hand_off<T: Send>(tx: &mut RingSender<T>, backlog: &mut VecDeque<T>, item: T) -> bool {
    if !backlog.is_empty() {
        backlog.push_back(item);
        return true;
    }
    match tx.try_send(item) {
        Ok(()) => true,
        Err(SendError::Full(item)) => {
            backlog.push_back(item);
            true
        }
        Err(SendError::Closed(_)) => false,
    }
}

/// Moves a backlog into its ring, in order, while room lasts.
fn flush<T: Send>(tx: &mut RingSender<T>, backlog: &mut VecDeque<T>) {
    while let Some(item) = backlog.pop_front() {
        if let Err(SendError::Full(item)) = tx.try_send(item) {
            backlog.push_front(item);
            break;
        }
    }
}

/// What `Node::status` reports of one core.
fn status_of(core: &RaftCore) -> GroupStatus {
    let peers = core
        .membership()
        .members()
        .into_iter()
        .filter(|p| *p != core.id())
        .map(|p| {
            let pr = core.progress(p);
            PeerStatus { node: p, matched: pr.map(|x| x.matched), next: pr.map(|x| x.next) }
        })
        .collect();
    GroupStatus {
        group: core.config().group,
        node: core.id(),
        role: core.role(),
        term: core.term(),
        leader: core.leader().is_some().then_some(core.leader()),
        commit_index: core.commit_index(),
        applied_index: core.applied_index(),
        persisted_index: core.persisted_index(),
        last_index: core.last_index(),
        membership: core.membership().clone(),
        snapshot: core.snapshot_meta().clone(),
        peers,
    }
}
