//! A 3-node in-process cluster for the pipeline tests: real log engines on
//! temporary directories, the in-process network, and a state machine that
//! records what it applied.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ringraft::core::{GroupId, LogIndex, NodeId, Role};
use ringraft::node::{GroupConfig, Node, NodeConfig, NodeHandle, StateMachine};
use ringraft::pipeline::transport::InProcNetwork;

pub const GROUP: GroupId = GroupId(1);

/// What a node's state machine applied: (index, first 8 payload bytes).
pub type Applied = Arc<Mutex<Vec<(u64, u64)>>>;

/// Records every applied entry; answers with the index.
pub struct Recorder(pub Applied);

impl StateMachine for Recorder {
    fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes {
        let id = data.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).unwrap_or(u64::MAX);
        self.0.lock().push((index.0, id));
        Bytes::copy_from_slice(&index.0.to_le_bytes())
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "ringraft-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Cluster {
    pub net: Arc<InProcNetwork>,
    pub nodes: Vec<Option<Node>>,
    pub applied: Vec<Applied>,
    pub dirs: Vec<PathBuf>,
    _tmp: TempDir,
}

pub fn ids() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

/// Election timing of most tests: 300–600 ms elections, 50 ms heartbeats.
pub const QUICK_ELECTIONS: (u64, u64) = (300, 600);

pub fn group_config(id: NodeId) -> GroupConfig {
    group_config_timed(id, QUICK_ELECTIONS)
}

pub fn start_node(net: &Arc<InProcNetwork>, id: NodeId, dir: &Path, applied: Applied) -> Node {
    start_node_timed(net, id, dir, applied, QUICK_ELECTIONS)
}

impl Cluster {
    pub fn start(tag: &str) -> Cluster {
        Cluster::start_timed(tag, QUICK_ELECTIONS)
    }

    pub fn handle(&self, i: usize) -> NodeHandle {
        self.nodes[i].as_ref().expect("node is up").handle()
    }

    /// Waits for a leader every live node agrees on; returns its slot.
    pub fn wait_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let mut leader = None;
            let mut agree = true;
            for (i, n) in self.nodes.iter().enumerate() {
                let Some(n) = n else { continue };
                let Ok(s) = n.handle().status(GROUP) else {
                    agree = false;
                    continue;
                };
                if s.role == Role::Leader {
                    leader = Some(i);
                }
                if s.leader.is_none() {
                    agree = false;
                }
            }
            if let (Some(l), true) = (leader, agree) {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills node `i` as a crash would (no shutdown).
    pub fn kill(&mut self, i: usize) {
        let id = ids()[i];
        self.net.unregister(id);
        if let Some(n) = self.nodes[i].take() {
            n.kill();
        }
    }

    /// Restarts node `i` from its directory with a fresh state machine.
    pub fn restart(&mut self, i: usize) {
        self.restart_timed(i, QUICK_ELECTIONS)
    }

    /// Waits until node `i` has applied at least `n` entries with ids.
    pub fn wait_applied(&self, i: usize, index: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let last = self.applied[i].lock().last().map(|e| e.0).unwrap_or(0);
            if last >= index {
                return;
            }
            assert!(Instant::now() < deadline, "node {} applied only up to {last} of {index} within {within:?}", i + 1);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn shutdown(mut self) {
        for n in self.nodes.iter_mut() {
            if let Some(n) = n.take() {
                n.shutdown();
            }
        }
    }
}

/// A 128-byte payload carrying `id` in its first 8 bytes.
pub fn payload(id: u64) -> Bytes {
    let mut v = vec![0xab; 128];
    v[..8].copy_from_slice(&id.to_le_bytes());
    Bytes::from(v)
}

impl Cluster {
    /// Waits until node `i`'s core reports `applied_index >= index` (counts
    /// no-op and configuration entries too, unlike [`Cluster::wait_applied`]).
    pub fn wait_applied_index(&self, i: usize, index: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let applied = self.handle(i).status(GROUP).map(|s| s.applied_index.0).unwrap_or(0);
            if applied >= index {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {}: applied index {applied} did not reach {index} within {within:?}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Election timing for tests that overload a debug build on a small machine
/// and must keep their leader: 1–2 s elections, 100 ms heartbeats (the
/// library defaults), so a core stalled behind a backlog for a few hundred
/// milliseconds does not cost the leadership.
pub const PATIENT_ELECTIONS: (u64, u64) = (1000, 2000);

/// The group on node `id` with election timeouts `election_ms` (min, max)
/// and a heartbeat (and lease drift) of a sixth of the minimum.
pub fn group_config_timed(id: NodeId, election_ms: (u64, u64)) -> GroupConfig {
    let mut g = GroupConfig::new(id, GROUP, ids());
    g.raft.election_timeout_min_ms = election_ms.0;
    g.raft.election_timeout_max_ms = election_ms.1;
    g.raft.heartbeat_interval_ms = election_ms.0 / 6;
    g.raft.lease_drift_ms = election_ms.0 / 6;
    g.raft.seed = 0x5eed + id.0;
    g
}

/// [`start_node`] with election timeouts `election_ms`.
pub fn start_node_timed(
    net: &Arc<InProcNetwork>,
    id: NodeId,
    dir: &Path,
    applied: Applied,
    election_ms: (u64, u64),
) -> Node {
    let cfg = NodeConfig::new(id, dir);
    let node = Node::start(cfg, vec![(group_config_timed(id, election_ms), Box::new(Recorder(applied)))], net.clone())
        .unwrap_or_else(|e| panic!("node {id} failed to start: {e}"));
    net.register(id, node.inbound());
    node
}

impl Cluster {
    /// [`Cluster::start`] with election timeouts `election_ms`.
    pub fn start_timed(tag: &str, election_ms: (u64, u64)) -> Cluster {
        let tmp = TempDir::new(tag);
        let net = InProcNetwork::new();
        let mut c = Cluster { net, nodes: Vec::new(), applied: Vec::new(), dirs: Vec::new(), _tmp: tmp };
        for id in ids() {
            let dir = c._tmp.0.join(format!("n{}", id.0));
            let applied: Applied = Arc::new(Mutex::new(Vec::new()));
            c.nodes.push(Some(start_node_timed(&c.net, id, &dir, applied.clone(), election_ms)));
            c.applied.push(applied);
            c.dirs.push(dir);
        }
        c
    }

    /// [`Cluster::restart`] with election timeouts `election_ms`.
    pub fn restart_timed(&mut self, i: usize, election_ms: (u64, u64)) {
        let id = ids()[i];
        let applied: Applied = Arc::new(Mutex::new(Vec::new()));
        self.nodes[i] = Some(start_node_timed(&self.net, id, &self.dirs[i], applied.clone(), election_ms));
        self.applied[i] = applied;
    }
}

/// [`NodeHandle::propose_wait`] with a deadline: the answer, or an error
/// naming the failure (including no answer within `within`).
pub fn propose_within(h: &mut NodeHandle, data: Bytes, within: Duration) -> Result<Bytes, String> {
    let o = ringraft::pipeline::completion::Oneshot::new();
    h.propose(GROUP, data, o.callback()).map_err(|e| format!("refused: {e}"))?;
    let deadline = Instant::now() + within;
    o.wait(Some(deadline)).map_err(|e| {
        if Instant::now() >= deadline {
            format!("no answer within {within:?}")
        } else {
            e.to_string()
        }
    })
}
