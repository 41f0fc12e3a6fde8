//! Starting a node: lock the data directory, open the log engine, open
//! each group ([`open_group`](super::recover::open_group)), wire the rings
//! and spawn the stage threads.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use hashbrown::HashMap;
use parking_lot::Mutex;

use super::config::{GroupConfig, NodeConfig};
use super::recover::open_group;
use super::running::{Node, NodeHandle};
use crate::core::GroupId;
use crate::fs::FsLock;
use crate::pipeline::ring::ring;
use crate::pipeline::transport::{Inbound, RaftTransport};
use crate::pipeline::{
    AppendCounters, AppendStage, AppendSteps, Clock, CoreCounters, CoreStage, CoreWiring, FsmStage, FsmSteps,
    GroupCore, GroupFsm, NodeError, Replicators, RoleWatch, SenderLimits, SnapshotSender, SnapshotStore, StateMachine,
};
use crate::storage::{LogEngine, StateFile, StorageError};
use crate::timer::HashedWheelTimer;

impl Node {
    /// Opens the data directory (locking it), recovers every group from
    /// disk (bootstrapping a group with no state from its initial voters),
    /// and starts the stage threads. Register [`Node::inbound`] with the
    /// transport so peers' messages reach the node.
    ///
    /// # Errors
    /// [`NodeError::Storage`] when the log or a state file cannot be read
    /// (corruption is reported with file and offset) or the directory is
    /// locked by another process; [`NodeError::Start`] for an invalid
    /// configuration or a thread that cannot be spawned.
    pub fn start(
        cfg: NodeConfig,
        groups: Vec<(GroupConfig, Box<dyn StateMachine>)>,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<Node, NodeError> {
        start(cfg, groups, transport)
    }
}

/// Holds the data directory's lock for the life of the process (the lock
/// is released when the file is closed, i.e. when the node's threads end).
fn lock_dir(cfg: &NodeConfig) -> Result<Box<dyn FsLock>, NodeError> {
    let fs = &cfg.engine.fs;
    crate::storage::create_dir_all_durably(&**fs, &cfg.data_dir)?;
    let path = cfg.data_dir.join("LOCK");
    match fs.lock(&path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(NodeError::Start(format!(
            "data directory {} is in use by another node (lock held on {})",
            cfg.data_dir.display(),
            path.display()
        ))),
        Err(e) => Err(StorageError::io("lock data directory", &path, e).into()),
    }
}

fn start(
    cfg: NodeConfig,
    groups: Vec<(GroupConfig, Box<dyn StateMachine>)>,
    transport: Arc<dyn RaftTransport>,
) -> Result<Node, NodeError> {
    if !cfg.id.is_some() {
        return Err(NodeError::Start("node id 0 is reserved".into()));
    }
    let lock = lock_dir(&cfg)?;
    let mut engine = LogEngine::open(&cfg.data_dir.join("log"), cfg.engine.clone())?;
    let states = StateFile::on(Arc::clone(&cfg.engine.fs), &cfg.data_dir)?;
    let clock = Clock::new();
    let mut cores = HashMap::new();
    let mut fsms = HashMap::new();
    let mut watches = HashMap::new();
    let mut stores: HashMap<GroupId, Arc<dyn SnapshotStore>> = HashMap::new();
    for (gc, sm) in groups {
        let group: GroupId = gc.raft.group;
        if gc.raft.id != cfg.id {
            return Err(NodeError::Start(format!(
                "group {group} is configured for node {}, not {}",
                gc.raft.id, cfg.id
            )));
        }
        gc.raft.validate().map_err(|e| NodeError::Start(format!("group {group}: {e}")))?;
        if cores.contains_key(&group) {
            return Err(NodeError::Start(format!("group {group} is listed twice")));
        }
        let watch = Arc::new(RoleWatch::default());
        watches.insert(group, Arc::clone(&watch));
        let (core, fsm, store) = open_group(&mut engine, &states, gc, sm, watch, || clock.now(), None)?;
        cores.insert(group, core);
        if let Some(s) = store {
            stores.insert(group, s);
        }
        fsms.insert(group, fsm);
    }
    let mut node = spawn(cfg, cores, fsms, stores, engine, states, transport, clock, lock)?;
    node.watches = watches;
    Ok(node)
}

#[allow(clippy::too_many_arguments)]
fn spawn(
    cfg: NodeConfig,
    cores: HashMap<GroupId, GroupCore>,
    fsms: HashMap<GroupId, GroupFsm>,
    stores: HashMap<GroupId, Arc<dyn SnapshotStore>>,
    engine: LogEngine,
    state_file: StateFile,
    transport: Arc<dyn RaftTransport>,
    clock: Clock,
    lock: Box<dyn FsLock>,
) -> Result<Node, NodeError> {
    let id = cfg.id;
    let start_err = |e: std::io::Error| NodeError::Start(format!("cannot spawn a stage thread: {e}"));
    let (intake_tx, intake_rx) = ring("intake", cfg.intake_capacity, cfg.spin);
    let (append_tx, append_rx) = ring("append", cfg.stage_capacity, cfg.spin);
    let (fsm_tx, fsm_rx) = ring("fsm", cfg.stage_capacity, cfg.spin);
    let killed = Arc::new(AtomicBool::new(false));
    let closing = Arc::new(AtomicBool::new(false));
    let timer = Arc::new(HashedWheelTimer::new(cfg.timer_tick, cfg.timer_wheel_size).map_err(start_err)?);
    let append_counters = Arc::new(AppendCounters::default());
    let core_counters = Arc::new(CoreCounters::default());
    let replicators = Replicators::new(id, Arc::clone(&transport), cfg.stage_capacity, cfg.spin, Arc::clone(&killed));
    let replicator_counters = Arc::clone(&replicators.counters);
    let snapshot_sender = if stores.is_empty() {
        None
    } else {
        let limits = SenderLimits {
            chunk_bytes: cfg.snapshot_chunk_bytes.max(1),
            bytes_per_sec: cfg.snapshot_bytes_per_sec,
            sends_max: cfg.snapshot_sends_max.max(1),
        };
        Some(SnapshotSender::start(id, stores.clone(), Arc::clone(&transport), limits).map_err(start_err)?)
    };

    let append = AppendStage {
        rx: append_rx,
        intake: intake_tx.clone(),
        steps: AppendSteps::new(engine, state_file, stores.clone()),
        transport,
        counters: Arc::clone(&append_counters),
        killed: Arc::clone(&killed),
        stopping: Arc::clone(&closing),
        failing: false,
        abandoned: false,
        _lock: lock,
    };
    let fsm =
        FsmStage { rx: fsm_rx, intake: intake_tx.clone(), steps: FsmSteps::new(fsms), killed: Arc::clone(&killed) };
    let wiring = CoreWiring {
        rx: intake_rx,
        append: append_tx,
        fsm: fsm_tx,
        replicators,
        timer: Arc::clone(&timer),
        timer_tx: Arc::new(Mutex::new(intake_tx.clone())),
        clock,
        killed: Arc::clone(&killed),
        counters: Arc::clone(&core_counters),
        snapshot_sender,
    };
    let core = CoreStage::new(id, cores, wiring);
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let name = |stage: &str| format!("n{}-{stage}", id);
    threads.push(std::thread::Builder::new().name(name("core")).spawn(move || core.run()).map_err(start_err)?);
    threads.push(std::thread::Builder::new().name(name("append")).spawn(move || append.run()).map_err(start_err)?);
    threads.push(std::thread::Builder::new().name(name("fsm")).spawn(move || fsm.run()).map_err(start_err)?);
    log::info!("node {id}: started ({})", cfg.data_dir.display());
    Ok(Node {
        id,
        handle: Mutex::new(NodeHandle { tx: intake_tx.clone(), closing }),
        inbound: Inbound::new(intake_tx),
        threads,
        timer,
        killed,
        append_counters,
        replicator_counters,
        core_counters,
        watches: HashMap::new(),
        stopped: false,
    })
}
