//! Micro-benchmarks of `HashedWheelTimer`, each beside its physical
//! reference measured in the same run.
//!
//! * schedule + cancel: ns per pair over `TIMER_BENCH_PAIRS` (default
//!   1,000,000) pairs on one thread, timers 10 s out so none fires. The
//!   reference is the floor the design pays per pair: the two allocations
//!   (shared state, boxed task) and one uncontended lock + push, freed on
//!   the same thread. The timer frees entries on its own thread, and with
//!   glibc most of the gap is that cross-thread malloc/free.
//! * lateness: fire time minus deadline for `TIMER_BENCH_TIMERS` (default
//!   20,000) timers spread over 1–200 ms, p50/p90/p99/max in µs. The
//!   reference is how late the OS wakes a thread from a timed condvar wait
//!   (the floor under any timer); the wheel adds up to one tick on top.
//!
//! Included from `benches/pipeline.rs`; `run()` prints the results.

use std::env;
use std::hint::black_box;
use std::sync::atomic::AtomicU8;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use ringraft::timer::HashedWheelTimer;

const TICK: Duration = Duration::from_millis(1);
const BUCKETS: usize = 512;

/// Runs both measurements and prints one line each (plus references).
pub fn run() {
    let pairs = knob("TIMER_BENCH_PAIRS", 1_000_000);
    let timers = knob("TIMER_BENCH_TIMERS", 20_000);
    schedule_cancel(pairs);
    lateness(timers);
}

fn knob(name: &str, default: usize) -> usize {
    env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn schedule_cancel(pairs: usize) {
    let timer = HashedWheelTimer::new(TICK, BUCKETS).expect("start the timer thread");
    let delay = Duration::from_secs(10);
    for _ in 0..pairs / 100 {
        timer.schedule(delay, || ()).cancel();
    }
    let start = Instant::now();
    for i in 0..pairs {
        let h = timer.schedule(delay, move || {
            black_box(i);
        });
        black_box(h.cancel());
    }
    let elapsed = start.elapsed();
    let stats = timer.stats();
    drop(timer);
    println!(
        "timer schedule+cancel: {pairs} pairs, {:.1} ns/pair (thread wakeups {})",
        elapsed.as_nanos() as f64 / pairs.max(1) as f64,
        stats.wakeups
    );
    println!("  reference alloc x2 + lock + push, freed on the same thread: {:.1} ns/pair", reference_floor_ns(pairs));
}

/// The allocations and the one lock a schedule cannot avoid.
fn reference_floor_ns(pairs: usize) -> f64 {
    type Boxed = Box<dyn FnOnce() + Send>;
    let inbox: Mutex<Vec<(Arc<AtomicU8>, Boxed)>> = Mutex::new(Vec::with_capacity(1024));
    let start = Instant::now();
    for i in 0..pairs {
        let state = Arc::new(AtomicU8::new(0));
        let task: Boxed = Box::new(move || {
            black_box(i);
        });
        let mut q = inbox.lock();
        q.push((black_box(state), task));
        if q.len() == 1024 {
            q.clear();
        }
    }
    start.elapsed().as_nanos() as f64 / pairs.max(1) as f64
}

fn lateness(timers: usize) {
    let timer = HashedWheelTimer::new(TICK, BUCKETS).expect("start the timer thread");
    let (tx, rx) = mpsc::channel();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..timers {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_micros(1_000 + x % 199_000);
        let deadline = Instant::now() + delay;
        let tx = tx.clone();
        timer.schedule_at(deadline, move || {
            let _ = tx.send(Instant::now().saturating_duration_since(deadline));
        });
    }
    drop(tx);
    let mut late: Vec<Duration> = Vec::with_capacity(timers);
    while let Ok(d) = rx.recv_timeout(Duration::from_secs(10)) {
        late.push(d);
    }
    let stats = timer.stats();
    if late.len() != timers {
        println!("timer lateness: only {} of {timers} timers fired", late.len());
    }
    println!(
        "timer lateness (tick {} ms): {} (thread wakeups {})",
        TICK.as_millis(),
        percentiles(&mut late),
        stats.wakeups
    );
    println!("  reference condvar wait_until oversleep: {}", percentiles(&mut condvar_oversleep(200)));
}

/// How late a timed condvar wait returns, for sub-millisecond targets.
fn condvar_oversleep(samples: usize) -> Vec<Duration> {
    let lock = Mutex::new(());
    let cv = Condvar::new();
    (0..samples)
        .map(|i| {
            let until = Instant::now() + Duration::from_micros(100 + (i as u64 * 37) % 900);
            let mut guard = lock.lock();
            while !cv.wait_until(&mut guard, until).timed_out() {}
            Instant::now().saturating_duration_since(until)
        })
        .collect()
}

fn percentiles(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "no samples".to_string();
    }
    v.sort_unstable();
    let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)].as_micros();
    format!("p50 {} p90 {} p99 {} max {} µs", at(50), at(90), at(99), at(100))
}
