//! [`SimFs`]: a simulated file system for running the real storage code
//! against the faults a disk and a kernel can produce, deterministically
//! from a seed (issue 18).
//!
//! What it models:
//! * **Unsynced data is not durable.** Every file keeps its durable bytes
//!   (as of its last successful `sync_data`) beside what the process sees.
//!   A [`SimFs::crash`] keeps, for every 512-byte sector written since the
//!   last sync, the new or the old content at random (torn writes at sector
//!   boundaries, and several writes completing out of order), and the new
//!   or the old length.
//! * **Unsynced directory entries are not durable**, separately from data:
//!   each directory logs its creates, renames and removals since its last
//!   `sync_dir`; a crash keeps a random prefix of that log (a journal keeps
//!   namespace operations in order). A rename within a directory is one
//!   operation: old name or new, never neither.
//! * **ENOSPC at a byte budget** ([`SimFs::set_budget`]): a write or
//!   allocation that would take the space in use past it fails with
//!   `StorageFull` and writes nothing; raising the budget heals it. A
//!   removed file frees its space at once (a real disk frees it at the last
//!   close, which the log does on a thread of its own: counting on that
//!   made runs depend on thread timing).
//! * **EIO on fsync** ([`SimFs::set_fsync_fail_ppm`]): the sync fails and
//!   the file's unsynced pages are gone (it reads as its durable content),
//!   as Linux does after writeback errors.
//! * **A crash at any step** ([`SimFs::crash_after`]): the n-th operation
//!   from now panics with [`SimCrash`] before it acts, and so does every
//!   later one, until the test calls [`SimFs::crash`] and opens the store
//!   again. [`Fs::fail_stop`] crashes the same way.
//!
//! A new directory's entry, like a file's, is durable once its parent is
//! synced; a crash that loses it loses the directory and all in it.
//!
//! Directories have numbers like files, so a renamed or removed directory
//! whose change a crash loses is found where it was, as its own log says;
//! `remove_dir_all` unlinks entry by entry, each logged in its directory.
//! Hard links share the file's data.
//!
//! Simplifications: latency is not modelled (a test
//! that wants interleavings gets them from the crash point and the random
//! sector choice). Operations on a removed file that is still open (the
//! log's background closer) neither count toward nor trigger a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::seam::{DirEntry, Fs, FsFile, FsLock, Meta, OpenMode};

/// Sector size for torn writes.
pub const SECTOR: u64 = 512;

/// The panic payload of a simulated crash (and of a fail-stop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimCrash;

/// Whether a caught panic is a simulated crash.
pub fn is_sim_crash(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.downcast_ref::<SimCrash>().is_some()
}

/// Keeps simulated crashes out of stderr (other panics still print).
pub fn quiet_crash_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_sim_crash(info.payload()) {
            previous(info);
        }
    }));
}

/// One entry of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(u64),
    /// A directory, by its number in [`State::dirs`] (the root is 0).
    Dir(u64),
}

/// A namespace operation not yet made durable by `sync_dir`.
#[derive(Clone, Debug)]
enum NsOp {
    Link(String, Node),
    Unlink(String),
    Rename(String, String),
}

#[derive(Debug, Default)]
struct Dir {
    entries: BTreeMap<String, Node>,
    durable: BTreeMap<String, Node>,
    log: Vec<NsOp>,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<u64>,
    len_dirty: bool,
    allocated: u64,
    links: u32,
}

impl Inode {
    fn used(&self) -> u64 {
        if self.links == 0 {
            return 0; // Removed: free at once (module docs).
        }
        (self.data.len() as u64).max(self.allocated)
    }

    fn mark(&mut self, from: u64, to: u64) {
        for s in from / SECTOR..to.div_ceil(SECTOR) {
            self.dirty.insert(s);
        }
    }

    fn sync(&mut self) {
        // All of it: a shrink then a regrowth marks no sector dirty, and the
        // regrown part must read as zeros, not as the old bytes.
        self.durable = self.data.clone();
        self.dirty.clear();
        self.len_dirty = false;
    }
}

#[derive(Debug)]
struct State {
    rng: u64,
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    /// Directories by number, including removed ones a crash may bring
    /// back (their parent's removal not yet durable); the root is 0.
    dirs: BTreeMap<u64, Dir>,
    next_dir: u64,
    budget: u64,
    fsync_fail_ppm: u32,
    /// The sync that fails, counted down (`fail_sync_after`).
    sync_countdown: Option<u64>,
    countdown: Option<u64>,
    crashed: bool,
    locks: BTreeSet<PathBuf>,
    ops: u64,
    crashes: u64,
    fsync_failures: u64,
    faults: SimFaults,
}

/// What the faults of a [`SimFs`] did so far ([`SimFs::faults`]), for a
/// simulation's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// Writes or allocations refused for lack of space.
    pub enospc: u64,
    /// Syncs that failed (EIO).
    pub eio: u64,
    /// Crashes that lost written data or directory entries not yet synced.
    pub lost_unsynced: u64,
    /// Crashes that left some file torn: of its sectors written since the
    /// last sync, some new and some old.
    pub torn: u64,
}

impl State {
    fn rand(&mut self) -> u64 {
        splitmix(&mut self.rng)
    }

    /// Counts an operation; crashes when the countdown runs out.
    fn step(&mut self) {
        if self.crashed {
            std::panic::panic_any(SimCrash);
        }
        self.ops += 1;
        if let Some(n) = self.countdown.as_mut() {
            if *n <= 1 {
                self.crashed = true;
                self.countdown = None;
                std::panic::panic_any(SimCrash);
            }
            *n -= 1;
        }
    }

    fn used(&self) -> u64 {
        self.inodes.values().map(Inode::used).sum()
    }

    /// The number of directory `path` (absolute, no `.` or `..`).
    fn dir_id(&self, path: &Path) -> io::Result<u64> {
        match self.lookup(path)? {
            Node::Dir(id) => Ok(id),
            Node::File(_) => Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{}: a file", path.display()))),
        }
    }

    fn dir(&self, path: &Path) -> io::Result<&Dir> {
        let id = self.dir_id(path)?;
        Ok(&self.dirs[&id])
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        let id = self.dir_id(path)?;
        Ok(self.dirs.get_mut(&id).expect("a directory reached by its path is in the table"))
    }

    /// What `path` names, walking from the root.
    fn lookup(&self, path: &Path) -> io::Result<Node> {
        let mut node = Node::Dir(0);
        for c in path.components() {
            match c {
                std::path::Component::RootDir => {}
                std::path::Component::Normal(name) => {
                    let Node::Dir(id) = node else { return Err(not_found(path)) };
                    let name = name.to_string_lossy();
                    node = self.dirs[&id].entries.get(name.as_ref()).copied().ok_or_else(|| not_found(path))?;
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{}: simulated paths are absolute, without . or ..", path.display()),
                    ))
                }
            }
        }
        Ok(node)
    }

    /// Removes `node` from the directory `parent` (logged there), and
    /// everything under it when it is a directory, entry by entry as
    /// `rm -r` does.
    fn unlink_tree(&mut self, parent: u64, name: &str, node: Node) {
        if let Node::Dir(id) = node {
            let children: Vec<(String, Node)> = self.dirs[&id].entries.iter().map(|(n, c)| (n.clone(), *c)).collect();
            for (n, c) in children {
                self.unlink_tree(id, &n, c);
            }
        } else {
            self.unlink_inode(node);
        }
        let d = self.dirs.get_mut(&parent).expect("the parent of a removed entry is in the table");
        d.entries.remove(name);
        d.log.push(NsOp::Unlink(name.to_string()));
    }

    /// Whether this sync fails: the one [`SimFs::fail_sync_after`] aimed
    /// at, or by chance ([`SimFs::set_fsync_fail_ppm`]).
    fn sync_fails(&mut self) -> bool {
        if let Some(n) = self.sync_countdown {
            if n <= 1 {
                self.sync_countdown = None;
                return true;
            }
            self.sync_countdown = Some(n - 1);
        }
        self.fsync_fail_ppm > 0 && self.rand() % 1_000_000 < u64::from(self.fsync_fail_ppm)
    }

    fn grow(&mut self, ino: u64, new_used: u64) -> io::Result<()> {
        let old = self.inodes.get(&ino).map_or(0, Inode::used);
        if new_used > old && self.used() + (new_used - old) > self.budget {
            self.faults.enospc += 1;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated disk full"));
        }
        Ok(())
    }

    fn unlink_inode(&mut self, node: Node) {
        if let Node::File(ino) = node {
            if let Some(i) = self.inodes.get_mut(&ino) {
                i.links = i.links.saturating_sub(1);
            }
        }
    }

    fn file(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "simulated file gone"))
    }
}

/// The next value of the splitmix64 generator whose state is `state`.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", path.display()))
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p.to_path_buf(), n.to_string_lossy().into_owned())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file path", path.display()))),
    }
}

/// The simulated file system. Clones share it.
#[derive(Clone, Debug)]
pub struct SimFs {
    st: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty file system (only `/`), its faults off, random choices
    /// from `seed`.
    pub fn new(seed: u64) -> SimFs {
        let mut dirs = BTreeMap::new();
        dirs.insert(0, Dir::default());
        SimFs {
            st: Arc::new(Mutex::new(State {
                rng: seed ^ 0x5157_F5F5_0000_0001,
                inodes: BTreeMap::new(),
                next_ino: 1,
                dirs,
                next_dir: 1,
                budget: u64::MAX,
                fsync_fail_ppm: 0,
                sync_countdown: None,
                countdown: None,
                crashed: false,
                locks: BTreeSet::new(),
                ops: 0,
                crashes: 0,
                fsync_failures: 0,
                faults: SimFaults::default(),
            })),
        }
    }

    /// Shared as the seam's trait object.
    pub fn arc(&self) -> Arc<dyn Fs> {
        Arc::new(self.clone())
    }

    /// The most bytes files may take (size or allocation, whichever is
    /// larger); `u64::MAX` for no limit.
    pub fn set_budget(&self, bytes: u64) {
        self.st.lock().budget = bytes;
    }

    /// Bytes files take now.
    pub fn used(&self) -> u64 {
        self.st.lock().used()
    }

    /// Fails each `sync_data`/`sync_all`/`sync_dir` with this chance in a
    /// million.
    pub fn set_fsync_fail_ppm(&self, ppm: u32) {
        self.st.lock().fsync_fail_ppm = ppm;
    }

    /// The `n`-th sync (`sync_data`, `sync_all` or `sync_dir`) from now
    /// (1 = the next) fails, once; `None` takes it back.
    pub fn fail_sync_after(&self, n: Option<u64>) {
        self.st.lock().sync_countdown = n.map(|n| n.max(1));
    }

    /// The `n`-th operation from now (1 = the next) crashes.
    pub fn crash_after(&self, n: u64) {
        self.st.lock().countdown = Some(n.max(1));
    }

    /// Takes back a crash point that has not been reached.
    pub fn no_crash_point(&self) {
        self.st.lock().countdown = None;
    }

    /// Whether a crash has happened and [`SimFs::crash`] not yet been
    /// called.
    pub fn crashed(&self) -> bool {
        self.st.lock().crashed
    }

    /// (operations, crashes, failed syncs) so far.
    pub fn counters(&self) -> (u64, u64, u64) {
        let st = self.st.lock();
        (st.ops, st.crashes, st.fsync_failures)
    }

    /// What the faults did so far.
    pub fn faults(&self) -> SimFaults {
        let st = self.st.lock();
        SimFaults { eio: st.fsync_failures, ..st.faults }
    }

    /// The power fails: what was not synced is lost as the module docs
    /// say, locks are released, and the file system works again.
    pub fn crash(&self) {
        let mut guard = self.st.lock();
        let st = &mut *guard;
        st.crashes += 1;
        st.crashed = false;
        let (mut lost, mut torn) = (false, false);
        st.countdown = None;
        st.locks.clear();
        // Directory entries: a random prefix of each directory's log.
        let ids: Vec<u64> = st.dirs.keys().copied().collect();
        for id in ids {
            let n = st.dirs[&id].log.len() as u64;
            let keep = if n == 0 { 0 } else { (st.rand() % (n + 1)) as usize };
            lost |= (keep as u64) < n;
            let dir = st.dirs.get_mut(&id).expect("a directory of the key list taken above");
            let mut entries = std::mem::take(&mut dir.durable);
            for op in dir.log.drain(..).take(keep) {
                match op {
                    NsOp::Link(n, node) => {
                        entries.insert(n, node);
                    }
                    NsOp::Unlink(n) => {
                        entries.remove(&n);
                    }
                    NsOp::Rename(from, to) => {
                        if let Some(node) = entries.remove(&from) {
                            entries.insert(to, node);
                        }
                    }
                }
            }
            dir.durable = entries.clone();
            dir.entries = entries;
        }
        // Only directories reachable from the root survive: one whose
        // entry was lost goes with everything in it, and one whose removal
        // was lost comes back as its own log says.
        let mut reachable = BTreeSet::from([0u64]);
        let mut todo = vec![0u64];
        while let Some(id) = todo.pop() {
            for node in st.dirs[&id].entries.values() {
                if let Node::Dir(child) = node {
                    if reachable.insert(*child) {
                        todo.push(*child);
                    }
                }
            }
        }
        st.dirs.retain(|id, _| reachable.contains(id));
        // Files: only those still named survive; each dirty sector and the
        // length are the new or the old, at random.
        let mut links: BTreeMap<u64, u32> = BTreeMap::new();
        for node in st.dirs.values().flat_map(|d| d.entries.values()) {
            if let Node::File(ino) = node {
                *links.entry(*ino).or_default() += 1;
            }
        }
        let State { inodes, rng, .. } = st;
        inodes.retain(|ino, _| links.contains_key(ino));
        for (ino, i) in inodes.iter_mut() {
            let keep_sector: Vec<bool> = i.dirty.iter().map(|_| splitmix(rng) & 1 == 1).collect();
            let keep_len = splitmix(rng) & 1 == 1;
            let kept = keep_sector.iter().filter(|k| **k).count();
            lost |= kept < keep_sector.len() || (i.len_dirty && !keep_len);
            torn |= kept > 0 && kept < keep_sector.len();
            let new_len = if i.len_dirty && keep_len { i.data.len() } else { i.durable.len() };
            let mut out = std::mem::take(&mut i.durable);
            out.resize(new_len, 0);
            for (&s, _) in i.dirty.iter().zip(&keep_sector).filter(|(_, keep)| **keep) {
                let (a, b) = ((s * SECTOR) as usize, (((s + 1) * SECTOR) as usize).min(new_len));
                if a < b {
                    // The new content; zeros where the new length ends first.
                    let n = b.min(i.data.len()).max(a);
                    if n > a {
                        out[a..n].copy_from_slice(&i.data[a..n]);
                    }
                    out[n..b].fill(0);
                }
            }
            i.data = out.clone();
            i.durable = out;
            i.dirty.clear();
            i.len_dirty = false;
            i.allocated = i.data.len() as u64;
            i.links = links[ino];
        }
        st.faults.lost_unsynced += u64::from(lost);
        st.faults.torn += u64::from(torn);
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.st.lock();
        st.step();
        f(&mut st)
    }

    fn new_file(st: &mut State, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        st.dir_id(&parent)?;
        let ino = st.next_ino;
        st.next_ino += 1;
        st.inodes.insert(ino, Inode { links: 1, ..Inode::default() });
        let d = st.dir_mut(&parent)?;
        d.entries.insert(name.clone(), Node::File(ino));
        d.log.push(NsOp::Link(name, Node::File(ino)));
        Ok(ino)
    }
}

/// An open file of [`SimFs`]. A handle from before a crash (`life`) is
/// dead: the process that held it is gone.
#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: u64,
    writable: bool,
    life: u64,
}

/// A held lock of [`SimFs`] (of one life, like a file).
#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
    life: u64,
}

impl FsLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.fs.st.lock();
        if st.crashes == self.life {
            st.locks.remove(&self.path);
        }
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>> {
        let (ino, life) = self.with(|st| {
            let found = match st.lookup(path) {
                Ok(Node::Dir(_)) => return Err(io::Error::new(io::ErrorKind::IsADirectory, "a directory")),
                Ok(Node::File(i)) => Some(i),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            let ino = match (mode, found) {
                (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(not_found(path)),
                (OpenMode::CreateNew, Some(_)) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists")),
                (OpenMode::CreateTruncate, Some(i)) => {
                    let f = st.file(i)?;
                    f.data.clear();
                    f.allocated = 0;
                    f.len_dirty = true;
                    i
                }
                (_, Some(i)) => i,
                (_, None) => SimFs::new_file(st, path)?,
            };
            Ok((ino, st.crashes))
        })?;
        Ok(Box::new(SimFile { fs: self.clone(), ino, writable: mode != OpenMode::Read, life }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.with(|st| {
            let mut todo = Vec::new();
            let mut p = Some(path);
            while let Some(q) = p {
                match st.lookup(q) {
                    Ok(Node::Dir(_)) => break,
                    Ok(Node::File(_)) => {
                        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a file is in the way"))
                    }
                    Err(_) => todo.push(q.to_path_buf()),
                }
                p = q.parent();
            }
            for q in todo.into_iter().rev() {
                let (parent, name) = split(&q)?;
                let id = st.next_dir;
                st.next_dir += 1;
                st.dirs.insert(id, Dir::default());
                // Like a file's, a new directory's entry is durable once its
                // parent is synced.
                let d = st.dir_mut(&parent)?;
                d.entries.insert(name.clone(), Node::Dir(id));
                d.log.push(NsOp::Link(name, Node::Dir(id)));
            }
            Ok(())
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        self.with(|st| {
            Ok(st
                .dir(dir)?
                .entries
                .iter()
                .map(|(n, node)| DirEntry { name: n.clone(), is_dir: matches!(node, Node::Dir(_)) })
                .collect())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|st| {
            let (fp, fname) = split(from)?;
            let (tp, tname) = split(to)?;
            let node = st.dir(&fp)?.entries.get(&fname).copied().ok_or_else(|| not_found(from))?;
            match (node, st.dir(&tp)?.entries.get(&tname).copied()) {
                (_, Some(old)) if old == node => return Ok(()),
                (Node::File(_), Some(Node::Dir(_))) => {
                    return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{}: a directory", to.display())))
                }
                (Node::Dir(_), Some(Node::File(_))) => {
                    return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{}: a file", to.display())))
                }
                (Node::Dir(_), Some(Node::Dir(old))) if !st.dirs[&old].entries.is_empty() => {
                    return Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, format!("{}", to.display())))
                }
                (Node::File(_), Some(old)) => st.unlink_inode(old),
                _ => {}
            }
            if matches!(node, Node::Dir(_)) && to.starts_with(from) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "a directory moved into itself"));
            }
            if matches!(node, Node::Dir(_)) && fp != tp {
                // Two logged changes a crash could split, leaving one
                // directory under two parents: not modelled (nothing here
                // moves a directory to another parent).
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "simulated rename of a directory across parents",
                ));
            }
            if fp == tp {
                let d = st.dir_mut(&fp)?;
                d.entries.remove(&fname);
                d.entries.insert(tname.clone(), node);
                d.log.push(NsOp::Rename(fname, tname));
            } else {
                let d = st.dir_mut(&tp)?;
                d.entries.insert(tname.clone(), node);
                d.log.push(NsOp::Link(tname, node));
                let d = st.dir_mut(&fp)?;
                d.entries.remove(&fname);
                d.log.push(NsOp::Unlink(fname));
            }
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.with(|st| {
            let (parent, name) = split(path)?;
            let node = st.dir(&parent)?.entries.get(&name).copied().ok_or_else(|| not_found(path))?;
            if matches!(node, Node::Dir(_)) {
                return Err(io::Error::new(io::ErrorKind::IsADirectory, "a directory"));
            }
            st.unlink_inode(node);
            let d = st.dir_mut(&parent)?;
            d.entries.remove(&name);
            d.log.push(NsOp::Unlink(name));
            Ok(())
        })
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.with(|st| {
            let id = st.dir_id(path)?;
            let (parent, name) = split(path)?;
            let parent = st.dir_id(&parent)?;
            st.unlink_tree(parent, &name, Node::Dir(id));
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let failed = self.with(|st| {
            st.dir(dir)?;
            if st.sync_fails() {
                st.fsync_failures += 1;
                return Ok(true);
            }
            let d = st.dir_mut(dir)?;
            d.durable = d.entries.clone();
            d.log.clear();
            Ok(false)
        })?;
        if failed {
            self.fail_stop(dir, &io::Error::other("simulated EIO on fsync of a directory"));
        }
        Ok(())
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        self.with(|st| match st.lookup(path)? {
            Node::Dir(_) => Ok(Meta { len: 0, is_dir: true, mode: 0o700 }),
            Node::File(i) => Ok(Meta { len: st.file(i)?.data.len() as u64, is_dir: false, mode: 0o600 }),
        })
    }

    fn free_space(&self, _path: &Path) -> io::Result<u64> {
        self.with(|st| Ok(st.budget.saturating_sub(st.used())))
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FsLock>> {
        let life = self.with(|st| {
            if st.lookup(path).is_err() {
                SimFs::new_file(st, path)?;
            }
            if !st.locks.insert(path.to_path_buf()) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(st.crashes)
        })?;
        Ok(Box::new(SimLock { fs: self.clone(), path: path.to_path_buf(), life }))
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|st| {
            let Node::File(ino) = st.lookup(from)? else {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, "a hard link to a directory"));
            };
            let (tp, tname) = split(to)?;
            let d = st.dir_mut(&tp)?;
            if d.entries.contains_key(&tname) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}: exists", to.display())));
            }
            d.entries.insert(tname.clone(), Node::File(ino));
            d.log.push(NsOp::Link(tname, Node::File(ino)));
            st.file(ino)?.links += 1;
            Ok(())
        })
    }

    fn fail_stop(&self, path: &Path, err: &io::Error) -> ! {
        log::warn!("simulated fail-stop after a failed sync of {}: {err}", path.display());
        self.st.lock().crashed = true;
        std::panic::panic_any(SimCrash)
    }
}

impl SimFile {
    /// Runs `f` on the inode. A handle of an earlier life fails (its
    /// process is gone) and counts for nothing; a removed file (the
    /// background closer) does not count toward a crash either.
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.fs.st.lock();
        if st.crashes != self.life {
            return Err(io::Error::other("simulated stale handle from before a crash (EBADF)"));
        }
        let linked = st.inodes.get(&self.ino).is_some_and(|i| i.links > 0);
        if linked {
            st.step();
        }
        f(&mut st, self.ino)
    }

    /// Changes the file: checks it was opened for writing, grows the space
    /// in use to `used(inode)` (or fails with `StorageFull`, changing
    /// nothing), then applies `change`. Changes to a removed file go
    /// nowhere (a crash that loses the removal must not find them; a
    /// journal keeps them after it).
    fn change(&self, used: impl FnOnce(&Inode) -> u64, change: impl FnOnce(&mut Inode)) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only"));
        }
        self.with(|st, ino| {
            let f = st.file(ino)?;
            if f.links == 0 {
                return Ok(());
            }
            let want = used(f);
            st.grow(ino, want)?;
            change(st.file(ino)?);
            Ok(())
        })
    }
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|st, ino| {
            let data = &st.file(ino)?.data;
            let start = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        self.change(
            |f| f.used().max(end),
            |f| {
                if f.data.len() < end as usize {
                    f.data.resize(end as usize, 0);
                    f.len_dirty = true;
                }
                f.data[offset as usize..end as usize].copy_from_slice(buf);
                f.mark(offset, end);
            },
        )
    }

    fn write_all_vectored_at(&self, bufs: &mut [IoSlice<'_>], offset: u64) -> io::Result<()> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.write_all_at(&all, offset)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.change(
            |f| f.used().max(len),
            |f| {
                f.allocated = f.allocated.max(len);
                if (f.data.len() as u64) < len {
                    f.data.resize(len as usize, 0);
                    f.len_dirty = true;
                }
            },
        )
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.change(
            |f| f.used().max(len),
            |f| {
                let old = f.data.len() as u64;
                f.data.resize(len as usize, 0);
                f.allocated = f.allocated.min(len);
                if len != old {
                    f.len_dirty = true;
                    if len > old {
                        f.mark(old, len);
                    }
                }
            },
        )
    }

    fn size(&self) -> io::Result<u64> {
        self.with(|st, ino| Ok(st.file(ino)?.data.len() as u64))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|st, ino| {
            if st.sync_fails() {
                st.fsync_failures += 1;
                // The unsynced pages are gone: the file reads as it was.
                let f = st.file(ino)?;
                f.data = f.durable.clone();
                f.dirty.clear();
                f.len_dirty = false;
                return Err(io::Error::other("simulated EIO on fdatasync"));
            }
            st.file(ino)?.sync();
            Ok(())
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
