//! [`run`]: one benchmark run, from the ideal to the last measurement.

use super::config::{BenchConfig, BenchError, FSYNC_POLICY};
use super::ideal::Ideal;
use super::report::Measurement;
use super::{cluster, load, report};

/// Runs the benchmark: the ideal, then each measurement, printing as it
/// goes (see the [module docs](super) for the output). Spawned servers are
/// stopped and their temp dir removed (unless `keep`, or on failure) before
/// it returns.
///
/// # Errors
/// The first thing that went wrong (see [`BenchError`]).
pub fn run(cfg: &BenchConfig) -> Result<Vec<Measurement>, BenchError> {
    cfg.check()?;
    let mut cl = cluster::Cluster::open(cfg)?;
    let result = run_on(cfg, &mut cl);
    cl.close(result.is_ok());
    result
}

/// The measurements on an open cluster.
fn run_on(cfg: &BenchConfig, cl: &mut cluster::Cluster) -> Result<Vec<Measurement>, BenchError> {
    println!("ringraft-bench: {}; fsync policy: {FSYNC_POLICY}", cl.describe());
    // Probe the disk once the servers are idle (elected, only heartbeats).
    cl.wait_leader()?;
    let ideal = Ideal::measure(&cl.probe_dir(), cfg.size)?;
    println!("{ideal}");
    // Every stream any point of a sweep uses exists before the first one.
    cl.create_streams(cfg.points().iter().map(|p| p.streams).max().unwrap_or(cfg.streams))?;
    let mut rows = Vec::new();
    println!("{}", report::table_header());
    for point in cfg.points() {
        let m = measure(&point, cl, &ideal)?;
        println!("{}", m.table_row());
        rows.push(m);
    }
    if !rows.iter().all(|m| m.errors.is_empty()) {
        for m in &rows {
            for (kind, n) in &m.errors {
                println!("errors (clients {}, window {}, size {}): {kind} {n}", m.clients, m.window, m.size);
            }
        }
    }
    if cfg.json {
        for m in &rows {
            println!("{}", m.json());
        }
    }
    Ok(rows)
}

/// One measurement: warmup, counters sampled, recorded window, counters
/// sampled again.
fn measure(cfg: &BenchConfig, cl: &mut cluster::Cluster, ideal: &Ideal) -> Result<Measurement, BenchError> {
    let spec = load::LoadSpec::new(cfg, cl.client_config(cfg));
    let run = load::Run::start(&spec)?;
    run.sleep_through_warmup();
    let before = cl.sample();
    run.sleep_through_measure();
    let after = cl.sample();
    let totals = run.finish()?;
    cl.check_alive()?;
    Ok(Measurement::new(cfg, ideal, &totals, &before, &after, &cl.cpu_nodes()))
}
