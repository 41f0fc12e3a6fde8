//! A cluster of real `ringraft-server` processes on 127.0.0.1 for the
//! service tests: start, SIGKILL, SIGTERM, restart, find the leader, make
//! clients. Every process it starts is killed by PID when the harness drops.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringraft::rpc::ReadConsistency;
use ringraft::rpc::Role;
use ringraft_client::{probe_status, Client, ClientConfig, Status};

pub const CLUSTER: u64 = 77;

/// Every record of `stream` as the client's node has it (follower read).
pub fn read_all(cl: &mut Client, stream: &str) -> Vec<Bytes> {
    read_from(cl, stream, 0)
}

/// Every record of `stream` from offset `at` (follower read).
pub fn read_from(cl: &mut Client, stream: &str, mut at: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    loop {
        let r = cl.read(stream, at, 10_000, 4 << 20, ReadConsistency::Follower).expect("read");
        if r.records.is_empty() {
            return out;
        }
        at = r.next_offset;
        out.extend(r.records);
    }
}

/// A free port on 127.0.0.1 outside the kernel's ephemeral range.
pub fn free_addr() -> SocketAddr {
    ringraft_tools::demo::ports::free_addr().expect("a free port")
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("ringraft-svc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Proc {
    pub id: u64,
    pub addr: SocketAddr,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub dir: TempDir,
    pub procs: Vec<Proc>,
    /// Extra flags every server gets.
    pub extra: Vec<String>,
    /// The client token the harness presents.
    pub token: bytes::Bytes,
    /// Environment variables for one node's process: (node id, name, value).
    pub envs: Vec<(u64, String, String)>,
}

impl Cluster {
    /// `n` voters, bootstrapped.
    pub fn start(name: &str, n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_with_token(name, n, extra, "")
    }

    /// As `start`; the harness's clients present `token`.
    pub fn start_with_token(name: &str, n: u64, extra: &[&str], token: &str) -> Cluster {
        let dir = TempDir::new(name);
        let ports = ringraft_tools::demo::ports::free_ports(n as usize).expect("free ports");
        let procs = (1..=n)
            .zip(ports)
            .map(|(id, port)| Proc { id, addr: SocketAddr::from(([127, 0, 0, 1], port)), child: None })
            .collect();
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let token = bytes::Bytes::copy_from_slice(token.as_bytes());
        let mut c = Cluster { dir, procs, extra, token, envs: Vec::new() };
        for i in 0..n as usize {
            c.spawn(i, &["--bootstrap"]);
        }
        c.wait_leader(Duration::from_secs(30));
        c
    }

    pub fn peers_arg(&self) -> String {
        self.procs.iter().map(|p| format!("{}={}", p.id, p.addr)).collect::<Vec<_>>().join(",")
    }

    pub fn spawn(&mut self, i: usize, mode: &[&str]) {
        let p = &self.procs[i];
        let data = self.dir.0.join(format!("n{}", p.id));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join(format!("n{}.log", p.id)))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ringraft-server"))
            .args(["--node-id", &p.id.to_string(), "--cluster-id", &CLUSTER.to_string()])
            .args(["--listen", &p.addr.to_string(), "--data-dir"])
            .arg(&data)
            .args(["--peers", &self.peers_arg()])
            .args(["--election-timeout-min-ms", "300", "--election-timeout-max-ms", "600"])
            .args(["--heartbeat-interval-ms", "50"])
            .args(&self.extra)
            .args(mode)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.envs.iter().filter(|e| e.0 == p.id).map(|e| (e.1.as_str(), e.2.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start ringraft-server");
        self.procs[i].child = Some(child);
    }

    /// Adds a process slot (not started).
    pub fn add_slot(&mut self, id: u64) -> usize {
        self.procs.push(Proc { id, addr: free_addr(), child: None });
        self.procs.len() - 1
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sigterm(&mut self, i: usize) -> std::process::ExitStatus {
        let mut c = self.procs[i].child.take().expect("running");
        let ok = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "node {} did not stop within 30 s of SIGTERM", self.procs[i].id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.spawn(i, &[]);
    }

    pub fn servers(&self) -> Vec<String> {
        self.procs.iter().map(|p| p.addr.to_string()).collect()
    }

    pub fn config(&self) -> ClientConfig {
        ClientConfig::new(self.servers(), CLUSTER).with_token(self.token.clone())
    }

    pub fn client(&self) -> Client {
        Client::connect(self.config()).expect("client connects")
    }

    pub fn admin(&self) -> Client {
        Client::connect(self.config().with_role(Role::Admin)).expect("admin connects")
    }

    /// A client that talks to node `i` only.
    pub fn client_of(&self, i: usize) -> Client {
        Client::connect(ClientConfig::new(vec![self.procs[i].addr.to_string()], CLUSTER).with_token(self.token.clone()))
            .expect("client connects")
    }

    /// Node `i`'s status once it serves (a server still opening its
    /// storage answers with no groups: `None` here, as when it is down).
    pub fn status(&self, i: usize) -> Option<Status> {
        self.procs[i].child.as_ref()?;
        probe_status(&self.config(), &self.procs[i].addr.to_string()).ok().filter(|s| !s.groups.is_empty())
    }

    /// Index of the leader in `procs`.
    pub fn wait_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for i in 0..self.procs.len() {
                if let Some(s) = self.status(i) {
                    if s.groups.first().is_some_and(|g| g.role == 3) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}; logs in {}", self.dir.0.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until node `i` has applied at least `index`.
    pub fn wait_applied(&self, i: usize, index: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let applied = self.status(i).and_then(|s| s.groups.first().map(|g| g.applied)).unwrap_or(0);
            if applied >= index {
                return;
            }
            assert!(Instant::now() < deadline, "node {} applied {applied} < {index}", self.procs[i].id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.0.join(format!("n{}.log", self.procs[i].id))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill9(i);
        }
        // A failing test's servers tell why in their logs, which the
        // directory takes with it: print their ends first.
        if std::thread::panicking() {
            for i in 0..self.procs.len() {
                let log = self.log_of(i);
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- last lines of node {}'s log:", self.procs[i].id);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

#[path = "../shims/build.rs"]
mod shim_build;
#[allow(unused_imports)] // not every test binary builds a shim
pub use shim_build::build_shim;
