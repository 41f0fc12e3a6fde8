//! The file-system seam: every file the storage paths touch goes through
//! [`Fs`] and [`FsFile`], so the same log engine, state file and recovery
//! code runs on the real file system ([`RealFs`], the only code here that
//! calls the operating system) and on a simulated one that loses unsynced
//! data, tears writes, fills up and fails fsyncs, deterministically from a
//! seed (issue 18).
//!
//! The seam is dynamic (`Arc<dyn Fs>`, `Box<dyn FsFile>`): one indirect
//! call per system call, nothing beside the system call's own microseconds.
//!
//! What the traits promise is what POSIX promises and no more: data written
//! to a file is durable once `sync_data` (or `sync_all`) returned; a created,
//! renamed or removed directory entry is durable once `sync_dir` of its
//! directory returned; a failed sync may have dropped the unsynced data, so
//! the caller fails stop ([`Fs::fail_stop`]).

use std::sync::Arc;

mod mutants;
mod real;
mod seam;
pub mod sim;

pub use mutants::{mutant, MUTANTS};
pub use real::{fail_stop, RealFs, FAIL_STOP_EXIT_CODE};
pub use seam::{read_full_at, DirEntry, Fs, FsFile, FsLock, Meta, OpenMode};
pub use sim::{SimCrash, SimFs};

/// The real file system, shared.
pub fn real() -> Arc<dyn Fs> {
    Arc::new(RealFs)
}
