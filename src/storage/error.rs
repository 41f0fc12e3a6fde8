//! Typed storage errors, and the fail-stop path for a failed fsync.
//!
//! Operating conditions (disk full, permission, I/O error, a file that is not
//! ours, corruption) come back as [`StorageError`] with the path and, for
//! corruption, the byte offset, so an operator can act. A failed `fdatasync`
//! is different: the kernel may already have dropped the dirty pages it
//! covered, so retrying would report durability that does not exist. The
//! process says so and exits ([`fail_stop`](crate::fs::fail_stop)); recovery on restart re-reads
//! what is really on disk.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::fs::{Fs, FsFile, OpenMode, RealFs};

/// What went wrong with the log engine or a state file.
#[derive(Debug)]
pub enum StorageError {
    /// The filesystem is full. Nothing of the failed batch was acknowledged;
    /// appending works again once space is freed.
    NoSpace {
        /// The file being written or created.
        path: PathBuf,
    },
    /// Any other I/O failure (permission, EIO, ...).
    Io {
        /// What was being done ("write", "create segment", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file in the data directory is not one of ours (bad magic).
    NotOurs {
        /// The file.
        path: PathBuf,
    },
    /// A file of ours uses a format version this build cannot read.
    VersionUnsupported {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A record failed its checksum or is malformed, before the log's tail.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad record in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The caller asked for something the log cannot do (a gap in a group's
    /// indices, a record too large, ...). Nothing was written.
    InvalidRequest(String),
}

/// Whether an I/O error means the disk (or the user's quota) is full: the
/// one test every layer uses to tell "wait for space" from a failure.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

impl StorageError {
    /// Wraps an I/O error, recognising a full disk ([`is_no_space`]).
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> StorageError {
        if is_no_space(&source) {
            StorageError::NoSpace { path: path.to_path_buf() }
        } else {
            StorageError::Io { op, path: path.to_path_buf(), source }
        }
    }

    /// Whether the error is a full disk (retry after freeing space).
    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::NoSpace { .. })
    }
}

/// A storage error as an I/O error for callers that speak `io::Result`; a
/// full disk stays one ([`io::ErrorKind::StorageFull`]), so that they wait
/// for space instead of failing.
impl From<StorageError> for io::Error {
    fn from(e: StorageError) -> io::Error {
        if e.is_no_space() {
            io::Error::new(io::ErrorKind::StorageFull, e.to_string())
        } else {
            io::Error::other(e)
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NoSpace { path } => {
                write!(f, "no space left on device writing {}; free space to resume appends", path.display())
            }
            StorageError::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            StorageError::NotOurs { path } => {
                write!(f, "{} is not a ringraft file (bad magic); move it out of the data directory", path.display())
            }
            StorageError::VersionUnsupported { path, found } => {
                write!(f, "{} has format version {found}, which this build cannot read", path.display())
            }
            StorageError::Corrupt { path, offset, reason } => {
                write!(f, "corrupt record in {} at byte offset {offset}: {reason}", path.display())
            }
            StorageError::InvalidRequest(why) => write!(f, "invalid log request: {why}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `fdatasync` of a file of `fs` that fails stop ([`Fs::fail_stop`]).
pub fn sync_file_or_die(fs: &dyn Fs, file: &dyn FsFile, path: &Path) {
    if let Err(e) = file.sync_data() {
        fs.fail_stop(path, &e);
    }
}

/// [`sync_dir`] on `fs`.
///
/// # Errors
/// The directory cannot be opened; a failed fsync fails stop.
pub fn sync_dir_on(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    // A failed sync fails stop inside `Fs::sync_dir`; an error here is the
    // directory not opening (nothing synced or lost).
    fs.sync_dir(dir).map_err(|e| StorageError::io("open directory", dir, e))
}

/// Creates `dir` and its missing parents on `fs` and makes them durable:
/// a directory's entry in its parent, like a file's, survives a power loss
/// only once the parent is synced. Syncs the parent of every level it
/// created, and `dir`'s parent in any case (it may have been made by
/// someone who did not sync it).
///
/// # Errors
/// `NoSpace` or `Io` creating or opening a directory; a failed fsync fails
/// stop.
pub fn create_dir_all_durably(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    let mut existing = dir;
    while fs.metadata(existing).is_err() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => break,
        }
    }
    fs.create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
    let mut level = dir;
    while let Some(parent) = level.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir_on(fs, parent)?;
        if level == existing || parent == existing {
            break;
        }
        level = parent;
    }
    Ok(())
}

/// [`replace_file`] on `fs`.
///
/// # Errors
/// `NoSpace` or `Io` (the old file stays); a failed fsync fails stop.
pub fn replace_file_on(fs: &dyn Fs, path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let f = fs.open(tmp, OpenMode::CreateTruncate).map_err(|e| StorageError::io("create", tmp, e))?;
    f.write_all_at(bytes, 0).map_err(|e| StorageError::io("write", tmp, e))?;
    sync_file_or_die(fs, &*f, tmp);
    fs.rename(tmp, path).map_err(|e| StorageError::io("rename", path, e))?;
    sync_dir_on(fs, path.parent().unwrap_or(Path::new(".")))
}

/// Replaces `path` with `bytes` atomically and durably: writes `tmp`,
/// fdatasyncs it, renames it over `path`, fsyncs the directory. A reader
/// sees the old content or the new, never a mix.
///
/// # Errors
/// `NoSpace` or `Io` (the old file stays); a failed fsync fails stop.
pub fn replace_file(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    replace_file_on(&RealFs, path, tmp, bytes)
}

/// Makes a directory entry (a created, renamed or removed file) durable.
///
/// # Errors
/// The directory cannot be opened; a failed fsync fails stop.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    sync_dir_on(&RealFs, dir)
}
