//! Where a nemesis node keeps its data, for the disk faults: a plain
//! directory; a small tmpfs that a ballast file can fill (disk full); or a
//! loop-mounted ext4 image whose copy, taken while the node runs, is what a
//! power failure would have left on the disk (the page cache the node never
//! synced is not in it).
//!
//! Mounting needs root and the `mount`, `umount` and `mkfs.ext4` commands;
//! when they fail the node gets a plain directory and the caller reports
//! the fault kinds it cannot inject, with the reason.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use parking_lot::Mutex;

/// Every mount point a [`Disk`] holds, for [`detach_all`].
static MOUNTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Detaches every mount a [`Disk`] of this process made (`umount -l`), for
/// a process about to exit without unwinding (a second SIGINT).
pub fn detach_all() {
    for dir in MOUNTED.lock().drain(..) {
        let _ = run(Command::new("umount").arg("-l").arg(&dir));
    }
}

/// A node's data directory and what it is mounted on.
#[derive(Debug)]
pub struct Disk {
    /// The mount point (the node's `--data-dir`).
    pub dir: PathBuf,
    kind: DiskKind,
}

#[derive(Debug)]
enum DiskKind {
    Plain,
    Tmpfs,
    Image { image: PathBuf },
}

/// Runs a command and turns a failure into its stderr.
fn run(cmd: &mut Command) -> Result<(), String> {
    let what = format!("{cmd:?}");
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("{what}: {} {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

impl Disk {
    /// A plain directory (created).
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn plain(dir: &Path) -> io::Result<Disk> {
        std::fs::create_dir_all(dir)?;
        Ok(Disk { dir: dir.to_path_buf(), kind: DiskKind::Plain })
    }

    /// A tmpfs of `mib` MiB mounted on `dir`.
    ///
    /// # Errors
    /// Why it cannot be mounted (not root, no `mount`).
    pub fn tmpfs(dir: &Path, mib: u64) -> Result<Disk, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        run(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(dir))?;
        MOUNTED.lock().push(dir.to_path_buf());
        Ok(Disk { dir: dir.to_path_buf(), kind: DiskKind::Tmpfs })
    }

    /// A sparse ext4 image of `mib` MiB at `image`, loop-mounted on `dir`.
    ///
    /// # Errors
    /// Why it cannot be made or mounted (not root, no loop device, no
    /// `mkfs.ext4`).
    pub fn image(dir: &Path, image: &Path, mib: u64) -> Result<Disk, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let f = File::create(image).map_err(|e| format!("{}: {e}", image.display()))?;
        f.set_len(mib << 20).map_err(|e| format!("{}: {e}", image.display()))?;
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(image))?;
        run(Command::new("mount").args(["-o", "loop"]).arg(image).arg(dir))?;
        MOUNTED.lock().push(dir.to_path_buf());
        Ok(Disk { dir: dir.to_path_buf(), kind: DiskKind::Image { image: image.to_path_buf() } })
    }

    /// Whether [`Disk::fill`] can fill it.
    pub fn can_fill(&self) -> bool {
        matches!(self.kind, DiskKind::Tmpfs)
    }

    /// Whether [`Disk::power_cut_copy`] can copy it.
    pub fn can_copy(&self) -> bool {
        matches!(self.kind, DiskKind::Image { .. })
    }

    /// Fills the tmpfs to the last byte with a ballast file
    /// (`ballast.nemesis` in the data directory, which the server ignores).
    /// Returns the bytes written.
    ///
    /// # Errors
    /// Not a tmpfs, or a write failed with something other than "no space".
    pub fn fill(&self) -> io::Result<u64> {
        let DiskKind::Tmpfs = &self.kind else {
            return Err(io::Error::other("only a tmpfs disk can be filled"));
        };
        let path = self.dir.join("ballast.nemesis");
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        let chunk = vec![0xa5u8; 1 << 20];
        let mut total = 0u64;
        let mut size = chunk.len();
        while size > 0 {
            match f.write(&chunk[..size]) {
                Ok(0) => size /= 2,
                Ok(n) => total += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => size /= 2,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Removes the ballast (the repair of a full disk).
    ///
    /// # Errors
    /// Removing it failed for another reason than its absence.
    pub fn drain(&self) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join("ballast.nemesis")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Copies the image while the node is stopped (SIGSTOP: its process
    /// writes nothing, and what it never synced is still only in the page
    /// cache of the mounted file system, so not in the copy). Returns the
    /// copy's path.
    ///
    /// # Errors
    /// Not an image, or the copy failed.
    pub fn power_cut_copy(&self) -> Result<PathBuf, String> {
        let DiskKind::Image { image } = &self.kind else {
            return Err("only an image disk can be copied".into());
        };
        let copy = image.with_extension("powercut");
        run(Command::new("cp").arg("--sparse=always").arg(image).arg(&copy))?;
        Ok(copy)
    }

    /// Puts `copy` in place of the image and mounts it (the node must be
    /// dead). An image the mount refuses is repaired with `e2fsck -y` first,
    /// as an operator would after a power cut; returns whether that was
    /// needed.
    ///
    /// # Errors
    /// Unmounting, replacing, repairing or mounting failed.
    pub fn restore_copy(&self, copy: &Path) -> Result<bool, String> {
        let DiskKind::Image { image } = &self.kind else {
            return Err("only an image disk can be restored".into());
        };
        run(Command::new("umount").arg(&self.dir))?;
        std::fs::rename(copy, image).map_err(|e| format!("replacing {}: {e}", image.display()))?;
        if run(Command::new("mount").args(["-o", "loop"]).arg(image).arg(&self.dir)).is_ok() {
            return Ok(false);
        }
        // e2fsck exits 1 when it fixed something.
        let _ = Command::new("e2fsck").args(["-f", "-y"]).arg(image).output();
        run(Command::new("mount").args(["-o", "loop"]).arg(image).arg(&self.dir))?;
        Ok(true)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        MOUNTED.lock().retain(|d| d != &self.dir);
        match &self.kind {
            DiskKind::Plain => {}
            DiskKind::Tmpfs | DiskKind::Image { .. } => {
                if run(Command::new("umount").arg(&self.dir)).is_err() {
                    // Busy (a server not yet reaped): detach it lazily.
                    let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
                }
            }
        }
        if let DiskKind::Image { image } = &self.kind {
            let _ = std::fs::remove_file(image);
        }
    }
}
