//! The server: opens the data directory (lock, identity), restores the
//! service's checkpoint, starts the mio transport and the Raft node with the
//! service state machine, and wires the front end that answers clients.
//!
//! Start order matters for safety and for clients: the transport is bound
//! first (a port in use fails before anything is written), then the node
//! recovers its log and replays it past the checkpoint, and only then does
//! the front end accept client requests (before that they are answered
//! `Busy`, "the node is starting").

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::checkpoint::{self, CheckpointErrorKind};
use super::config::{ServerConfig, StartMode};
use super::handler::{Limits, ServerHandler, Wired};
use super::identity::DataDir;
use super::log_clock::LogClock;
use super::machine::{CheckpointPolicy, ServiceMachine, ServiceState, SERVICE_GROUP};
use crate::core::{Config, GroupId, NodeId};
use crate::node::{GroupConfig, Node, NodeConfig, NodeStats};
use crate::pipeline::net::RaftHandler;
use crate::rpc::transport::{Transport, TransportConfig};
use crate::rpc::Admission;
use crate::timer::HashedWheelTimer;

/// A running server.
pub struct Server {
    node: Option<Node>,
    transport: Option<Transport>,
    raft: RaftHandler,
    timer: Arc<HashedWheelTimer>,
    state: Arc<Mutex<ServiceState>>,
    local_addr: SocketAddr,
    _data: DataDir,
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

impl Server {
    /// Opens the data directory, starts the node and listens.
    ///
    /// # Errors
    /// Any reason the server cannot run, as a message for the operator: an
    /// invalid configuration, a data directory that is locked, foreign,
    /// corrupt or not empty for a bootstrap, an address in use, a damaged
    /// log or checkpoint.
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        config.validate().map_err(|e| fail("invalid configuration", e))?;
        let data = DataDir::open(&config).map_err(|e| fail("data directory", e))?;
        let ident = data.identity();
        let service_dir = data.service_dir();
        let opened = checkpoint::open_live(&service_dir);
        let policy = CheckpointPolicy {
            entries: config.checkpoint_entries.max(1),
            interval: Duration::from_millis(config.checkpoint_interval_ms.max(1)),
            bytes: config.checkpoint_bytes.max(1),
            snapshot_entries: config.snapshot_entries.max(1),
            snapshot_bytes: config.snapshot_bytes.max(1),
        };
        let (state, machine) = match opened {
            Ok((state, ckpt)) => {
                let state = Arc::new(Mutex::new(state));
                (Arc::clone(&state), ServiceMachine::new(state, service_dir, ckpt, policy))
            }
            Err(e) if e.kind == CheckpointErrorKind::Damaged => {
                log::error!("service: the checkpoint is unusable: {e}; it is rebuilt once the Raft log is open");
                let state = Arc::new(Mutex::new(ServiceState::new(Arc::default())));
                (Arc::clone(&state), ServiceMachine::damaged(state, service_dir, policy, e.msg))
            }
            Err(e) => return Err(fail("service checkpoint", e)),
        };

        let admission = Admission {
            cluster_id: ident.cluster_id,
            node_id: config.node_id.0,
            peer_token: config.peer_token.clone(),
            client_token: config.client_token.clone(),
            admin_token: config.admin_token.clone(),
        };
        let mut tcfg = TransportConfig::new(config.listen, admission);
        tcfg.peers = config.peers.clone();
        // Members added at run time (their addresses replicated in the log)
        // are dialled again after a restart.
        for (node, addr) in state.lock().peers.iter() {
            let known = tcfg.peers.iter().any(|p| p.0 .0 == *node);
            match addr.parse::<SocketAddr>() {
                Ok(a) if !known && *node != config.node_id.0 => tcfg.peers.push((NodeId(*node), a)),
                Ok(_) => {}
                Err(_) => log::warn!("service: ignoring the bad replicated address {addr:?} of node {node}"),
            }
        }
        let raft = RaftHandler::new();
        let slot = Arc::new(Mutex::new(None));
        let handler = ServerHandler::new(raft.clone(), Arc::clone(&slot));
        let transport =
            Transport::start(tcfg, handler).map_err(|e| fail(&format!("cannot listen on {}", config.listen), e))?;
        let local_addr = transport.local_addr();
        let out = transport.handle();
        let me = config.node_id.0;
        state.lock().peer_hook = Some(Arc::new(move |node: u64, addr: &str| {
            if node == me {
                return;
            }
            match addr.parse::<SocketAddr>() {
                Ok(a) => {
                    let _ = out.add_peer(NodeId(node), a);
                }
                Err(_) => log::warn!("service: ignoring the bad replicated address {addr:?} of node {node}"),
            }
        }));

        let mut raft_cfg = Config::new(config.node_id, GroupId(SERVICE_GROUP));
        raft_cfg.election_timeout_min_ms = config.election_timeout_min_ms;
        raft_cfg.election_timeout_max_ms = config.election_timeout_max_ms;
        raft_cfg.heartbeat_interval_ms = config.heartbeat_interval_ms;
        // A build with the deliberate bugs (feature `sim-mutants`, never a
        // release) turns one on from the environment, so that the nemesis
        // can show it catches it in real processes.
        #[cfg(feature = "sim-mutants")]
        if let Ok(name) = std::env::var("RINGRAFT_MUTANT") {
            raft_cfg.mutant = crate::core::Mutant::from_name(&name);
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
        let mut node_cfg = NodeConfig::new(config.node_id, data.raft_dir());
        node_cfg.snapshot_bytes_per_sec = config.snapshot_bytes_per_sec;
        node_cfg.snapshot_sends_max = config.snapshot_sends_max as usize;
        let node = Node::start(node_cfg, vec![(group, Box::new(machine))], Arc::new(transport.handle()))
            .map_err(|e| fail("cannot start the node", e))?;
        raft.attach(node.inbound());
        let watch = node.role_watch(GroupId(SERVICE_GROUP)).ok_or_else(|| fail("node", "group 1 is missing"))?;
        let timer = Arc::new(HashedWheelTimer::new(Duration::from_millis(5), 512).map_err(|e| fail("timer", e))?);
        *slot.lock() = Some(Wired {
            node: node.handle(),
            watch,
            state: Arc::clone(&state),
            out: transport.handle(),
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
        });
        log::info!(
            "node {} of cluster {}: serving on {local_addr} ({} mode{})",
            config.node_id,
            ident.cluster_id,
            match config.start_mode {
                StartMode::Auto => "restart",
                StartMode::Bootstrap => "bootstrap",
                StartMode::Join => "join",
            },
            if data.is_new() { ", new data directory" } else { "" }
        );
        Ok(Server { node: Some(node), transport: Some(transport), raft, timer, state, local_addr, _data: data })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node's counters.
    pub fn stats(&self) -> NodeStats {
        self.node.as_ref().map(|n| n.stats()).unwrap_or_default()
    }

    /// Drains, fsyncs and stops: the node stops taking requests, writes and
    /// fsyncs what it holds, applies what committed, takes a last
    /// checkpoint; then the transport closes.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown();
        }
        self.raft.detach();
        self.state.lock().fail_all_tails();
        self.timer.shutdown();
        if let Some(mut t) = self.transport.take() {
            t.shutdown();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
