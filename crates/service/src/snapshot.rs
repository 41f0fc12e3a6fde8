//! Snapshots of the service state: made from a checkpoint without copying
//! records, read in chunks by the leader's snapshot sender, received and
//! verified chunk by chunk by a follower, and installed atomically.
//!
//! # Layout (under the service directory)
//!
//! * `CURRENT`: the name of the live state directory (`state-<index>`),
//!   replaced atomically (write, fsync, rename, fsync dir).
//! * `state-<index>/db` (sled) and `state-<index>/streams/` (segments): the
//!   live checkpoint (`checkpoint.rs`).
//! * `snapshots/<index>/`: `MANIFEST` plus a hard link to every segment file
//!   the checkpoint at `index` counts. Segments are append-only and only
//!   `[0, len)` is read, so later appends, trims and deletes of the live
//!   files cannot change a snapshot; hard links cost no copy however large
//!   the state.
//! * `incoming/`: a snapshot being received (`MANIFEST`, `streams/`). Once
//!   every byte is verified and synced it gets `COMPLETE` and is renamed to
//!   `received-<index>/`, where it waits for the install: a newer snapshot's
//!   transfer starts in a fresh `incoming/` and cannot touch it (defect 01:
//!   it used to clear the complete one the install was about to read).
//!   `received-<n>/` directories up to an installed index are removed by
//!   the install. A data directory of an earlier release may hold a
//!   complete snapshot in `incoming/` itself; it is found there too.
//!
//! # Byte stream
//!
//! | part | layout |
//! |---|---|
//! | header (32 bytes) | magic `RRSN` · version `u32` = 1 · index `u64` · manifest length `u64` · manifest CRC32C `u32` · reserved `u32` = 0 |
//! | manifest | applied `u64` · `meta`, `sessions`, `disk` blobs, each `u32` length then bytes (the checkpoint's sled values) |
//! | files | each segment of the `disk` table in order, exactly its checkpointed length |
//!
//! The whole snapshot is checked: the manifest's CRC covers the segment
//! table, which holds each segment's CRC32C over its bytes, and the receiver
//! recomputes every segment's CRC as the bytes arrive (a Merkle-style
//! checksum over every byte, computed incrementally as segments are written,
//! so making a snapshot never reads the data back).

use std::io;
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::disk_meta::decode_disk;
use super::segments::SegmentMeta;
use ringraft::fs::{Fs, FsFile, OpenMode};
use ringraft::storage::sync_file_or_die;

const MAGIC: &[u8; 4] = b"RRSN";
const HEADER: usize = 32;
/// A manifest larger than this is refused (it holds metadata only: about
/// 16 bytes per 64 KiB of records, so this covers petabytes).
const MANIFEST_MAX: u64 = 1 << 30;

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Makes a directory's entries durable with the log engine's
/// [`storage::sync_dir_on`](ringraft::storage::sync_dir_on): a failed fsync fails
/// stop, since the kernel may have dropped what it covered while reporting
/// the next one as successful, so nothing may be retried on trust (defect
/// 05: a receiver that retried could install a snapshot with holes).
/// Restarted, the node receives the snapshot again from offset 0 into a
/// fresh `incoming/`. Files are synced with
/// [`sync_file_or_die`](ringraft::storage::sync_file_or_die) for the same reason.
///
/// # Errors
/// The directory cannot be opened.
fn sync_dir(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    ringraft::storage::sync_dir_on(fs, dir).map_err(io::Error::from)
}

/// Whether `path` is a directory.
fn is_dir(fs: &dyn Fs, path: &Path) -> bool {
    fs.metadata(path).is_ok_and(|m| m.is_dir)
}

/// Whether anything is at `path`.
fn exists(fs: &dyn Fs, path: &Path) -> bool {
    fs.metadata(path).is_ok()
}

/// The text of the file `path`.
fn read_string(fs: &dyn Fs, path: &Path) -> io::Result<String> {
    Ok(String::from_utf8_lossy(&fs.read(path)?).into_owned())
}

/// Creates the file `path` with `bytes` and syncs its data (its directory
/// entry is the caller's to sync).
fn write_synced(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let f = fs.open(path, OpenMode::CreateTruncate)?;
    f.write_all_at(bytes, 0)?;
    sync_file_or_die(fs, &*f, path);
    Ok(())
}

/// Writes `bytes` to `path` durably and atomically (temp, fsync, rename,
/// fsync dir).
pub(crate) fn write_atomic(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    ringraft::storage::replace_file_on(fs, path, &path.with_extension("tmp"), bytes).map_err(io::Error::from)
}

/// The live state directory named by `CURRENT` (created as `state-0` for a
/// new service directory).
///
/// # Errors
/// `CURRENT` unreadable or naming a missing directory.
pub(crate) fn current_state_dir(fs: &dyn Fs, service: &Path) -> io::Result<PathBuf> {
    ringraft::storage::create_dir_all_durably(fs, service).map_err(io::Error::from)?;
    let current = service.join("CURRENT");
    let name = match read_string(fs, &current) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs.create_dir_all(&service.join("state-0"))?;
            write_atomic(fs, &current, b"state-0\n")?;
            "state-0".to_string()
        }
        Err(e) => return Err(e),
    };
    if name.is_empty() || name.contains('/') {
        return Err(invalid(format!("{}: bad state directory name {name:?}", current.display())));
    }
    let dir = service.join(&name);
    if !is_dir(fs, &dir) {
        return Err(invalid(format!("{} names {name}, which does not exist", current.display())));
    }
    Ok(dir)
}

/// A checkpoint's content, as a snapshot carries it.
pub(crate) struct Manifest {
    pub applied: u64,
    pub meta: Bytes,
    pub sessions: Bytes,
    pub disk: Bytes,
}

impl Manifest {
    fn encode(&self) -> Bytes {
        let mut m = BytesMut::new();
        m.put_u64_le(self.applied);
        for blob in [&self.meta, &self.sessions, &self.disk] {
            m.put_u32_le(blob.len() as u32);
            m.put_slice(blob);
        }
        m.freeze()
    }

    fn decode(mut b: Bytes) -> Result<Manifest, String> {
        let blob = |b: &mut Bytes| -> Result<Bytes, String> {
            if b.remaining() < 4 {
                return Err("manifest truncated".into());
            }
            let n = b.get_u32_le() as usize;
            if b.remaining() < n {
                return Err("manifest truncated".into());
            }
            Ok(b.split_to(n))
        };
        if b.remaining() < 8 {
            return Err("manifest truncated".into());
        }
        let applied = b.get_u64_le();
        let (meta, sessions, disk) = (blob(&mut b)?, blob(&mut b)?, blob(&mut b)?);
        Ok(Manifest { applied, meta, sessions, disk })
    }

    /// The header and manifest: the first bytes of the snapshot stream.
    fn prefix(&self, index: u64) -> Bytes {
        let body = self.encode();
        let mut p = BytesMut::with_capacity(HEADER + body.len());
        p.put_slice(MAGIC);
        p.put_u32_le(1);
        p.put_u64_le(index);
        p.put_u64_le(body.len() as u64);
        p.put_u32_le(crc32c::crc32c(&body));
        p.put_u32_le(0);
        p.put_slice(&body);
        p.freeze()
    }

    /// `(stream id, segment)` in stream order.
    fn files(&self) -> Result<Vec<(u64, SegmentMeta)>, String> {
        Ok(decode_disk(self.disk.clone())?
            .into_iter()
            .flat_map(|(id, segs)| segs.into_iter().map(move |s| (id, s)))
            .collect())
    }
}

fn seg_name(id: u64, base: u64) -> String {
    format!("{id}-{base:020}.seg")
}

/// Makes `snapshots/<index>/` from the checkpoint just written, and removes
/// older snapshots.
///
/// # Errors
/// Linking or writing failed (the snapshot is then not made; the next one
/// is tried later). A failed fsync fails stop ([`sync_dir`]).
pub(crate) fn create(
    fs: &dyn Fs,
    service: &Path,
    index: u64,
    manifest: &Manifest,
    segments: &[(u64, PathBuf)],
) -> io::Result<()> {
    let root = service.join("snapshots");
    ringraft::storage::create_dir_all_durably(fs, &root).map_err(io::Error::from)?;
    let tmp = root.join(format!("tmp-{index}"));
    let _ = fs.remove_dir_all(&tmp);
    fs.create_dir_all(&tmp)?;
    let files = manifest.files().map_err(invalid)?;
    for (id, seg) in &files {
        let Some((_, path)) = segments.iter().find(|(i, p)| i == id && p.ends_with(format!("{:020}.seg", seg.base)))
        else {
            return Err(invalid(format!("segment {id}/{} of the checkpoint is missing", seg.base)));
        };
        fs.hard_link(path, &tmp.join(seg_name(*id, seg.base)))?;
    }
    write_synced(fs, &tmp.join("MANIFEST"), &manifest.prefix(index))?;
    sync_dir(fs, &tmp)?;
    let dir = root.join(format!("{index:020}"));
    if ringraft::fs::mutant("checkpoint-single-copy") {
        remove_all_but(fs, &root, &tmp)?;
    }
    if fs.read(&dir.join("MANIFEST")).is_ok_and(|m| m == manifest.prefix(index)) {
        // The same snapshot is there already (an install of a local
        // snapshot): keep it rather than open a window with none.
        fs.remove_dir_all(&tmp)?;
    } else {
        let _ = fs.remove_dir_all(&dir);
        fs.rename(&tmp, &dir)?;
        sync_dir(fs, &root)?;
    }
    // The older snapshot is this node's fallback when its checkpoint is
    // unusable: it goes only once the new one opens (manifest CRC, files).
    SnapshotReader::open(fs, service, index)?;
    remove_all_but(fs, &root, &dir)
}

/// Removes everything in `root` but `keep` (older snapshots), durably.
fn remove_all_but(fs: &dyn Fs, root: &Path, keep: &Path) -> io::Result<()> {
    for e in fs.list(root)? {
        let p = root.join(&e.name);
        if p != keep {
            let _ = fs.remove_dir_all(&p);
        }
    }
    sync_dir(fs, root)
}

/// Reads snapshot `index` as one byte stream. Its files stay open, so the
/// snapshot stays readable after a newer one removed its directory.
pub(crate) struct SnapshotReader {
    prefix: Bytes,
    files: Vec<(Box<dyn FsFile>, u64)>,
    pub total: u64,
    /// The content checksum ([`content_id`]).
    pub content: u64,
}

/// A 64-bit checksum of a snapshot's content: FNV-1a over its header and
/// manifest, which hold every segment's length and CRC32C (so it covers
/// every byte). Never 0 (0 means unknown on the wire).
pub(crate) fn content_id(prefix: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prefix {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

impl SnapshotReader {
    /// Opens `snapshots/<index>/`.
    ///
    /// # Errors
    /// The snapshot does not exist (a newer one replaced it) or is damaged.
    pub fn open(fs: &dyn Fs, service: &Path, index: u64) -> io::Result<SnapshotReader> {
        let dir = service.join("snapshots").join(format!("{index:020}"));
        let prefix = Bytes::from(fs.read(&dir.join("MANIFEST"))?);
        let (_, manifest) = parse_prefix(&prefix)?.ok_or_else(|| invalid("MANIFEST truncated".into()))?;
        let mut files = Vec::new();
        for (id, seg) in manifest.files().map_err(invalid)? {
            files.push((fs.open(&dir.join(seg_name(id, seg.base)), OpenMode::Read)?, seg.len));
        }
        let total = prefix.len() as u64 + files.iter().map(|f| f.1).sum::<u64>();
        let content = content_id(&prefix);
        Ok(SnapshotReader { prefix, files, total, content })
    }

    /// Up to `max` bytes from `offset`, and whether they end the snapshot.
    ///
    /// # Errors
    /// A read failed.
    pub fn read_at(&self, offset: u64, max: usize) -> io::Result<(Bytes, bool)> {
        let end = (offset + max as u64).min(self.total);
        let mut out = BytesMut::with_capacity((end.saturating_sub(offset)) as usize);
        let mut at = 0u64;
        let mut parts: Vec<(Option<&dyn FsFile>, u64)> = vec![(None, self.prefix.len() as u64)];
        parts.extend(self.files.iter().map(|(f, len)| (Some(&**f), *len)));
        for (file, len) in parts {
            let (lo, hi) = (at, at + len);
            at = hi;
            if hi <= offset || lo >= end {
                continue;
            }
            let from = offset.max(lo) - lo;
            let to = end.min(hi) - lo;
            match file {
                None => out.put_slice(&self.prefix[from as usize..to as usize]),
                Some(f) => {
                    let mut buf = vec![0u8; (to - from) as usize];
                    f.read_exact_at(&mut buf, from)?;
                    out.put_slice(&buf);
                }
            }
        }
        Ok((out.freeze(), end >= self.total))
    }
}

/// Parses header and manifest once `b` holds them (`None`: need more bytes).
fn parse_prefix(b: &[u8]) -> io::Result<Option<(usize, Manifest)>> {
    if b.len() < HEADER {
        return Ok(None);
    }
    if &b[..4] != MAGIC || u32::from_le_bytes([b[4], b[5], b[6], b[7]]) != 1 {
        return Err(invalid("not a ringraft snapshot (magic/version)".into()));
    }
    let len = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
    if len > MANIFEST_MAX {
        return Err(invalid(format!("snapshot manifest of {len} bytes exceeds the limit {MANIFEST_MAX}")));
    }
    let len = len as usize;
    let crc = u32::from_le_bytes(b[24..28].try_into().expect("4 bytes"));
    if b.len() < HEADER + len {
        return Ok(None);
    }
    let body = &b[HEADER..HEADER + len];
    if crc32c::crc32c(body) != crc {
        return Err(invalid("snapshot manifest CRC mismatch".into()));
    }
    let m = Manifest::decode(Bytes::copy_from_slice(body)).map_err(invalid)?;
    Ok(Some((HEADER + len, m)))
}

/// Receives one snapshot into `incoming/`, verifying as bytes arrive.
#[derive(Default)]
pub(crate) struct Receiver {
    index: u64,
    received: u64,
    prefix: BytesMut,
    files: Option<Vec<(u64, SegmentMeta)>>,
    file_i: usize,
    written: u64,
    crc: u32,
    /// The segment file `files[file_i]`, open while it is being written
    /// (`None` also after a failed chunk: reopened by the next one).
    open: Option<Box<dyn FsFile>>,
}

impl Receiver {
    /// Takes the chunk at `offset` of snapshot `index`.
    ///
    /// # Errors
    /// `InvalidData` when the bytes fail verification (wrong magic, CRC
    /// mismatch, more bytes than the manifest declares, a chunk out of
    /// order); other kinds for I/O failures.
    pub fn write(
        &mut self,
        fs: &dyn Fs,
        service: &Path,
        index: u64,
        offset: u64,
        data: &[u8],
        done: bool,
    ) -> io::Result<()> {
        // A failed write leaves the receiver as it was before the chunk, so
        // the log-append stage can retry the same chunk after a disk error
        // (writes are positional, so repeating them is harmless). A failed
        // fsync is not such an error: it fails stop (`sync_dir`).
        let saved =
            (self.index, self.received, self.prefix.len(), self.files.is_some(), self.file_i, self.written, self.crc);
        let r = self.write_inner(fs, service, index, offset, data, done);
        if r.is_err() && offset != 0 && self.index == saved.0 {
            (self.index, self.received, _, _, self.file_i, self.written, self.crc) = saved;
            self.prefix.truncate(saved.2);
            if !saved.3 {
                self.files = None;
            }
            // The chunk may have finished the file open before it and
            // created the next one (defect 24: that file was then left open
            // under the old one's position). The next chunk opens the file
            // at `file_i` again: created afresh if nothing of it was
            // written, else reopened as it is.
            self.open = None;
        }
        r
    }

    fn write_inner(
        &mut self,
        fs: &dyn Fs,
        service: &Path,
        index: u64,
        offset: u64,
        mut data: &[u8],
        done: bool,
    ) -> io::Result<()> {
        let dir = service.join("incoming");
        if offset == 0 {
            // A new transfer: nothing of an earlier one is kept, also when a
            // step below fails (the chunk at 0 is then written again).
            *self = Receiver { index, ..Receiver::default() };
            // A complete snapshot left in `incoming/` by an earlier release
            // is moved aside, never cleared.
            if let Some(n) = complete_in(fs, &dir).filter(|_| !ringraft::fs::mutant("snapshot-incoming-race")) {
                keep_received(fs, service, &dir, n)?;
            }
            let _ = fs.remove_dir_all(&dir);
            fs.create_dir_all(&dir.join("streams"))?;
        }
        if index != self.index || offset != self.received {
            return Err(invalid(format!(
                "snapshot chunk {index}@{offset} out of order (expected {}@{})",
                self.index, self.received
            )));
        }
        self.received += data.len() as u64;
        if self.files.is_none() {
            // Header and manifest come first; a chunk may end inside them.
            self.prefix.extend_from_slice(data);
            data = &[];
            if let Some((used, m)) = parse_prefix(&self.prefix)? {
                let header_index = self.prefix[8..16].iter().rev().fold(0u64, |v, b| v << 8 | u64::from(*b));
                if header_index != self.index || m.applied != self.index {
                    return Err(invalid(format!(
                        "snapshot {} has the header of snapshot {header_index} and a manifest at {}",
                        self.index, m.applied
                    )));
                }
                let extra = self.prefix.split_off(used);
                let f = fs.open(&dir.join("MANIFEST"), OpenMode::CreateTruncate)?;
                f.write_all_at(&self.prefix, 0)?;
                self.files = Some(m.files().map_err(invalid)?);
                self.write_files(fs, &dir, &extra)?;
            }
        }
        self.write_files(fs, &dir, data)?;
        if done {
            self.finish(fs, &dir)?;
        }
        Ok(())
    }

    fn write_files(&mut self, fs: &dyn Fs, dir: &Path, mut data: &[u8]) -> io::Result<()> {
        let files = self.files.clone().unwrap_or_default();
        while !data.is_empty() {
            let Some((id, seg)) = files.get(self.file_i) else {
                return Err(invalid("snapshot has more bytes than its manifest declares".into()));
            };
            let sdir = dir.join("streams").join(id.to_string());
            let path = sdir.join(format!("{:020}.seg", seg.base));
            if self.open.is_none() {
                // `written` and `crc` are this file's: 0 for a new one, or
                // what a chunk before a failed one wrote of it.
                self.open = Some(if self.written == 0 {
                    fs.create_dir_all(&sdir)?;
                    fs.open(&path, OpenMode::CreateTruncate)?
                } else {
                    fs.open(&path, OpenMode::ReadWrite)?
                });
            }
            let n = ((seg.len - self.written) as usize).min(data.len());
            let f = self.open.as_ref().expect("opened above");
            f.write_all_at(&data[..n], self.written)?;
            self.crc = crc32c::crc32c_append(self.crc, &data[..n]);
            self.written += n as u64;
            data = &data[n..];
            if self.written == seg.len {
                if self.crc != seg.crc {
                    return Err(invalid(format!("snapshot segment {id}/{} CRC mismatch", seg.base)));
                }
                if let Some(f) = self.open.take() {
                    if ringraft::fs::mutant("snapshot-fsync-retry") {
                        f.sync_data()?;
                    }
                    sync_file_or_die(fs, &*f, &path);
                }
                self.file_i += 1;
                self.written = 0;
                self.crc = 0;
            }
        }
        Ok(())
    }

    fn finish(&mut self, fs: &dyn Fs, dir: &Path) -> io::Result<()> {
        let want = self.files.as_ref().map_or(usize::MAX, |f| f.len());
        if self.file_i != want || self.open.is_some() {
            return Err(invalid(format!("snapshot ended after {} of {want} segments", self.file_i)));
        }
        let manifest = dir.join("MANIFEST");
        sync_file_or_die(fs, &*fs.open(&manifest, OpenMode::Read)?, &manifest);
        // Every segment's directory entry, from the manifest itself (not
        // from what this receiver remembers creating: a chunk written
        // again after an error must not leave one out, defect 24).
        let mut ids: Vec<u64> = self.files.iter().flatten().map(|(id, _)| *id).collect();
        ids.dedup();
        for id in ids {
            sync_dir(fs, &dir.join("streams").join(id.to_string()))?;
        }
        sync_dir(fs, &dir.join("streams"))?;
        // `incoming/` itself, so the snapshot survives a crash also when
        // the move below fails (COMPLETE's own sync covers `incoming/`'s
        // entries).
        if let Some(service) = dir.parent() {
            sync_dir(fs, service)?;
        }
        write_atomic(fs, &dir.join("COMPLETE"), self.index.to_string().as_bytes())?;
        // Complete and durable from here on: no error may make the append
        // stage write this chunk again (into a moved directory). A failed
        // move leaves it in `incoming/`, where it is found all the same and
        // moved aside by the next transfer's first chunk.
        if let Some(service) = dir.parent().filter(|_| !ringraft::fs::mutant("snapshot-incoming-race")) {
            if let Err(e) = keep_received(fs, service, dir, self.index) {
                log::warn!("service: the complete snapshot {} stays in {}: {e}", self.index, dir.display());
            }
        }
        Ok(())
    }
}

/// The index a directory's `COMPLETE` marker names, if it has one.
fn complete_in(fs: &dyn Fs, dir: &Path) -> Option<u64> {
    read_string(fs, &dir.join("COMPLETE")).ok()?.trim().parse().ok()
}

/// Serializes the moves of complete snapshots: the append thread (a
/// transfer's first chunk) and the FSM thread (an install from an earlier
/// release's `incoming/`) may both want to move the same directory.
static MOVES: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Moves the complete snapshot `index` from `dir` to `received-<index>/`
/// (durably), if `dir` still holds it. A complete copy already there is
/// kept and `dir` is dropped instead; an incomplete one (a removal cut
/// short) is replaced.
fn keep_received(fs: &dyn Fs, service: &Path, dir: &Path, index: u64) -> io::Result<()> {
    let _moving = MOVES.lock();
    if complete_in(fs, dir) != Some(index) {
        return Ok(());
    }
    let to = service.join(format!("received-{index}"));
    if complete_in(fs, &to) == Some(index) {
        return remove_snapshot_dir(fs, dir);
    }
    if exists(fs, &to) {
        remove_snapshot_dir(fs, &to)?;
    }
    fs.rename(dir, &to)?;
    sync_dir(fs, service)
}

/// Removes a received snapshot's directory, its `COMPLETE` marker first
/// (durably), so a removal cut short never leaves a directory that looks
/// complete.
fn remove_snapshot_dir(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    match fs.remove_file(&dir.join("COMPLETE")) {
        Ok(()) => sync_dir(fs, dir)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs.remove_dir_all(dir)
}

/// Where the complete snapshot `index` waits for its install, if it was
/// received: `received-<index>/`, or `incoming/` as an earlier release left
/// it.
fn received_dir(fs: &dyn Fs, service: &Path, index: u64) -> Option<PathBuf> {
    let dir = service.join(format!("received-{index}"));
    if complete_in(fs, &dir) == Some(index) {
        return Some(dir);
    }
    let legacy = service.join("incoming");
    (complete_in(fs, &legacy) == Some(index)).then_some(legacy)
}

/// Installs the complete snapshot `index` from `received-<index>/` (or an
/// earlier release's `incoming/`) as the live state. Every step can be
/// repeated after a crash or an error: the sled database is (re)built
/// inside the received directory, the snapshot is linked into
/// `snapshots/<index>/` (a node that installed it can serve it when it
/// leads), then the directory becomes `state-<index>/` in one rename, then
/// `CURRENT` switches to it (the atomic step), then the old state and the
/// obsolete received snapshots go.
///
/// # Errors
/// No complete snapshot `index` was received, or writing failed (the live
/// state is then unchanged and the install can be retried).
pub(crate) fn install(
    fs: &dyn Fs,
    service: &Path,
    index: u64,
    write_db: impl FnOnce(&Path, &Manifest) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let name = format!("state-{index}");
    let new = service.join(&name);
    let old = current_state_dir(fs, service)?;
    if new == old {
        // Installed already (a snapshot received again after its install):
        // only the received copies it made obsolete are left to remove.
        remove_obsolete_received(fs, service, index);
        return Ok(new);
    }
    if !is_dir(fs, &new) {
        // A complete snapshot an earlier release left in `incoming/` is
        // moved aside first, so a new transfer starting there meanwhile
        // cannot move it under this install.
        let legacy = service.join("incoming");
        if complete_in(fs, &legacy) == Some(index) {
            if let Err(e) = keep_received(fs, service, &legacy, index) {
                // Moved by the other thread, or not movable: it is found
                // wherever it is.
                log::debug!("service: snapshot {index} stays in {}: {e}", legacy.display());
            }
        }
        let incoming = received_dir(fs, service, index).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no complete snapshot {index} was received"))
        })?;
        let prefix = fs.read(&incoming.join("MANIFEST"))?;
        let (_, manifest) = parse_prefix(&prefix)?.ok_or_else(|| invalid("MANIFEST truncated".into()))?;
        let db = incoming.join("db");
        if exists(fs, &db) {
            fs.remove_dir_all(&db)?;
        }
        write_db(&incoming, &manifest)?;
        let streams = incoming.join("streams");
        fs.create_dir_all(&streams)?;
        let segments: Vec<(u64, PathBuf)> = manifest
            .files()
            .map_err(invalid)?
            .into_iter()
            .map(|(id, seg)| (id, streams.join(id.to_string()).join(format!("{:020}.seg", seg.base))))
            .collect();
        create(fs, service, index, &manifest, &segments)?;
        sync_dir(fs, &incoming)?;
        fs.rename(&incoming, &new)?;
        sync_dir(fs, service)?;
    }
    write_atomic(fs, &service.join("CURRENT"), format!("{name}\n").as_bytes())?;
    if let Err(e) = fs.remove_dir_all(&old) {
        log::warn!("service: cannot remove the replaced state {}: {e}", old.display());
    }
    remove_obsolete_received(fs, service, index);
    Ok(new)
}

/// Removes the received snapshots an install of `index` makes obsolete
/// (`received-<n>/`, n <= index). The install is done: a failure here is
/// only logged.
fn remove_obsolete_received(fs: &dyn Fs, service: &Path, index: u64) {
    let entries = match fs.list(service) {
        Ok(d) => d,
        Err(e) => {
            log::warn!("service: cannot list {} to remove obsolete snapshots: {e}", service.display());
            return;
        }
    };
    for e in entries {
        let n = e.name.strip_prefix("received-").and_then(|n| n.parse::<u64>().ok());
        if n.is_some_and(|n| n <= index) {
            let _moving = MOVES.lock();
            let path = service.join(&e.name);
            if let Err(err) = remove_snapshot_dir(fs, &path) {
                log::warn!("service: cannot remove the obsolete {}: {err}", path.display());
            }
        }
    }
}

/// Whether snapshot `index` was received completely (waiting in
/// `received-<index>/`, or already moved into place by an install that did
/// not finish).
pub(crate) fn received(fs: &dyn Fs, service: &Path, index: u64) -> bool {
    is_dir(fs, &service.join(format!("state-{index}"))) || received_dir(fs, service, index).is_some()
}

/// Whether snapshot `index` waits to be installed: received completely
/// (`received-<index>/`), or moved to `state-<index>/` by an install cut
/// short before `CURRENT` named it. Unlike [`received`], never true of the
/// live state itself (a node that installed `index` and runs on it).
pub(crate) fn pending_install(fs: &dyn Fs, service: &Path, index: u64) -> bool {
    let name = format!("state-{index}");
    // The live state first: a copy received again after the install
    // (`received-<index>/` beside a live `state-<index>/`) is no pending
    // install (defect 18: it made every start skip the live state).
    if read_string(fs, &service.join("CURRENT")).is_ok_and(|c| c.trim() == name) {
        return false;
    }
    received_dir(fs, service, index).is_some() || is_dir(fs, &service.join(&name))
}

/// Checks every byte of `snapshots/<index>/`: the manifest's CRC, and each
/// segment's CRC32C over its snapshot length (a full read).
///
/// # Errors
/// What is missing, short or fails its CRC.
pub(crate) fn verify(fs: &dyn Fs, service: &Path, index: u64) -> io::Result<()> {
    let dir = service.join("snapshots").join(format!("{index:020}"));
    let prefix = fs.read(&dir.join("MANIFEST"))?;
    let (_, manifest) = parse_prefix(&prefix)?.ok_or_else(|| invalid("MANIFEST truncated".into()))?;
    if manifest.applied != index {
        return Err(invalid(format!("MANIFEST of snapshot {index} says index {}", manifest.applied)));
    }
    let mut buf = vec![0u8; 1 << 20];
    for (id, seg) in manifest.files().map_err(invalid)? {
        let path = dir.join(seg_name(id, seg.base));
        let f = fs.open(&path, OpenMode::Read)?;
        let (mut at, mut crc) = (0u64, 0u32);
        while at < seg.len {
            let n = ((seg.len - at) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], at)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            at += n as u64;
        }
        if crc != seg.crc {
            return Err(invalid(format!("{}: CRC mismatch over its {} bytes", path.display(), seg.len)));
        }
    }
    Ok(())
}

/// Lays the local snapshot `snapshots/<index>/` out as a received one
/// (`received-<index>/`, hard links, `COMPLETE`), so that [`install`] can
/// make it the live state: how a node whose checkpoint is unusable gets
/// its state back without the network.
///
/// # Errors
/// The snapshot is damaged, or linking or writing failed.
pub(crate) fn stage_local(fs: &dyn Fs, service: &Path, index: u64) -> io::Result<()> {
    if received_dir(fs, service, index).is_some() {
        return Ok(());
    }
    let src = service.join("snapshots").join(format!("{index:020}"));
    let prefix = fs.read(&src.join("MANIFEST"))?;
    let (_, manifest) = parse_prefix(&prefix)?.ok_or_else(|| invalid("MANIFEST truncated".into()))?;
    let tmp = service.join(format!("restore-{index}"));
    if exists(fs, &tmp) {
        fs.remove_dir_all(&tmp)?;
    }
    fs.create_dir_all(&tmp.join("streams"))?;
    let mut dirs = Vec::new();
    for (id, seg) in manifest.files().map_err(invalid)? {
        let sdir = tmp.join("streams").join(id.to_string());
        if !dirs.contains(&sdir) {
            fs.create_dir_all(&sdir)?;
            dirs.push(sdir.clone());
        }
        fs.hard_link(&src.join(seg_name(id, seg.base)), &sdir.join(format!("{:020}.seg", seg.base)))?;
    }
    write_synced(fs, &tmp.join("MANIFEST"), &prefix)?;
    for d in &dirs {
        sync_dir(fs, d)?;
    }
    sync_dir(fs, &tmp.join("streams"))?;
    write_atomic(fs, &tmp.join("COMPLETE"), index.to_string().as_bytes())?;
    keep_received(fs, service, &tmp, index)
}

/// Moves an unusable live state out of the way: its directory becomes
/// `damaged-<name>/` and `CURRENT` names that (an empty one when `CURRENT`
/// named nothing that exists), so that an install or [`fresh_state`]
/// replaces it like any old state and removes it. Repeatable.
///
/// # Errors
/// Renaming or writing failed.
pub(crate) fn set_aside_current(fs: &dyn Fs, service: &Path) -> io::Result<()> {
    let current = service.join("CURRENT");
    let name = match read_string(fs, &current) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if name.starts_with("damaged-") && is_dir(fs, &service.join(&name)) {
        return Ok(());
    }
    let named = !name.is_empty() && !name.contains('/');
    let aside = service.join(format!("damaged-{}", if named { name.as_str() } else { "state" }));
    if named && is_dir(fs, &service.join(&name)) {
        if exists(fs, &aside) {
            fs.remove_dir_all(&aside)?;
        }
        fs.rename(&service.join(&name), &aside)?;
    } else if !is_dir(fs, &aside) {
        // CURRENT names nothing (or a set-aside was cut short before it
        // could name `aside`, which is then used as it is).
        fs.create_dir_all(&aside)?;
    }
    sync_dir(fs, service)?;
    let aside_name = aside.file_name().and_then(|n| n.to_str()).unwrap_or("damaged-state").to_string();
    write_atomic(fs, &current, format!("{aside_name}\n").as_bytes())
}

/// Makes an empty `state-0/` the live state, replacing a set-aside one, and
/// drops the local snapshots (none was usable): the service state is then
/// rebuilt by replaying the whole Raft log.
///
/// # Errors
/// Creating or writing failed.
pub(crate) fn fresh_state(fs: &dyn Fs, service: &Path) -> io::Result<PathBuf> {
    let old = current_state_dir(fs, service)?;
    let new = service.join("state-0");
    if new == old {
        return Err(invalid("state-0 is live; set it aside first".into()));
    }
    if exists(fs, &new) {
        fs.remove_dir_all(&new)?;
    }
    fs.create_dir_all(&new)?;
    sync_dir(fs, service)?;
    write_atomic(fs, &service.join("CURRENT"), b"state-0\n")?;
    if let Err(e) = fs.remove_dir_all(&old) {
        log::warn!("service: cannot remove the replaced state {}: {e}", old.display());
    }
    let snapshots = service.join("snapshots");
    if exists(fs, &snapshots) {
        fs.remove_dir_all(&snapshots)?;
        sync_dir(fs, service)?;
    }
    Ok(new)
}

/// The newest snapshot in `snapshots/` (after a restart, the one to offer).
pub(crate) fn newest(fs: &dyn Fs, service: &Path) -> Option<u64> {
    let dir = fs.list(&service.join("snapshots")).ok()?;
    dir.into_iter().filter_map(|e| e.name.parse::<u64>().ok()).max()
}
