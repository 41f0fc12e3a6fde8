//! The harness behind tests/scenarios.rs: a hand-driven cluster of sans-IO
//! cores (cluster.rs, drive.rs), the command language (commands.rs), the
//! trace notation (format.rs) and the file format (script.rs).

pub mod cluster;
pub mod commands;
pub mod drive;
pub mod format;
pub mod script;
