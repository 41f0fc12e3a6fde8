//! Log time: the clock every replica's sessions and age retention run on.
//!
//! The leader stamps each command it proposes with a time in ms since the
//! Unix epoch ([`LogClock::stamp`], on the transport's I/O thread); apply
//! takes the running maximum of the stamps (`machine.rs`), so every
//! replica, and every replay of the log, sees the same log time at the
//! same entry. What the stamp may be is decided here, where it is made,
//! never in apply: old logs replay identically.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use ringraft::clock::{Monotonic, ProcessClock};

/// The log time a node last applied (or restored), and when an entry last
/// carried it, by this process's monotonic clock. Written by the state machine, read by the
/// leader's stamping.
#[derive(Debug)]
pub struct LogTimeSeen {
    clock: Arc<dyn Monotonic>,
    seen: Mutex<(u64, Duration)>,
}

impl Default for LogTimeSeen {
    /// On the real process clock.
    fn default() -> Self {
        LogTimeSeen::on(Arc::new(ProcessClock::new()))
    }
}

impl LogTimeSeen {
    /// Nothing seen yet, on `clock` (a simulated process passes its own).
    pub fn on(clock: Arc<dyn Monotonic>) -> LogTimeSeen {
        let now = clock.now();
        LogTimeSeen { clock, seen: Mutex::new((0, now)) }
    }

    /// Notes that log time is `ms` now: an entry applied now carried it,
    /// whether or not it advanced it (a lower `ms` is ignored: log time does
    /// not go back).
    pub fn note(&self, ms: u64) {
        let mut g = self.seen.lock();
        if ms >= g.0 {
            *g = (ms, self.clock.now());
        }
    }

    /// The log time applied and when it was applied.
    pub fn get(&self) -> (u64, Duration) {
        *self.seen.lock()
    }

    /// The monotonic time now, on the clock `get` answers by.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }
}

/// How far beyond the log time it saw applied (plus the time since) a new
/// leader's first stamps may run: allows for clock differences between
/// nodes. Granted once per leadership, not per stamp.
pub const LOG_TIME_DRIFT_MS: u64 = 1_000;
/// How much faster than real time log time may run while it catches up
/// with a wall clock ahead of it (a failover that took longer than the
/// drift bound, a whole-cluster outage, a clock that jumped): 1/10, so a
/// session or a record never expires more than 10 % early, and a clock
/// jump of an hour is absorbed over ten hours instead of at once.
pub const LOG_TIME_CATCH_UP_DIVISOR: u64 = 10;
/// At most one warning about clamped stamps per this many ms.
const WARN_EVERY_MS: u64 = 60_000;

/// A reference point: log time `ms` held at monotonic instant `at`, with
/// `drift_ms` of extra allowance (a new leadership's only).
#[derive(Clone, Copy, Debug)]
struct Anchor {
    ms: u64,
    at: Duration,
    drift_ms: u64,
}

impl Anchor {
    /// The latest stamp allowed at `now`: the anchor's log time plus the
    /// real time since, sped up by the catch-up rate, plus its drift.
    fn bound(&self, now: Duration) -> u64 {
        let us = now.saturating_sub(self.at).as_micros() as u64;
        let ms = (us + us / LOG_TIME_CATCH_UP_DIVISOR) / 1000;
        self.ms.saturating_add(ms).saturating_add(self.drift_ms)
    }
}

/// Makes the log time of the commands a leader proposes.
///
/// Defect 07: log time used to be the leader's wall clock as is, so one
/// leader whose clock jumped forward expired every session and trimmed
/// unexpired records on every replica. The rule now:
///
/// * a stamp never goes below what this node stamped or applied before:
///   log time does not run backwards, whatever the wall clock does (within
///   one leadership: [`LogClock::stamp_as_leader`] forgets the stamps of
///   an earlier one, whose entries may never have committed);
/// * a stamp never goes above its anchor's bound: the anchor's log time
///   plus the real time since, measured on this node's monotonic clock,
///   times 1 + 1/[`LOG_TIME_CATCH_UP_DIVISOR`];
/// * the anchor of a new leadership (this node's first stamp, or the first
///   after another leader's entries carried the applied log time past its
///   own stamps) is the log time applied and the instant it was applied,
///   with [`LOG_TIME_DRIFT_MS`] of allowance: a new leader's first entry
///   may be at most 1.1 × the time since it applied the newest entry it
///   holds, plus one second, past that entry;
/// * a stamp the bound did not clamp becomes the anchor (no drift), so the
///   allowance does not build up while the clocks agree; while stamps are
///   clamped the anchor stays, and log time catches up at the catch-up
///   rate;
/// * with no log time at all yet (a new cluster), the wall clock is taken.
///
/// Hence between any two stamps of one leader, log time advances at most
/// 1.1 × the real time between them. Clamped stamps are logged (at most
/// once a minute, with a count). A whole-cluster outage is not counted at
/// once (each node measures from its restart); log time then catches up at
/// the catch-up rate.
#[derive(Debug, Default)]
pub struct LogClock {
    /// The reference the bound is measured from (`None`: nothing stamped).
    anchor: Option<Anchor>,
    /// The last stamp made.
    last_ms: u64,
    /// The term of the leadership the stamps are for (0: none yet).
    term: u64,
    /// Stamps clamped since the last warning, and when that was.
    clamped: u64,
    warned_at: Option<Duration>,
}

impl LogClock {
    /// A clock with nothing stamped yet.
    pub fn new() -> LogClock {
        LogClock::default()
    }

    /// The log time for a command proposed now: `wall_ms` is this node's
    /// wall clock, `now` its monotonic clock ([`LogTimeSeen::now`]), `seen`
    /// the log time its state machine has applied and when
    /// ([`LogTimeSeen::get`]).
    pub fn stamp(&mut self, wall_ms: u64, now: Duration, seen: (u64, Duration)) -> u64 {
        let (seen_ms, seen_at) = seen;
        if ringraft::fs::mutant("log-time-unbounded") {
            // Defect 07 back: the leader's wall clock as is.
            return wall_ms;
        }
        if seen_ms == 0 && self.anchor.is_none() {
            // No log time yet anywhere this node knows of: a new cluster.
            self.anchor = Some(Anchor { ms: wall_ms, at: now, drift_ms: 0 });
            self.last_ms = wall_ms;
            return wall_ms;
        }
        let anchor = match self.anchor {
            Some(a) if seen_ms <= self.last_ms => a,
            _ => Anchor { ms: seen_ms, at: seen_at, drift_ms: LOG_TIME_DRIFT_MS },
        };
        let bound = anchor.bound(now);
        let floor = self.last_ms.max(seen_ms);
        let stamp = wall_ms.min(bound).max(floor);
        if wall_ms > bound {
            self.anchor = Some(anchor);
            self.note_clamp(wall_ms, stamp, now);
        } else {
            self.anchor = Some(Anchor { ms: stamp, at: now, drift_ms: 0 });
        }
        self.last_ms = stamp;
        stamp
    }

    /// [`LogClock::stamp`] for a leader: when no log time is known at all
    /// (nothing stamped yet, and the state machine applied none) this is
    /// a new cluster only if the state machine has applied every entry of
    /// earlier terms (`caught_up`, asked only then). A leader that has not
    /// (restarted before its checkpoint held any log time, and elected
    /// before it applied the log it holds) gets `None`: the command waits
    /// (the caller answers `Busy`) rather than take the wall clock as is
    /// (defect 21: with that clock far ahead, log time jumped and every
    /// session expired).
    ///
    /// `term` is the leadership's: stamps of an earlier leadership of this
    /// node are forgotten when a new one begins, as their entries may never
    /// have committed (defect 22: stamped from a wall clock far ahead, they
    /// floored the next leadership's stamps and log time jumped). Only
    /// what the state machine applied (`seen`) carries over.
    pub fn stamp_as_leader(
        &mut self,
        term: u64,
        wall_ms: u64,
        now: Duration,
        seen: (u64, Duration),
        caught_up: impl FnOnce() -> bool,
    ) -> Option<u64> {
        if term != self.term {
            *self = LogClock { term, warned_at: self.warned_at, clamped: self.clamped, ..LogClock::default() };
        }
        if seen.0 == 0 && self.anchor.is_none() && !caught_up() {
            return None;
        }
        Some(self.stamp(wall_ms, now, seen))
    }

    fn note_clamp(&mut self, wall_ms: u64, stamp: u64, now: Duration) {
        self.clamped += 1;
        let due = self.warned_at.is_none_or(|t| now.saturating_sub(t).as_millis() as u64 >= WARN_EVERY_MS);
        if due {
            log::warn!(
                "service: this leader's wall clock is {} ms ahead of the log time it may stamp ({stamp}); stamps are \
                 held back ({} clamped since the last report). Log time catches up at most {}% faster than real \
                 time; check this node's clock if this persists",
                wall_ms - stamp,
                self.clamped,
                100 / LOG_TIME_CATCH_UP_DIVISOR
            );
            self.clamped = 0;
            self.warned_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: u64 = 1_700_000_000_000;

    #[test]
    fn a_new_cluster_takes_the_wall_clock_and_then_runs_at_real_time() {
        let t0 = Duration::from_secs(100);
        let mut c = LogClock::new();
        assert_eq!(c.stamp(WALL, t0, (0, t0)), WALL);
        // The clock jumps an hour ahead 5 s later: held to 1.1 × 5 s.
        let t = t0 + Duration::from_secs(5);
        assert_eq!(c.stamp(WALL + 3_600_000, t, (WALL, t0)), WALL + 5_500);
        // 10 s on, still clamped: 1.1 × 15 s since the anchor.
        let t = t0 + Duration::from_secs(15);
        assert_eq!(c.stamp(WALL + 3_610_000, t, (WALL, t0)), WALL + 16_500);
        // The clock steps back: log time does not.
        assert_eq!(c.stamp(WALL, t, (WALL, t0)), WALL + 16_500);
    }

    #[test]
    fn a_new_leader_may_advance_by_the_time_since_it_applied_plus_the_drift_bound() {
        let t0 = Duration::from_secs(100);
        // The node applied log time WALL at t0 and leads 2 s later.
        let mut c = LogClock::new();
        let t = t0 + Duration::from_secs(2);
        assert_eq!(c.stamp(WALL + 2_000, t, (WALL, t0)), WALL + 2_000, "a sane clock is taken as is");
        let mut c = LogClock::new();
        assert_eq!(c.stamp(WALL + 10_000_000, t, (WALL, t0)), WALL + 2_200 + LOG_TIME_DRIFT_MS);
        // The drift is granted once: many stamps do not add it up.
        for i in 0..1000 {
            let s = c.stamp(WALL + 10_000_000, t + Duration::from_micros(i), (WALL, t0));
            assert!(s <= WALL + 2_201 + LOG_TIME_DRIFT_MS, "stamp {i}: {s}");
        }
        // A clock running twice as fast is held to 1.1 × real time.
        let mut c = LogClock::new();
        let mut wall = WALL;
        let mut s = c.stamp(wall, t0, (WALL, t0));
        for ms in 1..=10_000u64 {
            wall += 2;
            s = c.stamp(wall, t0 + Duration::from_millis(ms), (WALL, t0));
        }
        assert!(s <= WALL + 11_000 + LOG_TIME_DRIFT_MS, "10 s of a 2x clock gave {} ms", s - WALL);
    }

    #[test]
    fn a_leader_with_no_log_time_stamps_only_once_it_applied_earlier_terms() {
        let t0 = Duration::from_secs(100);
        let mut c = LogClock::new();
        // Restarted with no log time applied yet, and earlier terms' entries
        // still to apply: no stamp (defect 21: the wall clock was taken).
        assert_eq!(c.stamp_as_leader(2, WALL + 3_600_000, t0, (0, t0), || false), None);
        // Once they are applied, their log time bounds the stamp.
        let t = t0 + Duration::from_secs(1);
        let s = c.stamp_as_leader(2, WALL + 3_600_000, t, (WALL, t), || panic!("not asked: log time is known"));
        assert_eq!(s, Some(WALL + LOG_TIME_DRIFT_MS));
        // A new cluster (caught up, and still no log time): the wall clock.
        let mut c = LogClock::new();
        assert_eq!(c.stamp_as_leader(1, WALL, t0, (0, t0), || true), Some(WALL));
    }

    #[test]
    fn a_new_leadership_forgets_the_stamps_of_an_earlier_one() {
        let t0 = Duration::from_secs(100);
        let mut c = LogClock::new();
        // Term 3, a new cluster, this node's clock 300 s ahead: taken as is.
        assert_eq!(c.stamp_as_leader(3, WALL + 300_000, t0, (0, t0), || true), Some(WALL + 300_000));
        // Those entries never commit; another leader's carry log time to
        // WALL. In term 8 this node leads again: its stamps of term 3 are
        // no floor (defect 22: log time jumped 300 s).
        let t = t0 + Duration::from_secs(2);
        let s = c.stamp_as_leader(8, WALL + 1_000, t, (WALL, t), || true).expect("log time is known");
        assert_eq!(s, WALL + 1_000);
        // Within one leadership, log time still never goes back.
        assert_eq!(c.stamp_as_leader(8, WALL, t, (WALL, t), || true), Some(WALL + 1_000));
    }

    #[test]
    fn another_leaders_later_entries_move_the_anchor() {
        let t0 = Duration::from_secs(100);
        let mut c = LogClock::new();
        assert_eq!(c.stamp(WALL, t0, (WALL, t0)), WALL);
        // Another leader's entries carried log time to WALL + 60 s at t1.
        let t1 = t0 + Duration::from_secs(60);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(c.stamp(WALL + 61_000, t2, (WALL + 60_000, t1)), WALL + 61_000);
    }
}
