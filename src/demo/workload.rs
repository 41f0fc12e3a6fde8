//! The demo's proposers: threads that keep a window of proposals in flight
//! against whichever node the router names, retrying refused ones with new
//! ids, and recording latency and the acknowledged (id, index) pairs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::{DemoConfig, GROUP};
use crate::node::{NodeError, NodeHandle};
use crate::pipeline::completion::Callback;

/// The handle proposers use; replaced when the leader changes.
#[derive(Clone)]
pub(super) struct Router(Arc<Mutex<(u64, Option<NodeHandle>)>>);

impl Router {
    pub fn new(h: Option<NodeHandle>) -> Router {
        Router(Arc::new(Mutex::new((0, h))))
    }

    pub fn set(&self, h: Option<NodeHandle>) {
        let mut g = self.0.lock();
        g.0 += 1;
        g.1 = h;
    }

    fn get(&self) -> (u64, Option<NodeHandle>) {
        let g = self.0.lock();
        (g.0, g.1.clone())
    }
}

/// What the proposers measured.
pub(super) struct Report {
    pub acked: Vec<(u64, u64)>,
    pub max_index: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    refused: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |p: f64| {
            let n = self.latencies_us.len();
            if n == 0 {
                0
            } else {
                self.latencies_us[((n - 1) as f64 * p) as usize]
            }
        };
        write!(
            f,
            "{} proposals acknowledged in {:.2} s: {:.0} per second; commit latency p50 {} µs, p99 {} µs, max {} µs; {} refused and retried",
            self.acked.len(),
            self.elapsed.as_secs_f64(),
            self.acked.len() as f64 / self.elapsed.as_secs_f64().max(1e-9),
            pct(0.5),
            pct(0.99),
            self.latencies_us.last().copied().unwrap_or(0),
            self.refused
        )
    }
}

struct Shared {
    acked: AtomicU64,
    refused: AtomicU64,
}

/// Running proposer threads.
pub(super) struct Workload {
    threads: Vec<JoinHandle<Vec<(u64, u64, u64)>>>,
    shared: Arc<Shared>,
    started: Instant,
}

impl Workload {
    pub fn start(cfg: &DemoConfig, router: Router) -> Workload {
        let shared = Arc::new(Shared { acked: AtomicU64::new(0), refused: AtomicU64::new(0) });
        let per = cfg.proposals.div_ceil(cfg.threads);
        let threads = (0..cfg.threads)
            .map(|t| {
                let (router, shared, window, size) = (router.clone(), shared.clone(), cfg.window, cfg.size);
                std::thread::spawn(move || proposer(t, per, window, size, router, shared))
            })
            .collect();
        Workload { threads, shared, started: Instant::now() }
    }

    pub fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    pub fn wait_acked(&self, n: u64, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while self.acked() < n {
            if Instant::now() > deadline {
                return Err(format!("only {} of {n} proposals acknowledged within {within:?}", self.acked()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    pub fn finish(self, within: Duration) -> Result<Report, String> {
        let deadline = Instant::now() + within;
        while !self.threads.iter().all(|t| t.is_finished()) {
            if Instant::now() > deadline {
                return Err(format!("the workload stalled at {} acknowledged", self.acked()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let elapsed = self.started.elapsed();
        let mut acked = Vec::new();
        let mut latencies_us = Vec::new();
        for t in self.threads {
            let got = t.join().map_err(|_| "a proposer thread panicked".to_string())?;
            for (id, index, us) in got {
                acked.push((id, index));
                latencies_us.push(us);
            }
        }
        latencies_us.sort_unstable();
        let max_index = acked.iter().map(|a| a.1).max().unwrap_or(0);
        Ok(Report { acked, max_index, elapsed, latencies_us, refused: self.shared.refused.load(Ordering::Relaxed) })
    }
}

fn payload(id: u64, size: usize) -> Bytes {
    let mut v = vec![0x5a; size];
    v[..8].copy_from_slice(&id.to_le_bytes());
    Bytes::from(v)
}

type Answer = (u64, Instant, Result<u64, NodeError>);

/// Keeps `window` proposals in flight until `count` are acknowledged;
/// returns (id, index, latency µs) of each.
fn proposer(
    t: u64,
    count: u64,
    window: usize,
    size: usize,
    router: Router,
    shared: Arc<Shared>,
) -> Vec<(u64, u64, u64)> {
    let (tx, rx) = mpsc::channel::<Answer>();
    let mut out = Vec::with_capacity(count as usize);
    let mut inflight = 0usize;
    let mut next_id = t << 40;
    let (mut gen, mut handle) = router.get();
    let give_up = Instant::now() + Duration::from_secs(600);
    while (out.len() as u64) < count && Instant::now() < give_up {
        while inflight < window && (out.len() + inflight) < count as usize {
            let Some(h) = handle.as_mut() else { break };
            let (id, tx, sent) = (next_id, tx.clone(), Instant::now());
            let done = Callback::new(move |r: Result<Bytes, NodeError>| {
                let r = r.map(|b| b.get(..8).map(|x| u64::from_le_bytes(x.try_into().unwrap_or([0; 8]))).unwrap_or(0));
                let _ = tx.send((id, sent, r));
            });
            if h.propose(GROUP, payload(id, size), done).is_err() {
                break;
            }
            next_id += 1;
            inflight += 1;
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok((id, sent, Ok(index))) => {
                inflight -= 1;
                out.push((id, index, sent.elapsed().as_micros() as u64));
                shared.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok((_, _, Err(_))) => {
                inflight -= 1;
                shared.refused.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => {
                let (g, h) = router.get();
                if g != gen {
                    (gen, handle) = (g, h);
                }
            }
        }
    }
    out
}
