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
