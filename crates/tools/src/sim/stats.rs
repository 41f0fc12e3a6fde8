//! Counters of one simulated run (and of many, summed): faults injected by
//! kind, elections, commits, acknowledged proposals, reads.
//!
//! Every fault kind has a counter so the summary line shows that each kind
//! really happened; `tests/sim.rs` asserts every one is non-zero.

use std::fmt::Write as _;

/// The kinds of fault the simulator injects, each counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A message was lost.
    Drop,
    /// A message was delivered twice.
    Duplicate,
    /// A message was held back so later ones overtake it.
    Reorder,
    /// A message was held back for a long time (tens to hundreds of ms).
    Delay,
    /// The nodes were split into two groups that cannot talk.
    Partition,
    /// Some links were cut in one direction only.
    AsymPartition,
    /// The leader was cut off from everyone.
    IsolateLeader,
    /// A node crashed, losing every write not completed.
    Crash,
    /// A crash kept a prefix of the write in progress (torn write).
    TornWrite,
    /// A node's disk became slow for a while.
    SlowDisk,
    /// A node's clock runs at a skewed rate (counted once per skewed node).
    ClockSkew,
    /// A membership change was proposed and accepted by a leader.
    ConfChange,
    /// A leader transfer was started.
    Transfer,
    /// A node took a snapshot and compacted its log.
    Snapshot,
}

impl FaultKind {
    /// Every kind, in summary order.
    pub const ALL: [FaultKind; 14] = [
        FaultKind::Drop,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::Delay,
        FaultKind::Partition,
        FaultKind::AsymPartition,
        FaultKind::IsolateLeader,
        FaultKind::Crash,
        FaultKind::TornWrite,
        FaultKind::SlowDisk,
        FaultKind::ClockSkew,
        FaultKind::ConfChange,
        FaultKind::Transfer,
        FaultKind::Snapshot,
    ];

    /// The name used in `faults_<name>=` of the summary line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Drop => "drop",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::Delay => "delay",
            FaultKind::Partition => "partition",
            FaultKind::AsymPartition => "asym_partition",
            FaultKind::IsolateLeader => "isolate_leader",
            FaultKind::Crash => "crash",
            FaultKind::TornWrite => "torn_write",
            FaultKind::SlowDisk => "slow_disk",
            FaultKind::ClockSkew => "clock_skew",
            FaultKind::ConfChange => "conf_change",
            FaultKind::Transfer => "transfer",
            FaultKind::Snapshot => "snapshot",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Counters of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed (fault phase and heal phase).
    pub steps: u64,
    /// Distinct (term, leader) pairs seen.
    pub elections: u64,
    /// The highest index committed anywhere.
    pub commits: u64,
    /// Proposals accepted by a leader.
    pub proposals: u64,
    /// Proposals acknowledged (applied at their index by the accepting node).
    pub acked: u64,
    /// Reads confirmed (and checked).
    pub reads_ok: u64,
    /// Reads that failed (no leader, leadership lost); allowed.
    pub reads_failed: u64,
    /// Confirmed reads answered at once from the leader's lease.
    pub reads_lease: u64,
    /// Confirmed reads answered on a follower (follower read).
    pub reads_follower: u64,
    /// Joint configurations entered (applied by the first node).
    pub joint_confs: u64,
    /// Snapshots installed from a leader.
    pub snapshot_installs: u64,
    /// Virtual time simulated, in microseconds.
    pub sim_time_us: u64,
    /// Faults injected, by [`FaultKind`].
    pub faults: [u64; FaultKind::ALL.len()],
    /// What only the node simulator counts (`None` in the core
    /// simulator's runs).
    pub node: Option<NodeCounters>,
}

/// Counters only the node simulator has: its disks' faults, clock steps,
/// restarts and client operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Crashes that lost unsynced data or directory entries.
    pub fs_lost_unsynced: u64,
    /// Crashes that left a file torn.
    pub fs_torn: u64,
    /// Writes refused for lack of space.
    pub fs_enospc: u64,
    /// Failed syncs.
    pub fs_eio: u64,
    /// Wall clock steps (forward or back).
    pub clock_step: u64,
    /// Process restarts (after a crash).
    pub restart: u64,
    /// Starts refused while the disk's faults were on (tried again).
    pub start_refused: u64,
    /// Checkpoint databases found damaged at a start (as sled can damage
    /// its own).
    pub checkpoint_lost: u64,
    /// Client operations invoked.
    pub client_ops: u64,
    /// Anomalies the history checker found.
    pub history_anomalies: u64,
}

impl NodeCounters {
    fn add(&mut self, o: &NodeCounters) {
        self.fs_lost_unsynced += o.fs_lost_unsynced;
        self.fs_torn += o.fs_torn;
        self.fs_enospc += o.fs_enospc;
        self.fs_eio += o.fs_eio;
        self.clock_step += o.clock_step;
        self.restart += o.restart;
        self.checkpoint_lost += o.checkpoint_lost;
        self.start_refused += o.start_refused;
        self.client_ops += o.client_ops;
        self.history_anomalies += o.history_anomalies;
    }
}

impl Stats {
    /// Counts one fault of `kind`.
    pub fn fault(&mut self, kind: FaultKind) {
        self.faults[kind.slot()] += 1;
    }

    /// How many faults of `kind` were injected.
    pub fn faults_of(&self, kind: FaultKind) -> u64 {
        self.faults[kind.slot()]
    }

    /// Adds another run's counters to these.
    pub fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.elections += o.elections;
        self.commits += o.commits;
        self.proposals += o.proposals;
        self.acked += o.acked;
        self.reads_ok += o.reads_ok;
        self.reads_failed += o.reads_failed;
        self.reads_lease += o.reads_lease;
        self.reads_follower += o.reads_follower;
        self.joint_confs += o.joint_confs;
        self.snapshot_installs += o.snapshot_installs;
        self.sim_time_us += o.sim_time_us;
        for (a, b) in self.faults.iter_mut().zip(o.faults.iter()) {
            *a += *b;
        }
        if let Some(on) = &o.node {
            self.node.get_or_insert_with(NodeCounters::default).add(on);
        }
    }

    /// The counters as `key=value` pairs separated by spaces.
    pub fn key_values(&self) -> String {
        let mut s = format!(
            "steps={} elections={} commits={} proposals={} acked={} reads_ok={} reads_failed={} reads_lease={} \
             reads_follower={} joint_confs={} snapshot_installs={} sim_time_ms={}",
            self.steps,
            self.elections,
            self.commits,
            self.proposals,
            self.acked,
            self.reads_ok,
            self.reads_failed,
            self.reads_lease,
            self.reads_follower,
            self.joint_confs,
            self.snapshot_installs,
            self.sim_time_us / 1000
        );
        for k in FaultKind::ALL {
            let _ = write!(s, " faults_{}={}", k.name(), self.faults_of(k));
        }
        if let Some(n) = &self.node {
            let _ = write!(
                s,
                " faults_fs_lost_unsynced={} faults_fs_torn={} faults_fs_enospc={} faults_fs_eio={} \
                 faults_clock_step={} faults_restart={} faults_checkpoint_lost={} starts_refused={} client_ops={} history_anomalies={}",
                n.fs_lost_unsynced,
                n.fs_torn,
                n.fs_enospc,
                n.fs_eio,
                n.clock_step,
                n.restart,
                n.checkpoint_lost,
                n.start_refused,
                n.client_ops,
                n.history_anomalies
            );
        }
        s
    }
}
