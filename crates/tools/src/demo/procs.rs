//! The demo's cluster of real `ringraft-server` processes: finding (or
//! building) the server binary, picking free ports, starting, SIGKILLing,
//! restarting and stopping the three children, and probing who leads.
//!
//! Owns the children: [`Servers`] kills and reaps every one still running
//! when it is dropped, so no exit path (error, panic) leaves a server behind.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::DemoError;
use ringraft_client::{probe_status, ClientConfig, Status};

/// The environment variable naming the server binary explicitly.
pub const SERVER_BIN_ENV: &str = "RINGRAFT_SERVER_BIN";
/// The server binary's file name.
const SERVER_BIN: &str = "ringraft-server";
/// How long a stopping server may take to exit after SIGTERM before it is
/// killed.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// Pause between two looks at a condition being polled.
pub(super) const POLL: Duration = Duration::from_millis(10);
/// Role code of a leader in a `Status` answer.
const ROLE_LEADER: u8 = 3;

/// Finds `ringraft-server`: `$RINGRAFT_SERVER_BIN` if set, else next to the
/// running executable; when it is missing there and we run under `cargo run`
/// (`$CARGO` is set), builds it with the same profile first.
///
/// # Errors
/// `Setup` when the binary named by the variable does not exist, the build
/// fails, or the binary is still missing (the message says how to build it).
pub fn locate_server_bin() -> Result<PathBuf, DemoError> {
    if let Some(p) = std::env::var_os(SERVER_BIN_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(DemoError::Setup(format!("{SERVER_BIN_ENV}={} does not exist", p.display())))
        };
    }
    let exe = std::env::current_exe().map_err(|e| DemoError::Setup(format!("cannot find this executable: {e}")))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let bin = dir.join(format!("{SERVER_BIN}{}", std::env::consts::EXE_SUFFIX));
    if bin.is_file() {
        return Ok(bin);
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        build_server(&cargo, dir.file_name().is_some_and(|n| n == "release"))?;
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(DemoError::Setup(format!(
            "{} not found: run `cargo build --release --bins` first (or set {SERVER_BIN_ENV})",
            bin.display()
        )))
    }
}

/// Runs `$CARGO build --bin ringraft-server [--release]`, its output shown.
fn build_server(cargo: &std::ffi::OsStr, release: bool) -> Result<(), DemoError> {
    eprintln!("building {SERVER_BIN} ...");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--bin", SERVER_BIN]);
    if release {
        cmd.arg("--release");
    }
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        cmd.arg("--manifest-path").arg(Path::new(&dir).join("Cargo.toml"));
    }
    let status = cmd.status().map_err(|e| DemoError::Setup(format!("cannot run cargo to build {SERVER_BIN}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(DemoError::Setup(format!("`cargo build --bin {SERVER_BIN}` failed ({status})")))
    }
}

/// `n` ports on 127.0.0.1 that were free a moment ago, outside the
/// kernel's ephemeral range ([`super::ports::free_ports`]).
///
/// # Errors
/// `Setup` if too few are free.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, DemoError> {
    super::ports::free_ports(n).map_err(|e| DemoError::Setup(format!("cannot pick a free port: {e}")))
}

/// How one server is started beyond the common flags (`--node-id`,
/// `--cluster-id`, `--data-dir`, `--listen`): the nemesis routes each
/// node's peer links through its own proxies, adds flags, and preloads
/// fault shims.
#[derive(Clone, Debug, Default)]
pub(crate) struct Launch {
    /// The `--peers` value; `None`: every server's own address.
    pub(crate) peers: Option<String>,
    /// Further flags.
    pub(crate) args: Vec<String>,
    /// Further environment variables.
    pub(crate) env: Vec<(String, String)>,
    /// SIGKILL the server when the thread that started it ends (Linux
    /// `PR_SET_PDEATHSIG`), so that a runner that is itself killed leaves
    /// no server behind.
    pub(crate) die_with_parent: bool,
}

/// One server of the demo cluster.
struct Server {
    /// Node id (1-based; the index in [`Servers::procs`] plus one).
    id: u64,
    /// `127.0.0.1:port`, where it listens.
    addr: String,
    /// Its data directory.
    data_dir: PathBuf,
    /// Its log file (stdout and stderr, appended across restarts).
    log: PathBuf,
    /// The running process; None while killed.
    child: Option<Child>,
    /// Its flags and environment beyond the common ones.
    launch: Launch,
}

/// The three server processes; every child still running is killed and
/// reaped on drop.
pub(crate) struct Servers {
    bin: PathBuf,
    cluster_id: u64,
    procs: Vec<Server>,
    /// Sends SIGTERM to a pid (the library crate has no `unsafe`); without
    /// it, stopping falls back to SIGKILL.
    terminate: Option<fn(u32) -> std::io::Result<()>>,
}

impl Servers {
    /// `(node id, pid)` of every running server.
    pub(crate) fn pids(&self) -> Vec<(u64, u32)> {
        self.procs.iter().filter_map(|p| p.child.as_ref().map(|c| (p.id, c.id()))).collect()
    }

    /// Starts `ports.len()` servers with `--bootstrap`, data in `dir/nI`,
    /// logs in `dir/nodeI.log`.
    ///
    /// # Errors
    /// `Setup` when a directory, log file or process cannot be created.
    pub(crate) fn start(
        bin: PathBuf,
        cluster_id: u64,
        dir: &Path,
        ports: &[u16],
        terminate: Option<fn(u32) -> std::io::Result<()>>,
    ) -> Result<Servers, DemoError> {
        Servers::start_with(bin, cluster_id, dir, ports, terminate, Vec::new())
    }

    /// As [`Servers::start`], with `launches[i]` for node `i + 1` (missing
    /// entries: the default).
    ///
    /// # Errors
    /// As [`Servers::start`].
    pub(crate) fn start_with(
        bin: PathBuf,
        cluster_id: u64,
        dir: &Path,
        ports: &[u16],
        terminate: Option<fn(u32) -> std::io::Result<()>>,
        launches: Vec<Launch>,
    ) -> Result<Servers, DemoError> {
        let mut launches = launches.into_iter();
        let procs = (1..=ports.len() as u64)
            .zip(ports)
            .map(|(id, port)| Server {
                id,
                addr: format!("127.0.0.1:{port}"),
                data_dir: dir.join(format!("n{id}")),
                log: dir.join(format!("node{id}.log")),
                child: None,
                launch: launches.next().unwrap_or_default(),
            })
            .collect();
        let mut s = Servers { bin, cluster_id, procs, terminate };
        for i in 0..s.procs.len() {
            s.spawn(i, true)?;
        }
        Ok(s)
    }

    /// The servers' addresses, in node id order.
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.procs.iter().map(|p| p.addr.clone()).collect()
    }

    fn peers(&self) -> String {
        self.procs.iter().map(|p| format!("{}={}", p.id, p.addr)).collect::<Vec<_>>().join(",")
    }

    fn spawn(&mut self, i: usize, bootstrap: bool) -> Result<(), DemoError> {
        let all = self.peers();
        let p = &mut self.procs[i];
        let peers = p.launch.peers.clone().unwrap_or(all);
        let setup = |what: &str, e: std::io::Error| DemoError::Setup(format!("node {}: {what}: {e}", p.id));
        std::fs::create_dir_all(&p.data_dir).map_err(|e| setup("creating its data dir", e))?;
        let log: File = OpenOptions::new().create(true).append(true).open(&p.log).map_err(|e| setup("log file", e))?;
        let log2 = log.try_clone().map_err(|e| setup("log file", e))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--node-id")
            .arg(p.id.to_string())
            .arg("--cluster-id")
            .arg(self.cluster_id.to_string())
            .arg("--data-dir")
            .arg(&p.data_dir)
            .arg("--listen")
            .arg(&p.addr)
            .arg("--peers")
            .arg(&peers);
        if bootstrap {
            cmd.arg("--bootstrap");
        }
        cmd.args(&p.launch.args);
        // The servers must not pick up an operator's RINGRAFT_* settings.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RINGRAFT_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "warn").stdin(Stdio::null()).stdout(log).stderr(log2);
        cmd.envs(p.launch.env.iter().map(|(k, v)| (k, v)));
        if p.launch.die_with_parent {
            die_with_parent(&mut cmd);
        }
        let child = cmd.spawn().map_err(|e| setup(&format!("starting {}", self.bin.display()), e))?;
        p.child = Some(child);
        Ok(())
    }

    /// SIGKILLs node `id` (via `Child::kill`) and reaps it.
    ///
    /// # Errors
    /// `Setup` if the node is unknown or the kill fails.
    pub(crate) fn kill(&mut self, id: u64) -> Result<(), DemoError> {
        let p = self.procs.iter_mut().find(|p| p.id == id).ok_or(DemoError::Setup(format!("no node {id}")))?;
        if let Some(mut c) = p.child.take() {
            c.kill().map_err(|e| DemoError::Setup(format!("killing node {id}: {e}")))?;
            let _ = c.wait();
        }
        Ok(())
    }

    /// Starts node `id` again on its data directory (no `--bootstrap`).
    ///
    /// # Errors
    /// As [`Servers::start`].
    pub(crate) fn restart(&mut self, id: u64) -> Result<(), DemoError> {
        let i = self.procs.iter().position(|p| p.id == id).ok_or(DemoError::Setup(format!("no node {id}")))?;
        self.spawn(i, false)
    }

    /// Node `id`'s data directory and log file.
    pub(crate) fn paths(&self, id: u64) -> Option<(&Path, &Path)> {
        self.procs.iter().find(|p| p.id == id).map(|p| (p.data_dir.as_path(), p.log.as_path()))
    }

    /// Sends signal `sig` to node `id` if it runs.
    ///
    /// # Errors
    /// `kill(2)` failed; `NotFound` when the node does not run.
    pub(crate) fn signal(&self, id: u64, sig: libc::c_int) -> std::io::Result<()> {
        let p = self.procs.iter().find(|p| p.id == id).and_then(|p| p.child.as_ref());
        match p {
            Some(c) => send_signal(c.id(), sig),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("node {id} is not running"))),
        }
    }

    /// Reaps every server that exited since the last look: `(node, status)`.
    pub(crate) fn reap(&mut self) -> Vec<(u64, std::process::ExitStatus)> {
        let mut out = Vec::new();
        for p in &mut self.procs {
            if let Some(c) = p.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    p.child = None;
                    out.push((p.id, status));
                }
            }
        }
        out
    }

    /// Fails if a server exited on its own (its log file says why).
    ///
    /// # Errors
    /// `Server` naming the node, its exit status and its log.
    pub(crate) fn check_alive(&mut self) -> Result<(), DemoError> {
        match self.reap().first() {
            Some(&(id, status)) => {
                let log = self.paths(id).map(|(_, l)| l.display().to_string()).unwrap_or_default();
                Err(DemoError::Server(format!("node {id} exited ({status}); see {log}")))
            }
            None => Ok(()),
        }
    }

    /// The leader, if a running node says it is one (the highest term
    /// wins), asked with short timeouts.
    pub(super) fn probe_leader(&self) -> Option<u64> {
        let mut cfg = ClientConfig::new(self.addrs(), self.cluster_id);
        cfg.connect_timeout = Duration::from_millis(200);
        cfg.request_timeout = Duration::from_millis(300);
        let running = self.procs.iter().filter(|p| p.child.is_some());
        let statuses = running.filter_map(|p| probe_status(&cfg, &p.addr).ok().map(|s| (p.id, s)));
        leader_in(statuses).map(|(node, _)| node)
    }

    /// Polls until a node leads, up to `within`.
    ///
    /// # Errors
    /// `NoLeader` after `within`; `Server` if a server died meanwhile.
    pub(crate) fn wait_leader(&mut self, within: Duration) -> Result<u64, DemoError> {
        let deadline = Instant::now() + within;
        loop {
            self.check_alive()?;
            if let Some(l) = self.probe_leader() {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(DemoError::NoLeader(within));
            }
            std::thread::sleep(POLL * 5);
        }
    }

    /// Stops every running server: SIGTERM (when a terminate function was
    /// given), then waits up to [`STOP_WAIT`] for each to exit, then SIGKILL.
    /// Returns the nodes that did not stop cleanly.
    pub(crate) fn stop(&mut self) -> Vec<String> {
        let mut unclean = Vec::new();
        if let Some(term) = self.terminate {
            for p in &mut self.procs {
                if let Some(c) = p.child.as_ref() {
                    if let Err(e) = term(c.id()) {
                        unclean.push(format!("node {}: SIGTERM failed: {e}", p.id));
                    }
                }
            }
        }
        let deadline = Instant::now() + STOP_WAIT;
        for p in &mut self.procs {
            let Some(mut c) = p.child.take() else { continue };
            let status = loop {
                match c.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if self.terminate.is_some() && Instant::now() < deadline => std::thread::sleep(POLL),
                    _ => break None,
                }
            };
            match status {
                Some(s) if s.success() => {}
                Some(s) => unclean.push(format!("node {} exited with {s}", p.id)),
                None => {
                    let _ = c.kill();
                    let _ = c.wait();
                    if self.terminate.is_some() {
                        unclean.push(format!("node {} ignored SIGTERM for {STOP_WAIT:?}; killed", p.id));
                    }
                }
            }
        }
        unclean
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Sends SIGTERM to `pid` (the graceful stop of a server this program
/// started), for [`crate::demo::DemoConfig::terminate`] and the bench.
///
/// # Errors
/// `kill(2)` failed (the process is gone), or `pid` is out of range.
pub fn sigterm(pid: u32) -> std::io::Result<()> {
    send_signal(pid, libc::SIGTERM)
}

/// Of the nodes' `(id, status)` answers, the one that leads in the
/// highest term, if any does (an old leader that has not heard of the new
/// term yet loses to the new one).
pub(crate) fn leader_in<S: std::borrow::Borrow<Status>>(
    statuses: impl IntoIterator<Item = (u64, S)>,
) -> Option<(u64, S)> {
    let mut best: Option<(u64, u64, S)> = None;
    for (id, s) in statuses {
        let term = s.borrow().groups.iter().filter(|g| g.role == ROLE_LEADER).map(|g| g.term).max();
        if let Some(term) = term {
            if best.as_ref().is_none_or(|(t, _, _)| term > *t) {
                best = Some((term, id, s));
            }
        }
    }
    best.map(|(_, id, s)| (id, s))
}

/// Makes the child SIGKILLed when the spawning thread ends.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl(2), which is async-signal-safe and touches no memory of
    // ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `sig` to `pid`, a child this program spawned and has not reaped.
///
/// # Errors
/// `kill(2)` failed (the process is gone), or `pid` is out of range.
#[allow(unsafe_code)]
pub(crate) fn send_signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::other(format!("pid {pid} out of range")))?;
    // SAFETY: kill(2) takes no pointers; callers pass the id of a child they
    // spawned and have not reaped yet, so the id cannot have been reused.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    /// Issue 16: a port the harness picked inside the kernel's ephemeral
    /// range can be taken by an outgoing connection before the server binds
    /// it (nemesis seed 7003 lost a node to "Address already in use").
    #[test]
    fn free_ports_are_outside_the_kernels_ephemeral_range() {
        let (lo, hi) = crate::demo::ports::ephemeral_range();
        let ports = super::free_ports(20).expect("ports");
        assert_eq!(ports.len(), 20);
        for p in &ports {
            assert!(*p < lo || *p > hi, "port {p} is inside the ephemeral range {lo}-{hi}");
        }
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "distinct ports: {ports:?}");
    }
}
