//! The bookkeeping behind linearizable reads: the heartbeat rounds sent
//! and confirmed, the lease they give, and the reads waiting on them (local
//! and forwarded). Plain data the core owns; `read_index.rs` holds the
//! core's read handling that drives it, so this file needs nothing of
//! `RaftCore` (issue 20: `raft.rs` and the read code named each other).

use std::collections::{BTreeMap, VecDeque};

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
pub(super) enum Reader {
    Local(ReadId),
    Remote { from: NodeId, ctx: u64 },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct PendingRead {
    pub(super) reader: Reader,
    pub(super) index: LogIndex,
    pub(super) round: u64,
}

/// ReadIndex bookkeeping of one core (leader and follower sides).
#[derive(Debug, Default)]
pub(crate) struct ReadState {
    /// The latest round started.
    pub(super) round: u64,
    /// Rounds started and not yet confirmed, with their send times.
    pub(super) sent: VecDeque<(u64, Time)>,
    /// The latest confirmed round.
    pub(super) confirmed: u64,
    /// Send time of the latest confirmed round.
    pub(super) lease_start: Option<Time>,
    /// TimeoutNow was sent in this term: no lease reads until it ends.
    pub(super) lease_disabled: bool,
    /// Reads were assigned to a round not yet started.
    pub(super) need_round: bool,
    /// Reads waiting for their round, in round order.
    pub(super) pending: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its term.
    pub(super) waiting_commit: Vec<Reader>,
    /// Follower side: reads to forward to the leader at the next ready.
    pub(super) forward_queue: Vec<ReadId>,
    /// Follower side: batches forwarded, by context id.
    pub(super) forwarded: BTreeMap<u64, Vec<ReadId>>,
    /// The last context id used. Starts at the incarnation's random epoch
    /// plus the core's start time (µs), so that ids never repeat across
    /// restarts of a node: a leader's late answer to the previous
    /// incarnation's batch must not match a new batch (found by the
    /// simulator, seed 895: a restarted follower took the answer to its old
    /// context 1, with an older read index, for its new context 1 and
    /// served a stale read). The start time alone was not enough in
    /// production, where the clock counts from process start (defect 02).
    /// Ids wrap around.
    pub(super) next_ctx: u64,
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
