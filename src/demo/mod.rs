//! `ringraft demo`: a local 3-node cluster of real `ringraft-server`
//! processes on 127.0.0.1, a pipelined append workload from several client
//! threads, a SIGKILL of the leader half-way and its restart from disk, and
//! a check, node by node, that every acknowledged record is stored exactly
//! once at its acknowledged offset and that all nodes hold the same stream.
//!
//! [`run`] owns the run: the temp directory, the child processes (through
//! `procs::Servers`, which kills them on every exit path), the writers
//! (`workload`), the crash (`drive`) and the check (`verify`).

mod drive;
pub mod ports;
pub(crate) mod procs;
mod verify;
mod workload;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

pub use procs::{locate_server_bin, sigterm, SERVER_BIN_ENV};

use crate::client::{Client, ClientConfig, ClientError};
use procs::Servers;
use workload::{WriterSpec, HEADER_BYTES, STREAM};

/// The cluster id of the demo's servers.
const CLUSTER_ID: u64 = 4_242;
/// How long the cluster may take to elect its first leader.
const FIRST_LEADER_WITHIN: Duration = Duration::from_secs(20);
/// How long the nodes may take to hold every acknowledged record.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(60);

/// What the demo is asked to do.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Where the data directories and logs go (`nI/`, `nodeI.log`); must be
    /// empty or not exist yet.
    pub dir: PathBuf,
    /// Keep `dir` afterwards.
    pub keep: bool,
    /// Appends (one record each) to get acknowledged in total.
    pub records: u64,
    /// Writer threads, each with its own client.
    pub clients: u64,
    /// Appends each client keeps in flight.
    pub window: usize,
    /// Bytes per record (at least 16: the `(client, seq)` header).
    pub size: usize,
    /// SIGKILL the leader half-way and restart it about a second later.
    pub crash: bool,
    /// The `ringraft-server` binary; None: [`locate_server_bin`].
    pub server_bin: Option<PathBuf>,
    /// Sends SIGTERM to a process id, for the graceful stop at the end (this
    /// crate has no `unsafe`, so the binary supplies it). None: the servers
    /// are stopped with SIGKILL.
    pub terminate: Option<fn(u32) -> std::io::Result<()>>,
}

impl DemoConfig {
    /// 50,000 records of 128 bytes from 4 clients (64 in flight each), with
    /// a leader crash, in a fresh directory under the system temp dir.
    pub fn new() -> DemoConfig {
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        DemoConfig {
            dir: std::env::temp_dir().join(format!("ringraft-demo-{}-{stamp}", std::process::id())),
            keep: false,
            records: 50_000,
            clients: 4,
            window: 64,
            size: 128,
            crash: true,
            server_bin: None,
            terminate: None,
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig::new()
    }
}

/// Why the demo failed.
#[derive(Debug)]
pub enum DemoError {
    /// A flag value the demo cannot run with.
    Config(String),
    /// The directory, ports, server binary or processes could not be set up.
    Setup(String),
    /// A server exited on its own (the message names its log file).
    Server(String),
    /// No leader within the given time.
    NoLeader(Duration),
    /// A client could not connect or gave up.
    Client(String),
    /// The workload made no progress for too long.
    Stalled(String),
    /// The check found lost, duplicated, corrupt or diverging records.
    Verify(String),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Config(m) => write!(f, "bad configuration: {m}"),
            DemoError::Setup(m) => write!(f, "setup: {m}"),
            DemoError::Server(m) => write!(f, "server: {m}"),
            DemoError::NoLeader(d) => write!(f, "no leader elected within {d:?}"),
            DemoError::Client(m) => write!(f, "client: {m}"),
            DemoError::Stalled(m) => write!(f, "workload stalled: {m}"),
            DemoError::Verify(m) => write!(f, "verification: {m}"),
        }
    }
}

impl std::error::Error for DemoError {}

/// What the demo measured and verified. Its `Display` is the summary,
/// ending with the line `verified N records on 3 nodes`.
#[derive(Clone, Debug)]
pub struct DemoReport {
    /// Appends acknowledged.
    pub acked: u64,
    /// Bytes per record.
    pub size: usize,
    /// From the first append to the last acknowledgement.
    pub duration: Duration,
    /// The leader when the workload started.
    pub leader_before: u64,
    /// The leader at the end (after the crash, when there was one).
    pub leader_after: u64,
    /// The node killed, if any.
    pub killed: Option<u64>,
    /// From the SIGKILL to the first sight of a new leader.
    pub failover: Option<Duration>,
    /// Appends that ended without an answer (their outcome was unknown).
    pub unknown: u64,
    /// How many of those landed in the stream (each at most once).
    pub unknown_applied: u64,
    /// Failed appends by error kind.
    pub errors: Vec<(String, u64)>,
    /// Records in the stream, identical on the 3 nodes.
    pub verified: u64,
    /// Where the data is, if it was kept.
    pub kept_dir: Option<PathBuf>,
    /// Servers that did not stop cleanly at the end.
    pub unclean_stops: Vec<String>,
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.duration.as_secs_f64().max(1e-9);
        let rate = self.acked as f64 / secs;
        writeln!(f, "records acknowledged: {} in {secs:.2} s", self.acked)?;
        writeln!(
            f,
            "throughput: {rate:.0} appends/s, {:.2} MB/s of {}-byte records",
            rate * self.size as f64 / 1e6,
            self.size
        )?;
        writeln!(f, "leader before: node {}, after: node {}", self.leader_before, self.leader_after)?;
        match (self.killed, self.failover) {
            (Some(k), Some(d)) => {
                writeln!(f, "kill to new leader: {:.0} ms (node {k} SIGKILLed)", d.as_secs_f64() * 1e3)?
            }
            (Some(k), None) => writeln!(f, "kill to new leader: not observed (node {k} SIGKILLed)")?,
            (None, _) => writeln!(f, "no crash (--no-crash)")?,
        }
        let kinds: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let kinds = if kinds.is_empty() { String::new() } else { format!(" [{}]", kinds.join(", ")) };
        writeln!(
            f,
            "unknown-outcome appends: {}{kinds}, {} of them in the stream",
            self.unknown, self.unknown_applied
        )?;
        for u in &self.unclean_stops {
            writeln!(f, "warning: {u}")?;
        }
        if let Some(d) = &self.kept_dir {
            writeln!(f, "data and server logs kept in {}", d.display())?;
        }
        write!(f, "verified {} records on 3 nodes", self.verified)
    }
}

fn check_config(cfg: &DemoConfig) -> Result<(), DemoError> {
    if cfg.size < HEADER_BYTES {
        return Err(DemoError::Config(format!("--size must be at least {HEADER_BYTES} bytes")));
    }
    if cfg.records == 0 || cfg.clients == 0 || cfg.window == 0 {
        return Err(DemoError::Config("--records, --clients and --window must be at least 1".into()));
    }
    let not_empty = std::fs::read_dir(&cfg.dir).is_ok_and(|mut d| d.next().is_some());
    if not_empty {
        return Err(DemoError::Config(format!("{} is not empty; give a new or empty --dir", cfg.dir.display())));
    }
    Ok(())
}

/// Runs the demo: progress on stderr, events on stdout, the summary in the
/// returned report. Every server is stopped before it returns.
///
/// # Errors
/// The first thing that went wrong (see [`DemoError`]).
pub fn run(cfg: &DemoConfig) -> Result<DemoReport, DemoError> {
    check_config(cfg)?;
    let bin = match &cfg.server_bin {
        Some(b) => b.clone(),
        None => locate_server_bin()?,
    };
    std::fs::create_dir_all(&cfg.dir).map_err(|e| DemoError::Setup(format!("creating {}: {e}", cfg.dir.display())))?;
    let ports = procs::free_ports(3)?;
    let mut servers = Servers::start(bin, CLUSTER_ID, &cfg.dir, &ports, cfg.terminate)?;
    println!(
        "ringraft demo: 3 ringraft-server processes on {}, data in {}",
        servers.addrs().join(" "),
        cfg.dir.display()
    );
    let result = run_on(cfg, &mut servers);
    let unclean = servers.stop();
    drop(servers);
    if result.is_err() {
        // The server logs are what explains a failure: never delete them then.
        eprintln!("server logs kept in {}", cfg.dir.display());
    } else if !cfg.keep {
        let _ = std::fs::remove_dir_all(&cfg.dir);
    }
    result.map(|mut r| {
        r.unclean_stops = unclean;
        r.kept_dir = cfg.keep.then(|| cfg.dir.clone());
        r
    })
}

/// The demo on started servers: leader, stream, workload with the crash,
/// check.
fn run_on(cfg: &DemoConfig, servers: &mut Servers) -> Result<DemoReport, DemoError> {
    let leader = servers.wait_leader(FIRST_LEADER_WITHIN)?;
    println!("leader elected: node {leader}");
    let mut client_cfg = ClientConfig::new(servers.addrs(), CLUSTER_ID);
    client_cfg.max_in_flight = cfg.window;
    let mut admin = Client::connect(client_cfg.clone()).map_err(|e| DemoError::Client(e.to_string()))?;
    match admin.create_stream(STREAM) {
        // Fresh cluster: an existing stream is our own lost-answer retry.
        Ok(_) | Err(ClientError::StreamExists(_)) => {}
        Err(e) => return Err(DemoError::Client(format!("creating stream {STREAM}: {e}"))),
    }
    drop(admin);
    println!(
        "writing {} records of {} bytes from {} clients, {} appends in flight each{}",
        cfg.records,
        cfg.size,
        cfg.clients,
        cfg.window,
        if cfg.crash { "; the leader will be killed half-way" } else { "" }
    );
    let shared = Arc::new(workload::Shared { acked: AtomicU64::new(0), abort: AtomicBool::new(false) });
    let spec = WriterSpec { cfg: client_cfg.clone(), count: 0, size: cfg.size };
    let outcome = drive::drive(cfg, servers, &spec, &shared, leader)?;
    let max_offset = outcome.logs.iter().flat_map(|l| l.acked.iter().map(|a| a.0)).max();
    let want = max_offset.map_or(0, |m| m + 1);
    println!("checking the stream on each node (follower reads)");
    let copies = verify::read_all(&client_cfg, &servers.addrs(), want, CATCH_UP_WITHIN)?;
    let v = verify::check(&copies, &outcome.logs, cfg.size)?;
    let mut errors: Vec<(String, u64)> = Vec::new();
    for (k, n) in outcome.logs.iter().flat_map(|l| l.errors.iter()) {
        match errors.iter_mut().find(|(e, _)| e == k) {
            Some(e) => e.1 += n,
            None => errors.push((k.clone(), *n)),
        }
    }
    Ok(DemoReport {
        acked: outcome.logs.iter().map(|l| l.acked.len() as u64).sum(),
        size: cfg.size,
        duration: outcome.duration,
        leader_before: leader,
        leader_after: outcome.leader_after,
        killed: outcome.killed,
        failover: outcome.failover,
        unknown: outcome.logs.iter().map(|l| l.unknown.len() as u64).sum(),
        unknown_applied: v.unknown_applied,
        errors,
        verified: v.records,
        kept_dir: None,
        unclean_stops: Vec::new(),
    })
}
