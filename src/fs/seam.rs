//! The seam's contract: the [`Fs`] and [`FsFile`] traits every file
//! access on the storage paths goes through, and the plain types they
//! pass ([`OpenMode`], [`DirEntry`], [`Meta`], [`FsLock`]). Both
//! implementations ([`RealFs`](super::RealFs) and
//! [`SimFs`](super::SimFs)) and every caller import from here.

use std::fmt::Debug;
use std::io::{self, IoSlice};
use std::path::Path;

/// How [`Fs::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading only.
    Read,
    /// An existing file, for reading and writing.
    ReadWrite,
    /// A new file (fails with `AlreadyExists` if there is one), read-write.
    CreateNew,
    /// A new or emptied file, read-write.
    CreateTruncate,
    /// An existing file as it is, or a new empty one, read-write.
    CreateOrOpen,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (lossily UTF-8: ours are ASCII).
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// What [`Fs::metadata`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Bytes in the file.
    pub len: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Permission bits (`st_mode & 0o7777`). [`SimFs`](super::SimFs) has no permissions:
    /// it reports 0o600 for a file and 0o700 for a directory.
    pub mode: u32,
}

/// A file system: paths, directories, and the files in them.
pub trait Fs: Send + Sync + Debug {
    /// Opens `path` as `mode` says.
    ///
    /// # Errors
    /// The operating system's error (`NotFound`, `AlreadyExists`, ...).
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>>;

    /// The whole content of `path`.
    ///
    /// # Errors
    /// As `open` and `read_at`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path, OpenMode::Read)?;
        let mut buf = vec![0u8; f.size()? as usize];
        let n = read_full_at(&*f, &mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// At most `max` bytes from the start of `path`, read in order (a pipe
    /// works too on the real file system).
    ///
    /// # Errors
    /// As `open` and `read_at`.
    fn read_max(&self, path: &Path, max: u64) -> io::Result<Vec<u8>> {
        let f = self.open(path, OpenMode::Read)?;
        let mut buf = vec![0u8; f.size()?.min(max) as usize];
        let n = read_full_at(&*f, &mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Creates `path` and its missing parents.
    ///
    /// # Errors
    /// The operating system's error.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The entries of directory `dir` (no `.` or `..`), in no order.
    ///
    /// # Errors
    /// `NotFound`, or the operating system's error.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;

    /// Renames `from` to `to`, replacing `to` (durable after `sync_dir`).
    ///
    /// # Errors
    /// The operating system's error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file `path` (durable after `sync_dir`).
    ///
    /// # Errors
    /// The operating system's error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes the directory `path` and everything in it.
    ///
    /// # Errors
    /// The operating system's error.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Gives the file `from` a second name `to` (both share its data; the
    /// new entry is durable after `sync_dir` of its directory).
    ///
    /// # Errors
    /// `AlreadyExists` when `to` exists; the operating system's error.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the entries of directory `dir` durable (`fsync` of the
    /// directory). A failed sync fails stop ([`Fs::fail_stop`]): entries
    /// it covered may be lost.
    ///
    /// # Errors
    /// The directory cannot be opened (nothing was synced or lost).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Length and kind of `path`.
    ///
    /// # Errors
    /// `NotFound`, or the operating system's error.
    fn metadata(&self, path: &Path) -> io::Result<Meta>;

    /// Bytes free for an unprivileged writer on the file system holding
    /// `path`.
    ///
    /// # Errors
    /// The operating system's error.
    fn free_space(&self, path: &Path) -> io::Result<u64>;

    /// Takes an exclusive lock on the existing or new file `path`, held
    /// until the returned guard is dropped.
    ///
    /// # Errors
    /// `WouldBlock` when another holder has it; the operating system's
    /// error otherwise.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FsLock>>;

    /// Stops after a failed sync of `path`: the real file system exits the
    /// process ([`fail_stop`](super::fail_stop)); a simulated one crashes the
    /// simulated node.
    fn fail_stop(&self, path: &Path, err: &io::Error) -> !;
}

/// An open file.
pub trait FsFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; 0 at the end.
    ///
    /// # Errors
    /// The operating system's error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`.
    ///
    /// # Errors
    /// The operating system's error (`StorageFull`, ...); part of `buf`
    /// may have been written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Writes all of `bufs`, in order, at `offset` (one `pwritev` where
    /// the file system has it).
    ///
    /// # Errors
    /// As `write_all_at`.
    fn write_all_vectored_at(&self, bufs: &mut [IoSlice<'_>], offset: u64) -> io::Result<()>;

    /// Reserves space up to `len` bytes (`fallocate`), growing the file.
    ///
    /// # Errors
    /// `StorageFull`; `Unsupported` where the file system cannot reserve.
    fn allocate(&self, len: u64) -> io::Result<()>;

    /// Truncates or extends the file to `len` bytes.
    ///
    /// # Errors
    /// The operating system's error.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The file's length in bytes.
    ///
    /// # Errors
    /// The operating system's error.
    fn size(&self) -> io::Result<u64>;

    /// Makes the file's data durable (`fdatasync`).
    ///
    /// # Errors
    /// The operating system's error: the caller fails stop.
    fn sync_data(&self) -> io::Result<()>;

    /// Makes the file's data and metadata durable (`fsync`).
    ///
    /// # Errors
    /// As `sync_data`.
    fn sync_all(&self) -> io::Result<()>;

    /// Starts writing bytes `[offset, offset + len)` out to the disk and
    /// waits until `[wait_from, offset)` is out (`sync_file_range`): a hint
    /// that bounds the dirty pages a long write leaves. Durability still
    /// comes only from `sync_data`. Does nothing by default.
    fn start_writeback(&self, offset: u64, len: u64, wait_from: u64) {
        let _ = (offset, len, wait_from);
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// `UnexpectedEof` past the end; the operating system's error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if read_full_at(self, buf, offset)? < buf.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// A held lock (released on drop).
pub trait FsLock: Send + Sync + Debug {}

/// Reads into `buf` at `offset` until it is full or the file ends; the
/// number of bytes read.
///
/// # Errors
/// The operating system's error (an interrupted read is retried).
pub fn read_full_at<F: FsFile + ?Sized>(file: &F, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
