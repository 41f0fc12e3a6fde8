//! Moving the scenario cluster forward: `stabilize` (deliver, persist, apply
//! until quiet, without time passing) and `advance`/`run` (time passes on
//! every clock, each timer firing in time order).

use ringraft::core::{NodeId, Role};

use super::cluster::Cluster;

/// Rounds after which `stabilize` gives up (a livelock is a finding).
const STABILIZE_ROUNDS_MAX: usize = 200;

impl Cluster {
    /// Delivers every message in flight, then persists every pending write,
    /// then applies everything committed, and repeats until nothing is left.
    /// The network is faster than the disks: a round first empties the wire.
    pub fn stabilize(&mut self) {
        for _ in 0..STABILIZE_ROUNDS_MAX {
            let mut busy = false;
            for id in self.live_ids() {
                busy |= self.process_ready(id);
            }
            if !self.net.is_empty() {
                let msgs = std::mem::take(&mut self.net);
                self.deliver(msgs);
                continue;
            }
            for id in self.live_ids() {
                if self.has_writes(id) {
                    self.persist(id, None);
                    busy = true;
                }
            }
            if busy {
                continue;
            }
            for id in self.live_ids() {
                if self.has_applies(id) {
                    self.apply(id);
                    busy = true;
                }
            }
            if !busy {
                return;
            }
        }
        self.print(format!("stabilize: still busy after {STABILIZE_ROUNDS_MAX} rounds"));
    }

    /// Moves every clock forward by `ms`, firing each node's timers when its
    /// deadline comes (earliest first). With `settle`, the cluster stabilizes
    /// after each firing (an instant network and disk); without, messages
    /// wait on the wire.
    pub fn advance(&mut self, ms: u64, settle: bool) {
        let mut left = ms * 1000;
        let mut fired_at_same_time = 0;
        loop {
            let step = self.time_to_next_deadline().min(left);
            for node in self.nodes.values_mut() {
                node.clock = node.clock.plus_us(step);
            }
            left -= step;
            let due = self.due_nodes();
            if due.is_empty() {
                if left == 0 {
                    return;
                }
                continue;
            }
            fired_at_same_time = if step == 0 { fired_at_same_time + 1 } else { 0 };
            if fired_at_same_time > 100 {
                self.print(format!("BUG: timers of {due:?} fire again and again without time passing"));
                return;
            }
            for id in due {
                self.tick(id);
            }
            if settle {
                self.stabilize();
            }
        }
    }

    fn time_to_next_deadline(&self) -> u64 {
        self.nodes
            .values()
            .filter_map(|n| n.core.as_ref().map(|c| c.next_deadline().as_micros().saturating_sub(n.clock.as_micros())))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn due_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.core.as_ref().is_some_and(|c| c.next_deadline() <= n.clock))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Moves the clock of `id` alone forward by `ms` and ticks it once.
    pub fn tick_node(&mut self, id: NodeId, ms: u64) {
        let node = self.nodes.get_mut(&id).expect("node checked by caller");
        node.clock = node.clock.plus_ms(ms);
        self.tick(id);
    }

    /// Fires the election timer of `id`: its clock jumps to the deadline.
    pub fn campaign(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node checked by caller");
        let Some(core) = node.core.as_ref() else {
            self.print(format!("{id} is down"));
            return;
        };
        if core.role() == Role::Leader {
            self.print(format!("{id} leads: it has no election timer"));
            return;
        }
        node.clock = node.clock.max(core.next_deadline());
        self.tick(id);
    }
}
