//! What a benchmark run is asked to do ([`BenchConfig`], [`Target`],
//! [`Sweep`]), its limits, and how it fails ([`BenchError`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::demo::DemoError;

/// Connections a run opens at most (the issue's `min(clients, 16)`).
pub const CONNECTIONS_MAX: usize = 16;
/// Record bytes allowed at most (a server frame must still hold one).
pub const SIZE_MAX: usize = 4 << 20;
/// The fsync policy of the servers, shown in the report.
pub const FSYNC_POLICY: &str = "fdatasync per batch, always on";

/// Which cluster a run measures.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start this many `ringraft-server` processes on 127.0.0.1 with data in
    /// a fresh temp dir.
    Spawn(usize),
    /// An existing cluster at these `host:port` addresses (its processes'
    /// CPU time is not measured).
    Cluster(Vec<String>),
}

/// The parameter a `--sweep` varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepParam {
    /// `--clients`.
    Clients,
    /// `--window`.
    Window,
    /// `--size`.
    Size,
    /// `--streams`.
    Streams,
}

/// `--sweep name=v1,v2,...`: one measurement per value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sweep {
    /// What varies.
    pub param: SweepParam,
    /// The values, in order (each at least 1).
    pub values: Vec<usize>,
}

impl FromStr for Sweep {
    type Err = String;

    fn from_str(s: &str) -> Result<Sweep, String> {
        let (name, list) = s.split_once('=').ok_or("expected NAME=V1,V2,... (e.g. clients=1,16,256)")?;
        let param = match name.trim() {
            "clients" => SweepParam::Clients,
            "window" => SweepParam::Window,
            "size" => SweepParam::Size,
            "streams" => SweepParam::Streams,
            other => return Err(format!("cannot sweep `{other}`: use clients, window, size or streams")),
        };
        let values = list
            .split(',')
            .map(|v| match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!("`{v}` is not a whole number of at least 1")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sweep { param, values })
    }
}

/// What a benchmark run is asked to do.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Spawn a cluster or use an existing one.
    pub target: Target,
    /// The cluster id the servers have (and spawned ones get).
    pub cluster_id: u64,
    /// Concurrent logical clients, each waiting for its ack unless `window`
    /// is above 1.
    pub clients: usize,
    /// Appends each logical client keeps in flight.
    pub window: usize,
    /// Bytes per record; each append carries one record.
    pub size: usize,
    /// Streams the appends are spread over (`bench-0` ...).
    pub streams: usize,
    /// Fraction of operations that are linearizable reads (0..=1).
    pub reads: f64,
    /// The measured time.
    pub duration: Duration,
    /// Time the workload runs before measuring starts.
    pub warmup: Duration,
    /// End stdout with the JSON object(s) of the results.
    pub json: bool,
    /// Run one measurement per value of this parameter.
    pub sweep: Option<Sweep>,
    /// Keep the spawned cluster's temp dir (data and server logs).
    pub keep: bool,
    /// The `ringraft-server` binary; None: `demo::locate_server_bin`.
    pub server_bin: Option<PathBuf>,
    /// Sends SIGTERM to a process id for the graceful stop of spawned
    /// servers (this crate has no `unsafe`, so the binary supplies it).
    /// None: they are stopped with SIGKILL.
    pub terminate: Option<fn(u32) -> std::io::Result<()>>,
}

impl BenchConfig {
    /// The defaults: 3 spawned servers, 16 clients, window 1,
    /// 128-byte records, 1 stream, no reads, 10 s measured after 2 s warmup.
    pub fn new() -> BenchConfig {
        BenchConfig {
            target: Target::Spawn(3),
            cluster_id: 1,
            clients: 16,
            window: 1,
            size: 128,
            streams: 1,
            reads: 0.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            json: false,
            sweep: None,
            keep: false,
            server_bin: None,
            terminate: None,
        }
    }

    /// The configurations of the measurements, one per sweep value (or just
    /// this one).
    pub(super) fn points(&self) -> Vec<BenchConfig> {
        let Some(sweep) = &self.sweep else { return vec![self.clone()] };
        let with = |v: usize| {
            let mut c = self.clone();
            match sweep.param {
                SweepParam::Clients => c.clients = v,
                SweepParam::Window => c.window = v,
                SweepParam::Size => c.size = v,
                SweepParam::Streams => c.streams = v,
            }
            c
        };
        sweep.values.iter().map(|&v| with(v)).collect()
    }

    /// # Errors
    /// `Config` naming the first flag out of range.
    pub(super) fn check(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Config(m.to_owned()));
        for p in self.points() {
            if p.clients == 0 || p.window == 0 || p.streams == 0 {
                return bad("--clients, --window and --streams must be at least 1");
            }
            if p.size == 0 || p.size > SIZE_MAX {
                return bad(&format!("--size must be 1..={SIZE_MAX} bytes"));
            }
        }
        if !(0.0..=1.0).contains(&self.reads) {
            return bad("--reads must be a fraction in 0..=1");
        }
        if self.duration.is_zero() {
            return bad("--duration must be above 0");
        }
        match &self.target {
            Target::Spawn(n) if !(1..=7).contains(n) => bad("--spawn must be 1..=7 servers"),
            Target::Cluster(a) if a.is_empty() => bad("--cluster needs at least one host:port"),
            _ => Ok(()),
        }
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig::new()
    }
}

/// Why a benchmark run failed.
#[derive(Debug)]
pub enum BenchError {
    /// A flag value the run cannot use (the binary exits with 2).
    Config(String),
    /// The temp dir, ports, probe files, server binary or processes could
    /// not be set up.
    Setup(String),
    /// A spawned server exited on its own (the message names its log).
    Server(String),
    /// No leader within the given time.
    NoLeader(Duration),
    /// A client could not connect, or creating the streams failed.
    Client(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Config(m) => write!(f, "bad configuration: {m}"),
            BenchError::Setup(m) => write!(f, "setup: {m}"),
            BenchError::Server(m) => write!(f, "server: {m}"),
            BenchError::NoLeader(d) => write!(f, "no leader elected within {d:?}"),
            BenchError::Client(m) => write!(f, "client: {m}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<DemoError> for BenchError {
    fn from(e: DemoError) -> BenchError {
        match e {
            DemoError::Server(m) => BenchError::Server(m),
            DemoError::NoLeader(d) => BenchError::NoLeader(d),
            DemoError::Client(m) => BenchError::Client(m),
            other => BenchError::Setup(other.to_string()),
        }
    }
}
