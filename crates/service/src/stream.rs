//! One stream's in-memory state: offsets, retention bookkeeping, and the
//! records not yet written to its segment files (plus a small cache of the
//! newest written ones).
//!
//! Offsets `[first, next)` are readable. Records `[mem_first, next)` are in
//! memory (zero-copy slices of the Raft entries they arrived in); records
//! `[first, mem_first)` are on disk in the stream's segment files
//! (`segments.rs`). Invariant: `first <= next`, `mem_first <= next`, and
//! `mem_first <= durable` (what the last checkpoint wrote), so no offset is
//! in neither place.
//!
//! Retention is decided by the state machine from log time and sizes, so
//! every replica drops the same prefix at the same log position. It works
//! on coarse chunks (about [`CHUNK_BYTES`] of records each, with the log
//! time of their newest record) rather than per record, so its memory is
//! bounded by the retained bytes / 1 MiB; like Kafka's segments, the newest
//! chunk is never dropped by retention.

use std::collections::VecDeque;

use bytes::Bytes;

/// Records collected by one read, within its limits: at most `max_records`,
/// and no record past `max_bytes` except the first (a read returns at least
/// one record when one is there).
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// The records, consecutive.
    pub records: Vec<Bytes>,
    /// Their bytes.
    pub bytes: usize,
    /// Most records.
    pub max_records: usize,
    /// Soft cap on bytes.
    pub max_bytes: usize,
}

impl ReadBatch {
    /// An empty batch with these limits.
    pub fn new(max_records: usize, max_bytes: usize) -> ReadBatch {
        ReadBatch { records: Vec::new(), bytes: 0, max_records, max_bytes }
    }

    /// Whether no further record may be added.
    pub fn full(&self) -> bool {
        self.records.len() >= self.max_records || (!self.records.is_empty() && self.bytes >= self.max_bytes)
    }

    /// Adds `r` if the limits allow; false when it did not fit.
    pub fn push(&mut self, r: Bytes) -> bool {
        if self.records.len() >= self.max_records || (!self.records.is_empty() && self.bytes + r.len() > self.max_bytes)
        {
            return false;
        }
        self.bytes += r.len();
        self.records.push(r);
        true
    }
}

/// Records are grouped into retention chunks of about this many bytes.
pub const CHUNK_BYTES: u64 = 1 << 20;

/// A run of consecutive records for retention decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of its first record.
    pub first: u64,
    /// Record bytes in it.
    pub bytes: u64,
    /// Log time of its newest record.
    pub last_ms: u64,
}

/// A stream's replicated metadata plus its in-memory records.
#[derive(Clone, Debug)]
pub struct Stream {
    /// Stable id (the log index of its create entry); names its directory.
    pub id: u64,
    /// First readable offset.
    pub first: u64,
    /// Offset the next record gets.
    pub next: u64,
    /// Retention by size (0: none).
    pub retention_bytes: u64,
    /// Retention by age in log time (0: none).
    pub retention_age_ms: u64,
    /// Retention chunks covering `[first, next)`, oldest first.
    pub chunks: VecDeque<Chunk>,
    /// Offset of `mem[0]`.
    pub mem_first: u64,
    /// Records `[mem_first, next)`.
    pub mem: VecDeque<Bytes>,
    /// Records before this were handed to a checkpoint.
    pub ckpt_next: u64,
}

impl Stream {
    /// An empty stream.
    pub fn new(id: u64, retention_bytes: u64, retention_age_ms: u64) -> Stream {
        Stream {
            id,
            first: 0,
            next: 0,
            retention_bytes,
            retention_age_ms,
            chunks: VecDeque::new(),
            mem_first: 0,
            mem: VecDeque::new(),
            ckpt_next: 0,
        }
    }

    /// Retained record bytes (approximate after trims inside a chunk).
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.bytes).sum()
    }

    /// Appends records at log time `now_ms`; returns the first offset.
    pub fn append(&mut self, records: &[Bytes], now_ms: u64) -> u64 {
        let at = self.next;
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        match self.chunks.back_mut() {
            Some(c) if c.bytes < CHUNK_BYTES => {
                c.bytes += bytes;
                c.last_ms = c.last_ms.max(now_ms);
            }
            _ => self.chunks.push_back(Chunk { first: at, bytes, last_ms: now_ms }),
        }
        self.mem.extend(records.iter().cloned());
        self.next += records.len() as u64;
        at
    }

    /// Drops records before `before` (clamped to `next`).
    pub fn trim(&mut self, before: u64) {
        let before = before.min(self.next);
        if before <= self.first {
            return;
        }
        self.first = before;
        // Trimmed records need not be written; the next checkpoint starts a
        // new segment at `before` if it lies past what was written.
        self.ckpt_next = self.ckpt_next.max(before);
        while self.chunks.len() > 1 && self.chunks[1].first <= before {
            self.chunks.pop_front();
        }
        if let Some(c) = self.chunks.front_mut() {
            c.first = c.first.max(before);
        }
        while self.mem_first < before && !self.mem.is_empty() {
            self.mem.pop_front();
            self.mem_first += 1;
        }
        if self.mem.is_empty() {
            self.mem_first = self.mem_first.max(before);
        }
    }

    /// Applies retention at log time `now_ms`; returns whether it dropped
    /// anything.
    pub fn apply_retention(&mut self, now_ms: u64) -> bool {
        let mut to = self.first;
        let mut bytes = self.bytes();
        let mut i = 0;
        while i + 1 < self.chunks.len() {
            let c = self.chunks[i];
            let too_big = self.retention_bytes > 0 && bytes > self.retention_bytes;
            let too_old = self.retention_age_ms > 0 && c.last_ms.saturating_add(self.retention_age_ms) < now_ms;
            if !too_big && !too_old {
                break;
            }
            bytes -= c.bytes;
            to = self.chunks[i + 1].first;
            i += 1;
        }
        if to > self.first {
            self.trim(to);
            true
        } else {
            false
        }
    }

    /// Records from `offset` (which must be in `[mem_first, next]`) into
    /// `batch` until it is full.
    pub fn read_mem(&self, offset: u64, batch: &mut ReadBatch) {
        debug_assert!(offset >= self.mem_first && offset <= self.next);
        let skip = (offset - self.mem_first) as usize;
        for r in self.mem.iter().skip(skip) {
            if !batch.push(r.clone()) {
                break;
            }
        }
    }

    /// Forgets in-memory records before `durable_next` (already in segment
    /// files), keeping the newest `keep` of them as a read cache.
    pub fn release_written(&mut self, durable_next: u64, keep: usize) {
        let cached_from = self.next.saturating_sub(keep as u64);
        let to = durable_next.min(cached_from);
        while self.mem_first < to && !self.mem.is_empty() {
            self.mem.pop_front();
            self.mem_first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(n: usize, size: usize) -> Vec<Bytes> {
        (0..n).map(|_| Bytes::from(vec![7u8; size])).collect()
    }

    #[test]
    fn append_read_trim() {
        let mut s = Stream::new(1, 0, 0);
        assert_eq!(s.append(&recs(3, 10), 0), 0);
        assert_eq!(s.append(&recs(2, 10), 0), 3);
        let mut b = ReadBatch::new(10, 25);
        s.read_mem(1, &mut b);
        assert_eq!(b.records.len(), 2, "25 bytes allow two 10-byte records and stop before the third");
        s.trim(4);
        assert_eq!((s.first, s.mem_first, s.mem.len()), (4, 4, 1));
        s.trim(100);
        assert_eq!((s.first, s.next, s.mem.len()), (5, 5, 0));
    }

    #[test]
    fn retention_by_size_and_age_drops_whole_chunks_but_never_the_newest() {
        let mut s = Stream::new(1, 3 * CHUNK_BYTES, 0);
        for t in 0..6 {
            s.append(&recs(1, CHUNK_BYTES as usize), t);
        }
        assert!(s.apply_retention(10));
        assert_eq!(s.first, 3, "keeps 3 MiB");
        let mut a = Stream::new(1, 0, 100);
        a.append(&recs(1, CHUNK_BYTES as usize), 0);
        a.append(&recs(1, CHUNK_BYTES as usize), 500);
        assert!(a.apply_retention(550));
        assert_eq!(a.first, 1);
        assert!(!a.apply_retention(10_000), "the newest chunk stays");
    }

    #[test]
    fn release_keeps_a_cache_and_never_passes_durable() {
        let mut s = Stream::new(1, 0, 0);
        s.append(&recs(100, 1), 0);
        s.release_written(50, 10);
        assert_eq!(s.mem_first, 50);
        s.release_written(100, 10);
        assert_eq!(s.mem_first, 90);
    }
}
