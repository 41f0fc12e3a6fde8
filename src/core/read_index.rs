//! Linearizable reads without log writes: ReadIndex (every read that arrives
//! in one batch shares one heartbeat round), lease reads, and follower reads
//! (a follower asks the leader for a read index).
//!
//! A heartbeat round is numbered; a peer's answer to round `r` also vouches
//! for every earlier round. Round `r` is confirmed when a quorum has answered
//! `r` or later. The lease runs from the *send* time of the latest confirmed
//! round for `election_timeout_min - lease_drift` and ends at once when the
//! leader sends TimeoutNow or stops leading.

use super::message::MessageBody;
use super::raft::RaftCore;
use super::read::{PendingRead, ReadMode, Reader};
use super::ready::{ReadState as Confirmed, Role};
use super::types::{LogIndex, NodeId, ReadId, Time};

impl RaftCore {
    /// Asks for a read index. The answer arrives in `Ready::read_states`
    /// (serve the read once `index` is applied) or `Ready::failed_reads`.
    /// On a follower the read is forwarded to the leader (follower read).
    pub fn read_index(&mut self, now: Time, id: ReadId, mode: ReadMode) {
        self.advance_clock(now);
        match self.role {
            Role::Leader => {
                if mode == ReadMode::Lease && self.lease_valid() {
                    self.ready.read_states.push(Confirmed { id, index: self.log.committed });
                } else {
                    self.queue_read(Reader::Local(id));
                }
            }
            _ if self.leader.is_some() => self.reads.forward_queue.push(id),
            _ => self.ready.failed_reads.push(id),
        }
    }

    /// Whether the leader may answer reads from its lease right now.
    pub fn lease_valid(&self) -> bool {
        self.role == Role::Leader
            && self.committed_in_term
            && !self.reads.lease_disabled
            && self.reads.lease_start.is_some_and(|start| self.now < start.plus_ms(self.cfg.lease_ms()))
    }

    fn queue_read(&mut self, reader: Reader) {
        if !self.committed_in_term {
            self.reads.waiting_commit.push(reader);
            return;
        }
        let round = self.reads.round + 1;
        self.reads.pending.push_back(PendingRead { reader, index: self.log.committed, round });
        self.reads.need_round = true;
    }

    /// Once the leader commits in its term, reads that waited for it get a
    /// round.
    pub(crate) fn release_reads_waiting_for_commit(&mut self) {
        if !self.committed_in_term || self.reads.waiting_commit.is_empty() {
            return;
        }
        for reader in std::mem::take(&mut self.reads.waiting_commit) {
            self.queue_read(reader);
        }
    }

    /// Starts the round that pending reads wait for (batch boundary).
    pub(crate) fn flush_read_round(&mut self) {
        if self.reads.need_round {
            self.broadcast_heartbeat();
        }
    }

    /// Confirms rounds a quorum acknowledged and answers their reads.
    pub(crate) fn maybe_confirm_reads(&mut self) {
        let id = self.cfg.id;
        let own = self.reads.round;
        let confirmed = {
            let progress = &self.progress;
            self.membership()
                .committed_index(|n| {
                    if n == id {
                        LogIndex(own)
                    } else {
                        LogIndex(progress.get(&n).map(|p| p.read_round_acked).unwrap_or(0))
                    }
                })
                .0
        };
        if confirmed <= self.reads.confirmed || confirmed == u64::MAX {
            return;
        }
        self.reads.confirmed = confirmed;
        while let Some(&(round, sent)) = self.reads.sent.front() {
            if round > confirmed {
                break;
            }
            self.reads.sent.pop_front();
            if round == confirmed && !self.reads.lease_disabled {
                self.reads.lease_start = Some(sent);
            }
        }
        while self.reads.pending.front().is_some_and(|p| p.round <= confirmed) {
            let p = self.reads.pending.pop_front().expect("front checked");
            match p.reader {
                Reader::Local(rid) => self.ready.read_states.push(Confirmed { id: rid, index: p.index }),
                Reader::Remote { from, ctx } => {
                    self.send(from, MessageBody::ReadIndexResponse { ctx, index: Some(p.index) })
                }
            }
        }
    }

    /// A follower forwards reads to this node.
    pub(crate) fn on_read_index_request(&mut self, from: NodeId, ctx: u64) {
        if self.role != Role::Leader {
            self.send(from, MessageBody::ReadIndexResponse { ctx, index: None });
            return;
        }
        self.queue_read(Reader::Remote { from, ctx });
    }

    /// The leader answered forwarded reads.
    pub(crate) fn on_read_index_response(&mut self, ctx: u64, index: Option<LogIndex>) {
        let Some(ids) = self.reads.forwarded.remove(&ctx) else {
            return;
        };
        match index {
            Some(index) => {
                for id in ids {
                    self.ready.read_states.push(Confirmed { id, index });
                }
            }
            None => self.ready.failed_reads.extend(ids),
        }
    }

    /// Sends the reads queued on a follower to the leader as one batch.
    pub(crate) fn flush_forwarded_reads(&mut self) {
        if self.reads.forward_queue.is_empty() {
            return;
        }
        if !self.leader.is_some() {
            let ids = std::mem::take(&mut self.reads.forward_queue);
            self.ready.failed_reads.extend(ids);
            return;
        }
        self.reads.next_ctx = self.reads.next_ctx.wrapping_add(1);
        let ctx = self.reads.next_ctx;
        let ids = std::mem::take(&mut self.reads.forward_queue);
        self.reads.forwarded.insert(ctx, ids);
        self.send(self.leader, MessageBody::ReadIndexRequest { ctx });
    }

    /// Fails every read in flight; remote readers are told so.
    pub(crate) fn fail_reads(&mut self) {
        let (local, remote) = self.reads.fail_all();
        self.ready.failed_reads.extend(local);
        for (from, ctx) in remote {
            self.send(from, MessageBody::ReadIndexResponse { ctx, index: None });
        }
    }
}
