//! ringraft's tools: what the binaries in `bin/` run, beside the engine
//! (`ringraft`), the service (`ringraft_service`) and the SDK
//! (`ringraft-client`).
//!
//! * [`demo`]: what `ringraft demo` runs.
//! * [`bench`](mod@bench): what `ringraft-bench` runs: the whole-system
//!   benchmark, each figure beside this machine's measured ideal.
//! * [`nemesis`]: what `ringraft-nemesis` runs: real servers under faults,
//!   their history checked.
//! * [`signals`]: SIGTERM/SIGINT for the binaries.
//! * `sim` (feature `sim`): the deterministic simulators (the core's, and
//!   whole nodes on simulated disks) that `ringraft-sim` runs.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod demo;
pub mod nemesis;
pub mod signals;

#[cfg(feature = "sim")]
pub mod sim;
