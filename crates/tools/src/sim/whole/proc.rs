//! One simulated node: its disk (a [`SimFs`] that outlives every process),
//! its wall clock, and, while it is up, one process life: the real core,
//! log engine, state file, service state machine, FSM caller and snapshot
//! sender, opened by the real start code, each driven as a step.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use ringraft::clock::ManualClock;
use ringraft::core::{LogIndex, Message, NodeId, Time};
use ringraft::fs::{FsLock, SimFs};
use ringraft::node::{open_group, GroupConfig, NodeError, Restore, RoleWatch, SnapshotStore, StateMachine};
use ringraft::pipeline::{AppendJob, AppendSteps, FsmSteps, FsmTask, GroupCore, SenderLimits, SenderSteps};
use ringraft::storage::{EngineConfig, LogEngine, StateFile};
use ringraft_service::command::Stamped;
use ringraft_service::kv::{ServiceStorage, SimKvStore};
use ringraft_service::log_clock::{LogClock, LogTimeSeen};
use ringraft_service::machine::{ServiceMachine, ServiceState};

use super::super::knobs::{Knobs, GROUP};
use super::knobs::NodeKnobs;

/// The data directory of every simulated node (each on its own disk).
pub const DATA: &str = "/data";

/// One entry as a state machine applied it, with what the stream it names
/// was before and after (its incarnation), for the checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The entry's index.
    pub index: u64,
    /// The entry's bytes.
    pub data: Bytes,
    /// The state machine's answer.
    pub out: Bytes,
    /// The incarnation of the stream the command names, before and after.
    pub inc_before: Option<u64>,
    /// After.
    pub inc_after: Option<u64>,
    /// Streams whose first offset the entry moved: (name, incarnation,
    /// first before, first after), by name.
    pub trims: Vec<(String, u64, u64, u64)>,
}

/// Every stream's (name, incarnation, first offset), by name.
fn firsts(st: &ServiceState) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = st.streams.iter().map(|(n, s)| (n.clone(), s.id, s.first)).collect();
    v.sort();
    v
}

/// The service's state machine with a window onto what it applies: every
/// call goes to the real [`ServiceMachine`]; `apply` also notes the entry.
pub struct Observed {
    inner: ServiceMachine,
    state: Arc<Mutex<ServiceState>>,
    log: Arc<Mutex<Vec<Applied>>>,
}

fn stream_of(data: &Bytes) -> Option<String> {
    use ringraft_service::command::Command as C;
    match Stamped::decode(data).ok()?.command {
        C::Create { stream, .. } | C::Delete { stream, .. } | C::Trim { stream, .. } | C::Append { stream, .. } => {
            Some(stream)
        }
        _ => None,
    }
}

impl StateMachine for Observed {
    fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes {
        let name = stream_of(data);
        let inc = |st: &ServiceState| name.as_ref().and_then(|n| st.streams.get(n).map(|s| s.id));
        let (inc_before, before) = {
            let st = self.state.lock();
            (inc(&st), firsts(&st))
        };
        let out = self.inner.apply(index, data);
        let (inc_after, after) = {
            let st = self.state.lock();
            (inc(&st), firsts(&st))
        };
        let trims = after
            .into_iter()
            .filter_map(|(name, id, first)| {
                let old = before.iter().find(|(n, i, _)| *n == name && *i == id)?.2;
                (old != first).then_some((name, id, old, first))
            })
            .collect();
        let a = Applied { index: index.0, data: data.clone(), out: out.clone(), inc_before, inc_after, trims };
        self.log.lock().push(a);
        out
    }

    fn on_batch_end(&mut self) {
        self.inner.on_batch_end()
    }

    fn recover(&mut self, snapshot: &ringraft::core::SnapshotMeta) -> Result<LogIndex, String> {
        self.inner.recover(snapshot)
    }

    fn next_poll(&self) -> Option<Duration> {
        self.inner.next_poll()
    }

    fn snapshot_point(&mut self) -> Option<LogIndex> {
        self.inner.snapshot_point()
    }

    fn restore(&mut self, meta: &ringraft::core::SnapshotMeta) -> Result<Restore, String> {
        self.inner.restore(meta)
    }

    fn snapshot_store(&self) -> Option<Arc<dyn SnapshotStore>> {
        self.inner.snapshot_store()
    }
}

/// One process life of a node.
pub struct Life {
    /// Simulated time (µs) the process started at: its monotonic clock
    /// reads `now - born`.
    pub born: u64,
    /// The process's monotonic clock.
    pub clock: ManualClock,
    /// The core and what the core thread keeps of the group.
    pub gc: GroupCore,
    /// The log-append stage's logic.
    pub append: AppendSteps,
    /// Jobs for it, in order (its ring).
    pub append_q: Vec<AppendJob>,
    /// The batch it is writing.
    pub append_batch: Vec<AppendJob>,
    /// An append run is scheduled.
    pub append_scheduled: bool,
    /// The disk refused the last batch (the core was told).
    pub append_failing: bool,
    /// The wait before the next attempt after a refusal, µs.
    pub append_retry_us: u64,
    /// The FSM caller's logic.
    pub fsm: FsmSteps,
    /// Tasks for it, in order.
    pub fsm_q: VecDeque<FsmTask>,
    /// An FSM run is scheduled at this time (`u64::MAX`: none).
    pub fsm_at: u64,
    /// The FSM caller's poll time, if it asked for one.
    pub fsm_poll_at: Option<u64>,
    /// The snapshot sender's logic.
    pub sender: SenderSteps,
    /// Its requests, in order.
    pub sender_q: VecDeque<Message>,
    /// The sender sleeps off its bandwidth wait until then.
    pub sender_busy_until: u64,
    /// A sender run is scheduled.
    pub sender_scheduled: bool,
    /// The live service state (reads are served from it).
    pub state: Arc<Mutex<ServiceState>>,
    /// The log time the state machine applied and when.
    pub seen: Arc<LogTimeSeen>,
    /// The leader's log-time stamping.
    pub log_clock: LogClock,
    /// The next read id.
    pub next_read: u64,
    /// The tick scheduled at this simulated time (`u64::MAX`: none).
    pub tick_at: u64,
    /// The core was told to hold committed entries back.
    pub apply_paused: bool,
    /// Entries the state machine applied, not yet taken by the checker.
    pub applied: Arc<Mutex<Vec<Applied>>>,
    /// The data directory's lock, held for the life.
    pub _lock: Box<dyn FsLock>,
}

impl Life {
    /// The process's monotonic time at simulated time `now`, as the core
    /// reads it; moves the process clock there.
    pub fn time(&self, now: u64) -> Time {
        let us = now.saturating_sub(self.born);
        self.clock.set(Duration::from_micros(us));
        Time(us)
    }

    /// The simulated time at which the process clock reads `t`.
    pub fn sim_time_of(&self, t: Time) -> u64 {
        self.born.saturating_add(t.0)
    }

    /// The core's id.
    pub fn id(&self) -> NodeId {
        self.gc.core.id()
    }
}

/// One simulated node: its disk and wall clock, and its life while up.
pub struct Proc {
    /// Node id.
    pub id: NodeId,
    /// The disk.
    pub fs: SimFs,
    /// Bumped at every crash; events carry it.
    pub inc: u64,
    /// The running process.
    pub life: Option<Life>,
    /// The wall clock's offset from true time, ms (skew plus steps).
    pub wall_offset_ms: i64,
    /// A disk-full fault is on until this simulated time.
    pub full_until: u64,
    /// A failing-disk fault is on until this simulated time.
    pub eio_until: u64,
    /// A slow-disk fault is on until this simulated time.
    pub slow_until: u64,
    /// A write started before this simulated time ends at it (a stall).
    pub stall_until: u64,
    /// A restart is scheduled.
    pub restart_scheduled: bool,
}

/// True time at simulated time 0, ms since the Unix epoch.
pub const WALL_EPOCH_MS: u64 = 1_800_000_000_000;

impl Proc {
    /// A node whose disk is empty.
    pub fn new(id: NodeId, seed: u64, nk: &NodeKnobs) -> Proc {
        let fs = SimFs::new(seed ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        fs.set_fsync_fail_ppm(nk.fsync_fail_ppm);
        let i = (id.0 - 1) as usize;
        Proc {
            id,
            fs,
            inc: 0,
            life: None,
            wall_offset_ms: nk.wall_skew_ms[i],
            full_until: 0,
            slow_until: 0,
            stall_until: 0,
            eio_until: 0,
            restart_scheduled: false,
        }
    }

    /// The node's wall clock at simulated time `now`, ms since the epoch.
    pub fn wall_ms(&self, now: u64) -> u64 {
        (WALL_EPOCH_MS as i64 + self.wall_offset_ms + (now / 1000) as i64).max(0) as u64
    }

    /// Starts a process life at simulated time `now`: the data directory's
    /// lock, the log, the state file, the service's checkpoint, then
    /// [`open_group`] exactly as `Node::start` runs it.
    ///
    /// # Errors
    /// What the start refuses (a full disk among them: the caller tries
    /// again later).
    pub fn start(&mut self, k: &Knobs, nk: &NodeKnobs, now: u64, epoch: u64) -> Result<(), NodeError> {
        let fs = self.fs.arc();
        let data = Path::new(DATA);
        ringraft::storage::create_dir_all_durably(&*fs, data)?;
        let lock = fs.lock(&data.join("LOCK")).map_err(|e| NodeError::Start(format!("lock: {e}")))?;
        let cfg =
            EngineConfig { segment_bytes: nk.segment_bytes, cache_bytes_per_group: 64 << 10, fs: Arc::clone(&fs) };
        let mut engine = LogEngine::open(&data.join("log"), cfg)?;
        let states = StateFile::on(Arc::clone(&fs), data)?;
        let log_start = states.load(GROUP)?.map_or(0, |s| s.snapshot.last_index.0);
        let clock = ManualClock::default();
        let kv = SimKvStore::new(epoch, nk.kv_flush_fail_ppm);
        let storage = ServiceStorage::simulated(Arc::clone(&fs), kv, Arc::new(clock.clone()));
        let service: PathBuf = data.join("service");
        let machine = ServiceMachine::open(storage, service, nk.policy, log_start)
            .map_err(|e| NodeError::Start(format!("service checkpoint: {e}")))?;
        let state = machine.state();
        let seen = state.lock().log_time_seen();
        let applied = Arc::new(Mutex::new(Vec::new()));
        let sm = Observed { inner: machine, state: Arc::clone(&state), log: Arc::clone(&applied) };
        let mut gcfg = GroupConfig::new(self.id, GROUP, k.initial_voters());
        gcfg.raft = k.core_config(self.id);
        let watch = Arc::new(RoleWatch::default());
        let (gc, fsm, store) = open_group(&mut engine, &states, gcfg, Box::new(sm), watch, || Time(0), Some(epoch))?;
        let mut stores = hashbrown::HashMap::new();
        if let Some(s) = store {
            stores.insert(GROUP, s);
        }
        let limits =
            SenderLimits { chunk_bytes: nk.chunk_bytes, bytes_per_sec: nk.snapshot_bytes_per_sec, sends_max: 2 };
        let sender = SenderSteps::new(stores.clone(), limits);
        let mut fsms = hashbrown::HashMap::new();
        fsms.insert(GROUP, fsm);
        self.life = Some(Life {
            born: now,
            clock,
            gc,
            append: AppendSteps::new(engine, states, stores),
            append_q: Vec::new(),
            append_batch: Vec::new(),
            append_scheduled: false,
            append_failing: false,
            append_retry_us: 10_000,
            fsm: FsmSteps::new(fsms),
            fsm_q: VecDeque::new(),
            fsm_at: u64::MAX,
            fsm_poll_at: None,
            sender,
            sender_q: VecDeque::new(),
            sender_busy_until: 0,
            sender_scheduled: false,
            state,
            seen,
            log_clock: LogClock::new(),
            next_read: 1,
            tick_at: u64::MAX,
            apply_paused: false,
            applied,
            _lock: lock,
        });
        Ok(())
    }

    /// The power fails: the process is gone without a word (nothing it
    /// would do on a graceful stop runs), and the disk loses what was not
    /// synced.
    pub fn power_off(&mut self) {
        self.inc += 1;
        // Whatever the process's objects do as they are dropped must not
        // reach the disk: its every operation now crashes.
        self.fs.crash_after(1);
        let life = self.life.take();
        let _ = super::super::panics::in_step(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(life)))
        });
        self.fs.crash();
    }

    /// Garbles the live checkpoint database, as sled damaging its own
    /// files would (the next start must find it damaged and rebuild from
    /// the node's own snapshot). Returns whether there was one to garble.
    pub fn garble_checkpoint(&self) -> bool {
        use ringraft::fs::{Fs, OpenMode};
        let svc = Path::new(DATA).join("service");
        let Ok(current) = self.fs.read(&svc.join("CURRENT")) else { return false };
        let name = String::from_utf8_lossy(&current).trim().to_string();
        let kv = svc.join(name).join("db").join("kv");
        match self.fs.open(&kv, OpenMode::ReadWrite) {
            Ok(f) if f.size().unwrap_or(0) > 8 => f.write_all_at(&[0xFF; 4], 8).is_ok() && f.sync_data().is_ok(),
            _ => false,
        }
    }

    /// Whether the process is up.
    pub fn up(&self) -> bool {
        self.life.is_some()
    }
}
