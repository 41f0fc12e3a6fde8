//! [`Outcome`]: what one simulated run (core or node simulator) reports:
//! its counters, its trace hash and the first violation, if any.

use super::checker::Violation;
use super::knobs::Knobs;
use super::stats::Stats;

/// The result of one run.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Counters.
    pub stats: Stats,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// The first broken invariant, if any.
    pub violation: Option<Violation>,
    /// The last trace lines (for failure reports).
    pub tail: Vec<String>,
    /// The knobs of the run.
    pub knobs: Knobs,
}
