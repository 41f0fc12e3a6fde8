//! Simulated clients: proposals with unique payloads and reads in every
//! mode, sent to whichever node they think leads (or any node).
//!
//! A proposal is acknowledged when the node that accepted it applies the
//! entry at the returned index and that entry carries the proposed payload
//! (driver.rs matches them at apply time); anything else leaves its fate
//! unknown. A read records the highest acknowledged index when it is issued;
//! its confirmed read index must not be lower.

use ringraft::core::{ReadId, ReadMode};

use super::checker::{Check, Violation};
use super::model::payload;
use super::trace::Ev;
use super::world::{EventKind, ReadRec, World};

impl World {
    /// Picks the node a client talks to: usually one that claims to lead,
    /// otherwise any node that is up.
    fn pick_target(&mut self) -> Option<usize> {
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].core.as_ref().is_some_and(|c| c.role() == ringraft::core::Role::Leader))
            .collect();
        if !leaders.is_empty() && self.rng_client.percent(self.k.to_leader_percent) {
            return Some(leaders[self.rng_client.index(leaders.len())]);
        }
        let up: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].up()).collect();
        (!up.is_empty()).then(|| up[self.rng_client.index(up.len())])
    }

    /// Interval to the next client action around `mean` (0.5x .. 1.5x).
    fn jitter(&mut self, mean: u64) -> u64 {
        self.rng_client.range(mean / 2, mean + mean / 2).max(1)
    }

    /// A client proposes a batch of unique payloads.
    pub(crate) fn on_propose(&mut self) -> Check {
        if self.healing {
            return Ok(());
        }
        let next = self.now + self.jitter(self.k.propose_interval_us);
        self.schedule(next, EventKind::Propose);
        let Some(n) = self.pick_target() else { return Ok(()) };
        let count = self.rng_client.range(1, self.k.propose_batch_max);
        let first_pid = self.next_pid;
        self.next_pid += count;
        let batch: Vec<_> = (first_pid..first_pid + count)
            .map(|pid| payload(pid, self.rng_client.range(8, self.k.payload_bytes_max) as usize))
            .collect();
        let node = &mut self.nodes[n];
        let Some(core) = node.core.as_mut() else { return Ok(()) };
        if core.last_index().0.saturating_sub(core.commit_index().0) > self.k.backlog_max {
            // Busy: a real node refuses work its pipeline cannot absorb.
            self.trace.record(self.now, Ev::Propose { node: node.id.0, first: 0, last: 0 });
            return Ok(());
        }
        let result = if count == 1 {
            let only = batch.into_iter().next().unwrap_or_default();
            core.propose(only).map(|i| (i, i))
        } else {
            core.propose_batch(batch)
        };
        let id = node.id.0;
        match result {
            Ok((first, last)) => {
                for (k, index) in (first.0..=last.0).enumerate() {
                    node.pending.insert(index, first_pid + k as u64);
                }
                self.stats.proposals += count;
                self.trace.record(self.now, Ev::Propose { node: id, first: first.0, last: last.0 });
            }
            Err(_) => self.trace.record(self.now, Ev::Propose { node: id, first: 0, last: 0 }),
        }
        self.drive(n)
    }

    /// A client issues a read (ReadIndex or lease; on a follower it becomes
    /// a follower read).
    pub(crate) fn on_read(&mut self) -> Check {
        if self.healing {
            return Ok(());
        }
        let next = self.now + self.jitter(self.k.read_interval_us);
        self.schedule(next, EventKind::Read);
        let Some(n) = self.pick_target() else { return Ok(()) };
        let (mode, name) =
            if self.rng_client.percent(50) { (ReadMode::Lease, "lease") } else { (ReadMode::ReadIndex, "index") };
        let id = self.next_read;
        self.next_read += 1;
        let floor = self.checker.max_acked;
        self.reads.insert(id, ReadRec { node: n, floor });
        let time = self.nodes[n].time(self.now);
        let node_id = self.nodes[n].id.0;
        if let Some(core) = self.nodes[n].core.as_mut() {
            if mode == ReadMode::Lease && core.lease_valid() {
                // Served from the lease (counted here: with batched readies
                // the answer comes out at a later flush).
                self.stats.reads_lease += 1;
            }
            core.read_index(time, ReadId(id), mode);
        }
        self.trace.record(self.now, Ev::Read { node: node_id, id, mode: name, floor });
        self.drive(n)
    }

    /// Checks confirmed reads against the floor recorded when they were
    /// issued.
    pub(crate) fn on_read_results(
        &mut self,
        n: usize,
        confirmed: &[ringraft::core::ReadState],
        failed: &[ReadId],
    ) -> Check {
        let id = self.nodes[n].id.0;
        for rs in confirmed {
            let Some(rec) = self.reads.remove(&rs.id.0) else {
                return Err(Violation::new("read", format!("n{id} confirmed read #{} nobody issued", rs.id.0)));
            };
            if rec.node != n {
                return Err(Violation::new(
                    "read",
                    format!("read #{} issued on n{} confirmed by n{id}", rs.id.0, rec.node + 1),
                ));
            }
            self.trace.record(self.now, Ev::ReadDone { node: id, id: rs.id.0, index: rs.index.0.max(1) });
            if rs.index.0 < rec.floor {
                return Err(Violation::new(
                    "stale-read",
                    format!(
                        "n{id} confirmed read #{} at index {} but index {} was acknowledged before it was issued",
                        rs.id.0, rs.index.0, rec.floor
                    ),
                ));
            }
            self.stats.reads_ok += 1;
            let leads = self.nodes[n].core.as_ref().is_some_and(|c| c.role() == ringraft::core::Role::Leader);
            if !leads {
                self.stats.reads_follower += 1;
            }
        }
        for rid in failed {
            self.reads.remove(&rid.0);
            self.stats.reads_failed += 1;
            self.trace.record(self.now, Ev::ReadDone { node: id, id: rid.0, index: 0 });
        }
        Ok(())
    }
}
