//! The node simulator (issue 19): whole nodes, not only their cores.
//!
//! Each simulated node runs the real core, the real log engine and state
//! file, the real service state machine (apply, sessions, retention, log
//! time, inline checkpoints over the key-value trait, snapshots), the real
//! snapshot sender, receiver and install, and the real start and recovery
//! code at every restart, on its own simulated disk ([`ringraft::fs::SimFs`]:
//! unsynced data and directory entries lost at a crash, torn sectors, a
//! full disk, failed fsyncs). Each process has a monotonic clock that
//! starts at 0 at every start, and a wall clock with its own offset and
//! steps forward and back. Clients append, create, delete, trim and read
//! at every consistency level; the end of each seed checks the replicas
//! agree and the clients' history holds (`clients.rs`).
//!
//! Files: knobs.rs (what the seed decides beyond the core simulator's),
//! proc.rs (one node: its disk, wall clock and process life), world.rs
//! (the event loop, the node's stages, heal and the final check;
//! world/actors.rs: the clients' requests and the nemesis), clients.rs
//! (clients, their history and its checker).

mod clients;
mod knobs;
mod proc;
mod world;

pub use knobs::NodeKnobs;
pub use world::run_node_seed;
