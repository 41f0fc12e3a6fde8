//! The errors a `Node` and its stages give their callers ([`NodeError`]):
//! the stages complete proposals and reads with them, the node returns them.

use crate::core::{GroupId, NodeId, NotReady, ProposeError, TransferError};
use crate::storage::StorageError;

/// Why a node call failed. Every variant is an operating condition the
/// caller can act on; none of them puts the node in an error state.
#[derive(Debug)]
pub enum NodeError {
    /// A stage ring is full: the node is overloaded right now. Nothing was
    /// accepted; retry after a short pause.
    Busy,
    /// This node does not lead the group; `leader` is the one it knows of.
    NotLeader {
        /// The leader hint, if a leader is known.
        leader: Option<NodeId>,
    },
    /// The core refused the request (transfer or membership change in
    /// progress, invalid membership change).
    Refused(ProposeError),
    /// A leader transfer could not start.
    Transfer(TransferError),
    /// The entry was not committed: a new leader overwrote it. It is safe to
    /// retry.
    Dropped,
    /// A read could not be confirmed (no leader, or leadership was lost);
    /// retry.
    ReadFailed,
    /// The node does not run this group.
    UnknownGroup(GroupId),
    /// The node is shutting down; the outcome of anything in flight is
    /// unknown unless it was acknowledged.
    ShuttingDown,
    /// No answer before the caller's deadline. The outcome is unknown: the
    /// entry may still commit (for instance after its leader lost its disk
    /// or its leadership).
    Timeout,
    /// A stage thread of this node died (a panic in the state machine, a
    /// broken internal invariant); the node no longer leads or campaigns.
    /// Restart it.
    Failed(String),
    /// Storage failed while starting the node.
    Storage(StorageError),
    /// The configuration is invalid or the node could not start its threads.
    Start(String),
}

impl NodeError {
    /// Maps a core refusal, lifting `NotLeader` to [`NodeError::NotLeader`].
    pub(crate) fn from_propose(e: ProposeError) -> NodeError {
        match e {
            ProposeError::NotLeader { leader } => NodeError::NotLeader { leader: leader.is_some().then_some(leader) },
            other => NodeError::Refused(other),
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NodeError::Busy
                | NodeError::NotLeader { .. }
                | NodeError::Dropped
                | NodeError::ReadFailed
                | NodeError::Timeout
        ) || matches!(self, NodeError::Refused(ProposeError::TransferInProgress))
            || matches!(self, NodeError::Refused(ProposeError::ConfChangeInProgress))
            || matches!(self, NodeError::Refused(ProposeError::VoterNotReady { why: NotReady::Behind { .. }, .. }))
    }
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::Busy => write!(f, "node is busy (a stage ring is full); retry shortly"),
            NodeError::NotLeader { leader: Some(l) } => write!(f, "not the leader; the leader is node {l}"),
            NodeError::NotLeader { leader: None } => write!(f, "not the leader; no leader is known yet"),
            NodeError::Refused(e) => write!(f, "refused: {e}"),
            NodeError::Transfer(e) => write!(f, "leader transfer refused: {e}"),
            NodeError::Dropped => write!(f, "entry was overwritten by a new leader before it committed; retry"),
            NodeError::ReadFailed => write!(f, "read could not be confirmed by a leader; retry"),
            NodeError::UnknownGroup(g) => write!(f, "this node does not run group {g}"),
            NodeError::ShuttingDown => write!(f, "node is shutting down"),
            NodeError::Timeout => write!(f, "no answer before the deadline; the outcome is unknown"),
            NodeError::Failed(e) => write!(f, "node failed: {e}; restart it"),
            NodeError::Storage(e) => write!(f, "storage: {e}"),
            NodeError::Start(e) => write!(f, "cannot start node: {e}"),
        }
    }
}

impl std::error::Error for NodeError {}

impl From<StorageError> for NodeError {
    fn from(e: StorageError) -> NodeError {
        NodeError::Storage(e)
    }
}
