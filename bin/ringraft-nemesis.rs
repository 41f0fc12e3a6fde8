//! `ringraft-nemesis`: runs real `ringraft-server` processes through faults
//! (kill -9, SIGSTOP, partitions through proxies, leader transfer,
//! membership changes, snapshots, a full disk, a failing fsync, a power
//! cut) while clients append and read, then checks everything the clients
//! saw. `--check FILE` checks a recorded history alone.
//!
//! Prints every anomaly with the history lines that show it and the replay
//! command, then one summary line of `key=value` pairs ending in
//! `anomalies=N`.
//!
//! Exit codes: 0 no anomaly, 1 anomalies found, 2 bad usage, a history that
//! does not parse, or a cluster that could not be set up, 130 interrupted
//! (SIGINT/SIGTERM: the run in progress is healed, checked and reported
//! first; a second signal exits at once, and the servers die with it).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ringraft_tools::nemesis::faults::KINDS;
use ringraft_tools::nemesis::run::{run, soak, RunConfig, RunOutcome};

/// Run a ringraft cluster through faults and check what its clients saw:
/// every acknowledged append present exactly once at its offset, the same
/// stream on every replica, real-time order, no stale or invented read.
/// The history format is documented in src/nemesis/history.rs.
#[derive(Parser)]
#[command(name = "ringraft-nemesis", version)]
struct Args {
    /// Check a recorded history instead of running.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["seed", "seconds", "minutes", "nodes", "faults", "dir"])]
    check: Option<PathBuf>,
    /// The seed of the first run (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Length of one run's faulty period, seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    seconds: u64,
    /// Soak: runs back to back (seeds counting up, 3 and 5 servers in
    /// turn) for this many minutes. Without it, one run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1440))]
    minutes: Option<u64>,
    /// Servers in the (first) run: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    nodes: u64,
    /// Fault kinds to inject, comma-separated (default: all of kill, pause,
    /// partition, oneway, bridge, delay, drop, cut, transfer, membership,
    /// snapshot, disk-full, disk-full-kill, fsync-fail, power-loss).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Client threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    clients: u64,
    /// Where runs keep their data, logs and histories (default: a new
    /// directory under /tmp). A run without anomalies is removed unless
    /// --keep is given.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep every run's directory (history, server logs, data).
    #[arg(long, conflicts_with = "check")]
    keep: bool,
    /// Self-test of the power-loss check: node 3's Raft-log fdatasync returns
    /// without syncing, so power-loss faults must report `durability`
    /// anomalies (and the run exits 1).
    #[arg(long, conflicts_with = "check")]
    lying_fsync: bool,
    /// Self-test: every server runs with this deliberate core bug (needs a
    /// server built with `--features sim-mutants`, named by
    /// RINGRAFT_SERVER_BIN; e.g. ack-before-persist, lease-too-long).
    #[arg(long, conflicts_with = "check", value_name = "NAME")]
    mutant: Option<String>,
}

fn parse_nodes(s: &str) -> Result<u64, String> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("{s:?}: a nemesis cluster has 3 or 5 servers")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match &args.check {
        Some(file) => check_file(file),
        None => run_cluster(&args),
    }
}

fn check_file(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringraft-nemesis: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match ringraft_tools::nemesis::check_text(&text) {
        Ok((text, report)) => {
            print!("{text}");
            if report.anomalies.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ringraft-nemesis: {}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

fn run_cluster(args: &Args) -> ExitCode {
    // Blocked before any thread exists, so only the waiter below takes them.
    let signals = match ringraft_tools::signals::block_term_int() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringraft-nemesis: cannot block SIGTERM/SIGINT: {e}");
            return ExitCode::from(2);
        }
    };
    let mut kinds = Vec::new();
    for f in &args.faults {
        match KINDS.iter().find(|k| **k == f.as_str()) {
            Some(k) => kinds.push(*k),
            None => {
                eprintln!("ringraft-nemesis: unknown fault kind {f:?}; the kinds are {}", KINDS.join(","));
                return ExitCode::from(2);
            }
        }
    }
    let bin = match ringraft_tools::demo::locate_server_bin() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ringraft-nemesis: {e}");
            return ExitCode::from(2);
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() % 1_000_000)
    });
    let dir = args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("ringraft-nemesis-{seed}")));
    let mut cfg = RunConfig::new(seed, args.nodes, Duration::from_secs(args.seconds), dir.clone(), bin);
    if !kinds.is_empty() {
        cfg.kinds = kinds;
    }
    cfg.workload.clients = args.clients as usize;
    cfg.keep = args.keep;
    cfg.lying_fsync = args.lying_fsync;
    cfg.mutant = args.mutant.clone();
    let interrupt = Arc::clone(&cfg.interrupt);
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            eprintln!(
                "ringraft-nemesis: {}: healing, checking and reporting the run in progress (a second signal exits at \
                 once)",
                ringraft_tools::signals::name(sig)
            );
            interrupt.store(true, Ordering::Release);
            if let Ok(sig) = signals.wait() {
                // The servers die with this process (PDEATHSIG); the
                // mounts are detached here.
                eprintln!("ringraft-nemesis: second {}: exiting now", ringraft_tools::signals::name(sig));
                ringraft_tools::nemesis::disks::detach_all();
                std::process::exit(130);
            }
        }
    });
    println!("nemesis: seed {seed}, {} servers, runs of {} s, data in {}", args.nodes, args.seconds, dir.display());
    let report_run = |c: &RunConfig, out: &RunOutcome| {
        for (kind, why) in &out.skipped {
            println!("skipped fault kind {kind}: {why}");
        }
        let anomalies = !out.report.anomalies.is_empty();
        // The whole report (anomalies first) when something was found,
        // else just its summary.
        let shown = if anomalies { out.text.trim_end() } else { out.text.lines().last().unwrap_or_default() };
        println!("run seed={} nodes={}: {shown}", c.seed, c.nodes);
        if anomalies {
            println!("history: {}", out.history.display());
        }
    };
    let result = match args.minutes {
        None => run(&cfg).map(|out| {
            report_run(&cfg, &out);
            (out.report, vec![seed])
        }),
        Some(m) => soak(&cfg, m, &mut |c, out| report_run(c, out)),
    };
    match result {
        Ok((report, seeds)) => {
            let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
            let interrupted = cfg.interrupt.load(Ordering::Acquire);
            if interrupted {
                println!("interrupted: the last run was cut short");
            }
            println!("runs={} seeds={} {}", seeds.len(), seeds.join(","), report.summary());
            if !report.anomalies.is_empty() {
                return ExitCode::from(1);
            }
            if !args.keep {
                // The runs' own directories are gone already.
                let _ = std::fs::remove_dir_all(&dir);
            }
            if interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("ringraft-nemesis: {e}");
            ExitCode::from(2)
        }
    }
}
