//! The bounded MPSC stage ring: many producers, one consumer, on the `disruptor` crate.
//!
//! Every stage of the pipeline owns one [`RingReceiver`] and drains it as a batch;
//! any thread may hold a [`RingSender`]. The ring owns the slots, the backpressure
//! (a full ring refuses, it never blocks: [`RingSender::try_send`] hands the value
//! back) and the wait strategy: the consumer spins for a bounded time, then parks
//! until a producer publishes (the private `wait` module explains why no wake-up is lost).
//!
//! The disruptor gives consumers `&E` only, so a slot is a `Mutex<Option<T>>`: the
//! producer writes through `&mut E` without locking, the consumer `take()`s the value
//! out under an uncontended lock. We use the disruptor's `EventPoller`, never its
//! consumer threads (those only busy-spin or sleep).
//!
//! Non-guarantees: the capacity is rounded up to a power of two and to at least
//! [`CAPACITY_MIN`] (the disruptor's multi-producer minimum); a value sent just before
//! the receiver is dropped is dropped with the ring, not returned.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use disruptor::{
    build_multi_producer, EventPoller, MultiProducer, MultiProducerBarrier, Polling, Producer, SingleConsumerBarrier,
};

use super::wait::{WaitCell, Waiter};

/// The wait strategy the disruptor's builder asks for. It is only used by
/// consumer threads the disruptor spawns itself (`handle_events_with`); our
/// consumers are `EventPoller`s that wait with [`Waiter`], so it is never
/// called. Should it ever be, it naps instead of spinning: the disruptor's
/// own strategies all spin or sleep blindly.
#[derive(Clone, Copy)]
struct PollerOnly;

impl disruptor::wait_strategies::WaitStrategy for PollerOnly {
    fn wait_for(&self, _sequence: disruptor::Sequence) {
        std::thread::park_timeout(Duration::from_micros(50));
    }
}

/// The smallest ring: the disruptor's multi-producer barrier needs 64 slots.
pub const CAPACITY_MIN: usize = 64;

/// One slot of the ring. Producers fill it through `&mut` (no locking); the consumer,
/// which only gets `&Slot`, moves the value out under an uncontended lock.
/// Invariant: `Some` exactly between publication and consumption.
struct Slot<T>(parking_lot::Mutex<Option<T>>);

/// A `try_send` refused because the ring was full; gives the value back.
pub struct Full<T>(pub T);

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

/// Why a send was refused. Either way the value comes back untouched.
pub enum SendError<T> {
    /// The ring is full; retry after the consumer drains (backpressure).
    Full(T),
    /// The receiver was dropped; nothing will ever be consumed again.
    Closed(T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(v) | SendError::Closed(v) => v,
        }
    }

    /// True for [`SendError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }
}

impl<T> From<Full<T>> for SendError<T> {
    fn from(full: Full<T>) -> Self {
        SendError::Full(full.0)
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("ring is full (the consumer stage is behind)"),
            SendError::Closed(_) => f.write_str("ring is closed (the consumer stage is gone)"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// What a receive call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// At least one item was moved into `out`.
    Items,
    /// Nothing arrived (no items now, or the deadline passed).
    Idle,
    /// All senders are gone and the ring is drained: nothing will ever arrive.
    Closed,
}

/// Counters of one ring, read from the receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Non-empty batches received.
    pub batches: u64,
    /// Items received.
    pub items: u64,
    /// Times the consumer parked its thread.
    pub parks: u64,
    /// Times a producer (or the last sender, on close) unparked the consumer.
    pub unparks: u64,
}

/// State shared by all ends of one ring.
struct Shared {
    /// Name for diagnostics (panics, `Debug`).
    name: &'static str,
    /// Slots in the ring. Invariant: a power of two, `>= CAPACITY_MIN`.
    capacity: usize,
    /// Wake-up flag and the consumer's thread.
    wait: WaitCell,
    /// Live `RingSender`s. Invariant: once 0 it stays 0 (no sender to clone from).
    senders: AtomicUsize,
    /// Set when the `RingReceiver` is dropped; senders then get `SendError::Closed`.
    receiver_gone: AtomicBool,
    /// Sends between their `receiver_gone` check and the end of their publish.
    /// The dropping receiver waits for 0 before it drains, so no value is ever
    /// published into a ring nobody will drain (see `RingReceiver::drop`).
    publishing: AtomicUsize,
}

/// Creates a ring named `name` with room for `capacity` items (rounded up to a power
/// of two and to at least [`CAPACITY_MIN`]). The consumer spins for at most `spin`
/// before parking when it finds the ring empty.
///
/// # Panics
///
/// If the rounded capacity overflows `usize`.
pub fn ring<T: Send + 'static>(
    name: &'static str,
    capacity: usize,
    spin: Duration,
) -> (RingSender<T>, RingReceiver<T>) {
    let capacity = capacity.max(CAPACITY_MIN);
    let capacity =
        capacity.checked_next_power_of_two().unwrap_or_else(|| panic!("ring {name}: capacity {capacity} overflows"));
    let shared = Arc::new(Shared {
        name,
        capacity,
        wait: WaitCell::new(),
        senders: AtomicUsize::new(1),
        receiver_gone: AtomicBool::new(false),
        publishing: AtomicUsize::new(0),
    });
    let factory = || Slot(parking_lot::Mutex::new(None));
    let (poller, builder) = build_multi_producer(capacity, factory, PollerOnly).new_event_poller();
    let producer = builder.build();
    let sender = RingSender { producer, close: CloseOnDrop(Arc::clone(&shared)) };
    let receiver = RingReceiver { poller, shared, spin, waiter: Waiter::new(), batches: 0, items: 0 };
    (sender, receiver)
}

/// The producer end of a ring. `Clone` for more producers; each clone is its own
/// disruptor producer handle. Dropping the last one closes the ring.
pub struct RingSender<T> {
    /// Declared before `close` so it drops first: the disruptor marks the shutdown
    /// sequence before the consumer is woken to observe it.
    producer: MultiProducer<Slot<T>, SingleConsumerBarrier>,
    /// Counts this sender; wakes the consumer when the last sender goes.
    close: CloseOnDrop,
}

/// Decrements the sender count on drop and wakes the consumer after the last one.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.wait.notify();
        }
    }
}

impl<T> Clone for RingSender<T> {
    fn clone(&self) -> Self {
        self.close.0.senders.fetch_add(1, Ordering::SeqCst);
        RingSender { producer: self.producer.clone(), close: CloseOnDrop(Arc::clone(&self.close.0)) }
    }
}

impl<T> fmt::Debug for RingSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingSender").field("name", &self.close.0.name).finish()
    }
}

impl<T: Send> RingSender<T> {
    /// Publishes `value` without blocking and wakes the consumer if it is parked.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] when no slot is free, [`SendError::Closed`] when the
    /// receiver is gone; both hand the value back.
    pub fn try_send(&mut self, value: T) -> Result<(), SendError<T>> {
        if !self.enter() {
            return Err(SendError::Closed(value));
        }
        let mut value = Some(value);
        let published = self.producer.try_publish(|slot| *slot.0.get_mut() = value.take());
        self.leave();
        match published {
            Ok(_) => {
                self.close.0.wait.notify();
                Ok(())
            }
            // The closure did not run on failure, so the value is still here.
            Err(_) => match value {
                Some(v) => Err(SendError::Full(v)),
                None => unreachable!("ring {}: try_publish failed after taking the value", self.close.0.name),
            },
        }
    }

    /// Publishes every item of `values` or none of them, without blocking, with one
    /// wake-up for the batch. On success `values` is empty (its capacity is kept).
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] when fewer than `values.len()` slots are free (always the
    /// case when `values.len()` exceeds [`RingSender::capacity`]), [`SendError::Closed`]
    /// when the receiver is gone; `values` is then untouched.
    pub fn try_send_batch(&mut self, values: &mut Vec<T>) -> Result<(), SendError<()>> {
        if values.is_empty() {
            return Ok(());
        }
        if !self.enter() {
            return Err(SendError::Closed(()));
        }
        let n = values.len();
        let published = self.producer.try_batch_publish(n, |slots| {
            for (slot, v) in slots.zip(values.drain(..)) {
                *slot.0.get_mut() = Some(v);
            }
        });
        self.leave();
        match published {
            Ok(_) => {
                self.close.0.wait.notify();
                Ok(())
            }
            Err(_) => Err(SendError::Full(())),
        }
    }

    /// Announces a publish; false (and nothing announced) if the receiver is gone.
    fn enter(&self) -> bool {
        let shared = &self.close.0;
        shared.publishing.fetch_add(1, Ordering::SeqCst);
        if shared.receiver_gone.load(Ordering::SeqCst) {
            shared.publishing.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn leave(&self) {
        self.close.0.publishing.fetch_sub(1, Ordering::SeqCst);
    }

    /// True once the receiver is dropped: every further send fails with `Closed`.
    pub fn is_closed(&self) -> bool {
        self.close.0.receiver_gone.load(Ordering::Acquire)
    }

    /// Slots in the ring (the requested capacity after rounding).
    pub fn capacity(&self) -> usize {
        self.close.0.capacity
    }
}

/// The consumer end of a ring: one per ring, not `Clone`. It may move between
/// threads; the wait strategy re-registers the thread that parks.
pub struct RingReceiver<T> {
    /// The disruptor's polling consumer over the slots.
    poller: EventPoller<Slot<T>, MultiProducerBarrier>,
    /// Shared with the senders.
    shared: Arc<Shared>,
    /// How long to spin on an empty ring before parking.
    spin: Duration,
    /// Consumer half of the wait protocol (also counts parks).
    waiter: Waiter,
    /// Non-empty batches received.
    batches: u64,
    /// Items received.
    items: u64,
}

impl<T> fmt::Debug for RingReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingReceiver").field("name", &self.shared.name).field("spin", &self.spin).finish()
    }
}

impl<T> Drop for RingReceiver<T> {
    /// Closes the ring for senders, waits for publishes already past their
    /// check (they never block, so the wait is a few instructions), then drops
    /// every value still in the ring here, so none outlives the receiver in a
    /// slot (values with drop side effects, like callbacks, run them now).
    /// A sender either sees `receiver_gone` or is counted in `publishing`:
    /// both are SeqCst, so the receiver cannot miss a publish in between.
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::SeqCst);
        let mut spins = 0u32;
        while self.shared.publishing.load(Ordering::SeqCst) != 0 {
            spins += 1;
            if spins < 1_000 {
                std::hint::spin_loop();
            } else {
                // The publisher was preempted mid-publish: nap, do not burn.
                std::thread::park_timeout(Duration::from_micros(50));
            }
        }
        let mut rest = Vec::new();
        while drain_slots(&mut self.poller, &mut rest) {}
        drop(rest);
    }
}

impl<T: Send> RingReceiver<T> {
    /// Moves every item available now into `out` (one batch: it drains, it never
    /// waits to fill). If none is available, spins for at most the ring's `spin`, then
    /// parks until a sender publishes, the last sender goes, or `deadline` passes
    /// (`None`: no deadline).
    pub fn recv_batch(&mut self, out: &mut Vec<T>, deadline: Option<Instant>) -> Recv {
        let got = self.try_recv_batch(out);
        if got != Recv::Idle {
            return got;
        }
        let (poller, shared) = (&self.poller, &*self.shared);
        if self.waiter.spin(self.spin, deadline, || ready(poller, shared)) {
            let got = self.try_recv_batch(out);
            if got != Recv::Idle {
                return got;
            }
        }
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Recv::Idle;
            }
            let (poller, shared) = (&self.poller, &*self.shared);
            self.waiter.park_once(&shared.wait, deadline, || ready(poller, shared));
            let got = self.try_recv_batch(out);
            if got != Recv::Idle {
                return got;
            }
        }
    }

    /// Like [`RingReceiver::recv_batch`] but never waits.
    pub fn try_recv_batch(&mut self, out: &mut Vec<T>) -> Recv {
        if self.drain_into(out) {
            return Recv::Items;
        }
        // The ring is closed once no sender is left and nothing is in it. Re-drain:
        // the last sender may have published between the poll above and the drop.
        if self.shared.senders.load(Ordering::SeqCst) == 0 {
            return if self.drain_into(out) { Recv::Items } else { Recv::Closed };
        }
        Recv::Idle
    }

    /// Counters so far.
    pub fn stats(&self) -> RingStats {
        RingStats {
            batches: self.batches,
            items: self.items,
            parks: self.waiter.parks,
            unparks: self.shared.wait.unparks(),
        }
    }

    /// The name given to [`ring`].
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Moves everything available into `out`; returns whether anything was moved.
    fn drain_into(&mut self, out: &mut Vec<T>) -> bool {
        let before = out.len();
        if !drain_slots(&mut self.poller, out) {
            return false;
        }
        self.batches += 1;
        self.items += (out.len() - before) as u64;
        true
    }
}

/// Moves every available value into `out`; false when none was available.
fn drain_slots<T>(poller: &mut EventPoller<Slot<T>, MultiProducerBarrier>, out: &mut Vec<T>) -> bool {
    let mut guard = match poller.poll() {
        Ok(guard) => guard,
        // Shutdown is also derived from the sender count (see try_recv_batch).
        Err(Polling::NoEvents) | Err(Polling::Shutdown) => return false,
    };
    let slots = &mut guard;
    let n = slots.len();
    out.reserve(n);
    for slot in slots {
        match slot.0.lock().take() {
            Some(v) => out.push(v),
            None => panic!("ring: a published slot is empty (batch of {n})"),
        }
    }
    true
}

/// The consumer's wake condition: an item is available or no sender is left.
fn ready<T>(poller: &EventPoller<Slot<T>, MultiProducerBarrier>, shared: &Shared) -> bool {
    poller.has_available() || shared.senders.load(Ordering::SeqCst) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_rounded_up() {
        let (tx, _rx) = ring::<u32>("t", 3, Duration::ZERO);
        assert_eq!(tx.capacity(), CAPACITY_MIN);
        let (tx, _rx) = ring::<u32>("t", 100, Duration::ZERO);
        assert_eq!(tx.capacity(), 128);
        let (tx, _rx) = ring::<u32>("t", 256, Duration::ZERO);
        assert_eq!(tx.capacity(), 256);
    }

    #[test]
    fn full_ring_gives_value_back() {
        let (mut tx, mut rx) = ring::<String>("t", 64, Duration::ZERO);
        for i in 0..64 {
            tx.try_send(i.to_string()).expect("room");
        }
        match tx.try_send("x".to_string()) {
            Err(SendError::Full(v)) => assert_eq!(v, "x"),
            other => panic!("expected Full, got {other:?}"),
        }
        let mut out = Vec::new();
        assert_eq!(rx.try_recv_batch(&mut out), Recv::Items);
        assert_eq!(out.len(), 64);
        assert_eq!(out[63], "63");
        tx.try_send("y".to_string()).expect("room after drain");
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let (mut tx, mut rx) = ring::<u32>("t", 64, Duration::ZERO);
        let mut big: Vec<u32> = (0..65).collect();
        assert!(matches!(tx.try_send_batch(&mut big), Err(SendError::Full(()))));
        assert_eq!(big.len(), 65);
        let mut ok: Vec<u32> = (0..60).collect();
        tx.try_send_batch(&mut ok).expect("room");
        assert!(ok.is_empty());
        let mut five: Vec<u32> = (0..5).collect();
        assert!(matches!(tx.try_send_batch(&mut five), Err(SendError::Full(()))));
        assert_eq!(five, vec![0, 1, 2, 3, 4]);
        let mut out = Vec::new();
        assert_eq!(rx.try_recv_batch(&mut out), Recv::Items);
        assert_eq!(out, (0..60).collect::<Vec<_>>());
        assert_eq!(rx.stats().batches, 1);
        assert_eq!(rx.stats().items, 60);
    }

    #[test]
    fn unconsumed_items_are_dropped_with_the_ring() {
        let item = Arc::new(());
        let (mut tx, rx) = ring::<Arc<()>>("t", 64, Duration::ZERO);
        tx.try_send(Arc::clone(&item)).expect("room");
        drop(rx);
        drop(tx);
        assert_eq!(Arc::strong_count(&item), 1);
    }
}
