//! The log service's state machine: streams, sessions and log time, applied
//! from committed Raft entries on the FSM caller thread.
//!
//! Everything here is in memory; applying does no I/O and no fsync (the
//! records are already durable in the Raft log). [`ServiceMachine`] wraps
//! the state for the node: it applies, serves long-poll tails when new
//! records arrive, and every `checkpoint_entries` entries (or
//! `checkpoint_interval`) hands a consistent cut of the new records and the
//! metadata to the checkpointer thread (`checkpoint.rs`), which writes them
//! to the streams' segment files and to sled. After a crash the node replays
//! the Raft log from the last checkpoint's applied index.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use std::path::PathBuf;

use super::checkpoint::{CheckpointError, CheckpointErrorKind, Checkpointer};
use super::health::NodeHealth;
use super::kv::ServiceStorage;
use super::log_clock::LogTimeSeen;
use super::snapshot;
use super::snapshot_store::ServiceSnapshots;
use ringraft::core::{LogIndex, SnapshotMeta};
use ringraft::node::{Restore, SnapshotStore, StateMachine};

pub use super::state::{PeerHook, Refusal, ServiceState, TailReply, SERVICE_GROUP};

/// Checkpoint and snapshot thresholds.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointPolicy {
    /// Checkpoint after this many applied entries...
    pub entries: u64,
    /// ... or this much time with anything applied.
    pub interval: Duration,
    /// ... or once this many entry bytes were applied (records wait in
    /// memory until a checkpoint writes them).
    pub bytes: u64,
    /// Make a checkpoint a snapshot (and let the log be compacted) once it
    /// is this many entries past the previous snapshot...
    pub snapshot_entries: u64,
    /// ... or this many entry bytes (the node keeps the log after the last
    /// snapshot in memory).
    pub snapshot_bytes: u64,
    /// After a failed checkpoint (a full disk does not empty itself at
    /// once), the next waits this long.
    pub retry_after: Duration,
}

/// How often an idle service state machine is polled anyway (a snapshot
/// wanted by the sender is noticed this late at most).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The [`StateMachine`] the node drives: the shared state plus the
/// checkpoint and snapshot schedule.
pub struct ServiceMachine {
    state: Arc<Mutex<ServiceState>>,
    storage: ServiceStorage,
    service: PathBuf,
    checkpointer: Option<Checkpointer>,
    policy: CheckpointPolicy,
    snapshots: Arc<ServiceSnapshots>,
    /// Applied index of the checkpoint in flight or last written.
    last_job: LogIndex,
    /// When it was handed out (the process's monotonic time).
    last_job_at: Duration,
    in_flight: bool,
    /// The index the checkpoint restored at start.
    restored: LogIndex,
    /// The newest snapshot made (or installed).
    last_snapshot: LogIndex,
    /// A snapshot made but not yet reported to the node.
    snapshot_ready: Option<LogIndex>,
    /// After a failed checkpoint, the next one waits until then.
    retry_at: Option<Duration>,
    /// Entry bytes applied since the last checkpoint job / snapshot job.
    bytes_since_job: u64,
    bytes_since_snapshot: u64,
    /// The reply outbox is enabled on the FSM thread.
    outbox_on: bool,
    /// Shared buffer the outcomes of applied entries are encoded into.
    outcomes: BytesMut,
    /// Why the checkpoint could not be used at start: the state is rebuilt
    /// in `recover`, once the Raft log's start is known.
    damaged: Option<String>,
    /// Where a checkpoint or install that failed for lack of space is
    /// reported.
    health: Arc<NodeHealth>,
    /// When an install refused for lack of space was last logged.
    full_logged_at: Option<Duration>,
}

impl ServiceMachine {
    /// Opens the service directory `service` on `storage`: the checkpoint
    /// `CURRENT` names, verified (`checkpoint.rs`). A checkpoint that is
    /// damaged, or behind `log_start` (the index the Raft log starts
    /// after) with nothing received to install, gives a machine that
    /// rebuilds the state in [`StateMachine::recover`]
    /// ([`ServiceMachine::damaged_why`] says why).
    ///
    /// # Errors
    /// [`CheckpointErrorKind::DiskFull`] and [`CheckpointErrorKind::Io`]:
    /// nothing could be opened (damage is not an error here).
    pub fn open(
        storage: ServiceStorage,
        service: PathBuf,
        policy: CheckpointPolicy,
        log_start: u64,
    ) -> Result<ServiceMachine, CheckpointError> {
        if log_start > 0 && snapshot::pending_install(&*storage.fs, &service, log_start) {
            // An install of the snapshot the log starts after was cut short:
            // `recover` finishes it, replacing the live state, which is not
            // opened (it is older than the snapshot, and that is no damage;
            // defect 16: it was reported and set aside as damaged).
            log::info!("service: the install of snapshot {log_start} was cut short; it is finished at recovery");
            let state = Arc::new(Mutex::new(ServiceState::new(Arc::default())));
            return Ok(ServiceMachine::with(state, storage, service, None, policy, None));
        }
        let opened = match super::checkpoint::open_live(&storage, &service) {
            Ok((state, ckpt)) => {
                // (No install of the log's start is pending: see above.)
                if state.applied.0 < log_start {
                    drop(ckpt);
                    Err(CheckpointError {
                        msg: format!(
                            "the checkpoint is at index {} but the Raft log starts after {log_start}",
                            state.applied
                        ),
                        kind: CheckpointErrorKind::Damaged,
                    })
                } else {
                    Ok((state, ckpt))
                }
            }
            Err(e) => Err(e),
        };
        match opened {
            Ok((state, ckpt)) => {
                let state = Arc::new(Mutex::new(state));
                Ok(ServiceMachine::with(state, storage, service, Some(ckpt), policy, None))
            }
            Err(e) if e.kind == CheckpointErrorKind::Damaged => {
                log::error!("service: the checkpoint is unusable: {e}; it is rebuilt once the Raft log is open");
                let state = Arc::new(Mutex::new(ServiceState::new(Arc::default())));
                Ok(ServiceMachine::with(state, storage, service, None, policy, Some(e.msg)))
            }
            Err(e) => Err(e),
        }
    }

    /// Why the checkpoint could not be used, while the state waits to be
    /// rebuilt (`None` once [`StateMachine::recover`] rebuilt it, or when
    /// it was fine).
    pub fn damaged_why(&self) -> Option<&str> {
        self.damaged.as_deref()
    }

    /// Whether the last checkpoint, install or rebuild failed for lack of
    /// space: the server reports it (`Status`) and retries the start every
    /// second instead of giving up.
    pub fn short_of_space(&self) -> bool {
        self.health.service_full()
    }

    /// The live state, shared with the server's readers.
    pub fn state(&self) -> Arc<Mutex<ServiceState>> {
        Arc::clone(&self.state)
    }

    #[cfg(test)]
    pub(crate) fn new(
        state: Arc<Mutex<ServiceState>>,
        service: PathBuf,
        checkpointer: Checkpointer,
        policy: CheckpointPolicy,
    ) -> ServiceMachine {
        ServiceMachine::with(state, ServiceStorage::real(), service, Some(checkpointer), policy, None)
    }

    fn with(
        state: Arc<Mutex<ServiceState>>,
        storage: ServiceStorage,
        service: PathBuf,
        checkpointer: Option<Checkpointer>,
        policy: CheckpointPolicy,
        damaged: Option<String>,
    ) -> ServiceMachine {
        let restored = {
            // Log time is seen on this process's clock (a simulated process
            // has its own, from 0 at every start).
            let mut st = state.lock();
            let seen = Arc::new(LogTimeSeen::on(Arc::clone(&storage.clock)));
            seen.note(st.log_time_ms);
            st.log_time_seen = seen;
            st.applied
        };
        let snapshots = Arc::new(ServiceSnapshots::new(&storage, service.clone()));
        let now = storage.clock.now();
        ServiceMachine {
            state,
            storage,
            service,
            checkpointer,
            policy,
            snapshots,
            last_job: restored,
            last_job_at: now,
            in_flight: false,
            restored,
            last_snapshot: restored,
            snapshot_ready: None,
            retry_at: None,
            bytes_since_job: 0,
            bytes_since_snapshot: 0,
            outbox_on: false,
            outcomes: BytesMut::new(),
            damaged,
            health: Arc::default(),
            full_logged_at: None,
        }
    }

    /// Takes a finished checkpoint's outcome, if any.
    fn on_done(&mut self, st: &mut ServiceState) {
        let r = self.checkpointer.as_mut().and_then(|c| c.poll_done());
        if let Some(r) = r {
            self.handle_done(st, r);
        }
    }

    /// Waits for every checkpoint in flight and takes their outcomes.
    fn drain(&mut self, st: &mut ServiceState) {
        while let Some(r) = self.checkpointer.as_mut().and_then(|c| c.wait_done()) {
            self.handle_done(st, r);
        }
        self.in_flight = false;
    }

    fn handle_done(&mut self, st: &mut ServiceState, r: Result<super::checkpoint::Done, super::checkpoint::Failed>) {
        self.health.set_service_full(r.as_ref().is_err_and(|f| f.disk_full));
        match r {
            Ok(done) => {
                self.in_flight = false;
                self.retry_at = None;
                st.deleted.retain(|id| !done.deleted.contains(id));
                if done.snapshot {
                    self.last_snapshot = done.applied;
                    self.snapshot_ready = Some(done.applied);
                }
                let keep = st.cache_records;
                for s in st.streams.values_mut() {
                    if let Some(&end) = done.ends.get(&s.id) {
                        s.release_written(end, keep);
                    }
                }
            }
            Err(_) => {
                // The segments were rolled back to the last durable
                // checkpoint: write again everything past what they hold,
                // after a pause (a full disk does not empty itself at once).
                self.in_flight = false;
                self.last_job = LogIndex(0);
                self.retry_at = Some(self.storage.clock.now() + self.policy.retry_after);
                let disk = Arc::clone(&st.disk);
                let disk = disk.lock();
                for s in st.streams.values_mut() {
                    let end = disk.get(&s.id).and_then(|d| d.end()).unwrap_or(s.first);
                    s.ckpt_next = end.clamp(s.mem_first.max(s.first), s.next);
                }
            }
        }
    }

    /// Starts a checkpoint now if none is in flight and one is due.
    fn maybe_checkpoint(&mut self, st: &mut ServiceState, force: bool) {
        self.on_done(st);
        if self.snapshots.take_want() {
            st.snapshot_wanted = true;
        }
        if self.retry_at.is_some_and(|t| self.storage.clock.now() < t) && !force {
            return;
        }
        let wanted = std::mem::take(&mut st.snapshot_wanted);
        // A wanted snapshot is made even at the index of the last one: its
        // copy may be gone, and a node that applied only no-ops since would
        // otherwise never serve a snapshot again (defect 23).
        if self.in_flight || (st.applied <= self.last_job && !wanted) {
            st.snapshot_wanted |= wanted && self.in_flight;
            return;
        }
        let due = st.applied.0 - self.last_job.0 >= self.policy.entries
            || self.bytes_since_job >= self.policy.bytes
            || self.storage.clock.now().saturating_sub(self.last_job_at) >= self.policy.interval
            || force
            || wanted;
        if !due {
            return;
        }
        let mut job = super::checkpoint::cut(st);
        job.snapshot = wanted
            || job.applied.0 - self.last_snapshot.0 >= self.policy.snapshot_entries
            || self.bytes_since_snapshot >= self.policy.snapshot_bytes;
        self.bytes_since_job = 0;
        if job.snapshot {
            self.bytes_since_snapshot = 0;
        }
        self.last_job = job.applied;
        self.last_job_at = self.storage.clock.now();
        self.in_flight = self.checkpointer.as_mut().is_some_and(|c| c.submit(job));
    }

    /// Replaces the live state with the received snapshot `index`.
    fn install(&mut self, index: LogIndex) -> Result<(), String> {
        {
            let state = Arc::clone(&self.state);
            let mut st = state.lock();
            self.drain(&mut st);
        }
        self.checkpointer = None;
        let storage = self.storage.clone();
        let write_db = |dir: &std::path::Path, m: &snapshot::Manifest| super::checkpoint::write_db(&storage, dir, m);
        let dir = snapshot::install(&*self.storage.fs, &self.service, index.0, write_db)
            .map_err(|e| self.io_failed(&format!("installing snapshot {index}"), &e))?;
        let (fresh, ckpt) = self.open_checkpoint(&dir)?;
        self.take_state(fresh, ckpt);
        log::info!("service: installed snapshot {index} ({} streams)", self.state.lock().streams.len());
        Ok(())
    }

    /// An I/O error of an install or rebuild as the message `recover`
    /// returns; a full disk is noted in the server's health, so that the
    /// start is retried once space returns instead of failing.
    fn io_failed(&self, what: &str, e: &std::io::Error) -> String {
        if super::checkpoint::is_disk_full(e) {
            self.health.set_service_full(true);
        }
        format!("{what}: {e}")
    }

    /// Opens the checkpoint in `dir` ([`super::checkpoint::open`]), noting
    /// a full disk as [`ServiceMachine::io_failed`] does.
    fn open_checkpoint(&self, dir: &std::path::Path) -> Result<(ServiceState, Checkpointer), String> {
        super::checkpoint::open(&self.storage, &self.service, dir).map_err(|e| {
            if e.kind == super::checkpoint::CheckpointErrorKind::DiskFull {
                self.health.set_service_full(true);
            }
            e.to_string()
        })
    }

    /// The service's snapshot store itself (for `FetchSnapshot`).
    pub(crate) fn service_snapshots(&self) -> Arc<ServiceSnapshots> {
        Arc::clone(&self.snapshots)
    }

    /// Reports checkpoint failures for lack of space to `health` (the
    /// server's, shown by `Status`).
    pub(crate) fn set_health(&mut self, health: Arc<NodeHealth>) {
        self.health = health;
    }

    /// Makes a freshly opened state the live one (tails, the peer hook and
    /// log time carried over).
    fn take_state(&mut self, fresh: ServiceState, ckpt: Checkpointer) {
        let mut st = self.state.lock();
        st.release_tails();
        let hook = st.peer_hook.take();
        let next_tail = st.next_tail;
        let seen = Arc::clone(&st.log_time_seen);
        *st = fresh;
        seen.note(st.log_time_ms);
        st.log_time_seen = seen;
        // Tail ids stay unique: timers of answered tails may still fire.
        st.next_tail = next_tail;
        if let Some(h) = &hook {
            for (node, addr) in &st.peers {
                h(*node, addr);
            }
        }
        st.peer_hook = hook;
        self.checkpointer = Some(ckpt);
        self.last_job = st.applied;
        self.last_snapshot = st.applied;
        self.restored = st.applied;
    }

    /// Rebuilds an unusable state (`why`) before the log replays: from
    /// this node's newest snapshot if it covers the log's start
    /// (`log_start`, the index the log is compacted behind) and every byte
    /// of it checks out, else from nothing when the log was never compacted.
    /// Otherwise the node cannot rebuild on its own and says what to do.
    fn rebuild(&mut self, log_start: LogIndex, why: &str) -> Result<(), String> {
        let svc = self.service.clone();
        let fs = Arc::clone(&self.storage.fs);
        let fs = &*fs;
        // Nothing may write to the unusable state any more.
        {
            let state = Arc::clone(&self.state);
            let mut st = state.lock();
            self.drain(&mut st);
        }
        self.checkpointer = None;
        let fail = |e: std::io::Error| self.io_failed("rebuilding the service state", &e);
        if log_start.0 > 0 && snapshot::pending_install(fs, &svc, log_start.0) {
            // Fetched from a peer (`rebuild.rs`) or received before a crash.
            log::error!(
                "service: the service checkpoint is unusable ({why}); installing the received snapshot {log_start} \
                 and replaying the Raft log after it"
            );
            snapshot::set_aside_current(fs, &svc).map_err(fail)?;
            return self.install(log_start);
        }
        match super::rebuild::intact_local_snapshot(&self.storage, &svc, log_start.0) {
            Some(n) => {
                log::error!(
                    "service: the service checkpoint is unusable ({why}); rebuilding the state from this node's \
                     snapshot {n} and replaying the Raft log after it"
                );
                snapshot::set_aside_current(fs, &svc).map_err(fail)?;
                snapshot::stage_local(fs, &svc, n).map_err(fail)?;
                self.install(LogIndex(n))
            }
            None if log_start.0 == 0 => {
                log::error!(
                    "service: the service checkpoint is unusable ({why}) and this node has no intact snapshot; \
                     rebuilding the state by replaying the whole Raft log"
                );
                snapshot::set_aside_current(fs, &svc).map_err(fail)?;
                let dir = snapshot::fresh_state(fs, &svc).map_err(fail)?;
                let (fresh, ckpt) = self.open_checkpoint(&dir)?;
                self.take_state(fresh, ckpt);
                Ok(())
            }
            None => Err(format!(
                "the service checkpoint is unusable ({why}), and no intact snapshot of this node covers the Raft \
                 log, which starts after index {log_start}: remove this node from the cluster (ringraft admin \
                 remove), wipe its data directory and add it again as a learner (README, \"A damaged checkpoint\")"
            )),
        }
    }
}

impl StateMachine for ServiceMachine {
    fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes {
        if !self.outbox_on {
            // First call on the FSM caller thread: answers made here are
            // gathered per batch from now on.
            super::outbox::enable();
            self.outbox_on = true;
        }
        self.bytes_since_job += data.len() as u64;
        self.bytes_since_snapshot += data.len() as u64;
        let out = self.state.lock().apply(index, data);
        out.encode_in(&mut self.outcomes)
    }

    fn on_batch_end(&mut self) {
        let state = Arc::clone(&self.state);
        let mut st = state.lock();
        st.serve_tails();
        // Every answer of the batch (appends, reads, tails) is gathered by
        // now: one hand-off per connection.
        super::outbox::flush();
        self.maybe_checkpoint(&mut st, false);
    }

    fn recover(&mut self, snapshot: &SnapshotMeta) -> Result<LogIndex, String> {
        if let Some(why) = self.damaged.take() {
            self.rebuild(snapshot.last_index, &why)?;
        }
        // A snapshot made before a restart but never reported to the node
        // is offered again, so the log is compacted and peers can get it.
        if let Some(n) = snapshot::newest(&*self.storage.fs, &self.service) {
            if n > snapshot.last_index.0 && n <= self.restored.0 {
                self.snapshot_ready = Some(LogIndex(n));
                self.last_snapshot = LogIndex(n);
            }
        }
        if self.restored < snapshot.last_index {
            if !snapshot::received(&*self.storage.fs, &self.service, snapshot.last_index.0) {
                let why = format!(
                    "it is at index {} but the log starts after a snapshot at {}, and no complete copy of that \
                     snapshot was received",
                    self.restored, snapshot.last_index
                );
                self.rebuild(snapshot.last_index, &why)?;
            } else {
                // The node crashed between storing the log reset of a
                // received snapshot and installing it: finish the install.
                self.install(snapshot.last_index)?;
            }
        }
        Ok(self.restored)
    }

    fn snapshot_point(&mut self) -> Option<LogIndex> {
        self.snapshot_ready.take()
    }

    fn next_poll(&self) -> Option<Duration> {
        if self.snapshot_ready.is_some() {
            return Some(Duration::ZERO);
        }
        if self.in_flight || self.snapshots.wants() {
            return Some(Duration::from_millis(10));
        }
        let st = self.state.lock();
        if st.applied > self.last_job || st.snapshot_wanted {
            return Some(
                self.policy
                    .interval
                    .saturating_sub(self.storage.clock.now().saturating_sub(self.last_job_at))
                    .max(Duration::from_millis(10)),
            );
        }
        // Idle: still look once a second, since the snapshot sender may ask
        // for a fresh snapshot from its own thread, which wakes nothing
        // (defect 23: a leader whose copy was gone never made one, and a
        // lagging follower was never caught up). One wake-up a second.
        Some(IDLE_POLL)
    }

    /// Installs a snapshot received from the leader. A full disk is waited
    /// out (every step of the install can be repeated) rather than ending
    /// the process: the FSM caller tries again every second, applying
    /// nothing of the group meanwhile (nothing can be applied before the
    /// install anyway).
    fn restore(&mut self, meta: &SnapshotMeta) -> Result<Restore, String> {
        self.health.set_service_full(false);
        match self.install(meta.last_index) {
            Err(e) if self.health.service_full() => {
                let now = self.storage.clock.now();
                if self.full_logged_at.is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(60)) {
                    log::error!("service: disk full: {e}; trying again every second until space is freed");
                    self.full_logged_at = Some(now);
                }
                Ok(Restore::RetryAfter(Duration::from_secs(1)))
            }
            Err(e) => Err(e),
            Ok(()) => {
                self.full_logged_at = None;
                Ok(Restore::Done)
            }
        }
    }

    fn snapshot_store(&self) -> Option<Arc<dyn SnapshotStore>> {
        Some(Arc::clone(&self.snapshots) as Arc<dyn SnapshotStore>)
    }
}

impl Drop for ServiceMachine {
    /// A last checkpoint on a graceful stop, so the next start replays
    /// little; waits for it.
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding from a panic (a failed invariant, or a simulated
            // crash): the process is going down, not stopping; a checkpoint
            // now could only write after the failure.
            return;
        }
        let state = Arc::clone(&self.state);
        let mut st = state.lock();
        st.fail_all_tails();
        // Every outcome goes through handle_done: a failed job's rollback
        // must be seen before the last checkpoint is cut.
        self.drain(&mut st);
        self.retry_at = None;
        self.maybe_checkpoint(&mut st, true);
        self.drain(&mut st);
    }
}
