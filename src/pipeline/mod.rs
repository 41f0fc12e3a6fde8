//! The staged runtime of a node: disruptor rings between threads, each stage
//! draining its whole ring as one batch.
//!
//! ```text
//! proposers, transport, timer, stages ──▶ [intake] ──▶ core thread (every group's RaftCore)
//!        ┌──────────────────────────────────────────────┼─────────────────────────────┐
//!        ▼                                              ▼                             ▼
//!  [append] log-append stage               [replicator ring per peer]          [fsm] FSM caller
//!  hard state + log ops, ONE fdatasync     coalesced sends (or inline          apply in batches, run
//!  → persisted messages, Persisted         when the ring is idle)              callbacks, Applied
//! ```
//!
//! * [`ring`]: the bounded MPSC ring on the `disruptor` crate with a
//!   spin-then-park wait strategy.
//! * `core_stage`: the core thread: feeds inputs to the cores, carries out
//!   their `Ready`s, arms the timer.
//! * `append`: the log-append stage (group fsync).
//! * `replicator`: one sender thread per peer.
//! * `fsm`: the FSM caller.
//! * `snapshot_sender`: fills and sends snapshot chunks to lagging peers.
//! * [`transport`]: what the stages send through, and an in-process network.

mod append;
pub mod completion;
mod core_stage;
mod fsm;
pub mod net;
mod replicator;
pub mod ring;
mod snapshot_sender;
pub mod transport;
mod wait;

pub(crate) use append::{AppendCounters, AppendJob, AppendStage, AppendSteps};
pub(crate) use core_stage::{Clock, CoreCounters, CoreStage, CoreWiring, GroupCore};
pub(crate) use fsm::{FsmStage, FsmSteps, FsmTask, GroupFsm};
pub(crate) use replicator::{ReplicatorCounters, Replicators};
pub(crate) use snapshot_sender::{SenderLimits, SenderSteps, SnapshotSender};

use bytes::Bytes;

use crate::core::{ConfChange, GroupId, LogIndex, Message, NodeId, PersistPoint};
use crate::node::GroupStatus;
use completion::Callback;

/// One input of the core thread, published into the intake ring.
pub(crate) enum Input {
    /// A client proposal.
    Propose { group: GroupId, data: Bytes, done: Callback<Bytes> },
    /// A message from a peer.
    Raft(Message),
    /// The wheel timer fired: tick every group whose deadline passed.
    Tick,
    /// The log-append stage made these points durable.
    Persisted(Vec<(GroupId, PersistPoint)>),
    /// The FSM caller applied up to these indexes.
    Applied(Vec<(GroupId, LogIndex)>),
    /// A group's state machine stored a snapshot up to this index: the log
    /// may be compacted behind it.
    SnapshotCreated(GroupId, LogIndex),
    /// A linearizable read: the callback gets the index the state machine
    /// has applied when the read may be served.
    ReadIndex { group: GroupId, mode: crate::core::ReadMode, done: Callback<LogIndex> },
    /// A membership change; the callback gets the index of its entry once
    /// applied.
    ChangeMembership { group: GroupId, change: ConfChange, done: Callback<LogIndex> },
    /// Hand leadership to `target`.
    TransferLeader { group: GroupId, target: NodeId, done: Callback<NodeId> },
    /// A snapshot of the group's state.
    Status { group: GroupId, done: Callback<GroupStatus> },
    /// The log-append stage's disk refuses writes (`true`) or takes them
    /// again (`false`): every group's leader steps down / may campaign again.
    StorageFailed(bool),
    /// Stop: finish this batch, hand everything to the stages, exit.
    Shutdown,
}

impl Input {
    /// Drops the input without answering its callback: the caller learns
    /// from the refused publish instead.
    pub(crate) fn discard(self) {
        match self {
            Input::Propose { done, .. } => done.discard(),
            Input::ReadIndex { done, .. } | Input::ChangeMembership { done, .. } => done.discard(),
            Input::TransferLeader { done, .. } => done.discard(),
            Input::Status { done, .. } => done.discard(),
            Input::Raft(_)
            | Input::Tick
            | Input::Persisted(_)
            | Input::Applied(_)
            | Input::SnapshotCreated(..)
            | Input::StorageFailed(_)
            | Input::Shutdown => {}
        }
    }
}
