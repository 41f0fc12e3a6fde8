//! One simulated node: its `RaftCore`, its disk, its own clock, its model
//! state machine with the apply queue in front of it, the log mirror the
//! checker reads, and the client bookkeeping tied to this incarnation.
//!
//! A node is either up (it has a core) or down. A restart builds a fresh
//! core from the durable store through `Recovered`; every volatile field is
//! rebuilt from the same store, and the incarnation number makes events
//! scheduled for the previous life (ticks, disk completions, applies)
//! harmless.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use ringraft::core::{Entry, LogIndex, NodeId, RaftCore, Role, SnapshotMeta, Time};

use super::disk::{Disk, Durable, Survivor};
use super::knobs::Knobs;
use super::mirror::{Mirror, SeenCommit};
use super::model::Model;

/// A node's clock: `offset + (1 + ppm/10^6) * sim_time`, in µs.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The node's epoch, µs.
    pub offset_us: u64,
    /// Rate skew in parts per million (within ±20,000).
    pub ppm: i64,
}

impl Clock {
    /// The node's time at simulated time `sim` (µs).
    #[inline]
    pub fn at(&self, sim: u64) -> Time {
        let scaled = (i128::from(sim) * (1_000_000 + i128::from(self.ppm))) / 1_000_000;
        Time(self.offset_us + scaled as u64)
    }

    /// The earliest simulated time at or after `now` when this clock reads
    /// at least `t`.
    pub fn sim_time_of(&self, t: Time, now: u64) -> u64 {
        if t.0 <= self.offset_us {
            return now;
        }
        let rate = 1_000_000 + i128::from(self.ppm);
        let guess = ((i128::from(t.0 - self.offset_us) * 1_000_000) / rate) as u64;
        let mut s = guess.max(now);
        // The division rounds down; step forward to the first instant that
        // really reaches `t` (one or two steps at most).
        while self.at(s) < t {
            s += 1;
        }
        s
    }
}

/// Work waiting for the state machine.
#[derive(Debug)]
pub enum ApplyItem {
    /// Restore from the received snapshot bytes.
    Restore(SnapshotMeta, Bytes),
    /// Apply these committed entries.
    Entries(Vec<Entry>),
}

/// Older snapshots a simulated node keeps readable for transfers (as the
/// service's `SNAPSHOTS_SENDING_MAX` readers, less the newest).
pub const SENDING_KEPT: usize = 3;

/// One simulated node.
pub struct SimNode {
    /// The node's id.
    pub id: NodeId,
    /// Its clock.
    pub clock: Clock,
    /// The core while the node is up.
    pub core: Option<RaftCore>,
    /// Bumped on every crash; events carry it to detect staleness.
    pub incarnation: u64,
    /// The disk (survives crashes).
    pub disk: Disk,
    /// The slow-disk fault lasts until this simulated time.
    pub slow_disk_until: u64,
    /// Mirror of the core's log.
    pub mirror: Mirror,
    /// The state machine.
    pub model: Model,
    /// Work for the state machine, with the simulated time it is due.
    pub apply_queue: VecDeque<(u64, ApplyItem)>,
    /// Due time of the last queued apply item (keeps the queue FIFO).
    pub apply_last_at: u64,
    /// A snapshot being received, assembled from `Ready::snapshot_chunks`.
    pub rx_snapshot: Option<(SnapshotMeta, BytesMut)>,
    /// Older snapshots still readable for transfers in progress (the
    /// service keeps them open; lost with the process), newest last, at most
    /// [`SENDING_KEPT`].
    pub sending: Vec<super::disk::StoredSnapshot>,
    /// Proposals this incarnation accepted, by index: proposal id.
    pub pending: BTreeMap<u64, u64>,
    /// The commit index seen at the last check (this incarnation).
    pub commit_seen: u64,
    /// The latest term in which this node was seen leading.
    pub led_term: u64,
    /// The latest term in which this node advanced its commit as leader.
    pub commit_term: u64,
    /// Simulated time of the scheduled tick (`u64::MAX`: none).
    pub tick_at: u64,
    /// A flush of the core's `Ready` is scheduled (batched inputs).
    pub flush_scheduled: bool,
    /// Role, term and leader at the last check, for the trace.
    pub last_soft: (Role, u64, u64),
    /// Role and term after the last input (`observe`).
    pub observed: (Role, u64),
    /// Commit index after the last input (`observe`).
    pub observed_commit: u64,
    /// The highest term this node was seen leading, to check once durable.
    pub lead_unchecked: u64,
    /// Commit advances seen by `observe`, not yet checked on the mirror.
    pub seen_commits: Vec<SeenCommit>,
}

impl SimNode {
    /// A node of `k`'s universe whose disk starts as `durable`; it is down
    /// until [`SimNode::start`].
    pub fn new(k: &Knobs, id: NodeId, durable: Durable) -> SimNode {
        let i = (id.0 - 1) as usize;
        SimNode {
            id,
            clock: Clock { offset_us: k.clock_offset_us[i], ppm: k.clock_ppm[i] },
            core: None,
            incarnation: 0,
            disk: Disk::new(durable),
            slow_disk_until: 0,
            mirror: Mirror::default(),
            model: Model::default(),
            apply_queue: VecDeque::new(),
            apply_last_at: 0,
            rx_snapshot: None,
            sending: Vec::new(),
            pending: BTreeMap::new(),
            commit_seen: 0,
            led_term: 0,
            commit_term: 0,
            tick_at: u64::MAX,
            flush_scheduled: false,
            last_soft: (Role::Follower, 0, 0),
            observed: (Role::Follower, 0),
            observed_commit: 0,
            lead_unchecked: 0,
            seen_commits: Vec::new(),
        }
    }

    /// Whether the node is up.
    #[inline]
    pub fn up(&self) -> bool {
        self.core.is_some()
    }

    /// The node's clock at simulated time `now`.
    #[inline]
    pub fn time(&self, now: u64) -> Time {
        self.clock.at(now)
    }

    /// Starts (or restarts) the node from its durable store at simulated
    /// time `now`.
    ///
    /// # Errors
    /// When the stored snapshot bytes do not decode or disagree with its
    /// meta.
    pub fn start(&mut self, k: &Knobs, now: u64) -> Result<(), String> {
        let (rec, chains) = self.disk.durable.recover();
        let snap = &self.disk.durable.snapshot;
        let model = Model::decode(&snap.data).map_err(|e| format!("n{}: stored snapshot: {e}", self.id))?;
        if model.applied != snap.meta.last_index.0 || model.chain != snap.chain {
            return Err(format!("n{}: stored snapshot bytes disagree with its meta", self.id));
        }
        let mut mirror = Mirror::new(snap.meta.last_index.0, snap.meta.last_term.0, snap.chain);
        for (e, c) in rec.entries.iter().zip(chains) {
            mirror.put(e.index.0, e.term.0, c)?;
        }
        let core = RaftCore::new(k.core_config(self.id), rec, self.time(now));
        self.commit_seen = core.commit_index().0;
        self.observed_commit = self.commit_seen;
        self.last_soft = (core.role(), core.term().0, core.leader().0);
        self.observed = (core.role(), core.term().0);
        self.lead_unchecked = 0;
        self.seen_commits.clear();
        self.core = Some(core);
        self.mirror = mirror;
        self.model = model;
        self.apply_queue.clear();
        self.apply_last_at = 0;
        self.rx_snapshot = None;
        self.sending.clear();
        self.pending.clear();
        self.led_term = 0;
        self.commit_term = 0;
        self.tick_at = u64::MAX;
        self.flush_scheduled = false;
        Ok(())
    }

    /// The node crashes: volatile state is gone, and the disk loses every
    /// write in flight (a prefix of the oldest survives when `torn`).
    /// Returns the entries a torn write left durable (see `Disk::crash`).
    ///
    /// # Errors
    /// When the torn prefix does not fit the durable log.
    pub fn crash(&mut self, torn: Option<u64>) -> Result<Option<Vec<Survivor>>, String> {
        self.core = None;
        self.incarnation += 1;
        self.apply_queue.clear();
        self.rx_snapshot = None;
        self.sending.clear();
        self.pending.clear();
        self.tick_at = u64::MAX;
        self.flush_scheduled = false;
        self.disk.crash(torn)
    }

    /// The commit index (0 while down).
    pub fn commit_index(&self) -> LogIndex {
        self.core.as_ref().map(|c| c.commit_index()).unwrap_or_default()
    }
}
