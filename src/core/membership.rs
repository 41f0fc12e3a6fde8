//! Cluster membership and quorum arithmetic.
//!
//! A `Membership` is either simple (one voter set) or joint (an incoming and
//! an outgoing voter set, both of which must agree). Learners receive the log
//! but never vote and never count toward a quorum. Every quorum question in
//! the core (election, commit, ReadIndex round, check-quorum, lease) is asked
//! through this module so joint consensus is handled in exactly one place.

use std::collections::BTreeSet;

use super::types::{LogIndex, NodeId};

/// The voting configuration of a group at one point of its log.
///
/// Invariant: `learners` is disjoint from `voters`. In a joint configuration
/// it may name outgoing voters: those keep their vote until the joint
/// configuration is left, then stay as learners (a demotion through
/// `ChangePeers`). `voters_outgoing` is empty unless the configuration is
/// joint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The (incoming, when joint) voter set.
    pub voters: BTreeSet<NodeId>,
    /// The outgoing voter set of a joint configuration; empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Non-voting members that receive the log.
    pub learners: BTreeSet<NodeId>,
}

/// A requested change of membership, proposed through the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a voter (single-server change).
    AddVoter(NodeId),
    /// Remove a voter or learner (single-server change).
    RemoveNode(NodeId),
    /// Add a learner (or demote a voter to learner, which is a single-server
    /// removal of its vote).
    AddLearner(NodeId),
    /// Replace the voter and learner sets at once. When more than one voter
    /// changes this goes through a joint configuration; the leader leaves the
    /// joint configuration by itself once it commits.
    ChangePeers {
        /// The new voter set.
        voters: BTreeSet<NodeId>,
        /// The new learner set.
        learners: BTreeSet<NodeId>,
    },
}

impl Membership {
    /// A simple configuration of `voters` and no learners.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), ..Membership::default() }
    }

    /// Whether this configuration is joint (two voter sets must agree).
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Whether `id` is a learner (an outgoing voter that is to become one
    /// still votes, so it is not one yet).
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) && !self.is_voter(id)
    }

    /// Whether `id` is a member in any role.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every member (voters of both halves and learners), in id order.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    /// Every voter of either half, in id order.
    pub fn all_voters(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all
    }

    /// Whether the nodes for which `yes` holds form a quorum: a majority of
    /// `voters` and, when joint, a majority of `voters_outgoing` too.
    /// An empty voter set has no quorum.
    pub fn has_quorum(&self, yes: impl Fn(NodeId) -> bool) -> bool {
        majority(&self.voters, &yes) && (!self.is_joint() || majority(&self.voters_outgoing, &yes))
    }

    /// The outcome of a vote count: `Some(true)` won, `Some(false)` lost,
    /// `None` still open. `vote(id)` is `Some(granted)` for answers received.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> Option<bool> {
        let a = vote_half(&self.voters, &vote);
        if !self.is_joint() {
            return a;
        }
        let b = vote_half(&self.voters_outgoing, &vote);
        match (a, b) {
            (Some(true), Some(true)) => Some(true),
            (Some(false), _) | (_, Some(false)) => Some(false),
            _ => None,
        }
    }

    /// The highest index replicated on a quorum, given each voter's match
    /// index. Joint configurations take the smaller of the two halves.
    pub fn committed_index(&self, matched: impl Fn(NodeId) -> LogIndex) -> LogIndex {
        let a = quorum_index(&self.voters, &matched);
        if self.is_joint() {
            a.min(quorum_index(&self.voters_outgoing, &matched))
        } else {
            a
        }
    }

    /// The configuration that results from applying `change` to this one,
    /// or a reason it is refused. Leaving a joint configuration is not a
    /// `ConfChange`; see [`Membership::leave_joint`].
    ///
    /// # Errors
    /// A description of why the change is not allowed (joint already, empty
    /// voter set, more than one voter changing without `ChangePeers`).
    pub fn apply_change(&self, change: &ConfChange) -> Result<Membership, &'static str> {
        if self.is_joint() {
            return Err("a joint configuration is still in effect");
        }
        let mut next = self.clone();
        match change {
            ConfChange::AddVoter(id) => {
                next.learners.remove(id);
                next.voters.insert(*id);
            }
            ConfChange::RemoveNode(id) => {
                next.learners.remove(id);
                next.voters.remove(id);
            }
            ConfChange::AddLearner(id) => {
                next.voters.remove(id);
                next.learners.insert(*id);
            }
            ConfChange::ChangePeers { voters, learners } => {
                if voters.iter().any(|v| learners.contains(v)) {
                    return Err("a node cannot be both voter and learner");
                }
                next.voters = voters.clone();
                next.learners = learners.clone();
                let changed = self.voters.symmetric_difference(voters).count();
                if changed > 1 {
                    // An outgoing voter named as a learner stays listed as
                    // one: it votes (as an outgoing voter) until the joint
                    // configuration is left, then remains a learner. Dropping
                    // it here lost the demotion (scenario
                    // membership/demote.txt).
                    next.voters_outgoing = self.voters.clone();
                }
            }
        }
        if next.voters.is_empty() {
            return Err("the change would leave no voters");
        }
        if next == *self {
            return Err("the configuration would not change");
        }
        Ok(next)
    }

    /// The simple configuration that leaves this joint one (incoming voters
    /// only). Learners that were outgoing voters and are named learners in
    /// the target stay learners; others leave.
    pub fn leave_joint(&self) -> Membership {
        Membership { voters: self.voters.clone(), voters_outgoing: BTreeSet::new(), learners: self.learners.clone() }
    }
}

fn majority(set: &BTreeSet<NodeId>, yes: &impl Fn(NodeId) -> bool) -> bool {
    !set.is_empty() && set.iter().filter(|id| yes(**id)).count() > set.len() / 2
}

fn vote_half(set: &BTreeSet<NodeId>, vote: &impl Fn(NodeId) -> Option<bool>) -> Option<bool> {
    if set.is_empty() {
        return Some(true);
    }
    let need = set.len() / 2 + 1;
    let (mut yes, mut no) = (0, 0);
    for id in set {
        match vote(*id) {
            Some(true) => yes += 1,
            Some(false) => no += 1,
            None => {}
        }
    }
    if yes >= need {
        Some(true)
    } else if no > set.len() - need {
        Some(false)
    } else {
        None
    }
}

fn quorum_index(set: &BTreeSet<NodeId>, matched: &impl Fn(NodeId) -> LogIndex) -> LogIndex {
    if set.is_empty() {
        // An empty half never constrains the other (used only for the
        // outgoing half of a simple configuration, which is not asked).
        return LogIndex(u64::MAX);
    }
    // Small sets (3, 5, 7 voters): a fixed-size sort is cheaper than a heap.
    let mut buf = [LogIndex(0); 16];
    let mut v: Vec<LogIndex>;
    let slice: &mut [LogIndex] = if set.len() <= buf.len() {
        for (slot, id) in buf.iter_mut().zip(set.iter()) {
            *slot = matched(*id);
        }
        &mut buf[..set.len()]
    } else {
        v = set.iter().map(|id| matched(*id)).collect();
        &mut v[..]
    };
    slice.sort_unstable_by(|a, b| b.cmp(a));
    slice[set.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().map(|x| NodeId(*x)).collect()
    }

    #[test]
    fn committed_index_takes_the_median_and_the_joint_minimum() {
        let m = Membership::new(ids(&[1, 2, 3]));
        let idx = |id: NodeId| LogIndex([0, 5, 7, 9][id.0 as usize]);
        assert_eq!(m.committed_index(idx), LogIndex(7));
        let joint = Membership { voters: ids(&[1, 2, 3]), voters_outgoing: ids(&[1, 4, 5]), learners: ids(&[]) };
        let idx = |id: NodeId| LogIndex([0, 9, 9, 9, 1, 2][id.0 as usize]);
        assert_eq!(joint.committed_index(idx), LogIndex(2));
    }

    #[test]
    fn joint_votes_need_both_halves() {
        let joint = Membership { voters: ids(&[1, 2, 3]), voters_outgoing: ids(&[3, 4, 5]), learners: ids(&[]) };
        assert_eq!(joint.vote_result(|id| if id.0 <= 2 { Some(true) } else { None }), None);
        assert_eq!(joint.vote_result(|id| Some(id.0 <= 4)), Some(true));
        assert_eq!(joint.vote_result(|id| Some(id.0 <= 3)), Some(false));
    }

    #[test]
    fn changes_of_more_than_one_voter_go_joint() {
        let m = Membership::new(ids(&[1, 2, 3]));
        let one = m.apply_change(&ConfChange::AddVoter(NodeId(4))).unwrap();
        assert!(!one.is_joint());
        let two = m.apply_change(&ConfChange::ChangePeers { voters: ids(&[1, 4, 5]), learners: ids(&[]) }).unwrap();
        assert!(two.is_joint());
        assert_eq!(two.leave_joint().voters, ids(&[1, 4, 5]));
        assert!(two.apply_change(&ConfChange::AddVoter(NodeId(6))).is_err());
        assert!(m.apply_change(&ConfChange::ChangePeers { voters: ids(&[]), learners: ids(&[]) }).is_err());
        assert!(m.apply_change(&ConfChange::AddVoter(NodeId(1))).is_err(), "re-adding a voter changes nothing");
        assert!(m.apply_change(&ConfChange::RemoveNode(NodeId(9))).is_err(), "removing a stranger changes nothing");
    }
}
