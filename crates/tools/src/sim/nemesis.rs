//! The nemesis: a seeded schedule of faults and disruptive operations.
//!
//! At random intervals it picks an [`Action`] by the seed's weights:
//! partitions (symmetric, one-way, isolating the leader), crashes (some
//! tearing the write in progress), slow disks, leader transfers (sometimes
//! followed by cutting the old leader off, the situation where a lease read
//! after TimeoutNow would go stale) and membership changes among the fixed
//! universe of node ids. Snapshots run on their own timer. Every fault is
//! counted in `Stats`.

use std::collections::BTreeSet;

use ringraft::core::{ConfChange, LogIndex, NodeId};

use super::checker::{Check, Violation};
use super::disk::StoredSnapshot;
use super::stats::FaultKind;
use super::trace::Ev;
use super::world::{EventKind, World};

/// What the nemesis can do, in `NemesisWeights::as_array` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Split the nodes into two groups.
    Partition,
    /// Cut a few links one way.
    AsymPartition,
    /// Cut the leader off from everyone.
    IsolateLeader,
    /// Reconnect everything now.
    Heal,
    /// Crash a node.
    Crash,
    /// Make a node's disk slow.
    SlowDisk,
    /// Move leadership.
    Transfer,
    /// Change the membership.
    ConfChange,
}

const ACTIONS: [Action; 8] = [
    Action::Partition,
    Action::AsymPartition,
    Action::IsolateLeader,
    Action::Heal,
    Action::Crash,
    Action::SlowDisk,
    Action::Transfer,
    Action::ConfChange,
];

impl World {
    fn fault_duration(&mut self) -> u64 {
        self.rng_nemesis.range(20_000, self.k.fault_duration_max_us)
    }

    fn random_up_node(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].up()).collect();
        (!up.is_empty()).then(|| up[self.rng_nemesis.index(up.len())])
    }

    /// The nemesis' turn.
    pub(crate) fn on_nemesis(&mut self) -> Check {
        if self.healing {
            return Ok(());
        }
        let mean = self.k.nemesis_interval_us;
        let next = self.now + self.rng_nemesis.range(mean / 2, mean + mean / 2);
        self.schedule(next, EventKind::Nemesis);
        let weights = self.k.weights.as_array();
        if weights.iter().all(|w| *w == 0) {
            return Ok(());
        }
        match ACTIONS[self.rng_nemesis.weighted(&weights)] {
            Action::Partition => {
                let n = self.nodes.len();
                let side = self.rng_nemesis.range(1, (1u64 << n) - 2);
                self.net.split(side);
                self.stats.fault(FaultKind::Partition);
                self.trace.record(self.now, Ev::Fault { what: "partition (side mask)", a: side, b: 0 });
                self.heal_later();
                Ok(())
            }
            Action::AsymPartition => {
                let n = self.nodes.len();
                let cuts = self.rng_nemesis.range(1, 3);
                for _ in 0..cuts {
                    let from = self.rng_nemesis.index(n);
                    let to = (from + 1 + self.rng_nemesis.index(n - 1)) % n;
                    self.net.cut_one_way(from, to);
                    self.trace
                        .record(self.now, Ev::Fault { what: "cut one way", a: from as u64 + 1, b: to as u64 + 1 });
                }
                self.net.generation += 1;
                self.stats.fault(FaultKind::AsymPartition);
                self.heal_later();
                Ok(())
            }
            Action::IsolateLeader => match self.leader() {
                Some(l) => self.isolate(l, FaultKind::IsolateLeader),
                None => Ok(()),
            },
            Action::Heal => {
                self.net.heal();
                self.trace.record(self.now, Ev::Fault { what: "heal network", a: 0, b: 0 });
                Ok(())
            }
            Action::Crash => self.crash_one(),
            Action::SlowDisk => {
                let Some(n) = self.random_up_node() else { return Ok(()) };
                let until = self.now + self.fault_duration();
                self.nodes[n].slow_disk_until = until;
                self.stats.fault(FaultKind::SlowDisk);
                self.trace
                    .record(self.now, Ev::Fault { what: "slow disk until (ms)", a: n as u64 + 1, b: until / 1000 });
                Ok(())
            }
            Action::Transfer => self.transfer(),
            Action::ConfChange => self.conf_change(),
        }
    }

    /// Heals the network after a random duration, unless a later partition
    /// replaced this one.
    fn heal_later(&mut self) {
        let at = self.now + self.fault_duration();
        let generation = self.net.generation;
        self.schedule(at, EventKind::NetHeal { generation });
    }

    /// Cuts node `n` off from every other node, both ways, for a while.
    pub(crate) fn isolate(&mut self, n: usize, kind: FaultKind) -> Check {
        if self.healing {
            return Ok(());
        }
        self.net.split(1u64 << n);
        self.stats.fault(kind);
        self.trace.record(self.now, Ev::Fault { what: "isolate", a: n as u64 + 1, b: 0 });
        self.heal_later();
        Ok(())
    }

    fn crash_one(&mut self) -> Check {
        let target = match self.leader() {
            Some(l) if self.rng_nemesis.percent(40) => Some(l),
            _ => self.random_up_node(),
        };
        let Some(n) = target else { return Ok(()) };
        self.crash(n)
    }

    /// A new leader appeared (or made its first commit): sometimes crash
    /// it moments later, before its first entries reach everyone.
    /// Short-lived leaders leave logs that differ in their last terms, the
    /// ground of Raft's "Figure 8" (a leader must not commit an older term's
    /// entry by counting replicas); a leader killed right after its first
    /// commit tests that the commit survives it.
    pub(crate) fn on_new_leader(&mut self, n: usize, first_commit: bool) {
        if self.healing || !self.rng_nemesis.percent(self.k.leader_kill_percent) {
            return;
        }
        let within = if first_commit { 2_000 } else { 8_000 };
        let at = self.now + self.rng_nemesis.range(0, within);
        let inc = self.nodes[n].incarnation;
        self.schedule(at, EventKind::Crash { node: n, inc });
    }

    /// The timed crash of `on_new_leader`, unless the node already restarted.
    pub(crate) fn on_crash_event(&mut self, n: usize, inc: u64) -> Check {
        if self.healing || self.nodes[n].incarnation != inc || !self.nodes[n].up() {
            return Ok(());
        }
        self.crash(n)
    }

    /// Crashes node `n` now and schedules its restart.
    fn crash(&mut self, n: usize) -> Check {
        let torn = self.rng_nemesis.percent(self.k.torn_percent).then(|| self.rng_nemesis.next_u64());
        let survived = self.nodes[n].crash(torn).map_err(|e| Violation::new("storage", e))?;
        let was_torn = survived.is_some();
        let id = self.nodes[n].id.0;
        for (index, term, chain) in survived.unwrap_or_default() {
            self.checker.on_log_entry(id, index, term, chain, true)?;
        }
        self.stats.fault(FaultKind::Crash);
        if was_torn {
            self.stats.fault(FaultKind::TornWrite);
        }
        let what = if was_torn { "crash (torn write)" } else { "crash" };
        self.trace.record(self.now, Ev::Fault { what, a: n as u64 + 1, b: 0 });
        let at = self.now + self.rng_nemesis.range(1_000, self.k.down_max_us);
        let inc = self.nodes[n].incarnation;
        self.schedule(at, EventKind::Restart { node: n, inc });
        Ok(())
    }

    fn transfer(&mut self) -> Check {
        let Some(l) = self.leader() else { return Ok(()) };
        let Some(core) = self.nodes[l].core.as_ref() else { return Ok(()) };
        let me = core.id();
        let voters: Vec<NodeId> = core.membership().all_voters().into_iter().filter(|v| *v != me).collect();
        if voters.is_empty() {
            return Ok(());
        }
        let target = voters[self.rng_nemesis.index(voters.len())];
        let time = self.nodes[l].time(self.now);
        let ok = self.nodes[l].core.as_mut().is_some_and(|c| c.transfer_leader(time, target).is_ok());
        if ok {
            self.stats.fault(FaultKind::Transfer);
            self.trace.record(self.now, Ev::Fault { what: "transfer leader", a: me.0, b: target.0 });
            if self.rng_nemesis.percent(self.k.transfer_isolate_percent) {
                let at = self.now + self.rng_nemesis.range(0, 3_000);
                self.schedule(at, EventKind::Isolate { node: l });
            }
        }
        self.drive(l)
    }

    fn random_subset(&mut self, from: &[NodeId], size: usize) -> BTreeSet<NodeId> {
        let mut pool = from.to_vec();
        let mut out = BTreeSet::new();
        while out.len() < size && !pool.is_empty() {
            out.insert(pool.swap_remove(self.rng_nemesis.index(pool.len())));
        }
        out
    }

    fn conf_change(&mut self) -> Check {
        let Some(l) = self.leader() else { return Ok(()) };
        let Some(core) = self.nodes[l].core.as_ref() else { return Ok(()) };
        let m = core.membership().clone();
        let universe: Vec<NodeId> = self.k.node_ids().collect();
        let voters: Vec<NodeId> = m.voters.iter().copied().collect();
        let others: Vec<NodeId> = universe.iter().copied().filter(|id| !m.is_voter(*id)).collect();
        let change = match self.rng_nemesis.below(4) {
            0 if !others.is_empty() => ConfChange::AddVoter(others[self.rng_nemesis.index(others.len())]),
            // Keep at least two voters so a single crash does not stall the
            // group for the rest of the fault phase.
            1 if voters.len() > 2 => ConfChange::RemoveNode(voters[self.rng_nemesis.index(voters.len())]),
            2 => ConfChange::AddLearner(universe[self.rng_nemesis.index(universe.len())]),
            _ => {
                let size = if self.rng_nemesis.percent(60) { 3 } else { self.rng_nemesis.range(2, 5) as usize };
                let voters = self.random_subset(&universe, size);
                let rest: Vec<NodeId> = universe.iter().copied().filter(|id| !voters.contains(id)).collect();
                let count = self.rng_nemesis.index(3);
                let learners = self.random_subset(&rest, count);
                ConfChange::ChangePeers { voters, learners }
            }
        };
        let Some(core) = self.nodes[l].core.as_mut() else { return Ok(()) };
        if let Ok(index) = core.propose_conf_change(change.clone()) {
            // With the server's check on, every new voter was a learner
            // (mutant promote-unchecked); the lag rule is the core's own.
            if self.k.check_new_voters {
                for v in core.membership().voters.difference(&m.voters) {
                    if !m.learners.contains(v) {
                        return Err(Violation::new(
                            "voter-not-caught-up",
                            format!("n{l} made n{v} a voter at {index}; it was not a learner ({m:?})"),
                        ));
                    }
                }
            }
            self.stats.fault(FaultKind::ConfChange);
            let what = match change {
                ConfChange::AddVoter(_) => "conf change: add voter",
                ConfChange::RemoveNode(_) => "conf change: remove node",
                ConfChange::AddLearner(_) => "conf change: add learner",
                ConfChange::ChangePeers { .. } => "conf change: change peers (index, voter mask)",
            };
            let arg = match &change {
                ConfChange::AddVoter(id) | ConfChange::RemoveNode(id) | ConfChange::AddLearner(id) => id.0,
                ConfChange::ChangePeers { voters, .. } => voters.iter().fold(0, |m, v| m | 1 << v.0),
            };
            self.trace.record(self.now, Ev::Fault { what, a: index.0, b: arg });
        }
        self.drive(l)
    }

    /// Some node takes a snapshot of its state machine and compacts.
    pub(crate) fn on_snapshot_event(&mut self) -> Check {
        if self.healing {
            return Ok(());
        }
        let mean = self.k.snapshot_interval_us;
        let next = self.now + self.rng_nemesis.range(mean / 2, mean + mean / 2);
        self.schedule(next, EventKind::Snapshot);
        let Some(n) = self.random_up_node() else { return Ok(()) };
        let node = &mut self.nodes[n];
        let Some(core) = node.core.as_mut() else { return Ok(()) };
        let applied = node.model.applied;
        if applied <= core.snapshot_meta().last_index.0 {
            return Ok(());
        }
        // The bytes are written (durably, atomically) together with the meta
        // the core returns, before anything else happens on this node.
        let data = node.model.encode(self.k.snapshot_pad_bytes, node.id.0);
        let Ok(meta) = core.on_snapshot_created(LogIndex(applied)) else { return Ok(()) };
        let older =
            std::mem::replace(&mut node.disk.durable.snapshot, StoredSnapshot { meta, data, chain: node.model.chain });
        // Transfers of the older one go on with it (the service keeps it
        // open), a few at most.
        node.sending.push(older);
        if node.sending.len() > super::node::SENDING_KEPT {
            node.sending.remove(0);
        }
        self.stats.fault(FaultKind::Snapshot);
        self.trace.record(self.now, Ev::Fault { what: "snapshot", a: node.id.0, b: applied });
        self.drive(n)
    }
}
