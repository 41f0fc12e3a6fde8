//! [`RealFs`]: the seam's implementation on the operating system. The one
//! place on the storage paths that calls `std::fs`, `OpenOptions` and the
//! `libc` file calls (`pwritev`, `fallocate`, `statvfs`).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::seam::{DirEntry, Fs, FsFile, FsLock, Meta, OpenMode};

/// Exit status of a process stopped by a failed fsync.
pub const FAIL_STOP_EXIT_CODE: i32 = 86;

/// Stops the process after a failed `fdatasync` of `path`.
///
/// The data the call covered may be gone from the page cache while the
/// kernel reports the next fsync as successful; going on would acknowledge
/// writes that are not durable. Restarting re-reads what is on disk.
pub fn fail_stop(path: &Path, err: &io::Error) -> ! {
    let msg = format!(
        "FATAL: fdatasync of {} failed: {err}. Data written since the last successful sync may be lost; \
         the process stops rather than acknowledge it. Restart to recover from what is on disk.",
        path.display()
    );
    log::error!("{msg}");
    eprintln!("{msg}");
    std::process::exit(FAIL_STOP_EXIT_CODE);
}

/// Most iovecs one `pwritev` call takes (Linux's `IOV_MAX`).
const IOVECS_MAX: usize = 1024;

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

/// An open file of [`RealFs`].
#[derive(Debug)]
pub struct RealFile(File);

/// A held `flock` of [`RealFs`].
#[derive(Debug)]
struct RealLock(#[allow(dead_code)] File);

impl FsLock for RealLock {}

impl Fs for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true),
            OpenMode::CreateOrOpen => o.read(true).write(true).create(true).truncate(false),
        };
        Ok(Box::new(RealFile(o.open(path)?)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_max(&self, path: &Path, max: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut data = Vec::new();
        File::open(path)?.take(max).read_to_end(&mut data)?;
        Ok(data)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let item = item?;
            let is_dir = item.file_type()?.is_dir();
            out.push(DirEntry { name: item.file_name().to_string_lossy().into_owned(), is_dir });
        }
        Ok(out)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = File::open(dir)?;
        if let Err(e) = d.sync_all() {
            self.fail_stop(dir, &e);
        }
        Ok(())
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        let m = std::fs::metadata(path)?;
        Ok(Meta { len: m.len(), is_dir: m.is_dir(), mode: m.permissions().mode() & 0o7777 })
    }

    #[allow(unsafe_code)]
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: `c` is a valid NUL-terminated path and `st` a properly
        // sized out-parameter that statvfs fills.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FsLock>> {
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(RealLock(f))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn fail_stop(&self, path: &Path, err: &io::Error) -> ! {
        fail_stop(path, err)
    }
}

impl FsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    #[allow(unsafe_code)]
    fn write_all_vectored_at(&self, mut slices: &mut [IoSlice<'_>], mut offset: u64) -> io::Result<()> {
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            let n = slices.len().min(IOVECS_MAX);
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (a
            // documented guarantee of std); the slices borrow memory that
            // lives for the whole call; `n` does not exceed their number.
            let rc = unsafe {
                libc::pwritev(
                    self.0.as_raw_fd(),
                    slices.as_ptr().cast::<libc::iovec>(),
                    n as libc::c_int,
                    offset as libc::off_t,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            offset += rc as u64;
            IoSlice::advance_slices(&mut slices, rc as usize);
        }
        Ok(())
    }

    #[allow(unsafe_code)]
    fn allocate(&self, len: u64) -> io::Result<()> {
        // SAFETY: `fallocate` on a file descriptor we own, with no pointers.
        let rc = unsafe { libc::fallocate(self.0.as_raw_fd(), 0, 0, len as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, err));
        }
        Err(err)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    #[allow(unsafe_code)]
    fn start_writeback(&self, offset: u64, len: u64, wait_from: u64) {
        let fd = self.0.as_raw_fd();
        // SAFETY: sync_file_range on a descriptor we own, with no pointers;
        // a failure only costs smoothness (the caller's fdatasync decides).
        unsafe {
            libc::sync_file_range(fd, offset as libc::off64_t, len as libc::off64_t, libc::SYNC_FILE_RANGE_WRITE);
            if wait_from < offset {
                libc::sync_file_range(
                    fd,
                    wait_from as libc::off64_t,
                    (offset - wait_from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}
