//! Monotonic time as a process sees it: a duration since the process
//! started, which starts again at 0 when the process restarts (issue 19:
//! time as production has it). Layers that decide by time (checkpoint
//! schedules, retries, idle snapshot readers) read it through
//! [`Monotonic`], so a simulation can run them on its own clock: the real
//! one is [`ProcessClock`], a simulated one [`ManualClock`].

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic clock: time since the process (or the simulated process)
/// started. Never goes back.
pub trait Monotonic: Send + Sync + Debug {
    /// Time since the start.
    fn now(&self) -> Duration;
}

/// The real monotonic clock, from when it was made.
#[derive(Clone, Copy, Debug)]
pub struct ProcessClock {
    start: Instant,
}

impl ProcessClock {
    /// A clock reading 0 now.
    pub fn new() -> ProcessClock {
        ProcessClock { start: Instant::now() }
    }
}

impl Default for ProcessClock {
    fn default() -> ProcessClock {
        ProcessClock::new()
    }
}

impl Monotonic for ProcessClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock a simulation moves by hand (clones share it). A new one reads
/// 0, as a restarted process's clock does.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::AcqRel);
    }

    /// Sets the clock to `t`, if that is not before what it reads (it never
    /// goes back).
    pub fn set(&self, t: Duration) {
        self.0.fetch_max(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX), Ordering::AcqRel);
    }
}

impl Monotonic for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_starts_at_zero_and_never_goes_back() {
        let c = ManualClock::default();
        assert_eq!(c.now(), Duration::ZERO);
        c.advance(Duration::from_millis(5));
        c.set(Duration::from_millis(2));
        assert_eq!(c.now(), Duration::from_millis(5));
        c.set(Duration::from_secs(1));
        assert_eq!(c.clone().now(), Duration::from_secs(1));
        let p = ProcessClock::new();
        let (a, b) = (p.now(), p.now());
        assert!(b >= a);
    }
}
