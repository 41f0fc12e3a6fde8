//! The demo's conductor: starts the writers, shows progress on stderr,
//! SIGKILLs the leader once half the records are acknowledged, watches for
//! the new leader, restarts the killed node on its data directory about a
//! second later, and collects the writers' logs.
//!
//! It waits on the writers' "done" channel with a short timeout, so each
//! pass is a tick; every wait has a deadline (no progress for
//! [`STALL_AFTER`], no new leader within [`NEW_LEADER_WITHIN`]).

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::procs::Servers;
use super::workload::{self, Shared, WriterLog, WriterSpec};
use super::{DemoConfig, DemoError};

/// The workload fails when no append is acknowledged for this long.
const STALL_AFTER: Duration = Duration::from_secs(30);
/// A new leader must be seen this soon after the kill.
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(20);
/// The killed node is restarted this long after the kill.
const RESTART_AFTER: Duration = Duration::from_secs(1);
/// Tick while waiting for the crash point or a new leader.
const TICK_FAST: Duration = Duration::from_millis(20);
/// Tick otherwise.
const TICK: Duration = Duration::from_millis(100);
/// How often the leader shown in the progress line is refreshed.
const LEADER_REFRESH: Duration = Duration::from_millis(500);

/// What the run produced.
pub(super) struct Outcome {
    pub logs: Vec<WriterLog>,
    /// From the first append to the last writer's end.
    pub duration: Duration,
    pub leader_after: u64,
    pub killed: Option<u64>,
    pub failover: Option<Duration>,
}

/// The crash's progress.
#[derive(Default)]
struct Crash {
    /// The node killed and when.
    killed: Option<(u64, Instant)>,
    /// The first leader seen after the kill, and how long after it.
    new_leader: Option<(u64, Duration)>,
    restarted: bool,
}

impl Crash {
    fn settled(&self) -> bool {
        self.killed.is_none() || (self.new_leader.is_some() && self.restarted)
    }
}

/// The `\r` progress line on stderr.
struct Progress {
    total: u64,
    started: Instant,
    shown_at: Option<Instant>,
    every: Duration,
    dirty: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let every = if std::io::stderr().is_terminal() { TICK } else { Duration::from_secs(1) };
        Progress { total, started: Instant::now(), shown_at: None, every, dirty: false }
    }

    fn show(&mut self, acked: u64, leader: Option<u64>, force: bool) {
        let now = Instant::now();
        if !force && self.shown_at.is_some_and(|t| now - t < self.every) {
            return;
        }
        self.shown_at = Some(now);
        let rate = acked as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let leader = leader.map_or("-".to_string(), |l| l.to_string());
        eprint!("\r{acked:>9} / {} acknowledged  {rate:>8.0} appends/s  leader: node {leader}   ", self.total);
        let _ = std::io::stderr().flush();
        self.dirty = true;
    }

    /// Prints an event line on stdout below (not over) the progress line.
    fn say(&mut self, msg: &str) {
        if self.dirty {
            eprintln!();
            self.dirty = false;
        }
        println!("{msg}");
    }

    fn finish(&mut self) {
        if self.dirty {
            eprintln!();
            self.dirty = false;
        }
    }
}

/// Runs the workload with the crash; see the [module docs](self).
///
/// # Errors
/// A writer's error, a dead server, a stall, no new leader, a failed kill
/// or restart. The writers are stopped and joined on every path.
pub(super) fn drive(
    cfg: &DemoConfig,
    servers: &mut Servers,
    spec: &WriterSpec,
    shared: &Arc<Shared>,
    leader: u64,
) -> Result<Outcome, DemoError> {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let handles = workload::start(spec, cfg.clients, cfg.records, shared, &tx);
    drop(tx);
    let mut progress = Progress::new(cfg.records);
    let mut crash = Crash::default();
    let watched = watch(cfg, servers, shared, &rx, &mut progress, &mut crash, leader);
    progress.finish();
    if watched.is_err() {
        shared.abort.store(true, Ordering::Relaxed);
    }
    let logs = join(handles);
    let (duration, leader_now) = watched?;
    let logs = logs?;
    let leader_after = servers.probe_leader().or(crash.new_leader.map(|l| l.0)).unwrap_or(leader_now);
    Ok(Outcome {
        logs,
        duration: duration.saturating_duration_since(started),
        leader_after,
        killed: crash.killed.map(|k| k.0),
        failover: crash.new_leader.map(|l| l.1),
    })
}

fn join(handles: Vec<JoinHandle<Result<WriterLog, DemoError>>>) -> Result<Vec<WriterLog>, DemoError> {
    let mut logs = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(l)) => logs.push(l),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(_) => first_err = first_err.or(Some(DemoError::Client("a writer thread panicked".into()))),
        }
    }
    first_err.map_or(Ok(logs), Err)
}

/// Ticks until every writer is done and the crash has settled; returns when
/// the last writer ended and the leader last seen.
fn watch(
    cfg: &DemoConfig,
    servers: &mut Servers,
    shared: &Shared,
    done: &mpsc::Receiver<u64>,
    progress: &mut Progress,
    crash: &mut Crash,
    mut leader: u64,
) -> Result<(Instant, u64), DemoError> {
    let (mut running, mut ended_at) = (cfg.clients, None);
    let (mut last_acked, mut last_change) = (0, Instant::now());
    let mut leader_seen_at = Instant::now();
    while running > 0 || !crash.settled() {
        let fast = cfg.crash && (crash.killed.is_none() || crash.new_leader.is_none());
        match done.recv_timeout(if fast { TICK_FAST } else { TICK }) {
            Ok(_) => running -= 1,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => running = 0,
        }
        if running == 0 && ended_at.is_none() {
            ended_at = Some(Instant::now());
        }
        servers.check_alive()?;
        let acked = shared.acked.load(Ordering::Relaxed);
        if acked != last_acked || running == 0 {
            (last_acked, last_change) = (acked, Instant::now());
        } else if last_change.elapsed() > STALL_AFTER {
            return Err(DemoError::Stalled(format!("no append acknowledged for {STALL_AFTER:?} at {acked}")));
        }
        if cfg.crash {
            step_crash(servers, crash, progress, acked >= cfg.records.div_ceil(2), acked)?;
        }
        if let (Some((k, _)), Some((l, _))) = (crash.killed, crash.new_leader) {
            if leader == k {
                leader = l;
            }
        }
        if leader_seen_at.elapsed() >= LEADER_REFRESH {
            leader = servers.probe_leader().unwrap_or(leader);
            leader_seen_at = Instant::now();
        }
        progress.show(acked, Some(leader), running == 0);
    }
    Ok((ended_at.unwrap_or_else(Instant::now), leader))
}

/// One tick of the crash: kill at the half-way point, then look for the
/// new leader, then restart the killed node after [`RESTART_AFTER`].
fn step_crash(
    servers: &mut Servers,
    crash: &mut Crash,
    progress: &mut Progress,
    half_way: bool,
    acked: u64,
) -> Result<(), DemoError> {
    let Some((killed, at)) = crash.killed else {
        if half_way {
            if let Some(l) = servers.probe_leader() {
                servers.kill(l)?;
                crash.killed = Some((l, Instant::now()));
                progress.say(&format!("killed the leader, node {l}, with SIGKILL after {acked} acknowledged"));
            }
        }
        return Ok(());
    };
    if crash.new_leader.is_none() {
        // The killed process is gone, so any leader now is one of a new term.
        match servers.probe_leader() {
            Some(l) => {
                let d = at.elapsed();
                crash.new_leader = Some((l, d));
                progress.say(&format!("new leader: node {l}, {:.0} ms after the kill", d.as_secs_f64() * 1e3));
            }
            None if at.elapsed() > NEW_LEADER_WITHIN => return Err(DemoError::NoLeader(NEW_LEADER_WITHIN)),
            None => {}
        }
    }
    if !crash.restarted && at.elapsed() >= RESTART_AFTER {
        servers.restart(killed)?;
        crash.restarted = true;
        progress.say(&format!("restarted node {killed} on its data directory (it catches up from its log)"));
    }
    Ok(())
}
