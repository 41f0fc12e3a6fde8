//! Throughput and commit latency of a 3-node in-process cluster (real log
//! engines with fsync on the real disk, the in-process transport), each
//! printed beside raw `write + fdatasync` of the same bytes on the same disk
//! in the same run.
//!
//! * Load: P proposer threads propose 128-byte entries until `LOAD_ENTRIES`
//!   are acknowledged or `LOAD_TIME_MAX` passes. With 8 threads each keeps a
//!   window of 64 callbacks in flight (512 in all); with 64 threads each has
//!   one in flight and parks until it is answered, as `propose_wait` callers
//!   do. Latency runs from the `propose` call to the callback (measured on
//!   the thread that runs it). Entries per fsync come from the leader's
//!   `NodeStats` deltas.
//! * Low load: one thread, sequential `propose_wait`, latency around the
//!   call: the parked-hop cost with nothing to batch.
//! * Raw reference: one 128-byte append + `fdatasync` per entry (what one
//!   fsync per append costs), and the bytes of the load case appended in
//!   batches of the pipeline's average entries per fsync, one `fdatasync`
//!   each (the disk's ceiling at the batching the pipeline achieved).
//!
//! The data lives under the target directory (`CARGO_TARGET_TMPDIR`), not
//! `/tmp`, so it is the disk the engine would use; it is removed at the end.
//! Included from `benches/pipeline.rs`; call [`run`]. Every loop is bounded
//! by a count and a time.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringraft::core::{GroupId, LogIndex, NodeId, Role};
use ringraft::node::{GroupConfig, Node, NodeConfig, NodeError, NodeHandle, NodeStats, StateMachine};
use ringraft::pipeline::completion::Callback;
use ringraft::pipeline::transport::InProcNetwork;

const GROUP: GroupId = GroupId(1);
/// Payload bytes of every proposal.
const ENTRY_BYTES: usize = 128;
/// Entries a load case aims to get acknowledged.
const LOAD_ENTRIES: u64 = 200_000;
/// Wall-clock bound of a load case (proposing stops; in-flight ones drain).
const LOAD_TIME_MAX: Duration = Duration::from_secs(8);
/// Callbacks each thread keeps in flight in the 8-thread case.
const WINDOW_PER_THREAD: usize = 64;
/// Longest wait for one answer before a proposer reports a stall.
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(10);
/// Untimed proposals before anything is measured.
const WARMUP_PROPOSALS: usize = 500;
/// Sequential proposals of the low-load case.
const LOW_LOAD_PROPOSALS: usize = 2_000;
/// Wall-clock bound of the low-load case and of each raw case.
const CASE_TIME_MAX: Duration = Duration::from_secs(5);
/// Appends of the serial raw case.
const RAW_SERIAL_OPS: usize = 2_000;
/// The raw file is cut back to empty past this size (untimed).
const RAW_FILE_BYTES_MAX: u64 = 64 << 20;

/// Runs the cluster cases, each followed by its raw reference, and prints one line
/// per figure plus the ratios.
pub fn run() {
    let root = TempDir::new();
    println!("throughput: 3-node in-process cluster, {ENTRY_BYTES} B entries, data under {}", root.0.display());
    let cluster = Cluster::start(&root.0);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    println!("  leader: node {} (slot {leader})", leader + 1);
    let mut h = cluster.nodes[leader].handle();
    let payload = Bytes::from(vec![0xab; ENTRY_BYTES]);
    for _ in 0..WARMUP_PROPOSALS {
        h.propose_wait(GROUP, payload.clone()).expect("warm-up proposal");
    }

    let low = low_load(&cluster, leader);
    println!("{}", low.line());
    let serial = raw_serial(&root.0);
    println!("{}", serial.line());

    // Each load case is followed at once by its raw reference (the cluster
    // idles meanwhile), so both see the same moments of a shared machine.
    let cases =
        [(8, WINDOW_PER_THREAD, "x8 threads (window 64 each)"), (64, 1, "x64 threads (1 in flight each, parked)")];
    for (threads, window, label) in cases {
        let l = load(&cluster, leader, threads, window, label);
        println!("{}", l.line());
        println!("{}", l.detail());
        let batch = (l.entries_per_fsync().round() as usize).max(1);
        let raw = raw_batched(&root.0, l.acked.max(1), batch);
        println!(
            "raw write+fdatasync 128B batched x{batch} (as pipeline {}): {:.0} entries/s ({} entries, {} fsyncs of {} B in {:.2} s)",
            l.short,
            raw.entries as f64 / raw.secs,
            raw.entries,
            raw.fsyncs,
            batch * ENTRY_BYTES,
            raw.secs
        );
        println!(
            "ratio pipeline {} / raw batched x{batch} entries/s: {:.2}",
            l.short,
            l.per_sec() / (raw.entries as f64 / raw.secs)
        );
    }
    let still = cluster.wait_leader(Duration::from_secs(5));
    if still != leader {
        println!("  NOTE: leadership moved from node {} to node {} during the run", leader + 1, still + 1);
    }
    cluster.shutdown();
    println!(
        "ratio pipeline low-load p50 / raw serial p50: {:.2} ({:.0} µs / {:.0} µs)",
        low.p(0.50) / serial.p(0.50),
        low.p(0.50),
        serial.p(0.50)
    );
}

/// Counts applied entries; answers with nothing (no allocation).
struct Counter(u64);

impl StateMachine for Counter {
    fn apply(&mut self, _: LogIndex, _: &Bytes) -> Bytes {
        self.0 += 1;
        Bytes::new()
    }
}

/// The bench's directory under the target directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pipeline-throughput-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Cluster {
    net: Arc<InProcNetwork>,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start(root: &Path) -> Cluster {
        let net = InProcNetwork::new();
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let nodes = ids
            .iter()
            .map(|&id| {
                let mut g = GroupConfig::new(id, GROUP, ids);
                g.raft.election_timeout_min_ms = 500;
                g.raft.election_timeout_max_ms = 1000;
                g.raft.heartbeat_interval_ms = 100;
                g.raft.lease_drift_ms = 100;
                g.raft.seed = 0xbe7c + id.0;
                let cfg = NodeConfig::new(id, root.join(format!("n{}", id.0)));
                let node = Node::start(cfg, vec![(g, Box::new(Counter(0)))], net.clone())
                    .unwrap_or_else(|e| panic!("node {id} failed to start: {e}"));
                net.register(id, node.inbound());
                node
            })
            .collect();
        Cluster { net, nodes }
    }

    /// Waits (bounded) for a leader every node knows of; returns its slot.
    fn wait_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let status: Vec<_> = self.nodes.iter().map(|n| n.handle().status(GROUP)).collect();
            let leader = status.iter().position(|s| matches!(s, Ok(s) if s.role == Role::Leader));
            let agree = status.iter().all(|s| matches!(s, Ok(s) if s.leader.is_some()));
            if let (Some(l), true) = (leader, agree) {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}: {status:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stats(&self) -> Vec<NodeStats> {
        self.nodes.iter().map(Node::stats).collect()
    }

    fn shutdown(self) {
        for n in self.nodes {
            n.shutdown();
        }
    }
}

fn delta(after: NodeStats, before: NodeStats) -> NodeStats {
    NodeStats {
        fsync_batches: after.fsync_batches - before.fsync_batches,
        entries_written: after.entries_written - before.entries_written,
        sends_inline: after.sends_inline - before.sends_inline,
        sends_handed_off: after.sends_handed_off - before.sends_handed_off,
        sends_dropped: after.sends_dropped - before.sends_dropped,
        // A peak, not a counter.
        fsm_backlog_peak: after.fsm_backlog_peak,
        appends_sent: after.appends_sent - before.appends_sent,
        entries_sent: after.entries_sent - before.entries_sent,
        // A state, not a counter.
        log_disk_full: after.log_disk_full,
    }
}

fn per_fsync(s: &NodeStats) -> f64 {
    s.entries_written as f64 / s.fsync_batches.max(1) as f64
}

/// The `q` quantile of sorted nanoseconds, in µs.
fn quantile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    sorted_ns[((sorted_ns.len() - 1) as f64 * q) as usize] as f64 / 1e3
}

/// CPU time of the whole process (every node's stages and the proposers).
#[allow(unsafe_code)]
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one proposer thread saw.
#[derive(Default)]
struct Tally {
    lat_ns: Vec<u64>,
    /// `propose` refused at once with `Busy` (retried).
    busy: u64,
    /// Answered with an error, or refused at once with anything but `Busy`.
    failed: u64,
    first_error: Option<String>,
    /// In flight when an answer took longer than `ANSWER_WAIT_MAX`.
    stalled: u64,
}

/// Proposes until `quota` are answered or `stop_at`, keeping up to `window`
/// callbacks in flight; parks on its channel while the window is full.
fn proposer(mut h: NodeHandle, quota: u64, window: usize, stop_at: Instant) -> Tally {
    let (tx, rx) = mpsc::channel::<Result<u64, String>>();
    let payload = Bytes::from(vec![0xab; ENTRY_BYTES]);
    let mut t = Tally { lat_ns: Vec::with_capacity(quota as usize), ..Tally::default() };
    let (mut issued, mut inflight) = (0u64, 0usize);
    loop {
        let mut refused = false;
        while inflight < window && issued < quota && t.failed == 0 && Instant::now() < stop_at {
            let tx = tx.clone();
            let t0 = Instant::now();
            let done = Callback::new(move |r: Result<Bytes, NodeError>| {
                let _ = tx.send(r.map(|_| t0.elapsed().as_nanos() as u64).map_err(|e| e.to_string()));
            });
            match h.propose(GROUP, payload.clone(), done) {
                Ok(()) => {
                    issued += 1;
                    inflight += 1;
                }
                Err(NodeError::Busy) => {
                    t.busy += 1;
                    refused = true;
                    break;
                }
                Err(e) => {
                    t.failed += 1;
                    t.first_error.get_or_insert(e.to_string());
                }
            }
        }
        if inflight == 0 {
            if refused && Instant::now() < stop_at {
                thread::sleep(Duration::from_micros(100));
                continue;
            }
            return t;
        }
        let mut answer = match rx.recv_timeout(ANSWER_WAIT_MAX) {
            Ok(a) => Some(a),
            Err(_) => {
                t.stalled += inflight as u64;
                return t;
            }
        };
        while let Some(a) = answer {
            inflight -= 1;
            match a {
                Ok(ns) => t.lat_ns.push(ns),
                Err(e) => {
                    t.failed += 1;
                    t.first_error.get_or_insert(e);
                }
            }
            answer = rx.try_recv().ok();
        }
    }
}

struct LoadResult {
    label: &'static str,
    short: String,
    acked: u64,
    secs: f64,
    cpu: Duration,
    lat_ns: Vec<u64>,
    busy: u64,
    failed: u64,
    first_error: Option<String>,
    stalled: u64,
    leader: NodeStats,
    followers: Vec<NodeStats>,
    net: (u64, u64),
}

impl LoadResult {
    fn per_sec(&self) -> f64 {
        self.acked as f64 / self.secs
    }

    fn entries_per_fsync(&self) -> f64 {
        per_fsync(&self.leader)
    }

    fn line(&self) -> String {
        format!(
            "pipeline 3-node 128B {}: {:.0} entries/s ({} in {:.2} s), p50 {:.0} µs, p99 {:.0} µs, {:.1} entries/fsync (leader)",
            self.label,
            self.per_sec(),
            self.acked,
            self.secs,
            quantile_us(&self.lat_ns, 0.50),
            quantile_us(&self.lat_ns, 0.99),
            self.entries_per_fsync()
        )
    }

    fn detail(&self) -> String {
        let f: Vec<String> = self.followers.iter().map(|s| format!("{:.1}", per_fsync(s))).collect();
        let l = &self.leader;
        format!(
            "  {}: max {:.0} µs, {:.1} µs CPU/entry (process), followers {} entries/fsync, leader sends \
             inline/handed-off/dropped {}/{}/{}, net delivered/dropped {}/{}, busy refusals {}, failed {}{}, stalled {}",
            self.short,
            quantile_us(&self.lat_ns, 1.0),
            self.cpu.as_secs_f64() * 1e6 / self.acked.max(1) as f64,
            f.join("/"),
            l.sends_inline,
            l.sends_handed_off,
            l.sends_dropped,
            self.net.0,
            self.net.1,
            self.busy,
            self.failed,
            self.first_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default(),
            self.stalled
        )
    }
}

/// `threads` proposers on the leader, `window` in flight each.
fn load(c: &Cluster, leader: usize, threads: usize, window: usize, label: &'static str) -> LoadResult {
    let quota = LOAD_ENTRIES / threads as u64;
    let before = c.stats();
    let net_before = c.net.counts();
    let cpu_before = process_cpu();
    let started = Instant::now();
    let stop_at = started + LOAD_TIME_MAX;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let h = c.nodes[leader].handle();
            thread::spawn(move || proposer(h, quota, window, stop_at))
        })
        .collect();
    let tallies: Vec<Tally> = workers.into_iter().map(|w| w.join().expect("proposer panicked")).collect();
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_cpu() - cpu_before;
    let after = c.stats();
    let net_after = c.net.counts();
    let mut lat_ns: Vec<u64> = tallies.iter().flat_map(|t| t.lat_ns.iter().copied()).collect();
    lat_ns.sort_unstable();
    let deltas: Vec<NodeStats> = after.iter().zip(&before).map(|(a, b)| delta(*a, *b)).collect();
    LoadResult {
        label,
        short: format!("x{threads}"),
        acked: lat_ns.len() as u64,
        secs,
        cpu,
        lat_ns,
        busy: tallies.iter().map(|t| t.busy).sum(),
        failed: tallies.iter().map(|t| t.failed).sum(),
        first_error: tallies.iter().find_map(|t| t.first_error.clone()),
        stalled: tallies.iter().map(|t| t.stalled).sum(),
        leader: deltas[leader],
        followers: deltas.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, s)| *s).collect(),
        net: (net_after.0 - net_before.0, net_after.1 - net_before.1),
    }
}

/// Latencies of one case, with how many ran in how long.
struct Latencies {
    name: String,
    sorted_ns: Vec<u64>,
    secs: f64,
    suffix: String,
}

impl Latencies {
    fn p(&self, q: f64) -> f64 {
        quantile_us(&self.sorted_ns, q)
    }

    fn line(&self) -> String {
        format!(
            "{}: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs, {:.0} ops/s ({} ops){}",
            self.name,
            self.p(0.50),
            self.p(0.99),
            self.p(1.0),
            self.sorted_ns.len() as f64 / self.secs,
            self.sorted_ns.len(),
            self.suffix
        )
    }
}

/// One thread, sequential `propose_wait`.
fn low_load(c: &Cluster, leader: usize) -> Latencies {
    let mut h = c.nodes[leader].handle();
    let payload = Bytes::from(vec![0xab; ENTRY_BYTES]);
    let before = c.nodes[leader].stats();
    let started = Instant::now();
    let mut lat = Vec::with_capacity(LOW_LOAD_PROPOSALS);
    let mut errors = 0u64;
    while lat.len() < LOW_LOAD_PROPOSALS && started.elapsed() < CASE_TIME_MAX {
        let t0 = Instant::now();
        match h.propose_wait(GROUP, payload.clone()) {
            Ok(_) => lat.push(t0.elapsed().as_nanos() as u64),
            Err(_) => errors += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let d = delta(c.nodes[leader].stats(), before);
    lat.sort_unstable();
    Latencies {
        name: "pipeline 3-node 128B x1 sequential propose_wait".to_string(),
        sorted_ns: lat,
        secs,
        suffix: format!(", {:.2} entries/fsync (leader), errors {errors}", per_fsync(&d)),
    }
}

/// An append-only file on the bench's disk.
struct RawFile {
    file: File,
    len: u64,
}

impl RawFile {
    fn create(dir: &Path, name: &str) -> RawFile {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        RawFile { file, len: 0 }
    }

    /// Appends `buf` and `fdatasync`s; the caller times it.
    fn append_sync(&mut self, buf: &[u8]) {
        self.file.write_all_at(buf, self.len).expect("raw write");
        self.file.sync_data().expect("raw fdatasync");
        self.len += buf.len() as u64;
    }

    /// Untimed: cut back to empty when large, like the log moving on to a
    /// new segment.
    fn maybe_cut(&mut self) {
        if self.len > RAW_FILE_BYTES_MAX {
            self.file.set_len(0).expect("cut raw file");
            self.len = 0;
        }
    }
}

/// One 128-byte append + `fdatasync` per op.
fn raw_serial(dir: &Path) -> Latencies {
    let mut f = RawFile::create(dir, "raw-serial.dat");
    let buf = vec![0xab; ENTRY_BYTES];
    f.append_sync(&buf); // untimed: the first block allocation
    let started = Instant::now();
    let mut lat = Vec::with_capacity(RAW_SERIAL_OPS);
    while lat.len() < RAW_SERIAL_OPS && started.elapsed() < CASE_TIME_MAX {
        let t0 = Instant::now();
        f.append_sync(&buf);
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    Latencies { name: "raw write+fdatasync 128B serial".to_string(), sorted_ns: lat, secs, suffix: String::new() }
}

struct RawBatched {
    entries: u64,
    fsyncs: u64,
    secs: f64,
}

/// `total` entries' bytes appended `batch` entries at a time, one
/// `fdatasync` each; bounded by `CASE_TIME_MAX`.
fn raw_batched(dir: &Path, total: u64, batch: usize) -> RawBatched {
    let mut f = RawFile::create(dir, &format!("raw-batched-{batch}.dat"));
    let buf = vec![0xab; batch * ENTRY_BYTES];
    f.append_sync(&buf);
    let (mut entries, mut fsyncs, mut secs) = (0u64, 0u64, 0f64);
    let deadline = Instant::now() + CASE_TIME_MAX;
    while entries < total && Instant::now() < deadline {
        f.maybe_cut();
        let t0 = Instant::now();
        f.append_sync(&buf);
        secs += t0.elapsed().as_secs_f64();
        entries += batch as u64;
        fsyncs += 1;
    }
    RawBatched { entries, fsyncs, secs }
}
