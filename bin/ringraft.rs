//! `ringraft`: the command-line tool. Today: `demo` (a local 3-node cluster,
//! a workload, a crash, a verified result). Parses arguments and calls the
//! library; nothing else.

use std::process::ExitCode;

use ringraft::demo::{self, DemoConfig};

const USAGE: &str = "\
usage: ringraft demo [options]

Runs a 3-node cluster in this process (real log engines with fsync,
in-process transport), proposes from several threads, kills the leader
half-way, restarts it from disk, and checks that every node applied the same
sequence with nothing acknowledged lost.

options:
  --proposals N   proposals to acknowledge in total (default 100000)
  --threads N     proposer threads (default 8)
  --window N      proposals in flight per thread (default 64)
  --size BYTES    payload bytes per proposal, >= 8 (default 128)
  --dir PATH      where the data directories go (kept afterwards; an existing
                  cluster there is recovered and extended)
                  (default: a fresh temp dir, removed afterwards)
  --keep          keep the default temp dir afterwards
  --no-crash      do not kill the leader
  -h, --help      this help

Set RUST_LOG=info to see elections and stage events.";

fn parse(args: &[String]) -> Result<DemoConfig, String> {
    let mut cfg = DemoConfig::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v}"));
        match a.as_str() {
            "--proposals" => cfg.proposals = num(a, value(a)?)?,
            "--threads" => cfg.threads = num(a, value(a)?)?,
            "--window" => cfg.window = num(a, value(a)?)? as usize,
            "--size" => cfg.size = num(a, value(a)?)? as usize,
            "--dir" => {
                // A directory the user names is never deleted.
                cfg.dir = value(a)?.into();
                cfg.keep = true;
            }
            "--keep" => cfg.keep = true,
            "--no-crash" => cfg.crash = false,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => {}
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("ringraft: unknown command {other}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    if args[1..].iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let cfg = match parse(&args[1..]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringraft demo: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match demo::run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringraft demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
