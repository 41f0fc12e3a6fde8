//! `LogEngine`: the segmented, append-only Raft log shared by every group of
//! a node, with group fsync, an in-memory index, a hot-tail cache and crash
//! recovery.
//!
//! All groups append to one sequence of segment files (each record carries
//! its group id), so one `fdatasync` makes a whole drained batch durable,
//! whatever groups it touches. Suffix truncation is implied by an append
//! whose first index is not past the group's last (replay does the same);
//! `Reset` and `Purge` are marker records. Whole segments are deleted once
//! no group has a live entry in them.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;

use super::error::{sync_dir_on, sync_file_or_die, StorageError};
use super::gather::Gather;
use super::reaper::Reaper;
use super::record::{Kind, Record, RecordRef, SEGMENT_HEADER_BYTES};
use super::segment::{parse_segment_file_name, ScanEnd, Segment};
use crate::core::{Entry, GroupId, LogIndex, LogOp, Term};
use crate::fs::{Fs, FsFile};

mod read;

/// Knobs of the log engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bytes preallocated per segment (a larger record gets a larger segment).
    pub segment_bytes: u64,
    /// Bytes of recent entries kept in memory per group for replicators.
    pub cache_bytes_per_group: usize,
    /// The file system the log lives on (the real one but in simulation).
    pub fs: Arc<dyn Fs>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { segment_bytes: 64 << 20, cache_bytes_per_group: 8 << 20, fs: crate::fs::real() }
    }
}

/// Counters since the engine was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// `fdatasync` calls on segment files.
    pub fsyncs: u64,
    /// Records written.
    pub records: u64,
    /// Bytes written (records with padding).
    pub bytes: u64,
    /// Batches written.
    pub batches: u64,
    /// Entries served from the hot-tail cache.
    pub cache_hits: u64,
    /// Entries read from disk.
    pub disk_reads: u64,
}

/// Where an entry lives on disk.
#[derive(Clone, Copy, Debug)]
struct Loc {
    seg: u64,
    offset: u64,
    body_len: u32,
    term: Term,
}

/// The index of one group.
///
/// Invariant: `locs[i]` is the entry at `offset + 1 + i`; the cache holds
/// the last `cache.len()` entries of `locs`.
#[derive(Debug, Default)]
struct GroupLog {
    offset: LogIndex,
    offset_term: Option<Term>,
    locs: VecDeque<Loc>,
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    /// The group has been seen (an entry or a marker).
    known: bool,
    /// Replay took `offset` from the first entry it met (older records may
    /// have been deleted with their segments), not from a reset or purge.
    start_inferred: bool,
    /// Replay has met a purge of this group but no entry or reset since:
    /// entries written before that purge may have been deleted.
    blind: bool,
}

impl GroupLog {
    fn last_index(&self) -> LogIndex {
        LogIndex(self.offset.0 + self.locs.len() as u64)
    }

    fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            return self.offset_term;
        }
        if index < self.offset {
            return None;
        }
        self.locs.get((index.0 - self.offset.0 - 1) as usize).map(|l| l.term)
    }

    /// Drops entries `>= index`.
    fn truncate_from(&mut self, index: LogIndex) {
        let keep = index.0.saturating_sub(self.offset.0 + 1) as usize;
        self.locs.truncate(keep);
        while self.cache.back().is_some_and(|e| e.index >= index) {
            let e = self.cache.pop_back().expect("back checked");
            self.cache_bytes -= e.size_bytes();
        }
    }

    /// Drops entries `<= index`.
    fn purge_to(&mut self, index: LogIndex) {
        if index <= self.offset {
            return;
        }
        let term = self.term_at(index);
        let n = ((index.0 - self.offset.0) as usize).min(self.locs.len());
        self.locs.drain(..n);
        self.offset = index;
        self.offset_term = term;
        self.start_inferred = false;
        while self.cache.front().is_some_and(|e| e.index <= index) {
            let e = self.cache.pop_front().expect("front checked");
            self.cache_bytes -= e.size_bytes();
        }
    }

    /// Drops every entry; the log continues after `index`, whose term is
    /// unknown.
    fn restart_after(&mut self, index: LogIndex) {
        self.locs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.offset = index;
        self.offset_term = None;
        self.start_inferred = false;
    }

    fn reset_to(&mut self, index: LogIndex, term: Term) {
        self.locs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.offset = index;
        self.offset_term = Some(term);
        self.start_inferred = false;
        self.blind = false;
    }

    /// Applies one record at `loc` (`replay`: read back by recovery; else
    /// just written, after `validate`).
    fn apply(&mut self, kind: Kind, index: LogIndex, loc: Loc, replay: bool) -> Result<(), String> {
        match kind {
            Kind::Normal | Kind::Noop | Kind::Config => {
                let below = index <= self.offset;
                let gap = index > self.last_index().next();
                // Writes are validated, so in replay an entry that does not
                // follow what replay has seen means records before it went
                // dead (truncated, purged, reset) and were deleted with their
                // segments while dead records after them were kept: below a
                // start inferred from such a kept dead entry, or past the end
                // of a log replay knows only from a purge. The live log
                // restarts at this entry. Anything else is damage (a lost
                // record) and fails recovery.
                let deleted_before = replay && ((below && self.start_inferred) || (gap && self.blind));
                if !self.known || deleted_before {
                    self.restart_after(index.prev());
                    self.start_inferred = true;
                } else if below {
                    return Err(format!("entry {index} at or below the group's start {}", self.offset));
                } else if gap {
                    return Err(format!("entry {index} leaves a gap after {}", self.last_index()));
                }
                self.blind = false;
                self.truncate_from(index);
                self.locs.push_back(loc);
            }
            Kind::Reset => self.reset_to(index, loc.term),
            // The group's first record, or in replay a purge past the end of
            // a log replay knows only from a purge (a write stores the point
            // clamped to the log): the entries up to it were in deleted
            // segments.
            Kind::Purge if !self.known || (replay && self.blind && index > self.last_index()) => {
                self.restart_after(index);
                self.blind = true;
            }
            Kind::Purge if replay && index > self.last_index() => {
                return Err(format!("purge to {index} past the end {}", self.last_index()));
            }
            Kind::Purge => self.purge_to(index.min(self.last_index())),
        }
        self.known = true;
        Ok(())
    }

    fn cache_push(&mut self, e: Entry, budget: usize) {
        self.cache_bytes += e.size_bytes();
        self.cache.push_back(e);
        while self.cache_bytes > budget && self.cache.len() > 1 {
            let old = self.cache.pop_front().expect("len > 1");
            self.cache_bytes -= old.size_bytes();
        }
    }
}

/// The shared segmented log of a node.
pub struct LogEngine {
    dir: PathBuf,
    cfg: EngineConfig,
    /// Open segments by sequence number; the last one takes appends.
    segments: BTreeMap<u64, Segment>,
    groups: HashMap<GroupId, GroupLog>,
    /// The records of the write being built (reused).
    buf: Gather,
    stats: EngineStats,
    /// Closes deleted segments: the last close of an unlinked, fully
    /// allocated 64 MiB segment freed its blocks in one ext4 journal
    /// transaction, ~200 ms on this machine, stalling every commit behind
    /// the append thread. The directory entry is still removed (and the
    /// directory synced) here; only the freeing moves.
    closer: Reaper,
    /// Opened by [`LogEngine::open_read_only`]: nothing is ever written.
    read_only: bool,
    /// What recovery found and cut (or, read-only, would cut).
    notes: Vec<RecoveryNote>,
}

/// Something recovery found at the tail of the log that is not corruption:
/// what a crash leaves. A read-write open repairs it (and logs it); a
/// read-only open only reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryNote {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset where the finding starts.
    pub offset: u64,
    /// What it is.
    pub kind: RecoveryNoteKind,
    /// Whether this open repaired it (always false read-only).
    pub repaired: bool,
}

/// The kinds of [`RecoveryNote`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryNoteKind {
    /// The newest segment ends in a record that was being written when the
    /// process died (never acknowledged); repair zero-fills it.
    TornTail {
        /// Why the record does not parse.
        reason: String,
    },
    /// The newest segment's header was never written or synced (a crash
    /// while creating it); repair removes the file.
    BlankSegment,
}

impl std::fmt::Display for RecoveryNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = if self.repaired { "cut" } else { "a server's recovery or `ringraft-logtool repair` cuts it" };
        match &self.kind {
            RecoveryNoteKind::TornTail { reason } => write!(
                f,
                "{}: torn tail at byte {} ({reason}): a record that was being written when the process stopped, \
                 never acknowledged; {done}",
                self.path.display(),
                self.offset
            ),
            RecoveryNoteKind::BlankSegment => {
                let done = if self.repaired { "removed" } else { "a server's recovery or `repair` removes it" };
                write!(f, "{}: blank newest segment (a crash while creating it); {done}", self.path.display())
            }
        }
    }
}

/// Frees an unlinked file's blocks a few megabytes at a time before
/// closing it: freeing 64 MiB in one journal transaction held up every
/// other `fdatasync` on the filesystem (the other nodes' logs included).
fn free_gently(file: Box<dyn FsFile>) {
    const STEP: u64 = 8 << 20;
    let mut len = file.size().unwrap_or(0);
    while len > STEP {
        len -= STEP;
        if file.set_len(len).is_err() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A record waiting for its batch to become durable.
struct Pending {
    kind: Kind,
    index: LogIndex,
    loc: Loc,
}

impl LogEngine {
    /// Opens (or creates) the log in `dir`, recovering its index: every
    /// record is checked, a torn tail of the last segment is cut off, and
    /// corruption anywhere before it is an error naming the file and offset.
    ///
    /// # Errors
    /// `Corrupt`, `NotOurs`, `VersionUnsupported`, `Io`, `NoSpace`.
    pub fn open(dir: &Path, cfg: EngineConfig) -> Result<LogEngine, StorageError> {
        super::error::create_dir_all_durably(&*cfg.fs, dir)?;
        Self::open_mode(dir, cfg, false)
    }

    /// Opens the existing log in `dir` for reading only, as inspection
    /// tools must: every record is checked as [`LogEngine::open`] does, but
    /// nothing is created, zero-filled or removed. A torn tail or a blank
    /// newest segment is reported in [`LogEngine::recovery_notes`] and left
    /// on disk; [`LogEngine::write`] is refused.
    ///
    /// # Errors
    /// As `open`, and `InvalidRequest` when `dir` holds no segment.
    pub fn open_read_only(dir: &Path, cfg: EngineConfig) -> Result<LogEngine, StorageError> {
        let engine = Self::open_mode(dir, cfg, true)?;
        if engine.segments.is_empty() && engine.notes.is_empty() {
            return Err(StorageError::InvalidRequest(format!("{} holds no ringraft log segment", dir.display())));
        }
        Ok(engine)
    }

    fn open_mode(dir: &Path, cfg: EngineConfig, read_only: bool) -> Result<LogEngine, StorageError> {
        let mut seqs = Vec::new();
        let listing = cfg.fs.list(dir).map_err(|e| StorageError::io("list log directory", dir, e))?;
        for item in listing {
            if let Some(seq) = parse_segment_file_name(&item.name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut engine = LogEngine {
            dir: dir.to_path_buf(),
            cfg,
            segments: BTreeMap::new(),
            groups: HashMap::new(),
            buf: Gather::default(),
            stats: EngineStats::default(),
            closer: Reaper::new("log-closer"),
            read_only,
            notes: Vec::new(),
        };
        for (i, seq) in seqs.iter().enumerate() {
            engine.recover_segment(*seq, i + 1 == seqs.len())?;
        }
        if engine.segments.is_empty() && !read_only {
            let seq = seqs.last().map(|s| s + 1).unwrap_or(1);
            let seg = Segment::create(&engine.cfg.fs, &engine.dir, seq, engine.cfg.segment_bytes)?;
            engine.segments.insert(seq, seg);
        }
        engine.fill_caches()?;
        Ok(engine)
    }

    fn recover_segment(&mut self, seq: u64, last: bool) -> Result<(), StorageError> {
        let path = self.dir.join(super::segment::segment_file_name(seq));
        let opened = match Segment::open(&self.cfg.fs, &path, seq, !self.read_only) {
            // A last segment whose header fails its check and whose body is
            // still all zeros: a crash (power loss) before the header's
            // fdatasync lost or tore it. Nothing in it was acknowledged.
            Err(StorageError::NotOurs { .. } | StorageError::Corrupt { offset: 0, .. })
                if last && super::segment::body_is_blank(&*self.cfg.fs, &path)? =>
            {
                None
            }
            other => other?,
        };
        let Some(mut seg) = opened else {
            if last {
                // Created but never written: a crash during rotation.
                let repaired = !self.read_only;
                self.notes.push(RecoveryNote {
                    path: path.clone(),
                    offset: 0,
                    kind: RecoveryNoteKind::BlankSegment,
                    repaired,
                });
                if self.read_only {
                    return Ok(());
                }
                log::warn!("{}: removing a segment whose header was never written or synced", path.display());
                self.cfg.fs.remove_file(&path).map_err(|e| StorageError::io("remove blank segment", &path, e))?;
                return sync_dir_on(&*self.cfg.fs, &self.dir);
            }
            return Err(StorageError::Corrupt {
                path,
                offset: 0,
                reason: "blank segment header before the tail".into(),
            });
        };
        let groups = &mut self.groups;
        let end = seg.scan(|rec, offset| {
            let loc = Loc { seg: seq, offset, body_len: body_len_of(&rec.as_ref()), term: rec.term };
            groups.entry(rec.group).or_default().apply(rec.kind, rec.index, loc, true).map_err(|reason| {
                StorageError::Corrupt { path: path.clone(), offset, reason: format!("group {}: {reason}", rec.group) }
            })
        })?;
        match end {
            ScanEnd::Clean { .. } => {}
            ScanEnd::Bad { offset, reason, valid_after } if last && !valid_after => {
                let repaired = !self.read_only;
                let kind = RecoveryNoteKind::TornTail { reason: reason.to_string() };
                self.notes.push(RecoveryNote { path: path.clone(), offset, kind, repaired });
                if repaired {
                    log::warn!("{}: torn tail at byte {offset} ({reason}); cutting it off", path.display());
                    seg.zero_from(offset)?;
                }
            }
            ScanEnd::Bad { offset, reason, .. } => {
                return Err(StorageError::Corrupt { path, offset, reason: reason.into() });
            }
        }
        self.segments.insert(seq, seg);
        Ok(())
    }

    /// Loads the last entries of every group into its cache.
    fn fill_caches(&mut self) -> Result<(), StorageError> {
        let budget = self.cfg.cache_bytes_per_group;
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for g in groups {
            let log = &self.groups[&g];
            // Walk back from the tail to find where `budget` bytes start.
            let mut bytes = 0;
            let mut from = log.last_index().next();
            for loc in log.locs.iter().rev() {
                bytes += loc.body_len as usize;
                if bytes > budget && from <= log.last_index() {
                    break;
                }
                from = from.prev();
            }
            let last = log.last_index();
            if from > last {
                continue;
            }
            let entries = self.read_from_disk(g, from, last, usize::MAX, usize::MAX)?;
            let log = self.groups.get_mut(&g).expect("listed above");
            for e in entries {
                log.cache_push(e, budget);
            }
        }
        Ok(())
    }

    /// Writes `ops` (of any groups, in order) and makes them durable with one
    /// `fdatasync`, all in one segment (a batch that does not fit in the
    /// active segment starts a new one, sized for it if it is larger).
    ///
    /// # Errors
    /// `InvalidRequest` (nothing written) when an append would leave a gap;
    /// `NoSpace` or `Io` when the disk refuses: nothing of the batch is
    /// durable or applied, and the same batch may be retried. A failed
    /// `fdatasync` fails stop.
    pub fn write(&mut self, ops: &[(GroupId, LogOp)]) -> Result<(), StorageError> {
        if self.read_only {
            return Err(StorageError::InvalidRequest(format!("{} was opened read-only", self.dir.display())));
        }
        let purge_points = self.validate(ops)?;
        let records = ops_to_records(ops, &purge_points);
        // A batch never spans two segments: when it does not fit in the
        // active one, a new segment is started before anything of it is
        // written. A full disk at that rotation (or at the write) then
        // leaves nothing of the batch durable, so the caller can retry the
        // same batch. (A batch split across segments had its first part
        // synced and applied; when that part truncated or purged below an
        // earlier append of the same batch, the retry was refused: found by
        // tests/fs_faults_log.rs on the simulated disk.)
        let total: u64 = records.iter().map(|r| r.as_ref().disk_bytes() as u64).sum();
        if self.active().written + total > self.active().capacity {
            self.rotate(total)?;
        }
        let mut pending: Vec<Pending> = Vec::with_capacity(records.len());
        self.buf.clear();
        let buf_start = self.active().written;
        let seq = self.active().seq;
        for staged in &records {
            let rec = staged.as_ref();
            let loc = Loc {
                seg: seq,
                offset: buf_start + self.buf.len() as u64,
                body_len: body_len_of(&rec),
                term: rec.term,
            };
            pending.push(Pending { kind: rec.kind, index: rec.index, loc });
            let starts_write = self.buf.is_empty();
            self.buf.push(rec, starts_write);
        }
        let result = self.flush_buf(buf_start);
        let durable = if result.is_ok() { pending.len() } else { 0 };
        pending.truncate(durable);
        self.commit_pending(ops, &pending);
        self.stats.batches += 1;
        result?;
        self.maybe_delete_segments()
    }

    /// Checks a batch against the index without writing anything, and
    /// returns the start point each purge leaves (what its record stores, so
    /// that replay finds the same start even when the purge record is all
    /// that is left of the group).
    fn validate(&self, ops: &[(GroupId, LogOp)]) -> Result<Vec<LogIndex>, StorageError> {
        let mut purge_points = Vec::new();
        // (known, offset, last) per group as the batch would leave it.
        let mut sim: HashMap<GroupId, (bool, LogIndex, LogIndex)> = HashMap::new();
        for (g, op) in ops {
            let state = sim.entry(*g).or_insert_with(|| match self.groups.get(g) {
                Some(log) => (log.known, log.offset, log.last_index()),
                None => (false, LogIndex(0), LogIndex(0)),
            });
            match op {
                LogOp::Append(entries) => {
                    let Some(first) = entries.first() else {
                        return Err(StorageError::InvalidRequest(format!("group {g}: empty append")));
                    };
                    if entries.windows(2).any(|w| w[1].index != w[0].index.next()) {
                        return Err(StorageError::InvalidRequest(format!("group {g}: append indices not consecutive")));
                    }
                    let (known, offset, last) = *state;
                    if known && (first.index <= offset || first.index > last.next()) {
                        return Err(StorageError::InvalidRequest(format!(
                            "group {g}: append at {} but the log holds {}..={}",
                            first.index,
                            offset.next(),
                            last
                        )));
                    }
                    let last = entries.last().map(|e| e.index).unwrap_or(first.index);
                    let offset = if known { offset } else { first.index.prev() };
                    *state = (true, offset, last);
                }
                LogOp::Reset(meta) => *state = (true, meta.last_index, meta.last_index),
                LogOp::Purge(i) => {
                    let (known, offset, last) = *state;
                    let point = if known { offset.max((*i).min(last)) } else { *i };
                    *state = (true, point, if known { last } else { point });
                    purge_points.push(point);
                }
            }
        }
        Ok(purge_points)
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("the engine always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("the engine always has an active segment")
    }

    /// Writes the encode buffer at `at` in the active segment and syncs it.
    fn flush_buf(&mut self, at: u64) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = self.buf.len() as u64;
        let buf = std::mem::take(&mut self.buf);
        let seg = self.active_mut();
        let written = buf.write_all_at(&*seg.file, at);
        let path = seg.path.clone();
        if let Err(e) = written {
            // Best effort: do not leave whole records of a failed batch
            // behind the tail for recovery to find.
            let _ = seg.file.write_all_at(&vec![0u8; buf.len()], at);
            self.buf = buf;
            self.buf.clear();
            return Err(StorageError::io("write segment", &path, e));
        }
        seg.zero_ahead(at, at + len);
        sync_file_or_die(&*seg.fs, &*seg.file, &path);
        seg.written = at + len;
        if seg.written > seg.capacity {
            seg.capacity = seg.written;
        }
        self.stats.fsyncs += 1;
        self.stats.bytes += len;
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }

    /// Starts a new segment big enough for a record of `disk` bytes.
    fn rotate(&mut self, disk: u64) -> Result<(), StorageError> {
        let seq = self.active().seq + 1;
        let capacity = self.cfg.segment_bytes.max(SEGMENT_HEADER_BYTES + disk);
        let seg = match Segment::create(&self.cfg.fs, &self.dir, seq, capacity) {
            // Deleted segments may still be closing: their space is freed
            // when they are. Wait for that, then try once more.
            Err(StorageError::NoSpace { .. }) if self.closer.started() => {
                self.closer.wait();
                Segment::create(&self.cfg.fs, &self.dir, seq, capacity)?
            }
            r => r?,
        };
        log::debug!("log: rotated to segment {seq}");
        self.segments.insert(seq, seg);
        Ok(())
    }

    /// Applies durable records to the index and the cache.
    ///
    /// `pending` holds the first records of `ops`, one per entry of an
    /// append and one per purge or reset, in order (fewer than all when a
    /// write failed part way).
    fn commit_pending(&mut self, ops: &[(GroupId, LogOp)], pending: &[Pending]) {
        let budget = self.cfg.cache_bytes_per_group;
        self.stats.records += pending.len() as u64;
        let mut pending = pending.iter();
        for (g, op) in ops {
            let log = self.groups.entry(*g).or_default();
            let entries: &[Entry] = match op {
                LogOp::Append(entries) => entries,
                LogOp::Purge(_) | LogOp::Reset(_) => &[],
            };
            for i in 0..entries.len().max(1) {
                let Some(p) = pending.next() else { return };
                if let Err(why) = log.apply(p.kind, p.index, p.loc, false) {
                    panic!("log index broken after a validated write: group {g}: {why}");
                }
                if let Some(e) = entries.get(i) {
                    log.cache_push(e.clone(), budget);
                }
            }
        }
    }

    /// Deletes segments older than every group's first live entry.
    fn maybe_delete_segments(&mut self) -> Result<(), StorageError> {
        let active = self.active().seq;
        let needed = self.groups.values().filter_map(|g| g.locs.front().map(|l| l.seg)).min().unwrap_or(active);
        let doomed: Vec<u64> = self.segments.keys().copied().filter(|s| *s < needed && *s != active).collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for seq in doomed {
            if let Some(seg) = self.segments.remove(&seq) {
                self.cfg.fs.remove_file(&seg.path).map_err(|e| StorageError::io("delete segment", &seg.path, e))?;
                log::debug!("log: deleted segment {seq}");
                let file = seg.file;
                self.closer.run(move || free_gently(file));
            }
        }
        sync_dir_on(&*self.cfg.fs, &self.dir)
    }

    // --- reads -----------------------------------------------------------------

    /// The groups the log holds.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut g: Vec<GroupId> = self.groups.keys().copied().collect();
        g.sort_unstable();
        g
    }

    /// The first index held for `group` (`last_index + 1` when empty).
    pub fn first_index(&self, group: GroupId) -> LogIndex {
        self.groups.get(&group).map(|g| g.offset.next()).unwrap_or(LogIndex(1))
    }

    /// The last index held for `group` (its start point when empty).
    pub fn last_index(&self, group: GroupId) -> LogIndex {
        self.groups.get(&group).map(|g| g.last_index()).unwrap_or(LogIndex(0))
    }

    /// The term of `group`'s entry at `index`, if known.
    pub fn term_at(&self, group: GroupId, index: LogIndex) -> Option<Term> {
        self.groups.get(&group)?.term_at(index)
    }

    /// Counters since open.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery found at the log's tail when it was opened (a torn
    /// tail, a blank newest segment), repaired or, read-only, left alone.
    pub fn recovery_notes(&self) -> &[RecoveryNote] {
        &self.notes
    }

    /// Whether the log was opened with [`LogEngine::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// A record of a batch: an entry borrowed from the caller, or one built
/// here (a marker, a configuration entry).
enum Staged<'a> {
    Entry(RecordRef<'a>),
    Built(Record),
}

impl Staged<'_> {
    fn as_ref(&self) -> RecordRef<'_> {
        match self {
            Staged::Entry(r) => *r,
            Staged::Built(r) => r.as_ref(),
        }
    }
}

/// The records of a batch: one per entry of an append, one per purge or
/// reset.
fn ops_to_records<'a>(ops: &'a [(GroupId, LogOp)], purge_points: &[LogIndex]) -> Vec<Staged<'a>> {
    let n = ops.iter().map(|(_, op)| if let LogOp::Append(es) = op { es.len() } else { 1 }).sum();
    let mut out = Vec::with_capacity(n);
    let mut purge_points = purge_points.iter();
    for (g, op) in ops {
        match op {
            LogOp::Append(entries) => {
                out.extend(entries.iter().map(|e| match RecordRef::of_entry(*g, e) {
                    Some(r) => Staged::Entry(r),
                    None => Staged::Built(Record::from_entry(*g, e)),
                }));
            }
            LogOp::Purge(_) => {
                let index = *purge_points.next().expect("validate returns one point per purge");
                out.push(Staged::Built(Record {
                    kind: Kind::Purge,
                    group: *g,
                    term: Term(0),
                    index,
                    payload: bytes::Bytes::new(),
                }));
            }
            LogOp::Reset(meta) => out.push(Staged::Built(Record {
                kind: Kind::Reset,
                group: *g,
                term: meta.last_term,
                index: meta.last_index,
                payload: super::record::encode_membership(&meta.membership),
            })),
        }
    }
    out
}

fn body_len_of(rec: &RecordRef<'_>) -> u32 {
    (super::record::BODY_HEADER_BYTES + rec.payload.len()) as u32
}
