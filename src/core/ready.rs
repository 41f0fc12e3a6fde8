//! What the core asks its driver to do: the `Ready` batch.
//!
//! The driver calls `RaftCore::take_ready` after feeding a batch of inputs and
//! then, in this order: writes `hard_state` and `log_ops` (one fsync may cover
//! them all), sends `messages` at once (the leader's appends go out before its
//! own fsync), sends `persisted_messages` only after the writes of this ready
//! are durable, then reports `RaftCore::on_persisted` with
//! [`Ready::persist_point`]. `committed_entries` may be applied concurrently;
//! the driver reports `RaftCore::on_applied` as it goes.

use bytes::Bytes;

use super::message::{Entry, HardState, Message, SnapshotMeta};
use super::types::{LogIndex, NodeId, ReadId, Term, Time};

/// The role a core plays in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes; the term has not been raised.
    PreCandidate,
    /// Asking for votes in a raised term.
    Candidate,
    /// Leads the group in its term.
    Leader,
}

/// Volatile state worth reporting when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The node's role.
    pub role: Role,
    /// The node's current term.
    pub term: Term,
    /// The leader this node knows of, or `NodeId::NONE`.
    pub leader: NodeId,
}

/// A change to the durable log, applied by the storage in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOp {
    /// Remove every entry with index `>= entries[0].index`, then append
    /// `entries` (consecutive, non-empty).
    Append(Vec<Entry>),
    /// The log prefix up to and including this index may be deleted.
    Purge(LogIndex),
    /// Drop the whole log; it continues after the snapshot's last index.
    Reset(SnapshotMeta),
}

/// A confirmed read: serve it once the state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's id of the read.
    pub id: ReadId,
    /// The commit index the read must observe.
    pub index: LogIndex,
}

/// A snapshot chunk received from the leader, to be stored durably.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot the chunk belongs to.
    pub meta: SnapshotMeta,
    /// Byte offset of `data` in the snapshot (0 starts a new snapshot).
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
    /// Whether this completes the snapshot.
    pub done: bool,
}

/// Everything the core wants done after a batch of inputs.
#[derive(Debug, Default)]
pub struct Ready {
    /// Role, term or leader changed to this.
    pub soft_state: Option<SoftState>,
    /// Persist this vote state (before `log_ops`).
    pub hard_state: Option<HardState>,
    /// Log changes to persist, in order.
    pub log_ops: Vec<LogOp>,
    /// Snapshot chunks to store durably (before `log_ops`).
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// Restore the state machine from the stored snapshot with this meta,
    /// then report `on_applied(meta.last_index)`.
    pub restore_snapshot: Option<SnapshotMeta>,
    /// Send now.
    pub messages: Vec<Message>,
    /// Send once everything above is durable.
    pub persisted_messages: Vec<Message>,
    /// `InstallSnapshot` messages whose `data` and `done` the driver fills
    /// from its snapshot store before sending.
    pub snapshot_sends: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed reads.
    pub read_states: Vec<ReadState>,
    /// Reads that cannot be served (no leader, leadership lost); the caller
    /// may retry.
    pub failed_reads: Vec<ReadId>,
    /// The earliest time the core wants `tick` called.
    pub next_deadline: Time,
    /// The sequence number of this ready's log write (see [`PersistPoint`]).
    pub write_seq: u64,
}

/// What the driver reports through `RaftCore::on_persisted` once a ready's
/// writes are durable: the last entry written, and which write it was.
///
/// The write sequence number closes an ABA hole: an entry can be
/// truncated by a later write and then written again with the same term,
/// so `(term, index)` alone cannot tell a stale report from a fresh one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistPoint {
    /// Term of the last entry written (or of the snapshot reset to).
    pub term: Term,
    /// Index of the last entry written (or of the snapshot reset to).
    pub index: LogIndex,
    /// The ready's `write_seq`: one per ready that writes the log, in order.
    pub write: u64,
}

impl Ready {
    /// What to report through `on_persisted` once this ready's writes are
    /// durable, if it wrote any log change.
    pub fn persist_point(&self) -> Option<PersistPoint> {
        let write = self.write_seq;
        self.log_ops.iter().rev().find_map(|op| match op {
            LogOp::Append(entries) => entries.last().map(|e| PersistPoint { term: e.term, index: e.index, write }),
            LogOp::Reset(meta) => Some(PersistPoint { term: meta.last_term, index: meta.last_index, write }),
            LogOp::Purge(_) => None,
        })
    }

    /// Whether anything must be written durably.
    pub fn needs_write(&self) -> bool {
        self.hard_state.is_some() || !self.log_ops.is_empty() || !self.snapshot_chunks.is_empty()
    }

    /// Whether the ready holds nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && !self.needs_write()
            && self.restore_snapshot.is_none()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.snapshot_sends.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.failed_reads.is_empty()
    }
}
