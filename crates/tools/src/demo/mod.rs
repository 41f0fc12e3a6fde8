//! `ringraft demo`: a local 3-node cluster of real `ringraft-server`
//! processes on 127.0.0.1, a pipelined append workload from several client
//! threads, a SIGKILL of the leader half-way and its restart from disk, and
//! a check, node by node, that every acknowledged record is stored exactly
//! once at its acknowledged offset and that all nodes hold the same stream.
//!
//! [`run`] owns the run: the temp directory, the child processes (through
//! `procs::Servers`, which kills them on every exit path), the writers
//! (`workload`), the crash (`drive`) and the check (`verify`).

mod config;
mod drive;
pub mod ports;
pub(crate) mod procs;
mod run;
mod verify;
mod workload;

pub use config::{DemoConfig, DemoError, DemoReport};
pub use procs::{locate_server_bin, sigterm, SERVER_BIN_ENV};
pub use run::run;
