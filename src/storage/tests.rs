//! Unit tests of the log engine on temp directories: the append, read,
//! truncate, purge, reset and recovery paths, one behaviour each. Crash,
//! power-loss, full-disk and model tests live in `tests/storage_*.rs`.

use std::path::PathBuf;

use bytes::Bytes;

use super::record::SEGMENT_HEADER_BYTES;
use super::segment::ZERO_AHEAD_BYTES;
use super::*;
use crate::core::{Entry, GroupId, LogIndex, LogOp, Membership, NodeId, Payload, SnapshotMeta, Term};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ringraft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn small() -> EngineConfig {
    EngineConfig { segment_bytes: 4096, cache_bytes_per_group: 512, ..EngineConfig::default() }
}

fn ents(from: u64, n: u64, term: u64, size: usize) -> Vec<Entry> {
    (from..from + n)
        .map(|i| Entry {
            term: Term(term),
            index: LogIndex(i),
            payload: Payload::Normal(Bytes::from(vec![(i % 251) as u8; size])),
        })
        .collect()
}

fn append(g: u64, e: Vec<Entry>) -> (GroupId, LogOp) {
    (GroupId(g), LogOp::Append(e))
}

#[test]
fn appends_of_two_groups_survive_reopen_across_segments() {
    let dir = TempDir::new("reopen");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    for b in 0..20 {
        log.write(&[append(1, ents(1 + b * 5, 5, 1, 100)), append(2, ents(1 + b * 2, 2, 3, 10))]).unwrap();
    }
    assert_eq!(log.stats().batches, 20);
    assert!(log.stats().fsyncs >= 20 && log.stats().fsyncs < 40, "one fsync per batch plus rotations");
    let before = log.entries(GroupId(1), LogIndex(1), LogIndex(100), usize::MAX, usize::MAX).unwrap();
    assert_eq!(before.len(), 100);
    drop(log);
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(100));
    assert_eq!(log.last_index(GroupId(2)), LogIndex(40));
    assert_eq!(log.term_at(GroupId(2), LogIndex(40)), Some(Term(3)));
    let after = log.entries(GroupId(1), LogIndex(1), LogIndex(100), usize::MAX, usize::MAX).unwrap();
    assert_eq!(after, before);
    assert!(log.stats().disk_reads > 0, "old entries come from disk, not the cache");
}

#[test]
fn an_append_inside_the_log_truncates_the_suffix_also_after_reopen() {
    let dir = TempDir::new("truncate");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    log.write(&[append(1, ents(1, 10, 1, 8))]).unwrap();
    log.write(&[append(1, ents(6, 2, 2, 8))]).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(7));
    assert_eq!(log.term_at(GroupId(1), LogIndex(6)), Some(Term(2)));
    drop(log);
    let log = LogEngine::open(&dir.0, small()).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(7));
    assert_eq!(log.term_at(GroupId(1), LogIndex(7)), Some(Term(2)));
}

#[test]
fn gaps_are_refused_before_anything_is_written() {
    let dir = TempDir::new("gap");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    log.write(&[append(1, ents(1, 3, 1, 8))]).unwrap();
    let err = log.write(&[append(2, ents(1, 1, 1, 8)), append(1, ents(5, 1, 1, 8))]).unwrap_err();
    assert!(matches!(err, StorageError::InvalidRequest(_)), "{err}");
    assert_eq!(log.last_index(GroupId(2)), LogIndex(0), "nothing of the refused batch was applied");
}

#[test]
fn purge_deletes_whole_segments_and_keeps_the_rest_readable() {
    let dir = TempDir::new("purge");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    for b in 0..30 {
        log.write(&[append(1, ents(1 + b * 4, 4, 1, 200))]).unwrap();
    }
    let segments = || std::fs::read_dir(&dir.0).unwrap().count();
    let before = segments();
    log.write(&[(GroupId(1), LogOp::Purge(LogIndex(100)))]).unwrap();
    assert!(segments() < before, "purged segments are deleted ({} -> {})", before, segments());
    assert_eq!(log.first_index(GroupId(1)), LogIndex(101));
    assert!(log.entries(GroupId(1), LogIndex(50), LogIndex(60), 10, usize::MAX).is_err());
    assert_eq!(log.entries(GroupId(1), LogIndex(101), LogIndex(120), 100, usize::MAX).unwrap().len(), 20);
    drop(log);
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(120));
    assert_eq!(log.entries(GroupId(1), LogIndex(110), LogIndex(120), 100, usize::MAX).unwrap().len(), 11);
}

#[test]
fn reset_restarts_a_group_after_a_snapshot() {
    let dir = TempDir::new("reset");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    log.write(&[append(1, ents(1, 5, 1, 8))]).unwrap();
    let meta = SnapshotMeta { last_index: LogIndex(50), last_term: Term(4), membership: Membership::new([NodeId(1)]) };
    log.write(&[(GroupId(1), LogOp::Reset(meta)), append(1, ents(51, 2, 4, 8))]).unwrap();
    drop(log);
    let log = LogEngine::open(&dir.0, small()).unwrap();
    assert_eq!(log.first_index(GroupId(1)), LogIndex(51));
    assert_eq!(log.last_index(GroupId(1)), LogIndex(52));
    assert_eq!(log.term_at(GroupId(1), LogIndex(50)), Some(Term(4)));
}

#[test]
fn byte_and_count_limits_apply_to_cache_and_disk_reads() {
    let dir = TempDir::new("limits");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    log.write(&[append(1, ents(1, 40, 1, 50))]).unwrap();
    assert_eq!(log.entries(GroupId(1), LogIndex(1), LogIndex(40), 7, usize::MAX).unwrap().len(), 7);
    assert_eq!(log.entries(GroupId(1), LogIndex(1), LogIndex(40), 100, 1).unwrap().len(), 1);
    assert_eq!(log.entries(GroupId(1), LogIndex(38), LogIndex(40), 100, 150).unwrap().len(), 2);
}

fn last_segment(dir: &std::path::Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.pop().unwrap()
}

#[test]
fn a_torn_last_record_is_cut_off_and_appending_continues() {
    let dir = TempDir::new("torn");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    log.write(&[append(1, ents(1, 3, 1, 40))]).unwrap();
    drop(log);
    // Damage the last record's payload: a torn write.
    let seg = last_segment(&dir.0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let last_payload = 32 + 2 * 80 + 40;
    bytes[last_payload] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(2));
    log.write(&[append(1, ents(3, 2, 2, 40))]).unwrap();
    drop(log);
    let log = LogEngine::open(&dir.0, small()).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(4));
}

#[test]
fn a_read_only_open_reports_a_torn_tail_and_writes_nothing() {
    let dir = TempDir::new("torn-ro");
    assert!(LogEngine::open_read_only(&dir.0, small()).is_err(), "no directory: refused");
    assert!(!dir.0.exists(), "and not created");
    std::fs::create_dir_all(&dir.0).unwrap();
    assert!(LogEngine::open_read_only(&dir.0, small()).is_err(), "no segment: refused");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0, "and none created");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    log.write(&[append(1, ents(1, 3, 1, 40))]).unwrap();
    drop(log);
    let seg = last_segment(&dir.0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[32 + 2 * 80 + 40] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let mut log = LogEngine::open_read_only(&dir.0, small()).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(2), "the torn record is not read");
    let notes = log.recovery_notes().to_vec();
    assert!(
        matches!(&notes[..], [RecoveryNote { kind: RecoveryNoteKind::TornTail { .. }, repaired: false, .. }]),
        "{notes:?}"
    );
    assert!(log.write(&[append(1, ents(3, 1, 1, 8))]).is_err(), "writes are refused");
    drop(log);
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the torn tail is left as it was");
    let log = LogEngine::open(&dir.0, small()).unwrap();
    assert!(log.recovery_notes().iter().all(|n| n.repaired), "a read-write open cuts it");
}

#[test]
fn a_damaged_middle_record_fails_open_naming_file_and_offset() {
    let dir = TempDir::new("corrupt");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    for i in 1..=3 {
        log.write(&[append(1, ents(i, 1, 1, 40))]).unwrap();
    }
    drop(log);
    let seg = last_segment(&dir.0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[32 + 80 + 40] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let err = LogEngine::open(&dir.0, small()).err().expect("open must fail");
    match err {
        StorageError::Corrupt { path, offset, .. } => {
            assert_eq!(path, seg);
            assert_eq!(offset, 32 + 80);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn a_file_that_is_not_ours_is_refused() {
    let dir = TempDir::new("notours");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("00000000000000000001.seg"), vec![7u8; 64]).unwrap();
    assert!(matches!(LogEngine::open(&dir.0, small()), Err(StorageError::NotOurs { .. })));
}

#[test]
fn damage_inside_the_last_write_is_a_torn_tail_even_with_its_later_records_intact() {
    // A power loss may keep later sectors of an unsynced write and lose an
    // earlier one: the write was never acknowledged, so it is cut, not
    // reported as corruption.
    let dir = TempDir::new("torn-inside");
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    log.write(&[append(1, ents(1, 1, 1, 40))]).unwrap();
    log.write(&[append(1, ents(2, 3, 1, 40))]).unwrap();
    drop(log);
    let seg = last_segment(&dir.0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[32 + 80 + 40] ^= 0x01; // the first record of the second write
    std::fs::write(&seg, &bytes).unwrap();
    let mut log = LogEngine::open(&dir.0, small()).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(1));
    log.write(&[append(1, ents(2, 1, 2, 8))]).unwrap();
    drop(log);
    let log = LogEngine::open(&dir.0, small()).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(2));
    assert_eq!(log.term_at(GroupId(1), LogIndex(2)), Some(Term(2)));
}

/// Byte ranges of `file` that are allocated but *unwritten* (ext4 extents
/// flagged `FIEMAP_EXTENT_UNWRITTEN`), or `None` where `FS_IOC_FIEMAP` is
/// not supported (tmpfs, some overlay filesystems).
#[allow(unsafe_code)]
fn unwritten_extents(file: &std::fs::File) -> Option<Vec<(u64, u64)>> {
    use std::os::unix::io::AsRawFd;
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const EXTENTS: usize = 64;
    // struct fiemap (32 bytes) followed by EXTENTS × struct fiemap_extent
    // (56 bytes each), as u64 words so the buffer is aligned.
    let mut buf = vec![0u64; (32 + EXTENTS * 56) / 8];
    buf[1] = u64::MAX; // fm_length
    buf[2] = u64::from(FIEMAP_FLAG_SYNC); // fm_flags; fm_mapped_extents (high half) = 0
    buf[3] = EXTENTS as u64; // fm_extent_count; fm_reserved = 0
                             // SAFETY: FS_IOC_FIEMAP reads the request header and writes at most
                             // fm_extent_count extents into the buffer, which is sized for them.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, buf.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    let mapped = (buf[2] >> 32) as usize;
    let mut out = Vec::new();
    for i in 0..mapped.min(EXTENTS) {
        let e = &buf[4 + i * 7..4 + i * 7 + 7];
        let (logical, length, flags) = (e[0], e[2], e[5] as u32);
        if flags & FIEMAP_EXTENT_UNWRITTEN != 0 {
            out.push((logical, logical + length));
        }
    }
    Some(out)
}

#[test]
fn small_writes_zero_ahead_so_their_blocks_are_written_and_reopen_finds_exactly_the_records() {
    let dir = TempDir::new("zero-ahead");
    let cfg = EngineConfig { segment_bytes: 8 << 20, cache_bytes_per_group: 512, ..EngineConfig::default() };
    let mut log = LogEngine::open(&dir.0, cfg.clone()).unwrap();
    log.write(&[append(1, ents(1, 4, 1, 1000))]).unwrap();
    let seg = std::fs::File::open(last_segment(&dir.0)).unwrap();
    let tail = SEGMENT_HEADER_BYTES + log.stats().bytes;
    match unwritten_extents(&seg) {
        None => eprintln!("skipped the extent check: FS_IOC_FIEMAP is not supported on {}", dir.0.display()),
        Some(unwritten) => {
            // A megabyte past the tail is real blocks, so the next small
            // appends' fdatasyncs need no extent conversion. Without the
            // zeroing the first unwritten block follows the tail's block.
            assert!(!unwritten.is_empty(), "the rest of the 8 MiB segment stays preallocated, not written");
            for (start, end) in &unwritten {
                assert!(
                    *start + 4096 >= tail + ZERO_AHEAD_BYTES,
                    "unwritten extent {start}..{end} begins within a megabyte of the tail at {tail}"
                );
            }
        }
    }
    // Small batches across the zeroed megabyte and into the next.
    let mut next = 5;
    while log.stats().bytes < ZERO_AHEAD_BYTES + ZERO_AHEAD_BYTES / 2 {
        log.write(&[append(1, ents(next, 4, 1, 1000))]).unwrap();
        next += 4;
    }
    // One large batch only moves the mark (no extra megabyte of zeros).
    let big: Vec<Entry> = ents(next, 2, 1, 600 << 10);
    log.write(&[append(1, big)]).unwrap();
    next += 2;
    drop(log);
    let mut log = LogEngine::open(&dir.0, cfg).unwrap();
    assert_eq!(log.last_index(GroupId(1)), LogIndex(next - 1), "the zeros past the tail read as the end of the log");
    let got = log.entries(GroupId(1), LogIndex(1), LogIndex(next), usize::MAX, usize::MAX).unwrap();
    assert_eq!(got.len() as u64, next - 1);
    assert!(got.iter().all(|e| matches!(&e.payload, Payload::Normal(b) if b[0] == (e.index.0 % 251) as u8)));
}
