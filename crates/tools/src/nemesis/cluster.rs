//! The cluster a nemesis run drives: real `ringraft-server` processes on
//! 127.0.0.1 whose every peer link goes through a [`Proxy`] of its own, and
//! the disks of [`super::disks`] under some of them.
//!
//! Peer links: of two nodes the lower id dials the higher (the transport's
//! rule), so node `i`'s `--peers` names, for every higher `j`, the proxy
//! of the pair `(i, j)`, which forwards to `j`. One proxy carries both
//! directions of a pair: `Forward` is `i → j`, `Backward` is `j → i`.
//! Clients reach the servers directly.
//!
//! Disks: node 2 lives on a small tmpfs (disk-full faults) and node 3 on a
//! loop-mounted ext4 image (power-loss faults) when this machine allows
//! mounting; every node runs under the `fdatasync` failure shim when gcc
//! can build it. What could not be set up is listed in [`Cluster::missing`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::disks::Disk;
use super::proxy::{Direction, Proxy};
use crate::demo::procs::{free_ports, leader_in, Launch, Servers};
use crate::demo::DemoError;
use ringraft_client::{probe_status, AdminAck, AdminRequest, Client, ClientConfig, ClientError, Role, Status};
use ringraft_service::machine::SERVICE_GROUP;

/// The node on a tmpfs, when mounts work.
pub const TMPFS_NODE: u64 = 2;
/// The node on a loop-mounted image, when mounts work.
pub const IMAGE_NODE: u64 = 3;
/// Size of the tmpfs and of the image, MiB (the server preallocates 64 MiB
/// log segments).
const DISK_MIB: u64 = 512;
/// The source of the `fdatasync` failure shim.
const FSYNC_SHIM_C: &str = include_str!("../../../../tests/shims/fsync_eio.c");

/// The running cluster of one nemesis run.
pub struct Cluster {
    /// Nodes `1..=n`.
    pub n: u64,
    /// The cluster id.
    pub cluster_id: u64,
    /// Each node's own (unproxied) address, by id - 1.
    pub addrs: Vec<String>,
    // Dropped before the disks: every server is dead before its disk is
    // unmounted.
    servers: Servers,
    proxies: BTreeMap<(u64, u64), Proxy>,
    disks: Vec<Disk>,
    /// The flag file that makes the shim fail `fdatasync`, per node.
    fsync_flags: Option<Vec<PathBuf>>,
    /// Fault kinds this machine cannot support, with the reason.
    pub missing: Vec<(&'static str, String)>,
}

/// A setup or control failure of the cluster (not a finding).
#[derive(Debug)]
pub struct ClusterError(pub String);

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

impl From<DemoError> for ClusterError {
    fn from(e: DemoError) -> ClusterError {
        ClusterError(e.to_string())
    }
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> ClusterError + '_ {
    move |e| ClusterError(format!("{what}: {e}"))
}

/// Builds the fsync shim into `dir` with gcc.
fn build_fsync_shim(dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("fsync_eio.c");
    let out = dir.join("fsync_eio.so");
    std::fs::write(&src, FSYNC_SHIM_C).map_err(|e| format!("{}: {e}", src.display()))?;
    let res = Command::new("gcc").args(["-shared", "-fPIC", "-O2", "-o"]).arg(&out).arg(&src).arg("-ldl").output();
    match res {
        Err(e) => Err(format!("cannot run gcc: {e}")),
        Ok(o) if !o.status.success() => Err(format!("gcc failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Ok(_) => Ok(out),
    }
}

impl Cluster {
    /// Starts `n` servers (3 or 5) of a new cluster in `dir`, from `bin`,
    /// with `args` added to every server's flags, and waits for a leader.
    /// With `lying_fsync` the image node's `fdatasync` of its Raft log
    /// returns without syncing (the power-loss check's self-test); with
    /// `mutant`, every server runs with that deliberate core bug.
    ///
    /// # Errors
    /// Ports, proxies, directories or processes cannot be set up, or no
    /// leader within 30 s.
    pub fn start(
        bin: &Path,
        n: u64,
        dir: &Path,
        args: &[String],
        lying_fsync: bool,
        mutant: Option<&str>,
    ) -> Result<Cluster, ClusterError> {
        std::fs::create_dir_all(dir).map_err(setup(&dir.display().to_string()))?;
        let ports = free_ports(n as usize)?;
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut proxies = BTreeMap::new();
        for i in 1..=n {
            for j in i + 1..=n {
                let target: SocketAddr = addrs[j as usize - 1].parse().map_err(setup("address"))?;
                proxies.insert((i, j), Proxy::start_framed(target).map_err(setup("starting a proxy"))?);
            }
        }
        let mut missing = Vec::new();
        let mut disks = Vec::new();
        for id in 1..=n {
            let d = dir.join(format!("n{id}"));
            let disk = match id {
                TMPFS_NODE => Disk::tmpfs(&d, DISK_MIB)
                    .map_err(|e| {
                        missing.push(("disk-full-kill", e.clone()));
                        missing.push(("disk-full", e));
                    })
                    .ok(),
                IMAGE_NODE => {
                    Disk::image(&d, &dir.join("n3.ext4"), DISK_MIB).map_err(|e| missing.push(("power-loss", e))).ok()
                }
                _ => None,
            };
            disks.push(match disk {
                Some(d) => d,
                None => Disk::plain(&d).map_err(setup(&d.display().to_string()))?,
            });
        }
        let shim = build_fsync_shim(dir).map_err(|e| missing.push(("fsync-fail", e))).ok();
        let fsync_flags = shim.as_ref().map(|_| (1..=n).map(|id| dir.join(format!("n{id}.fsync-fail"))).collect());
        let launches = (1..=n)
            .map(|i| {
                let peers = (1..=n)
                    .filter(|&j| j != i)
                    .map(|j| match proxies.get(&(i, j)) {
                        Some(p) => format!("{j}={}", p.addr()),
                        None => format!("{j}={}", addrs[j as usize - 1]),
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let mut env = Vec::new();
                if let Some(m) = mutant {
                    env.push(("RINGRAFT_MUTANT".to_owned(), m.to_owned()));
                }
                if let (Some(so), Some(flags)) = (&shim, &fsync_flags) {
                    let flags: &Vec<PathBuf> = flags;
                    env.push(("LD_PRELOAD".to_owned(), so.display().to_string()));
                    env.push(("RINGRAFT_FSYNC_EIO_FLAG".to_owned(), flags[i as usize - 1].display().to_string()));
                    if lying_fsync && i == IMAGE_NODE {
                        env.push(("RINGRAFT_FSYNC_LIE".to_owned(), format!("/n{i}/raft/log/")));
                    }
                }
                Launch { peers: Some(peers), args: args.to_vec(), env, die_with_parent: true }
            })
            .collect();
        let cluster_id = 7;
        let servers =
            Servers::start_with(bin.to_path_buf(), cluster_id, dir, &ports, Some(crate::demo::sigterm), launches)?;
        let c = Cluster { n, cluster_id, addrs, servers, proxies, disks, fsync_flags, missing };
        c.wait_leader(Duration::from_secs(30)).ok_or_else(|| ClusterError("no leader within 30 s".into()))?;
        Ok(c)
    }

    /// Node ids, `1..=n`.
    pub fn ids(&self) -> impl Iterator<Item = u64> {
        1..=self.n
    }

    /// Node `id`'s address.
    pub fn addr(&self, id: u64) -> &str {
        &self.addrs[id as usize - 1]
    }

    /// Node `id`'s log file.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.servers.paths(id).map(|(_, l)| l.to_path_buf()).unwrap_or_default()
    }

    /// The last line of node `id`'s log file (why it exited, usually).
    pub fn last_log_line(&self, id: u64) -> String {
        let text = std::fs::read(self.log_path(id)).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(empty log)").to_owned()
    }

    /// Node `id`'s disk.
    pub fn disk(&self, id: u64) -> &Disk {
        &self.disks[id as usize - 1]
    }

    fn short_cfg(&self, servers: Vec<String>) -> ClientConfig {
        let mut cfg = ClientConfig::new(servers, self.cluster_id);
        cfg.connect_timeout = Duration::from_millis(300);
        cfg.request_timeout = Duration::from_millis(500);
        cfg
    }

    /// Node `id`'s status, if it answers quickly.
    pub fn status(&self, id: u64) -> Option<Status> {
        probe_status(&self.short_cfg(self.addrs.clone()), self.addr(id)).ok()
    }

    /// The leader with the highest term among the nodes that answer.
    pub fn leader(&self) -> Option<(u64, Status)> {
        leader_in(self.statuses(self.ids()))
    }

    /// The leader among the nodes but `v` (which may be stopped: asking it
    /// would only wait out the timeout).
    pub fn leader_besides(&self, v: u64) -> Option<(u64, Status)> {
        leader_in(self.statuses(self.ids().filter(|&id| id != v)))
    }

    /// The status of each of `ids` that answers quickly.
    pub fn statuses(&self, ids: impl Iterator<Item = u64>) -> Vec<(u64, Status)> {
        ids.filter_map(|id| self.status(id).map(|s| (id, s))).collect()
    }

    /// Polls for a leader up to `within`.
    pub fn wait_leader(&self, within: Duration) -> Option<(u64, Status)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends an admin request to the leader, retrying retryable errors for
    /// up to `within`.
    ///
    /// # Errors
    /// The last error when the time ran out or a refusal.
    pub fn admin(&self, req: AdminRequest, within: Duration) -> Result<AdminAck, ClientError> {
        let mut cfg = self.short_cfg(self.addrs.clone()).with_role(Role::Admin);
        cfg.request_timeout = within;
        let mut c = Client::connect(cfg)?;
        c.admin(SERVICE_GROUP, req)
    }

    /// SIGKILLs node `id` and reaps it.
    ///
    /// # Errors
    /// The kill failed.
    pub fn kill(&mut self, id: u64) -> Result<(), ClusterError> {
        Ok(self.servers.kill(id)?)
    }

    /// Starts node `id` again on its data directory.
    ///
    /// # Errors
    /// The process cannot be started.
    pub fn restart(&mut self, id: u64) -> Result<(), ClusterError> {
        Ok(self.servers.restart(id)?)
    }

    /// Whether node `id`'s process runs (or is stopped).
    pub fn running(&self, id: u64) -> bool {
        self.servers.pids().iter().any(|&(n, _)| n == id)
    }

    /// Sends `sig` to node `id`.
    ///
    /// # Errors
    /// The node does not run or `kill(2)` failed.
    pub fn signal(&self, id: u64, sig: libc::c_int) -> Result<(), ClusterError> {
        self.servers.signal(id, sig).map_err(setup(&format!("signal {sig} to node {id}")))
    }

    /// Servers that exited since the last look, with their status.
    pub fn reap(&mut self) -> Vec<(u64, std::process::ExitStatus)> {
        self.servers.reap()
    }

    /// Blocks (or unblocks) the traffic from `from` to `to`.
    pub fn block(&self, from: u64, to: u64, on: bool) {
        let (key, d) = if from < to { ((from, to), Direction::Forward) } else { ((to, from), Direction::Backward) };
        if let Some(p) = self.proxies.get(&key) {
            p.blackhole(d, on);
        }
    }

    /// Blocks every link between a node of `a` and a node of `b`, both ways.
    pub fn split(&self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.block(x, y, true);
                self.block(y, x, true);
            }
        }
    }

    /// Delays both directions between `a` and `b` by `by` per chunk.
    pub fn delay(&self, a: u64, b: u64, by: Duration) {
        if let Some(p) = self.proxies.get(&(a.min(b), a.max(b))) {
            p.delay(Direction::Forward, by);
            p.delay(Direction::Backward, by);
        }
    }

    /// Drops `per_mille` of the frames both ways between `a` and `b`.
    pub fn drop_frames(&self, a: u64, b: u64, per_mille: u64) {
        if let Some(p) = self.proxies.get(&(a.min(b), a.max(b))) {
            p.drop_frames(Direction::Forward, per_mille);
            p.drop_frames(Direction::Backward, per_mille);
        }
    }

    /// Closes every open peer connection (peers reconnect).
    pub fn cut_all(&self) {
        for p in self.proxies.values() {
            p.cut();
        }
    }

    /// Clears every network fault and closes the connections that carried
    /// them (bytes dropped mid-frame would otherwise garble the stream).
    pub fn heal_net(&self) {
        for p in self.proxies.values() {
            p.heal();
            p.cut();
        }
    }

    /// Makes node `id`'s `fdatasync` fail (or work again). False when the
    /// shim is not there.
    pub fn fail_fsync(&self, id: u64, on: bool) -> bool {
        let Some(flag) = self.fsync_flags.as_ref().and_then(|f| f.get(id as usize - 1)) else { return false };
        if on {
            std::fs::write(flag, b"fail\n").is_ok()
        } else {
            let _ = std::fs::remove_file(flag);
            true
        }
    }

    /// Stops every server (SIGTERM, then SIGKILL after a wait); returns
    /// those that did not stop cleanly.
    pub fn stop(&mut self) -> Vec<String> {
        self.servers.stop()
    }
}
