//! [`RoleWatch`]: a group's role and leader as the core last reported them,
//! readable from any thread without a round trip to the core (an I/O
//! thread uses it to redirect a client to the leader at once).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::core::{NodeId, Role};

/// The role and leader of one group on this node, updated by the core
/// thread whenever they change. A reader may see a value a moment old: it is
/// a hint for routing, never a basis for safety (the core re-checks every
/// proposal and read).
#[derive(Debug, Default)]
pub struct RoleWatch {
    role: AtomicU8,
    leader: AtomicU64,
    term_start: AtomicU64,
    term: AtomicU64,
    applied: AtomicU64,
}

impl RoleWatch {
    pub(crate) fn set(&self, role: Role, leader: NodeId) {
        let r = match role {
            Role::Follower => 0,
            Role::PreCandidate | Role::Candidate => 1,
            Role::Leader => 2,
        };
        self.leader.store(leader.0, Ordering::Release);
        self.role.store(r, Ordering::Release);
    }

    /// Notes the term and the index of the first entry (its no-op) of this
    /// node's new leadership: every entry of earlier terms is before it.
    pub(crate) fn set_leadership(&self, term: crate::core::Term, index: crate::core::LogIndex) {
        self.term_start.store(index.0, Ordering::Release);
        self.term.store(term.0, Ordering::Release);
    }

    /// The term of this node's latest leadership (0 before it led).
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// Notes the index the state machine has applied (the FSM caller's
    /// report, no-ops and configuration entries included).
    pub(crate) fn set_applied(&self, index: crate::core::LogIndex) {
        self.applied.store(index.0, Ordering::Release);
    }

    /// Whether the state machine has applied the first entry of this
    /// node's latest leadership, hence every entry of earlier terms (a new
    /// leader's view of the replicated state is complete).
    pub fn caught_up(&self) -> bool {
        self.applied.load(Ordering::Acquire) >= self.term_start.load(Ordering::Acquire)
    }

    /// Whether this node leads the group (as last reported).
    pub fn is_leader(&self) -> bool {
        self.role.load(Ordering::Acquire) == 2
    }

    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<NodeId> {
        let l = self.leader.load(Ordering::Acquire);
        (l != 0).then_some(NodeId(l))
    }
}
