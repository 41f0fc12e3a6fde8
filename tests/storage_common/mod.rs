//! Shared pieces of the process-level storage fault tests
//! (`tests/storage_{crash,powerloss,fsync_fail,full_disk}.rs`): running
//! `ringraft-logtool stress` as a child and parsing what it acknowledged, a
//! model of the log those acknowledgements imply, the check of a reopened
//! log against that model, and building the `LD_PRELOAD` shims.
//!
//! The contract checked everywhere: after any failure, the reopened log
//! equals the acknowledged history plus some prefix (possibly empty) of the
//! records of the one batch that was being written, exactly: no
//! acknowledged record missing or changed, nothing beyond that prefix
//! served.
#![allow(dead_code)]

mod child;
mod model;
mod payload;
mod support;

// Each test binary uses a different part of what follows.
#[allow(unused_imports)]
pub use child::{run_stress, Batch, KillPlan, Rec, Run, StressArgs, Transcript};
#[allow(unused_imports)]
pub use model::{check, check_start_state, reopen_and_check, Checked, Model, Tally};
#[allow(unused_imports)]
pub use payload::{derived_payload, mix, payload_crc, Rng};
#[allow(unused_imports)]
pub use support::*;
