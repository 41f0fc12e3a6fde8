//! The closed-loop workload: `min(clients, 16)` connection threads, each
//! with its own [`Client`], appending one `size`-byte record per append
//! (and, for the `reads` fraction of operations, reading back one recently
//! acknowledged record with a linearizable read). Latencies of operations
//! that complete inside the measured window go into an HDR histogram per
//! thread, merged at the end. Owns the threads: [`Run::finish`] stops and
//! joins them; every loop ends at the window's end (a call in progress then
//! is bounded by the client's request timeout).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::cluster::stream_name;
use super::{BenchConfig, BenchError, CONNECTIONS_MAX};
use ringraft_client::{Client, ClientConfig, ClientError, ReadConsistency, Ticket};

/// Largest latency the histograms hold, µs (longer ones are clamped).
const LATENCY_MAX_US: u64 = 60_000_000;
/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// What every connection thread needs.
#[derive(Clone)]
pub(super) struct LoadSpec {
    client: ClientConfig,
    clients: usize,
    window: usize,
    size: usize,
    streams: usize,
    reads: f64,
    warmup: Duration,
    duration: Duration,
}

impl LoadSpec {
    /// The workload of `cfg` through clients made from `client`.
    pub fn new(cfg: &BenchConfig, client: ClientConfig) -> LoadSpec {
        LoadSpec {
            client,
            clients: cfg.clients,
            window: cfg.window,
            size: cfg.size,
            streams: cfg.streams,
            reads: cfg.reads,
            warmup: cfg.warmup,
            duration: cfg.duration,
        }
    }

    /// Logical clients carried by connection `i` of `conns` (the remainder
    /// of `clients / conns` goes to the first connections).
    fn logical(&self, i: usize, conns: usize) -> usize {
        self.clients / conns + usize::from(i < self.clients % conns)
    }
}

/// The measured window, shared by the threads.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn holds(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// What all connection threads recorded inside the window.
pub(super) struct Totals {
    /// Latency of every operation completed in the window, µs.
    pub hist: Histogram<u64>,
    /// Appends acknowledged in the window.
    pub appends: u64,
    /// Reads answered in the window.
    pub reads: u64,
    /// Record bytes appended plus read in the window.
    pub bytes: u64,
    /// Failed operations by error kind (whole run, warmup included).
    pub errors: Vec<(String, u64)>,
}

impl Totals {
    fn empty() -> Totals {
        Totals { hist: new_hist(), appends: 0, reads: 0, bytes: 0, errors: Vec::new() }
    }

    fn merge(&mut self, o: Totals) {
        // Same bounds on both sides, so `add` cannot fail; clamp otherwise.
        let _ = self.hist.add(&o.hist);
        self.appends += o.appends;
        self.reads += o.reads;
        self.bytes += o.bytes;
        for (k, n) in o.errors {
            self.count_error_n(&k, n);
        }
    }

    fn count_error_n(&mut self, kind: &str, n: u64) {
        match self.errors.iter_mut().find(|(k, _)| k == kind) {
            Some(e) => e.1 += n,
            None => self.errors.push((kind.to_owned(), n)),
        }
    }

    fn record(&mut self, window: &Window, started: Instant, done: Instant, bytes: usize, read: bool) {
        if !window.holds(done) {
            return;
        }
        let us = done.saturating_duration_since(started).as_micros();
        self.hist.saturating_record(u64::try_from(us).unwrap_or(u64::MAX).clamp(1, LATENCY_MAX_US));
        if read {
            self.reads += 1;
        } else {
            self.appends += 1;
        }
        self.bytes += bytes as u64;
    }
}

fn new_hist() -> Histogram<u64> {
    // Infallible: constant bounds that satisfy the constructor's rules
    // (1 <= low, high >= 2 * low, significant figures <= 5).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// A workload in progress.
pub(super) struct Run {
    threads: Vec<JoinHandle<Result<Totals, BenchError>>>,
    window: Window,
    stop: Arc<AtomicBool>,
    /// Operations completed so far (all phases), for the progress bar.
    done: Arc<AtomicU64>,
    bar: ProgressBar,
    began: Instant,
}

impl Run {
    /// Starts the connection threads; returns once each has connected (or
    /// failed to), with the warmup begun.
    ///
    /// # Errors
    /// `Setup` if a thread cannot be spawned.
    pub fn start(spec: &LoadSpec) -> Result<Run, BenchError> {
        let conns = spec.clients.min(CONNECTIONS_MAX);
        let ready = Arc::new(Barrier::new(conns + 1));
        let go = Arc::new(Barrier::new(conns + 1));
        let window = Arc::new(OnceLock::<Window>::new());
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::with_capacity(conns);
        for i in 0..conns {
            let mut spec = spec.clone();
            spec.client.max_in_flight = (spec.logical(i, conns) * spec.window).max(1);
            let logical = spec.logical(i, conns);
            let (ready, go, window, stop, done) =
                (ready.clone(), go.clone(), window.clone(), stop.clone(), done.clone());
            let t = std::thread::Builder::new().name(format!("bench-conn-{i}")).spawn(move || {
                let conn = Conn::connect(&spec, i, logical);
                ready.wait();
                go.wait();
                // Set by the starting thread before `go`; an empty window
                // otherwise (nothing recorded, the loop ends at once).
                let now = Instant::now();
                let w = window.get().copied().unwrap_or(Window { start: now, end: now });
                conn?.drive(&w, &stop, &done)
            });
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // The threads already started wait at the barriers for
                    // this one forever: there is no way to recover them.
                    return Err(BenchError::Setup(format!("spawning a client thread: {e}")));
                }
            }
        }
        ready.wait();
        let began = Instant::now();
        let start = began + spec.warmup;
        let w = Window { start, end: start + spec.duration };
        let _ = window.set(w);
        go.wait();
        let bar = progress_bar(spec.warmup + spec.duration);
        Ok(Run { threads, window: w, stop, done, bar, began })
    }

    /// Sleeps until the measured window begins, updating the progress bar.
    pub fn sleep_through_warmup(&self) {
        self.tick_until(self.window.start, "warmup");
    }

    /// Sleeps until the measured window ends, updating the progress bar.
    pub fn sleep_through_measure(&self) {
        self.tick_until(self.window.end, "measuring");
    }

    fn tick_until(&self, t: Instant, phase: &str) {
        let mut last = (Instant::now(), self.done.load(Ordering::Relaxed));
        loop {
            let now = Instant::now();
            if now >= t {
                return;
            }
            std::thread::sleep(PROGRESS_TICK.min(t - now));
            let (at, n) = (Instant::now(), self.done.load(Ordering::Relaxed));
            let rate = (n - last.1) as f64 / at.duration_since(last.0).as_secs_f64().max(1e-9);
            last = (at, n);
            self.bar.set_position(at.duration_since(self.began).as_millis() as u64);
            self.bar.set_message(format!("{phase}: {rate:.0} ops/s"));
        }
    }

    /// Stops the threads and merges what they recorded.
    ///
    /// # Errors
    /// The first connection's failure to connect, if any did fail.
    pub fn finish(self) -> Result<Totals, BenchError> {
        self.stop.store(true, Ordering::Relaxed);
        self.bar.finish_and_clear();
        let mut totals = Totals::empty();
        let mut first_err = None;
        for t in self.threads {
            match t.join() {
                Ok(Ok(part)) => totals.merge(part),
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => first_err = first_err.or(Some(BenchError::Client("a client thread panicked".into()))),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(totals),
        }
    }
}

fn progress_bar(total: Duration) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{bar:40} {elapsed:>4} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// A small xorshift generator: which operations are reads, per thread.
struct Rng(u64);

impl Rng {
    /// A uniform value in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One connection thread's clients and state.
struct Conn {
    spec: LoadSpec,
    /// Appends go through this one.
    writer: Client,
    /// Reads, when `reads > 0` (a second connection: a pipeline holds the
    /// writer's borrow).
    reader: Option<Client>,
    /// Logical clients this connection carries.
    logical: usize,
    /// The record every append carries (cloning `Bytes` is a refcount).
    record: Bytes,
    /// The last acknowledged offset per stream, for reads.
    acked: Vec<Option<u64>>,
    /// Next stream to append to (round robin, starting at the thread's
    /// index).
    next_stream: usize,
    rng: Rng,
    totals: Totals,
}

impl Conn {
    fn connect(spec: &LoadSpec, i: usize, logical: usize) -> Result<Conn, BenchError> {
        let open = || Client::connect(spec.client.clone()).map_err(|e| BenchError::Client(format!("connecting: {e}")));
        let writer = open()?;
        let reader = if spec.reads > 0.0 { Some(open()?) } else { None };
        Ok(Conn {
            spec: spec.clone(),
            writer,
            reader,
            logical,
            record: Bytes::from(vec![0xb5_u8; spec.size]),
            acked: vec![None; spec.streams],
            next_stream: i % spec.streams,
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)),
            totals: Totals::empty(),
        })
    }

    fn drive(mut self, w: &Window, stop: &AtomicBool, done: &AtomicU64) -> Result<Totals, BenchError> {
        if self.logical == 1 && self.spec.window == 1 {
            self.drive_blocking(w, stop, done);
        } else {
            self.drive_pipelined(w, stop, done);
        }
        Ok(self.totals)
    }

    fn stream(&mut self) -> usize {
        let s = self.next_stream;
        self.next_stream = (s + 1) % self.spec.streams;
        s
    }

    /// True when the next operation should be a read (and one can be).
    fn pick_read(&mut self) -> bool {
        self.spec.reads > 0.0 && self.acked.iter().any(Option::is_some) && self.rng.unit() < self.spec.reads
    }

    fn count_error(&mut self, e: &ClientError) {
        self.totals.count_error_n(error_kind(e), 1);
    }

    fn read_one(&mut self, w: &Window, done: &AtomicU64) {
        read_into(&mut self.reader, &self.acked, &self.spec, &mut self.totals, w, done);
    }

    /// One logical client, window 1: blocking appends.
    fn drive_blocking(&mut self, w: &Window, stop: &AtomicBool, done: &AtomicU64) {
        while Instant::now() < w.end && !stop.load(Ordering::Relaxed) {
            if self.pick_read() {
                self.read_one(w, done);
                continue;
            }
            let s = self.stream();
            let t = Instant::now();
            match self.writer.append(&stream_name(s), vec![self.record.clone()]) {
                Ok(ack) => {
                    self.totals.record(w, t, Instant::now(), self.spec.size, false);
                    self.acked[s] = Some(ack.first_offset);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.count_error(&e),
            }
        }
    }

    /// Several logical clients or a window: a pipeline kept full, latency
    /// per append from its submission to its completion.
    fn drive_pipelined(&mut self, w: &Window, stop: &AtomicBool, done: &AtomicU64) {
        let want = self.logical * self.spec.window;
        let names: Vec<String> = (0..self.spec.streams).map(stream_name).collect();
        let mut submitted: hashbrown::HashMap<Ticket, (Instant, usize)> = hashbrown::HashMap::new();
        let record = self.record.clone();
        // The pipeline borrows the writer; the other fields stay usable.
        let mut p = self.writer.pipeline();
        let mut outcomes: Vec<(usize, Instant, Instant, Result<u64, ClientError>)> = Vec::new();
        while Instant::now() < w.end && !stop.load(Ordering::Relaxed) {
            while p.outstanding() < want && Instant::now() < w.end {
                let s = self.next_stream;
                self.next_stream = (s + 1) % self.spec.streams;
                match p.submit(&names[s], vec![record.clone()]) {
                    Ok(ticket) => {
                        submitted.insert(ticket, (Instant::now(), s));
                    }
                    Err(e) => outcomes.push((s, Instant::now(), Instant::now(), Err(e))),
                }
            }
            if let Some((ticket, result)) = p.next_ack() {
                let Some((t, s)) = submitted.remove(&ticket) else { continue };
                outcomes.push((s, t, Instant::now(), result.map(|a| a.first_offset)));
            }
            for (s, t, at, r) in outcomes.drain(..) {
                match r {
                    Ok(offset) => {
                        self.totals.record(w, t, at, self.spec.size, false);
                        self.acked[s] = Some(offset);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => self.totals.count_error_n(error_kind(&e), 1),
                }
            }
            if self.spec.reads > 0.0 && self.acked.iter().any(Option::is_some) && self.rng.unit() < self.spec.reads {
                read_into(&mut self.reader, &self.acked, &self.spec, &mut self.totals, w, done);
            }
        }
        // Dropping the pipeline abandons what is still in flight (its
        // connection is closed): those appends are not counted.
    }
}

/// One linearizable read of the record last acknowledged on the first
/// stream that has one, recorded in `totals`.
fn read_into(
    reader: &mut Option<Client>,
    acked: &[Option<u64>],
    spec: &LoadSpec,
    totals: &mut Totals,
    w: &Window,
    done: &AtomicU64,
) {
    let Some((stream, offset)) = acked.iter().enumerate().find_map(|(s, o)| o.map(|o| (s, o))) else { return };
    let Some(reader) = reader.as_mut() else { return };
    let max_bytes = u32::try_from(spec.size).unwrap_or(u32::MAX);
    let t = Instant::now();
    match reader.read(&stream_name(stream), offset, 1, max_bytes, ReadConsistency::Linearizable) {
        Ok(r) => {
            let bytes = r.records.iter().map(|b| b.len()).sum();
            totals.record(w, t, Instant::now(), bytes, true);
            done.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => totals.count_error_n(error_kind(&e), 1),
    }
}

/// A short name for the kind of a failed operation.
fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::NotLeader { .. } => "not-leader",
        ClientError::Busy => "busy",
        ClientError::Timeout => "timeout",
        ClientError::SessionExpired => "session-expired",
        ClientError::OutOfRange { .. } => "out-of-range",
        ClientError::UnknownStream(_) => "unknown-stream",
        ClientError::TooLarge => "too-large",
        ClientError::ShuttingDown => "shutting-down",
        ClientError::NoServer { .. } => "no-server",
        ClientError::Io(_) => "io",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_clients_are_spread_over_connections() {
        let mut cfg = BenchConfig::new();
        cfg.clients = 37;
        let spec = LoadSpec::new(&cfg, ClientConfig::new(vec!["127.0.0.1:1".into()], 1));
        let conns = cfg.clients.min(CONNECTIONS_MAX);
        let per: Vec<usize> = (0..conns).map(|i| spec.logical(i, conns)).collect();
        assert_eq!(per.iter().sum::<usize>(), 37);
        assert_eq!((per[0], per[4], per[5], per[15]), (3, 3, 2, 2));
    }

    #[test]
    fn rng_stays_in_unit_interval() {
        let mut r = Rng(12345);
        let v: Vec<f64> = (0..1000).map(|_| r.unit()).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let below = v.iter().filter(|x| **x < 0.25).count();
        assert!((150..350).contains(&below), "{below} of 1000 below 0.25");
    }

    #[test]
    fn only_completions_inside_the_window_count() {
        let now = Instant::now();
        let w = Window { start: now, end: now + Duration::from_secs(1) };
        let mut t = Totals::empty();
        t.record(&w, now, now + Duration::from_millis(5), 10, false);
        t.record(&w, now, now + Duration::from_secs(2), 10, false);
        t.record(&w, now, now + Duration::from_millis(7), 10, true);
        assert_eq!((t.appends, t.reads, t.bytes, t.hist.len()), (1, 1, 20, 2));
    }
}
