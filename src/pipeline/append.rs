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

use super::ring::{Recv, RingReceiver, RingSender, SendError};
use super::transport::RaftTransport;
use super::Input;
use crate::core::{GroupId, HardState, LogOp, Message, NodeId, PersistPoint, SnapshotChunk, SnapshotMeta};
use crate::node::SnapshotStore;
use crate::storage::{GroupState, LogEngine, StateFile, StorageError};

/// The durable part of one `Ready` of one group.
pub(crate) struct AppendJob {
    pub group: GroupId,
    /// Term and vote to store first, with the snapshot meta they share a file with.
    pub hard_state: Option<(HardState, SnapshotMeta)>,
    pub log_ops: Vec<LogOp>,
    /// Snapshot chunks received from the leader, stored before the log ops.
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// Messages that may leave only once this job is durable.
    pub persisted_messages: Vec<Message>,
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

/// The stage's thread state.
pub(crate) struct AppendStage {
    pub rx: RingReceiver<AppendJob>,
    pub intake: RingSender<Input>,
    pub engine: LogEngine,
    pub state_file: StateFile,
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
    /// Where each group's received snapshot chunks go.
    pub snapshot_stores: HashMap<GroupId, std::sync::Arc<dyn SnapshotStore>>,
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

    fn write_batch(&mut self, jobs: &mut Vec<AppendJob>) {
        if self.abandoned {
            jobs.clear();
            return;
        }
        // Snapshot chunks first: the hard state and the log reset that a
        // final chunk brings must not be durable before its data is.
        for job in jobs.iter_mut() {
            for chunk in std::mem::take(&mut job.snapshot_chunks) {
                if !self.store_chunk(job.group, &chunk) {
                    jobs.clear();
                    return;
                }
            }
        }
        for job in jobs.iter_mut() {
            if let Some((hs, snapshot)) = job.hard_state.take() {
                let state = GroupState { hard_state: hs, snapshot };
                if !self.retry("store hard state", |s| s.state_file.store(job.group, &state)) {
                    jobs.clear();
                    return;
                }
            }
        }
        let mut ops: Vec<(GroupId, LogOp)> = Vec::new();
        let mut entries = 0u64;
        for job in jobs.iter_mut() {
            for op in job.log_ops.drain(..) {
                if let LogOp::Append(es) = &op {
                    entries += es.len() as u64;
                }
                ops.push((job.group, op));
            }
        }
        if !ops.is_empty() {
            if !self.retry("append to the log", |s| s.engine.write(&ops)) {
                jobs.clear();
                return;
            }
            self.counters.fsync_batches.fetch_add(1, Ordering::Relaxed);
            self.counters.entries.fetch_add(entries, Ordering::Relaxed);
        }
        self.counters.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        self.release(jobs);
    }

    /// Stores one received snapshot chunk; false when the batch must be
    /// abandoned (stopping with a failing disk).
    fn store_chunk(&mut self, group: GroupId, chunk: &SnapshotChunk) -> bool {
        let Some(store) = self.snapshot_stores.get(&group).cloned() else {
            panic!("append stage: a snapshot chunk for group {group}, which has no snapshot store");
        };
        self.retry("store a snapshot chunk", |_| match store.write_chunk(chunk) {
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
            Err(e) => Err(StorageError::io("store a snapshot chunk", std::path::Path::new("snapshot"), e)),
        })
    }

    /// Sends what waited for durability and reports the persist points.
    fn release(&mut self, jobs: &mut Vec<AppendJob>) {
        let mut by_peer: HashMap<NodeId, Vec<Message>> = HashMap::new();
        let mut points: Vec<(GroupId, PersistPoint)> = Vec::new();
        for job in jobs.drain(..) {
            for m in job.persisted_messages {
                by_peer.entry(m.to).or_default().push(m);
            }
            if let Some(point) = job.persist_point {
                match points.iter_mut().find(|(g, _)| *g == job.group) {
                    Some(p) => p.1 = point,
                    None => points.push((job.group, point)),
                }
            }
        }
        for (to, msgs) in by_peer {
            self.transport.send(to, msgs);
        }
        if !points.is_empty() {
            publish_or_wait(&mut self.intake, Input::Persisted(points), &self.killed);
        }
    }

    /// Runs `op` until it succeeds, backing off on operating errors and
    /// telling the core the disk failed (its leaders step down) and, later,
    /// that it recovered. Returns false when it gave up because the node is
    /// stopping: the batch is then abandoned, none of it acknowledged. A
    /// refused append is a bug in the core (a gap), which is fatal.
    fn retry(&mut self, what: &str, mut op: impl FnMut(&mut Self) -> Result<(), StorageError>) -> bool {
        let mut delay = RETRY_MIN;
        loop {
            match op(self) {
                Ok(()) => {
                    self.counters.disk_full.store(false, Ordering::Relaxed);
                    if self.failing {
                        self.failing = false;
                        log::warn!("append stage: the disk takes writes again");
                        publish_or_wait(&mut self.intake, Input::StorageFailed(false), &self.killed);
                    }
                    return true;
                }
                Err(StorageError::InvalidRequest(e)) => {
                    panic!("append stage: the core asked for an impossible write: {e}")
                }
                Err(e) => {
                    if self.killed.load(Ordering::Acquire) || self.stopping.load(Ordering::Acquire) {
                        self.abandoned = true;
                        log::error!(
                            "append stage: cannot {what}: {e}; stopping, batch abandoned (none of it acknowledged)"
                        );
                        return false;
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
