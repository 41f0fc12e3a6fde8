//! Issue 18, item 1: every file access on the storage, recovery,
//! checkpoint and snapshot paths goes through the `ringraft::fs` seam, so
//! the simulated disk sees all of it. This test greps `src/storage`,
//! `src/node`, `src/pipeline` and `src/service` (test modules excluded) for
//! direct file-system calls outside `src/fs/real.rs`.
//!
//! The service paths are being moved onto the seam; until they are, their
//! remaining calls are listed in `NOT_YET_ON_THE_SEAM` with their count. The
//! list only shrinks: a new direct call anywhere, or one more in a listed
//! file, fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PATTERNS: [&str; 12] = [
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

const DIRS: [&str; 4] = ["src/storage", "src/node", "src/pipeline", "src/service"];

/// Files still calling the file system directly, and how many lines do.
const NOT_YET_ON_THE_SEAM: &[(&str, usize)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("list source directory") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

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

#[test]
fn file_access_on_the_storage_paths_goes_through_the_seam() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for d in DIRS {
        rust_files(&root.join(d), &mut files);
    }
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(root).expect("under the root").to_string_lossy().replace('\\', "/");
        if rel.ends_with("/tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        for (i, line) in non_test_lines(&text).iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if PATTERNS.iter().any(|p| code.contains(p)) {
                found.entry(rel.clone()).or_default().push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    let allowed: BTreeMap<&str, usize> = NOT_YET_ON_THE_SEAM.iter().copied().collect();
    let mut errors = Vec::new();
    for (file, hits) in &found {
        match allowed.get(file.as_str()) {
            None => errors.push(format!("{file} calls the file system directly:\n  {}", hits.join("\n  "))),
            Some(&max) if hits.len() > max => errors.push(format!(
                "{file} has {} direct file-system calls, more than the {max} still allowed:\n  {}",
                hits.len(),
                hits.join("\n  ")
            )),
            Some(&max) if hits.len() < max => {
                errors.push(format!("{file}: {} direct calls left, the list allows {max}: lower it", hits.len()))
            }
            Some(_) => {}
        }
    }
    for (file, _) in NOT_YET_ON_THE_SEAM {
        if !found.contains_key(*file) {
            errors.push(format!("{file} is on the seam now: take it off NOT_YET_ON_THE_SEAM"));
        }
    }
    assert!(errors.is_empty(), "use ringraft::fs (Fs, FsFile) instead:\n{}", errors.join("\n"));
}
