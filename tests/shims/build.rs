//! Builds the C shims of `tests/shims/` for `LD_PRELOAD`; included by the
//! test helper modules (`storage_common`, `service_common`) with `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `tests/shims/<name>.c` into a shared object for `LD_PRELOAD`.
///
/// # Errors
/// Why it could not be built (no gcc, a compile error), for a `skipped:`
/// line.
pub fn build_shim(name: &str) -> Result<PathBuf, String> {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("tests/shims").join(format!("{name}.c"));
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
