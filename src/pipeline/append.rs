//! The log-append stage (SOFAJRaft's `LogManager` disk thread): drains every
//! write job in its ring, stores changed hard states, writes all log ops of
//! all groups with ONE `fdatasync`, then releases what waited for them —
//! the jobs' persisted messages (vote grants, messages of a term not yet
//! durable) go straight to the transport, and the persist points go back to
//! the core as one `Persisted` input (which releases a follower's append
//! answers).
//!
//! A disk that refuses a write (full, I/O error) is retried with capped
//! backoff: nothing is acknowledged meanwhile and the rings fill up, so
//! proposers get `Busy`. A failed `fdatasync` fails stop (see storage).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;

use super::contract::SnapshotStore;
use super::input::Input;
use super::ring::{Recv, RingReceiver, RingSender, SendError};
use super::transport::RaftTransport;
use crate::core::{GroupId, HardState, LogOp, Message, NodeId, PersistPoint, SnapshotChunk, SnapshotMeta};
use crate::storage::{GroupState, LogEngine, StateFile, StorageError};

/// The durable part of one `Ready` of one group.
pub struct AppendJob {
    /// The group.
    pub group: GroupId,
    /// Term and vote to store first, with the snapshot meta they share a file with.
    pub hard_state: Option<(HardState, SnapshotMeta)>,
    /// Log writes, in order.
    pub log_ops: Vec<LogOp>,
    /// Snapshot chunks received from the leader, stored before the log ops.
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// Messages that may leave only once this job is durable.
    pub persisted_messages: Vec<Message>,
    /// What to report to the core once the job is durable.
    pub persist_point: Option<PersistPoint>,
}

/// Counters of the stage, shared with the node's status.
#[derive(Debug, Default)]
pub(crate) struct AppendCounters {
    pub fsync_batches: AtomicU64,
    pub entries: AtomicU64,
    pub jobs: AtomicU64,
    /// The disk refuses the stage's writes for lack of space (cleared by
    /// the next write that succeeds).
    pub disk_full: AtomicBool,
}

/// The stage's logic without its thread or clock: the log, the state
/// file and where received snapshot chunks go. The thread calls
/// [`AppendSteps::write_batch`] with each batch from its ring and retries
/// a failed one after a pause; a simulation calls it when it chooses
/// (issue 19: layers as steps).
pub struct AppendSteps {
    /// The node's log engine.
    pub engine: LogEngine,
    /// The groups' state files (hard state, snapshot meta).
    pub state_file: StateFile,
    /// Where each group's received snapshot chunks go.
    pub snapshot_stores: HashMap<GroupId, std::sync::Arc<dyn SnapshotStore>>,
    /// Log ops taken out of the jobs of a batch whose write failed: the
    /// next attempt writes them.
    ops: Vec<(GroupId, LogOp)>,
}

/// What a written batch releases.
#[derive(Debug, Default)]
pub struct Released {
    /// Messages that waited for the batch, by destination, in the order
    /// the jobs held them.
    pub messages: Vec<(NodeId, Vec<Message>)>,
    /// The newest persist point of each group, in the order of the jobs.
    pub points: Vec<(GroupId, PersistPoint)>,
    /// Log entries the batch wrote.
    pub entries: u64,
    /// The batch wrote log ops (one `fdatasync`).
    pub wrote_log: bool,
    /// Jobs in the batch.
    pub jobs: u64,
}

/// A batch the disk refused: what failed. Everything before it in the
/// batch is durable and taken out of the jobs; the same jobs are written
/// again by the next call.
#[derive(Debug)]
pub struct WriteFailed {
    /// What was being written.
    pub what: &'static str,
    /// Why the disk refused it.
    pub error: StorageError,
}

impl AppendSteps {
    /// The stage's logic over this log and state file.
    pub fn new(
        engine: LogEngine,
        state_file: StateFile,
        snapshot_stores: HashMap<GroupId, std::sync::Arc<dyn SnapshotStore>>,
    ) -> AppendSteps {
        AppendSteps { engine, state_file, snapshot_stores, ops: Vec::new() }
    }

    /// Writes a batch of jobs: every received snapshot chunk (the hard
    /// state and the log reset a final chunk brings must not be durable
    /// before its data is), then the hard states, then all log ops of all
    /// groups with one `fdatasync`. On success the jobs are consumed and
    /// what waited for them is returned.
    ///
    /// # Errors
    /// The disk refused a write ([`WriteFailed`]); call again with the
    /// same jobs. A chunk that fails verification, or a log op the engine
    /// calls impossible (a gap: a bug in the core), panics: the node stops.
    pub fn write_batch(&mut self, jobs: &mut Vec<AppendJob>) -> Result<Released, WriteFailed> {
        for job in jobs.iter_mut() {
            while let Some(chunk) = job.snapshot_chunks.first() {
                self.store_chunk(job.group, chunk)?;
                job.snapshot_chunks.remove(0);
            }
        }
        for job in jobs.iter_mut() {
            if let Some((hs, snapshot)) = &job.hard_state {
                let state = GroupState { hard_state: *hs, snapshot: snapshot.clone() };
                self.state_file.store(job.group, &state).map_err(|e| failed("store hard state", e))?;
                job.hard_state = None;
            }
        }
        for job in jobs.iter_mut() {
            for op in job.log_ops.drain(..) {
                self.ops.push((job.group, op));
            }
        }
        let mut out = Released { jobs: jobs.len() as u64, ..Released::default() };
        if !self.ops.is_empty() {
            self.engine.write(&self.ops).map_err(|e| failed("append to the log", e))?;
            out.wrote_log = true;
            for (_, op) in self.ops.drain(..) {
                if let LogOp::Append(es) = &op {
                    out.entries += es.len() as u64;
                }
            }
        }
        for job in jobs.drain(..) {
            for m in job.persisted_messages {
                match out.messages.iter_mut().find(|(to, _)| *to == m.to) {
                    Some((_, v)) => v.push(m),
                    None => out.messages.push((m.to, vec![m])),
                }
            }
            if let Some(point) = job.persist_point {
                match out.points.iter_mut().find(|(g, _)| *g == job.group) {
                    Some(p) => p.1 = point,
                    None => out.points.push((job.group, point)),
                }
            }
        }
        Ok(out)
    }

    /// Log ops of a refused batch, taken out of its jobs, to be written by
    /// the next call (in flight as much as the jobs are).
    pub fn pending_ops(&self) -> &[(GroupId, LogOp)] {
        &self.ops
    }

    /// Stores one received snapshot chunk.
    fn store_chunk(&mut self, group: GroupId, chunk: &SnapshotChunk) -> Result<(), WriteFailed> {
        let Some(store) = self.snapshot_stores.get(&group) else {
            panic!("append stage: a snapshot chunk for group {group}, which has no snapshot store");
        };
        match store.write_chunk(chunk) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // Installing bytes that fail verification would corrupt the
                // state; stopping keeps the node at its consistent state
                // before the snapshot, and it is sent again after a restart.
                panic!(
                    "append stage: group {group}: snapshot {} from the leader failed verification: {e}",
                    chunk.meta.last_index
                )
            }
            Err(e) => Err(failed(
                "store a snapshot chunk",
                StorageError::io("store a snapshot chunk", std::path::Path::new("snapshot"), e),
            )),
        }
    }
}

/// A refused write; a refused log op is a bug in the core (a gap), which
/// is fatal.
fn failed(what: &'static str, error: StorageError) -> WriteFailed {
    if let StorageError::InvalidRequest(e) = &error {
        panic!("append stage: the core asked for an impossible write: {e}")
    }
    WriteFailed { what, error }
}

/// The stage's thread state.
pub(crate) struct AppendStage {
    pub rx: RingReceiver<AppendJob>,
    pub intake: RingSender<Input>,
    pub steps: AppendSteps,
    pub transport: Arc<dyn RaftTransport>,
    pub counters: Arc<AppendCounters>,
    /// Set by `Node::kill`: exit at once, writing nothing more.
    pub killed: Arc<AtomicBool>,
    /// Set when the node starts shutting down: a write the disk keeps
    /// refusing is abandoned (nothing of it was acknowledged) instead of
    /// retried for ever.
    pub stopping: Arc<AtomicBool>,
    /// The disk refused the last attempt (the core was told).
    pub failing: bool,
    /// A batch was abandoned while stopping: every later job is dropped too
    /// (writing it would leave a gap).
    pub abandoned: bool,
    /// The data directory's lock, held while this stage can write.
    pub _lock: Box<dyn crate::fs::FsLock>,
}

const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

impl AppendStage {
    /// Runs until the core drops its sender (after draining) or a kill.
    pub fn run(mut self) {
        let mut jobs = Vec::with_capacity(1024);
        loop {
            if let Recv::Closed = self.rx.recv_batch(&mut jobs, None) {
                break;
            }
            if self.killed.load(Ordering::Acquire) {
                return;
            }
            if jobs.is_empty() {
                continue;
            }
            self.write_batch(&mut jobs);
        }
        log::debug!("append stage: ring closed, exiting");
    }

    /// Writes a batch until it succeeds, backing off on operating errors
    /// and telling the core the disk failed (its leaders step down) and,
    /// later, that it recovered; then releases what waited for it. A batch
    /// the disk keeps refusing while the node stops is abandoned, none of
    /// it acknowledged.
    fn write_batch(&mut self, jobs: &mut Vec<AppendJob>) {
        if self.abandoned {
            jobs.clear();
            return;
        }
        let mut delay = RETRY_MIN;
        loop {
            match self.steps.write_batch(jobs) {
                Ok(released) => {
                    self.counters.disk_full.store(false, Ordering::Relaxed);
                    if self.failing {
                        self.failing = false;
                        log::warn!("append stage: the disk takes writes again");
                        publish_or_wait(&mut self.intake, Input::StorageFailed(false), &self.killed);
                    }
                    if released.wrote_log {
                        self.counters.fsync_batches.fetch_add(1, Ordering::Relaxed);
                        self.counters.entries.fetch_add(released.entries, Ordering::Relaxed);
                    }
                    self.counters.jobs.fetch_add(released.jobs, Ordering::Relaxed);
                    self.release(released);
                    return;
                }
                Err(WriteFailed { what, error: e }) => {
                    if self.killed.load(Ordering::Acquire) || self.stopping.load(Ordering::Acquire) {
                        self.abandoned = true;
                        jobs.clear();
                        log::error!(
                            "append stage: cannot {what}: {e}; stopping, batch abandoned (none of it acknowledged)"
                        );
                        return;
                    }
                    self.counters.disk_full.store(e.is_no_space(), Ordering::Relaxed);
                    log::error!(
                        "append stage: cannot {what}: {e}; retrying in {delay:?} (nothing acknowledged meanwhile)"
                    );
                    if !self.failing {
                        self.failing = true;
                        publish_or_wait(&mut self.intake, Input::StorageFailed(true), &self.killed);
                    }
                    std::thread::park_timeout(delay);
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Sends what waited for durability and reports the persist points.
    fn release(&mut self, released: Released) {
        for (to, msgs) in released.messages {
            self.transport.send(to, msgs);
        }
        if !released.points.is_empty() {
            publish_or_wait(&mut self.intake, Input::Persisted(released.points), &self.killed);
        }
    }
}

/// Publishes `input` into the intake ring, waiting (parked, in short naps)
/// while it is full: stage outputs must not be lost, and the core drains its
/// ring without ever blocking on ours, so the wait ends.
pub(crate) fn publish_or_wait(tx: &mut RingSender<Input>, input: Input, killed: &AtomicBool) {
    let mut input = input;
    loop {
        match tx.try_send(input) {
            Ok(()) => return,
            Err(SendError::Closed(_)) => return,
            Err(SendError::Full(back)) => {
                if killed.load(Ordering::Acquire) {
                    return;
                }
                input = back;
                std::thread::park_timeout(Duration::from_micros(200));
            }
        }
    }
}
