//! ringraft: a Raft replication engine in the SOFAJRaft mould.
//!
//! * [`core`]: the sans-IO Raft state machine (election, replication,
//!   reads, membership, snapshots).
//! * [`storage`]: the segmented log engine shared by all groups (group
//!   fsync, crash recovery) and the per-group state file.
//! * [`fs`]: the file-system seam every storage path goes through (the real
//!   one, and a simulated one for the simulators).
//! * [`rpc`]: messages between nodes and the mio transport; the wire
//!   protocol itself is the `ringraft-proto` crate (re-exported here).
//! * [`pipeline`]: the staged runtime — disruptor rings with park/unpark
//!   waiting between the intake, core, log-append, replicator and FSM
//!   stages.
//! * [`node`]: the library entry point: start groups with a
//!   `StateMachine`, propose, read, change membership.
//! * [`timer`]: the hashed wheel timer that drives elections and
//!   heartbeats.
//!
//! The replicated log service and its server are `ringraft-service`, the
//! SDK is `ringraft-client`; the binaries, benchmark, nemesis and
//! simulators are `ringraft-tools`. See `ARCHITECTURE.md` for how the
//! pieces fit and `README.md` to run them.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod core;
pub mod fs;
pub mod node;
pub mod pipeline;
pub mod rpc;
pub mod storage;
pub mod timer;
