//! One segment file of the shared log: creation with preallocation, the
//! scan that recovery runs, positioned reads and writes.
//!
//! A segment is created at its full size with `fallocate`, so a full disk
//! shows up when a segment is created (a typed error before anything is
//! acknowledged), not in the middle of a batch. The header is written and
//! synced, and the directory synced, before the segment takes records.
//!
//! `fallocate` leaves *unwritten* extents: the first write into each block
//! makes ext4 convert the extent, a metadata change that every `fdatasync`
//! must then commit through the journal. Small appends therefore write
//! zeros a little ahead of the tail ([`Segment::zero_ahead`]) so the
//! records land in blocks already written, and their `fdatasync` flushes
//! data alone: on this machine 3 processes syncing 4 KiB appends made
//! 1,550–1,930 fdatasyncs/s each into fallocated files against 3,000–4,200
//! into zero-filled ones, and one alone 4,700–5,000 against 10,400–10,900.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::{sync_dir_on, sync_file_or_die, StorageError};
use super::record::{
    decode_body, decode_prefix, decode_segment_header, encode_segment_header, Header, Prefix, Record,
    RECORD_PREFIX_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::fs::{read_full_at, Fs, FsFile, OpenMode};

/// The file name of segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

/// The sequence number in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An open segment file.
#[derive(Debug)]
pub struct Segment {
    /// Sequence number (file order).
    pub seq: u64,
    /// The file's path.
    pub path: PathBuf,
    /// The file system it lives on.
    pub fs: Arc<dyn Fs>,
    /// The open file.
    pub file: Box<dyn FsFile>,
    /// Offset of the end of the written records (where the next one goes).
    pub written: u64,
    /// Bytes allocated for the file.
    pub capacity: u64,
    /// Bytes from the start known to be written (records or zeros), so
    /// that overwriting them needs no extent conversion (module docs).
    /// Only a performance hint: past it the file still reads as zeros.
    pub zeroed: u64,
}

/// How far ahead of the tail [`Segment::zero_ahead`] writes zeros.
pub const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// Writes of this many bytes or more are not followed by zeros: moving
/// their bytes costs more than the one extent conversion their sync pays
/// (zeroing doubles what reaches the disk; at 16 × 64 KiB in flight it cut
/// replicated throughput by about half).
pub const ZERO_AHEAD_WRITE_MAX: u64 = 64 << 10;

/// How a scan of a segment ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Reached the zero-filled tail or the end of the file at `offset`.
    Clean {
        /// Where the written part ends.
        offset: u64,
    },
    /// Stopped at a bad record.
    Bad {
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
        /// Whether a valid record that starts a later write follows it in
        /// the file. A later write was only issued after the damaged one
        /// was synced, so the damage is corruption, not a torn tail. Valid
        /// records of the damaged write itself (sectors a power loss kept
        /// out of order) do not count: that write was never acknowledged.
        valid_after: bool,
    },
}

impl Segment {
    /// Creates segment `seq` in `dir` with `capacity` bytes allocated.
    ///
    /// # Errors
    /// `NoSpace` when the disk cannot hold the segment (the partial file is
    /// removed), `Io` for other failures.
    pub fn create(fs: &Arc<dyn Fs>, dir: &Path, seq: u64, capacity: u64) -> Result<Segment, StorageError> {
        let path = dir.join(segment_file_name(seq));
        let file = fs.open(&path, OpenMode::CreateNew).map_err(|e| StorageError::io("create segment", &path, e))?;
        let cleanup = |e: StorageError| {
            let _ = fs.remove_file(&path);
            e
        };
        preallocate(&*file, &path, capacity).map_err(cleanup)?;
        file.write_all_at(&encode_segment_header(seq), 0)
            .map_err(|e| cleanup(StorageError::io("write segment header", &path, e)))?;
        sync_file_or_die(&**fs, &*file, &path);
        sync_dir_on(&**fs, dir)?;
        Ok(Segment {
            seq,
            path,
            fs: Arc::clone(fs),
            file,
            written: SEGMENT_HEADER_BYTES,
            capacity,
            zeroed: SEGMENT_HEADER_BYTES,
        })
    }

    /// Opens an existing segment and checks its header. `Ok(None)` means
    /// the header was never written (a crash during creation). Without
    /// `writable` the file is opened read-only: any write to it fails.
    ///
    /// # Errors
    /// `NotOurs`, `VersionUnsupported`, `Corrupt` (header checksum, or a
    /// sequence number that disagrees with the name), `Io`.
    pub fn open(fs: &Arc<dyn Fs>, path: &Path, seq: u64, writable: bool) -> Result<Option<Segment>, StorageError> {
        let mode = if writable { OpenMode::ReadWrite } else { OpenMode::Read };
        let file = fs.open(path, mode).map_err(|e| StorageError::io("open segment", path, e))?;
        let capacity = file.size().map_err(|e| StorageError::io("stat segment", path, e))?;
        let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
        if capacity < SEGMENT_HEADER_BYTES {
            return Ok(None);
        }
        file.read_exact_at(&mut h, 0).map_err(|e| StorageError::io("read segment header", path, e))?;
        let corrupt = |reason: &str| StorageError::Corrupt { path: path.into(), offset: 0, reason: reason.into() };
        match decode_segment_header(&h) {
            Header::Valid { seq: s } if s == seq => {}
            Header::Valid { seq: s } => return Err(corrupt(&format!("header says segment {s}, name says {seq}"))),
            Header::Blank => return Ok(None),
            Header::NotOurs => return Err(StorageError::NotOurs { path: path.into() }),
            Header::Version(v) => return Err(StorageError::VersionUnsupported { path: path.into(), found: v }),
            Header::Corrupt => return Err(corrupt("segment header checksum mismatch")),
        }
        Ok(Some(Segment {
            seq,
            path: path.into(),
            fs: Arc::clone(fs),
            file,
            written: SEGMENT_HEADER_BYTES,
            capacity,
            zeroed: SEGMENT_HEADER_BYTES,
        }))
    }

    /// Reads every record in order, calling `visit(record, offset)`, and
    /// sets `written` to where the valid records end.
    ///
    /// # Errors
    /// I/O errors reading the file, or whatever `visit` returns.
    pub fn scan(
        &mut self,
        mut visit: impl FnMut(Record, u64) -> Result<(), StorageError>,
    ) -> Result<ScanEnd, StorageError> {
        let mut data = vec![0u8; self.capacity as usize];
        read_full(&*self.file, &mut data, &self.path)?;
        let data = Bytes::from(data);
        let mut pos = SEGMENT_HEADER_BYTES as usize;
        let end = loop {
            match parse_at(&data, pos) {
                // Bytes after the end marker are the rest of a write whose
                // start was lost (a power failure kept later sectors of an
                // unsynced write, not earlier ones): a torn tail, or
                // corruption if a valid record follows. Left there, a later
                // append ending where a stale record starts would revive it.
                Parsed::End if data[pos..].iter().any(|b| *b != 0) => {
                    let valid_after = any_valid_after(&data, pos + 8);
                    break ScanEnd::Bad { offset: pos as u64, reason: "data after the end marker", valid_after };
                }
                Parsed::End => break ScanEnd::Clean { offset: pos as u64 },
                Parsed::Bad(reason) => {
                    let valid_after = any_valid_after(&data, pos + 8);
                    break ScanEnd::Bad { offset: pos as u64, reason, valid_after };
                }
                Parsed::Record(rec, disk) => {
                    visit(rec, pos as u64)?;
                    pos += disk;
                }
            }
        };
        self.written = match end {
            ScanEnd::Clean { offset } | ScanEnd::Bad { offset, .. } => offset,
        };
        self.zeroed = self.written;
        Ok(end)
    }

    /// Zeroes everything from `offset` to the end of the file, so a torn
    /// tail cannot be mistaken for records later, and syncs.
    ///
    /// # Errors
    /// I/O errors (a failed sync fails stop).
    pub fn zero_from(&mut self, offset: u64) -> Result<(), StorageError> {
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK];
        let mut at = offset;
        while at < self.capacity {
            let n = ((self.capacity - at) as usize).min(CHUNK);
            self.file.write_all_at(&zeros[..n], at).map_err(|e| StorageError::io("zero torn tail", &self.path, e))?;
            at += n as u64;
        }
        sync_file_or_die(&*self.fs, &*self.file, &self.path);
        self.written = offset;
        self.zeroed = self.capacity;
        Ok(())
    }

    /// Called after records were written up to `end` and before they are
    /// synced: when `end` passed the zeroed part, writes zeros from `end`
    /// up to [`ZERO_AHEAD_BYTES`] further, so the next small writes land in
    /// written blocks (module docs). The caller's `fdatasync` covers them.
    /// A write of [`ZERO_AHEAD_WRITE_MAX`] or more gains nothing from it
    /// (its extent conversion is cheap beside its bytes) and only moves the
    /// mark.
    ///
    /// Zeroing is an optimisation: if the write fails, the blocks stay
    /// unwritten, which still read as zeros, so nothing is lost; the error
    /// is logged and the mark not moved.
    pub fn zero_ahead(&mut self, start: u64, end: u64) {
        if end <= self.zeroed {
            return;
        }
        let ahead_to = (end + ZERO_AHEAD_BYTES).min(self.capacity);
        if end - start >= ZERO_AHEAD_WRITE_MAX || ahead_to <= end {
            self.zeroed = end;
            return;
        }
        let zeros = vec![0u8; (ahead_to - end) as usize];
        match self.file.write_all_at(&zeros, end) {
            Ok(()) => self.zeroed = ahead_to,
            Err(e) => {
                log::warn!(
                    "{}: zeroing ahead of the tail failed (appends stay correct, syncs slower): {e}",
                    self.path.display()
                );
                self.zeroed = end;
            }
        }
    }

    /// Reads `len` bytes at `offset`.
    ///
    /// # Errors
    /// I/O errors (a short file reads as an error).
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| StorageError::io("read segment", &self.path, e))?;
        Ok(Bytes::from(buf))
    }
}

fn read_full(file: &dyn FsFile, buf: &mut [u8], path: &Path) -> Result<(), StorageError> {
    let done = read_full_at(file, buf, 0).map_err(|e| StorageError::io("read segment", path, e))?;
    // A file shorter than its metadata said reads as zeros: end of log.
    buf[done..].fill(0);
    Ok(())
}

enum Parsed {
    End,
    Bad(&'static str),
    Record(Record, usize),
}

fn parse_at(data: &Bytes, pos: usize) -> Parsed {
    if pos + RECORD_PREFIX_BYTES > data.len() {
        return Parsed::End;
    }
    let prefix = super::record::prefix_at(data, pos);
    match decode_prefix(&prefix) {
        Prefix::End => Parsed::End,
        Prefix::Bad(why) => Parsed::Bad(why),
        Prefix::Record { len, crc } => {
            let start = pos + RECORD_PREFIX_BYTES;
            if start + len > data.len() {
                return Parsed::Bad("record runs past the end of the segment");
            }
            match decode_body(data.slice(start..start + len), crc) {
                Ok(rec) => Parsed::Record(rec, super::record::padded(RECORD_PREFIX_BYTES + len)),
                Err(why) => Parsed::Bad(why),
            }
        }
    }
}

/// Whether everything after the header of the file at `path` is zero (as
/// preallocated): when its header fails its check too, it is a segment
/// whose creation a crash cut short before its header was synced, not a
/// foreign or damaged file.
///
/// # Errors
/// I/O errors reading the file.
pub fn body_is_blank(fs: &dyn Fs, path: &Path) -> Result<bool, StorageError> {
    let data = fs.read(path).map_err(|e| StorageError::io("read segment", path, e))?;
    Ok(data.iter().skip(SEGMENT_HEADER_BYTES as usize).all(|b| *b == 0))
}

/// Whether any 8-byte aligned offset at or after `from` holds a valid
/// record that starts a write (see `ScanEnd::Bad::valid_after`).
fn any_valid_after(data: &Bytes, from: usize) -> bool {
    let mut pos = super::record::padded(from);
    while pos + RECORD_PREFIX_BYTES <= data.len() {
        if let Parsed::Record(..) = parse_at(data, pos) {
            if super::record::starts_write(&data[pos + RECORD_PREFIX_BYTES..]) {
                return true;
            }
        }
        pos += 8;
    }
    false
}

/// Reserves `len` bytes for `file` so later writes inside it cannot hit a
/// full disk.
fn preallocate(file: &dyn FsFile, path: &Path, len: u64) -> Result<(), StorageError> {
    match file.allocate(len) {
        Ok(()) => Ok(()),
        // A filesystem without fallocate: a sparse file still works, but a
        // full disk will then show up at write time (still a typed error).
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            log::warn!("{}: fallocate unsupported, segment not preallocated", path.display());
            file.set_len(len).map_err(|e| StorageError::io("size segment", path, e))
        }
        Err(e) => Err(StorageError::io("preallocate segment", path, e)),
    }
}
