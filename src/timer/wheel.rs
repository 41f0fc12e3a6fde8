//! The wheel itself: tick arithmetic, the per-timer shared state, and the
//! buckets. Owned and touched only by the timer thread (except
//! [`Timeout`], whose state byte producers and cancellers race on).
//!
//! Time is cut into ticks counted from the wheel's start instant: tick `t`
//! begins at `start + t * tick`. A deadline `d` belongs to the first tick
//! that begins at or after it, `ceil((d - start) / tick)`, so processing
//! that tick (which happens only once `now >= start + t * tick`) can never
//! be early. A timer lives in bucket `deadline_tick & (buckets - 1)`; one
//! whose deadline lies more than a revolution away shares its bucket with
//! nearer ones and waits there for its remaining rounds,
//! `(deadline_tick - tick) / buckets`. Entries store the absolute deadline
//! tick rather than a rounds counter that each visit decrements: the two
//! are the same arithmetic, but the absolute form stays right when the
//! thread catches up several revolutions at once after a stall.
//!
//! Cancelled entries are not searched for (that would make cancel O(n));
//! they are dropped when their bucket is next visited, which happens at
//! least once per revolution while the wheel holds anything, or all at once
//! by [`Wheel::purge`] when no live timer is left.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The timer has neither fired nor been cancelled.
pub(super) const PENDING: u8 = 0;
/// [`super::TimerHandle::cancel`] won the race; the task will never run.
pub(super) const CANCELLED: u8 = 1;
/// The timer thread won the race; the task has run or is running.
pub(super) const FIRED: u8 = 2;
/// The timer was shut down before the deadline; the task was dropped.
pub(super) const DROPPED: u8 = 3;

/// A task as the wheel stores it.
pub(super) type Task = Box<dyn FnOnce() + Send + 'static>;

/// The state one timer shares between its handle(s) and the wheel.
#[derive(Debug)]
pub(super) struct Timeout {
    /// One of `PENDING`, `CANCELLED`, `FIRED`, `DROPPED`. Invariant: it
    /// leaves `PENDING` exactly once, by a compare-exchange, so exactly one
    /// of cancel, fire and shutdown wins.
    state: AtomicU8,
    /// When the task may run; `None` means never (a delay that overflows
    /// `Instant`).
    deadline: Option<Instant>,
}

impl Timeout {
    /// A pending timer due at `deadline`.
    pub(super) fn new(deadline: Option<Instant>) -> Timeout {
        Timeout { state: AtomicU8::new(PENDING), deadline }
    }

    /// When the task may run (`None`: never).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The current state byte.
    pub(super) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Whether the timer is still waiting to fire.
    pub(super) fn is_pending(&self) -> bool {
        self.state() == PENDING
    }

    /// Moves the timer from `PENDING` to `to`; true if this call did it.
    pub(super) fn leave_pending(&self, to: u8) -> bool {
        self.state.compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Whether `now` has reached the deadline (never for `None`).
    fn reached(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}

/// One scheduled timer as it sits in a bucket.
pub(super) struct Entry {
    /// Shared with the handle; checked before firing and on every visit.
    pub(super) timeout: Arc<Timeout>,
    /// What to run on the timer thread.
    pub(super) task: Task,
    /// The tick at which the entry is due. Invariant, once in the wheel:
    /// `>=` the next tick the thread will process.
    pub(super) deadline_tick: u64,
}

/// Converts between instants and tick numbers for one wheel.
#[derive(Clone, Copy, Debug)]
pub(super) struct TickClock {
    /// Tick 0 begins here.
    start: Instant,
    /// The tick length in nanoseconds. Invariant: > 0.
    tick_ns: u64,
}

impl TickClock {
    /// A clock whose tick 0 begins at `start`.
    ///
    /// # Panics
    ///
    /// If `tick` is zero or longer than `u64::MAX` nanoseconds (the timer
    /// validates its configuration before it gets here).
    pub(super) fn new(start: Instant, tick: Duration) -> TickClock {
        let tick_ns = u64::try_from(tick.as_nanos()).unwrap_or(0);
        assert!(tick_ns > 0, "tick {tick:?} must be between 1 ns and u64::MAX ns");
        TickClock { start, tick_ns }
    }

    /// The first tick that begins at or after `deadline` (`u64::MAX` for
    /// never). Deadlines before the start map to tick 0.
    pub(super) fn deadline_tick(&self, deadline: Option<Instant>) -> u64 {
        let Some(d) = deadline else { return u64::MAX };
        let ns = d.saturating_duration_since(self.start).as_nanos();
        u64::try_from(ns.div_ceil(u128::from(self.tick_ns))).unwrap_or(u64::MAX)
    }

    /// The last tick that has begun at `now`.
    pub(super) fn now_tick(&self, now: Instant) -> u64 {
        let ns = now.saturating_duration_since(self.start).as_nanos();
        u64::try_from(ns / u128::from(self.tick_ns)).unwrap_or(u64::MAX)
    }

    /// When tick `tick` begins, or `None` if that is beyond what `Instant`
    /// can hold.
    pub(super) fn tick_instant(&self, tick: u64) -> Option<Instant> {
        let ns = u64::try_from(u128::from(tick) * u128::from(self.tick_ns)).ok()?;
        self.start.checked_add(Duration::from_nanos(ns))
    }
}

/// One slot of the wheel.
#[derive(Default)]
struct Bucket {
    /// Timers whose deadline tick maps here, in insertion order, live or
    /// cancelled (cancelled ones leave on the next visit).
    entries: Vec<Entry>,
    /// A lower bound on the deadline ticks in `entries` (`u64::MAX` when
    /// empty). Exact after a visit; may be stale-low after a cancel, which
    /// costs one wake-up that then drops the cancelled entry.
    min_tick: u64,
}

/// Buckets above this capacity are shrunk when a visit leaves them mostly
/// empty, so that one burst does not pin memory for the life of the timer.
const BUCKET_KEEP_CAPACITY: usize = 64;

/// The hashed wheel: `buckets` slots, a power of two.
pub(super) struct Wheel {
    /// Invariant: `buckets.len()` is a power of two.
    buckets: Box<[Bucket]>,
    /// `buckets.len() - 1`.
    mask: u64,
    /// Entries in all buckets, live or cancelled.
    len: usize,
    /// The drained vector of the last visit, kept for its capacity.
    scratch: Vec<Entry>,
}

impl Wheel {
    /// An empty wheel.
    ///
    /// # Panics
    ///
    /// If `buckets` is not a power of two.
    pub(super) fn new(buckets: usize) -> Wheel {
        assert!(buckets.is_power_of_two(), "wheel buckets {buckets} must be a power of two");
        let buckets: Box<[Bucket]> = (0..buckets).map(|_| Bucket { entries: Vec::new(), min_tick: u64::MAX }).collect();
        let mask = buckets.len() as u64 - 1;
        Wheel { buckets, mask, len: 0, scratch: Vec::new() }
    }

    /// Entries held, live or cancelled.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is held.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bucket that tick `tick` visits.
    pub(super) fn bucket_of(&self, tick: u64) -> usize {
        // The mask keeps the value below `buckets.len()`, a usize.
        (tick & self.mask) as usize
    }

    /// Puts `entry` in the bucket of its deadline tick. O(1).
    pub(super) fn insert(&mut self, entry: Entry) {
        let i = self.bucket_of(entry.deadline_tick);
        let bucket = &mut self.buckets[i];
        bucket.min_tick = bucket.min_tick.min(entry.deadline_tick);
        bucket.entries.push(entry);
        self.len += 1;
    }

    /// Visits the bucket of `tick`: drops cancelled entries, moves the due
    /// ones (deadline tick `<= tick` and deadline `<= now`) to `due` in
    /// insertion order, and keeps the rest. A due-by-tick entry whose
    /// deadline `now` has not reached (clock rounding) moves to tick + 1.
    pub(super) fn expire(&mut self, tick: u64, now: Instant, due: &mut Vec<Entry>) {
        let i = self.bucket_of(tick);
        // Swap in the spare vector so the bucket keeps some capacity and
        // entries re-queued into this same bucket (one-bucket wheels) land
        // in the new vector, not the one being drained.
        std::mem::swap(&mut self.buckets[i].entries, &mut self.scratch);
        self.buckets[i].min_tick = u64::MAX;
        let mut visiting = std::mem::take(&mut self.scratch);
        self.len -= visiting.len();
        for mut entry in visiting.drain(..) {
            if !entry.timeout.is_pending() {
                continue;
            }
            if entry.deadline_tick > tick {
                self.insert(entry);
            } else if entry.timeout.reached(now) {
                due.push(entry);
            } else {
                entry.deadline_tick = tick + 1;
                self.insert(entry);
            }
        }
        if visiting.capacity() > BUCKET_KEEP_CAPACITY {
            visiting = Vec::new();
        }
        self.scratch = visiting;
        let kept = &mut self.buckets[i].entries;
        if kept.capacity() > BUCKET_KEEP_CAPACITY && kept.len() < kept.capacity() / 4 {
            kept.shrink_to(kept.len() * 2);
        }
    }

    /// The tick the thread should wake for, given that `next_tick` is the
    /// first one not yet processed: the earliest bucket minimum, but no
    /// later than one revolution on, so every bucket is visited (and its
    /// cancelled entries dropped) at least once per revolution. `None` when
    /// the wheel is empty. O(buckets) at worst, stopping early at the first
    /// entry due this revolution.
    pub(super) fn next_due_tick(&self, next_tick: u64) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let mut best = next_tick.saturating_add(self.mask);
        for offset in 0..=self.mask {
            let tick = next_tick.saturating_add(offset);
            if tick >= best {
                break;
            }
            // Entries in this bucket are due at `tick` or a later round;
            // `max` guards the (invariant-breaking) overdue case.
            let min_tick = self.buckets[self.bucket_of(tick)].min_tick;
            best = best.min(min_tick.max(tick));
        }
        Some(best)
    }

    /// Drops every entry that is no longer pending, in all buckets. O(buckets
    /// + entries); the thread calls it only when no live timer is left.
    pub(super) fn purge(&mut self) {
        let mut len = 0;
        for bucket in self.buckets.iter_mut().filter(|b| !b.entries.is_empty()) {
            bucket.entries.retain(|e| e.timeout.is_pending());
            bucket.min_tick = bucket.entries.iter().map(|e| e.deadline_tick).min().unwrap_or(u64::MAX);
            if bucket.entries.is_empty() {
                bucket.entries = Vec::new();
            }
            len += bucket.entries.len();
        }
        self.len = len;
    }

    /// Takes every entry out (shutdown).
    pub(super) fn drain_all(&mut self) -> Vec<Entry> {
        let mut all = Vec::with_capacity(self.len);
        for bucket in self.buckets.iter_mut() {
            all.append(&mut bucket.entries);
            bucket.min_tick = u64::MAX;
        }
        self.len = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn entry(deadline: Option<Instant>, deadline_tick: u64) -> (Entry, Arc<Timeout>) {
        let timeout = Arc::new(Timeout::new(deadline));
        (Entry { timeout: timeout.clone(), task: Box::new(|| ()), deadline_tick }, timeout)
    }

    #[test]
    fn deadline_tick_rounds_up_and_now_tick_rounds_down() {
        let start = Instant::now();
        let clock = TickClock::new(start, MS);
        assert_eq!(clock.deadline_tick(Some(start)), 0);
        assert_eq!(clock.deadline_tick(Some(start + Duration::from_nanos(1))), 1);
        assert_eq!(clock.deadline_tick(Some(start + MS)), 1);
        assert_eq!(clock.deadline_tick(Some(start + MS + Duration::from_nanos(1))), 2);
        assert_eq!(clock.deadline_tick(None), u64::MAX);
        assert_eq!(clock.now_tick(start), 0);
        assert_eq!(clock.now_tick(start + MS - Duration::from_nanos(1)), 0);
        assert_eq!(clock.now_tick(start + MS), 1);
        assert_eq!(clock.now_tick(start + 7 * MS + Duration::from_micros(999)), 7);
    }

    #[test]
    fn deadlines_before_start_map_to_tick_zero() {
        let start = Instant::now() + Duration::from_secs(1);
        let clock = TickClock::new(start, MS);
        assert_eq!(clock.deadline_tick(Some(start - MS)), 0);
        assert_eq!(clock.now_tick(start - MS), 0);
    }

    #[test]
    fn the_deadline_tick_never_begins_before_the_deadline() {
        let start = Instant::now();
        let clock = TickClock::new(start, Duration::from_micros(977));
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let d = start + Duration::from_nanos(x >> 24);
            let t = clock.deadline_tick(Some(d));
            let begins = clock.tick_instant(t).expect("tick in range");
            assert!(begins >= d, "tick {t} begins {begins:?} before deadline {d:?}");
            assert!(t == 0 || clock.tick_instant(t - 1).expect("tick in range") < d, "tick {t} is not the first");
            assert!(clock.now_tick(begins) >= t, "processing tick {t} needs now_tick >= it");
        }
    }

    #[test]
    fn deadlines_a_revolution_apart_share_a_bucket() {
        let wheel = Wheel::new(8);
        let start = Instant::now();
        let clock = TickClock::new(start, MS);
        let base = start + Duration::from_micros(2_400);
        let ticks: Vec<u64> = (0..20u32).map(|k| clock.deadline_tick(Some(base + (8 * k + 3) * MS))).collect();
        let bucket = wheel.bucket_of(ticks[0]);
        for (k, &t) in ticks.iter().enumerate() {
            assert_eq!(wheel.bucket_of(t), bucket, "k {k} tick {t}");
            assert_eq!((t - ticks[0]) / 8, k as u64, "rounds of k {k}");
        }
        assert_eq!(wheel.bucket_of(9), 1);
        assert_eq!(wheel.bucket_of(u64::MAX), 7);
    }

    #[test]
    fn expire_fires_one_round_per_visit_in_order() {
        let start = Instant::now();
        let mut wheel = Wheel::new(8);
        let mut handles = Vec::new();
        for k in 0..3u64 {
            let tick = 8 * k + 3;
            let (e, h) = entry(Some(start + Duration::from_millis(tick)), tick);
            wheel.insert(e);
            handles.push(h);
        }
        assert_eq!(wheel.len(), 3);
        let mut due = Vec::new();
        for tick in 0..=19 {
            let now = start + Duration::from_millis(tick);
            wheel.expire(tick, now, &mut due);
            let fired: Vec<u64> = due.iter().map(|e| e.deadline_tick).collect();
            match tick {
                3 => assert_eq!(fired, [3]),
                11 => assert_eq!(fired, [11]),
                19 => assert_eq!(fired, [19]),
                _ => assert!(fired.is_empty(), "tick {tick} fired {fired:?}"),
            }
            due.clear();
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn expire_drops_cancelled_entries_and_requeues_early_ones() {
        let start = Instant::now();
        let mut wheel = Wheel::new(4);
        let (cancelled, c) = entry(Some(start + MS), 1);
        let (early, _) = entry(Some(start + MS + Duration::from_nanos(1)), 1);
        wheel.insert(cancelled);
        wheel.insert(early);
        assert!(c.leave_pending(CANCELLED));
        let mut due = Vec::new();
        wheel.expire(1, start + MS, &mut due);
        assert!(due.is_empty());
        assert_eq!(wheel.len(), 1, "the cancelled entry is gone, the early one kept");
        assert_eq!(wheel.next_due_tick(2), Some(2), "the early entry moved to the next tick");
        wheel.expire(2, start + 2 * MS, &mut due);
        assert_eq!(due.len(), 1);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_due_tick(3), None);
    }

    #[test]
    fn next_due_tick_is_capped_at_one_revolution() {
        let mut wheel = Wheel::new(8);
        let (far, _) = entry(None, 100 * 8 + 5);
        wheel.insert(far);
        assert_eq!(wheel.next_due_tick(10), Some(17), "a far entry wakes the thread once a revolution");
        let (near, _) = entry(None, 13);
        wheel.insert(near);
        assert_eq!(wheel.next_due_tick(10), Some(13));
        let (now, _) = entry(None, 10);
        wheel.insert(now);
        assert_eq!(wheel.next_due_tick(10), Some(10));
    }

    #[test]
    fn one_bucket_wheel_works() {
        let start = Instant::now();
        let mut wheel = Wheel::new(1);
        let (a, _) = entry(Some(start + 2 * MS), 2);
        let (b, _) = entry(Some(start + 5 * MS + Duration::from_nanos(1)), 5);
        wheel.insert(a);
        wheel.insert(b);
        assert_eq!(wheel.next_due_tick(0), Some(0), "one bucket: the cap is the next tick");
        let mut due = Vec::new();
        for tick in 0..=6 {
            wheel.expire(tick, start + Duration::from_millis(tick), &mut due);
        }
        let fired: Vec<u64> = due.iter().map(|e| e.deadline_tick).collect();
        assert_eq!(fired, [2, 6], "b was early at tick 5 and fired at 6");
    }

    #[test]
    fn purge_keeps_only_pending_entries() {
        let mut wheel = Wheel::new(8);
        let mut handles = Vec::new();
        for tick in 0..20 {
            let (e, h) = entry(None, tick);
            wheel.insert(e);
            handles.push(h);
        }
        for h in handles.iter().step_by(2) {
            assert!(h.leave_pending(CANCELLED));
        }
        wheel.purge();
        assert_eq!(wheel.len(), 10);
        assert_eq!(wheel.next_due_tick(0), Some(1));
        assert_eq!(wheel.drain_all().len(), 10);
        assert!(wheel.is_empty());
    }

    #[test]
    fn only_one_transition_leaves_pending() {
        let t = Timeout::new(None);
        assert!(t.leave_pending(FIRED));
        assert!(!t.leave_pending(CANCELLED));
        assert!(!t.leave_pending(DROPPED));
        assert_eq!(t.state(), FIRED);
    }
}
