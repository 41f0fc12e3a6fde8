//! One nemesis run, start to verdict: start a cluster behind proxies,
//! create the streams, run the clients while the nemesis injects faults,
//! heal everything, wait until every replica has applied the leader's
//! commit index, read every stream from every node (`final` lines), and
//! check the history. A soak is runs back to back with consecutive seeds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::{Cluster, ClusterError};
use super::faults::{Nemesis, KINDS};
use super::record::Recorder;
use super::workload::{Clients, Workload};
use super::Report;
use ringraft_client::{Client, ClientConfig, ClientError, ReadConsistency};
use ringraft_service::READ_RECORDS_MAX;

/// What one run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The seed of the fault schedule and the clients' choices.
    pub seed: u64,
    /// Servers (3 or 5).
    pub nodes: u64,
    /// How long the clients run under faults.
    pub duration: Duration,
    /// The run's directory (data, logs, history); created.
    pub dir: PathBuf,
    /// The `ringraft-server` binary.
    pub server_bin: PathBuf,
    /// Fault kinds to draw from.
    pub kinds: Vec<&'static str>,
    /// The clients.
    pub workload: Workload,
    /// Keep the run's directory even when it found nothing.
    pub keep: bool,
    /// Self-test: the image node's `fdatasync` lies (returns at once
    /// without syncing), so power-loss faults must find `durability`
    /// anomalies.
    pub lying_fsync: bool,
    /// Self-test: a deliberate core bug every server runs with (a server
    /// built with the `sim-mutants` feature; `RINGRAFT_MUTANT`).
    pub mutant: Option<String>,
    /// Set (by a signal handler) to cut the run short: the faults stop,
    /// everything is healed and checked as usual, and a soak starts no
    /// further run.
    pub interrupt: Arc<AtomicBool>,
}

impl RunConfig {
    /// A run of `seed` for `duration` on `nodes` servers, every fault kind,
    /// the default workload.
    pub fn new(seed: u64, nodes: u64, duration: Duration, dir: PathBuf, server_bin: PathBuf) -> RunConfig {
        RunConfig {
            seed,
            nodes,
            duration,
            dir,
            server_bin,
            kinds: KINDS.to_vec(),
            workload: Workload::default(),
            keep: false,
            lying_fsync: false,
            mutant: None,
            interrupt: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flags besides `--seed` that shape this run's schedule and
    /// workload, as `ringraft-nemesis` takes them (the replay command).
    pub fn replay_options(&self) -> String {
        let mut o =
            format!("--nodes {} --seconds {} --clients {}", self.nodes, self.duration.as_secs(), self.workload.clients);
        if self.kinds != KINDS {
            o.push_str(&format!(" --faults {}", self.kinds.join(",")));
        }
        if self.lying_fsync {
            o.push_str(" --lying-fsync");
        }
        if let Some(m) = &self.mutant {
            o.push_str(&format!(" --mutant {m}"));
        }
        o
    }
}

/// The outcome of one run.
pub struct RunOutcome {
    /// The checker's report (counts, faults, anomalies).
    pub report: Report,
    /// The report rendered: anomalies with their history lines, the replay
    /// command, the summary line.
    pub text: String,
    /// The history file.
    pub history: PathBuf,
    /// Fault kinds this machine could not inject, with why.
    pub skipped: Vec<(&'static str, String)>,
}

/// Flags every server of a nemesis run gets: small checkpoint and snapshot
/// thresholds, so that snapshots, compaction and snapshot installs happen
/// within a short run.
fn server_args() -> Vec<String> {
    ["--checkpoint-entries", "1000", "--snapshot-entries", "4000", "--checkpoint-interval-ms", "1000"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// Runs one nemesis run.
///
/// # Errors
/// The cluster or the history file could not be set up, or the history
/// could not be written. Findings are not errors: they are anomalies in the
/// outcome's report.
pub fn run(cfg: &RunConfig) -> Result<RunOutcome, ClusterError> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| ClusterError(format!("{}: {e}", cfg.dir.display())))?;
    let history = cfg.dir.join("history.txt");
    let rec = Arc::new(
        Recorder::create(&history, cfg.seed, &cfg.replay_options())
            .map_err(|e| ClusterError(format!("creating {}: {e}", history.display())))?,
    );
    let mut cluster =
        Cluster::start(&cfg.server_bin, cfg.nodes, &cfg.dir, &server_args(), cfg.lying_fsync, cfg.mutant.as_deref())?;
    let skipped = cluster.missing.clone();
    for (kind, why) in &skipped {
        rec.note(&format!("fault kind {kind} skipped: {why}"));
    }
    create_streams(&cluster, &cfg.workload.streams)?;
    let clients = Clients::start(&cfg.workload, &cluster.addrs, cluster.cluster_id, &rec, cfg.seed)
        .map_err(|e| ClusterError(format!("starting the clients: {e}")))?;
    let end = Instant::now() + cfg.duration;
    {
        let mut nemesis = Nemesis::new(&mut cluster, &rec, cfg.seed, &cfg.kinds, &cfg.interrupt);
        nemesis.run_until(end);
        nemesis.heal_all();
        rec.note("healed");
        // The clients go on a little on the healed cluster.
        let rest = if cfg.interrupt.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            end.saturating_duration_since(Instant::now())
        };
        std::thread::sleep(rest.max(Duration::from_secs(2)));
        clients.stop();
        nemesis.check_exits();
        let down = nemesis.given_up().to_vec();
        converge(nemesis.cluster(), &rec, &down);
        read_finals(nemesis.cluster(), &cfg.workload.streams, &rec, &down);
    }
    let unclean = cluster.stop();
    for u in unclean {
        rec.note(&format!("stop: {u}"));
    }
    drop(cluster);
    rec.finish().map_err(|e| ClusterError(format!("writing {}: {e}", history.display())))?;
    let text = std::fs::read_to_string(&history).map_err(|e| ClusterError(format!("{}: {e}", history.display())))?;
    let (text, report) =
        super::check_text(&text).map_err(|e| ClusterError(format!("the recorded history does not parse: {e}")))?;
    Ok(RunOutcome { report, text, history, skipped })
}

fn create_streams(c: &Cluster, streams: &[String]) -> Result<(), ClusterError> {
    let mut cfg = ClientConfig::new(c.addrs.clone(), c.cluster_id);
    cfg.request_timeout = Duration::from_secs(10);
    let mut client = Client::connect(cfg).map_err(|e| ClusterError(format!("connecting: {e}")))?;
    for s in streams {
        match client.create_stream(s) {
            Ok(_) | Err(ClientError::StreamExists(_)) => {}
            Err(e) => return Err(ClusterError(format!("creating stream {s}: {e}"))),
        }
    }
    Ok(())
}

/// Waits (up to 60 s) until one leader's commit index is applied on every
/// node but those in `down` (already reported) and every node is a voter;
/// a `liveness` anomaly otherwise.
fn converge(c: &Cluster, rec: &Recorder, down: &[u64]) {
    if !down.is_empty() {
        rec.note(&format!("nodes {down:?} are down for good; the others must converge"));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        // One round of status answers serves both questions.
        let statuses = c.statuses(c.ids().filter(|id| !down.contains(id)));
        if let Some((l, ls)) = crate::demo::procs::leader_in(statuses.iter().map(|(id, s)| (*id, s))) {
            let g = ls.groups.first();
            let commit = g.map_or(0, |g| g.commit);
            let voters = g.map(|g| g.voters.len() as u64).unwrap_or_default();
            let applied: Vec<(u64, u64)> = c
                .ids()
                .filter(|id| !down.contains(id))
                .map(|id| {
                    let s = statuses.iter().find(|(n, _)| *n == id);
                    (id, s.and_then(|(_, s)| s.groups.first().map(|g| g.applied)).unwrap_or(0))
                })
                .collect();
            if voters == c.n && applied.iter().all(|&(_, a)| a >= commit) {
                rec.note(&format!("converged: leader {l}, every node applied {commit}"));
                return;
            }
            last = format!("leader {l} commit {commit} voters {voters} applied {applied:?}");
        } else {
            last = "no leader".into();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    rec.anomaly("liveness", &format!("the healed cluster did not converge within 60 s: {last}"));
}

/// Reads every stream whole from every node but those in `down` (follower
/// reads: that node's own replica) into `final` lines.
fn read_finals(c: &Cluster, streams: &[String], rec: &Recorder, down: &[u64]) {
    for id in c.ids().filter(|id| !down.contains(id)) {
        let mut cfg = ClientConfig::new(vec![c.addr(id).to_owned()], c.cluster_id);
        cfg.request_timeout = Duration::from_secs(5);
        for s in streams {
            match read_all(&cfg, s) {
                Ok(records) => rec.final_stream(id, s, records.iter().map(|b| &b[..])),
                Err(e) => rec.note(&format!("node {id}: reading stream {s} failed: {e}")),
            }
        }
    }
}

fn read_all(cfg: &ClientConfig, stream: &str) -> Result<Vec<bytes::Bytes>, ClientError> {
    let mut client = Client::connect(cfg.clone())?;
    let mut out = Vec::new();
    loop {
        let r = client.read(stream, out.len() as u64, READ_RECORDS_MAX as u32, u32::MAX, ReadConsistency::Follower)?;
        if r.records.is_empty() {
            return Ok(out);
        }
        out.extend(r.records);
    }
}

/// The runs of a soak: `minutes` of runs like `base`, seeds from
/// `base.seed` up, 3 and 5 servers in turn, each in its own directory under
/// `base.dir` (kept when it found anomalies or `keep` is set, removed
/// otherwise). Calls `on_run` as each run ends; returns the total report
/// and the seeds.
///
/// # Errors
/// A run could not be set up.
pub fn soak(
    base: &RunConfig,
    minutes: u64,
    on_run: &mut dyn FnMut(&RunConfig, &RunOutcome),
) -> Result<(Report, Vec<u64>), ClusterError> {
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    let mut total = Report::default();
    let mut seeds = Vec::new();
    let mut i = 0u64;
    while seeds.is_empty() || (Instant::now() + base.duration / 2 < end && !base.interrupt.load(Ordering::Acquire)) {
        let mut cfg = base.clone();
        cfg.seed = base.seed + i;
        cfg.nodes = if i.is_multiple_of(2) { base.nodes } else { 8 - base.nodes };
        cfg.dir = base.dir.join(format!("seed-{}", cfg.seed));
        let out = run(&cfg)?;
        on_run(&cfg, &out);
        if out.report.anomalies.is_empty() && !cfg.keep {
            let _ = remove_run_dir(&cfg.dir);
        }
        seeds.push(cfg.seed);
        total.merge(out.report);
        i += 1;
    }
    Ok((total, seeds))
}

/// Removes a finished run's directory (its servers are stopped and its
/// disks unmounted by then).
fn remove_run_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(dir)
}
