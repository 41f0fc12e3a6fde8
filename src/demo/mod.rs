//! `ringraft demo`: a local 3-node cluster on the embedded defaults (real log
//! engines with fsync, in-process transport), a proposal workload from
//! several threads, a leader crash half-way, a restart that catches up from
//! disk, and a check that every node applied the same sequence with nothing
//! acknowledged lost. It prints what it measured and exits non-zero if the
//! check fails.

mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::core::{GroupId, LogIndex, NodeId, Role};
use crate::node::{GroupConfig, Node, NodeConfig, StateMachine};
use crate::pipeline::transport::InProcNetwork;
use workload::{Router, Workload};

/// What the demo is asked to do.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Where the three data directories go (`n1`, `n2`, `n3`).
    pub dir: PathBuf,
    /// Keep the data directories afterwards.
    pub keep: bool,
    /// Proposals to get acknowledged in total.
    pub proposals: u64,
    /// Proposer threads.
    pub threads: u64,
    /// Proposals each thread keeps in flight.
    pub window: usize,
    /// Payload bytes per proposal (at least 8).
    pub size: usize,
    /// Kill the leader half-way and restart it later.
    pub crash: bool,
}

impl DemoConfig {
    /// 100,000 proposals of 128 bytes from 8 threads (64 in flight each),
    /// with a leader crash, in a fresh directory under the system temp dir.
    pub fn new() -> DemoConfig {
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        DemoConfig {
            dir: std::env::temp_dir().join(format!("ringraft-demo-{}-{stamp}", std::process::id())),
            keep: false,
            proposals: 100_000,
            threads: 8,
            window: 64,
            size: 128,
            crash: true,
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig::new()
    }
}

const GROUP: GroupId = GroupId(1);

/// `(index, proposal id)` of every entry a node applied, in order.
type AppliedLog = Arc<Mutex<Vec<(u64, u64)>>>;

/// Records every applied entry; answers the index.
struct Recorder(AppliedLog);

impl StateMachine for Recorder {
    fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes {
        let id = data.get(..8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
        self.0.lock().push((index.0, id.unwrap_or(u64::MAX)));
        Bytes::copy_from_slice(&index.0.to_le_bytes())
    }
}

struct Cluster {
    net: Arc<InProcNetwork>,
    nodes: Vec<Option<Node>>,
    applied: Vec<AppliedLog>,
    dirs: Vec<PathBuf>,
}

fn ids() -> [NodeId; 3] {
    [NodeId(1), NodeId(2), NodeId(3)]
}

impl Cluster {
    fn start_node(&mut self, i: usize) -> Result<(), String> {
        let id = ids()[i];
        let mut g = GroupConfig::new(id, GROUP, ids());
        g.raft.election_timeout_min_ms = 300;
        g.raft.election_timeout_max_ms = 600;
        g.raft.heartbeat_interval_ms = 50;
        g.raft.lease_drift_ms = 50;
        let applied = Arc::new(Mutex::new(Vec::new()));
        let node = Node::start(
            NodeConfig::new(id, &self.dirs[i]),
            vec![(g, Box::new(Recorder(applied.clone())))],
            self.net.clone(),
        )
        .map_err(|e| format!("node {id}: {e}"))?;
        self.net.register(id, node.inbound());
        self.nodes[i] = Some(node);
        self.applied[i] = applied;
        Ok(())
    }

    fn leader(&self, within: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.as_ref().is_some_and(|n| n.handle().status(GROUP).is_ok_and(|s| s.role == Role::Leader)) {
                    return Ok(i);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("no leader within {within:?}"))
    }

    fn applied_up_to(&self, i: usize) -> u64 {
        self.applied[i].lock().last().map(|a| a.0).unwrap_or(0)
    }
}

/// Runs the demo, printing progress and the result on stdout.
///
/// # Errors
/// A description of what failed: a node that does not start, no leader,
/// a stalled workload, or a verification failure (lost or diverging data).
pub fn run(cfg: &DemoConfig) -> Result<(), String> {
    if cfg.size < 8 || cfg.threads == 0 || cfg.window == 0 || cfg.proposals == 0 {
        return Err("--size must be >= 8 and --threads, --window, --proposals > 0".into());
    }
    println!("ringraft demo: 3 nodes in one process, data in {}", cfg.dir.display());
    let mut c = Cluster {
        net: InProcNetwork::new(),
        nodes: vec![None, None, None],
        applied: vec![Default::default(), Default::default(), Default::default()],
        dirs: (1..=3).map(|i| cfg.dir.join(format!("n{i}"))).collect(),
    };
    for i in 0..3 {
        c.start_node(i)?;
    }
    let t0 = Instant::now();
    let leader = c.leader(Duration::from_secs(20))?;
    println!("leader elected: node {} after {:.0} ms", ids()[leader], t0.elapsed().as_secs_f64() * 1e3);
    let result = drive(cfg, &mut c, leader);
    for n in c.nodes.iter_mut() {
        if let Some(n) = n.take() {
            n.shutdown();
        }
    }
    if !cfg.keep {
        let _ = std::fs::remove_dir_all(&cfg.dir);
    }
    result
}

fn drive(cfg: &DemoConfig, c: &mut Cluster, leader: usize) -> Result<(), String> {
    let router = Router::new(c.nodes[leader].as_ref().map(|n| n.handle()));
    let work = Workload::start(cfg, router.clone());
    let mut killed = None;
    if cfg.crash {
        work.wait_acked(cfg.proposals / 2, Duration::from_secs(300))?;
        let stats = c.nodes[leader].as_ref().map(|n| n.stats()).unwrap_or_default();
        println!(
            "killing the leader, node {}, after {} acknowledged ({:.1} entries per fsync on it so far)",
            ids()[leader],
            work.acked(),
            stats.entries_written as f64 / stats.fsync_batches.max(1) as f64
        );
        c.net.unregister(ids()[leader]);
        if let Some(n) = c.nodes[leader].take() {
            n.kill();
        }
        let t = Instant::now();
        let l = c.leader(Duration::from_secs(30))?;
        println!("new leader: node {} after {:.0} ms", ids()[l], t.elapsed().as_secs_f64() * 1e3);
        router.set(c.nodes[l].as_ref().map(|n| n.handle()));
        killed = Some(leader);
    }
    let report = work.finish(Duration::from_secs(600))?;
    println!("{report}");
    for n in c.nodes.iter().flatten() {
        let s = n.stats();
        println!(
            "node {}: {} entries in {} fsyncs ({:.1} per fsync)",
            n.id(),
            s.entries_written,
            s.fsync_batches,
            s.entries_written as f64 / s.fsync_batches.max(1) as f64
        );
    }
    if let Some(k) = killed {
        let t = Instant::now();
        c.start_node(k)?;
        let target = report.max_index;
        let deadline = Instant::now() + Duration::from_secs(300);
        while c.applied_up_to(k) < target {
            if Instant::now() > deadline {
                return Err(format!("restarted node {} applied only {} of {target}", ids()[k], c.applied_up_to(k)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        println!(
            "restarted node {} recovered from disk and caught up to {target} in {:.2} s",
            ids()[k],
            t.elapsed().as_secs_f64()
        );
    }
    verify(c, &report.acked)
}

/// Every node applied the same sequence; every acknowledged proposal is in
/// it at its acknowledged index.
fn verify(c: &Cluster, acked: &[(u64, u64)]) -> Result<(), String> {
    let seqs: Vec<Vec<(u64, u64)>> = c.applied.iter().map(|a| a.lock().clone()).collect();
    let common = seqs.iter().map(Vec::len).min().unwrap_or(0);
    for (n, s) in seqs.iter().enumerate() {
        if s[..common] != seqs[0][..common] {
            return Err(format!("node {} applied a different sequence than node 1", n + 1));
        }
    }
    let by_index: hashbrown::HashMap<u64, u64> = seqs[0].iter().copied().collect();
    let lost = acked.iter().filter(|(id, index)| by_index.get(index) != Some(id)).count();
    if lost > 0 {
        return Err(format!("{lost} acknowledged proposals are missing"));
    }
    println!("verified: 3 nodes applied the same {common} entries; all {} acknowledged proposals present", acked.len());
    Ok(())
}
