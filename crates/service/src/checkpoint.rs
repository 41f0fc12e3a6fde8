//! Checkpoints of the service state: a thread that writes the records a
//! job carries to the streams' segment files, fdatasyncs them, and then
//! records the metadata, the sessions, the segment tables and the applied
//! index in sled in one atomic batch followed by one flush. Nothing is
//! written to sled per record or per session: six keys per checkpoint.
//!
//! Order makes a crash at any point safe: segment bytes are durable before
//! the sled batch that counts them; a crash before the batch leaves bytes
//! past the checkpointed lengths, which `open` truncates, and the Raft log
//! (never purged past the last checkpoint) replays those entries.
//!
//! sled keys: `format` (`u32` = 2), `applied` (`u64`), `meta` (log time and
//! every stream's offsets, retention and chunks), `sessions` (the session
//! table), `disk` (each stream's segments and sparse index), `check` (the
//! CRC32C of the others, verified on open; absent in databases of releases
//! before issue 16).
//!
//! sled is treated as fallible: a database it cannot open or read, values
//! that fail their CRC, or a checkpoint older than this node's newest
//! snapshot are [`CheckpointErrorKind::Damaged`], and the state is rebuilt
//! from that snapshot and the Raft log (`machine.rs`, `rebuild`).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use hashbrown::HashMap;
use parking_lot::Mutex;

use super::disk_meta::{decode_disk, decode_meta, encode_disk, encode_meta};
use super::kv::{Kv, ServiceStorage};
use super::segments::{DiskStream, SegmentMeta};
use super::session::Sessions;
use super::snapshot::{self, Manifest};
use super::state::ServiceState;
use ringraft::core::LogIndex;

/// Version 2: the `meta` value ends with the members' addresses.
const FORMAT: u32 = 2;

/// A consistent cut of the state to make durable.
pub(crate) struct Job {
    pub applied: LogIndex,
    pub meta: Bytes,
    pub sessions: Bytes,
    /// `(stream id, first offset, records)` not yet on disk.
    pub writes: Vec<(u64, u64, Vec<Bytes>)>,
    /// `(stream id, first offset)`: segments wholly before it are deleted.
    pub trims: Vec<(u64, u64)>,
    /// Streams whose files go (the state keeps the list until a job
    /// carrying it succeeds).
    pub deleted: Vec<u64>,
    /// Also make a snapshot of this checkpoint (`snapshot.rs`).
    pub snapshot: bool,
}

/// A finished checkpoint.
pub(crate) struct Done {
    pub applied: LogIndex,
    /// A snapshot at `applied` was made.
    pub snapshot: bool,
    /// The deleted streams whose files are gone.
    pub deleted: Vec<u64>,
    /// Offset after the last record on disk, per stream id.
    pub ends: HashMap<u64, u64>,
}

/// A checkpoint that failed (and was rolled back).
#[derive(Debug)]
pub(crate) struct Failed {
    pub msg: String,
    /// It failed for lack of space.
    pub disk_full: bool,
}

impl From<String> for Failed {
    fn from(msg: String) -> Failed {
        Failed { msg, disk_full: false }
    }
}

impl Failed {
    fn io(what: String, e: &std::io::Error) -> Failed {
        Failed { msg: format!("{what}: {e}"), disk_full: is_disk_full(e) }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// The checkpointer thread's handle (or, inline, the writer itself).
pub(crate) struct Checkpointer {
    tx: Option<mpsc::Sender<Job>>,
    done_rx: mpsc::Receiver<Result<Done, Failed>>,
    pending: usize,
    thread: Option<JoinHandle<()>>,
    /// [`ServiceStorage::checkpoint_inline`]: `submit` runs the job on the
    /// caller's thread and queues its outcome here.
    inline: Option<(Writer, mpsc::Sender<Result<Done, Failed>>)>,
}

/// Why the service's data could not be opened.
#[derive(Debug)]
pub struct CheckpointError {
    /// What happened, for the operator.
    pub msg: String,
    /// What the caller can do about it.
    pub kind: CheckpointErrorKind,
}

/// The kinds of [`CheckpointError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointErrorKind {
    /// The checkpoint is damaged, inconsistent or not what this node wrote
    /// last: the service state is rebuilt from a snapshot and the Raft log.
    Damaged,
    /// The disk is full: nothing is wrong with the data; try again once
    /// space returns.
    DiskFull,
    /// Any other failure (permissions, I/O errors, resources): reported,
    /// nothing is changed.
    Io,
}

impl CheckpointError {
    fn damaged(msg: String) -> CheckpointError {
        CheckpointError { msg, kind: CheckpointErrorKind::Damaged }
    }
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CheckpointError {}

pub(crate) use ringraft::storage::is_no_space as is_disk_full;

/// An I/O error: disk full, damaged data (`InvalidData`, `UnexpectedEof`,
/// a missing file) or anything else.
fn io_err(what: &str, path: &Path, e: std::io::Error) -> CheckpointError {
    let kind = if is_disk_full(&e) {
        CheckpointErrorKind::DiskFull
    } else if matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::NotFound
    ) {
        CheckpointErrorKind::Damaged
    } else {
        CheckpointErrorKind::Io
    };
    CheckpointError { msg: format!("{what} {}: {e}", path.display()), kind }
}

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::damaged(format!("{what} {}: {e}", path.display()))
}

thread_local! {
    /// Set while this thread runs sled's open and reads under
    /// [`catching_sled_panics`].
    static IN_SLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a panic raised now on this thread comes from sled opening or
/// reading a checkpoint: it is caught there and the checkpoint counted as
/// damaged, so a fail-stop panic hook (the server's) must let it unwind
/// instead of ending the process.
pub fn panic_is_caught_by_checkpoint_open() -> bool {
    IN_SLED.with(|c| c.get())
}

/// Runs `f` (the store's open and reads of a checkpoint), turning a panic
/// inside it into damage: sled is treated as fallible, whatever way it
/// fails. A simulated crash is not damage: it goes on unwinding.
fn catching_sled_panics<T>(path: &Path, f: impl FnOnce() -> Result<T, CheckpointError>) -> Result<T, CheckpointError> {
    IN_SLED.with(|c| c.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_SLED.with(|c| c.set(false));
    r.unwrap_or_else(|p| {
        if ringraft::fs::sim::is_sim_crash(&*p) {
            std::panic::resume_unwind(p);
        }
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(err("sled panicked reading", path, why))
    })
}

/// Opens the live state `service/CURRENT` names ([`open`]).
///
/// # Errors
/// As [`open`]; a `CURRENT` that names no directory is damage.
pub(crate) fn open_live(
    storage: &ServiceStorage,
    service: &Path,
) -> Result<(ServiceState, Checkpointer), CheckpointError> {
    let dir = snapshot::current_state_dir(&*storage.fs, service)
        .map_err(|e| io_err("cannot find the live state named by", &service.join("CURRENT"), e))?;
    // A state set aside as damaged, whose rebuild a crash cut short, is
    // never opened again (opening it would cut segment files it may share
    // with the snapshot the rebuild is installing).
    if dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("damaged-")) {
        return Err(err("a rebuild of the damaged state was cut short in", service, dir.display()));
    }
    open(storage, service, &dir)
}

/// Opens (or creates) the service's checkpoint in `dir`, verifies it,
/// restores the state it holds and starts the checkpointer thread.
///
/// Nothing is changed on disk until the whole checkpoint is verified: the
/// values' CRC (the `check` key), the applied index against the newest
/// local snapshot (a checkpoint is never older than a snapshot this node
/// made after it: sled that lost its last batches hands back an older one
/// quietly, and trusting it would cut the segment files the snapshot
/// shares), every segment file present and long enough. Only then are the
/// segments cut back to their checkpointed lengths.
///
/// # Errors
/// [`CheckpointErrorKind::Damaged`]: sled cannot read its database, a
/// value is corrupt or fails its CRC, the checkpoint is older than the
/// local snapshot, a segment file is missing or short, the metadata and
/// the segments disagree. [`CheckpointErrorKind::DiskFull`]: sled or a
/// file needed space. [`CheckpointErrorKind::Io`]: anything else.
pub(crate) fn open(
    storage: &ServiceStorage,
    service: &Path,
    dir: &Path,
) -> Result<(ServiceState, Checkpointer), CheckpointError> {
    let fs = &storage.fs;
    fs.create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    let db_path = dir.join("db");
    let (db, values) = catching_sled_panics(&db_path, || {
        let db =
            storage.kv.open(fs, &db_path).map_err(|e| io_err("cannot open the checkpoint database", &db_path, e))?;
        let mut values = HashMap::new();
        for k in ["format", "applied", "meta", "sessions", "disk", "check"] {
            if let Some(v) = db.get(k).map_err(|e| io_err("cannot read", &db_path, e))? {
                values.insert(k, v);
            }
        }
        Ok((db, values))
    })?;
    let get = |k: &str| values.get(k).cloned();
    let streams_dir = dir.join("streams");
    let disk = Arc::new(Mutex::new(HashMap::new()));
    let mut state = ServiceState::new(Arc::clone(&disk));
    let newest_snapshot = snapshot::newest(&**fs, service).unwrap_or(0);
    if let Some(f) = get("format") {
        let v = f.as_ref().try_into().map(u32::from_le_bytes).unwrap_or(0);
        if v != FORMAT {
            return Err(CheckpointError {
                msg: format!(
                    "unsupported checkpoint format in {}: version {v}, this build reads {FORMAT}",
                    db_path.display()
                ),
                kind: CheckpointErrorKind::Io,
            });
        }
        let corrupt = |what: &str, e: String| err(&format!("corrupt checkpoint ({what}) in"), &db_path, e);
        let m = Manifest {
            applied: get("applied")
                .and_then(|a| a.as_ref().try_into().ok().map(u64::from_le_bytes))
                .ok_or_else(|| corrupt("applied", "missing or not 8 bytes".into()))?,
            meta: get("meta").unwrap_or_default(),
            sessions: get("sessions").unwrap_or_default(),
            disk: get("disk").unwrap_or_default(),
        };
        // Databases of releases before the check key have none: they are
        // taken as they are.
        if let Some(c) = get("check") {
            if c.as_ref() != check_of(&m).to_le_bytes() {
                return Err(corrupt("check", "the values do not match the CRC written with them".into()));
            }
        }
        decode_meta(&mut state, m.meta).map_err(|e| corrupt("meta", e))?;
        if state.applied.0 != m.applied {
            return Err(corrupt("applied", format!("{} but the metadata says {}", m.applied, state.applied)));
        }
        if m.applied < newest_snapshot {
            return Err(err(
                "checkpoint older than the local snapshot in",
                &db_path,
                format!("it is at index {} but this node made snapshot {newest_snapshot} after it", m.applied),
            ));
        }
        state.sessions = Sessions::decode(m.sessions).map_err(|e| corrupt("sessions", e))?;
        let tables = decode_disk(m.disk).map_err(|e| corrupt("disk", e))?;
        let mut d = disk.lock();
        for (id, metas) in tables {
            let sdir = streams_dir.join(id.to_string());
            let ds = DiskStream::check(Arc::clone(fs), sdir.clone(), &metas)
                .map_err(|e| io_err("cannot open the segments of stream", &sdir, e))?;
            d.insert(id, ds);
        }
        for (name, s) in &state.streams {
            let end = d.get(&s.id).and_then(|ds| ds.end());
            if s.first < s.next && end.is_none_or(|end| end < s.next) {
                return Err(err(
                    "checkpoint and segments disagree in",
                    dir,
                    format!("stream {name:?} has records up to {} but its segments end at {end:?}", s.next),
                ));
            }
        }
        // Verified: cut off what a checkpoint that did not finish wrote
        // (in stream order, as every walk over the disk here: the same
        // operations in the same order every time).
        let mut ids: Vec<&u64> = d.keys().collect();
        ids.sort_unstable();
        for (id, ds) in ids.into_iter().map(|id| (id, &d[id])) {
            ds.cut_to_checkpoint()
                .map_err(|e| io_err("cannot truncate the segments of stream", &streams_dir.join(id.to_string()), e))?;
        }
        log::info!(
            "service: restored checkpoint at index {} ({} streams, {} sessions)",
            state.applied,
            state.streams.len(),
            state.sessions.len()
        );
    } else if newest_snapshot > 0 {
        return Err(err(
            "empty checkpoint database in",
            &db_path,
            format!("this node made snapshot {newest_snapshot}, so it had checkpointed at least that far"),
        ));
    }
    let (tx, rx) = mpsc::channel::<Job>();
    let (done_tx, done_rx) = mpsc::channel();
    let mut committed: Vec<(u64, Vec<SegmentMeta>)> = disk.lock().iter().map(|(id, d)| (*id, d.describe())).collect();
    committed.sort_unstable_by_key(|c| c.0);
    let writer = Writer {
        fs: Arc::clone(fs),
        db,
        db_path,
        streams_dir,
        disk,
        committed,
        unlink_later: (Vec::new(), Vec::new()),
        service: service.to_path_buf(),
    };
    if storage.checkpoint_inline {
        let inline = Some((writer, done_tx));
        return Ok((state, Checkpointer { tx: None, done_rx, pending: 0, thread: None, inline }));
    }
    let thread = std::thread::Builder::new()
        .name("service-checkpoint".into())
        .spawn(move || writer.run(rx, done_tx))
        .map_err(|e| io_err("cannot spawn the checkpoint thread for", dir, e))?;
    Ok((state, Checkpointer { tx: Some(tx), done_rx, pending: 0, thread: Some(thread), inline: None }))
}

impl Checkpointer {
    /// Hands a job to the thread; false if the thread is gone.
    pub fn submit(&mut self, job: Job) -> bool {
        if let Some((writer, done)) = self.inline.as_mut() {
            let r = writer.step(job);
            self.pending += 1;
            return done.send(r).is_ok();
        }
        let Some(tx) = self.tx.as_ref() else { return false };
        if tx.send(job).is_err() {
            return false;
        }
        self.pending += 1;
        true
    }

    /// The outcome of a finished job, if any. After a failure the segments
    /// are back at the last durable checkpoint; the caller rewinds to what
    /// they hold and a later job writes it again (the records are still in
    /// memory and the Raft log keeps every entry after that checkpoint).
    pub fn poll_done(&mut self) -> Option<Result<Done, Failed>> {
        let r = self.done_rx.try_recv().ok()?;
        self.pending = self.pending.saturating_sub(1);
        if let Err(e) = &r {
            log::error!("service: checkpoint failed: {e}; rolled back, will retry");
        }
        Some(r)
    }

    /// Waits for the next outcome (`None`: nothing is in flight).
    pub fn wait_done(&mut self) -> Option<Result<Done, Failed>> {
        if self.pending == 0 {
            return None;
        }
        self.pending -= 1;
        match self.done_rx.recv() {
            Ok(r) => {
                if let Err(e) = &r {
                    log::error!("service: checkpoint failed: {e}; rolled back");
                }
                Some(r)
            }
            Err(_) => {
                self.pending = 0;
                None
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("service: the checkpoint thread panicked");
            }
        }
    }
}

struct Writer {
    fs: Arc<dyn ringraft::fs::Fs>,
    service: PathBuf,
    db: Box<dyn Kv>,
    db_path: PathBuf,
    streams_dir: PathBuf,
    disk: Arc<Mutex<HashMap<u64, DiskStream>>>,
    /// The segment tables of the last durable checkpoint (or of one whose
    /// flush failed for space, which may be durable): a failed job rolls
    /// the segments back to them.
    committed: Vec<(u64, Vec<SegmentMeta>)>,
    /// Segment files and stream directories a checkpoint whose flush failed
    /// stopped counting: unlinked after the next durable checkpoint.
    unlink_later: (Vec<PathBuf>, Vec<PathBuf>),
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>, done: mpsc::Sender<Result<Done, Failed>>) {
        while let Ok(job) = rx.recv() {
            if done.send(self.step(job)).is_err() {
                break;
            }
        }
    }

    /// Writes one job; a failed one is rolled back.
    fn step(&mut self, job: Job) -> Result<Done, Failed> {
        let r = self.write(job);
        if let Err(e) = &r {
            if let Err(e2) = self.roll_back() {
                // The segments are in a state no checkpoint describes
                // and cannot be put back: stop, recover from the last
                // checkpoint and the Raft log at the next start.
                panic!("service: checkpoint failed ({e}) and rolling back failed too ({e2})");
            }
        }
        r
    }

    /// Puts every segment back as the last durable checkpoint counts it:
    /// bytes a failed job wrote (synced or not — after a failed fdatasync
    /// the page cache cannot be trusted) are cut off, segments it created are
    /// removed, segments it dropped are opened again (their files are only
    /// unlinked after a checkpoint that no longer counts them).
    fn roll_back(&mut self) -> Result<(), String> {
        let mut disk = self.disk.lock();
        let committed: HashMap<u64, &Vec<SegmentMeta>> = self.committed.iter().map(|(id, m)| (*id, m)).collect();
        let mut ids: Vec<u64> = disk.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if !committed.contains_key(&id) {
                if let Some(ds) = disk.remove(&id) {
                    ds.destroy().map_err(|e| format!("stream {id}: {e}"))?;
                }
            }
        }
        for (id, metas) in &self.committed {
            let dir = self.streams_dir.join(id.to_string());
            for (path, _) in disk.get(id).map(|d| d.paths()).unwrap_or_default() {
                if !metas.iter().any(|m| path.ends_with(format!("{:020}.seg", m.base))) {
                    self.fs.remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            let ds = DiskStream::open(Arc::clone(&self.fs), dir.clone(), metas)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            disk.insert(*id, ds);
        }
        Ok(())
    }

    fn write(&mut self, job: Job) -> Result<Done, Failed> {
        let started = std::time::Instant::now();
        let mut files = Vec::new();
        let mut bytes = 0usize;
        // Unlinked only once the checkpoint that stops counting them is
        // durable.
        let mut dead_files: Vec<PathBuf> = Vec::new();
        let mut dead_dirs: Vec<PathBuf> = Vec::new();
        {
            // Readers of old offsets wait for this lock while a checkpoint
            // writes; they only read below the in-memory records.
            let mut disk = self.disk.lock();
            for (id, at, recs) in &job.writes {
                let ds = disk
                    .entry(*id)
                    .or_insert_with(|| DiskStream::new(Arc::clone(&self.fs), self.streams_dir.join(id.to_string())));
                let first = job.trims.iter().find(|t| t.0 == *id).map_or(0, |t| t.1);
                if let Some(end) = ds.end() {
                    if end < *at && first < *at {
                        return Err(format!("stream {id}: records {end}..{at} are neither written nor trimmed").into());
                    }
                }
                bytes += recs.iter().map(|r| r.len()).sum::<usize>();
                files.extend(ds.append(*at, recs).map_err(|e| Failed::io(format!("stream {id}"), &e))?);
            }
            for (id, first) in &job.trims {
                if let Some(ds) = disk.get_mut(id) {
                    dead_files.extend(ds.drop_before(*first));
                }
            }
            for id in &job.deleted {
                if let Some(ds) = disk.remove(id) {
                    dead_dirs.push(ds.dir().to_path_buf());
                }
            }
        }
        for f in &files {
            f.sync_data().map_err(|e| Failed::io("fdatasync of a segment failed".into(), &e))?;
        }
        let (tables, ends) = {
            let disk = self.disk.lock();
            let ends: HashMap<u64, u64> = disk.iter().filter_map(|(id, d)| d.end().map(|e| (*id, e))).collect();
            (encode_disk(&disk), ends)
        };
        let manifest = Manifest { applied: job.applied.0, meta: job.meta, sessions: job.sessions, disk: tables };
        match store_blobs(&*self.fs, &mut *self.db, &self.db_path, &manifest) {
            Ok(()) => {}
            Err(StoreFailed::NotWritten(e)) => return Err(Failed::io(format!("in {}", self.db_path.display()), &e)),
            Err(StoreFailed::MaybeDurable(e)) => {
                // The batch may be durable (defect 19: rolling the segments
                // back to the previous checkpoint cut bytes it counts). The
                // segments stay as this job left them (synced) and are what
                // a later rollback returns to; the files it no longer
                // counts go once a later checkpoint is durable.
                self.committed = decode_disk(manifest.disk.clone()).unwrap_or_default();
                self.unlink_later.0.extend(dead_files);
                self.unlink_later.1.extend(dead_dirs);
                return Err(Failed::io(format!("flush of {}", self.db_path.display()), &e));
            }
        }
        self.committed = decode_disk(manifest.disk.clone()).unwrap_or_default();
        let (later_files, later_dirs) = std::mem::take(&mut self.unlink_later);
        dead_files.extend(later_files);
        dead_dirs.extend(later_dirs);
        for p in dead_files {
            if let Err(e) = self.fs.remove_file(&p) {
                log::warn!("service: cannot remove the trimmed segment {}: {e}", p.display());
            }
        }
        for d in dead_dirs {
            if let Err(e) = self.fs.remove_dir_all(&d) {
                log::warn!("service: cannot remove the deleted stream's {}: {e}", d.display());
            }
        }
        let mut snapshot = false;
        if job.snapshot {
            let segments: Vec<(u64, PathBuf)> = {
                let disk = self.disk.lock();
                let mut s: Vec<(u64, PathBuf)> =
                    disk.iter().flat_map(|(id, d)| d.paths().into_iter().map(move |(p, _)| (*id, p))).collect();
                s.sort_unstable();
                s
            };
            match snapshot::create(&*self.fs, &self.service, job.applied.0, &manifest, &segments) {
                Ok(()) => snapshot = true,
                Err(e) => log::error!("service: making the snapshot at {} failed: {e}", job.applied),
            }
        }
        log::debug!(
            "service: checkpoint at index {} wrote {} bytes in {} files in {:?}",
            job.applied,
            bytes,
            files.len(),
            started.elapsed()
        );
        Ok(Done { applied: job.applied, snapshot, ends, deleted: job.deleted })
    }
}

/// The CRC32C of a checkpoint's values (the `check` key): format, applied,
/// then `meta`, `sessions` and `disk`, each after its length.
fn check_of(m: &Manifest) -> u32 {
    let mut crc = crc32c::crc32c(&FORMAT.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &m.applied.to_le_bytes());
    for blob in [&m.meta, &m.sessions, &m.disk] {
        crc = crc32c::crc32c_append(crc, &(blob.len() as u64).to_le_bytes());
        crc = crc32c::crc32c_append(crc, blob);
    }
    crc
}

/// How storing a checkpoint's values failed.
enum StoreFailed {
    /// The batch was not written: nothing of it is durable.
    NotWritten(std::io::Error),
    /// The flush ran out of space: the batch may be durable or not.
    MaybeDurable(std::io::Error),
}

/// Writes a checkpoint's values in one atomic batch and flushes. A flush
/// that fails for another reason than a full disk is a failed fsync inside
/// the store: the process fails stop ([`ringraft::fs::Fs::fail_stop`]).
fn store_blobs(fs: &dyn ringraft::fs::Fs, db: &mut dyn Kv, path: &Path, m: &Manifest) -> Result<(), StoreFailed> {
    let applied = m.applied.to_le_bytes();
    let check = check_of(m).to_le_bytes();
    db.write_batch(&[
        ("format", &FORMAT.to_le_bytes()[..]),
        ("applied", &applied[..]),
        ("meta", m.meta.as_ref()),
        ("sessions", m.sessions.as_ref()),
        ("disk", m.disk.as_ref()),
        ("check", &check[..]),
    ])
    .map_err(StoreFailed::NotWritten)?;
    match db.flush() {
        Ok(()) => Ok(()),
        Err(e) if is_disk_full(&e) => Err(StoreFailed::MaybeDurable(e)),
        Err(e) => fs.fail_stop(path, &e),
    }
}

/// Creates the checkpoint database of an installed snapshot in
/// `state_dir`.
///
/// # Errors
/// The store cannot create or write it.
pub(crate) fn write_db(storage: &ServiceStorage, state_dir: &Path, m: &Manifest) -> std::io::Result<()> {
    let path = state_dir.join("db");
    let mut db = storage.kv.open(&storage.fs, &path)?;
    store_blobs(&*storage.fs, &mut *db, &path, m).map_err(|e| match e {
        StoreFailed::NotWritten(e) | StoreFailed::MaybeDurable(e) => e,
    })
}

/// The consistent cut a checkpoint writes: records not yet handed to a
/// checkpoint, the metadata and the sessions, as of `applied`.
pub(crate) fn cut(st: &mut ServiceState) -> Job {
    let mut writes = Vec::new();
    let mut trims = Vec::new();
    for s in st.streams.values_mut() {
        trims.push((s.id, s.first));
        if s.next > s.ckpt_next {
            let skip = (s.ckpt_next - s.mem_first) as usize;
            let recs: Vec<Bytes> = s.mem.iter().skip(skip).cloned().collect();
            writes.push((s.id, s.ckpt_next, recs));
            s.ckpt_next = s.next;
        }
    }
    // In stream order: the disk sees the same operations in the same
    // order every time (a simulated run replays from its seed).
    writes.sort_unstable_by_key(|w| w.0);
    trims.sort_unstable();
    Job {
        applied: st.applied,
        meta: encode_meta(st),
        sessions: st.sessions.encode(),
        writes,
        trims,
        deleted: st.deleted.clone(),
        snapshot: false,
    }
}
