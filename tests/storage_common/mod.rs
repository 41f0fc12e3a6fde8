//! Shared pieces of the process-level storage fault tests
//! (`tests/storage_{crash,powerloss,fsync_fail,full_disk}.rs`): running
//! `ringraft-logtool stress` as a child and parsing what it acknowledged, a
//! model of the log those acknowledgements imply, the check of a reopened
//! log against that model, and building the `LD_PRELOAD` shims.
//!
//! The contract checked everywhere: after any failure, the reopened log
//! equals the acknowledged history plus some prefix (possibly empty) of the
//! records of the one batch that was being written, exactly: no
//! acknowledged record missing or changed, nothing beyond that prefix
//! served.
#![allow(dead_code)]

mod child;
mod model;
mod payload;

// Each test binary uses a different part of what follows.
#[allow(unused_imports)]
pub use child::{run_stress, Batch, KillPlan, Rec, Run, StressArgs, Transcript};
#[allow(unused_imports)]
pub use model::{check, check_start_state, reopen_and_check, Checked, Model, Tally};
#[allow(unused_imports)]
pub use payload::{derived_payload, mix, payload_crc, Rng};

use std::path::{Path, PathBuf};
use std::process::Command;

use ringraft::storage::EngineConfig;

/// The tool the tests run as their child.
pub const LOGTOOL: &str = env!("CARGO_BIN_EXE_ringraft-logtool");

/// Segment size the tests use (small, so rotation and deletion happen often).
pub const SEGMENT_BYTES: u64 = 64 << 10;

/// The engine configuration the parent reopens logs with: a small cache so
/// most entries are read back from disk, checksums verified.
pub fn engine_config() -> EngineConfig {
    EngineConfig { segment_bytes: SEGMENT_BYTES, cache_bytes_per_group: 4 << 10 }
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

/// Builds `tests/shims/<name>.c` into a shared object for `LD_PRELOAD`.
///
/// # Errors
/// Why it could not be built (no gcc, a compile error), for a `skipped:`
/// line.
pub fn build_shim(name: &str) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shims").join(format!("{name}.c"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (tmp, out) = (dir.join(format!("{name}-{}.so", std::process::id())), dir.join(format!("{name}.so")));
    let res = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&tmp)
        .arg(&src)
        .arg("-ldl")
        .output();
    match res {
        Err(e) => Err(format!("cannot run gcc ({e}); LD_PRELOAD shim {name} not built")),
        Ok(o) if !o.status.success() => {
            Err(format!("gcc failed on {}:\n{}", src.display(), String::from_utf8_lossy(&o.stderr)))
        }
        // Renamed into place: a test binary run at the same time never
        // loads a half-written file.
        Ok(_) => std::fs::rename(&tmp, &out).map(|()| out).map_err(|e| format!("cannot place the shim: {e}")),
    }
}

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
