//! A running [`Node`]: its stage threads and counters, and the
//! [`NodeHandle`] callers propose, read and change membership through.
//! [`Node::start`] is in `start.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::core::{ConfChange, GroupId, LogIndex, NodeId, ReadMode};
use crate::pipeline::completion::{Callback, Oneshot};
use crate::pipeline::ring::{RingSender, SendError};
use crate::pipeline::transport::Inbound;
use crate::pipeline::{AppendCounters, CoreCounters, ReplicatorCounters};
use crate::pipeline::{GroupStatus, Input, NodeError, RoleWatch};
use crate::timer::HashedWheelTimer;

/// Counters of a node's stages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Write batches of the append stage (each one `fdatasync`).
    pub fsync_batches: u64,
    /// Entries those batches wrote.
    pub entries_written: u64,
    /// Message batches the core sent inline (replicator idle).
    pub sends_inline: u64,
    /// Message batches handed to replicator threads.
    pub sends_handed_off: u64,
    /// Message batches dropped because a replicator ring was full.
    pub sends_dropped: u64,
    /// The longest the core's FSM backlog has been (tasks waiting for a
    /// full FSM ring; committed entries are held back past 256).
    pub fsm_backlog_peak: u64,
    /// AppendEntries messages this node sent as a leader.
    pub appends_sent: u64,
    /// Entries those messages carried (÷ `appends_sent`: the batching of
    /// replication).
    pub entries_sent: u64,
    /// The log's disk refuses writes for lack of space now (the append
    /// stage retries; cleared by its next successful write).
    pub log_disk_full: bool,
}

/// Reads a node's counters from any thread ([`Node::stats_source`]).
#[derive(Clone)]
pub struct StatsSource {
    append: Arc<AppendCounters>,
    replicator: Arc<ReplicatorCounters>,
    core: Arc<CoreCounters>,
}

impl StatsSource {
    /// The counters now.
    pub fn get(&self) -> NodeStats {
        let a = &self.append;
        let r = &self.replicator;
        NodeStats {
            fsync_batches: a.fsync_batches.load(Ordering::Relaxed),
            log_disk_full: a.disk_full.load(Ordering::Relaxed),
            entries_written: a.entries.load(Ordering::Relaxed),
            sends_inline: r.inline_batches.load(Ordering::Relaxed),
            sends_handed_off: r.handed_off.load(Ordering::Relaxed),
            sends_dropped: r.dropped.load(Ordering::Relaxed),
            fsm_backlog_peak: self.core.fsm_backlog_peak.load(Ordering::Relaxed),
            appends_sent: self.core.appends_sent.load(Ordering::Relaxed),
            entries_sent: self.core.entries_sent.load(Ordering::Relaxed),
        }
    }
}

/// A running node. Dropping it shuts it down gracefully.
pub struct Node {
    pub(super) id: NodeId,
    pub(super) handle: Mutex<NodeHandle>,
    pub(super) inbound: Inbound,
    pub(super) threads: Vec<JoinHandle<()>>,
    pub(super) timer: Arc<HashedWheelTimer>,
    pub(super) killed: Arc<AtomicBool>,
    pub(super) append_counters: Arc<AppendCounters>,
    pub(super) replicator_counters: Arc<ReplicatorCounters>,
    pub(super) core_counters: Arc<CoreCounters>,
    pub(super) watches: hashbrown::HashMap<GroupId, Arc<RoleWatch>>,
    pub(super) stopped: bool,
}

/// A handle for calling a node from one thread. Clone it for each thread
/// that proposes: every clone publishes into the intake ring through its
/// own producer, so callers never contend on a lock.
#[derive(Clone)]
pub struct NodeHandle {
    pub(super) tx: RingSender<Input>,
    pub(super) closing: Arc<AtomicBool>,
}

impl Node {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// A handle through which a transport delivers peers' messages.
    pub fn inbound(&self) -> Inbound {
        self.inbound.clone()
    }

    /// The role and leader of `group` on this node, readable from any
    /// thread (a routing hint; `None` for a group the node does not run).
    pub fn role_watch(&self, group: GroupId) -> Option<Arc<RoleWatch>> {
        self.watches.get(&group).cloned()
    }

    /// A handle for calling the node (clone one per thread).
    pub fn handle(&self) -> NodeHandle {
        self.handle.lock().clone()
    }

    /// Counters of the stages.
    pub fn stats(&self) -> NodeStats {
        self.stats_source().get()
    }

    /// A clonable reader of [`Node::stats`] for other threads.
    pub fn stats_source(&self) -> StatsSource {
        StatsSource {
            append: Arc::clone(&self.append_counters),
            replicator: Arc::clone(&self.replicator_counters),
            core: Arc::clone(&self.core_counters),
        }
    }

    /// Stops gracefully: new calls are refused with
    /// [`NodeError::ShuttingDown`], the core hands everything it holds to
    /// the stages, the log-append stage writes and fsyncs what it has, the
    /// FSM caller applies what was committed (failing callbacks that can no
    /// longer complete), and every thread is joined.
    pub fn shutdown(mut self) {
        self.stop(false);
    }

    /// Stops abruptly, as a crash would: the core and the log-append
    /// thread exit at their next step without writing or fsyncing anything
    /// more (written but unsynced data stays in the page cache, as after
    /// `kill -9`), replicators send nothing more; the FSM caller applies the
    /// committed entries it already holds and answers every other callback
    /// `ShuttingDown`. Meant for tests of recovery.
    pub fn kill(mut self) {
        self.stop(true);
    }

    fn stop(&mut self, kill: bool) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let handle = self.handle.get_mut();
        handle.closing.store(true, Ordering::Release);
        if kill {
            self.killed.store(true, Ordering::Release);
        }
        // The Shutdown input also wakes the core when killed.
        let mut input = Input::Shutdown;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match handle.tx.try_send(input) {
                Ok(()) | Err(SendError::Closed(_)) => break,
                Err(SendError::Full(back)) if Instant::now() < deadline => {
                    input = back;
                    std::thread::park_timeout(Duration::from_micros(500));
                }
                Err(SendError::Full(_)) => {
                    log::error!("node {}: intake ring stayed full for 10 s during shutdown; killing", self.id);
                    self.killed.store(true, Ordering::Release);
                    break;
                }
            }
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                log::error!("node {}: a stage thread panicked", self.id);
            }
        }
        self.timer.shutdown();
        log::info!("node {}: {}", self.id, if kill { "killed" } else { "shut down" });
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop(false);
    }
}

impl NodeHandle {
    fn publish(&mut self, input: Input) -> Result<(), NodeError> {
        if self.closing.load(Ordering::Acquire) {
            input.discard();
            return Err(NodeError::ShuttingDown);
        }
        match self.tx.try_send(input) {
            Ok(()) => Ok(()),
            Err(SendError::Full(input)) => {
                input.discard();
                Err(NodeError::Busy)
            }
            Err(SendError::Closed(input)) => {
                input.discard();
                Err(NodeError::ShuttingDown)
            }
        }
    }

    /// Publishes the input `make` builds around a fresh hand-off and waits
    /// for its answer until `deadline` (`None`: for ever).
    fn call<T: Send + 'static>(
        &mut self,
        make: impl FnOnce(Callback<T>) -> Input,
        deadline: Option<Instant>,
    ) -> Result<T, NodeError> {
        let o = Oneshot::new();
        self.publish(make(o.callback()))?;
        o.wait(deadline)
    }

    /// Proposes `data` to `group`; `done` gets the state machine's answer
    /// once the entry is committed and applied on this node.
    ///
    /// # Errors
    /// At once, without calling `done`: [`NodeError::Busy`] when the intake
    /// ring is full, [`NodeError::ShuttingDown`]. Later, through `done`:
    /// `NotLeader`, `Dropped`, `UnknownGroup`, `Busy`, `ShuttingDown`.
    pub fn propose(&mut self, group: GroupId, data: Bytes, done: Callback<Bytes>) -> Result<(), NodeError> {
        self.publish(Input::Propose { group, data, done })
    }

    /// [`NodeHandle::propose`], waiting for the answer.
    ///
    /// # Errors
    /// As `propose`, all returned here.
    pub fn propose_wait(&mut self, group: GroupId, data: Bytes) -> Result<Bytes, NodeError> {
        self.call(|done| Input::Propose { group, data, done }, None)
    }

    /// [`NodeHandle::propose`], waiting for the answer until `deadline`.
    /// Prefer this where a leader may lose its disk or its quorum: such a
    /// proposal may stay unanswered until the node learns its fate.
    ///
    /// # Errors
    /// As `propose`, plus [`NodeError::Timeout`] (outcome unknown).
    pub fn propose_wait_until(&mut self, group: GroupId, data: Bytes, deadline: Instant) -> Result<Bytes, NodeError> {
        self.call(|done| Input::Propose { group, data, done }, Some(deadline))
    }

    /// A linearizable read barrier: `done` gets an index once this node's
    /// state machine has applied everything committed before the call, so
    /// reading the local state machine then is linearizable.
    ///
    /// # Errors
    /// `Busy` or `ShuttingDown` at once; `ReadFailed`, `UnknownGroup`
    /// through `done`.
    pub fn read_index(&mut self, group: GroupId, done: Callback<LogIndex>) -> Result<(), NodeError> {
        self.publish(Input::ReadIndex { group, mode: ReadMode::ReadIndex, done })
    }

    /// [`NodeHandle::read_index`] with a choice of confirmation:
    /// [`ReadMode::Lease`] answers from the leader's lease without a
    /// heartbeat round while it holds (bounded clock drift assumed).
    ///
    /// # Errors
    /// As `read_index`.
    pub fn read_index_mode(
        &mut self,
        group: GroupId,
        mode: ReadMode,
        done: Callback<LogIndex>,
    ) -> Result<(), NodeError> {
        self.publish(Input::ReadIndex { group, mode, done })
    }

    /// [`NodeHandle::read_index`], waiting for the answer.
    ///
    /// # Errors
    /// As `read_index`.
    pub fn read_index_wait(&mut self, group: GroupId) -> Result<LogIndex, NodeError> {
        self.call(|done| Input::ReadIndex { group, mode: ReadMode::ReadIndex, done }, None)
    }

    /// [`NodeHandle::read_index`], waiting for the answer until `deadline`.
    ///
    /// # Errors
    /// As `read_index`, plus [`NodeError::Timeout`].
    pub fn read_index_wait_until(&mut self, group: GroupId, deadline: Instant) -> Result<LogIndex, NodeError> {
        self.call(|done| Input::ReadIndex { group, mode: ReadMode::ReadIndex, done }, Some(deadline))
    }

    /// Proposes a membership change and waits until it is applied here;
    /// returns the index of its entry.
    ///
    /// # Errors
    /// `NotLeader`, `Refused` (another change in flight, invalid change),
    /// `Dropped`, `Busy`, `ShuttingDown`, `UnknownGroup`.
    pub fn change_membership(&mut self, group: GroupId, change: ConfChange) -> Result<LogIndex, NodeError> {
        self.call(|done| Input::ChangeMembership { group, change, done }, None)
    }

    /// Asks the leader to hand leadership to `target`, or to the most
    /// caught-up other voter for `NodeId::NONE`; returns the target once the
    /// transfer has started (watch [`NodeHandle::status`] for its end).
    ///
    /// # Errors
    /// `Transfer` (not the leader, target not a voter), `Busy`,
    /// `ShuttingDown`, `UnknownGroup`.
    pub fn transfer_leader(&mut self, group: GroupId, target: NodeId) -> Result<NodeId, NodeError> {
        self.call(|done| Input::TransferLeader { group, target, done }, None)
    }

    /// The group's state on this node.
    ///
    /// # Errors
    /// `Busy`, `ShuttingDown`, `UnknownGroup`.
    pub fn status(&mut self, group: GroupId) -> Result<GroupStatus, NodeError> {
        self.call(|done| Input::Status { group, done }, None)
    }

    /// [`NodeHandle::status`] without waiting: `done` gets the answer (for
    /// threads that must not block, such as an I/O thread).
    ///
    /// # Errors
    /// `Busy` or `ShuttingDown` at once; `UnknownGroup` through `done`.
    pub fn status_with(&mut self, group: GroupId, done: Callback<GroupStatus>) -> Result<(), NodeError> {
        self.publish(Input::Status { group, done })
    }

    /// [`NodeHandle::change_membership`] without waiting.
    ///
    /// # Errors
    /// `Busy` or `ShuttingDown` at once; the rest through `done`.
    pub fn change_membership_with(
        &mut self,
        group: GroupId,
        change: ConfChange,
        done: Callback<LogIndex>,
    ) -> Result<(), NodeError> {
        self.publish(Input::ChangeMembership { group, change, done })
    }

    /// [`NodeHandle::transfer_leader`] without waiting.
    ///
    /// # Errors
    /// `Busy` or `ShuttingDown` at once; the rest through `done`.
    pub fn transfer_leader_with(
        &mut self,
        group: GroupId,
        target: NodeId,
        done: Callback<NodeId>,
    ) -> Result<(), NodeError> {
        self.publish(Input::TransferLeader { group, target, done })
    }
}
