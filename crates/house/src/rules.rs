//! The house rules that read one file at a time: no source file over
//! `LINES_MAX` lines, every source file opens with a `//!` header, every
//! source file is compiled by some crate, and no direct file-system call on
//! the storage, recovery, checkpoint and snapshot paths outside the real
//! file-system implementation (issue 12's seam: everything there goes
//! through `Fs`, so the simulated disk sees all of it).

use std::collections::BTreeSet;
use std::path::Path;

use crate::modtree::{rel, walk};

/// A source file past this many lines is asking to be split.
pub const LINES_MAX: usize = 1000;

/// Calls that touch the file system directly.
const FS_CALLS: [&str; 12] = [
    "std::fs::",
    "use std::fs",
    "File::open",
    "File::create",
    "File::options",
    "OpenOptions",
    "libc::pwritev",
    "libc::fallocate",
    "libc::fdatasync",
    "libc::fsync",
    "libc::flock",
    "libc::statvfs",
];

/// The folders whose file access must go through the seam.
pub const SEAM_DIRS: [&str; 4] = ["src/storage", "src/node", "src/pipeline", "crates/service/src"];

/// The lines of `text` before its test module (`#[cfg(test)]` followed by
/// `mod`), the convention every file here follows.
fn non_test_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
        .unwrap_or(lines.len());
    lines[..end].to_vec()
}

/// Whether `rel_path` is on the seam's paths (test files excluded).
fn on_seam(rel_path: &str) -> bool {
    SEAM_DIRS.iter().any(|d| rel_path.starts_with(&format!("{d}/"))) && !rel_path.ends_with("/tests.rs")
}

/// The direct file-system calls in `text`, as `file:line: code`.
pub fn fs_calls(rel_path: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in non_test_lines(text).iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if FS_CALLS.iter().any(|p| code.contains(p)) {
            out.push(format!("{rel_path}:{}: {}", i + 1, line.trim()));
        }
    }
    out
}

/// Checks every source file under `root`; `compiled` is the set of files
/// some crate compiles. Returns one message per violation.
pub fn check_files(root: &Path, compiled: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for path in walk(root, |n| n.ends_with(".rs")) {
        let r = rel(root, &path);
        let Ok(text) = std::fs::read_to_string(&path) else {
            out.push(format!("{r}: cannot be read as UTF-8 text"));
            continue;
        };
        let lines = text.lines().count();
        if lines > LINES_MAX {
            out.push(format!("{r}: {lines} lines, more than {LINES_MAX}: split it"));
        }
        if !text.trim_start().starts_with("//!") {
            out.push(format!("{r}: does not open with a `//!` header saying its role"));
        }
        if !compiled.contains(&r) && !r.starts_with("fuzz/") {
            out.push(format!("{r}: no crate compiles it (no `mod` declaration or manifest target reaches it)"));
        }
        if on_seam(&r) {
            for call in fs_calls(&r, &text) {
                out.push(format!("{call}\n    calls the file system directly: use the Fs seam (Fs, FsFile) instead"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_call_is_found_outside_test_modules_only() {
        let text =
            "//! x\nfn f() { std::fs::read(\"a\"); }\n#[cfg(test)]\nmod tests { fn g() { std::fs::read(\"b\"); } }\n";
        let calls = fs_calls("src/storage/x.rs", text);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].starts_with("src/storage/x.rs:2:"));
    }

    #[test]
    fn the_seam_covers_its_folders_but_not_test_files() {
        assert!(on_seam("crates/service/src/machine.rs"));
        assert!(!on_seam("crates/service/src/tests.rs"));
        assert!(!on_seam("src/fs/real.rs"));
    }
}
