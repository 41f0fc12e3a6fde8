//! The server: opens the data directory (lock, identity), restores the
//! service's checkpoint, starts the mio transport and the Raft node with the
//! service state machine, and wires the front end that answers clients.
//!
//! Start order matters for safety and for clients: the transport is bound
//! first (a port in use fails before anything is written), then the node
//! recovers its log and replays it past the checkpoint, and only then does
//! the front end accept client requests (before that `Status` is answered
//! with no groups and `starting`, everything else `NotLeader` with no hint,
//! "the node is starting", so clients go to another server).
//!
//! A disk too full to open the storage (sled, the log engine, a rebuild)
//! does not end the process: the server stays in that state, reports
//! `disk full` in `Status` and its log, and an opener thread tries again
//! every second until the storage opens (defect 09: it used to exit, so a
//! node restarted on a full disk never came back by itself).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::checkpoint::CheckpointErrorKind;
use super::config::{ServerConfig, StartMode};
use super::handler::{Limits, ServerHandler, Wired};
use super::health::NodeHealth;
use super::identity::DataDir;
use super::kv::ServiceStorage;
use super::log_clock::LogClock;
use super::machine::{CheckpointPolicy, ServiceMachine, ServiceState, SERVICE_GROUP};
use super::rebuild;
use ringraft::core::{Config, GroupId, NodeId};
use ringraft::node::{GroupConfig, Node, NodeConfig, NodeError, NodeStats};
use ringraft::pipeline::net::RaftHandler;
use ringraft::rpc::transport::{Transport, TransportConfig, TransportHandle};
use ringraft::rpc::Admission;
use ringraft::timer::HashedWheelTimer;
use ringraft_client::ClientConfig;

/// A running server.
pub struct Server {
    /// The node and what runs beside it, once the storage is open.
    running: Arc<Mutex<Option<Running>>>,
    /// Retries opening the storage while the disk is full.
    opener: Option<std::thread::JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    transport: Option<Transport>,
    raft: RaftHandler,
    local_addr: SocketAddr,
    _data: DataDir,
}

/// What runs once the storage is open.
struct Running {
    node: Node,
    timer: Arc<HashedWheelTimer>,
    state: Arc<Mutex<ServiceState>>,
}

/// Why a server could not start.
#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

fn fail(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError(format!("{what}: {e}"))
}

/// Why opening the storage failed: for lack of space, or for want of a
/// peer's snapshot (wait and retry), or for good.
enum OpenError {
    DiskFull(String),
    NoSource(String),
    Fatal(ServerError),
}

impl OpenError {
    fn message(&self) -> &str {
        match self {
            OpenError::DiskFull(m) | OpenError::NoSource(m) => m,
            OpenError::Fatal(e) => &e.0,
        }
    }
}

/// How often a server started on a full disk tries to open its storage.
const DISK_FULL_RETRY: Duration = Duration::from_secs(1);

/// Opens the storage and starts the node: everything of a start that
/// touches the disk, repeatable after a full disk refused it.
struct Opener {
    config: ServerConfig,
    service_dir: PathBuf,
    raft_dir: PathBuf,
    slot: Arc<Mutex<Option<Wired>>>,
    raft: RaftHandler,
    out: TransportHandle,
    health: Arc<NodeHealth>,
    /// What the service's storage runs on, for the life of the process.
    storage: ServiceStorage,
    cluster_id: u64,
    /// Set when the server stops: a fetch from a peer gives up.
    stopping: Arc<AtomicBool>,
}

impl Opener {
    /// The start of the Raft log (the state file's snapshot index).
    fn log_start(&self) -> Result<u64, OpenError> {
        rebuild::log_start(&self.raft_dir, GroupId(SERVICE_GROUP)).map_err(|e| {
            OpenError::Fatal(fail(
                "the service checkpoint is unusable and the Raft state file cannot be read",
                format!(
                    "{e}: remove this node from the cluster (ringraft admin remove), wipe its data directory and \
                     add it again as a learner (README, \"A damaged checkpoint\")"
                ),
            ))
        })
    }

    /// With a damaged checkpoint: when no local copy can rebuild the state
    /// (the log is compacted behind a snapshot this node no longer holds
    /// intact), fetches a peer's snapshot first ([`rebuild`]).
    fn fetch_if_needed(&self) -> Result<(), OpenError> {
        let group = GroupId(SERVICE_GROUP);
        let log_start = self.log_start()?;
        if rebuild::local_rebuild_possible(&self.storage, &self.service_dir, log_start) {
            return Ok(());
        }
        let peers: Vec<String> = self.config.peers.iter().map(|p| p.1.to_string()).collect();
        let mut cfg = ClientConfig::new(peers.clone(), self.cluster_id).with_token(self.config.client_token.clone());
        cfg.connect_timeout = Duration::from_secs(2);
        cfg.request_timeout = Duration::from_secs(30);
        let stopping = || self.stopping.load(Ordering::Acquire);
        rebuild::fetch_from_peers(
            &*self.storage.fs,
            &self.service_dir,
            &self.raft_dir,
            group,
            &peers,
            &cfg,
            log_start,
            &stopping,
        )
        .map(drop)
        .map_err(|e| {
            if e.disk_full {
                self.health.set_service_full(true);
                OpenError::DiskFull(format!("fetching a peer's snapshot: {}", e.msg))
            } else {
                OpenError::NoSource(format!(
                    "no intact local copy covers the Raft log (it starts after {log_start}) and no peer's \
                         snapshot could be fetched: {}",
                    e.msg
                ))
            }
        })
    }

    fn open(&self) -> Result<Running, OpenError> {
        let config = &self.config;
        self.health.set_service_full(false);
        let policy = CheckpointPolicy {
            entries: config.checkpoint_entries.max(1),
            interval: Duration::from_millis(config.checkpoint_interval_ms.max(1)),
            bytes: config.checkpoint_bytes.max(1),
            snapshot_entries: config.snapshot_entries.max(1),
            snapshot_bytes: config.snapshot_bytes.max(1),
            retry_after: Duration::from_secs(1),
        };
        // An unreadable state file is reported by the node's start.
        let log_start = rebuild::log_start(&self.raft_dir, GroupId(SERVICE_GROUP)).unwrap_or(0);
        let storage = self.storage.clone();
        let mut machine = match ServiceMachine::open(storage, self.service_dir.clone(), policy, log_start) {
            Ok(m) => m,
            Err(e) if e.kind == CheckpointErrorKind::DiskFull => {
                return Err(OpenError::DiskFull(format!("service checkpoint: {e}")))
            }
            Err(e) => return Err(OpenError::Fatal(fail("service checkpoint", e))),
        };
        if machine.damaged_why().is_some() {
            self.fetch_if_needed()?;
        }
        let state = machine.state();
        machine.set_health(Arc::clone(&self.health));
        let snapshots = machine.service_snapshots();
        // Members added at run time (their addresses replicated in the log)
        // are dialled again after a restart.
        let me = config.node_id.0;
        let dial = move |out: &TransportHandle, node: u64, addr: &str| {
            if node == me {
                return;
            }
            match addr.parse::<SocketAddr>() {
                Ok(a) => {
                    let _ = out.add_peer(NodeId(node), a);
                }
                Err(_) => log::warn!("service: ignoring the bad replicated address {addr:?} of node {node}"),
            }
        };
        for (node, addr) in state.lock().peers.iter() {
            if !config.peers.iter().any(|p| p.0 .0 == *node) {
                dial(&self.out, *node, addr);
            }
        }
        let out = self.out.clone();
        state.lock().peer_hook = Some(Arc::new(move |node: u64, addr: &str| dial(&out, node, addr)));

        let mut raft_cfg = Config::new(config.node_id, GroupId(SERVICE_GROUP));
        raft_cfg.election_timeout_min_ms = config.election_timeout_min_ms;
        raft_cfg.election_timeout_max_ms = config.election_timeout_max_ms;
        raft_cfg.heartbeat_interval_ms = config.heartbeat_interval_ms;
        // A build with the deliberate bugs (feature `sim-mutants`, never a
        // release) turns one on from the environment, so that the nemesis
        // can show it catches it in real processes.
        #[cfg(feature = "sim-mutants")]
        if let Ok(name) = std::env::var("RINGRAFT_MUTANT") {
            raft_cfg.mutant = ringraft::core::Mutant::from_name(&name);
            log::warn!("running with the deliberate bug {name:?} (found: {})", raft_cfg.mutant.is_some());
        }
        let mut group = GroupConfig::new(config.node_id, GroupId(SERVICE_GROUP), Vec::<NodeId>::new());
        group.raft = raft_cfg;
        match config.start_mode {
            StartMode::Bootstrap => {
                group.initial_voters =
                    std::iter::once(config.node_id).chain(config.peers.iter().map(|p| p.0)).collect();
            }
            StartMode::Join => group.join = true,
            StartMode::Auto => {}
        }
        let mut node_cfg = NodeConfig::new(config.node_id, self.raft_dir.clone());
        node_cfg.snapshot_bytes_per_sec = config.snapshot_bytes_per_sec;
        node_cfg.snapshot_sends_max = config.snapshot_sends_max as usize;
        let node = match Node::start(node_cfg, vec![(group, Box::new(machine))], Arc::new(self.out.clone())) {
            Ok(n) => n,
            Err(e) => {
                let full = matches!(&e, NodeError::Storage(s) if s.is_no_space()) || self.health.service_full();
                let e = fail("cannot start the node", e);
                return Err(if full { OpenError::DiskFull(e.0) } else { OpenError::Fatal(e) });
            }
        };
        self.raft.attach(node.inbound());
        let watch = node
            .role_watch(GroupId(SERVICE_GROUP))
            .ok_or_else(|| OpenError::Fatal(fail("node", "group 1 is missing")))?;
        let timer = Arc::new(
            HashedWheelTimer::new(Duration::from_millis(5), 512).map_err(|e| OpenError::Fatal(fail("timer", e)))?,
        );
        *self.slot.lock() = Some(Wired {
            node: node.handle(),
            watch,
            state: Arc::clone(&state),
            out: self.out.clone(),
            timer: Arc::clone(&timer),
            stats: node.stats_source(),
            limits: Limits {
                max_record_bytes: config.max_record_bytes,
                max_append_bytes: config.max_append_bytes,
                session_ttl_ms: config.session_ttl_ms,
                retention_bytes: config.retention_bytes,
                retention_age_ms: config.retention_age_s.saturating_mul(1000),
            },
            log_clock: LogClock::new(),
            log_time_seen: state.lock().log_time_seen(),
            health: Arc::clone(&self.health),
            snapshots,
            fetched: Arc::default(),
        });
        self.health.set_starting(None);
        Ok(Running { node, timer, state })
    }
}

impl Server {
    /// Opens the data directory, listens, and starts the node.
    ///
    /// A disk too full to open the storage is not an error: the server
    /// listens, answers `Status` with `disk full` and every other request
    /// with `NotLeader` (no hint), and tries again every second until the storage opens
    /// (or [`Server::shutdown`]). A start that then fails for another
    /// reason ends the process (exit status 1), as an immediate one would
    /// have.
    ///
    /// # Errors
    /// Any reason the server cannot run, as a message for the operator: an
    /// invalid configuration, a data directory that is locked, foreign,
    /// corrupt or not empty for a bootstrap, an address in use, a damaged
    /// log or checkpoint that cannot be rebuilt.
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        config.validate().map_err(|e| fail("invalid configuration", e))?;
        let data = DataDir::open(&config).map_err(|e| fail("data directory", e))?;
        let ident = data.identity();
        let health = Arc::new(NodeHealth::starting());
        let admission = Admission {
            cluster_id: ident.cluster_id,
            node_id: config.node_id.0,
            peer_token: config.peer_token.clone(),
            client_token: config.client_token.clone(),
            admin_token: config.admin_token.clone(),
        };
        let mut tcfg = TransportConfig::new(config.listen, admission);
        tcfg.peers = config.peers.clone();
        let raft = RaftHandler::new();
        let slot = Arc::new(Mutex::new(None));
        let handler = ServerHandler::new(raft.clone(), Arc::clone(&slot), config.node_id.0, Arc::clone(&health));
        // Bound first: a port in use fails before anything is written.
        let transport =
            Transport::start(tcfg, handler).map_err(|e| fail(&format!("cannot listen on {}", config.listen), e))?;
        let local_addr = transport.local_addr();
        let mode = match config.start_mode {
            StartMode::Auto => "restart",
            StartMode::Bootstrap => "bootstrap",
            StartMode::Join => "join",
        };
        let what = format!(
            "node {} of cluster {}: serving on {local_addr} ({mode} mode{})",
            config.node_id,
            ident.cluster_id,
            if data.is_new() { ", new data directory" } else { "" }
        );
        let opener = Opener {
            service_dir: data.service_dir(),
            raft_dir: data.raft_dir(),
            config,
            slot,
            raft: raft.clone(),
            out: transport.handle(),
            health: Arc::clone(&health),
            storage: ServiceStorage::real(),
            cluster_id: ident.cluster_id,
            stopping: Arc::new(AtomicBool::new(false)),
        };
        let running = Arc::new(Mutex::new(None));
        let stopping = Arc::clone(&opener.stopping);
        let mut server = Server {
            running: Arc::clone(&running),
            opener: None,
            stopping: Arc::clone(&stopping),
            transport: Some(transport),
            raft,
            local_addr,
            _data: data,
        };
        match opener.open() {
            Ok(r) => {
                log::info!("{what}");
                *running.lock() = Some(r);
            }
            Err(OpenError::Fatal(e)) => return Err(e),
            Err(e @ (OpenError::DiskFull(_) | OpenError::NoSource(_))) => {
                match &e {
                    OpenError::DiskFull(e) => {
                        health.set_starting(Some(true));
                        log::error!(
                            "disk full: {e}; answering status only and trying again every {DISK_FULL_RETRY:?} \
                             until space is freed"
                        );
                    }
                    _ => {
                        health.set_starting(Some(false));
                        log::error!("{}; answering status only and trying again", e.message());
                    }
                }
                let thread = std::thread::Builder::new()
                    .name("server-opener".into())
                    .spawn(move || wait_for_space(&opener, &running, &stopping, &what))
                    .map_err(|e| fail("cannot spawn the opener thread", e))?;
                server.opener = Some(thread);
            }
        }
        Ok(server)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's counters (zero while the storage is not open).
    pub fn stats(&self) -> NodeStats {
        self.running.lock().as_ref().map(|r| r.node.stats()).unwrap_or_default()
    }

    /// Drains, fsyncs and stops: the node stops taking requests, writes and
    /// fsyncs what it holds, applies what committed, takes a last
    /// checkpoint; then the transport closes.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(t) = self.opener.take() {
            t.thread().unpark();
            if t.join().is_err() {
                log::error!("the opener thread panicked");
            }
        }
        if let Some(r) = self.running.lock().take() {
            r.node.shutdown();
            r.state.lock().fail_all_tails();
            r.timer.shutdown();
        }
        self.raft.detach();
        if let Some(mut t) = self.transport.take() {
            t.shutdown();
        }
    }
}

/// The opener thread of a server started on a full disk: tries to open the
/// storage every [`DISK_FULL_RETRY`] until it opens, the server stops, or
/// a failure other than a full disk ends the process.
fn wait_for_space(opener: &Opener, running: &Mutex<Option<Running>>, stopping: &AtomicBool, what: &str) {
    let mut last_log = std::time::Instant::now();
    loop {
        std::thread::park_timeout(DISK_FULL_RETRY);
        if stopping.load(Ordering::Acquire) {
            return;
        }
        match opener.open() {
            Ok(r) => {
                log::warn!("the disk takes writes again: storage open; {what}");
                *running.lock() = Some(r);
                return;
            }
            Err(e @ (OpenError::DiskFull(_) | OpenError::NoSource(_))) => {
                opener.health.set_starting(Some(matches!(e, OpenError::DiskFull(_))));
                if last_log.elapsed() >= Duration::from_secs(60) {
                    log::error!("{}; still waiting", e.message());
                    last_log = std::time::Instant::now();
                }
            }
            Err(OpenError::Fatal(e)) => {
                log::error!("cannot start after the disk was full: {e}");
                eprintln!("ringraft-server: {e}");
                std::process::exit(1);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
