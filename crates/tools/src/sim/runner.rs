//! Running many seeds: spreading them over threads, stopping early when a
//! mutant is caught, summing counters, and the failure report.
//!
//! Results never depend on the thread count: seeds are handed out in
//! increasing order, results are sorted by seed before they are summed, and
//! an early stop keeps exactly the seeds up to the first failing one.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::knobs::Knobs;
use super::outcome::Outcome;
use super::panics::install_panic_hook;
use super::rng::fold;
use super::stats::Stats;
use super::world::World;

/// Runs one seed.
pub fn run_seed(seed: u64, steps: u64, mutant: Option<&str>, print_trace: bool) -> Outcome {
    World::new(Knobs::from_seed(seed, steps, mutant.map(str::to_string)), print_trace).run()
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The first seed.
    pub first_seed: u64,
    /// How many seeds (consecutive from `first_seed`).
    pub seeds: u64,
    /// Fault-phase events per seed.
    pub steps: u64,
    /// Worker threads.
    pub threads: usize,
    /// The mutant to enable, by name.
    pub mutant: Option<String>,
    /// Stop at the first failing seed (keeping every seed before it).
    pub stop_at_first: bool,
    /// Stop handing out seeds at this instant (soak mode).
    pub deadline: Option<Instant>,
    /// Run the node simulator (whole nodes) instead of the core simulator.
    pub node: bool,
}

/// The result of many seeds.
#[derive(Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds_run: u64,
    /// Counters summed over every seed.
    pub stats: Stats,
    /// Failing runs, by seed.
    pub failures: Vec<Outcome>,
    /// Per-seed trace hashes folded in seed order.
    pub trace_hash: u64,
}

impl Summary {
    /// The summary line: `key=value` pairs.
    pub fn line(&self, mutant: Option<&str>) -> String {
        let mut s = format!(
            "seeds={} violations={} {} trace_hash={:016x}",
            self.seeds_run,
            self.failures.len(),
            self.stats.key_values(),
            self.trace_hash
        );
        if let Some(m) = mutant {
            let _ = write!(s, " mutant={m}");
        }
        if let Some(f) = self.failures.first() {
            let _ = write!(
                s,
                " first_violation_seed={} first_violation={}",
                f.seed,
                f.violation.as_ref().map(|v| v.kind).unwrap_or("?")
            );
        }
        s
    }
}

/// A light result of one seed (the full outcome is kept only for failures).
struct SeedResult {
    seed: u64,
    stats: Stats,
    hash: u64,
    failure: Option<Outcome>,
}

/// Runs seeds `first_seed..first_seed + seeds` over `threads` threads.
pub fn run_many(opts: &RunOptions) -> Summary {
    install_panic_hook();
    let next = AtomicU64::new(0);
    let stop_seed = AtomicU64::new(u64::MAX);
    let results: Mutex<Vec<SeedResult>> = Mutex::new(Vec::new());
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let seed = opts.first_seed + i;
        if i >= opts.seeds || seed > stop_seed.load(Ordering::SeqCst) {
            break;
        }
        if opts.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let out = if opts.node {
            super::whole::run_node_seed(seed, opts.steps, opts.mutant.as_deref(), false)
        } else {
            run_seed(seed, opts.steps, opts.mutant.as_deref(), false)
        };
        let failed = out.violation.is_some();
        if failed && opts.stop_at_first {
            stop_seed.fetch_min(seed, Ordering::SeqCst);
        }
        let r = SeedResult { seed, stats: out.stats.clone(), hash: out.trace_hash, failure: failed.then_some(out) };
        if let Ok(mut v) = results.lock() {
            v.push(r);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(worker);
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let stop = stop_seed.load(Ordering::SeqCst);
    results.retain(|r| r.seed <= stop);
    results.sort_by_key(|r| r.seed);
    let mut sum = Summary { trace_hash: 0x5eed, ..Summary::default() };
    for r in results {
        sum.seeds_run += 1;
        sum.stats.add(&r.stats);
        sum.trace_hash = fold(fold(sum.trace_hash, r.seed), r.hash);
        if let Some(f) = r.failure {
            sum.failures.push(f);
        }
    }
    sum
}

/// The full report of a failing run: the violation, every knob, the last
/// trace lines and the command that replays it.
pub fn failure_report(out: &Outcome) -> String {
    let mut s = String::new();
    let v = out.violation.as_ref().map(|v| v.to_string()).unwrap_or_default();
    let _ = writeln!(s, "VIOLATION seed={} {}", out.seed, v);
    let _ = writeln!(s, "knobs: {:#?}", out.knobs);
    let _ = writeln!(s, "last {} trace lines:", out.tail.len());
    for l in &out.tail {
        let _ = writeln!(s, "  {l}");
    }
    let mutant = out.knobs.mutant.as_deref().map(|m| format!(" --mutant {m}")).unwrap_or_default();
    let default = if out.knobs.node.is_some() { super::knobs::NODE_STEPS } else { super::knobs::DEFAULT_STEPS };
    let steps = if out.knobs.steps != default { format!(" --steps {}", out.knobs.steps) } else { String::new() };
    let node = if out.knobs.node.is_some() { " --node" } else { "" };
    let _ = writeln!(s, "replay: scripts/sim.sh{node} --seed {}{steps}{mutant} --trace", out.seed);
    s
}
