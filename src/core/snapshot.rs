//! Snapshots: compaction after the driver takes one, sending one to a peer
//! whose next entry is compacted away, and receiving one in resumable
//! chunks.
//!
//! The core never holds snapshot bytes. A sending leader emits
//! `InstallSnapshot` messages with an offset in `Ready::snapshot_sends`; the
//! driver fills the chunk (and the snapshot's content checksum) from its
//! snapshot store. A receiving follower emits the chunks in
//! `Ready::snapshot_chunks` for the driver to store and answers only after
//! they are durable. A follower that already holds part of the same snapshot
//! (same meta, same content checksum) answers with the offset it expects, so
//! a new leader resumes where the old one stopped; a different content starts
//! over from offset 0.
//!
//! A transfer keeps the snapshot it started with until it ends, however many
//! newer snapshots the leader takes meanwhile, and the log is not compacted
//! past a snapshot in transfer, so the entries after it are there when it is
//! installed (defect 10: restarting every transfer with each new snapshot
//! meant a state that takes longer to ship than the time between snapshots
//! was never shipped). Only a transfer of an older snapshot that gets no
//! answer for ten election timeouts (the driver may have dropped that
//! snapshot) restarts with the newest.

use bytes::Bytes;

use super::message::{MessageBody, SnapshotMeta};
use super::progress::ReplState;
use super::raft::RaftCore;
use super::ready::{LogOp, Role, SnapshotChunk};
use super::types::{LogIndex, NodeId};

/// Why a snapshot could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The index is not applied yet.
    NotApplied {
        /// The requested index.
        index: LogIndex,
        /// The applied index.
        applied: LogIndex,
    },
    /// A snapshot at or after this index exists already.
    Stale {
        /// The existing snapshot's index.
        existing: LogIndex,
    },
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::NotApplied { index, applied } => {
                write!(f, "snapshot index {index} is beyond the applied index {applied}")
            }
            SnapshotError::Stale { existing } => {
                write!(f, "a snapshot at index {existing} already exists")
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

impl RaftCore {
    /// The driver durably stored a snapshot of the state machine as of
    /// `index` (which must be applied). The core records its meta and
    /// compacts the log behind it, keeping `snapshot_trailing_entries`; the
    /// returned meta is what the driver stores beside the data.
    ///
    /// # Errors
    /// `NotApplied` or `Stale`.
    pub fn on_snapshot_created(&mut self, index: LogIndex) -> Result<SnapshotMeta, SnapshotError> {
        if index > self.log.applied {
            return Err(SnapshotError::NotApplied { index, applied: self.log.applied });
        }
        if index <= self.snapshot.last_index {
            return Err(SnapshotError::Stale { existing: self.snapshot.last_index });
        }
        let Some(term) = self.log.term_at(index) else {
            return Err(SnapshotError::Stale { existing: self.log.offset() });
        };
        let meta = SnapshotMeta { last_index: index, last_term: term, membership: self.membership_at(index) };
        let old = std::mem::replace(&mut self.snapshot, meta.clone());
        // Transfers of the older snapshot go on with it.
        if self.transfer_indexes().any(|i| i == old.last_index) {
            self.snapshots_in_transfer.push(old);
        }
        self.compact_behind_snapshots();
        Ok(meta)
    }

    /// The snapshot indexes being sent to peers.
    fn transfer_indexes(&self) -> impl Iterator<Item = LogIndex> + '_ {
        self.progress.values().filter_map(|p| match p.state {
            ReplState::Snapshot { index, .. } => Some(index),
            _ => None,
        })
    }

    /// Compacts the log behind the newest snapshot (keeping
    /// `snapshot_trailing_entries`) but never past a snapshot in transfer:
    /// its receiver needs the entries after it. Forgets older snapshots no
    /// transfer uses any more.
    pub(crate) fn compact_behind_snapshots(&mut self) {
        let newest = LogIndex(self.snapshot.last_index.0.saturating_sub(self.cfg.snapshot_trailing_entries));
        let to = self.transfer_indexes().fold(newest, |to, i| to.min(i));
        let used: Vec<LogIndex> = self.transfer_indexes().collect();
        self.snapshots_in_transfer.retain(|m| used.contains(&m.last_index));
        self.compact_log_to(to);
    }

    /// The meta of the snapshot at `index`: the newest or one in transfer.
    fn snapshot_meta_at(&self, index: LogIndex) -> Option<SnapshotMeta> {
        if self.snapshot.last_index == index {
            return Some(self.snapshot.clone());
        }
        self.snapshots_in_transfer.iter().find(|m| m.last_index == index).cloned()
    }

    fn compact_log_to(&mut self, index: LogIndex) {
        if index <= self.log.offset() {
            return;
        }
        self.log.compact_to(index);
        let folded: Vec<_> = self.conf_log.iter().filter(|(i, _)| *i <= index).cloned().collect();
        if let Some(last) = folded.last() {
            self.conf_base = last.clone();
        }
        self.conf_log.retain(|(i, _)| *i > index);
        self.ready.log_ops.push(LogOp::Purge(index));
    }

    /// Starts (or restarts) sending the newest snapshot to `peer`.
    pub(crate) fn start_snapshot_send(&mut self, peer: NodeId) {
        let index = self.snapshot.last_index;
        let now = self.now;
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        log::debug!("snapshot {} to {}", index, peer);
        let restarted = matches!(pr.state, ReplState::Snapshot { index: old, .. } if old != index);
        pr.state = ReplState::Snapshot { index, offset: 0, sent_at: now };
        pr.last_progress_at = now;
        pr.inflight.clear();
        self.send_snapshot_chunk(peer, index, 0);
        if restarted {
            self.compact_behind_snapshots();
        }
    }

    fn send_snapshot_chunk(&mut self, peer: NodeId, index: LogIndex, offset: u64) {
        let Some(meta) = self.snapshot_meta_at(index) else {
            // Not kept: cannot happen while a transfer names it.
            debug_assert!(false, "snapshot {index} in transfer to {peer} has no meta");
            return self.start_snapshot_send(peer);
        };
        let body = MessageBody::InstallSnapshot { meta, offset, data: Bytes::new(), done: false, content: 0 };
        let msg = super::message::Message { group: self.cfg.group, from: self.cfg.id, to: peer, term: self.term, body };
        self.ready.snapshot_sends.push(msg);
    }

    /// Restarts with the newest snapshot every transfer of an older one that
    /// got no answer for ten election timeouts, so that a peer that went
    /// away mid-transfer does not hold the log's compaction back (it pins
    /// the entries after its snapshot) for as long as it stays away.
    pub(crate) fn restart_stalled_snapshot_sends(&mut self) {
        let (now, current) = (self.now, self.snapshot.last_index);
        let stalled_ms = 10 * self.cfg.election_timeout_max_ms;
        let stalled: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, p)| {
                matches!(p.state, ReplState::Snapshot { index, .. } if index != current)
                    && now >= p.last_progress_at.plus_ms(stalled_ms)
            })
            .map(|(n, _)| *n)
            .collect();
        for peer in stalled {
            self.start_snapshot_send(peer);
        }
    }

    /// Resends the chunk in flight to `peer` if its answer is overdue. A
    /// transfer of an older snapshot that got no answer for ten election
    /// timeouts restarts with the newest (its driver may have let the older
    /// snapshot go).
    pub(crate) fn maybe_resend_snapshot(&mut self, peer: NodeId) {
        let now = self.now;
        let overdue_ms = self.cfg.election_timeout_min_ms / 2;
        let stalled_ms = 10 * self.cfg.election_timeout_max_ms;
        let current = self.snapshot.last_index;
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        let ReplState::Snapshot { index, offset, sent_at } = pr.state else {
            return;
        };
        if index != current && now >= pr.last_progress_at.plus_ms(stalled_ms) {
            self.start_snapshot_send(peer);
        } else if now >= sent_at.plus_ms(overdue_ms) {
            pr.state = ReplState::Snapshot { index, offset, sent_at: now };
            self.send_snapshot_chunk(peer, index, offset);
        }
    }

    /// A follower's answer to a snapshot chunk.
    pub(crate) fn on_install_snapshot_response(
        &mut self,
        from: NodeId,
        last_index: LogIndex,
        next_offset: u64,
        done: bool,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.heard(now);
        let ReplState::Snapshot { index, offset, .. } = pr.state else {
            return;
        };
        if index != last_index {
            return;
        }
        if done {
            if last_index > pr.matched {
                pr.matched = last_index;
            }
            pr.become_probe(last_index.next(), now);
            self.maybe_commit();
            self.send_appends(from);
            self.maybe_send_timeout_now(from);
            // The entries it pinned may go now.
            self.compact_behind_snapshots();
        } else {
            if next_offset > offset {
                pr.last_progress_at = now;
            }
            pr.state = ReplState::Snapshot { index, offset: next_offset, sent_at: now };
            self.send_snapshot_chunk(from, index, next_offset);
        }
    }

    /// A snapshot chunk from the leader.
    pub(crate) fn on_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
        content: u64,
    ) {
        self.on_leader_contact(from);
        let last_index = meta.last_index;
        if last_index <= self.log.committed {
            self.reply_snapshot(from, last_index, 0, true);
            return;
        }
        let expected = match &self.receiving {
            Some((m, c, next)) if *m == meta && (*c == content || self.cfg.mutant_is("resume-other-content")) => *next,
            _ => 0,
        };
        // Any chunk but the expected one is answered with the offset to resume
        // from; a first chunk of a different snapshot (other meta or other
        // content) starts over (expected 0).
        if offset != expected {
            self.reply_snapshot(from, last_index, expected, false);
            return;
        }
        let next = offset + data.len() as u64;
        self.ready.snapshot_chunks.push(SnapshotChunk { meta: meta.clone(), offset, data, done });
        if !done {
            self.receiving = Some((meta, content, next));
            self.reply_snapshot(from, last_index, next, false);
            return;
        }
        self.receiving = None;
        self.install_snapshot(meta);
        self.reply_snapshot(from, last_index, next, true);
    }

    fn install_snapshot(&mut self, meta: SnapshotMeta) {
        log::info!(
            "{} term {}: installing snapshot at {} (term {})",
            self.cfg.id,
            self.term,
            meta.last_index,
            meta.last_term
        );
        self.snapshot = meta.clone();
        if self.log.term_at(meta.last_index) == Some(meta.last_term) {
            // Our log already holds the snapshot's last entry: keep the log,
            // just learn that the prefix is committed.
            self.log.commit_to(meta.last_index);
            self.leader_match = self.leader_match.max(meta.last_index);
            return;
        }
        self.log.reset_to(&meta);
        self.conf_base = (meta.last_index, meta.membership.clone());
        self.conf_log.clear();
        self.leader_match = meta.last_index;
        self.acked = meta.last_index;
        self.ready.log_ops.push(LogOp::Reset(meta.clone()));
        self.ready.restore_snapshot = Some(meta);
    }

    /// Answers a chunk once what it carried is durable.
    fn reply_snapshot(&mut self, to: NodeId, last_index: LogIndex, next_offset: u64, done: bool) {
        let body = MessageBody::InstallSnapshotResponse { last_index, next_offset, done };
        let msg = super::message::Message { group: self.cfg.group, from: self.cfg.id, to, term: self.term, body };
        self.ready.persisted_messages.push(msg);
    }
}
