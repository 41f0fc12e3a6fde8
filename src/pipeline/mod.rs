//! The staged runtime of a node: disruptor rings between threads, each stage
//! draining its whole ring as one batch.
//!
//! ```text
//! proposers, transport, timer, stages ──▶ [intake] ──▶ core thread (every group's RaftCore)
//!        ┌──────────────────────────────────────────────┼─────────────────────────────┐
//!        ▼                                              ▼                             ▼
//!  [append] log-append stage               [replicator ring per peer]          [fsm] FSM caller
//!  hard state + log ops, ONE fdatasync     coalesced sends (or inline          apply in batches, run
//!  → persisted messages, Persisted         when the ring is idle)              callbacks, Applied
//! ```
//!
//! * [`ring`]: the bounded MPSC ring on the `disruptor` crate with a
//!   spin-then-park wait strategy.
//! * `core_stage`: the core thread: feeds inputs to the cores, carries out
//!   their `Ready`s, arms the timer.
//! * `append`: the log-append stage (group fsync).
//! * `replicator`: one sender thread per peer.
//! * `fsm`: the FSM caller.
//! * `snapshot_sender`: fills and sends snapshot chunks to lagging peers.
//! * [`transport`]: what the stages send through, and an in-process network.

mod append;
pub mod completion;
mod contract;
mod core_stage;
mod error;
mod fsm;
mod input;
pub mod net;
mod replicator;
pub mod ring;
mod snapshot_sender;
pub mod transport;
mod wait;
mod watch;

pub use contract::{GroupStatus, PeerStatus, Restore, SnapshotStore, StateMachine};
pub use error::NodeError;
pub(crate) use input::Input;
pub use watch::RoleWatch;

// The stages' step functions: what each thread calls in its loop, and what
// the node simulator (ringraft-tools, `sim`) calls deterministically.
pub use append::{AppendJob, AppendSteps, Released, WriteFailed};
pub use core_stage::{Carried, GroupCore};
pub use fsm::{FsmOutput, FsmSteps, FsmTask, GroupFsm};
pub use snapshot_sender::{SenderLimits, SenderSteps};

pub(crate) use append::{AppendCounters, AppendStage};
pub(crate) use core_stage::{Clock, CoreCounters, CoreStage, CoreWiring};
pub(crate) use fsm::FsmStage;
pub(crate) use replicator::{ReplicatorCounters, Replicators};
pub(crate) use snapshot_sender::SnapshotSender;
