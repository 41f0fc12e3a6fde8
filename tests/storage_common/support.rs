//! The plain helpers every storage fault test shares: the logtool binary,
//! the engine configuration logs are reopened with, temp directories, the
//! seed, copying a directory, building the shims, and how a test reports
//! and skips. A leaf: the other files of `storage_common` import from here.

use std::path::{Path, PathBuf};

use ringraft::storage::EngineConfig;

/// The tool the tests run as their child.
pub const LOGTOOL: &str = env!("CARGO_BIN_EXE_ringraft-logtool");

/// Segment size the tests use (small, so rotation and deletion happen often).
pub const SEGMENT_BYTES: u64 = 64 << 10;

/// The engine configuration the parent reopens logs with: a small cache so
/// most entries are read back from disk, checksums verified.
pub fn engine_config() -> EngineConfig {
    EngineConfig { segment_bytes: SEGMENT_BYTES, cache_bytes_per_group: 4 << 10, ..EngineConfig::default() }
}

/// A directory removed on drop (kept when the test panics, for a post-mortem,
/// and its path printed).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ringraft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The seed of a test: `RINGRAFT_SEED` when set, else `default`.
pub fn test_seed(default: u64) -> u64 {
    match std::env::var("RINGRAFT_SEED") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("RINGRAFT_SEED={s} is not a u64")),
        Err(_) => default,
    }
}

/// Copies the files of `src` (a flat log directory) into a fresh `dst`, so
/// a check can run recovery on the copy and leave a torn tail in `src` for
/// the next child to recover.
pub fn copy_dir(src: &Path, dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

#[path = "../shims/build.rs"]
mod shim_build;
#[allow(unused_imports)] // not every test binary builds a shim
pub use shim_build::build_shim;

/// Prints a line CI logs show even when the test passes: libtest captures
/// `println!`/`eprintln!`, not direct writes to the stderr handle.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Reports `skipped: <why>` for a test that cannot run here.
pub fn skip(test: &str, why: &str) {
    report(&format!("skipped: {test}: {why}"));
}
