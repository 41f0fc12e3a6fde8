//! [`Input`]: everything the core thread takes from its intake ring
//! (proposals, Raft messages, ticks, the other stages' reports, requests
//! with their completions).

use bytes::Bytes;

use super::completion::Callback;
use super::contract::GroupStatus;
use crate::core::{ConfChange, GroupId, LogIndex, Message, NodeId, PersistPoint};

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
