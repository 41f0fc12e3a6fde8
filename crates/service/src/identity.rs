//! The data directory and the identity it belongs to.
//!
//! A data directory belongs to exactly one node of exactly one cluster, for
//! ever: pointing a node at another node's directory (or at a directory
//! from an old cluster) would let it vote with someone else's log. So the
//! first start (`--bootstrap` or `--join`) writes an `IDENTITY` file, and
//! every later start checks it before anything else is opened.
//!
//! # Layout
//!
//! ```text
//! DATA_DIR/
//!   LOCK       empty; flock'ed exclusively for the life of the process, so
//!              two servers never share a directory
//!   IDENTITY   cluster id and node id, 28 bytes (below)
//!   raft/      the Raft node's own directory (log segments, state file)
//!   service/   state-machine checkpoints
//! ```
//!
//! `IDENTITY` (all integers little-endian):
//!
//! | offset | size | field        | why                                      |
//! |--------|------|--------------|------------------------------------------|
//! | 0      | 4    | magic `RRID` | not some other file                      |
//! | 4      | 4    | version = 1  | a future layout is refused, not misread  |
//! | 8      | 8    | cluster id   | which cluster                            |
//! | 16     | 8    | node id      | which member                             |
//! | 24     | 4    | CRC32C       | over bytes 0..24                         |
//!
//! It is written once, atomically: `IDENTITY.tmp`, fsync, rename, fsync of
//! the directory. A crash leaves either no `IDENTITY` (start again with
//! `--bootstrap`/`--join`; a leftover `IDENTITY.tmp` is overwritten) or a
//! whole one. The directories it creates (the data directory and its
//! missing parents, `raft/`, `service/`) are synced into their parents.
//!
//! Every file access goes through the [`Fs`] seam: [`DataDir::open_on`]
//! and [`Identity::load_on`] take the file system, [`DataDir::open`] and
//! [`Identity::load`] use the real one.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::config::{ServerConfig, StartMode};
use ringraft::core::NodeId;
use ringraft::fs::{Fs, FsLock, OpenMode, RealFs};

/// The identity file's name inside the data directory.
pub const IDENTITY_FILE: &str = "IDENTITY";
/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// Magic at the start of `IDENTITY`.
pub const IDENTITY_MAGIC: [u8; 4] = *b"RRID";
/// The `IDENTITY` format this build writes and reads.
pub const IDENTITY_VERSION: u32 = 1;
/// Bytes in a version-1 `IDENTITY`.
pub const IDENTITY_BYTES: usize = 28;

const TMP_FILE: &str = "IDENTITY.tmp";

/// Which cluster and node a data directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's id; never 0 on disk.
    pub cluster_id: u64,
    /// The node's id; never 0 on disk.
    pub node_id: NodeId,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} of cluster {}", self.node_id, self.cluster_id)
    }
}

impl Identity {
    /// The 28-byte `IDENTITY` encoding.
    pub fn encode(&self) -> [u8; IDENTITY_BYTES] {
        let mut b = [0u8; IDENTITY_BYTES];
        b[0..4].copy_from_slice(&IDENTITY_MAGIC);
        b[4..8].copy_from_slice(&IDENTITY_VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.cluster_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.node_id.get().to_le_bytes());
        let crc = crc32c::crc32c(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes an `IDENTITY` file's bytes; `path` is only for messages.
    ///
    /// # Errors
    /// [`IdentityError::Corrupt`] for a wrong length, magic or checksum, or
    /// zero ids; [`IdentityError::UnsupportedVersion`] for a file from a
    /// newer ringraft.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Identity, IdentityError> {
        let corrupt = |why: String| IdentityError::Corrupt { path: path.to_path_buf(), why };
        if bytes.len() < 4 || bytes[0..4] != IDENTITY_MAGIC {
            return Err(corrupt(format!("does not start with {:?}", "RRID")));
        }
        let version = bytes.get(4..8).map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
        let crc_ok = bytes.len() == IDENTITY_BYTES && crc32c::crc32c(&bytes[..24]) == le_u32(&bytes[24..28]);
        match version {
            // A newer version may have another length: its checksum cannot be
            // checked here, but a version we do not know must not be misread.
            Some(v) if v != IDENTITY_VERSION && (crc_ok || bytes.len() != IDENTITY_BYTES) => {
                return Err(IdentityError::UnsupportedVersion { path: path.to_path_buf(), version: v });
            }
            _ => {}
        }
        if bytes.len() != IDENTITY_BYTES {
            return Err(corrupt(format!("is {} bytes long, expected {IDENTITY_BYTES}", bytes.len())));
        }
        if !crc_ok {
            return Err(corrupt("checksum mismatch".into()));
        }
        let id = Identity { cluster_id: le_u64(&bytes[8..16]), node_id: NodeId(le_u64(&bytes[16..24])) };
        if id.cluster_id == 0 || !id.node_id.is_some() {
            return Err(corrupt(format!("holds a zero id ({id})")));
        }
        Ok(id)
    }

    /// Reads `data_dir/IDENTITY` without taking the lock (for tools and
    /// logging; a running server has already checked it).
    ///
    /// # Errors
    /// [`IdentityError::Missing`] when there is none, [`IdentityError::Io`]
    /// when it cannot be read, or a decoding error (see [`Identity::decode`]).
    pub fn load(data_dir: &Path) -> Result<Identity, IdentityError> {
        Identity::load_on(&RealFs, data_dir)
    }

    /// [`Identity::load`] on the file system `fs`.
    ///
    /// # Errors
    /// As [`Identity::load`].
    pub fn load_on(fs: &dyn Fs, data_dir: &Path) -> Result<Identity, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        match fs.read(&path) {
            Ok(bytes) => Identity::decode(&bytes, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(IdentityError::Missing { dir: data_dir.to_path_buf() })
            }
            Err(e) => Err(IdentityError::Io { op: "read", path, source: e }),
        }
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// Why a data directory could not be opened.
#[derive(Debug)]
pub enum IdentityError {
    /// Another process holds `LOCK`.
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// `--bootstrap`/`--join` on a directory that already holds something.
    NotEmpty {
        /// The data directory.
        dir: PathBuf,
        /// A few of the entries found.
        entries: Vec<String>,
    },
    /// A restart (`auto`) on a directory without `IDENTITY`.
    Missing {
        /// The data directory.
        dir: PathBuf,
    },
    /// `IDENTITY` belongs to another node or cluster than the config says.
    Foreign {
        /// The `IDENTITY` file.
        path: PathBuf,
        /// What the file says.
        found: Identity,
        /// What the config says (`cluster_id` 0: any cluster).
        expected: Identity,
    },
    /// `IDENTITY` is damaged.
    Corrupt {
        /// The `IDENTITY` file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `IDENTITY` was written by a newer ringraft.
    UnsupportedVersion {
        /// The `IDENTITY` file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// A file-system operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Locked { dir } => write!(
                f,
                "data directory {} is locked: another ringraft-server is using it (stop it, or give this one \
                 its own --data-dir)",
                dir.display()
            ),
            IdentityError::NotEmpty { dir, entries } => write!(
                f,
                "data directory {} is not empty (holds {}): --bootstrap and --join need an empty directory; \
                 to restart the node that owns it, start without --bootstrap/--join",
                dir.display(),
                entries.join(", ")
            ),
            IdentityError::Missing { dir } => write!(
                f,
                "data directory {} has no {IDENTITY_FILE}: it was never initialised; start once with \
                 --bootstrap (a new cluster) or --join (to be added to an existing one)",
                dir.display()
            ),
            IdentityError::Foreign { path, found, expected } => {
                let cluster =
                    if expected.cluster_id == 0 { "any cluster".to_string() } else { expected.cluster_id.to_string() };
                write!(
                    f,
                    "{} says this directory belongs to {found}, but the config is for node {} of cluster {cluster}; \
                     check --data-dir, --node-id and --cluster-id",
                    path.display(),
                    expected.node_id
                )
            }
            IdentityError::Corrupt { path, why } => write!(
                f,
                "{} is corrupt ({why}); restore it from a backup or, if this node's data is expendable, empty \
                 the directory and --join again",
                path.display()
            ),
            IdentityError::UnsupportedVersion { path, version } => write!(
                f,
                "{} has format version {version}, this build reads {IDENTITY_VERSION}: run a newer ringraft-server",
                path.display()
            ),
            IdentityError::Io { op, path, source } => write!(f, "cannot {op} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IdentityError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An open, locked data directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    dir: PathBuf,
    identity: Identity,
    is_new: bool,
    /// Holds the exclusive lock on `LOCK` until dropped.
    _lock: Box<dyn FsLock>,
}

impl DataDir {
    /// Creates the directory if missing, locks it and checks (`Auto`) or
    /// writes (`Bootstrap`, `Join`) its identity, then makes sure `raft/` and
    /// `service/` exist.
    ///
    /// # Errors
    /// [`IdentityError::Locked`] if another process has it;
    /// [`IdentityError::NotEmpty`] for `Bootstrap`/`Join` on a used directory;
    /// [`IdentityError::Missing`] for `Auto` on a fresh one;
    /// [`IdentityError::Foreign`] when its identity is not the config's;
    /// `Corrupt`/`UnsupportedVersion` for a bad `IDENTITY`; `Io` otherwise.
    ///
    /// A failed fsync of a directory fails stop ([`Fs::fail_stop`]): the
    /// process exits (on a simulated file system, the simulated node
    /// crashes).
    pub fn open(config: &ServerConfig) -> Result<DataDir, IdentityError> {
        DataDir::open_on(&RealFs, config)
    }

    /// [`DataDir::open`] on the file system `fs`.
    ///
    /// # Errors
    /// As [`DataDir::open`]; a failed fsync of a directory fails stop.
    pub fn open_on(fs: &dyn Fs, config: &ServerConfig) -> Result<DataDir, IdentityError> {
        let dir = config.data_dir.clone();
        create_dir_durably(fs, &dir)?;
        let lock = lock(fs, &dir)?;
        let expected = Identity { cluster_id: config.cluster_id, node_id: config.node_id };
        let (identity, is_new) = match config.start_mode {
            StartMode::Auto => {
                let found = Identity::load_on(fs, &dir)?;
                let node_ok = found.node_id == expected.node_id;
                let cluster_ok = expected.cluster_id == 0 || found.cluster_id == expected.cluster_id;
                if !(node_ok && cluster_ok) {
                    return Err(IdentityError::Foreign { path: dir.join(IDENTITY_FILE), found, expected });
                }
                (found, false)
            }
            StartMode::Bootstrap | StartMode::Join => {
                // `validate` already refuses these, but a zero id on disk
                // would make the directory unusable, so check again here.
                if expected.cluster_id == 0 || !expected.node_id.is_some() {
                    let why = format!("refusing to write a zero id ({expected})");
                    return Err(IdentityError::Corrupt { path: dir.join(IDENTITY_FILE), why });
                }
                ensure_empty(fs, &dir)?;
                write_identity(fs, &dir, &expected)?;
                (expected, true)
            }
        };
        for sub in ["raft", "service"] {
            create_dir_durably(fs, &dir.join(sub))?;
        }
        Ok(DataDir { dir, identity, is_new, _lock: lock })
    }

    /// The cluster and node this directory belongs to.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `data_dir/raft`: the Raft node's directory.
    pub fn raft_dir(&self) -> PathBuf {
        self.dir.join("raft")
    }

    /// `data_dir/service`: state-machine checkpoints.
    pub fn service_dir(&self) -> PathBuf {
        self.dir.join("service")
    }

    /// Whether this open created the identity (`Bootstrap` or `Join`), i.e.
    /// the node has no state yet.
    pub fn is_new(&self) -> bool {
        self.is_new
    }
}

/// A closure turning an I/O error of `op` on `path` into an
/// [`IdentityError::Io`].
fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IdentityError {
    let path = path.to_path_buf();
    move |source| IdentityError::Io { op, path, source }
}

/// Creates `dir` and its missing parents, durably: a new directory's entry,
/// like a file's, survives a power loss only once its parent is synced.
/// Syncs the parent of every level it creates, and `dir`'s parent in any
/// case (whoever made it may not have synced it), as
/// [`ringraft::storage::create_dir_all_durably`] does, with this module's
/// errors.
fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> Result<(), IdentityError> {
    // Looked up before creating: `dir`'s parent, and while `dir` is new,
    // every ancestor up to the first that exists.
    let is_new = fs.metadata(dir).is_err();
    let mut parents = Vec::new();
    let mut level = dir;
    while let Some(parent) = level.parent().filter(|p| !p.as_os_str().is_empty()) {
        parents.push(parent);
        if !is_new || fs.metadata(parent).is_ok() {
            break;
        }
        level = parent;
    }
    fs.create_dir_all(dir).map_err(io_err("create", dir))?;
    for parent in parents {
        match fs.sync_dir(parent) {
            Ok(()) => {}
            // An existing data directory's parent is synced again in case a
            // first start was cut short before it was; a parent this server
            // may not open (root-owned, 0711) was set up before it and is
            // left alone (defect 20: such a node never started again).
            Err(e) if !is_new && e.kind() == io::ErrorKind::PermissionDenied => {
                log::debug!("not syncing {} (no permission to open it): {e}", parent.display());
            }
            Err(e) => return Err(io_err("fsync", parent)(e)),
        }
    }
    Ok(())
}

/// Takes the exclusive, non-blocking lock on `LOCK` (created if missing).
fn lock(fs: &dyn Fs, dir: &Path) -> Result<Box<dyn FsLock>, IdentityError> {
    let path = dir.join(LOCK_FILE);
    fs.lock(&path).map_err(|source| match source.kind() {
        io::ErrorKind::WouldBlock => IdentityError::Locked { dir: dir.to_path_buf() },
        // `flock(LOCK_EX | LOCK_NB)` fails only with EWOULDBLOCK or ENOLCK
        // (no locks on this file system, e.g. NFS without lockd); any other
        // error is from opening the file.
        _ if source.raw_os_error() == Some(libc::ENOLCK) => IdentityError::Io { op: "lock", path, source },
        _ => IdentityError::Io { op: "open", path, source },
    })
}

/// Refuses a directory holding anything but `LOCK` (and a leftover
/// `IDENTITY.tmp` from a crashed first start, which is ours to overwrite,
/// and an empty `lost+found`, which a freshly made ext4 file system has at
/// its root: the data directory may be a mount point).
fn ensure_empty(fs: &dyn Fs, dir: &Path) -> Result<(), IdentityError> {
    let listed = fs.list(dir).map_err(io_err("list", dir))?;
    let mut entries = Vec::new();
    for entry in listed {
        let name = entry.name;
        let empty_lost_found = name == "lost+found" && fs.list(&dir.join(&name)).is_ok_and(|d| d.is_empty());
        if name != LOCK_FILE && name != TMP_FILE && !empty_lost_found {
            entries.push(name);
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    entries.sort();
    let total = entries.len();
    entries.truncate(5);
    if total > entries.len() {
        entries.push(format!("and {} more", total - entries.len()));
    }
    Err(IdentityError::NotEmpty { dir: dir.to_path_buf(), entries })
}

/// Writes `IDENTITY` atomically and durably: temp file, fsync, rename,
/// fsync of the directory. A failed fsync of the temp file is an error
/// (the server does not start, and `IDENTITY` is not in place); a failed
/// fsync of the directory fails stop ([`Fs::sync_dir`]).
fn write_identity(fs: &dyn Fs, dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let tmp = dir.join(TMP_FILE);
    let dst = dir.join(IDENTITY_FILE);
    let f = fs.open(&tmp, OpenMode::CreateTruncate).map_err(io_err("create", &tmp))?;
    f.write_all_at(&id.encode(), 0).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(f);
    fs.rename(&tmp, &dst).map_err(io_err("rename into place", &dst))?;
    fs.sync_dir(dir).map_err(io_err("fsync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;
    use ringraft::fs::sim::{is_sim_crash, quiet_crash_panics};
    use ringraft::fs::SimFs;

    /// Node `node` of `cluster`, its data directory two levels below `/`
    /// that do not exist yet.
    fn cfg(node: u64, cluster: u64, mode: StartMode) -> ServerConfig {
        let mut c = ServerConfig::new(NodeId(node), cluster, "/srv/ringraft/data");
        c.start_mode = mode;
        c
    }

    const NODE_1_OF_77: Identity = Identity { cluster_id: 77, node_id: NodeId(1) };

    /// `SimFs` where one directory can be searched but not opened (mode
    /// 0711, owned by another user): its fsync fails with EACCES, as a
    /// real `open(2)` of it would.
    #[derive(Debug)]
    struct Unreadable(SimFs, PathBuf);

    impl Fs for Unreadable {
        fn open(&self, p: &Path, m: ringraft::fs::OpenMode) -> io::Result<Box<dyn ringraft::fs::FsFile>> {
            self.0.open(p, m)
        }
        fn create_dir_all(&self, p: &Path) -> io::Result<()> {
            self.0.create_dir_all(p)
        }
        fn list(&self, p: &Path) -> io::Result<Vec<ringraft::fs::DirEntry>> {
            self.0.list(p)
        }
        fn rename(&self, a: &Path, b: &Path) -> io::Result<()> {
            self.0.rename(a, b)
        }
        fn hard_link(&self, a: &Path, b: &Path) -> io::Result<()> {
            self.0.hard_link(a, b)
        }
        fn remove_file(&self, p: &Path) -> io::Result<()> {
            self.0.remove_file(p)
        }
        fn remove_dir_all(&self, p: &Path) -> io::Result<()> {
            self.0.remove_dir_all(p)
        }
        fn sync_dir(&self, p: &Path) -> io::Result<()> {
            if p == self.1 {
                return Err(io::Error::from(io::ErrorKind::PermissionDenied));
            }
            self.0.sync_dir(p)
        }
        fn metadata(&self, p: &Path) -> io::Result<ringraft::fs::Meta> {
            self.0.metadata(p)
        }
        fn free_space(&self, p: &Path) -> io::Result<u64> {
            self.0.free_space(p)
        }
        fn lock(&self, p: &Path) -> io::Result<Box<dyn FsLock>> {
            self.0.lock(p)
        }
        fn fail_stop(&self, p: &Path, e: &io::Error) -> ! {
            self.0.fail_stop(p, e)
        }
    }

    /// Found by review (defect 20): every start synced the data
    /// directory's parent, so a data directory whose parent the server may
    /// not read (a root-owned 0711 `/srv`) could no longer start.
    #[test]
    fn defect_20_an_existing_data_directory_starts_under_a_parent_it_cannot_read() {
        let sim = SimFs::new(1);
        drop(DataDir::open_on(&sim, &cfg(1, 77, StartMode::Bootstrap)).unwrap());
        let fs = Unreadable(sim, PathBuf::from("/srv/ringraft"));
        let d = DataDir::open_on(&fs, &cfg(1, 77, StartMode::Auto)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.identity(), NODE_1_OF_77);
    }

    #[test]
    fn a_held_lock_is_refused_until_dropped_or_its_process_crashes() {
        let fs = SimFs::new(1);
        let first = DataDir::open_on(&fs, &cfg(1, 77, StartMode::Bootstrap)).unwrap();
        let e = DataDir::open_on(&fs, &cfg(1, 77, StartMode::Auto)).unwrap_err();
        assert!(matches!(e, IdentityError::Locked { .. }), "{e:?}");
        assert!(e.to_string().contains("another ringraft-server"), "{e}");
        drop(first);
        let second = DataDir::open_on(&fs, &cfg(1, 77, StartMode::Auto)).unwrap();
        fs.crash();
        // The crashed process's lock went with it; its late drop frees
        // nothing of the new holder's.
        let third = DataDir::open_on(&fs, &cfg(1, 77, StartMode::Auto)).unwrap();
        drop(second);
        let e = DataDir::open_on(&fs, &cfg(1, 77, StartMode::Auto)).unwrap_err();
        assert!(matches!(e, IdentityError::Locked { .. }), "{e:?}");
        drop(third);
    }

    #[test]
    fn an_identity_file_once_written_survives_a_crash() {
        for seed in 0..32 {
            let fs = SimFs::new(seed);
            let dir = Path::new("/data");
            fs.create_dir_all(dir).unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
            write_identity(&fs, dir, &NODE_1_OF_77).unwrap();
            fs.crash();
            let found = Identity::load_on(&fs, dir).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(found, NODE_1_OF_77, "seed {seed}");
        }
    }

    #[test]
    fn an_identity_once_written_survives_a_crash_with_its_directories() {
        for seed in 0..32 {
            let fs = SimFs::new(seed);
            let first = DataDir::open_on(&fs, &cfg(1, 77, StartMode::Bootstrap)).unwrap();
            assert!(first.is_new());
            fs.crash();
            drop(first);
            let d = DataDir::open_on(&fs, &cfg(1, 0, StartMode::Auto)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(d.identity(), NODE_1_OF_77, "seed {seed}");
            assert!(!d.is_new());
            for sub in [d.raft_dir(), d.service_dir()] {
                assert!(fs.metadata(&sub).is_ok_and(|m| m.is_dir), "seed {seed}: {} lost", sub.display());
            }
        }
    }

    #[test]
    fn a_crash_during_a_first_start_leaves_no_identity_or_a_whole_one() {
        quiet_crash_panics();
        for n in 1..=200 {
            let fs = SimFs::new(n);
            fs.crash_after(n);
            let run = catch_unwind(AssertUnwindSafe(|| DataDir::open_on(&fs, &cfg(1, 77, StartMode::Bootstrap))));
            let completed = match run {
                Ok(opened) => {
                    drop(opened.unwrap_or_else(|e| panic!("crash after {n} operations: {e}")));
                    !fs.crashed()
                }
                Err(payload) => {
                    assert!(is_sim_crash(&*payload), "crash after {n} operations: a panic that is not the crash");
                    false
                }
            };
            fs.crash();
            match DataDir::open_on(&fs, &cfg(1, 77, StartMode::Auto)) {
                Ok(d) => assert_eq!(d.identity(), NODE_1_OF_77, "crash after {n} operations"),
                // No IDENTITY: the operator starts again with --bootstrap,
                // which must find the directory empty.
                Err(IdentityError::Missing { .. }) => {
                    assert!(!completed, "crash after {n} operations: a completed first start lost IDENTITY");
                    let d = DataDir::open_on(&fs, &cfg(1, 77, StartMode::Bootstrap))
                        .unwrap_or_else(|e| panic!("crash after {n} operations, bootstrap again: {e}"));
                    assert_eq!(d.identity(), NODE_1_OF_77);
                }
                Err(e) => panic!("crash after {n} operations: {e}"),
            }
            if completed {
                return;
            }
        }
        panic!("a first start took more than 200 file-system operations");
    }
}
