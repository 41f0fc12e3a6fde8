//! ringraft: a Raft replication engine in the SOFAJRaft mould.
//!
//! * [`core`]: the sans-IO Raft state machine (election, replication,
//!   reads, membership, snapshots).
//! * [`storage`]: the segmented log engine shared by all groups (group
//!   fsync, crash recovery) and the per-group state file.
//! * [`rpc`]: the wire protocol (`proto-spec/PROTOCOL.md`): frames, message
//!   codec, incremental frame decoder, handshake.
//! * [`pipeline`]: the staged runtime — disruptor rings with park/unpark
//!   waiting between the intake, core, log-append, replicator and FSM
//!   stages.
//! * [`node`]: the library entry point: start groups with a
//!   `StateMachine`, propose, read, change membership.
//! * [`timer`]: the hashed wheel timer that drives elections and
//!   heartbeats.
//! * [`service`]: the replicated log service (streams, sessions,
//!   checkpoints) and `ringraft-server`.
//! * [`signals`]: SIGTERM/SIGINT for the binaries.
//! * [`demo`]: what `ringraft demo` runs.
//! * [`bench`](mod@bench): what `ringraft-bench` runs: the whole-system benchmark,
//!   each figure beside this machine's measured ideal.
//! * `sim` (feature `sim`): the deterministic cluster simulator that checks
//!   the core's safety and liveness under seeded faults.
//!
//! See `ARCHITECTURE.md` for how the pieces fit and `README.md` to run them.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod clock;
pub mod core;
pub mod demo;
pub mod fs;
pub mod nemesis;
pub mod node;
pub mod pipeline;
pub mod rpc;
pub mod service;
pub mod signals;
pub mod storage;
pub mod timer;

#[cfg(feature = "sim")]
pub mod sim;
