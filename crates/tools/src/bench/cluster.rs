//! The cluster a benchmark measures: spawned (`--spawn N`, through the
//! demo's `Servers` guard, in a temp dir owned here) or existing
//! (`--cluster`). Samples what the servers expose around the measured
//! window: their `Status` counters (fsyncs, entries written, role) and, for
//! spawned servers, their CPU time from `/proc/PID/stat`; plus the bench
//! process's own CPU time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{BenchConfig, BenchError, Target};
use crate::demo::locate_server_bin;
use crate::demo::procs::{free_ports, Servers};
use ringraft_client::{probe_status, Client, ClientConfig, ClientError, Status};

/// How long the cluster may take to elect a leader.
const LEADER_WITHIN: Duration = Duration::from_secs(20);
/// Pause between two leader probes of an existing cluster.
const LEADER_POLL: Duration = Duration::from_millis(50);
/// Role code of a leader in a `Status` answer.
const ROLE_LEADER: u8 = 3;
/// Clock ticks per second of `/proc/PID/stat` times when `getconf CLK_TCK`
/// cannot be run: Linux has reported 100 (USER_HZ) on every common
/// architecture for decades (`sysconf` itself is `unsafe` to call).
const CLK_TCK_DEFAULT: f64 = 100.0;

/// The cluster under test and what it takes to clean it up.
pub(super) struct Cluster {
    /// Spawned servers; None for `--cluster`.
    servers: Option<Servers>,
    /// The spawned cluster's temp dir (data dirs `nI/`, logs `nodeI.log`).
    dir: Option<PathBuf>,
    /// Keep `dir` at the end.
    keep: bool,
    /// The servers' addresses.
    addrs: Vec<String>,
    cluster_id: u64,
    /// `(node id, pid)` of each spawned server, in node id order.
    pids: Vec<(u64, u32)>,
    /// Clock ticks per second of `/proc` CPU times.
    clk_tck: f64,
}

/// What the servers and this process said at one instant.
#[derive(Clone, Debug)]
pub(super) struct Sample {
    /// When the sample was taken (after the last answer).
    pub at: Instant,
    /// Each server's status, in address order; None if it did not answer.
    pub statuses: Vec<Option<Status>>,
    /// CPU time (user + system) of each spawned server, µs, in node id
    /// order; empty for `--cluster`; None if its `/proc` entry was unreadable.
    pub server_cpu_us: Vec<Option<f64>>,
    /// This process's CPU time, µs.
    pub self_cpu_us: Option<f64>,
}

impl Sample {
    /// The node id of the server that says it leads (highest term wins).
    pub fn leader(&self) -> Option<u64> {
        let leaders = self
            .statuses
            .iter()
            .flatten()
            .flat_map(|s| s.groups.iter().filter(|g| g.role == ROLE_LEADER).map(move |g| (g.term, s.node_id)));
        leaders.max().map(|(_, node)| node)
    }

    /// The status of node `id`, if it answered.
    pub fn node(&self, id: u64) -> Option<&Status> {
        self.statuses.iter().flatten().find(|s| s.node_id == id)
    }
}

impl Cluster {
    /// Starts the servers (`Target::Spawn`) or records the addresses
    /// (`Target::Cluster`).
    ///
    /// # Errors
    /// `Setup` when the temp dir, ports, binary or processes fail.
    pub fn open(cfg: &BenchConfig) -> Result<Cluster, BenchError> {
        let clk_tck = clk_tck();
        let n = match &cfg.target {
            Target::Cluster(addrs) => {
                let (servers, dir, pids) = (None, None, Vec::new());
                let (addrs, cluster_id, keep) = (addrs.clone(), cfg.cluster_id, cfg.keep);
                return Ok(Cluster { servers, dir, keep, addrs, cluster_id, pids, clk_tck });
            }
            Target::Spawn(n) => *n,
        };
        let bin = match &cfg.server_bin {
            Some(b) => b.clone(),
            None => locate_server_bin()?,
        };
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("ringraft-bench-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| BenchError::Setup(format!("creating {}: {e}", dir.display())))?;
        let ports = free_ports(n)?;
        let servers = match Servers::start(bin, cfg.cluster_id, &dir, &ports, cfg.terminate) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        let addrs = servers.addrs();
        // From the handles, not a scan of /proc: a child that has not
        // exec'd yet still shows the bench's own command line.
        let pids = servers.pids();
        let (servers, dir) = (Some(servers), Some(dir));
        Ok(Cluster { servers, dir, keep: cfg.keep, addrs, cluster_id: cfg.cluster_id, pids, clk_tck })
    }

    /// One line saying what is measured.
    pub fn describe(&self) -> String {
        match &self.dir {
            Some(d) => format!(
                "{} ringraft-server processes on {} (data in {})",
                self.addrs.len(),
                self.addrs.join(" "),
                d.display()
            ),
            None => format!("existing cluster {} (id {})", self.addrs.join(" "), self.cluster_id),
        }
    }

    /// Where the fsync probes write: the spawned cluster's data dir, else
    /// the system temp dir (the servers' own disks are not reachable).
    pub fn probe_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// The client configuration a workload connection uses.
    pub fn client_config(&self, cfg: &BenchConfig) -> ClientConfig {
        let mut c = ClientConfig::new(self.addrs.clone(), self.cluster_id);
        c.max_in_flight = (cfg.clients.div_ceil(super::CONNECTIONS_MAX) * cfg.window).max(1);
        c
    }

    /// Waits until a node leads.
    ///
    /// # Errors
    /// `NoLeader` after [`LEADER_WITHIN`]; `Server` if a spawned server died.
    pub fn wait_leader(&mut self) -> Result<u64, BenchError> {
        if let Some(s) = self.servers.as_mut() {
            return Ok(s.wait_leader(LEADER_WITHIN)?);
        }
        let deadline = Instant::now() + LEADER_WITHIN;
        loop {
            if let Some(l) = self.sample().leader() {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(BenchError::NoLeader(LEADER_WITHIN));
            }
            std::thread::sleep(LEADER_POLL);
        }
    }

    /// Creates streams `bench-0 .. bench-{n-1}` (existing ones are reused).
    ///
    /// # Errors
    /// `Client` when connecting or creating fails.
    pub fn create_streams(&self, n: usize) -> Result<(), BenchError> {
        let cfg = ClientConfig::new(self.addrs.clone(), self.cluster_id);
        let mut admin = Client::connect(cfg).map_err(|e| BenchError::Client(format!("connecting: {e}")))?;
        for i in 0..n {
            match admin.create_stream(&stream_name(i)) {
                Ok(_) | Err(ClientError::StreamExists(_)) => {}
                Err(e) => return Err(BenchError::Client(format!("creating stream {}: {e}", stream_name(i)))),
            }
        }
        Ok(())
    }

    /// The servers' status and CPU counters now (each status probe bounded
    /// by short timeouts).
    pub fn sample(&self) -> Sample {
        let mut cfg = ClientConfig::new(self.addrs.clone(), self.cluster_id);
        cfg.connect_timeout = Duration::from_millis(500);
        cfg.request_timeout = Duration::from_secs(1);
        let server_cpu_us = self.pids.iter().map(|&(_, pid)| cpu_us(&format!("/proc/{pid}/stat"), self.clk_tck));
        let server_cpu_us = server_cpu_us.collect();
        let self_cpu_us = cpu_us("/proc/self/stat", self.clk_tck);
        let statuses = self.addrs.iter().map(|a| probe_status(&cfg, a).ok()).collect();
        Sample { at: Instant::now(), statuses, server_cpu_us, self_cpu_us }
    }

    /// The spawned servers' node ids, in the order of `Sample::server_cpu_us`.
    pub fn cpu_nodes(&self) -> Vec<u64> {
        self.pids.iter().map(|&(id, _)| id).collect()
    }

    /// Fails if a spawned server exited on its own.
    ///
    /// # Errors
    /// `Server` naming the node and its log.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.servers.as_mut() {
            Some(s) => Ok(s.check_alive()?),
            None => Ok(()),
        }
    }

    /// Stops spawned servers (SIGTERM, then SIGKILL after a grace period)
    /// and removes the temp dir unless `keep` or the run failed (the server
    /// logs then explain the failure).
    pub fn close(mut self, ok: bool) {
        let Some(mut servers) = self.servers.take() else { return };
        for u in servers.stop() {
            eprintln!("warning: {u}");
        }
        drop(servers);
        let Some(dir) = &self.dir else { return };
        if self.keep || !ok {
            eprintln!("data and server logs kept in {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The name of stream `i` of the benchmark.
pub(super) fn stream_name(i: usize) -> String {
    format!("bench-{i}")
}

/// Clock ticks per second, from `getconf CLK_TCK`, else [`CLK_TCK_DEFAULT`].
fn clk_tck() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output();
    let parsed = out.ok().and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| s.trim().parse::<f64>().ok());
    parsed.filter(|t| *t > 0.0).unwrap_or(CLK_TCK_DEFAULT)
}

/// The fields of a `/proc/PID/stat` line after the command name (which may
/// hold spaces and parentheses, so it is skipped up to the last `)`); field
/// k of proc(5) is at index k - 3.
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// utime + stime (fields 14 and 15) of a `/proc/.../stat` file, µs.
fn cpu_us(path: &str, clk_tck: f64) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let f = stat_fields(&text)?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clk_tck * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_skip_odd_command_names() {
        let line = "42 (ringraft (x) y) S 7 42 42 0 -1 4194560 1 0 0 0 250 30 0 0 20 0 9 0 1 2 3";
        let f = stat_fields(line).unwrap_or_default();
        assert_eq!(f[0], "S");
        assert_eq!(f[1], "7");
        assert_eq!((f[11], f[12]), ("250", "30"));
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_us("/proc/self/stat", clk_tck()).is_some());
    }
}
