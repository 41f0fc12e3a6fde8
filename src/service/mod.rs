//! The replicated log service: named streams of records kept by a Raft
//! group, the server that runs it (`bin/ringraft-server`), its
//! configuration and its data directory.

pub mod config;
pub mod identity;
pub mod server;
