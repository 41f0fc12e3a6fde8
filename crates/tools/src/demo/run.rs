//! [`run`]: one demo run, from the empty directory to the verified stream.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use super::config::*;
use super::procs::{self, locate_server_bin, Servers};
use super::workload::{WriterSpec, HEADER_BYTES, STREAM};
use super::{drive, verify, workload};
use ringraft_client::{Client, ClientConfig, ClientError};

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
