//! The replicated log service: named streams of records kept by a Raft
//! group, the server that runs it (`bin/ringraft-server`), its
//! configuration and its data directory. Built on the engine
//! (`ringraft`): the service is a `StateMachine` with a `SnapshotStore`,
//! and the server wires it to a `Node` and the transport.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod command;
pub mod config;
mod disk_meta;
mod handler;
mod health;
pub use handler::{READ_BYTES_MAX, READ_RECORDS_MAX};
pub mod identity;
pub mod kv;
pub mod log_clock;
pub mod machine;
mod outbox;
mod rebuild;
pub mod segments;
pub mod server;
pub mod session;
mod snapshot;
mod snapshot_store;
mod state;
pub mod stream;
#[cfg(test)]
mod tests;
