//! The invariants, checked incrementally after every step.
//!
//! Global knowledge is kept in maps keyed by index or (index, term), so the
//! cost of a check depends on what the step changed, never on the length of
//! the log:
//!
//! * `leaders`: term → leader (at most one leader per term);
//! * `entries`: (index, term) → chain hash of every entry that left its
//!   leader or became durable (log matching: same index and term means the
//!   same prefix);
//! * `committed`: index → chain hash of every index committed anywhere
//!   (committed entries never differ), and per term the highest index its
//!   leader committed (a new leader holds what earlier terms committed);
//! * `applied`: index → (term, chain, proposal id) of the first node that
//!   applied it (state-machine safety; snapshot restores continue the same
//!   chain; no proposal is applied twice).
//!
//! The durable-quorum check (a leader's commit index is held durably by a
//! quorum) needs every node's disk, so the world computes it and reports it
//! here.

use std::collections::BTreeMap;

use super::mirror::Mirror;
use super::rng::FastMap;

/// A broken invariant: which one, and the numbers that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Short name of the invariant.
    pub kind: &'static str,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `kind`.
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Violation {
        Violation { kind, detail: detail.into() }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// The result of a check.
pub type Check = Result<(), Violation>;

/// What the first node to apply an index applied there.
#[derive(Clone, Copy, Debug)]
struct Applied {
    term: u64,
    chain: u64,
    /// Proposal id, 0 for a no-op or configuration entry.
    pid: u64,
}

/// Global knowledge of a run.
#[derive(Debug)]
pub struct Checker {
    leaders: FastMap<u64, u64>,
    entries: FastMap<(u64, u64), u64>,
    /// `committed[i]`: chain hash at committed index `i` (`[0]` is the empty
    /// prefix).
    committed: Vec<u64>,
    applied: Vec<Applied>,
    payload_at: FastMap<u64, u64>,
    /// The highest commit index any leader reached.
    pub leader_commit_max: u64,
    /// Per term, the highest index a leader of that term committed.
    commit_by_term: BTreeMap<u64, u64>,
    /// Acknowledged proposals: (proposal id, index).
    pub acked: Vec<(u64, u64)>,
    /// The highest acknowledged index.
    pub max_acked: u64,
    /// Distinct (term, leader) pairs seen.
    pub elections: u64,
}

impl Checker {
    /// Knowledge of a group that starts with an empty log.
    pub fn new() -> Checker {
        Checker {
            leaders: FastMap::default(),
            entries: FastMap::default(),
            committed: vec![super::model::CHAIN_ZERO],
            applied: vec![Applied { term: 0, chain: super::model::CHAIN_ZERO, pid: 0 }],
            payload_at: FastMap::default(),
            leader_commit_max: 0,
            commit_by_term: BTreeMap::new(),
            acked: Vec::new(),
            max_acked: 0,
            elections: 0,
        }
    }

    /// The highest index committed anywhere.
    pub fn commit_max(&self) -> u64 {
        self.committed.len() as u64 - 1
    }

    /// Node `id` leads `term`: at most one leader per term, and the new
    /// leader's log (`mirror`) holds every entry committed in an earlier
    /// term (Raft's Leader Completeness). Entries committed in later terms
    /// are not required: a candidate of an old term can still win it when a
    /// delayed vote arrives after a later leader committed more (seen with
    /// seed 111515 at 20000 steps); it can no longer commit anything.
    pub fn on_leader(&mut self, id: u64, term: u64, mirror: &Mirror) -> Check {
        match self.leaders.get(&term) {
            Some(&other) if other != id => {
                return Err(Violation::new("election-safety", format!("n{id} and n{other} both lead term {term}")));
            }
            Some(_) => return Ok(()),
            None => {
                self.leaders.insert(term, id);
                self.elections += 1;
            }
        }
        let g = self.commit_by_term.range(..term).map(|(_, i)| *i).max().unwrap_or(0);
        if g > mirror.last_index() {
            return Err(Violation::new(
                "leader-completeness",
                format!("n{id} leads term {term} with last index {} < committed index {g}", mirror.last_index()),
            ));
        }
        if g >= mirror.offset() {
            let (t, chain) = mirror.at(g).unwrap_or_default();
            if chain != self.committed[g as usize] {
                return Err(Violation::new(
                    "leader-completeness",
                    format!("n{id} leads term {term} but its entry at committed index {g} (term {t}) differs"),
                ));
            }
        }
        Ok(())
    }

    /// Node `id` holds entry (index, term) with chain hash `chain` in its log.
    ///
    /// With `record` the entry becomes known (it left its leader, or it is
    /// durable); without, it is only checked. A leader's own fresh entries
    /// are only checked: an entry that never left a crashed leader and was
    /// never durable did not exist for anyone else.
    #[inline]
    pub fn on_log_entry(&mut self, id: u64, index: u64, term: u64, chain: u64, record: bool) -> Check {
        match self.entries.get(&(index, term)) {
            Some(&c) if c != chain => Err(Violation::new(
                "log-matching",
                format!("n{id} holds ({index}, term {term}) with a prefix that differs from another node's"),
            )),
            Some(_) => Ok(()),
            None => {
                if record {
                    self.entries.insert((index, term), chain);
                }
                Ok(())
            }
        }
    }

    /// A leader advanced its commit index to `to` (recorded when it
    /// happens, before any message can carry it).
    pub fn on_leader_commit(&mut self, to: u64) {
        self.leader_commit_max = self.leader_commit_max.max(to);
    }

    /// Node `id`'s commit index advanced from `from` to `to` in `term`
    /// (checked once its log mirror holds the entries); `as_leader` when it
    /// advanced it as leader. Entries committed anywhere never differ, and a
    /// follower never runs ahead of every leader.
    pub fn on_commit(&mut self, id: u64, term: u64, from: u64, to: u64, as_leader: bool, mirror: &Mirror) -> Check {
        if as_leader {
            let by_term = self.commit_by_term.entry(term).or_insert(0);
            *by_term = (*by_term).max(to);
        } else if to > self.leader_commit_max {
            return Err(Violation::new(
                "commit-ahead",
                format!("follower n{id} commits {to}, beyond any leader's commit {}", self.leader_commit_max),
            ));
        }
        for i in (from + 1).max(mirror.offset())..=to {
            let Some((term, chain)) = mirror.at(i) else {
                return Err(Violation::new("commit-beyond-log", format!("n{id} commits {i} it does not hold")));
            };
            let len = self.committed.len() as u64;
            if i < len {
                if self.committed[i as usize] != chain {
                    return Err(Violation::new(
                        "commit-safety",
                        format!("n{id} commits ({i}, term {term}) but a different entry was committed there"),
                    ));
                }
            } else if i == len {
                self.committed.push(chain);
            } else {
                return Err(Violation::new(
                    "commit-gap",
                    format!("n{id} commits {i} but nothing is known committed after {}", len - 1),
                ));
            }
        }
        Ok(())
    }

    /// Node `id` applied (index, term) reaching chain hash `chain`; `pid` is
    /// the proposal id the entry carries (0 for none). Returns whether this
    /// node is the first to apply the index.
    pub fn on_apply(&mut self, id: u64, index: u64, term: u64, chain: u64, pid: u64) -> Result<bool, Violation> {
        let len = self.applied.len() as u64;
        if index < len {
            let a = self.applied[index as usize];
            if a.term != term || a.chain != chain {
                return Err(Violation::new(
                    "state-machine-safety",
                    format!(
                        "n{id} applied ({index}, term {term}) but another node applied (term {}) with a different \
                         chain there",
                        a.term
                    ),
                ));
            }
            return Ok(false);
        }
        if index > len {
            return Err(Violation::new(
                "apply-gap",
                format!("n{id} applied {index} but nothing is known applied after {}", len - 1),
            ));
        }
        if pid != 0 {
            if let Some(prev) = self.payload_at.insert(pid, index) {
                return Err(Violation::new(
                    "duplicate-apply",
                    format!("proposal {pid} applied at {prev} and again at {index}"),
                ));
            }
        }
        self.applied.push(Applied { term, chain, pid });
        Ok(true)
    }

    /// Node `id` restored a snapshot at (index, term) with chain hash `chain`:
    /// it must continue the chain every node applied.
    pub fn on_restore(&self, id: u64, index: u64, term: u64, chain: u64) -> Check {
        match self.applied.get(index as usize) {
            Some(a) if a.term == term && a.chain == chain => Ok(()),
            Some(a) => Err(Violation::new(
                "snapshot-safety",
                format!("n{id} restored ({index}, term {term}) but the applied entry there has term {}", a.term),
            )),
            None => Err(Violation::new(
                "snapshot-safety",
                format!("n{id} restored a snapshot at {index}, beyond anything applied"),
            )),
        }
    }

    /// A proposal was acknowledged at `index`.
    pub fn on_ack(&mut self, pid: u64, index: u64) {
        self.acked.push((pid, index));
        self.max_acked = self.max_acked.max(index);
    }

    /// At the end: every acknowledged proposal is in the applied sequence,
    /// exactly once, at its index.
    pub fn final_check(&self) -> Check {
        for &(pid, index) in &self.acked {
            let at = self.payload_at.get(&pid).copied();
            let there = self.applied.get(index as usize).map(|a| a.pid);
            if at != Some(index) || there != Some(pid) {
                return Err(Violation::new(
                    "lost-ack",
                    format!("acknowledged proposal {pid} at {index}: applied at {at:?}, index holds {there:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for Checker {
    fn default() -> Checker {
        Checker::new()
    }
}
