//! Log replication: proposals, pipelined AppendEntries with batching limits,
//! fast backtracking on refusal, heartbeats, the ballot box (commit by quorum
//! of durable copies, current-term entries only) and asynchronous persistence
//! and apply.

use bytes::Bytes;

use super::message::{Entry, MessageBody, Payload, RejectHint};
use super::progress::ReplState;
use super::raft::RaftCore;
use super::ready::{PersistPoint, Role};
use super::types::{LogIndex, NodeId, Term};

/// The least lag (in entries behind the commit index) a learner may have
/// and still be made a voter; the allowed lag grows to what the group
/// commits in one election timeout when that is more.
pub const PROMOTE_SLACK_MIN: u64 = 1000;

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This node does not lead; `leader` is the one it knows of (or NONE).
    NotLeader {
        /// The leader hint.
        leader: NodeId,
    },
    /// A leader transfer is in progress; retry once it ends.
    TransferInProgress,
    /// A membership change is still uncommitted (one at a time).
    ConfChangeInProgress,
    /// The membership change is not valid from the current configuration.
    InvalidConfChange(&'static str),
    /// A removal named a node that is neither voter nor learner.
    NotAMember(NodeId),
    /// The change would make `node` a voter before it is ready to vote
    /// (see [`RaftCore::voter_ready`](crate::core::RaftCore::voter_ready)).
    VoterNotReady {
        /// The node.
        node: NodeId,
        /// Why.
        why: NotReady,
    },
}

/// Why a node may not become a voter yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// It is not a learner of the current configuration: a new voter is
    /// first added as a learner and catches up.
    NotALearner,
    /// It lags the commit index by more than `slack` entries, or it has not
    /// answered the leader within an election timeout (`heard` false).
    Behind {
        /// Its match index on the leader.
        matched: LogIndex,
        /// The leader's commit index.
        commit: LogIndex,
        /// The most entries a new voter may lag.
        slack: u64,
        /// It answered the leader within the last election timeout.
        heard: bool,
    },
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotLeader { leader } if leader.is_some() => {
                write!(f, "not the leader (leader is {leader})")
            }
            ProposeError::NotLeader { .. } => write!(f, "not the leader (no leader known)"),
            ProposeError::TransferInProgress => write!(f, "leader transfer in progress"),
            ProposeError::ConfChangeInProgress => {
                write!(f, "a membership change is already in progress")
            }
            ProposeError::InvalidConfChange(why) => write!(f, "invalid membership change: {why}"),
            ProposeError::NotAMember(node) => write!(f, "node {node} is not a member (neither voter nor learner)"),
            ProposeError::VoterNotReady { node, why: NotReady::NotALearner } => write!(
                f,
                "node {node} is not a learner: add it with add-learner first, wait until it has caught up, then \
                 promote it"
            ),
            ProposeError::VoterNotReady { node, why: NotReady::Behind { matched, commit, slack, heard } } => {
                let lag = commit.0.saturating_sub(matched.0);
                write!(f, "node {node} is {lag} entries behind the commit index {commit} (match index {matched}); ")?;
                if *heard {
                    write!(
                        f,
                        "a new voter may lag by at most {slack} (what the group commits in an election timeout, at \
                         least {PROMOTE_SLACK_MIN}); retry once it has caught up"
                    )
                } else {
                    write!(
                        f,
                        "it has not answered the leader within an election timeout: is it running, and is its address \
                         right? Retry once it answers"
                    )
                }
            }
        }
    }
}

impl std::error::Error for ProposeError {}

impl RaftCore {
    /// Checks that this node may accept a proposal now.
    pub(crate) fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        Ok(())
    }

    /// Appends one application entry; returns its index. The entry is sent
    /// to followers at the next `take_ready`, with everything else proposed
    /// before it.
    ///
    /// # Errors
    /// `NotLeader` (with a hint) or `TransferInProgress`.
    pub fn propose(&mut self, data: Bytes) -> Result<LogIndex, ProposeError> {
        self.propose_batch(std::iter::once(data)).map(|(_, last)| last)
    }

    /// Appends many application entries; returns the first and last index.
    ///
    /// # Errors
    /// `NotLeader` (with a hint) or `TransferInProgress`.
    pub fn propose_batch(
        &mut self,
        batch: impl IntoIterator<Item = Bytes>,
    ) -> Result<(LogIndex, LogIndex), ProposeError> {
        self.check_can_propose()?;
        let first = self.log.last_index().next();
        let mut index = first;
        let term = self.term;
        let entries: Vec<Entry> = batch
            .into_iter()
            .map(|data| {
                let e = Entry { term, index, payload: Payload::Normal(data) };
                index = index.next();
                e
            })
            .collect();
        if entries.is_empty() {
            return Ok((first, first.prev()));
        }
        self.append_local(entries);
        self.broadcast_pending = true;
        Ok((first, self.log.last_index()))
    }

    /// Sends whatever each peer is missing, as far as its window allows.
    pub(crate) fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_appends(peer);
        }
    }

    /// Sends appends to `peer` until it is up to date or its window is full.
    pub(crate) fn send_appends(&mut self, peer: NodeId) {
        while self.maybe_send_append(peer, false) {}
    }

    /// Sends one append to `peer` if it needs one and its window allows.
    /// `probe_empty` sends even with no entries (to find the match point).
    /// Returns whether a message was sent.
    pub(crate) fn maybe_send_append(&mut self, peer: NodeId, probe_empty: bool) -> bool {
        let (inflight_max, count_max, bytes_max) =
            (self.cfg.inflight_msgs_max, self.cfg.append_entries_max, self.cfg.append_bytes_max);
        let Some(pr) = self.progress.get(&peer) else {
            return false;
        };
        if !pr.can_send(inflight_max) {
            return false;
        }
        let next = pr.next;
        let prev = next.prev();
        let Some(prev_term) = self.log.term_at(prev) else {
            self.start_snapshot_send(peer);
            return false;
        };
        let last = self.log.last_index();
        let entries = self.log.slice(next, last, count_max, bytes_max);
        if entries.is_empty() && pr.state == ReplState::Replicate && !probe_empty {
            return false;
        }
        if entries.is_empty() && pr.state == ReplState::Probe && !probe_empty && pr.matched >= last {
            return false;
        }
        let sent_last = entries.last().map(|e| e.index).unwrap_or(prev);
        let commit = self.log.committed;
        let pr = self.progress.get_mut(&peer).expect("progress checked above");
        pr.on_sent(sent_last);
        pr.commit_sent = commit;
        let body = MessageBody::AppendEntries { prev_log_index: prev, prev_log_term: prev_term, entries, commit };
        self.send(peer, body);
        sent_last > prev
    }

    /// Starts a heartbeat round to every member; the round also confirms
    /// leadership for pending reads.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let round = self.reads.start_round(self.now);
        let committed = self.log.committed;
        let mut peers = Vec::with_capacity(self.progress.len());
        for (n, p) in self.progress.iter_mut() {
            p.commit_sent = committed.min(p.matched);
            peers.push((*n, p.commit_sent));
        }
        for (peer, commit) in peers {
            self.send(peer, MessageBody::Heartbeat { commit, read_round: round });
        }
        self.maybe_confirm_reads();
    }

    /// Tells peers that got no append in this batch about a commit index
    /// they have not heard of, so followers apply (and serve follower reads)
    /// without waiting for the next heartbeat.
    pub(crate) fn propagate_commit(&mut self) {
        let committed = self.log.committed;
        let round = self.reads.current_round();
        let mut peers = Vec::new();
        for (n, p) in self.progress.iter_mut() {
            let commit = committed.min(p.matched);
            if commit > p.commit_sent {
                p.commit_sent = commit;
                peers.push((*n, commit));
            }
        }
        for (peer, commit) in peers {
            self.send(peer, MessageBody::Heartbeat { commit, read_round: round });
        }
    }

    /// A follower's answer to an append.
    pub(crate) fn on_append_response(&mut self, from: NodeId, match_index: LogIndex, reject: Option<RejectHint>) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.heard(now);
        let last = self.log.last_index();
        if reject.is_none() && match_index > last {
            log::warn!("{}: ignoring an ack of {} from {}: the log ends at {}", self.cfg.id, match_index, from, last);
            return;
        }
        match reject {
            None => {
                if pr.on_ack(match_index, now) {
                    self.maybe_commit();
                    self.maybe_send_timeout_now(from);
                }
                self.send_appends(from);
            }
            Some(hint) => {
                let stale = match pr.state {
                    ReplState::Replicate => hint.rejected_index <= pr.matched,
                    ReplState::Probe => hint.rejected_index != pr.next.prev(),
                    ReplState::Snapshot { .. } => true,
                };
                if stale {
                    return;
                }
                let next = self.next_after_reject(hint);
                let pr = self.progress.get_mut(&from).expect("progress checked above");
                // Never past our own log end: a hint is network input.
                let next = next.min(hint.rejected_index).min(last.next()).max(pr.matched.next());
                pr.become_probe(next, now);
                self.maybe_send_append(from, true);
            }
        }
    }

    /// Where to resume after a refusal: skip the follower's whole conflicting
    /// term in one step.
    fn next_after_reject(&self, hint: RejectHint) -> LogIndex {
        if hint.conflict_term == Term(0) {
            return hint.conflict_index;
        }
        match self.log.last_index_of_term(hint.conflict_term, hint.rejected_index) {
            Some(i) => i.next(),
            None => hint.conflict_index,
        }
    }

    /// Raises the commit index to what a quorum holds durably, if the entry
    /// there is of the current term (Raft §5.4.2).
    pub(crate) fn maybe_commit(&mut self) {
        let id = self.cfg.id;
        let own = if self.cfg.mutant_is("ack-before-persist") { self.log.last_index() } else { self.log.persisted };
        let quorum = {
            let progress = &self.progress;
            self.membership().committed_index(|n| {
                if n == id {
                    own
                } else {
                    progress.get(&n).map(|p| p.matched).unwrap_or_default()
                }
            })
        };
        let quorum = quorum.min(self.log.last_index());
        if quorum <= self.log.committed {
            return;
        }
        let current = self.log.term_at(quorum) == Some(self.term);
        if !current && !self.cfg.mutant_is("commit-prev-term") {
            return;
        }
        let from = self.log.committed;
        self.log.commit_to(quorum);
        if current && !self.committed_in_term {
            self.committed_in_term = true;
            // The first commit of the term carries the whole log the leader
            // inherited: the commit rate is measured from here (the promote
            // slack, `voter_ready`), not from the recovered commit index.
            self.commit_mark = self.log.committed;
            self.committed_per_timeout = 0;
        }
        self.on_commit_advanced(from);
        // Followers learn the new commit index with the next append or
        // heartbeat; pipelined appends carry it without a separate round.
        self.broadcast_pending = true;
    }

    /// Reacts to entries in `(from, committed]` becoming committed on a leader.
    fn on_commit_advanced(&mut self, from: LogIndex) {
        self.release_reads_waiting_for_commit();
        self.on_conf_committed(from);
    }

    // --- follower side ----------------------------------------------------------

    /// Replicated entries from the leader.
    pub(crate) fn on_append(
        &mut self,
        from: NodeId,
        prev: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
    ) {
        if let Err(why) = check_append_shape(self.term, prev, prev_term, &entries) {
            // Only a broken or hostile sender produces this; refusing it here
            // keeps the log's internal assertions about network input.
            log::warn!("{}: dropping malformed append from {}: {}", self.cfg.id, from, why);
            return;
        }
        self.on_leader_contact(from);
        if prev < self.log.committed {
            // The prefix up to our commit index matches the leader's; skip it.
            let committed = self.log.committed;
            let last = entries.last().map(|e| e.index).unwrap_or(prev);
            let rest: Vec<Entry> = entries.into_iter().filter(|e| e.index > committed).collect();
            let prev_term = self.log.term_at(committed).unwrap_or_default();
            if rest.is_empty() {
                self.note_leader_match(last.min(committed));
                self.reply_append(true);
                return;
            }
            return self.on_append(from, committed, prev_term, rest, commit);
        }
        if self.log.term_at(prev) != Some(prev_term) {
            let hint = self.reject_hint(prev);
            log::debug!("{}: refusing append at {} (term {}): hint {:?}", self.cfg.id, prev, prev_term, hint);
            let body = MessageBody::AppendEntriesResponse { match_index: self.log.last_index(), reject: Some(hint) };
            self.send(from, body);
            return;
        }
        let last = entries.last().map(|e| e.index).unwrap_or(prev);
        let (written, truncated) = self.log.append_from_leader(entries);
        if let Some(at) = truncated {
            self.on_log_truncated(at);
        }
        if !written.is_empty() {
            for e in &written {
                if let Payload::Config(m) = &e.payload {
                    self.on_conf_appended(e.index, m.clone());
                }
            }
            self.push_append_op(written);
        }
        self.note_leader_match(last);
        let new_commit = commit.min(last);
        self.log.commit_to(new_commit.max(self.log.committed));
        self.reply_append(true);
    }

    fn reject_hint(&self, prev: LogIndex) -> RejectHint {
        let last = self.log.last_index();
        if prev > last {
            return RejectHint { rejected_index: prev, conflict_term: Term(0), conflict_index: last.next() };
        }
        let term = self.log.term_at(prev).unwrap_or_default();
        RejectHint { rejected_index: prev, conflict_term: term, conflict_index: self.log.first_index_of_term_at(prev) }
    }

    fn note_leader_match(&mut self, index: LogIndex) {
        if index > self.leader_match {
            self.leader_match = index;
        }
    }

    /// Acknowledges what is both durable and known to match the leader.
    /// `force` answers even when nothing new became durable, as long as the
    /// whole matched prefix is (a probe or a duplicate must get an answer);
    /// otherwise the answer comes with `on_persisted`.
    fn reply_append(&mut self, force: bool) {
        if !self.leader.is_some() {
            return;
        }
        let durable = if self.cfg.mutant_is("ack-before-persist") { self.log.last_index() } else { self.log.persisted };
        let ack = self.leader_match.min(durable);
        // Answering an append, wait until all it matched is durable: a
        // partial ack of an older durable prefix would make a probing leader
        // switch to replicate at `ack + 1` and send the same entries again
        // (seen on every leader change, scenario election/check_quorum.txt).
        // `on_persisted` answers as the prefix becomes durable.
        let send = if force { ack >= self.leader_match } else { ack > self.acked };
        if send {
            self.acked = self.acked.max(ack);
            let body = MessageBody::AppendEntriesResponse { match_index: ack, reject: None };
            self.send(self.leader, body);
        }
    }

    /// A heartbeat from the leader.
    pub(crate) fn on_heartbeat(&mut self, from: NodeId, commit: LogIndex, read_round: u64) {
        self.on_leader_contact(from);
        let commit = commit.min(self.log.last_index());
        self.log.commit_to(commit.max(self.log.committed));
        self.send(from, MessageBody::HeartbeatResponse { read_round });
    }

    /// A follower's answer to a heartbeat.
    pub(crate) fn on_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let now = self.now;
        let stall_ms = 2 * self.cfg.heartbeat_interval_ms;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.heard(now);
        pr.read_round_acked = pr.read_round_acked.max(read_round);
        let behind = pr.matched < last;
        match pr.state {
            ReplState::Probe => pr.probe_sent = false,
            // A pipeline with appends in flight and no ack for a while lost
            // one (or the peer restarted): find the match point again.
            ReplState::Replicate if !pr.inflight.is_empty() && now >= pr.last_progress_at.plus_ms(stall_ms) => {
                let next = pr.matched.next();
                pr.become_probe(next, now);
            }
            _ => {}
        }
        let state = pr.state;
        self.maybe_confirm_reads();
        match state {
            ReplState::Snapshot { .. } => self.maybe_resend_snapshot(from),
            ReplState::Probe if behind => {
                self.maybe_send_append(from, true);
            }
            ReplState::Replicate if behind => self.send_appends(from),
            _ => {}
        }
    }

    /// Heard from the current leader: refresh the lease and the election
    /// timer.
    pub(crate) fn on_leader_contact(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.leader != from {
            self.become_follower(self.term, from);
        }
        self.leader_contact = self.now;
        self.reset_election_deadline();
    }

    // --- persistence and apply ----------------------------------------------------

    /// The driver made the log durable up to `point.index` (whose entry
    /// has `point.term`), together with every write handed out before it.
    pub fn on_persisted(&mut self, point: PersistPoint) {
        let term = point.term;
        // The mutant passes every report as the newest write (defect 04).
        let point =
            if self.cfg.mutant_is("persist-ack-aba") { PersistPoint { write: u64::MAX, ..point } } else { point };
        if !self.log.persist(point) {
            return;
        }
        if term == self.term {
            // An entry of this term is durable, so is the term itself.
            self.term_unsynced = false;
        }
        match self.role {
            Role::Leader => self.maybe_commit(),
            _ => self.reply_append(false),
        }
    }

    /// The state machine applied every entry up to `index`.
    pub fn on_applied(&mut self, index: LogIndex) {
        if index > self.log.applied {
            self.log.applied = index;
        }
    }
}

/// Checks what a well-behaved leader of `term` always sends: entries
/// consecutive from `prev + 1`, terms not decreasing, none before
/// `prev_term` or after `term`.
fn check_append_shape(term: Term, prev: LogIndex, prev_term: Term, entries: &[Entry]) -> Result<(), String> {
    if prev_term > term {
        return Err(format!("prev_log_term {prev_term} is after the message term {term}"));
    }
    let mut expect = prev.next();
    let mut last_term = prev_term;
    for e in entries {
        if e.index != expect {
            return Err(format!("entry index {} where {} was expected", e.index, expect));
        }
        if e.term < last_term || e.term > term {
            return Err(format!("entry {} has term {} (previous {}, message {})", e.index, e.term, last_term, term));
        }
        expect = expect.next();
        last_term = e.term;
    }
    Ok(())
}

#[cfg(test)]
mod shape_tests {
    use super::*;

    fn e(index: u64, term: u64) -> Entry {
        Entry { term: Term(term), index: LogIndex(index), payload: Payload::Noop }
    }

    #[test]
    fn malformed_appends_are_recognised() {
        let ok = check_append_shape(Term(3), LogIndex(4), Term(2), &[e(5, 2), e(6, 3)]);
        assert!(ok.is_ok());
        assert!(check_append_shape(Term(3), LogIndex(4), Term(2), &[e(6, 2)]).is_err(), "gap");
        assert!(check_append_shape(Term(3), LogIndex(4), Term(2), &[e(5, 3), e(6, 2)]).is_err(), "term decreases");
        assert!(check_append_shape(Term(3), LogIndex(4), Term(2), &[e(5, 4)]).is_err(), "term from the future");
        assert!(check_append_shape(Term(3), LogIndex(4), Term(5), &[]).is_err(), "prev term from the future");
    }
}
