//! The sans-IO Raft core: a deterministic state machine per group.
//!
//! Inputs are method calls (`step`, `tick`, `propose`, `on_persisted`,
//! `on_applied`, `read_index`, `transfer_leader`, `propose_conf_change`,
//! `on_snapshot_created`); outputs accumulate in a [`Ready`] taken with
//! `take_ready`. There are no threads, clocks or I/O in here: time is an
//! input and timers are deadlines the driver honours.

mod conf;
mod config;
mod election;
mod log;
mod membership;
mod message;
mod progress;
mod raft;
mod read;
mod read_index;
mod ready;
mod replication;
mod snapshot;
#[cfg(test)]
mod tests;
mod types;

pub use conf::TransferError;
pub use config::Config;
#[cfg(feature = "sim-mutants")]
pub use config::Mutant;
pub use membership::{ConfChange, Membership};
pub use message::{Entry, HardState, Message, MessageBody, Payload, RejectHint, SnapshotMeta};
pub use progress::{Progress, ReplState};
pub use raft::{RaftCore, Recovered};
pub use read::ReadMode;
pub use ready::{LogOp, PersistPoint, ReadState, Ready, Role, SnapshotChunk, SoftState};
pub use replication::{NotReady, ProposeError, PROMOTE_SLACK_MIN};
pub use snapshot::SnapshotError;
pub use types::{GroupId, LogIndex, NodeId, ReadId, Term, Time};
