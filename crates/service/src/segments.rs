//! A stream's records on disk: append-only segment files written by the
//! checkpointer and read with `pread` by readers of old offsets.
//!
//! `service/streams/<stream id>/<base offset, 20 digits>.seg`:
//!
//! | part | layout |
//! |---|---|
//! | header (16 bytes) | magic `RRSG` · format version `u32` = 1 · base offset `u64` |
//! | record | `len u32` · `crc32c u32` of the bytes · the bytes |
//!
//! A segment is closed at [`SEGMENT_BYTES`]; a sparse index (one entry
//! every [`INDEX_EVERY_BYTES`]) maps offsets to file positions. The index
//! and each segment's committed length live in the checkpoint (sled), not
//! in the files: on open a segment is truncated back to the length its
//! checkpoint recorded (bytes past it were written by a checkpoint that did
//! not finish; the Raft log still holds them and replays them).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::stream::ReadBatch;
use ringraft::fs::{Fs, FsFile, OpenMode};

/// A segment is closed once it passes this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// One sparse-index entry per this many bytes of records.
pub const INDEX_EVERY_BYTES: u64 = 64 << 10;
const MAGIC: &[u8; 4] = b"RRSG";
const HEADER: u64 = 16;
/// Bytes read per `pread` when scanning records.
const READ_CHUNK: usize = 256 << 10;
/// Records are written in chunks of about this size, each handed to the
/// disk at once (write-behind), so a checkpoint never leaves tens of
/// megabytes dirty in the page cache. With ext4's ordered data mode, any
/// journal commit (another process's `fdatasync` that changes metadata)
/// first writes those dirty pages out: one 9 MB checkpoint write stalled
/// the Raft log's fdatasyncs of all three nodes for 90–170 ms.
const WRITE_CHUNK: usize = 1 << 20;

/// One segment file.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    file: Arc<dyn FsFile>,
    /// Base offset (its first record).
    pub base: u64,
    /// Committed length in bytes.
    pub len: u64,
    /// Offset after its last record.
    pub end: u64,
    /// `(offset, file position)` pairs, ascending; the first is `(base, HEADER)`.
    pub index: Vec<(u64, u64)>,
    /// CRC32C of bytes `[0, len)` (kept as the file grows; snapshots ship it).
    pub crc: u32,
}

/// What a checkpoint records of a segment (see [`DiskStream::describe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Base offset.
    pub base: u64,
    /// Committed length.
    pub len: u64,
    /// Offset after the last record.
    pub end: u64,
    /// The sparse index.
    pub index: Vec<(u64, u64)>,
    /// CRC32C of bytes `[0, len)`.
    pub crc: u32,
}

/// A stream's segment files.
#[derive(Debug)]
pub struct DiskStream {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    segs: BTreeMap<u64, Segment>,
}

fn corrupt(path: &Path, pos: u64, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why} at byte {pos}", path.display()))
}

impl DiskStream {
    /// A stream with no files yet, in `dir` on `fs`.
    pub fn new(fs: Arc<dyn Fs>, dir: PathBuf) -> DiskStream {
        DiskStream { fs, dir, segs: BTreeMap::new() }
    }

    /// Opens the segments a checkpoint described and truncates each to its
    /// committed length ([`DiskStream::check`], then
    /// [`DiskStream::cut_to_checkpoint`]).
    ///
    /// # Errors
    /// A missing, short or foreign segment file (named in the error).
    pub fn open(fs: Arc<dyn Fs>, dir: PathBuf, metas: &[SegmentMeta]) -> io::Result<DiskStream> {
        let ds = DiskStream::check(fs, dir, metas)?;
        ds.cut_to_checkpoint()?;
        Ok(ds)
    }

    /// Cuts every segment file to its checkpointed length: bytes past it
    /// belong to a checkpoint that did not finish.
    ///
    /// # Errors
    /// A truncation failed.
    pub fn cut_to_checkpoint(&self) -> io::Result<()> {
        for s in self.segs.values() {
            if s.file.size()? > s.len {
                s.file.set_len(s.len)?;
            }
        }
        Ok(())
    }

    /// Opens the segments a checkpoint described, changing nothing: every
    /// file must exist, be a stream segment and hold at least its
    /// checkpointed length.
    ///
    /// # Errors
    /// A missing, short or foreign segment file (named in the error).
    pub fn check(fs: Arc<dyn Fs>, dir: PathBuf, metas: &[SegmentMeta]) -> io::Result<DiskStream> {
        let mut segs = BTreeMap::new();
        for m in metas {
            let path = dir.join(format!("{:020}.seg", m.base));
            let file = fs.open(&path, OpenMode::ReadWrite)?;
            let mut head = [0u8; HEADER as usize];
            file.read_exact_at(&mut head, 0).map_err(|e| corrupt(&path, 0, &format!("header unreadable: {e}")))?;
            if &head[..4] != MAGIC || u32::from_le_bytes([head[4], head[5], head[6], head[7]]) != 1 {
                return Err(corrupt(&path, 0, "not a ringraft stream segment (magic/version)"));
            }
            let actual = file.size()?;
            if actual < m.len {
                return Err(corrupt(&path, actual, &format!("file shorter than its checkpointed length {}", m.len)));
            }
            let seg = Segment {
                path,
                file: Arc::from(file),
                base: m.base,
                len: m.len,
                end: m.end,
                index: m.index.clone(),
                crc: m.crc,
            };
            segs.insert(m.base, seg);
        }
        Ok(DiskStream { fs, dir, segs })
    }

    /// The checkpoint's view of the segments.
    pub fn describe(&self) -> Vec<SegmentMeta> {
        self.segs
            .values()
            .map(|s| SegmentMeta { base: s.base, len: s.len, end: s.end, index: s.index.clone(), crc: s.crc })
            .collect()
    }

    /// Every segment file (to sync them all after a failed checkpoint).
    pub fn files(&self) -> Vec<Arc<dyn FsFile>> {
        self.segs.values().map(|s| Arc::clone(&s.file)).collect()
    }

    /// Every segment's path with its metadata, oldest first.
    pub fn paths(&self) -> Vec<(PathBuf, SegmentMeta)> {
        self.segs
            .values()
            .map(|s| {
                let meta = SegmentMeta { base: s.base, len: s.len, end: s.end, index: s.index.clone(), crc: s.crc };
                (s.path.clone(), meta)
            })
            .collect()
    }

    /// Offset after the last record on disk (`None`: no segment).
    pub fn end(&self) -> Option<u64> {
        self.segs.values().next_back().map(|s| s.end)
    }

    /// Appends records whose first offset is `at` (the offset after the
    /// last record on disk); returns the files written, to be synced.
    ///
    /// # Errors
    /// Creating or writing a file failed.
    pub fn append(&mut self, at: u64, records: &[Bytes]) -> io::Result<Vec<Arc<dyn FsFile>>> {
        let mut touched: Vec<Arc<dyn FsFile>> = Vec::new();
        let mut i = 0;
        while i < records.len() {
            let offset = at + i as u64;
            // A new segment when none is open, the open one is full, or a
            // trim skipped records that were never written (the caller
            // checks that a gap is a trimmed one).
            let need_new = match self.segs.values().next_back() {
                None => true,
                Some(s) if s.end > offset => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("records from {offset} overlap the segments, which end at {}", s.end),
                    ))
                }
                Some(s) => s.len >= SEGMENT_BYTES || s.end != offset,
            };
            if need_new {
                self.create_segment(offset)?;
            }
            let seg = self.segs.values_mut().next_back().expect("a segment was just ensured");
            let mut buf = BytesMut::with_capacity(WRITE_CHUNK + (64 << 10));
            let mut pos = seg.len;
            // Where `buf` goes; the file's CRC and length change only once
            // every chunk of this segment is written.
            let mut flushed = seg.len;
            let mut crc = seg.crc;
            let mut last_indexed = seg.index.last().map(|x| x.1).unwrap_or(HEADER);
            while i < records.len() && pos < SEGMENT_BYTES {
                let r = &records[i];
                if pos - last_indexed >= INDEX_EVERY_BYTES {
                    seg.index.push((at + i as u64, pos));
                    last_indexed = pos;
                }
                buf.put_u32_le(r.len() as u32);
                buf.put_u32_le(crc32c::crc32c(r));
                buf.put_slice(r);
                pos += 8 + r.len() as u64;
                i += 1;
                if buf.len() >= WRITE_CHUNK {
                    write_behind(&*seg.file, &mut buf, &mut flushed, &mut crc)?;
                }
            }
            write_behind(&*seg.file, &mut buf, &mut flushed, &mut crc)?;
            seg.crc = crc;
            seg.len = pos;
            seg.end = at + i as u64;
            if !touched.iter().any(|f| Arc::ptr_eq(f, &seg.file)) {
                touched.push(Arc::clone(&seg.file));
            }
        }
        Ok(touched)
    }

    fn create_segment(&mut self, base: u64) -> io::Result<()> {
        // The stream's directory (and `streams/`) must be durable before a
        // checkpoint counts a segment in it (defect 15: a power loss lost a
        // new stream's directory under a durable checkpoint).
        ringraft::storage::create_dir_all_durably(&*self.fs, &self.dir)?;
        let path = self.dir.join(format!("{base:020}.seg"));
        let file = self.fs.open(&path, OpenMode::CreateTruncate)?;
        let mut head = BytesMut::with_capacity(HEADER as usize);
        head.put_slice(MAGIC);
        head.put_u32_le(1);
        head.put_u64_le(base);
        file.write_all_at(&head, 0)?;
        file.sync_all()?;
        self.fs.sync_dir(&self.dir)?;
        let crc = crc32c::crc32c(&head);
        let seg =
            Segment { path, file: Arc::from(file), base, len: HEADER, end: base, index: vec![(base, HEADER)], crc };
        self.segs.insert(base, seg);
        Ok(())
    }

    /// Forgets segments whose records all lie before `first` and returns
    /// their paths: the caller unlinks them once a checkpoint that no
    /// longer counts them is durable (a crash before that must still find
    /// them).
    pub fn drop_before(&mut self, first: u64) -> Vec<PathBuf> {
        let dead: Vec<u64> = self.segs.values().filter(|s| s.end <= first && s.end > s.base).map(|s| s.base).collect();
        // Keep the newest segment even if trimmed away: appends continue in it.
        let newest = self.segs.keys().next_back().copied();
        dead.into_iter().filter(|b| Some(*b) != newest).filter_map(|b| self.segs.remove(&b)).map(|s| s.path).collect()
    }

    /// The stream's directory (removed when the stream is deleted).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads records from `offset`, not at or past `upto`, into `batch`
    /// until it is full.
    ///
    /// # Errors
    /// An I/O error or a record whose CRC does not match (names the file
    /// and position).
    pub fn read(&self, offset: u64, upto: u64, batch: &mut ReadBatch) -> io::Result<()> {
        let mut offset = offset;
        while offset < upto && !batch.full() {
            let Some((_, seg)) = self.segs.range(..=offset).next_back() else {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("offset {offset} is in no segment")));
            };
            if offset >= seg.end {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("offset {offset} is past segment {}", seg.base),
                ));
            }
            let before = batch.records.len();
            seg.read(offset, upto.min(seg.end), batch)?;
            if batch.records.len() == before {
                break;
            }
            offset += (batch.records.len() - before) as u64;
        }
        Ok(())
    }

    /// Removes the stream's directory and files.
    ///
    /// # Errors
    /// Removing failed.
    pub fn destroy(self) -> io::Result<()> {
        if !self.fs.metadata(&self.dir).is_ok_and(|m| m.is_dir) {
            // Never created (or something else is in its place): nothing of
            // this stream is there.
            return Ok(());
        }
        match self.fs.remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Segment {
    fn read(&self, offset: u64, upto: u64, batch: &mut ReadBatch) -> io::Result<()> {
        let i = self.index.partition_point(|&(o, _)| o <= offset);
        let (mut at, mut pos) = self.index.get(i.saturating_sub(1)).copied().unwrap_or((self.base, HEADER));
        while at < upto && !batch.full() {
            if pos >= self.len {
                return Err(corrupt(
                    &self.path,
                    pos,
                    &format!("record {at} lies past the committed length {}", self.len),
                ));
            }
            let want = (self.len - pos).min(READ_CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            self.file.read_exact_at(&mut buf, pos)?;
            let mut b = Bytes::from(buf);
            let mut progressed = false;
            while b.remaining() >= 8 && at < upto {
                let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                if pos + 8 + len as u64 > self.len {
                    return Err(corrupt(
                        &self.path,
                        pos,
                        &format!("record length {len} runs past the committed length"),
                    ));
                }
                if b.remaining() < 8 + len {
                    if !progressed {
                        // One record larger than the chunk: read it whole.
                        let mut big = vec![0u8; 8 + len];
                        self.file.read_exact_at(&mut big, pos)?;
                        b = Bytes::from(big);
                        continue;
                    }
                    break;
                }
                let rec = b.slice(8..8 + len);
                if crc32c::crc32c(&rec) != crc {
                    return Err(corrupt(&self.path, pos, "record CRC mismatch"));
                }
                b.advance(8 + len);
                pos += 8 + len as u64;
                progressed = true;
                if at >= offset && !batch.push(rec) {
                    return Ok(());
                }
                at += 1;
            }
            if !progressed {
                return Err(corrupt(&self.path, pos, "record header past the committed length"));
            }
        }
        Ok(())
    }
}

/// Writes `buf` at `*at`, folds it into `*crc`, moves `*at` past it and
/// empties it; then starts the chunk's writeback and waits for the chunk
/// before it (see [`WRITE_CHUNK`]). Durability still comes from the
/// caller's `fdatasync`; a failed writeback hint only costs smoothness.
fn write_behind(file: &dyn FsFile, buf: &mut BytesMut, at: &mut u64, crc: &mut u32) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    file.write_all_at(buf, *at)?;
    *crc = crc32c::crc32c_append(*crc, buf);
    let len = buf.len() as u64;
    // This chunk: start writing it out; the previous one: wait until it
    // is out, so at most two chunks are dirty at a time.
    file.start_writeback(*at, len, at.saturating_sub(WRITE_CHUNK as u64));
    *at += len;
    buf.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ringraft-seg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn append_read_reopen_truncate_and_drop() {
        let dir = tmp("basic");
        let mut d = DiskStream::new(ringraft::fs::real(), dir.clone());
        // ~1 KB records: the first append is ~3 MB, several write chunks.
        let recs: Vec<Bytes> = (0..5000u32).map(|i| Bytes::from(format!("record-{i}").repeat(100))).collect();
        d.append(0, &recs[..3000]).unwrap();
        d.append(3000, &recs[3000..]).unwrap();
        let mut b = ReadBatch::new(10, usize::MAX);
        d.read(1234, 5000, &mut b).unwrap();
        assert_eq!(b.records, recs[1234..1244].to_vec());
        let meta = d.describe();
        assert!(meta[0].index.len() > 5, "sparse index grows: {}", meta[0].index.len());
        // The running CRC (kept chunk by chunk) is the CRC of the file's bytes.
        let bytes = std::fs::read(dir.join(format!("{:020}.seg", meta[0].base))).unwrap();
        assert_eq!(crc32c::crc32c(&bytes[..meta[0].len as usize]), meta[0].crc);
        // Bytes past the checkpointed length are cut off on open.
        d.append(5000, &[Bytes::from_static(b"uncommitted")]).unwrap();
        let d2 = DiskStream::open(ringraft::fs::real(), dir.clone(), &meta).unwrap();
        assert_eq!(d2.end(), Some(5000));
        let mut b = ReadBatch::new(100, usize::MAX);
        d2.read(4990, 5000, &mut b).unwrap();
        assert_eq!(b.records, recs[4990..].to_vec());
        d2.destroy().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn a_flipped_byte_is_a_named_error() {
        let dir = tmp("crc");
        let mut d = DiskStream::new(ringraft::fs::real(), dir.clone());
        d.append(0, &[Bytes::from_static(b"hello"), Bytes::from_static(b"world")]).unwrap();
        let path = dir.join(format!("{:020}.seg", 0));
        let mut raw = std::fs::read(&path).unwrap();
        let n = raw.len();
        raw[n - 1] ^= 0xff;
        std::fs::write(&path, raw).unwrap();
        let err = d.read(0, 2, &mut ReadBatch::new(10, usize::MAX)).unwrap_err();
        assert!(err.to_string().contains("CRC"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
