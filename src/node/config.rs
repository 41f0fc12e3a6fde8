//! What a node and its groups are configured with ([`NodeConfig`],
//! [`GroupConfig`]). The state-machine trait a user implements is a stage
//! contract (`pipeline/contract.rs`), re-exported by `node`.

use std::path::PathBuf;
use std::time::Duration;

use crate::core::{Config, GroupId, NodeId};
use crate::storage::EngineConfig;

/// A node: its identity, its data directory and the knobs of its stages.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// Directory of the log (`log/`), the state files and the lock file.
    pub data_dir: PathBuf,
    /// Log engine knobs.
    pub engine: EngineConfig,
    /// Slots of the intake ring (proposals, messages, stage reports).
    pub intake_capacity: usize,
    /// Slots of the append, FSM and replicator rings.
    pub stage_capacity: usize,
    /// How long a stage spins on an empty ring before it parks. 0 (the
    /// default) parks at once: on a 2-core machine running several nodes a
    /// spinning stage takes the CPU from the thread it waits for (measured:
    /// single-node commit p50 82–99 µs with 0, 113–135 µs with 5 µs, 203 µs
    /// with 50 µs). Give it a few µs only with cores to spare.
    pub spin: Duration,
    /// Tick of the wheel timer.
    pub timer_tick: Duration,
    /// Bytes per snapshot chunk sent to a follower.
    pub snapshot_chunk_bytes: usize,
    /// Snapshot bytes per second the node sends in total (0: no limit).
    pub snapshot_bytes_per_sec: u64,
    /// Followers a node sends snapshots to at once; others wait (their
    /// chunks are asked for again later).
    pub snapshot_sends_max: usize,
    /// Buckets of the wheel timer.
    pub timer_wheel_size: usize,
}

impl NodeConfig {
    /// Defaults: 64 Ki intake slots, 16 Ki stage slots, no spin, 1 ms
    /// timer tick over 512 buckets; snapshots in 1 MiB chunks to at most 2
    /// followers at once, no bandwidth cap.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            data_dir: data_dir.into(),
            engine: EngineConfig::default(),
            intake_capacity: 1 << 16,
            stage_capacity: 1 << 14,
            spin: Duration::from_micros(0),
            timer_tick: Duration::from_millis(1),
            snapshot_chunk_bytes: 1 << 20,
            snapshot_bytes_per_sec: 0,
            snapshot_sends_max: 2,
            timer_wheel_size: 512,
        }
    }
}

/// One group a node runs.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The core's configuration (its `id` must be the node's).
    pub raft: Config,
    /// The voters a brand-new group starts with (ignored once the group has
    /// state on disk).
    pub initial_voters: Vec<NodeId>,
    /// A brand-new group with no voters: this node waits, never
    /// campaigning, until a leader adds it (as a learner, then perhaps a
    /// voter) and replicates to it.
    pub join: bool,
}

impl GroupConfig {
    /// A group `group` on node `id` that starts with `voters`.
    pub fn new(id: NodeId, group: GroupId, voters: impl IntoIterator<Item = NodeId>) -> GroupConfig {
        GroupConfig { raft: Config::new(id, group), initial_voters: voters.into_iter().collect(), join: false }
    }
}
