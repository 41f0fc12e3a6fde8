//! The deterministic cluster simulator (feature `sim`).
//!
//! N sans-IO cores, a simulated network, disks and clocks, clients and a
//! nemesis, all driven by one `u64` seed; safety invariants are checked
//! after every step and liveness after a final heal phase. A failing seed
//! replays exactly: `scripts/sim.sh --seed S --trace`.
//!
//! Files by role: rng.rs (randomness, hashes), knobs.rs (everything derived
//! from the seed), network.rs, disk.rs, node.rs, model.rs (state machine and
//! snapshot bytes), world.rs (event loop), driver.rs (the `Ready`
//! contract), observe.rs (per-step checks of a node), client.rs, nemesis.rs,
//! checker.rs (global invariants), trace.rs, stats.rs, runner.rs (many
//! seeds, threads, reports).

mod checker;
mod client;
mod disk;
mod driver;
mod knobs;
mod mirror;
mod model;
mod nemesis;
mod network;
mod node;
mod observe;
mod outcome;
mod panics;
mod queue;
mod rng;
mod runner;
mod stats;
mod trace;
mod whole;
mod world;

pub use checker::Violation;
pub use knobs::{Knobs, DEFAULT_STEPS, NODE_STEPS};
pub use outcome::Outcome;
pub use panics::install_panic_hook;
pub use runner::{failure_report, run_many, run_seed, RunOptions, Summary};
pub use stats::{FaultKind, NodeCounters, Stats};
pub use whole::{run_node_seed, NodeKnobs};
pub use world::World;
