//! What a demo run is asked to do ([`DemoConfig`]), how it fails
//! ([`DemoError`]) and what it reports ([`DemoReport`]), and its fixed
//! limits.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The cluster id of the demo's servers.
pub(super) const CLUSTER_ID: u64 = 4_242;
/// How long the cluster may take to elect its first leader.
pub(super) const FIRST_LEADER_WITHIN: Duration = Duration::from_secs(20);
/// How long the nodes may take to hold every acknowledged record.
pub(super) const CATCH_UP_WITHIN: Duration = Duration::from_secs(60);

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
    /// The `ringraft-server` binary; None: [`locate_server_bin`](super::locate_server_bin).
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
