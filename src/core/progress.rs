//! What a leader knows about each peer's log: the `Replicator`'s state in
//! SOFAJRaft terms, kept inside the core.
//!
//! A peer is probed (one message at a time until its log position is found),
//! then replicated to with a pipeline of up to `inflight_msgs_max` messages,
//! or sent a snapshot when the entries it needs are compacted.

use std::collections::VecDeque;

use super::types::{LogIndex, Time};

/// How the leader currently feeds a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplState {
    /// Finding the match point: one append in flight at a time.
    Probe,
    /// Streaming: appends are sent optimistically, `next` runs ahead.
    Replicate,
    /// Sending the snapshot at `index`, chunk by chunk.
    Snapshot {
        /// The snapshot's last index.
        index: LogIndex,
        /// The offset of the chunk in flight or next to send.
        offset: u64,
        /// When the chunk in flight was sent (for resending a lost one).
        sent_at: Time,
    },
}

/// Replication progress of one peer.
///
/// Invariant: `matched < next`.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated (and durable) on the peer.
    pub matched: LogIndex,
    /// Next index to send.
    pub next: LogIndex,
    /// How the peer is fed.
    pub state: ReplState,
    /// In `Probe`: a probe is in flight and no other may be sent.
    pub probe_sent: bool,
    /// Last index of each append in flight, oldest first (`Replicate`).
    pub inflight: VecDeque<LogIndex>,
    /// The peer answered since the last check-quorum.
    pub recent_active: bool,
    /// When the peer last answered this leader (any response).
    pub heard_at: Option<Time>,
    /// Highest read round the peer acknowledged.
    pub read_round_acked: u64,
    /// The commit index last sent to the peer.
    pub commit_sent: LogIndex,
    /// When `matched` last advanced (or the state last changed): a pipeline
    /// that makes no progress for long has lost a message.
    pub last_progress_at: Time,
}

impl Progress {
    /// A fresh progress for a leader whose log ends at `last`.
    pub fn new(last: LogIndex, now: Time) -> Progress {
        Progress {
            matched: LogIndex(0),
            next: last.next(),
            state: ReplState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            heard_at: None,
            read_round_acked: 0,
            commit_sent: LogIndex(0),
            last_progress_at: now,
        }
    }

    /// Records that the peer answered at `now`.
    pub fn heard(&mut self, now: Time) {
        self.recent_active = true;
        self.heard_at = Some(now);
    }

    /// Records a successful append up to `index`. Returns whether `matched`
    /// advanced.
    pub fn on_ack(&mut self, index: LogIndex, now: Time) -> bool {
        let advanced = index > self.matched;
        if advanced {
            self.matched = index;
            self.last_progress_at = now;
        }
        if self.next <= self.matched {
            self.next = self.matched.next();
        }
        while self.inflight.front().is_some_and(|last| *last <= index) {
            self.inflight.pop_front();
        }
        if self.state == ReplState::Probe && advanced {
            self.become_replicate();
        }
        self.probe_sent = false;
        advanced
    }

    /// Switches to streaming from `matched + 1`.
    pub fn become_replicate(&mut self) {
        self.state = ReplState::Replicate;
        self.next = self.matched.next();
        self.inflight.clear();
    }

    /// Switches to probing from `next`.
    pub fn become_probe(&mut self, next: LogIndex, now: Time) {
        self.last_progress_at = now;
        self.state = ReplState::Probe;
        self.next = next.max(self.matched.next());
        self.inflight.clear();
        self.probe_sent = false;
    }

    /// Whether the window admits another append.
    pub fn can_send(&self, inflight_max: usize) -> bool {
        match self.state {
            ReplState::Probe => !self.probe_sent,
            ReplState::Replicate => self.inflight.len() < inflight_max,
            ReplState::Snapshot { .. } => false,
        }
    }

    /// Records that an append ending at `last` (inclusive) was sent.
    pub fn on_sent(&mut self, last: LogIndex) {
        match self.state {
            ReplState::Probe => self.probe_sent = true,
            ReplState::Replicate => {
                self.next = last.next();
                self.inflight.push_back(last);
            }
            ReplState::Snapshot { .. } => {}
        }
    }
}
