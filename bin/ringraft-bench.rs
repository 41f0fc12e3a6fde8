//! `ringraft-bench`: the whole-system benchmark. Parses the flags into a
//! `ringraft_tools::bench::BenchConfig`, calls `ringraft_tools::bench::run` and maps its
//! outcome to an exit code (0 done, 1 failed, 2 bad flags); everything else
//! is in the library (`src/bench/`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringraft_tools::bench::{self, BenchConfig, BenchError, Sweep, Target};

/// Measure a ringraft cluster: ops/s, MB/s and latency percentiles, each
/// beside this machine's ideal (2 loopback round trips + 1 fdatasync, and
/// the raw write+fdatasync ceiling).
///
/// Logical clients share min(--clients, 16) connections; a connection
/// carrying k clients keeps k × --window appends in flight. With --json,
/// stdout ends with one JSON object per measurement, one per line (a single
/// run: the last line; a --sweep: the last N lines, one per value).
#[derive(Parser)]
#[command(name = "ringraft-bench", version)]
struct Args {
    /// Start this many local ringraft-server processes on temp dirs
    #[arg(long, default_value_t = 3, value_name = "N", conflicts_with = "cluster")]
    spawn: usize,
    /// Target an existing cluster instead (comma-separated host:port)
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...")]
    cluster: Option<Vec<String>>,
    /// The cluster id of the servers
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    /// Concurrent clients, each waiting for its ack unless --window > 1
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Appends in flight per client
    #[arg(long, default_value_t = 1)]
    window: usize,
    /// Record bytes (one record per append)
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    size: usize,
    /// Streams to spread the appends over
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Fraction of operations that are linearizable reads (0..1)
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = fraction)]
    reads: f64,
    /// Measured seconds
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = seconds)]
    duration: f64,
    /// Seconds of unrecorded load before measuring
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS", value_parser = seconds)]
    warmup: f64,
    /// One measurement per value: clients=1,16,256, window=..., size=64,1024,65536 or streams=1,16,256
    #[arg(long, value_name = "NAME=V1,V2,...")]
    sweep: Option<Sweep>,
    /// End stdout with the results as JSON (one object per line)
    #[arg(long)]
    json: bool,
    /// Keep the spawned cluster's temp dir (data and server logs)
    #[arg(long)]
    keep: bool,
    /// The ringraft-server binary (default: next to this one)
    #[arg(long, env = "RINGRAFT_SERVER_BIN", value_name = "PATH")]
    server_bin: Option<PathBuf>,
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a fraction in 0..1")),
    }
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=86_400.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a number of seconds in 0..=86400")),
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    let mut cfg = BenchConfig::new();
    cfg.target = match a.cluster {
        Some(addrs) => Target::Cluster(addrs),
        None => Target::Spawn(a.spawn),
    };
    cfg.cluster_id = a.cluster_id;
    cfg.clients = a.clients;
    cfg.window = a.window;
    cfg.size = a.size;
    cfg.streams = a.streams;
    cfg.reads = a.reads;
    cfg.duration = Duration::from_secs_f64(a.duration);
    cfg.warmup = Duration::from_secs_f64(a.warmup);
    cfg.sweep = a.sweep;
    cfg.json = a.json;
    cfg.keep = a.keep;
    cfg.server_bin = a.server_bin.filter(|p| !p.as_os_str().is_empty());
    cfg.terminate = Some(ringraft_tools::demo::sigterm);
    match bench::run(&cfg) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ BenchError::Config(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ringraft-bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
