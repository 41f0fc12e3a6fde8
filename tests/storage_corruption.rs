//! Damage on disk, then reopen: the log engine and the state file must tell
//! a torn tail (cut off, the log goes on) from corruption (a typed error
//! naming the file and the byte offset of the bad record), and must never
//! serve bytes that fail their checksum.
//!
//! Each test prints what it damaged (`cargo test --test storage_corruption
//! -- --nocapture` to see it).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ringraft::core::{Entry, GroupId, HardState, LogIndex, LogOp, Membership, NodeId, Payload, SnapshotMeta, Term};
use ringraft::storage::record::{self, Prefix, SEGMENT_HEADER_BYTES};
use ringraft::storage::{EngineConfig, GroupState, LogEngine, StateFile, StorageError};

// --- fixtures -------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("storage-corruption-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One segment holds everything these tests write unless they ask for
/// small segments; no cache beyond the last entry, so reads go to disk.
fn cfg(segment_bytes: u64) -> EngineConfig {
    EngineConfig { segment_bytes, cache_bytes_per_group: 0, ..EngineConfig::default() }
}

const G: GroupId = GroupId(1);

fn ents(from: u64, n: u64, term: u64, size: usize) -> Vec<Entry> {
    (from..from + n)
        .map(|i| Entry {
            term: Term(term),
            index: LogIndex(i),
            payload: Payload::Normal((0..size).map(|k| (i as usize * 7 + k + term as usize) as u8).collect::<Bytes>()),
        })
        .collect()
}

fn append(e: Vec<Entry>) -> [(GroupId, LogOp); 1] {
    [(G, LogOp::Append(e))]
}

fn all(log: &mut LogEngine) -> Result<Vec<Entry>, StorageError> {
    let (first, last) = (log.first_index(G), log.last_index(G));
    log.entries(G, first, last, usize::MAX, usize::MAX)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// A record found by walking a segment file: where it starts and how many
/// bytes of body it has.
#[derive(Clone, Copy, Debug)]
struct At {
    offset: u64,
    body_len: usize,
}

/// The records of a segment file, walked independently of the engine.
fn records(path: &Path) -> Vec<At> {
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES as usize;
    while pos + 8 <= data.len() {
        let Prefix::Record { len, .. } = record::decode_prefix(data[pos..pos + 8].try_into().unwrap()) else { break };
        out.push(At { offset: pos as u64, body_len: len });
        pos += record::padded(8 + len);
    }
    out
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Flips one bit of `path` at `offset`, and says so.
fn flip(path: &Path, offset: u64, bit: u8, what: &str) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    let was = b[0];
    b[0] ^= 1 << bit;
    f.write_all_at(&b, offset).unwrap();
    println!("damaged: {} byte {offset} bit {bit} ({was:#04x} -> {:#04x}): {what}", name(path), b[0]);
}

/// Overwrites `path` at `offset` with `bytes`, and says so.
fn overwrite(path: &Path, offset: u64, bytes: &[u8], what: &str) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    println!("damaged: {} bytes {offset}..{}: {what}", name(path), offset + bytes.len() as u64);
}

/// Bytes that no record could start at: a deterministic scramble with no
/// 8-byte run of zeros and lengths that fail their checksum.
fn garbage(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

#[track_caller]
fn expect_corrupt(res: Result<LogEngine, StorageError>, path: &Path, offset: u64) -> String {
    match res {
        Err(StorageError::Corrupt { path: p, offset: o, reason }) => {
            assert_eq!(p, path, "Corrupt names the damaged file");
            assert_eq!(o, offset, "Corrupt names the damaged record's offset ({reason})");
            let msg = StorageError::Corrupt { path: p, offset: o, reason }.to_string();
            assert!(msg.contains(&path.display().to_string()) && msg.contains(&offset.to_string()), "{msg}");
            println!("  -> {msg}");
            msg
        }
        Err(other) => panic!("expected Corrupt at {} byte {offset}, got {other}", path.display()),
        Ok(_) => panic!("expected Corrupt at {} byte {offset}, but the log opened", path.display()),
    }
}

// --- records inside the log -----------------------------------------------

#[test]
fn a_flipped_bit_in_a_middle_record_fails_open_naming_file_and_offset() {
    // Every field of the record: length, checksum, kind, group, term,
    // index, payload.
    let spots: [(usize, &str); 7] =
        [(0, "length"), (5, "checksum"), (8, "kind"), (9, "group id"), (17, "term"), (25, "index"), (40, "payload")];
    for (at, field) in spots {
        for bit in [0u8, 7] {
            let dir = TempDir::new("middle");
            let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
            log.write(&append(ents(1, 3, 1, 60))).unwrap();
            log.write(&append(ents(4, 3, 1, 60))).unwrap();
            drop(log);
            let seg = &segments(&dir.0)[0];
            let recs = records(seg);
            assert_eq!(recs.len(), 6);
            let victim = recs[2];
            flip(seg, victim.offset + at as u64, bit, &format!("{field} of record 3 of 6"));
            expect_corrupt(LogEngine::open(&dir.0, cfg(1 << 16)), seg, victim.offset);
        }
    }
}

#[test]
fn a_flipped_bit_in_the_last_record_is_a_torn_tail_that_is_cut_off() {
    let dir = TempDir::new("torn");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    log.write(&append(ents(1, 3, 1, 60))).unwrap();
    log.write(&append(ents(4, 2, 1, 60))).unwrap();
    drop(log);
    let seg = segments(&dir.0)[0].clone();
    let last = *records(&seg).last().unwrap();
    flip(&seg, last.offset + 8 + 30, 3, "payload of the last record (entry 5)");

    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    assert_eq!(log.last_index(G), LogIndex(4), "the torn entry is gone");
    assert_eq!(all(&mut log).unwrap(), ents(1, 4, 1, 60));
    let data = std::fs::read(&seg).unwrap();
    assert!(data[last.offset as usize..].iter().all(|b| *b == 0), "the torn tail is zeroed on disk");

    // Appending goes on where the tail was cut, and survives a reopen.
    log.write(&append(ents(5, 3, 2, 90))).unwrap();
    drop(log);
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    assert_eq!(log.last_index(G), LogIndex(7));
    assert_eq!(log.term_at(G, LogIndex(5)), Some(Term(2)));
    let mut want = ents(1, 4, 1, 60);
    want.extend(ents(5, 3, 2, 90));
    assert_eq!(all(&mut log).unwrap(), want);
}

#[test]
fn damage_inside_the_last_write_is_a_torn_tail_even_with_its_later_records_intact() {
    // A power loss can keep later sectors of an unsynced write and lose
    // earlier ones; that write was never acknowledged, so it is cut off.
    let dir = TempDir::new("lastwrite");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    log.write(&append(ents(1, 3, 1, 60))).unwrap();
    log.write(&append(ents(4, 4, 1, 60))).unwrap();
    drop(log);
    let seg = segments(&dir.0)[0].clone();
    let recs = records(&seg);
    assert_eq!(recs.len(), 7);
    flip(&seg, recs[4].offset + 8 + 30, 1, "payload of entry 5, the 2nd of the last write's 4 records");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    assert_eq!(log.last_index(G), LogIndex(4), "the last write is cut at the damage");
    assert_eq!(all(&mut log).unwrap(), ents(1, 4, 1, 60));
    let data = std::fs::read(&seg).unwrap();
    assert!(data[recs[4].offset as usize..].iter().all(|b| *b == 0), "its surviving records are zeroed too");
    log.write(&append(ents(5, 1, 2, 8))).unwrap();
    drop(log);
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    let mut want = ents(1, 4, 1, 60);
    want.extend(ents(5, 1, 2, 8));
    assert_eq!(all(&mut log).unwrap(), want, "no record of the cut write comes back");
}

#[test]
fn a_zeroed_record_with_a_later_write_after_it_is_corruption_not_the_end() {
    // A lost sector in the middle of synced data must not read as the end
    // of the log: that would drop acknowledged entries silently.
    let dir = TempDir::new("hole");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    log.write(&append(ents(1, 3, 1, 60))).unwrap();
    log.write(&append(ents(4, 2, 1, 60))).unwrap();
    drop(log);
    let seg = segments(&dir.0)[0].clone();
    let recs = records(&seg);
    let hole = recs[1];
    overwrite(&seg, hole.offset, &vec![0u8; record::padded(8 + hole.body_len)], "entry 2 zeroed (a lost sector)");
    expect_corrupt(LogEngine::open(&dir.0, cfg(1 << 16)), &seg, hole.offset);
}

#[test]
fn a_zeroed_start_of_the_last_write_with_garbage_after_is_a_torn_tail() {
    let dir = TempDir::new("zerostart");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 14)).unwrap();
    log.write(&append(ents(1, 3, 1, 60))).unwrap();
    log.write(&append(ents(4, 3, 1, 60))).unwrap();
    drop(log);
    let seg = segments(&dir.0)[0].clone();
    let recs = records(&seg);
    // The last write's first record never landed; sectors after it hold
    // half-written bytes.
    overwrite(&seg, recs[3].offset, &[0u8; 8], "prefix of entry 4, the first record of the last write");
    let junk = garbage(256);
    overwrite(&seg, recs[5].offset + 16, &junk, "the last record's body and what follows it");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 14)).unwrap();
    assert_eq!(all(&mut log).unwrap(), ents(1, 3, 1, 60));
    let data = std::fs::read(&seg).unwrap();
    assert!(data[recs[3].offset as usize..].iter().all(|b| *b == 0), "everything after the end is zeroed");
    // A new write exactly the size of the lost record: the stale entry 5
    // after it must not come back.
    log.write(&append(ents(4, 1, 2, 60))).unwrap();
    drop(log);
    let mut log = LogEngine::open(&dir.0, cfg(1 << 14)).unwrap();
    let mut want = ents(1, 3, 1, 60);
    want.extend(ents(4, 1, 2, 60));
    assert_eq!(all(&mut log).unwrap(), want);
}

#[test]
fn the_zero_filled_preallocated_region_is_the_end_of_the_log() {
    let dir = TempDir::new("zeros");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    log.write(&append(ents(1, 4, 1, 100))).unwrap();
    drop(log);
    let seg = segments(&dir.0)[0].clone();
    let end = records(&seg).last().map(|r| r.offset + record::padded(8 + r.body_len) as u64).unwrap();
    let data = std::fs::read(&seg).unwrap();
    assert_eq!(data.len() as u64, 1 << 16, "the segment is preallocated to its full size");
    assert!(data[end as usize..].iter().all(|b| *b == 0), "the unwritten part reads as zeros");
    // Zero the unwritten part explicitly (as a zero-filling allocator would)
    // and grow the file beyond its capacity: still just the end of the log.
    overwrite(&seg, end, &vec![0u8; (data.len() as u64 - end) as usize], "zero-filled the unwritten region");
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len((1 << 16) + 4096).unwrap();
    println!("damaged: {} grown by 4096 zero bytes", name(&seg));
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    assert_eq!(all(&mut log).unwrap(), ents(1, 4, 1, 100));
    log.write(&append(ents(5, 1, 1, 100))).unwrap();
    assert_eq!(log.last_index(G), LogIndex(5));
}

#[test]
fn garbage_after_a_torn_tail_is_never_served() {
    let dir = TempDir::new("garbage");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 14)).unwrap();
    log.write(&append(ents(1, 3, 1, 200))).unwrap();
    drop(log);
    let seg = segments(&dir.0)[0].clone();
    let last = *records(&seg).last().unwrap();
    // A torn write: the last record's prefix landed, half its body did not,
    // and the rest of the file holds garbage (never-zeroed blocks).
    let tail = 8 + last.body_len as u64 / 2;
    let junk = garbage((1 << 14) - (last.offset + tail) as usize);
    overwrite(&seg, last.offset + tail, &junk, "second half of the last record and everything after it");

    let mut log = LogEngine::open(&dir.0, cfg(1 << 14)).unwrap();
    assert_eq!(log.last_index(G), LogIndex(2));
    assert_eq!(all(&mut log).unwrap(), ents(1, 2, 1, 200));
    let data = std::fs::read(&seg).unwrap();
    assert!(data[last.offset as usize..].iter().all(|b| *b == 0), "garbage is zeroed at recovery");
    // New records written over the old tail are what comes back, nothing else.
    log.write(&append(ents(3, 2, 2, 30))).unwrap();
    drop(log);
    let mut log = LogEngine::open(&dir.0, cfg(1 << 14)).unwrap();
    let mut want = ents(1, 2, 1, 200);
    want.extend(ents(3, 2, 2, 30));
    assert_eq!(all(&mut log).unwrap(), want);
    assert_eq!(log.entries(G, LogIndex(5), LogIndex(100), 100, usize::MAX).unwrap(), Vec::<Entry>::new());
}

#[test]
fn a_damaged_last_record_of_a_non_last_segment_is_corruption() {
    let dir = TempDir::new("nonlast");
    let mut log = LogEngine::open(&dir.0, cfg(1024)).unwrap();
    for b in 0..6 {
        log.write(&append(ents(1 + b * 3, 3, 1, 100))).unwrap();
    }
    drop(log);
    let segs = segments(&dir.0);
    assert!(segs.len() >= 3, "small segments rotate: {segs:?}");
    let seg = &segs[0];
    let last = *records(seg).last().unwrap();
    flip(seg, last.offset + 8 + 40, 0, "payload of the last record of the first of several segments");
    expect_corrupt(LogEngine::open(&dir.0, cfg(1024)), seg, last.offset);
}

#[test]
fn a_lost_last_record_of_a_non_last_segment_is_corruption() {
    // Zeros where the record was read as the segment's end; the next
    // segment's first entry then leaves a gap, which replay must not take
    // for records deleted with older segments.
    let dir = TempDir::new("lostlast");
    let mut log = LogEngine::open(&dir.0, cfg(1024)).unwrap();
    for b in 0..6 {
        log.write(&append(ents(1 + b * 3, 3, 1, 100))).unwrap();
    }
    drop(log);
    let segs = segments(&dir.0);
    let last = *records(&segs[0]).last().unwrap();
    let zeros = vec![0u8; record::padded(8 + last.body_len)];
    overwrite(&segs[0], last.offset, &zeros, "the last record of the first segment zeroed (a lost sector)");
    match LogEngine::open(&dir.0, cfg(1024)) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt { path, reason, .. } = &e else { unreachable!() };
            assert_eq!(path, &segs[1], "found where the entries stop following");
            assert!(reason.contains("gap"), "{e}");
            println!("  -> {e}");
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(mut log) => panic!("a lost record went unnoticed: log holds {:?}", all(&mut log).map(|v| v.len())),
    }
}

#[test]
fn a_truncated_non_last_segment_is_corruption() {
    let dir = TempDir::new("short");
    let mut log = LogEngine::open(&dir.0, cfg(1024)).unwrap();
    for b in 0..6 {
        log.write(&append(ents(1 + b * 3, 3, 1, 100))).unwrap();
    }
    drop(log);
    let seg = segments(&dir.0)[0].clone();
    let last = *records(&seg).last().unwrap();
    let cut = last.offset + 8 + 20;
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut).unwrap();
    println!("damaged: {} truncated to {cut} bytes, inside its last record", name(&seg));
    expect_corrupt(LogEngine::open(&dir.0, cfg(1024)), &seg, last.offset);
}

// --- segment headers --------------------------------------------------------

fn one_segment_log(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name);
    let mut log = LogEngine::open(&dir.0, cfg(4096)).unwrap();
    log.write(&append(ents(1, 2, 1, 10))).unwrap();
    drop(log);
    let seg = segments(&dir.0)[0].clone();
    (dir, seg)
}

#[test]
fn a_segment_header_with_bad_magic_is_not_ours() {
    let (dir, seg) = one_segment_log("magic");
    overwrite(&seg, 0, b"NOTRAFT!", "magic of the segment header");
    match LogEngine::open(&dir.0, cfg(4096)) {
        Err(e @ StorageError::NotOurs { .. }) => {
            let StorageError::NotOurs { path } = &e else { unreachable!() };
            assert_eq!(path, &seg);
            println!("  -> {e}");
        }
        Err(e) => panic!("expected NotOurs, got {e}"),
        Ok(_) => panic!("expected NotOurs, but the log opened"),
    }
}

#[test]
fn a_segment_of_a_future_version_is_refused() {
    let (dir, seg) = one_segment_log("version");
    // A well-formed header of version 2: its checksum is right.
    let mut h = std::fs::read(&seg).unwrap()[..SEGMENT_HEADER_BYTES as usize].to_vec();
    h[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    overwrite(&seg, 0, &h, "segment header rewritten as format version 2");
    match LogEngine::open(&dir.0, cfg(4096)) {
        Err(e @ StorageError::VersionUnsupported { .. }) => {
            let StorageError::VersionUnsupported { path, found } = &e else { unreachable!() };
            assert_eq!((path, *found), (&seg, 2));
            println!("  -> {e}");
        }
        Err(e) => panic!("expected VersionUnsupported, got {e}"),
        Ok(_) => panic!("expected VersionUnsupported, but the log opened"),
    }
}

#[test]
fn a_segment_header_with_a_bad_checksum_is_corruption_at_offset_zero() {
    let (dir, seg) = one_segment_log("hdrcrc");
    flip(&seg, 16, 1, "sequence number in the segment header");
    expect_corrupt(LogEngine::open(&dir.0, cfg(4096)), &seg, 0);
}

#[test]
fn a_blank_last_segment_from_a_crash_during_creation_is_removed() {
    for len in [0u64, 4096] {
        let dir = TempDir::new("blank");
        let mut log = LogEngine::open(&dir.0, cfg(1024)).unwrap();
        for b in 0..4 {
            log.write(&append(ents(1 + b * 3, 3, 1, 100))).unwrap();
        }
        drop(log);
        let segs = segments(&dir.0);
        let last_seq: u64 = name(segs.last().unwrap())[..20].parse().unwrap();
        let blank = dir.0.join(format!("{:020}.seg", last_seq + 1));
        std::fs::write(&blank, vec![0u8; len as usize]).unwrap();
        println!("damaged: created {} with {len} zero bytes (crash before its header was written)", name(&blank));
        let mut log = LogEngine::open(&dir.0, cfg(1024)).unwrap();
        assert!(!blank.exists(), "the blank segment is removed");
        assert_eq!(all(&mut log).unwrap(), ents(1, 12, 1, 100));
        log.write(&append(ents(13, 10, 1, 100))).unwrap();
        drop(log);
        let mut log = LogEngine::open(&dir.0, cfg(1024)).unwrap();
        assert_eq!(all(&mut log).unwrap(), ents(1, 22, 1, 100));
    }
}

#[test]
fn a_blank_segment_before_the_last_is_corruption() {
    let dir = TempDir::new("blankmid");
    let mut log = LogEngine::open(&dir.0, cfg(1024)).unwrap();
    for b in 0..6 {
        log.write(&append(ents(1 + b * 3, 3, 1, 100))).unwrap();
    }
    drop(log);
    let seg = segments(&dir.0)[1].clone();
    overwrite(&seg, 0, &[0u8; SEGMENT_HEADER_BYTES as usize], "header of the second of several segments zeroed");
    expect_corrupt(LogEngine::open(&dir.0, cfg(1024)), &seg, 0);
}

// --- reads of damage that happens after open -------------------------------

#[test]
fn reading_a_record_damaged_after_open_is_an_error_never_the_bad_bytes() {
    let dir = TempDir::new("read");
    let mut log = LogEngine::open(&dir.0, cfg(1 << 16)).unwrap();
    log.write(&append(ents(1, 10, 1, 64))).unwrap();
    let seg = segments(&dir.0)[0].clone();
    let recs = records(&seg);

    // Entry 3's payload.
    flip(&seg, recs[2].offset + 8 + 25 + 10, 4, "payload of entry 3 while the log is open");
    match log.entries(G, LogIndex(1), LogIndex(10), usize::MAX, usize::MAX) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt { path, offset, .. } = &e else { unreachable!() };
            assert_eq!((path, *offset), (&seg, recs[2].offset));
            println!("  -> {e}");
        }
        other => panic!("expected Corrupt for entry 3, got {other:?}"),
    }
    // What is around the damage still reads.
    assert_eq!(log.entries(G, LogIndex(1), LogIndex(2), 10, usize::MAX).unwrap(), ents(1, 2, 1, 64));
    assert_eq!(log.entries(G, LogIndex(4), LogIndex(10), 10, usize::MAX).unwrap(), ents(4, 7, 1, 64));

    // Entry 6's length: the record no longer matches its index entry.
    flip(&seg, recs[5].offset + 1, 2, "length of entry 6 while the log is open");
    match log.entries(G, LogIndex(6), LogIndex(6), 1, usize::MAX) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt { offset, .. } = &e else { unreachable!() };
            assert_eq!(*offset, recs[5].offset);
            println!("  -> {e}");
        }
        other => panic!("expected Corrupt for entry 6, got {other:?}"),
    }
    // Entry 8's group id: the checksum fails before anything is believed.
    flip(&seg, recs[7].offset + 8 + 1, 0, "group id of entry 8 while the log is open");
    assert!(matches!(log.entries(G, LogIndex(8), LogIndex(9), 2, usize::MAX), Err(StorageError::Corrupt { .. })));
}

// --- the state file ---------------------------------------------------------

fn sample_state() -> GroupState {
    GroupState {
        hard_state: HardState { term: Term(9), vote: NodeId(2) },
        snapshot: SnapshotMeta {
            last_index: LogIndex(1234),
            last_term: Term(8),
            membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
        },
    }
}

#[test]
fn a_damaged_state_file_is_an_error_naming_the_file() {
    let dir = TempDir::new("state");
    let states = StateFile::new(&dir.0).unwrap();
    states.store(G, &sample_state()).unwrap();
    let path = dir.0.join("group-1.state");
    let good = std::fs::read(&path).unwrap();
    let restore = || std::fs::write(&path, &good).unwrap();

    // Every byte of the body and checksum: a flip is Corrupt, naming the file.
    for at in 16..good.len() as u64 {
        restore();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[good[at as usize] ^ 0x10], at).unwrap();
        match states.load(G) {
            Err(StorageError::Corrupt { path: p, .. }) => assert_eq!(p, path),
            other => panic!("byte {at} flipped: expected Corrupt, got {other:?}"),
        }
    }
    println!("damaged: group-1.state, each of bytes 16..{} in turn (body and checksum): all Corrupt", good.len());

    restore();
    flip(&path, 30, 6, "snapshot index in the state file");
    let e = states.load(G).unwrap_err();
    assert!(matches!(&e, StorageError::Corrupt { path: p, .. } if *p == path), "{e}");
    assert!(e.to_string().contains("group-1.state"), "{e}");
    println!("  -> {e}");

    restore();
    std::fs::write(&path, &good[..good.len() - 3]).unwrap();
    println!("damaged: group-1.state truncated by 3 bytes");
    assert!(matches!(states.load(G), Err(StorageError::Corrupt { path: p, .. }) if p == path));

    restore();
    overwrite(&path, 0, b"XXXX", "magic of the state file");
    assert!(matches!(states.load(G), Err(StorageError::NotOurs { path: p }) if p == path));

    restore();
    overwrite(&path, 8, &7u32.to_le_bytes(), "version of the state file");
    assert!(matches!(states.load(G), Err(StorageError::VersionUnsupported { path: p, found: 7 }) if p == path));

    restore();
    assert_eq!(states.load(G).unwrap(), Some(sample_state()), "the undamaged file still loads");
}
