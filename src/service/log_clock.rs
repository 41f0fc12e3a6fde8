//! Log time: the clock every replica's sessions and age retention run on.
//!
//! The leader stamps each command it proposes with a time in ms since the
//! Unix epoch ([`LogClock::stamp`], on the transport's I/O thread); apply
//! takes the running maximum of the stamps (`machine.rs`), so every
//! replica, and every replay of the log, sees the same log time at the
//! same entry. What the stamp may be is decided here, where it is made,
//! never in apply: old logs replay identically.

use std::time::Instant;

use parking_lot::Mutex;

/// The log time a node last applied (or restored), and when, by this
/// process's monotonic clock. Written by the state machine, read by the
/// leader's stamping.
#[derive(Debug)]
pub struct LogTimeSeen(Mutex<(u64, Instant)>);

impl Default for LogTimeSeen {
    fn default() -> Self {
        LogTimeSeen(Mutex::new((0, Instant::now())))
    }
}

impl LogTimeSeen {
    /// Notes that log time reached `ms` now.
    pub fn note(&self, ms: u64) {
        let mut g = self.0.lock();
        if ms != g.0 {
            *g = (ms, Instant::now());
        }
    }

    /// The log time applied and when it was applied.
    pub fn get(&self) -> (u64, Instant) {
        *self.0.lock()
    }
}

/// Makes the log time of the commands a leader proposes.
#[derive(Debug, Default)]
pub struct LogClock {}

impl LogClock {
    /// A clock with nothing stamped yet.
    pub fn new() -> LogClock {
        LogClock::default()
    }

    /// The log time for a command proposed now: `wall_ms` is this node's
    /// wall clock, `now` its monotonic clock, `seen` what its state machine
    /// has applied ([`LogTimeSeen::get`]).
    pub fn stamp(&mut self, wall_ms: u64, _now: Instant, _seen: (u64, Instant)) -> u64 {
        wall_ms
    }
}
