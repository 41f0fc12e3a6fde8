//! `ringraft-sim`: runs the deterministic cluster simulator over many seeds
//! (or one, with its trace) and prints one summary line of `key=value`
//! pairs. Exits non-zero iff some seed broke an invariant.
//!
//! Argument parsing only; the simulator lives in `ringraft_tools::sim`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringraft_tools::sim::{failure_report, run_many, run_node_seed, run_seed, RunOptions, DEFAULT_STEPS, NODE_STEPS};

const HELP: &str = "\
ringraft-sim: deterministic simulation of a ringraft cluster under faults

USAGE: ringraft-sim [OPTIONS]

OPTIONS:
  --seeds N        run seeds 0..N (default 100)
  --first-seed S   start at seed S instead of 0
  --seed S         run the one seed S
  --node           run the node simulator: whole nodes (core, log engine, service state
                   machine, checkpoints, snapshot transfer and install, recovery) on
                   simulated disks, with clients and a history check
  --steps N        fault-phase events per seed (default 5000; 20000 with --node); a heal
                   phase follows
  --minutes N      soak: run seeds from the first one until N minutes have passed
  --mutant NAME    enable a deliberate bug (build with feature sim-mutants) and
                   stop at the first seed that catches it; core names:
                   commit-prev-term, double-vote, skip-up-to-date,
                   ack-before-persist, lease-after-timeout-now, lease-too-long,
                   resume-other-content, promote-unchecked; with --node:
                   recover-keeps-stale-tail, snapshot-fsync-retry,
                   checkpoint-single-copy, snapshot-incoming-race,
                   read-ctx-from-zero, persist-ack-aba, log-time-unbounded,
                   delete-not-deduplicated
  --keep-going     with --mutant: run every seed instead of stopping at the first catch
  --trace          print the readable trace of the seed (needs --seed)
  --threads N      worker threads (default: available cores); results do not depend on it
  --failures N     print full reports of at most N failing seeds (default 3)
  -h, --help       this text

The last line printed is the summary: seeds= steps= violations= elections= commits= ...
faults_<kind>= ... trace_hash= [first_violation_seed=]. Replay a failing seed with
  scripts/sim.sh --seed S [--mutant M] --trace
";

struct Args {
    seeds: u64,
    first_seed: u64,
    one_seed: Option<u64>,
    steps: u64,
    minutes: Option<u64>,
    mutant: Option<String>,
    trace: bool,
    keep_going: bool,
    threads: usize,
    failures: usize,
    node: bool,
}

fn parse_num(flag: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse::<u64>().map_err(|_| format!("{flag}: '{v}' is not a non-negative integer"))
}

fn parse_args() -> Result<Option<Args>, String> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut a = Args {
        seeds: 100,
        first_seed: 0,
        one_seed: None,
        steps: DEFAULT_STEPS,
        minutes: None,
        mutant: None,
        trace: false,
        keep_going: false,
        threads,
        failures: 3,
        node: false,
    };
    let mut steps = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seeds" => a.seeds = parse_num(&flag, it.next())?,
            "--first-seed" => a.first_seed = parse_num(&flag, it.next())?,
            "--seed" => a.one_seed = Some(parse_num(&flag, it.next())?),
            "--steps" => steps = Some(parse_num(&flag, it.next())?),
            "--node" => a.node = true,
            "--minutes" => a.minutes = Some(parse_num(&flag, it.next())?),
            "--threads" => a.threads = parse_num(&flag, it.next())?.max(1) as usize,
            "--failures" => a.failures = parse_num(&flag, it.next())? as usize,
            "--trace" => a.trace = true,
            "--keep-going" => a.keep_going = true,
            "--mutant" => a.mutant = Some(it.next().ok_or("--mutant needs a name")?),
            other => return Err(format!("unknown argument '{other}' (try --help)")),
        }
    }
    a.steps = steps.unwrap_or(if a.node { NODE_STEPS } else { DEFAULT_STEPS });

    if a.trace && a.one_seed.is_none() {
        return Err("--trace prints one seed: give --seed S".into());
    }
    if let Some(m) = &a.mutant {
        if a.node {
            check_node_mutant(m)?;
        } else {
            check_mutant(m)?;
        }
    }
    Ok(Some(a))
}

#[cfg(feature = "sim-mutants")]
fn check_mutant(name: &str) -> Result<(), String> {
    use ringraft::core::Mutant;
    if Mutant::from_name(name).is_none() {
        let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
        return Err(format!("unknown mutant '{name}'; known: {}", names.join(", ")));
    }
    Ok(())
}

/// Core mutants that only the node simulator catches (its processes'
/// clocks restart at 0; its disk writes take time).
#[cfg(feature = "sim-mutants")]
const NODE_CORE_MUTANTS: [&str; 2] = ["read-ctx-from-zero", "persist-ack-aba"];

/// A node-simulator mutant: a core one above, or a deliberate bug in the
/// layers around the core (`ringraft::fs::MUTANTS`), switched on for this
/// process.
#[cfg(feature = "sim-mutants")]
fn check_node_mutant(name: &str) -> Result<(), String> {
    if NODE_CORE_MUTANTS.contains(&name) {
        return Ok(());
    }
    if !ringraft::fs::MUTANTS.contains(&name) {
        let mut known: Vec<&str> = NODE_CORE_MUTANTS.to_vec();
        known.extend(ringraft::fs::MUTANTS);
        return Err(format!("unknown node mutant '{name}'; known: {}", known.join(", ")));
    }
    // Read once, by the storage code, after this (one thread so far).
    std::env::set_var("RINGRAFT_FS_MUTANT", name);
    Ok(())
}

#[cfg(not(feature = "sim-mutants"))]
fn check_node_mutant(_name: &str) -> Result<(), String> {
    Err("--mutant needs the sim-mutants feature (scripts/sim.sh enables it)".into())
}

#[cfg(not(feature = "sim-mutants"))]
fn check_mutant(_name: &str) -> Result<(), String> {
    Err("--mutant needs the sim-mutants feature (scripts/sim.sh enables it)".into())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ringraft-sim: {e}");
            return ExitCode::from(2);
        }
    };
    ringraft_tools::sim::install_panic_hook();
    let started = Instant::now();
    if let Some(seed) = args.one_seed {
        let out = if args.node {
            run_node_seed(seed, args.steps, args.mutant.as_deref(), args.trace)
        } else {
            run_seed(seed, args.steps, args.mutant.as_deref(), args.trace)
        };
        if out.violation.is_some() {
            print!("{}", failure_report(&out));
        }
        let v = out.violation.as_ref();
        let mut line = format!(
            "seeds=1 violations={} {} trace_hash={:016x}",
            u64::from(v.is_some()),
            out.stats.key_values(),
            out.trace_hash
        );
        if let Some(m) = &args.mutant {
            line.push_str(&format!(" mutant={m}"));
        }
        if let Some(v) = v {
            line.push_str(&format!(" first_violation_seed={seed} first_violation={}", v.kind));
        }
        println!("elapsed_s={:.2}", started.elapsed().as_secs_f64());
        println!("{line}");
        return if v.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    }
    let opts = RunOptions {
        first_seed: args.first_seed,
        seeds: if args.minutes.is_some() { u64::MAX - args.first_seed } else { args.seeds },
        steps: args.steps,
        threads: args.threads,
        mutant: args.mutant.clone(),
        stop_at_first: args.mutant.is_some() && !args.keep_going,
        deadline: args.minutes.map(|m| started + Duration::from_secs(m * 60)),
        node: args.node,
    };
    let sum = run_many(&opts);
    for f in sum.failures.iter().take(args.failures) {
        print!("{}", failure_report(f));
    }
    for f in sum.failures.iter().skip(args.failures) {
        let v = f.violation.as_ref().map(|v| v.to_string()).unwrap_or_default();
        println!("VIOLATION seed={} {v}", f.seed);
    }
    println!("elapsed_s={:.2} threads={}", started.elapsed().as_secs_f64(), args.threads);
    println!("{}", sum.line(args.mutant.as_deref()));
    if sum.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
