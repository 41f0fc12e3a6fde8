//! Micro-benchmark of the stage ring (`ringraft::pipeline::ring`): one-hop latency
//! from publish to the consumer holding the item, with the consumer parked (spin 0)
//! and still spinning (spin 50 µs), plus batch throughput of one producer. The
//! physical reference printed beside the hops is `std::sync::mpsc::sync_channel`
//! ping-pong in the same run (its receiver also parks).
//!
//! Included from `benches/pipeline.rs` as a plain module; call [`run`]. Bounded:
//! the whole module finishes in a few seconds.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ringraft::pipeline::ring::{ring, Recv, SendError};

/// Hops measured per latency case.
const HOPS: usize = 20_000;
/// Items offered in the throughput case (cut short by `THROUGHPUT_TIME_MAX`).
const THROUGHPUT_ITEMS: u64 = 10_000_000;
/// Wall-clock bound of the throughput case.
const THROUGHPUT_TIME_MAX: Duration = Duration::from_secs(2);
/// Items per `try_send_batch` in the throughput case.
const BATCH_ITEMS: usize = 256;

/// Runs every ring bench and prints one line per figure.
pub fn run() {
    println!("{}", summary("ring hop parked", &hop_latencies(Duration::ZERO)));
    println!("{}", summary("ring hop spinning(50us)", &hop_latencies(Duration::from_micros(50))));
    println!("{}", summary("reference std sync_channel hop", &mpsc_hop_latencies()));
    let (items, secs) = throughput();
    println!(
        "ring throughput: {:.0} items/s ({items} items in {secs:.2} s, batches of {BATCH_ITEMS})",
        items as f64 / secs
    );
}

/// Ping-pong over two rings with consumers spinning for `spin`; returns the one-way
/// latency (ns) of each ping, from just before `try_send` to just after `recv_batch`.
fn hop_latencies(spin: Duration) -> Vec<u64> {
    let (mut ping_tx, mut ping_rx) = ring::<Instant>("bench-ping", 64, spin);
    let (mut pong_tx, mut pong_rx) = ring::<()>("bench-pong", 64, spin);
    let echo = thread::spawn(move || {
        let mut lat = Vec::with_capacity(HOPS);
        let mut out = Vec::new();
        while ping_rx.recv_batch(&mut out, None) == Recv::Items {
            let now = Instant::now();
            for sent in out.drain(..) {
                lat.push(now.duration_since(sent).as_nanos() as u64);
            }
            send_retrying(&mut pong_tx, ());
        }
        lat
    });
    let mut out = Vec::new();
    for _ in 0..HOPS {
        send_retrying(&mut ping_tx, Instant::now());
        while pong_rx.recv_batch(&mut out, None) != Recv::Items {}
        out.clear();
    }
    drop(ping_tx);
    echo.join().expect("echo thread panicked")
}

/// `try_send` that retries on Full; the ping-pong never has more than one item in
/// flight, so Full does not happen in practice.
fn send_retrying<T: Send>(tx: &mut ringraft::pipeline::ring::RingSender<T>, mut v: T) {
    loop {
        match tx.try_send(v) {
            Ok(()) => return,
            Err(SendError::Full(back)) => {
                v = back;
                std::hint::spin_loop();
            }
            Err(SendError::Closed(_)) => panic!("bench ring closed"),
        }
    }
}

/// The same ping-pong over `std::sync::mpsc::sync_channel`, as the reference.
fn mpsc_hop_latencies() -> Vec<u64> {
    let (ping_tx, ping_rx) = mpsc::sync_channel::<Instant>(64);
    let (pong_tx, pong_rx) = mpsc::sync_channel::<()>(64);
    let echo = thread::spawn(move || {
        let mut lat = Vec::with_capacity(HOPS);
        while let Ok(sent) = ping_rx.recv() {
            lat.push(sent.elapsed().as_nanos() as u64);
            pong_tx.send(()).expect("bench pong");
        }
        lat
    });
    for _ in 0..HOPS {
        ping_tx.send(Instant::now()).expect("bench ping");
        pong_rx.recv().expect("bench pong");
    }
    drop(ping_tx);
    echo.join().expect("echo thread panicked")
}

/// One producer batch-publishing to one consumer; returns (items received, seconds).
fn throughput() -> (u64, f64) {
    let (mut tx, mut rx) = ring::<u64>("bench-throughput", 4096, Duration::from_micros(50));
    let started = Instant::now();
    let stop_at = started + THROUGHPUT_TIME_MAX;
    let producer = thread::spawn(move || {
        let mut batch = Vec::with_capacity(BATCH_ITEMS);
        let mut next = 0u64;
        while next < THROUGHPUT_ITEMS && Instant::now() < stop_at {
            if batch.is_empty() {
                batch.extend(next..(next + BATCH_ITEMS as u64).min(THROUGHPUT_ITEMS));
            }
            match tx.try_send_batch(&mut batch) {
                Ok(()) => next += BATCH_ITEMS as u64,
                Err(SendError::Full(())) => std::hint::spin_loop(),
                Err(SendError::Closed(())) => panic!("bench ring closed"),
            }
        }
    });
    let mut out = Vec::with_capacity(4096);
    let mut received = 0u64;
    let mut expected = 0u64;
    while rx.recv_batch(&mut out, None) == Recv::Items {
        for v in out.drain(..) {
            assert_eq!(v, expected, "throughput: out of order");
            expected += 1;
        }
        received = expected;
    }
    let secs = started.elapsed().as_secs_f64();
    producer.join().expect("producer panicked");
    (received, secs)
}

/// "name: p50 X µs p99 Y µs max Z µs (n hops)".
fn summary(name: &str, lat_ns: &[u64]) -> String {
    let mut v = lat_ns.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] as f64 / 1_000.0;
    format!("{name}: p50 {:.1} µs p99 {:.1} µs max {:.1} µs ({} hops)", at(0.50), at(0.99), at(1.0), v.len())
}
