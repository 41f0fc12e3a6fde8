//! Leader election: pre-vote, vote, the lease that makes followers refuse
//! disruptive candidates, and becoming leader (with its no-op entry).

use super::message::{Entry, MessageBody, Payload};
use super::progress::Progress;
use super::raft::RaftCore;
use super::ready::Role;
use super::types::{LogIndex, NodeId, Term};

impl RaftCore {
    /// The election timer fired.
    pub(crate) fn on_election_timeout(&mut self) {
        if !self.promotable() {
            // Learners and removed nodes never campaign; re-arm so the driver
            // is not asked to tick in a loop.
            self.reset_election_deadline();
            return;
        }
        if self.cfg.pre_vote {
            self.pre_campaign();
        } else {
            self.campaign(false);
        }
    }

    fn pre_campaign(&mut self) {
        log::debug!("{} term {}: pre-campaign", self.cfg.id, self.term);
        self.role = Role::PreCandidate;
        self.leader = NodeId::NONE;
        self.votes.clear();
        self.reset_election_deadline();
        self.request_votes(true, false);
    }

    /// Starts a real election in `term + 1`. `transfer` marks a campaign
    /// started by `TimeoutNow`, which voters honour despite a leader's lease.
    pub(crate) fn campaign(&mut self, transfer: bool) {
        log::debug!("{} term {}: campaign (transfer {})", self.cfg.id, self.term, transfer);
        let term = Term(self.term.0 + 1);
        self.set_hard_state(term, self.cfg.id);
        self.role = Role::Candidate;
        self.leader = NodeId::NONE;
        self.votes.clear();
        self.reset_election_deadline();
        self.request_votes(false, transfer);
    }

    fn request_votes(&mut self, pre: bool, transfer: bool) {
        let id = self.cfg.id;
        self.votes.insert(id, true);
        if self.tally() == Some(true) {
            self.on_election_won(pre);
            return;
        }
        let (last_log_term, last_log_index) = (self.log.last_term(), self.log.last_index());
        let voters: Vec<NodeId> = self.membership().all_voters().into_iter().filter(|v| *v != id).collect();
        for to in voters {
            let body = if pre {
                MessageBody::PreVote { last_log_term, last_log_index }
            } else {
                MessageBody::Vote { last_log_term, last_log_index, transfer }
            };
            let term = if pre { Term(self.term.0 + 1) } else { self.term };
            let msg = super::message::Message { group: self.cfg.group, from: id, to, term, body };
            self.send_msg(msg);
        }
    }

    fn tally(&self) -> Option<bool> {
        self.membership().vote_result(|id| self.votes.get(&id).copied())
    }

    fn on_election_won(&mut self, pre: bool) {
        if pre {
            self.campaign(false);
        } else {
            self.become_leader();
        }
    }

    /// A pre-vote request (term is the candidate's would-be term).
    pub(crate) fn on_pre_vote(&mut self, from: NodeId, term: Term, last_term: Term, last_index: LogIndex) {
        let grant = term > self.term && !self.in_lease() && self.log.is_up_to_date(last_term, last_index);
        if grant {
            // The answer carries the candidate's term so it counts it.
            let body = MessageBody::PreVoteResponse { granted: true };
            let msg = super::message::Message { group: self.cfg.group, from: self.cfg.id, to: from, term, body };
            self.send_msg(msg);
        } else {
            self.send(from, MessageBody::PreVoteResponse { granted: false });
        }
    }

    /// A vote request in the current term.
    pub(crate) fn on_vote(&mut self, from: NodeId, last_term: Term, last_index: LogIndex) {
        let free = self.vote == from || (self.vote == NodeId::NONE && self.leader == NodeId::NONE);
        let free = free || self.cfg.mutant_is("double-vote") && self.role != Role::Leader;
        let up_to_date = self.log.is_up_to_date(last_term, last_index) || self.cfg.mutant_is("skip-up-to-date");
        let grant = free && up_to_date && self.role != Role::Leader;
        if grant {
            self.set_hard_state(self.term, from);
            self.reset_election_deadline();
        }
        // A grant depends on the vote: it waits until the vote is durable.
        // `send` only holds messages while the hard state is dirty, which
        // misses a repeated request (duplicate or retry) granted again
        // while the first write is still in flight; found by the simulator
        // (seed 11: a duplicated Vote was granted twice, the second answer
        // left before the vote was on disk). A persisted message of a ready
        // is released after every earlier write, so this is always safe.
        let body = MessageBody::VoteResponse { granted: grant };
        if grant {
            let msg =
                super::message::Message { group: self.cfg.group, from: self.cfg.id, to: from, term: self.term, body };
            self.ready.persisted_messages.push(msg);
        } else {
            self.send(from, body);
        }
    }

    /// An answer to this node's (pre-)vote request.
    pub(crate) fn on_vote_response(&mut self, from: NodeId, term: Term, granted: bool, pre: bool) {
        let expected = match self.role {
            Role::PreCandidate if pre => Term(self.term.0 + 1),
            Role::Candidate if !pre => self.term,
            _ => return,
        };
        // A pre-vote refusal carries the refuser's own term, not ours + 1.
        let refusal = pre && !granted;
        if term != expected && !refusal {
            return;
        }
        self.votes.insert(from, granted);
        match self.tally() {
            Some(true) => self.on_election_won(pre),
            Some(false) => {
                log::debug!("{} term {}: lost the election", self.cfg.id, self.term);
                self.become_follower(self.term, NodeId::NONE);
            }
            None => {}
        }
    }

    /// Leader transfer: the leader asks this node to campaign now.
    pub(crate) fn on_timeout_now(&mut self, from: NodeId) {
        if self.role == Role::Leader || !self.promotable() || from != self.leader {
            return;
        }
        log::info!("{} term {}: TimeoutNow from {}, campaigning", self.cfg.id, self.term, from);
        self.campaign(true);
    }

    /// Takes the lead of the group in the current term.
    pub(crate) fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "only a candidate becomes leader");
        log::info!("{} term {}: became leader", self.cfg.id, self.term);
        self.role = Role::Leader;
        self.leader = self.cfg.id;
        // Still dirty: the election was won within this input, before the
        // term was handed out for writing (see `term_unsynced`).
        self.term_unsynced = self.hard_state_dirty;
        self.votes.clear();
        self.committed_in_term = false;
        self.transfer = None;
        self.commit_mark = self.log.committed;
        self.committed_per_timeout = 0;
        self.election_deadline = super::types::Time::NEVER;
        self.heartbeat_deadline = self.now;
        self.check_quorum_deadline = self.now.plus_ms(self.cfg.election_timeout_min_ms);
        self.reads.reset_for_new_term();
        self.progress.clear();
        self.sync_progress_with_membership();
        let noop = Entry { term: self.term, index: self.log.last_index().next(), payload: Payload::Noop };
        self.append_local(vec![noop]);
        self.broadcast_pending = true;
    }

    /// Adds progress for new members and drops it for removed ones.
    pub(crate) fn sync_progress_with_membership(&mut self) {
        let members = self.membership().members();
        let last = self.log.last_index();
        let id = self.cfg.id;
        let now = self.now;
        self.progress.retain(|n, _| members.contains(n));
        for m in members {
            if m != id {
                self.progress.entry(m).or_insert_with(|| Progress::new(last, now));
            }
        }
    }

    /// Appends entries the leader created to its own log.
    pub(crate) fn append_local(&mut self, entries: Vec<Entry>) {
        let confs: Vec<(LogIndex, super::membership::Membership)> = entries
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Config(m) => Some((e.index, m.clone())),
                _ => None,
            })
            .collect();
        self.log.append(entries.clone());
        self.push_append_op(entries);
        for (i, m) in confs {
            self.on_conf_appended(i, m);
        }
    }
}
