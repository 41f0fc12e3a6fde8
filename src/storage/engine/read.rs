//! Reads of the log engine: ranges of a group's entries from the hot-tail
//! cache or from disk, every checksum verified again on the way out.

use super::{GroupId, Loc, LogEngine};
use crate::core::{Entry, LogIndex};
use crate::storage::error::StorageError;
use crate::storage::record::{decode_body, decode_prefix, padded, Prefix, RECORD_PREFIX_BYTES};
use crate::storage::segment::Segment;

impl LogEngine {
    /// Entries `lo ..= hi` of `group`, at most `count_max` and at most
    /// `bytes_max` payload bytes (at least one entry), from the hot-tail
    /// cache when it has them, else from disk with every checksum verified.
    ///
    /// # Errors
    /// `InvalidRequest` when `lo` is purged; `Corrupt` when a record on disk
    /// fails its checksum; `Io`.
    pub fn entries(
        &mut self,
        group: GroupId,
        lo: LogIndex,
        hi: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some(log) = self.groups.get(&group) else { return Ok(Vec::new()) };
        let hi = hi.min(log.last_index());
        if lo > hi || count_max == 0 {
            return Ok(Vec::new());
        }
        if lo <= log.offset {
            return Err(StorageError::InvalidRequest(format!("group {group}: entry {lo} is purged")));
        }
        let cache_first = log.cache.front().map(|e| e.index).unwrap_or(hi.next());
        let mut out = Vec::new();
        if lo < cache_first {
            out = self.read_from_disk(group, lo, hi.min(cache_first.prev()), count_max, bytes_max)?;
            self.stats.disk_reads += out.len() as u64;
        }
        let next = out.last().map(|e| e.index.next()).unwrap_or(lo);
        if next >= cache_first && next <= hi && out.len() < count_max {
            let used: usize = out.iter().map(Entry::size_bytes).sum();
            let log = &self.groups[&group];
            let skip = (next.0 - cache_first.0) as usize;
            let mut bytes = used;
            for e in log.cache.iter().skip(skip).take_while(|e| e.index <= hi).take(count_max - out.len()) {
                bytes += e.size_bytes();
                if bytes > bytes_max && !out.is_empty() {
                    break;
                }
                out.push(e.clone());
                self.stats.cache_hits += 1;
            }
        }
        Ok(out)
    }

    pub(super) fn read_from_disk(
        &self,
        group: GroupId,
        lo: LogIndex,
        hi: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let log = &self.groups[&group];
        let first = (lo.0 - log.offset.0 - 1) as usize;
        let n = ((hi.0 - lo.0 + 1) as usize).min(count_max);
        let locs: Vec<Loc> = log.locs.iter().skip(first).take(n).copied().collect();
        let mut out = Vec::with_capacity(locs.len());
        let mut bytes = 0usize;
        let mut i = 0;
        while i < locs.len() {
            // One read per run of records that sit back to back in a segment.
            let mut j = i + 1;
            while j < locs.len() && locs[j].seg == locs[i].seg && locs[j].offset == end_of(&locs[j - 1]) {
                j += 1;
            }
            let seg = self.segments.get(&locs[i].seg).ok_or_else(|| StorageError::Corrupt {
                path: self.dir.clone(),
                offset: locs[i].offset,
                reason: format!("segment {} of group {group} is missing", locs[i].seg),
            })?;
            let span = seg.read_at(locs[i].offset, (end_of(&locs[j - 1]) - locs[i].offset) as usize)?;
            for loc in &locs[i..j] {
                let at = (loc.offset - locs[i].offset) as usize;
                let e = decode_at(&span, at, seg, loc.offset)?;
                bytes += e.size_bytes();
                if bytes > bytes_max && !out.is_empty() {
                    return Ok(out);
                }
                out.push(e);
            }
            i = j;
        }
        Ok(out)
    }
}

fn end_of(loc: &Loc) -> u64 {
    loc.offset + padded(RECORD_PREFIX_BYTES + loc.body_len as usize) as u64
}

/// Decodes and verifies the entry record at `at` of `span` (read from `seg`
/// at `file_offset`).
fn decode_at(span: &bytes::Bytes, at: usize, seg: &Segment, file_offset: u64) -> Result<Entry, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt { path: seg.path.clone(), offset: file_offset, reason };
    let prefix = crate::storage::record::prefix_at(span, at);
    let Prefix::Record { len, crc } = decode_prefix(&prefix) else {
        return Err(corrupt("record prefix damaged".into()));
    };
    if at + RECORD_PREFIX_BYTES + len > span.len() {
        return Err(corrupt("record length changed on disk".into()));
    }
    let rec = decode_body(span.slice(at + RECORD_PREFIX_BYTES..at + RECORD_PREFIX_BYTES + len), crc)
        .map_err(|why| corrupt(why.into()))?;
    match rec.to_entry().map_err(corrupt)? {
        Some(e) => Ok(e),
        None => Err(corrupt("expected an entry record".into())),
    }
}
