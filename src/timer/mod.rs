//! [`HashedWheelTimer`]: the timers of the pipeline (election and heartbeat
//! timeouts, retries) on one thread, with O(1) schedule and O(1) cancel.
//!
//! # How it works
//!
//! Producers push new timers into an inbox (a mutex-guarded vector) and
//! return at once. The timer thread moves the inbox into the wheel
//! (`wheel`) each time it wakes, visits the buckets of the ticks that have
//! begun since the last visit, and runs the due tasks on its own thread.
//! Cancel is one compare-exchange on the timer's state byte; the entry stays
//! in its bucket until the bucket is next visited (at least once per
//! revolution while anything is scheduled) or until no live timer is left,
//! when the thread drops all cancelled entries at once.
//!
//! The thread does not tick when there is nothing to do. With no timers it
//! sleeps until a schedule wakes it. With timers it sleeps until the first
//! tick that holds a due entry, and at most one revolution, so a lone
//! one-second election timer costs a couple of wake-ups, not a thousand.
//! When the wheel empties right after new timers came in, it lingers one
//! more revolution before sleeping indefinitely (see `Worker::next_wake`). A
//! schedule wakes it only if it sleeps indefinitely or longer than the new
//! deadline, or if [`INBOX_WAKE_LEN`] timers wait in the inbox.
//!
//! # Guarantees
//!
//! * A task never runs before its deadline: the thread runs it only once
//!   `Instant::now() >= deadline`.
//! * Exactly one of these happens to each timer: it fires, it is cancelled
//!   ([`TimerHandle::cancel`] returns true), or it is dropped by shutdown.
//! * A task that panics is caught and logged; the thread goes on.
//!
//! # Non-guarantees
//!
//! * Lateness: a task runs up to one tick after its deadline, plus the
//!   time the OS takes to wake the thread, plus the time earlier tasks in
//!   the same pass take. Tasks must be short; hand long work elsewhere.
//! * Order: timers due in the same tick run in the order they reached the
//!   wheel, not in deadline order within the tick.
//! * Cancel frees the task's closure when its bucket is next visited, not
//!   at the call.

mod wheel;

use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use wheel::{Entry, TickClock, Timeout, Wheel, CANCELLED, DROPPED, FIRED, PENDING};

/// The shortest tick [`HashedWheelTimer::with_config`] accepts.
pub const TICK_MIN: Duration = Duration::from_micros(100);
/// The most buckets [`HashedWheelTimer::with_config`] accepts.
pub const WHEEL_BUCKETS_MAX: usize = 1 << 16;

/// Inbox length at which a schedule wakes a sleeping timer thread even if
/// the new deadline is later than its wake-up, so that the inbox (and the
/// cancelled timers in it) stays bounded under a burst of schedules.
pub const INBOX_WAKE_LEN: usize = 4096;

/// How a [`HashedWheelTimer`] is built.
#[derive(Clone, Debug)]
pub struct TimerConfig {
    /// The wheel's resolution: a task runs at the first tick boundary at
    /// or after its deadline. Default 1 ms; at least [`TICK_MIN`].
    pub tick: Duration,
    /// Buckets in the wheel, a power of two up to [`WHEEL_BUCKETS_MAX`].
    /// One revolution is `tick * wheel_buckets`. Default 512.
    pub wheel_buckets: usize,
    /// The name of the timer thread. Default `ringraft-timer`.
    pub thread_name: String,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig { tick: Duration::from_millis(1), wheel_buckets: 512, thread_name: "ringraft-timer".to_string() }
    }
}

/// When a timer fires: an instant, or a delay from the call to
/// [`HashedWheelTimer::schedule`]. Build it with `Instant::into()`,
/// `Duration::into()`, [`Deadline::at`] or [`Deadline::after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// Fire at `instant` (at once if it has passed).
    pub fn at(instant: Instant) -> Deadline {
        Deadline(Some(instant))
    }

    /// Fire `delay` from now. A delay past what `Instant` can represent
    /// means never (the timer can still be cancelled).
    pub fn after(delay: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(delay))
    }

    /// The instant, or `None` for never.
    pub fn instant(&self) -> Option<Instant> {
        self.0
    }
}

impl From<Instant> for Deadline {
    fn from(instant: Instant) -> Deadline {
        Deadline::at(instant)
    }
}

impl From<Duration> for Deadline {
    fn from(delay: Duration) -> Deadline {
        Deadline::after(delay)
    }
}

/// Where one timer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerState {
    /// Not yet fired, cancelled or dropped.
    Pending,
    /// Cancelled before it fired; the task will never run.
    Cancelled,
    /// The task has run or is running.
    Fired,
    /// The timer was shut down first; the task was dropped unrun.
    Dropped,
}

/// Counters of one timer, read with [`HashedWheelTimer::stats`]. Once
/// quiet, `scheduled == fired + cancelled + dropped + pending`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerStats {
    /// Calls to `schedule`, including those after shutdown.
    pub scheduled: u64,
    /// Tasks run (including those that panicked).
    pub fired: u64,
    /// Successful cancels.
    pub cancelled: u64,
    /// Timers dropped unrun by shutdown (or scheduled after it).
    pub dropped: u64,
    /// Tasks that panicked (caught and logged).
    pub panicked: u64,
    /// Timers waiting to fire.
    pub pending: u64,
    /// Times the timer thread woke from sleep. Flat while idle.
    pub wakeups: u64,
}

/// The live counters behind [`TimerStats`].
#[derive(Debug, Default)]
struct Counters {
    scheduled: AtomicU64,
    fired: AtomicU64,
    cancelled: AtomicU64,
    dropped: AtomicU64,
    panicked: AtomicU64,
    /// Incremented under the inbox lock before the entry is pushed, so it
    /// never underflows when the winner of the state race decrements it.
    pending: AtomicU64,
    wakeups: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A handle on one scheduled timer. Dropping it does not cancel the timer.
#[derive(Clone)]
pub struct TimerHandle {
    timeout: Arc<Timeout>,
    counters: Arc<Counters>,
}

impl TimerHandle {
    /// Cancels the timer. True if this call prevented the task from
    /// running; false if it had already fired (or is running), was
    /// cancelled before, or was dropped by shutdown. O(1); safe to race
    /// with the firing from any thread.
    pub fn cancel(&self) -> bool {
        if !self.timeout.leave_pending(CANCELLED) {
            return false;
        }
        self.counters.pending.fetch_sub(1, Ordering::AcqRel);
        bump(&self.counters.cancelled);
        true
    }

    /// Where the timer stands now.
    pub fn state(&self) -> TimerState {
        match self.timeout.state() {
            PENDING => TimerState::Pending,
            CANCELLED => TimerState::Cancelled,
            FIRED => TimerState::Fired,
            _ => TimerState::Dropped,
        }
    }

    /// The deadline (`None`: never).
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout.deadline()
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle").field("deadline", &self.deadline()).field("state", &self.state()).finish()
    }
}

/// What the timer thread is doing, as producers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sleep {
    /// Running, or already notified: it reads the inbox before sleeping.
    Awake,
    /// Sleeping until this tick boundary.
    Until(Instant),
    /// Sleeping until notified (the wheel is empty).
    Forever,
}

/// New timers on their way to the thread.
struct Inbox {
    entries: Vec<Entry>,
    sleep: Sleep,
}

/// What producers and the timer thread share.
struct Shared {
    inbox: Mutex<Inbox>,
    wake: Condvar,
    /// Set under the inbox lock, so no entry reaches the inbox after the
    /// thread's final drain; checked before each task runs.
    stopping: AtomicBool,
    counters: Arc<Counters>,
}

/// A hashed timing wheel with its own thread.
///
/// Tasks run on the timer thread, one at a time. [`shutdown`](Self::shutdown)
/// (or drop) stops and joins the thread; timers that have not fired by then
/// are dropped unrun ([`TimerState::Dropped`]).
pub struct HashedWheelTimer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
    tick: Duration,
    wheel_buckets: usize,
}

impl HashedWheelTimer {
    /// Starts a timer thread with `tick` and `wheel_buckets` and the
    /// default thread name.
    ///
    /// # Errors
    ///
    /// As [`with_config`](Self::with_config).
    pub fn new(tick: Duration, wheel_buckets: usize) -> io::Result<HashedWheelTimer> {
        HashedWheelTimer::with_config(TimerConfig { tick, wheel_buckets, ..TimerConfig::default() })
    }

    /// Starts a timer thread.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `tick < TICK_MIN` or `wheel_buckets` is not a
    /// power of two in `1..=WHEEL_BUCKETS_MAX` (the message names the
    /// field); the OS error if the thread cannot start.
    pub fn with_config(config: TimerConfig) -> io::Result<HashedWheelTimer> {
        validate(&config)?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox { entries: Vec::new(), sleep: Sleep::Awake }),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            counters,
        });
        let worker = Worker {
            shared: shared.clone(),
            clock: TickClock::new(Instant::now(), config.tick),
            wheel: Wheel::new(config.wheel_buckets),
            next_tick: 0,
            batch: Vec::new(),
            due: Vec::new(),
            revolution: config.tick.saturating_mul(u32::try_from(config.wheel_buckets).unwrap_or(u32::MAX)),
        };
        let thread = thread::Builder::new().name(config.thread_name).spawn(move || worker.run())?;
        Ok(HashedWheelTimer {
            shared,
            thread_id: thread.thread().id(),
            thread: Mutex::new(Some(thread)),
            tick: config.tick,
            wheel_buckets: config.wheel_buckets,
        })
    }

    /// Schedules `task` to run on the timer thread at `when` (an
    /// [`Instant`] or a [`Duration`] from now). O(1): one allocation pair
    /// and one short lock. After shutdown the task is dropped at once and
    /// the handle reads [`TimerState::Dropped`].
    pub fn schedule(&self, when: impl Into<Deadline>, task: impl FnOnce() + Send + 'static) -> TimerHandle {
        let deadline = when.into().instant();
        let timeout = Arc::new(Timeout::new(deadline));
        let counters = &self.shared.counters;
        let handle = TimerHandle { timeout: timeout.clone(), counters: counters.clone() };
        let entry = Entry { timeout, task: Box::new(task), deadline_tick: 0 };
        bump(&counters.scheduled);
        let mut inbox = self.shared.inbox.lock();
        if self.shared.stopping.load(Ordering::Acquire) {
            drop(inbox);
            entry.timeout.leave_pending(DROPPED);
            bump(&counters.dropped);
            return handle;
        }
        counters.pending.fetch_add(1, Ordering::AcqRel);
        inbox.entries.push(entry);
        let wake = match inbox.sleep {
            Sleep::Awake => false,
            Sleep::Forever => true,
            Sleep::Until(until) => deadline.is_some_and(|d| d < until) || inbox.entries.len() >= INBOX_WAKE_LEN,
        };
        if wake {
            inbox.sleep = Sleep::Awake;
            drop(inbox);
            self.shared.wake.notify_one();
        }
        handle
    }

    /// [`schedule`](Self::schedule) at an instant.
    pub fn schedule_at(&self, deadline: Instant, task: impl FnOnce() + Send + 'static) -> TimerHandle {
        self.schedule(deadline, task)
    }

    /// [`schedule`](Self::schedule) after a delay from now.
    pub fn schedule_after(&self, delay: Duration, task: impl FnOnce() + Send + 'static) -> TimerHandle {
        self.schedule(delay, task)
    }

    /// A snapshot of the counters (each read on its own, so a snapshot
    /// taken while timers move may not add up exactly).
    pub fn stats(&self) -> TimerStats {
        let c = &self.shared.counters;
        let read = |a: &AtomicU64| a.load(Ordering::Acquire);
        TimerStats {
            scheduled: read(&c.scheduled),
            fired: read(&c.fired),
            cancelled: read(&c.cancelled),
            dropped: read(&c.dropped),
            panicked: read(&c.panicked),
            pending: read(&c.pending),
            wakeups: read(&c.wakeups),
        }
    }

    /// The configured tick.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// The configured number of buckets.
    pub fn wheel_buckets(&self) -> usize {
        self.wheel_buckets
    }

    /// Stops the timer thread and waits for it (and for a task it is
    /// running) to finish. Timers that have not fired are dropped unrun:
    /// their handles read [`TimerState::Dropped`] and `cancel` returns
    /// false. After it returns no task of this timer runs again. Idempotent.
    ///
    /// Called from a task (on the timer thread itself) it cannot join: it
    /// marks the timer stopped, no further task runs, and the thread exits
    /// once the calling task returns.
    pub fn shutdown(&self) {
        {
            let mut inbox = self.shared.inbox.lock();
            self.shared.stopping.store(true, Ordering::Release);
            inbox.sleep = Sleep::Awake;
        }
        self.shared.wake.notify_one();
        if thread::current().id() == self.thread_id {
            return;
        }
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                log::error!("timer thread panicked; its unfired timers were not all dropped cleanly");
            }
        }
    }
}

impl Drop for HashedWheelTimer {
    /// Same as [`HashedWheelTimer::shutdown`].
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for HashedWheelTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashedWheelTimer")
            .field("tick", &self.tick)
            .field("wheel_buckets", &self.wheel_buckets)
            .field("stats", &self.stats())
            .finish()
    }
}

fn validate(config: &TimerConfig) -> io::Result<()> {
    if config.tick < TICK_MIN || u64::try_from(config.tick.as_nanos()).is_err() {
        return Err(invalid(format!("tick {:?} must be at least {TICK_MIN:?}", config.tick)));
    }
    let buckets = config.wheel_buckets;
    if !buckets.is_power_of_two() || buckets > WHEEL_BUCKETS_MAX {
        return Err(invalid(format!(
            "wheel_buckets {buckets} must be a power of two no greater than {WHEEL_BUCKETS_MAX}"
        )));
    }
    Ok(())
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("invalid timer configuration: {why}"))
}

/// The timer thread's state. Owns the wheel; nothing else touches it.
struct Worker {
    shared: Arc<Shared>,
    clock: TickClock,
    wheel: Wheel,
    /// The first tick not yet processed. Invariant: every entry in the
    /// wheel has `deadline_tick >= next_tick`.
    next_tick: u64,
    /// The inbox's entries of this pass (swapped out to keep the lock short).
    batch: Vec<Entry>,
    /// Entries to fire in this pass, in tick order.
    due: Vec<Entry>,
    /// `tick * wheel_buckets`.
    revolution: Duration,
}

impl Worker {
    fn run(mut self) {
        let mut wake_at = None;
        while self.park(wake_at) {
            let now = Instant::now();
            // Linger only after taking timers that did not all fire: a timer
            // due when taken fires in this pass, and an idle thread then
            // sleeps until the next schedule (found by CI under load).
            let taken = self.batch.len() as u64;
            let fired_before = self.shared.counters.fired.load(Ordering::Relaxed);
            self.advance(now);
            let fired = self.shared.counters.fired.load(Ordering::Relaxed) - fired_before;
            wake_at = self.next_wake(now, taken > fired);
        }
        self.discard_all();
    }

    /// Sleeps until `wake_at` (`None`: until notified) unless the inbox has
    /// entries, then takes the inbox. False once shutdown has begun.
    fn park(&mut self, wake_at: Option<Instant>) -> bool {
        let mut inbox = self.shared.inbox.lock();
        if inbox.entries.is_empty() && !self.shared.stopping.load(Ordering::Acquire) {
            match wake_at {
                Some(at) => {
                    inbox.sleep = Sleep::Until(at);
                    // Timed out or notified: either way the loop looks again.
                    let _ = self.shared.wake.wait_until(&mut inbox, at);
                }
                None => {
                    inbox.sleep = Sleep::Forever;
                    self.shared.wake.wait(&mut inbox);
                }
            }
            bump(&self.shared.counters.wakeups);
        }
        inbox.sleep = Sleep::Awake;
        if self.shared.stopping.load(Ordering::Acquire) {
            return false;
        }
        std::mem::swap(&mut inbox.entries, &mut self.batch);
        true
    }

    /// Moves the batch into the wheel, processes every tick that has begun
    /// by `now`, and runs the due tasks.
    fn advance(&mut self, now: Instant) {
        let now_tick = self.clock.now_tick(now);
        if self.wheel.is_empty() {
            // Nothing is waiting in the ticks slept through: skip them.
            self.next_tick = self.next_tick.max(now_tick);
        }
        for mut entry in self.batch.drain(..) {
            if !entry.timeout.is_pending() {
                continue; // Cancelled on its way in.
            }
            entry.deadline_tick = self.clock.deadline_tick(entry.timeout.deadline()).max(self.next_tick);
            self.wheel.insert(entry);
        }
        while self.next_tick <= now_tick {
            self.wheel.expire(self.next_tick, now, &mut self.due);
            self.next_tick += 1;
        }
        self.fire_due();
        if !self.wheel.is_empty() && self.shared.counters.pending.load(Ordering::Acquire) == 0 {
            // Only cancelled entries can be left: drop them now so the
            // thread can sleep until the next schedule.
            self.wheel.purge();
        }
    }

    /// Runs the due tasks whose cancel did not win, catching panics.
    fn fire_due(&mut self) {
        let counters = &self.shared.counters;
        for entry in self.due.drain(..) {
            if self.shared.stopping.load(Ordering::Acquire) {
                // Shutdown began during this pass: the rest are dropped.
                if entry.timeout.leave_pending(DROPPED) {
                    counters.pending.fetch_sub(1, Ordering::AcqRel);
                    bump(&counters.dropped);
                }
                continue;
            }
            if !entry.timeout.leave_pending(FIRED) {
                continue; // Cancelled after the bucket visit.
            }
            counters.pending.fetch_sub(1, Ordering::AcqRel);
            bump(&counters.fired);
            if let Err(panic) = catch_unwind(AssertUnwindSafe(entry.task)) {
                bump(&counters.panicked);
                let msg = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(non-string panic payload)");
                log::error!("timer task panicked: {msg}; the timer thread goes on");
            }
        }
    }

    /// When to wake next: the tick of the first due bucket (at most one
    /// revolution on). With an empty wheel, `None` (sleep until a schedule
    /// arrives) unless this pass took new timers that did not all fire
    /// (`linger`): then linger one revolution, so that a burst of
    /// schedules and cancels (whose timers are all gone by the time the
    /// thread looks) does not pay a notify for every few schedules. An idle timer thus
    /// wakes at most once more after its last cancel, then sleeps
    /// indefinitely; after its last timer fired, it sleeps at once.
    fn next_wake(&self, now: Instant, linger: bool) -> Option<Instant> {
        let Some(tick) = self.wheel.next_due_tick(self.next_tick) else {
            return if linger { now.checked_add(self.revolution) } else { None };
        };
        // Past what `Instant` holds: wake in a while and look again.
        self.clock.tick_instant(tick).or_else(|| now.checked_add(self.revolution))
    }

    /// Drops every unfired timer (shutdown).
    fn discard_all(&mut self) {
        let mut all = self.wheel.drain_all();
        all.append(&mut self.batch);
        all.append(&mut self.due);
        all.append(&mut self.shared.inbox.lock().entries);
        let counters = &self.shared.counters;
        for entry in all {
            if entry.timeout.leave_pending(DROPPED) {
                counters.pending.fetch_sub(1, Ordering::AcqRel);
                bump(&counters.dropped);
            }
        }
    }
}
