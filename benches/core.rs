//! Throughput of the sans-IO core alone: three in-memory cores exchanging
//! messages in one thread, no faults, an instant disk and state machine.
//! 64-byte proposals go in batches of 256 with a window of several batches
//! in flight; the figure is committed (and applied) entries per second.
//!
//! This measures CPU cost per entry inside the core (log, ballot box,
//! replication bookkeeping, message construction), the ceiling every real
//! pipeline sits under. Run: `cargo bench --features sim --bench core`
//! (`cargo run` cannot run benches; the bench profile is release).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use ringraft::core::{Config, GroupId, LogIndex, Message, NodeId, RaftCore, Recovered, Role, Time};

const NODES: u64 = 3;
const BATCH: usize = 256;
const WINDOW_BATCHES: u64 = 8;
const PAYLOAD_BYTES: usize = 64;
const ENTRIES_TOTAL: u64 = 4_000_000;
/// Each core snapshots (and compacts its log) every this many entries, as a
/// real node does; without it the run measures page faults of a log that
/// grows by gigabytes.
const SNAPSHOT_EVERY: u64 = 65_536;

struct Cluster {
    cores: Vec<RaftCore>,
    inbox: VecDeque<Message>,
    now: Time,
    applied: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let voters: Vec<NodeId> = (1..=NODES).map(NodeId).collect();
        let cores = voters
            .iter()
            .map(|id| {
                let mut cfg = Config::new(*id, GroupId(1));
                cfg.seed = 7;
                cfg.snapshot_trailing_entries = 4096;
                RaftCore::new(cfg, Recovered::bootstrap(voters.clone()), Time(0))
            })
            .collect();
        Cluster { cores, inbox: VecDeque::new(), now: Time(0), applied: 0 }
    }

    /// Takes every core's ready and carries it out with an instant disk:
    /// writes are durable at once, so persisted messages go out with the
    /// others and `on_persisted` follows immediately.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.cores.len() {
                let core = &mut self.cores[i];
                if !core.has_ready() {
                    continue;
                }
                progressed = true;
                let rd = core.take_ready();
                let point = rd.persist_point();
                self.inbox.extend(rd.messages);
                self.inbox.extend(rd.persisted_messages);
                if let Some(point) = point {
                    core.on_persisted(point);
                }
                if let Some(last) = rd.committed_entries.last() {
                    core.on_applied(last.index);
                    if i == 0 {
                        self.applied = last.index.0;
                    }
                    if last.index.0 - core.snapshot_meta().last_index.0 >= SNAPSHOT_EVERY {
                        // The state machine is instant too: the snapshot is
                        // "stored" by the time the core hears of it.
                        let _ = core.on_snapshot_created(last.index);
                    }
                }
            }
            while let Some(m) = self.inbox.pop_front() {
                progressed = true;
                let to = (m.to.0 - 1) as usize;
                self.cores[to].step(self.now, m);
            }
            if !progressed {
                break;
            }
        }
    }

    fn elect_node_1(&mut self) {
        self.now = Time(10_000_000);
        self.cores[0].tick(self.now);
        self.pump();
        assert_eq!(self.cores[0].role(), Role::Leader, "node 1 should win the first election");
    }
}

fn main() {
    let mut c = Cluster::new();
    c.elect_node_1();
    let payload = Bytes::from(vec![0xAB; PAYLOAD_BYTES]);
    let start_index = c.cores[0].commit_index().0;
    let started = Instant::now();
    let mut proposed = 0u64;
    while c.applied < start_index + ENTRIES_TOTAL {
        let leader = &mut c.cores[0];
        let in_flight = leader.last_index().0 - leader.commit_index().0;
        if in_flight < WINDOW_BATCHES * BATCH as u64 && proposed < ENTRIES_TOTAL {
            let batch = std::iter::repeat_n(payload.clone(), BATCH);
            if leader.propose_batch(batch).is_err() {
                panic!("node 1 lost leadership during the benchmark");
            }
            proposed += BATCH as u64;
        }
        // A microsecond per round: far from any timer, so no heartbeats or
        // elections disturb the measurement.
        c.now = c.now.plus_us(1);
        c.pump();
    }
    let secs = started.elapsed().as_secs_f64();
    let committed = c.applied - start_index;
    let last = c.cores.iter().map(|x| x.commit_index()).min().unwrap_or(LogIndex(0));
    println!(
        "core: {} nodes, {}-byte entries, batches of {}, window {} batches: {} entries committed in {:.3} s = {:.0} entries/s (slowest node commit {})",
        NODES,
        PAYLOAD_BYTES,
        BATCH,
        WINDOW_BATCHES,
        committed,
        secs,
        committed as f64 / secs,
        last
    );
}
