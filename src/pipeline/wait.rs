//! Spin-then-park wait strategy for the single consumer of a stage ring.
//!
//! The disruptor crate only offers busy-spinning and sleeping wait strategies, so the
//! stage rings ([`super::ring`]) wait on their own: the consumer spins for a bounded
//! time, then parks its thread; producers unpark it after publishing. This file owns
//! the shared flag and thread handle that make this safe ([`WaitCell`]) and the
//! consumer's half of the protocol ([`Waiter`]).
//!
//! # Why no wake-up is lost
//!
//! The protocol is the Dekker (store-buffer) pattern with two `SeqCst` fences:
//!
//! ```text
//! consumer (Waiter::park_once)            producer (WaitCell::notify)
//!   sleeping.store(true)                    publish slot (availability bit, Release RMW)
//!   fence(SeqCst)                           fence(SeqCst)
//!   ready()?  -- re-check the ring          sleeping.load() -- then swap(false) + unpark
//! ```
//!
//! The two fences are totally ordered. If the consumer's fence comes first, the
//! producer's load of `sleeping` observes `true` and it unparks the consumer. If the
//! producer's fence comes first, the consumer's re-check observes the publication and
//! it does not park. Either way a published item is never left behind a parked
//! consumer. The thread handle is stored before `sleeping` is set, so a producer that
//! sees `sleeping == true` (its `swap` acquires the consumer's store) also sees the
//! handle. `Thread::unpark` leaves a token when the target is not parked yet, so an
//! unpark that lands between the re-check and `park()` is not lost either. Stray
//! tokens only cause spurious returns from `park`, and the caller loops.
//!
//! Closing uses the same pattern: the last sender decrements the sender count (a
//! `SeqCst` read-modify-write) and then calls [`WaitCell::notify`]; the consumer's
//! `ready()` includes "no senders left".
//!
//! Non-guarantees: a wake-up can be spurious; nothing bounds the time between an
//! `unpark` and the consumer running (that is the scheduler's business).

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::thread::{self, Thread, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How many spin iterations pass between two reads of the clock while spinning.
const SPINS_PER_CLOCK_READ: u32 = 64;

/// The state shared by the producers and the one consumer of a ring.
///
/// Aligned to 128 bytes so that the `sleeping` flag, which every producer reads after
/// every publication, does not share a cache line with unrelated data.
#[repr(align(128))]
pub(crate) struct WaitCell {
    /// True while the consumer is parked or about to park. Set only by the consumer;
    /// cleared by the consumer after waking or by the producer that unparks it.
    sleeping: AtomicBool,
    /// The consumer's thread, registered before `sleeping` is first set to true.
    /// Invariant: whenever `sleeping` is true, this holds the thread that set it.
    thread: Mutex<Option<Thread>>,
    /// Number of `unpark` calls made by producers (and by the last sender on close).
    unparks: AtomicU64,
}

impl WaitCell {
    /// A cell with no consumer registered and nobody sleeping.
    pub(crate) fn new() -> Self {
        Self { sleeping: AtomicBool::new(false), thread: Mutex::new(None), unparks: AtomicU64::new(0) }
    }

    /// Producer side: call after making an item (or the close) visible. Unparks the
    /// consumer if it is parked or about to park; otherwise costs one fence and one load.
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::SeqCst) {
            if let Some(thread) = self.thread.lock().as_ref() {
                thread.unpark();
            }
            self.unparks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Number of unparks issued so far.
    pub(crate) fn unparks(&self) -> u64 {
        self.unparks.load(Ordering::Relaxed)
    }
}

/// The consumer's half of the wait protocol.
pub(crate) struct Waiter {
    /// The thread currently registered in the cell, to avoid re-registering on every park.
    registered: Option<ThreadId>,
    /// Number of times the consumer actually called `park`/`park_timeout`.
    pub(crate) parks: u64,
}

impl Waiter {
    /// A waiter that has not registered any thread yet.
    pub(crate) fn new() -> Self {
        Self { registered: None, parks: 0 }
    }

    /// Spins for at most `spin` (and never past `deadline`) until `ready()` holds.
    /// Returns whether `ready()` held. Never yields the thread.
    pub(crate) fn spin(&self, spin: Duration, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        if spin.is_zero() {
            return false;
        }
        let start = Instant::now();
        loop {
            for _ in 0..SPINS_PER_CLOCK_READ {
                if ready() {
                    return true;
                }
                std::hint::spin_loop();
            }
            let now = Instant::now();
            if now.duration_since(start) >= spin || deadline.is_some_and(|d| now >= d) {
                return ready();
            }
        }
    }

    /// Parks the calling thread once, unless `ready()` holds after announcing the
    /// intent to sleep (see the module docs). Returns on an unpark, a spurious
    /// wake-up, or when `deadline` passes; the caller re-checks and loops.
    pub(crate) fn park_once(&mut self, cell: &WaitCell, deadline: Option<Instant>, ready: impl FnOnce() -> bool) {
        self.register(cell);
        cell.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ready() {
            cell.sleeping.store(false, Ordering::Relaxed);
            return;
        }
        self.parks += 1;
        match deadline {
            None => thread::park(),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    thread::park_timeout(left);
                }
            }
        }
        cell.sleeping.store(false, Ordering::Relaxed);
    }

    /// Stores the current thread in the cell if it is not the registered one (the
    /// receiver is `Send`, so it may move between threads between calls).
    fn register(&mut self, cell: &WaitCell) {
        let current = thread::current();
        if self.registered != Some(current.id()) {
            self.registered = Some(current.id());
            *cell.thread.lock() = Some(current);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn spin_zero_does_not_spin() {
        let waiter = Waiter::new();
        assert!(!waiter.spin(Duration::ZERO, None, || true));
    }

    #[test]
    fn spin_returns_when_ready() {
        let waiter = Waiter::new();
        let mut calls = 0;
        assert!(waiter.spin(Duration::from_secs(5), None, || {
            calls += 1;
            calls > 10
        }));
    }

    #[test]
    fn park_skipped_when_ready_after_announce() {
        let cell = WaitCell::new();
        let mut waiter = Waiter::new();
        waiter.park_once(&cell, None, || true);
        assert_eq!(waiter.parks, 0);
        assert!(!cell.sleeping.load(Ordering::SeqCst));
    }

    #[test]
    fn notify_unparks_a_parked_consumer() {
        let cell = Arc::new(WaitCell::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (c2, f2) = (Arc::clone(&cell), Arc::clone(&flag));
        let consumer = thread::spawn(move || {
            let mut waiter = Waiter::new();
            while !f2.load(Ordering::SeqCst) {
                waiter.park_once(&c2, None, || f2.load(Ordering::SeqCst));
            }
        });
        flag.store(true, Ordering::SeqCst);
        cell.notify();
        consumer.join().expect("consumer thread panicked");
    }
}
