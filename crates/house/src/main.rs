//! `ringraft-house`: checks the house rules over the whole workspace and
//! exits 1 on any violation (`scripts/house.sh` runs it; so does
//! `scripts/test.sh`). The rules: no source file over 1,000 lines, every
//! source file opens with a `//!` header, every source file is compiled
//! by some crate, no import cycle between crates, between the folders of a
//! crate or between the files of a folder (an edge is every path starting
//! with `crate`, `super`, `self`, a child module, an imported name or a
//! sibling crate, in `use` lines and in expressions alike), and no direct
//! file-system call on the storage, recovery, checkpoint and snapshot paths.
//!
//! Usage: `ringraft-house [--edges] [ROOT]` (ROOT defaults to `.`;
//! `--edges` also prints every import edge, for inspection).

mod cycles;
mod lex;
mod modtree;
mod rules;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut root = PathBuf::from(".");
    let mut print_edges = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--edges" => print_edges = true,
            "-h" | "--help" => {
                println!("usage: ringraft-house [--edges] [ROOT]\n\nChecks the house rules over the workspace at ROOT (default: .).");
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => {
                eprintln!("ringraft-house: unknown option {a:?} (try --help)");
                return ExitCode::from(2);
            }
            a => root = PathBuf::from(a),
        }
    }
    if !root.join("Cargo.toml").is_file() {
        eprintln!("ringraft-house: {} has no Cargo.toml; run it from the workspace root", root.display());
        return ExitCode::from(2);
    }
    let ws = modtree::Workspace::load(&root);
    let edges = modtree::edges(&root, &ws);
    if print_edges {
        for e in &edges {
            println!("{} -> {}   ({})", e.from, e.to, e.evidence);
        }
    }
    let mut violations = rules::check_files(&root, &ws.compiled);
    violations.extend(cycles::find(&edges));
    for v in &violations {
        println!("{v}");
    }
    println!(
        "house: {} crates, {} files, {} import edges: {}",
        ws.crates.len(),
        ws.compiled.len(),
        edges.len(),
        if violations.is_empty() { "all rules hold".to_string() } else { format!("{} violations", violations.len()) }
    );
    if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
