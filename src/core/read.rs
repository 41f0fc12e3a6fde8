//! Linearizable reads without log writes: ReadIndex (every read that arrives
//! in one batch shares one heartbeat round), lease reads, and follower reads
//! (a follower asks the leader for a read index).
//!
//! A heartbeat round is numbered; a peer's answer to round `r` also vouches
//! for every earlier round. Round `r` is confirmed when a quorum has answered
//! `r` or later. The lease runs from the *send* time of the latest confirmed
//! round for `election_timeout_min - lease_drift` and ends at once when the
//! leader sends TimeoutNow or stops leading.

use std::collections::{BTreeMap, VecDeque};

use super::message::MessageBody;
use super::raft::RaftCore;
use super::ready::{ReadState as Confirmed, Role};
use super::types::{LogIndex, NodeId, ReadId, Time};

/// How a read wants to be confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Confirm leadership with a heartbeat round (safe under any clock).
    ReadIndex,
    /// Serve from the leader's lease when it holds; otherwise fall back to a
    /// heartbeat round. Relies on bounded clock drift.
    Lease,
}

/// Who is waiting for a read index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    Local(ReadId),
    Remote { from: NodeId, ctx: u64 },
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    reader: Reader,
    index: LogIndex,
    round: u64,
}

/// ReadIndex bookkeeping of one core (leader and follower sides).
#[derive(Debug, Default)]
pub(crate) struct ReadState {
    /// The latest round started.
    round: u64,
    /// Rounds started and not yet confirmed, with their send times.
    sent: VecDeque<(u64, Time)>,
    /// The latest confirmed round.
    confirmed: u64,
    /// Send time of the latest confirmed round.
    lease_start: Option<Time>,
    /// TimeoutNow was sent in this term: no lease reads until it ends.
    lease_disabled: bool,
    /// Reads were assigned to a round not yet started.
    need_round: bool,
    /// Reads waiting for their round, in round order.
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its term.
    waiting_commit: Vec<Reader>,
    /// Follower side: reads to forward to the leader at the next ready.
    forward_queue: Vec<ReadId>,
    /// Follower side: batches forwarded, by context id.
    forwarded: BTreeMap<u64, Vec<ReadId>>,
    /// The last context id used. Starts at the incarnation's random epoch
    /// plus the core's start time (µs), so that ids never repeat across
    /// restarts of a node: a leader's late answer to the previous
    /// incarnation's batch must not match a new batch (found by the
    /// simulator, seed 895: a restarted follower took the answer to its old
    /// context 1, with an older read index, for its new context 1 and
    /// served a stale read). The start time alone was not enough in
    /// production, where the clock counts from process start (defect 02).
    /// Ids wrap around.
    next_ctx: u64,
}

impl ReadState {
    /// Bookkeeping of a core started at `now` in the incarnation `epoch`
    /// (see [`Recovered::epoch`](super::Recovered::epoch)).
    pub(crate) fn starting_at(now: Time, epoch: u64) -> ReadState {
        ReadState { next_ctx: epoch.wrapping_add(now.as_micros()), ..ReadState::default() }
    }

    pub(crate) fn round_pending(&self) -> bool {
        self.need_round || !self.forward_queue.is_empty()
    }

    pub(crate) fn current_round(&self) -> u64 {
        self.round
    }

    pub(crate) fn start_round(&mut self, now: Time) -> u64 {
        self.round += 1;
        self.sent.push_back((self.round, now));
        // Bound the memory of rounds no quorum will ever answer (a partitioned
        // leader keeps sending heartbeats until check-quorum removes it).
        while self.sent.len() > 1024 {
            self.sent.pop_front();
        }
        self.need_round = false;
        self.round
    }

    pub(crate) fn reset_for_new_term(&mut self) {
        let follower = (std::mem::take(&mut self.forward_queue), std::mem::take(&mut self.forwarded), self.next_ctx);
        *self = ReadState { round: self.round, ..ReadState::default() };
        (self.forward_queue, self.forwarded, self.next_ctx) = follower;
    }

    /// Ends every pending read: local ids to fail, remote readers to answer.
    pub(crate) fn fail_all(&mut self) -> (Vec<ReadId>, Vec<(NodeId, u64)>) {
        let mut local = Vec::new();
        let mut remote = Vec::new();
        let readers = self.pending.drain(..).map(|p| p.reader).chain(self.waiting_commit.drain(..));
        for r in readers {
            match r {
                Reader::Local(id) => local.push(id),
                Reader::Remote { from, ctx } => remote.push((from, ctx)),
            }
        }
        local.append(&mut self.forward_queue);
        for (_, ids) in std::mem::take(&mut self.forwarded) {
            local.extend(ids);
        }
        self.need_round = false;
        self.lease_start = None;
        self.lease_disabled = false;
        self.sent.clear();
        (local, remote)
    }

    pub(crate) fn disable_lease(&mut self) {
        self.lease_disabled = true;
    }
}

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
