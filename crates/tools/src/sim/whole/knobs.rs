//! The node simulator's knobs: the core simulator's (network, core timing)
//! for a three-node cluster, and what only a whole node has: its disk's
//! faults, its checkpoint and snapshot policy, its log segments, its wall
//! clock, and the clients.

use std::time::Duration;

use ringraft_service::machine::CheckpointPolicy;

use super::super::knobs::Knobs;
use super::super::rng::Rng;

/// Most nodes of a simulated cluster (all voters; 3 or 5, as the core
/// simulator's seed says).
pub const NODES_MAX: usize = 5;

/// What a whole node has beyond the core simulator's knobs.
#[derive(Clone, Debug)]
pub struct NodeKnobs {
    /// Each sync fails (EIO, the node fails stop) with this chance in a
    /// million during the fault phase.
    pub fsync_fail_ppm: u32,
    /// Each flush of the checkpoint store fails with this chance in a
    /// million during the fault phase.
    pub kv_flush_fail_ppm: u32,
    /// Percent of snapshot transfers that one of the receiver's next few
    /// syncs fails as they begin.
    pub eio_on_receive_percent: u32,
    /// Chance in a million that an FSM step (where checkpoints,
    /// snapshots and installs run) gets a crash point a few file
    /// operations ahead.
    pub crash_in_fsm_ppm: u32,
    /// Percent of crashes that strike at a random later file operation
    /// (inside a write, a checkpoint, an install) instead of between steps.
    pub crash_mid_op_percent: u32,
    /// Percent of crashes after which the checkpoint database is found
    /// damaged (as sled can damage its own).
    pub garble_percent: u32,
    /// The service's checkpoint and snapshot policy.
    pub policy: CheckpointPolicy,
    /// Log segment size.
    pub segment_bytes: u64,
    /// Snapshot chunk size.
    pub chunk_bytes: usize,
    /// Snapshot bandwidth cap (0: none).
    pub snapshot_bytes_per_sec: u64,
    /// Wall clock offset of each node from true time, ms.
    pub wall_skew_ms: Vec<i64>,
    /// Clients.
    pub clients: usize,
    /// Mean interval between a client's actions, µs.
    pub client_interval_us: u64,
    /// Appends a client keeps in flight at most.
    pub client_inflight_max: usize,
    /// A client gives up waiting for an answer after this long, µs.
    pub client_timeout_us: u64,
    /// Idle log time after which a session is forgotten, ms.
    pub session_ttl_ms: u64,
    /// Retention by age of the streams clients create (0: none), ms.
    pub retention_age_ms: u64,
    /// Retention by size of the streams clients create (0: none).
    pub retention_bytes: u64,
    /// Nemesis weights: partition, heal, crash, disk full, clock step,
    /// failing disk, transfer, slow disk, the ABA drill (five voters).
    pub weights: [u32; 9],
}

impl NodeKnobs {
    /// The knobs of `seed`, and the core simulator's knobs for a cluster
    /// of whole nodes (its 3 or 5 voters, no spares).
    /// A core mutant named `mutant` is switched on in every core (the
    /// storage and service ones are switched on by their environment
    /// variable, `fs::mutant`).
    pub fn from_seed(seed: u64, steps: u64, mutant: Option<String>) -> (Knobs, NodeKnobs) {
        let mut k = Knobs::from_seed(seed, steps, mutant);
        // Three or five voters, as the core simulator's knobs say.
        k.spares = 0;
        // Time between client requests and node work is real simulated time
        // here; the core simulator's batching knob does not apply.
        k.ready_batch_us = 0;
        let mut r = Rng::fork(seed, 0x6e6f_6465);
        let ms = Duration::from_millis;
        let policy = CheckpointPolicy {
            entries: r.range(4, 80),
            interval: ms(r.range(20, 400)),
            bytes: r.range(4 << 10, 256 << 10),
            snapshot_entries: r.range(4, 60),
            snapshot_bytes: r.range(16 << 10, 1 << 20),
            retry_after: ms(r.range(50, 1000)),
        };
        let w = |r: &mut Rng| if r.percent(10) { 0 } else { r.range(1, 10) as u32 };
        let nk = NodeKnobs {
            fsync_fail_ppm: if r.percent(40) { 0 } else { r.range(50, 3000) as u32 },
            kv_flush_fail_ppm: if r.percent(40) { 0 } else { r.range(1000, 50_000) as u32 },
            crash_mid_op_percent: r.range(20, 80) as u32,
            crash_in_fsm_ppm: if r.percent(30) { 0 } else { r.range(1_000, 20_000) as u32 },
            eio_on_receive_percent: if r.percent(20) { 0 } else { r.range(30, 90) as u32 },
            garble_percent: if r.percent(30) { 0 } else { r.range(5, 40) as u32 },
            policy,
            segment_bytes: r.range(8 << 10, 256 << 10),
            // Small chunks often: a stream segment then spans several.
            chunk_bytes: if r.percent(50) { r.range(64, 1024) } else { r.range(1024, 16 << 10) } as usize,
            snapshot_bytes_per_sec: if r.percent(70) { 0 } else { r.range(256 << 10, 8 << 20) },
            wall_skew_ms: (0..NODES_MAX).map(|_| r.range(0, 4000) as i64 - 2000).collect(),
            clients: r.range(1, 4) as usize,
            client_interval_us: r.range(2_000, 20_000),
            client_inflight_max: r.range(1, 5) as usize,
            client_timeout_us: r.range(300_000, 2_000_000),
            session_ttl_ms: r.range(20_000, 120_000),
            retention_age_ms: if r.percent(60) { 0 } else { r.range(5_000, 60_000) },
            retention_bytes: if r.percent(70) { 0 } else { r.range(2 << 10, 64 << 10) },
            weights: [
                w(&mut r),
                w(&mut r),
                w(&mut r).max(1),
                w(&mut r),
                w(&mut r),
                w(&mut r),
                w(&mut r),
                w(&mut r),
                w(&mut r),
            ],
        };
        (k, nk)
    }
}
