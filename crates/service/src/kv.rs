//! The checkpoint's key-value store behind a trait (issue 18): sled in
//! production ([`SledStore`]), and in simulation a store on the seam's file
//! system ([`SimKvStore`]) that loses unflushed batches on a crash and can
//! fail a flush, deterministically. sled itself never runs in simulation:
//! its own crash behaviour is taken as sled documents it (a flushed batch
//! is durable, a batch is atomic) and the checkpoint verifies what it
//! reads back (the `check` key), which covers the rest.
//!
//! [`ServiceStorage`] bundles what the service's storage runs on: the file
//! system, the key-value store, the monotonic clock its schedules read, and
//! whether checkpoints run on their own thread (production) or on the
//! caller's (simulation, so one seed replays one run).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;

use ringraft::fs::Fs;

/// An open key-value database.
///
/// Errors are I/O errors: `StorageFull` for a full disk, `InvalidData`
/// (or `UnexpectedEof`) for a database that cannot be read as written,
/// any other kind for the rest.
pub trait Kv: Send + Debug {
    /// The value of `key`, as the last [`Kv::write_batch`] left it.
    ///
    /// # Errors
    /// The database cannot be read.
    fn get(&self, key: &str) -> io::Result<Option<Bytes>>;

    /// Sets every `(key, value)` of `batch` at once: a crash keeps all of
    /// it or none. Durable only after [`Kv::flush`].
    ///
    /// # Errors
    /// The batch cannot be written (nothing of it is then visible).
    fn write_batch(&mut self, batch: &[(&str, &[u8])]) -> io::Result<()>;

    /// Makes every batch written so far durable.
    ///
    /// # Errors
    /// The flush failed: the batches since the last flush may or may not
    /// survive a crash.
    fn flush(&mut self) -> io::Result<()>;
}

/// Opens key-value databases.
pub trait KvStore: Send + Sync + Debug {
    /// Opens (or creates) the database in directory `path` on `fs`.
    ///
    /// # Errors
    /// As [`Kv`]'s errors.
    fn open(&self, fs: &Arc<dyn Fs>, path: &Path) -> io::Result<Box<dyn Kv>>;
}

/// What the service's storage runs on.
#[derive(Clone, Debug)]
pub struct ServiceStorage {
    /// Every file of the service directory.
    pub fs: Arc<dyn Fs>,
    /// The checkpoint's key-value store.
    pub kv: Arc<dyn KvStore>,
    /// The process's monotonic clock (checkpoint schedule, retries, idle
    /// snapshot readers).
    pub clock: Arc<dyn ringraft::clock::Monotonic>,
    /// Checkpoints run on the caller's thread, one at a time, instead of a
    /// thread of their own: the simulation's choice, so that a seed replays
    /// the same operations in the same order.
    pub checkpoint_inline: bool,
    /// The local snapshot last verified whole, and the verdict: (service
    /// directory, index, intact). Per process (a simulated process gets a
    /// new one at each start), so a restart verifies again.
    pub(crate) verified: Arc<Mutex<Option<(std::path::PathBuf, u64, bool)>>>,
}

impl ServiceStorage {
    /// The real file system, sled and clock, checkpoints on their own
    /// thread.
    pub fn real() -> ServiceStorage {
        ServiceStorage {
            fs: ringraft::fs::real(),
            kv: Arc::new(SledStore),
            clock: Arc::new(ringraft::clock::ProcessClock::new()),
            checkpoint_inline: false,
            verified: Arc::default(),
        }
    }

    /// `fs` (a simulated file system) with [`SimKvStore`], the simulation's
    /// `clock`, and checkpoints inline.
    pub fn simulated(fs: Arc<dyn Fs>, kv: SimKvStore, clock: Arc<dyn ringraft::clock::Monotonic>) -> ServiceStorage {
        ServiceStorage { fs, kv: Arc::new(kv), clock, checkpoint_inline: true, verified: Arc::default() }
    }
}

/// Space sled must find free before it is opened or written: sled that
/// cannot write damages its own files (a nemesis run saw a database opened
/// on a full disk answer "Read corrupted data" at the next open), so a disk
/// with less free space counts as full and sled is left alone.
const SLED_FREE_MIN: u64 = 16 << 20;

/// Refuses to let sled touch a nearly full disk ([`SLED_FREE_MIN`]).
fn room_for_sled(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    match fs.free_space(dir) {
        Ok(free) if free < SLED_FREE_MIN => Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "only {free} bytes free on the disk of {} (sled is not written with less than {} MiB free)",
                dir.display(),
                SLED_FREE_MIN >> 20
            ),
        )),
        // A file system statvfs cannot describe is left to sled.
        _ => Ok(()),
    }
}

/// A sled error as an I/O error: its I/O errors keep their kind (a full
/// disk stays one), everything else (corruption, "unsupported", a reported
/// bug) is `InvalidData`, i.e. damage.
fn sled_io(what: &str, path: &Path, e: sled::Error) -> io::Error {
    match e {
        sled::Error::Io(e) => io::Error::new(
            if ringraft::storage::is_no_space(&e) { io::ErrorKind::StorageFull } else { e.kind() },
            format!("sled {what} {}: {e}", path.display()),
        ),
        e => io::Error::new(io::ErrorKind::InvalidData, format!("sled {what} {}: {e}", path.display())),
    }
}

/// sled, on the real file system only.
#[derive(Clone, Copy, Debug, Default)]
pub struct SledStore;

/// An open sled database.
#[derive(Debug)]
struct SledKv {
    db: sled::Db,
    path: std::path::PathBuf,
    fs: Arc<dyn Fs>,
}

impl KvStore for SledStore {
    /// Opens sled with its background flush off, refusing a nearly full
    /// disk. A database this process just closed can look locked for a
    /// moment (sled's threads letting go of it, or a fork elsewhere in the
    /// process sharing its file until the exec); the data directory's
    /// `LOCK` already keeps other servers out, so a held lock is retried
    /// for up to two seconds.
    fn open(&self, fs: &Arc<dyn Fs>, path: &Path) -> io::Result<Box<dyn Kv>> {
        room_for_sled(&**fs, path.parent().unwrap_or(path))?;
        match open_sled(path) {
            Ok(db) => Ok(Box::new(SledKv { db, path: path.to_path_buf(), fs: Arc::clone(fs) })),
            Err(e) => Err(sled_io("cannot open the database", path, e)),
        }
    }
}

/// Opens the sled database at `path` (background flush off), retrying a
/// held lock for up to two seconds ([`SledStore`]'s open says why).
pub(crate) fn open_sled(path: &Path) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::Config::new().path(path).flush_every_ms(None).open() {
            // sled reports a held lock as an `Other` I/O error with this text.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

impl Kv for SledKv {
    fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        Ok(self.db.get(key).map_err(|e| sled_io("cannot read", &self.path, e))?.map(|v| Bytes::copy_from_slice(&v)))
    }

    fn write_batch(&mut self, batch: &[(&str, &[u8])]) -> io::Result<()> {
        room_for_sled(&*self.fs, &self.path)?;
        let mut b = sled::Batch::default();
        for (k, v) in batch {
            b.insert(*k, *v);
        }
        self.db.apply_batch(b).map_err(|e| sled_io("batch in", &self.path, e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.db.flush().map(drop).map_err(|e| sled_io("flush of", &self.path, e))
    }
}

/// The simulation's key-value store: each database is a directory on the
/// seam's file system holding one file, `kv`, with every key and value and
/// a CRC32C, replaced atomically at each flush (write, sync, rename, sync
/// of the directory). A crash therefore keeps the last flushed content and
/// loses the batches after it, as the file system decides. A flush fails
/// with a chance of `flush_fail_ppm` in a million (drawn from the store's
/// own seeded generator), as sled's can when its fsync fails: then, at
/// random, its batches were made durable all the same or not at all, and
/// the error says EIO or a full disk, at random. A flush on a full file
/// system fails with nothing made durable.
#[derive(Debug)]
pub struct SimKvStore {
    flush_fail_ppm: u32,
    rng: Arc<Mutex<u64>>,
}

impl SimKvStore {
    /// A store whose flushes fail `flush_fail_ppm` times in a million,
    /// chosen from `seed`.
    pub fn new(seed: u64, flush_fail_ppm: u32) -> SimKvStore {
        SimKvStore { flush_fail_ppm, rng: Arc::new(Mutex::new(seed ^ 0x4B56_5354_4F52_4521)) }
    }
}

/// An open database of [`SimKvStore`].
#[derive(Debug)]
struct SimKv {
    fs: Arc<dyn Fs>,
    dir: std::path::PathBuf,
    /// What `get` sees: the last batches, flushed or not.
    map: BTreeMap<String, Bytes>,
    flush_fail_ppm: u32,
    rng: Arc<Mutex<u64>>,
}

const SIM_KV_MAGIC: &[u8; 4] = b"RRKV";

fn sim_kv_decode(path: &Path, raw: &[u8]) -> io::Result<BTreeMap<String, Bytes>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
    if raw.len() < 8 || &raw[..4] != SIM_KV_MAGIC {
        return Err(bad("not a simulated key-value file"));
    }
    let crc = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    if crc32c::crc32c(&raw[8..]) != crc {
        return Err(bad("CRC mismatch"));
    }
    let mut b = Bytes::copy_from_slice(&raw[8..]);
    let mut map = BTreeMap::new();
    while b.has_remaining() {
        let mut part = || -> io::Result<Bytes> {
            if b.remaining() < 4 {
                return Err(bad("truncated"));
            }
            let n = b.get_u32_le() as usize;
            if b.remaining() < n {
                return Err(bad("truncated"));
            }
            Ok(b.split_to(n))
        };
        let k = part()?;
        let v = part()?;
        map.insert(String::from_utf8_lossy(&k).into_owned(), v);
    }
    Ok(map)
}

impl KvStore for SimKvStore {
    fn open(&self, fs: &Arc<dyn Fs>, path: &Path) -> io::Result<Box<dyn Kv>> {
        ringraft::storage::create_dir_all_durably(&**fs, path)?;
        let file = path.join("kv");
        let map = match fs.read(&file) {
            Ok(raw) => sim_kv_decode(&file, &raw)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Box::new(SimKv {
            fs: Arc::clone(fs),
            dir: path.to_path_buf(),
            map,
            flush_fail_ppm: self.flush_fail_ppm,
            rng: Arc::clone(&self.rng),
        }))
    }
}

impl Kv for SimKv {
    fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        Ok(self.map.get(key).cloned())
    }

    fn write_batch(&mut self, batch: &[(&str, &[u8])]) -> io::Result<()> {
        for (k, v) in batch {
            self.map.insert((*k).to_string(), Bytes::copy_from_slice(v));
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let draw = ringraft::fs::sim::splitmix;
        let (fail, durable_anyway, full) = {
            let mut rng = self.rng.lock();
            let fail = self.flush_fail_ppm > 0 && draw(&mut rng) % 1_000_000 < u64::from(self.flush_fail_ppm);
            let r = draw(&mut rng);
            (fail, fail && r & 1 == 1, r & 2 == 2)
        };
        // As an I/O error (a failed fsync) or as a full disk, at random.
        let kind = if full { io::ErrorKind::StorageFull } else { io::ErrorKind::Other };
        let failed = || io::Error::new(kind, format!("simulated failure of a flush in {}", self.dir.display()));
        if fail && !durable_anyway {
            return Err(failed());
        }
        let mut body = BytesMut::new();
        for (k, v) in &self.map {
            body.put_u32_le(k.len() as u32);
            body.put_slice(k.as_bytes());
            body.put_u32_le(v.len() as u32);
            body.put_slice(v);
        }
        let mut raw = BytesMut::with_capacity(8 + body.len());
        raw.put_slice(SIM_KV_MAGIC);
        raw.put_u32_le(crc32c::crc32c(&body));
        raw.put_slice(&body);
        let file = self.dir.join("kv");
        ringraft::storage::replace_file_on(&*self.fs, &file, &self.dir.join("kv.tmp"), &raw)?;
        if fail {
            return Err(failed());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft::fs::SimFs;

    #[test]
    fn the_simulated_store_keeps_what_was_flushed_and_may_lose_the_rest() {
        let mut lost = 0;
        for seed in 0..32 {
            let sim = SimFs::new(seed);
            let fs = sim.arc();
            let store = SimKvStore::new(seed, 0);
            let mut kv = store.open(&fs, Path::new("/svc/db")).unwrap();
            kv.write_batch(&[("a", b"1"), ("b", b"2")]).unwrap();
            kv.flush().unwrap();
            kv.write_batch(&[("a", b"3")]).unwrap();
            assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"3"[..]));
            drop(kv);
            sim.crash();
            let kv = store.open(&fs, Path::new("/svc/db")).unwrap();
            assert_eq!(kv.get("b").unwrap().as_deref(), Some(&b"2"[..]), "flushed");
            lost += usize::from(kv.get("a").unwrap().as_deref() == Some(&b"1"[..]));
        }
        assert_eq!(lost, 32, "an unflushed batch never survives (nothing writes it)");
        // A failed flush may or may not have made its batch durable.
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..16 {
            let sim = SimFs::new(seed);
            let fs = sim.arc();
            let mut kv = SimKvStore::new(seed, 1_000_000).open(&fs, Path::new("/db")).unwrap();
            kv.write_batch(&[("a", b"1")]).unwrap();
            assert!(kv.flush().is_err(), "a flush that fails says so");
            sim.crash();
            let kv = SimKvStore::new(seed, 0).open(&fs, Path::new("/db")).unwrap();
            outcomes.insert(kv.get("a").unwrap());
        }
        assert_eq!(outcomes.len(), 2, "durable or not, at random: {outcomes:?}");
    }
}
