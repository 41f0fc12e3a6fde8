//! Membership changes (single-server and joint consensus) and leader
//! transfer.
//!
//! A configuration takes effect on each node when its entry is appended
//! (`RaftCore::on_conf_appended`) and is reverted if that entry is truncated.
//! One change is in flight at a time: a new one is refused until the last
//! configuration entry is committed and any joint configuration has been
//! left. The leader leaves a joint configuration on its own once it commits,
//! and steps down once a configuration that no longer makes it a voter
//! commits.

use super::membership::ConfChange;
use super::message::{Entry, MessageBody, Payload};
use super::raft::{RaftCore, Transfer};
use super::ready::Role;
use super::replication::{NotReady, ProposeError, PROMOTE_SLACK_MIN};
use super::types::{LogIndex, NodeId, Time};

/// Why a leader transfer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// This node does not lead; `leader` is the one it knows of.
    NotLeader {
        /// The leader hint.
        leader: NodeId,
    },
    /// The target is not a voter of the current configuration.
    NotAVoter(NodeId),
    /// No target was named and this leader is the only voter.
    NoOtherVoter,
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::NotLeader { leader } => {
                write!(f, "not the leader (leader hint {leader})")
            }
            TransferError::NotAVoter(n) => write!(f, "node {n} is not a voter"),
            TransferError::NoOtherVoter => write!(f, "this leader is the only voter: no one to hand leadership to"),
        }
    }
}

impl std::error::Error for TransferError {}

impl RaftCore {
    /// Whether a configuration change is still in flight.
    pub fn conf_change_pending(&self) -> bool {
        self.membership().is_joint() || self.conf_log.last().is_some_and(|(i, _)| *i > self.log.committed)
    }

    /// Proposes a membership change; returns the index of its entry.
    ///
    /// # Errors
    /// `NotLeader`, `TransferInProgress`, `ConfChangeInProgress`, or
    /// `InvalidConfChange` with the reason.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        // A new leader may not know of a configuration the previous leader
        // appended (and others adopted) but never committed; changing its
        // own older configuration could then run two configurations that
        // each differ from a common one by a server, with disjoint quorums
        // (Ongaro, raft-dev 2015). Committing an entry of its own term first
        // settles which configuration it builds on. Found by the simulator
        // (seed 212214 at 20000 steps): leaders of terms 6 and 7 demoted
        // different voters of {1,2,4,5} and each committed with a disjoint
        // quorum.
        if self.conf_change_pending() || !self.committed_in_term {
            return Err(ProposeError::ConfChangeInProgress);
        }
        if let ConfChange::RemoveNode(id) = change {
            if !self.membership().members().contains(&id) {
                return Err(ProposeError::NotAMember(id));
            }
        }
        let next = self.membership().apply_change(&change).map_err(ProposeError::InvalidConfChange)?;
        if self.cfg.check_new_voters {
            for &node in next.voters.difference(&self.membership().voters) {
                self.voter_ready(node).map_err(|why| ProposeError::VoterNotReady { node, why })?;
            }
        }
        log::info!("{} term {}: proposing membership {:?}", self.cfg.id, self.term, next);
        let index = self.log.last_index().next();
        self.append_local(vec![Entry { term: self.term, index, payload: Payload::Config(next) }]);
        self.broadcast_pending = true;
        Ok(index)
    }

    /// Whether `node` may become a voter now (Ongaro's thesis, §4.2.1: a
    /// new server catches up as a non-voting member first, so that adding
    /// it does not leave the group unable to commit while it copies the
    /// log). It must be a learner of the current configuration, have
    /// answered this leader within the last election timeout, and lag the
    /// commit index by at most what the group commits in one election
    /// timeout (at least [`PROMOTE_SLACK_MIN`] entries): the rest of its
    /// catch-up then takes about a round.
    ///
    /// # Errors
    /// The reason, with the lag.
    pub fn voter_ready(&self, node: NodeId) -> Result<(), NotReady> {
        if self.cfg.mutant_is("promote-unchecked") {
            return Ok(());
        }
        if !self.membership().learners.contains(&node) {
            return Err(NotReady::NotALearner);
        }
        let commit = self.log.committed;
        let matched = self.progress.get(&node).map_or(LogIndex(0), |p| p.matched);
        let heard = self.heard_recently(node);
        let slack = PROMOTE_SLACK_MIN.max(self.committed_per_timeout);
        if heard && matched.0 + slack >= commit.0 {
            return Ok(());
        }
        Err(NotReady::Behind { matched, commit, slack, heard })
    }

    /// Reacts to the commit index advancing from `from`: leaves a committed
    /// joint configuration, steps down if a newly committed one removed us.
    pub(crate) fn on_conf_committed(&mut self, from: LogIndex) {
        let committed = self.log.committed;
        let Some((latest_index, latest)) = self.conf_log.last().cloned() else {
            return;
        };
        if latest_index > committed || self.role != Role::Leader {
            return;
        }
        // A committed joint configuration is left even if it committed
        // before this leader took over: the previous leader may have died
        // before its leave entry got out, and nobody else would ever leave
        // it (scenario membership/joint_new_leader.txt). Once the leave
        // entry is appended the latest configuration is simple, so this
        // happens once.
        if latest.is_joint() {
            let index = self.log.last_index().next();
            let simple = latest.leave_joint();
            log::info!(
                "{} term {}: joint configuration committed, leaving it for {:?}",
                self.cfg.id,
                self.term,
                simple
            );
            self.append_local(vec![Entry { term: self.term, index, payload: Payload::Config(simple) }]);
            self.broadcast_pending = true;
        } else if latest_index > from && !latest.is_voter(self.cfg.id) {
            log::info!("{} term {}: removed from the voters, stepping down", self.cfg.id, self.term);
            self.hand_over_before_leaving(&latest);
            self.become_follower(self.term, NodeId::NONE);
        }
    }

    /// A leader leaving the voters tells the others the commit index (so
    /// the configuration that removed it is known committed) and sends
    /// TimeoutNow to a voter of the new configuration whose log is complete,
    /// so the group does not wait an election timeout for a new leader.
    fn hand_over_before_leaving(&mut self, next: &super::membership::Membership) {
        self.propagate_commit();
        let last = self.log.last_index();
        let successor = next.voters.iter().copied().find(|v| self.progress.get(v).is_some_and(|p| p.matched == last));
        if let Some(v) = successor {
            log::info!("{} term {}: handing leadership to {}", self.cfg.id, self.term, v);
            self.send(v, MessageBody::TimeoutNow);
        }
    }

    /// Hands leadership to `target` (or, for `NodeId::NONE`, to the most
    /// caught-up live voter: see `best_transfer_target`): catch it up, then send
    /// TimeoutNow. Proposals are refused until the transfer ends (the
    /// target wins, or an election timeout passes). Returns the target.
    ///
    /// # Errors
    /// `NotLeader`, `NotAVoter`, or `NoOtherVoter` (no target named and no
    /// other voter).
    pub fn transfer_leader(&mut self, now: Time, target: NodeId) -> Result<NodeId, TransferError> {
        self.advance_clock(now);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { leader: self.leader });
        }
        let target = if target.is_some() { target } else { self.best_transfer_target()? };
        if target == self.cfg.id {
            return Ok(target);
        }
        if !self.membership().is_voter(target) {
            return Err(TransferError::NotAVoter(target));
        }
        if self.transfer.is_some_and(|t| t.target == target) {
            return Ok(target);
        }
        log::info!("{} term {}: transferring leadership to {}", self.cfg.id, self.term, target);
        let deadline = self.now.plus_ms(self.cfg.election_timeout_min_ms);
        self.transfer = Some(Transfer { target, deadline, timeout_now_sent: false });
        self.maybe_send_timeout_now(target);
        self.send_appends(target);
        Ok(target)
    }

    /// Whether `node` answered this leader within the last election timeout.
    fn heard_recently(&self, node: NodeId) -> bool {
        let window_us = self.cfg.election_timeout_min_ms * 1000;
        self.progress.get(&node).and_then(|p| p.heard_at).is_some_and(|t| self.now.0.saturating_sub(t.0) <= window_us)
    }

    /// The other voter best placed to lead: one that answered within the
    /// last election timeout before one that did not (a dead voter's frozen
    /// match index must not win), then the highest match index, then the
    /// most recently heard from, then the lowest id.
    fn best_transfer_target(&self) -> Result<NodeId, TransferError> {
        let me = self.cfg.id;
        self.membership()
            .voters
            .iter()
            .filter(|v| **v != me)
            .map(|v| {
                let p = self.progress.get(v);
                let matched = p.map_or(LogIndex(0), |p| p.matched);
                let heard = p.and_then(|p| p.heard_at).map_or(0, |t| t.0);
                (self.heard_recently(*v), matched, heard, std::cmp::Reverse(*v))
            })
            .max()
            .map(|(_, _, _, std::cmp::Reverse(v))| v)
            .ok_or(TransferError::NoOtherVoter)
    }

    /// Sends TimeoutNow to the transfer target once its log is complete.
    pub(crate) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let Some(t) = self.transfer else { return };
        if t.target != peer || t.timeout_now_sent {
            return;
        }
        if self.progress.get(&peer).is_none_or(|p| p.matched < self.log.last_index()) {
            return;
        }
        if !self.cfg.mutant_is("lease-after-timeout-now") {
            // The target may win an election that bypasses every follower's
            // lease check: this leader's lease means nothing from now on.
            self.reads.disable_lease();
        }
        self.transfer = Some(Transfer { timeout_now_sent: true, ..t });
        self.send(peer, MessageBody::TimeoutNow);
    }
}
