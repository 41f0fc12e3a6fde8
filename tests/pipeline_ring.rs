//! Tests of the stage ring (`ringraft::pipeline::ring`): ordering, batching,
//! backpressure, closing from either end, deadlines, and the lost-wake-up stress test
//! that runs a parking consumer against many bursty producers under a watchdog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ringraft::pipeline::ring::{ring, Recv, RingReceiver, RingSender, SendError};

/// How long any test may wait for a consumer before declaring a hang.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Seeded xorshift64*: reproducible pauses without an external crate.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Spins (without yielding) for about `us` microseconds.
fn spin_for(us: u64) {
    let until = Instant::now() + Duration::from_micros(us);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Encodes (producer, seq) in one u64.
fn item(producer: u64, seq: u64) -> u64 {
    (producer << 32) | seq
}

/// Runs `f` on a thread and waits for its result at most [`WATCHDOG`]; `progress`
/// names what has arrived so far when it times out.
fn with_watchdog<R: Send + 'static>(what: &str, progress: Arc<AtomicU64>, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(f());
    });
    match done_rx.recv_timeout(WATCHDOG) {
        Ok(r) => r,
        Err(e) => panic!(
            "{what}: consumer did not finish within {WATCHDOG:?} ({e}); {} items arrived (lost wake-up?)",
            progress.load(Ordering::SeqCst)
        ),
    }
}

/// Consumes until Closed, checking FIFO per producer; returns (per-producer counts, receiver).
fn consume_all(mut rx: RingReceiver<u64>, producers: usize, progress: Arc<AtomicU64>) -> (Vec<u64>, RingReceiver<u64>) {
    let mut next = vec![0u64; producers];
    let mut out = Vec::new();
    loop {
        match rx.recv_batch(&mut out, None) {
            Recv::Items => {
                for v in out.drain(..) {
                    let (p, seq) = ((v >> 32) as usize, v & 0xffff_ffff);
                    assert_eq!(seq, next[p], "producer {p}: got seq {seq}, expected {}", next[p]);
                    next[p] += 1;
                    progress.fetch_add(1, Ordering::SeqCst);
                }
            }
            Recv::Idle => panic!("recv_batch without deadline returned Idle"),
            Recv::Closed => return (next, rx),
        }
    }
}

/// Sends with retry on Full (short sleep), pausing at random between items.
fn produce(mut tx: RingSender<u64>, id: u64, count: u64, seed: u64) {
    let mut rng = XorShift::new(seed);
    for seq in 0..count {
        match rng.below(8) {
            0..=3 => {}
            4..=5 => spin_for(rng.below(5)),
            _ => thread::sleep(Duration::from_micros(rng.below(200))),
        }
        let mut v = item(id, seq);
        loop {
            match tx.try_send(v) {
                Ok(()) => break,
                Err(SendError::Full(back)) => {
                    v = back;
                    thread::sleep(Duration::from_micros(20));
                }
                Err(SendError::Closed(_)) => panic!("producer {id}: receiver gone"),
            }
        }
    }
}

#[test]
fn ends_are_send() {
    fn assert_send<S: Send>() {}
    assert_send::<RingSender<String>>();
    assert_send::<RingReceiver<String>>();
}

#[test]
fn lost_wakeup_stress() {
    const PRODUCERS: u64 = 8;
    const PER_PRODUCER: u64 = 20_000;
    let seed: u64 = std::env::var("RING_STRESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234);
    let (tx, rx) = ring::<u64>("stress", 64, Duration::ZERO);
    let progress = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for id in 0..PRODUCERS {
        let tx = tx.clone();
        handles.push(thread::spawn(move || produce(tx, id, PER_PRODUCER, seed ^ (id + 1).wrapping_mul(0x9e37))));
    }
    drop(tx);
    let p = Arc::clone(&progress);
    let (counts, rx) =
        with_watchdog("lost_wakeup_stress", Arc::clone(&progress), move || consume_all(rx, PRODUCERS as usize, p));
    for h in handles {
        h.join().expect("producer panicked");
    }
    assert_eq!(counts, vec![PER_PRODUCER; PRODUCERS as usize], "seed {seed}");
    let stats = rx.stats();
    eprintln!("lost_wakeup_stress seed {seed}: {stats:?}");
    assert_eq!(stats.items, PRODUCERS * PER_PRODUCER);
    assert!(stats.parks > 0, "consumer never parked: {stats:?}");
    assert!(stats.unparks > 0, "no producer ever unparked: {stats:?}");
}

/// Like `lost_wakeup_stress` but with pauses of at most a few µs of spinning and
/// random batch sizes, so publications land as often as possible inside the window
/// between the consumer announcing sleep and parking.
#[test]
fn lost_wakeup_stress_tight() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 50_000;
    let seed: u64 = std::env::var("RING_STRESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x7157_0001);
    let (tx, rx) = ring::<u64>("stress-tight", 64, Duration::ZERO);
    let progress = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let mut tx = tx.clone();
            let mut rng = XorShift::new(seed ^ (id + 1).wrapping_mul(0x51_7cc1));
            thread::spawn(move || {
                let mut batch = Vec::new();
                let mut seq = 0;
                while seq < PER_PRODUCER || !batch.is_empty() {
                    if batch.is_empty() {
                        let n = (1 + rng.below(8)).min(PER_PRODUCER - seq);
                        batch.extend((seq..seq + n).map(|s| item(id, s)));
                        seq += n;
                    }
                    match tx.try_send_batch(&mut batch) {
                        Ok(()) => spin_for(rng.below(4)),
                        Err(SendError::Full(())) => thread::sleep(Duration::from_micros(5)),
                        Err(SendError::Closed(())) => panic!("producer {id}: receiver gone"),
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let p = Arc::clone(&progress);
    let (counts, rx) = with_watchdog("lost_wakeup_stress_tight", Arc::clone(&progress), move || {
        consume_all(rx, PRODUCERS as usize, p)
    });
    for h in handles {
        h.join().expect("producer panicked");
    }
    assert_eq!(counts, vec![PER_PRODUCER; PRODUCERS as usize], "seed {seed}");
    let stats = rx.stats();
    eprintln!("lost_wakeup_stress_tight seed {seed}: {stats:?}");
    assert!(stats.parks > 0, "consumer never parked: {stats:?}");
}

/// One item at a time: the producer publishes after a random short pause and waits for
/// the consumer to count it, so every single lost wake-up stalls a round (detected
/// within seconds, not at the end of a stream that later items might rescue).
#[test]
fn lost_wakeup_single_item_rounds() {
    const ROUNDS: u64 = 20_000;
    const ROUND_TIME_MAX: Duration = Duration::from_secs(10);
    let (mut tx, rx) = ring::<u64>("rounds", 64, Duration::ZERO);
    let progress = Arc::new(AtomicU64::new(0));
    let p = Arc::clone(&progress);
    let consumer = thread::spawn(move || consume_all(rx, 1, p));
    let mut rng = XorShift::new(0xb0b);
    for round in 0..ROUNDS {
        // Mostly sub-microsecond pauses: land inside the consumer's park path.
        let pause = if round % 2 == 0 { (round / 2) % 256 } else { rng.below(1_024) };
        for _ in 0..pause {
            std::hint::spin_loop();
        }
        tx.try_send(item(0, round)).expect("ring has room: one item in flight");
        let deadline = Instant::now() + ROUND_TIME_MAX;
        while progress.load(Ordering::SeqCst) <= round {
            assert!(
                Instant::now() < deadline,
                "round {round}: item not received within {ROUND_TIME_MAX:?} (lost wake-up)"
            );
            std::hint::spin_loop();
        }
    }
    drop(tx);
    let (counts, rx) = consumer.join().expect("consumer panicked");
    assert_eq!(counts, vec![ROUNDS]);
    eprintln!("lost_wakeup_single_item_rounds: {:?}", rx.stats());
    assert!(rx.stats().parks > 0);
}

#[test]
fn fifo_per_producer_with_spinning_consumer() {
    let (tx, rx) = ring::<u64>("fifo", 128, Duration::from_micros(50));
    let progress = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..4)
        .map(|id| {
            let tx = tx.clone();
            thread::spawn(move || produce_fast(tx, id, 50_000))
        })
        .collect();
    drop(tx);
    let p = Arc::clone(&progress);
    let (counts, _rx) = with_watchdog("fifo", Arc::clone(&progress), move || consume_all(rx, 4, p));
    for h in handles {
        h.join().expect("producer panicked");
    }
    assert_eq!(counts, vec![50_000; 4]);
}

/// Sends as fast as the ring allows, in batches of up to 16, retrying on Full.
fn produce_fast(mut tx: RingSender<u64>, id: u64, count: u64) {
    let mut batch = Vec::new();
    let mut seq = 0;
    while seq < count || !batch.is_empty() {
        while batch.len() < 16 && seq < count {
            batch.push(item(id, seq));
            seq += 1;
        }
        match tx.try_send_batch(&mut batch) {
            Ok(()) => assert!(batch.is_empty()),
            Err(SendError::Full(())) => thread::sleep(Duration::from_micros(10)),
            Err(SendError::Closed(())) => panic!("receiver gone"),
        }
    }
}

#[test]
fn batch_drains_everything_available() {
    let (mut tx, mut rx) = ring::<u32>("drain", 256, Duration::ZERO);
    for i in 0..200 {
        tx.try_send(i).expect("room");
    }
    let mut out = vec![999];
    assert_eq!(rx.try_recv_batch(&mut out), Recv::Items);
    assert_eq!(out.len(), 201, "appends to out, keeps what was there");
    assert_eq!(&out[1..], &(0..200).collect::<Vec<_>>()[..]);
    assert_eq!(rx.try_recv_batch(&mut out), Recv::Idle);
    assert_eq!(rx.stats().batches, 1);
}

#[test]
fn full_ring_refuses_at_once_and_loses_nothing() {
    let (mut tx, mut rx) = ring::<u32>("full", 64, Duration::ZERO);
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut out = Vec::new();
    for i in 0..1_000u32 {
        let started = Instant::now();
        match tx.try_send(i) {
            Ok(()) => accepted.push(i),
            Err(SendError::Full(v)) => {
                assert_eq!(v, i, "Full gives the same value back");
                assert!(started.elapsed() < Duration::from_secs(1), "try_send blocked");
                refused += 1;
            }
            Err(SendError::Closed(_)) => panic!("receiver alive"),
        }
        if i % 100 == 99 {
            assert_eq!(rx.try_recv_batch(&mut out), Recv::Items);
        }
    }
    while rx.try_recv_batch(&mut out) == Recv::Items {}
    assert!(refused > 0);
    assert_eq!(out, accepted, "every accepted item arrives once, in order");
}

#[test]
fn batch_send_is_all_or_nothing() {
    let (mut tx, mut rx) = ring::<u32>("batch", 64, Duration::ZERO);
    let mut first: Vec<u32> = (0..40).collect();
    tx.try_send_batch(&mut first).expect("room for 40");
    assert!(first.is_empty());
    let mut second: Vec<u32> = (40..80).collect();
    assert!(matches!(tx.try_send_batch(&mut second), Err(SendError::Full(()))));
    assert_eq!(second, (40..80).collect::<Vec<_>>(), "refused batch is untouched");
    let mut out = Vec::new();
    assert_eq!(rx.try_recv_batch(&mut out), Recv::Items);
    tx.try_send_batch(&mut second).expect("room after drain");
    assert_eq!(rx.try_recv_batch(&mut out), Recv::Items);
    assert_eq!(out, (0..80).collect::<Vec<_>>());
}

#[test]
fn closed_after_last_sender_dropped_and_drained() {
    let (mut tx, mut rx) = ring::<u32>("close", 64, Duration::ZERO);
    let mut tx2 = tx.clone();
    tx.try_send(1).expect("room");
    tx2.try_send(2).expect("room");
    drop(tx);
    let mut out = Vec::new();
    tx2.try_send(3).expect("room");
    drop(tx2);
    assert_eq!(rx.try_recv_batch(&mut out), Recv::Items);
    assert_eq!(out, vec![1, 2, 3]);
    assert_eq!(rx.recv_batch(&mut out, None), Recv::Closed);
    assert_eq!(rx.try_recv_batch(&mut out), Recv::Closed);
}

#[test]
fn parked_consumer_wakes_on_close() {
    for spin in [Duration::ZERO, Duration::from_micros(50)] {
        let (tx, rx) = ring::<u32>("close-wake", 64, spin);
        let (parked_tx, parked_rx) = mpsc::channel();
        let consumer = thread::spawn(move || {
            let mut rx = rx;
            let mut out = Vec::new();
            parked_tx.send(()).expect("main alive");
            let got = rx.recv_batch(&mut out, None);
            (got, rx.stats())
        });
        parked_rx.recv().expect("consumer started");
        // Give the consumer time to park; if it has not, the test still checks Closed.
        thread::sleep(Duration::from_millis(50));
        drop(tx);
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = done_tx.send(consumer.join());
        });
        let (got, stats) = done_rx.recv_timeout(WATCHDOG).expect("consumer hung after close").expect("no panic");
        assert_eq!(got, Recv::Closed, "spin {spin:?}, {stats:?}");
    }
}

#[test]
fn send_fails_closed_after_receiver_dropped() {
    let (mut tx, rx) = ring::<String>("gone", 64, Duration::ZERO);
    assert!(!tx.is_closed());
    drop(rx);
    assert!(tx.is_closed());
    match tx.try_send("a".to_string()) {
        Err(SendError::Closed(v)) => assert_eq!(v, "a"),
        other => panic!("expected Closed, got {other:?}"),
    }
    let mut batch = vec!["b".to_string()];
    assert!(matches!(tx.try_send_batch(&mut batch), Err(SendError::Closed(()))));
    assert_eq!(batch, vec!["b".to_string()]);
}

#[test]
fn deadline_returns_idle() {
    for spin in [Duration::ZERO, Duration::from_micros(50), Duration::from_millis(100)] {
        let (_tx, mut rx) = ring::<u32>("deadline", 64, spin);
        let mut out = Vec::new();
        let started = Instant::now();
        let wait = Duration::from_millis(20);
        assert_eq!(rx.recv_batch(&mut out, Some(started + wait)), Recv::Idle);
        let took = started.elapsed();
        assert!(took >= wait, "spin {spin:?}: returned after {took:?}, before the deadline");
        assert!(took < Duration::from_secs(5), "spin {spin:?}: took {took:?}");
        assert!(out.is_empty());
        assert_eq!(rx.recv_batch(&mut out, Some(Instant::now())), Recv::Idle, "past deadline");
    }
}

#[test]
fn receiver_moved_to_another_thread_is_still_woken() {
    let (mut tx, mut rx) = ring::<u32>("moved", 64, Duration::ZERO);
    let mut out = Vec::new();
    // Park once on this thread so this thread is the registered one.
    assert_eq!(rx.recv_batch(&mut out, Some(Instant::now() + Duration::from_millis(5))), Recv::Idle);
    let (started_tx, started_rx) = mpsc::channel();
    let consumer = thread::spawn(move || {
        let mut out = Vec::new();
        started_tx.send(()).expect("main alive");
        let got = rx.recv_batch(&mut out, None);
        (got, out)
    });
    started_rx.recv().expect("consumer started");
    thread::sleep(Duration::from_millis(20));
    tx.try_send(7).expect("room");
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(consumer.join());
    });
    let (got, out) = done_rx.recv_timeout(WATCHDOG).expect("moved consumer never woke").expect("no panic");
    assert_eq!((got, out), (Recv::Items, vec![7]));
}

/// Values still in the ring when the receiver goes are dropped then, not
/// kept in their slots while senders live (a callback in a slot would never
/// be answered otherwise).
#[test]
fn values_left_in_the_ring_are_dropped_with_the_receiver() {
    struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (mut tx, rx) = ring::<Counted>("leftovers", 64, std::time::Duration::ZERO);
    for _ in 0..10 {
        assert!(tx.try_send(Counted(dropped.clone())).is_ok());
    }
    drop(rx);
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 10, "left-over values outlived the receiver");
    match tx.try_send(Counted(dropped.clone())) {
        Err(SendError::Closed(v)) => drop(v),
        _ => panic!("a send after the receiver went was not refused"),
    }
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 11);
}
