//! The core's in-memory view of the Raft log.
//!
//! It holds every entry after the compaction point (`offset`), the commit and
//! persistence marks, and how far committed entries were handed out for
//! apply. Storage holds the durable copy; the core never reads it. Memory is
//! bounded by snapshots: `compact_to` drops the prefix.

use std::collections::VecDeque;

use super::message::{Entry, SnapshotMeta};
use super::ready::PersistPoint;
use super::types::{LogIndex, Term};

/// The in-memory log of one group.
///
/// Invariants: `entries[i].index == offset + 1 + i`; `persisted <= last_index()`;
/// `committed` never decreases and entries at or below it are never replaced.
#[derive(Debug, Default)]
pub struct RaftLog {
    /// Index of the last compacted entry (0 for an uncompacted log).
    offset: LogIndex,
    /// Term of the entry at `offset`.
    offset_term: Term,
    /// Entries `offset + 1 ..= last_index()`.
    entries: VecDeque<Entry>,
    /// Highest index known durable on this node.
    pub persisted: LogIndex,
    /// Highest index known committed.
    pub committed: LogIndex,
    /// Highest index handed to the driver for apply.
    pub apply_sent: LogIndex,
    /// Highest index the driver reported applied.
    pub applied: LogIndex,
    /// Entries the last compaction removed, not yet dropped: hundreds of
    /// thousands of payloads whose freeing would stall the core thread for
    /// tens of milliseconds, so the runtime takes them ([`RaftLog::take_compacted`])
    /// and frees them elsewhere. At most one compaction's worth is kept (an
    /// older one not taken is dropped here).
    compacted: Option<VecDeque<Entry>>,
    /// The last write sequence number handed out; the ready being built
    /// takes `write_seq + 1` if it carries log ops ([`RaftLog::take_write_seq`]).
    write_seq: u64,
    /// The latest write that truncated or reset the log (0: none yet).
    /// Invariant: `rewritten_by <= write_seq + 1`. A report of an earlier
    /// write is stale: what it made durable may since have been replaced,
    /// and the entry at its index may be an equal one written again by a
    /// write still in flight (defect 04's ABA).
    rewritten_by: u64,
}

impl RaftLog {
    /// A log that starts after `snapshot` (use the default meta for an empty
    /// log), with `entries` recovered from storage (consecutive, after it).
    pub fn recover(snapshot: &SnapshotMeta, entries: Vec<Entry>, applied: LogIndex) -> RaftLog {
        let mut log = RaftLog {
            offset: snapshot.last_index,
            offset_term: snapshot.last_term,
            entries: VecDeque::from(entries),
            ..RaftLog::default()
        };
        for (i, e) in log.entries.iter().enumerate() {
            assert_eq!(
                e.index.0,
                snapshot.last_index.0 + 1 + i as u64,
                "recovered entries must follow the snapshot (index {} at position {})",
                e.index,
                i
            );
        }
        log.persisted = log.last_index();
        log.committed = snapshot.last_index.max(applied.min(log.last_index()));
        log.applied = log.committed;
        log.apply_sent = log.committed;
        log
    }

    /// Index of the last compacted entry.
    pub fn offset(&self) -> LogIndex {
        self.offset
    }

    /// Index of the first entry held in memory.
    pub fn first_index(&self) -> LogIndex {
        self.offset.next()
    }

    /// Index of the last entry (the offset when empty).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.offset.0 + self.entries.len() as u64)
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> Term {
        self.entries.back().map(|e| e.term).unwrap_or(self.offset_term)
    }

    /// Term of the entry at `index`, or `None` when it is compacted away or
    /// beyond the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        if index < self.offset {
            return None;
        }
        self.entries.get((index.0 - self.offset.0 - 1) as usize).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index.0 - self.offset.0 - 1) as usize)
    }

    /// Whether a candidate with this last entry is at least as up to date as
    /// this log (Raft §5.4.1).
    pub fn is_up_to_date(&self, last_term: Term, last_index: LogIndex) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries `from ..= to`, at most `count_max` of them and at most
    /// `bytes_max` bytes (but at least one). Empty when `from` is compacted.
    pub fn slice(&self, from: LogIndex, to: LogIndex, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        if from <= self.offset || from > to {
            return Vec::new();
        }
        let to = to.min(self.last_index());
        let span = (to.0.saturating_sub(from.0) + 1).min(count_max as u64).min(1024) as usize;
        let mut out = Vec::with_capacity(span);
        let mut bytes = 0;
        let mut i = from;
        while i <= to && out.len() < count_max {
            let Some(e) = self.entry(i) else { break };
            bytes += e.size_bytes();
            if bytes > bytes_max && !out.is_empty() {
                break;
            }
            out.push(e.clone());
            i = i.next();
        }
        out
    }

    /// The last index holding `term`, searching back from `from`.
    pub fn last_index_of_term(&self, term: Term, from: LogIndex) -> Option<LogIndex> {
        let mut i = from.min(self.last_index());
        while i > self.offset {
            let t = self.term_at(i)?;
            if t == term {
                return Some(i);
            }
            if t < term {
                return None;
            }
            i = i.prev();
        }
        None
    }

    /// The first index of the run of entries with the same term as `index`.
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else {
            return index;
        };
        let mut i = index;
        while i > self.offset.next() && self.term_at(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// Appends entries from a leader after a successful consistency check,
    /// skipping those already present. Returns the entries that were really
    /// written (from the first conflict on), and the index from which the
    /// old suffix was truncated, if any.
    ///
    /// # Panics
    /// If a committed entry would be replaced (a broken Raft invariant).
    pub fn append_from_leader(&mut self, mut entries: Vec<Entry>) -> (Vec<Entry>, Option<LogIndex>) {
        let mut start = entries.len();
        for (i, e) in entries.iter().enumerate() {
            if e.index <= self.offset {
                continue;
            }
            if self.term_at(e.index) != Some(e.term) {
                start = i;
                break;
            }
        }
        if start == entries.len() {
            return (Vec::new(), None);
        }
        let first = entries[start].index;
        let truncated = if first <= self.last_index() { Some(first) } else { None };
        if let Some(at) = truncated {
            self.truncate_from(at);
        }
        entries.drain(..start);
        self.append(entries.clone());
        (entries, truncated)
    }

    /// Appends `entries`, which must start at `last_index() + 1`.
    pub fn append(&mut self, entries: Vec<Entry>) {
        for e in entries {
            assert_eq!(e.index, self.last_index().next(), "log append out of order");
            self.entries.push_back(e);
        }
    }

    /// Drops entries `>= index`.
    fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.committed,
            "truncating from {} would remove committed entries (commit {})",
            index,
            self.committed
        );
        let keep = (index.0 - self.offset.0 - 1) as usize;
        self.entries.truncate(keep);
        self.rewritten_by = self.write_seq + 1;
        self.persisted = self.persisted.min(self.last_index());
    }

    /// The write sequence number for a ready that carries log ops; the
    /// next such ready gets the next one.
    pub fn take_write_seq(&mut self) -> u64 {
        self.write_seq += 1;
        self.write_seq
    }

    /// Marks entries up to `point.index` (with `point.term`) durable. Stale
    /// reports are ignored: the entry was since replaced, or the report's
    /// write came before the latest truncation or reset (the later writes'
    /// own reports follow). Returns whether it advanced.
    pub fn persist(&mut self, point: PersistPoint) -> bool {
        let (term, index) = (point.term, point.index);
        if point.write < self.rewritten_by || index <= self.persisted || self.term_at(index) != Some(term) {
            return false;
        }
        self.persisted = index;
        true
    }

    /// Raises the commit index. Returns whether it advanced.
    ///
    /// # Panics
    /// If `index` is beyond the log (a broken invariant).
    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(index <= self.last_index(), "commit {} beyond last index {}", index, self.last_index());
        self.committed = index;
        true
    }

    /// Committed, durable entries not yet handed out for apply.
    pub fn take_committed(&mut self, bytes_max: usize) -> Vec<Entry> {
        let to = self.committed.min(self.persisted);
        if to <= self.apply_sent {
            return Vec::new();
        }
        let out = self.slice(self.apply_sent.next(), to, usize::MAX, bytes_max);
        if let Some(last) = out.last() {
            self.apply_sent = last.index;
        }
        out
    }

    /// The entries the last compaction removed, for the caller to free
    /// off its hot thread (see the field).
    pub fn take_compacted(&mut self) -> Option<VecDeque<Entry>> {
        self.compacted.take()
    }

    /// Drops entries up to `index` from memory (after a snapshot).
    pub fn compact_to(&mut self, index: LogIndex) {
        if index <= self.offset {
            return;
        }
        assert!(index <= self.applied.max(self.committed), "compacting {} past commit", index);
        let Some(term) = self.term_at(index) else {
            return;
        };
        let n = (index.0 - self.offset.0) as usize;
        // The kept tail moves to a new deque of the same capacity (so the log
        // does not grow by doubling again); the old one keeps the prefix.
        let mut dead = std::mem::take(&mut self.entries);
        self.entries = VecDeque::with_capacity(dead.capacity());
        self.entries.extend(dead.drain(n.min(dead.len())..));
        self.compacted = Some(dead);
        self.offset = index;
        self.offset_term = term;
    }

    /// Replaces the whole log with the point after `meta` (snapshot install).
    pub fn reset_to(&mut self, meta: &SnapshotMeta) {
        assert!(meta.last_index >= self.committed, "snapshot {} behind commit {}", meta.last_index, self.committed);
        self.entries.clear();
        self.rewritten_by = self.write_seq + 1;
        self.offset = meta.last_index;
        self.offset_term = meta.last_term;
        // Durable only once the driver reports the reset persisted.
        self.persisted = LogIndex(0);
        self.committed = meta.last_index;
        self.apply_sent = meta.last_index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::Payload;

    fn ents(from: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry { term: Term(*t), index: LogIndex(from + i as u64), payload: Payload::Noop })
            .collect()
    }

    fn point(term: u64, index: u64, write: u64) -> PersistPoint {
        PersistPoint { term: Term(term), index: LogIndex(index), write }
    }

    fn log_with(terms: &[u64]) -> RaftLog {
        let mut log = RaftLog::default();
        log.append(ents(1, terms));
        log
    }

    #[test]
    fn append_from_leader_skips_duplicates_and_truncates_at_the_first_conflict() {
        let mut log = log_with(&[1, 1, 2, 2]);
        let (written, truncated) = log.append_from_leader(ents(2, &[1, 2]));
        assert!(written.is_empty() && truncated.is_none());
        let (written, truncated) = log.append_from_leader(ents(3, &[3, 3, 3]));
        assert_eq!(truncated, Some(LogIndex(3)));
        assert_eq!(written.len(), 3);
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!(log.term_at(LogIndex(4)), Some(Term(3)));
    }

    #[test]
    #[should_panic(expected = "would remove committed entries")]
    fn truncating_a_committed_entry_is_a_broken_invariant() {
        let mut log = log_with(&[1, 1, 2]);
        log.commit_to(LogIndex(3));
        log.append_from_leader(ents(3, &[3]));
    }

    #[test]
    fn persist_ignores_reports_for_replaced_entries() {
        let mut log = log_with(&[1, 1, 2]);
        let w = log.take_write_seq();
        assert!(log.persist(point(1, 2, w)));
        assert!(!log.persist(point(1, 3, w)), "entry 3 has term 2");
        log.append_from_leader(ents(3, &[3]));
        let w = log.take_write_seq();
        assert!(!log.persist(point(2, 3, w)), "entry 3 was replaced");
        assert!(log.persist(point(3, 3, w)));
    }

    #[test]
    fn slice_respects_count_and_byte_limits_but_returns_at_least_one() {
        let log = log_with(&[1, 1, 1, 1]);
        assert_eq!(log.slice(LogIndex(1), LogIndex(4), 2, usize::MAX).len(), 2);
        assert_eq!(log.slice(LogIndex(1), LogIndex(4), 10, 1).len(), 1);
        assert_eq!(log.slice(LogIndex(1), LogIndex(4), 10, 48).len(), 2);
    }

    #[test]
    fn committed_entries_are_handed_out_only_when_durable() {
        let mut log = log_with(&[1, 1, 1]);
        log.commit_to(LogIndex(3));
        assert!(log.take_committed(usize::MAX).is_empty());
        let w = log.take_write_seq();
        log.persist(point(1, 2, w));
        assert_eq!(log.take_committed(usize::MAX).len(), 2);
        log.persist(point(1, 3, w));
        assert_eq!(log.take_committed(usize::MAX).len(), 1);
    }

    #[test]
    fn compaction_keeps_terms_at_the_offset_and_term_search_works() {
        let mut log = log_with(&[1, 1, 2, 2, 3]);
        log.commit_to(LogIndex(4));
        log.compact_to(LogIndex(2));
        assert_eq!(log.term_at(LogIndex(2)), Some(Term(1)));
        assert_eq!(log.term_at(LogIndex(1)), None);
        assert_eq!(log.last_index_of_term(Term(2), LogIndex(5)), Some(LogIndex(4)));
        assert_eq!(log.first_index_of_term_at(LogIndex(4)), LogIndex(3));
        assert!(log.slice(LogIndex(2), LogIndex(5), 10, usize::MAX).is_empty());
    }
}
