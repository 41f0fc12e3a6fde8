//! The per-node checks, in two halves.
//!
//! [`World::observe`] runs right after every input to a core (message,
//! tick, persistence, apply, client call): it sees the commit index move at
//! the instant it moves, so a leader's commit is checked against the
//! durable copies and the configuration of that instant (commit never ahead
//! of a durable quorum, commitment rule), even when the driver batches
//! several inputs into one `Ready`. [`World::check_node`] runs when the
//! `Ready` has been carried out and the log mirror is up to date: log
//! mirror in step with the core, election safety and leader completeness,
//! committed entries identical everywhere.

use ringraft::core::{LogIndex, NodeId, Role};

use super::checker::{Check, Violation};
use super::mirror::SeenCommit;
use super::trace::Ev;
use super::world::World;

impl World {
    /// Checks right after an input to node `n`'s core.
    pub(crate) fn observe(&mut self, n: usize) -> Check {
        let node = &mut self.nodes[n];
        let Some(core) = node.core.as_ref() else { return Ok(()) };
        let (role, term, commit) = (core.role(), core.term().0, core.commit_index().0);
        let id = node.id.0;
        let was = node.observed;
        node.observed = (role, term);
        if role == Role::Leader {
            node.lead_unchecked = node.lead_unchecked.max(term);
        }
        let from = node.observed_commit;
        if commit < from {
            return Err(Violation::new("commit-monotone", format!("n{id} commit went from {from} back to {commit}")));
        }
        if commit == from {
            return Ok(());
        }
        node.observed_commit = commit;
        // A leader removed by the configuration it just committed steps down
        // in the same input: its advance is still a leader's.
        let as_leader = role == Role::Leader || (was.0 == Role::Leader && was.1 == term);
        node.seen_commits.push(SeenCommit { term, to: commit, as_leader });
        if !as_leader {
            return Ok(());
        }
        self.checker.on_leader_commit(commit);
        // Raft's commitment rule (§5.4.2): a leader commits by counting
        // replicas only an entry of its own term. Breaking it is unsafe only
        // when a later leader lacks the entry (the "Figure 8" overwrite, also
        // checked end to end by leader completeness), a chain of four
        // elections the nemesis reaches in about one seed in a thousand; the
        // rule itself is checked every time.
        let entry_term = core.term_at(LogIndex(commit)).map(|t| t.0).unwrap_or(0);
        if entry_term != term {
            return Err(Violation::new(
                "commit-rule",
                format!("leader n{id} of term {term} commits index {commit} of term {entry_term} by counting replicas"),
            ));
        }
        self.check_durable_quorum(n, commit, entry_term)
    }

    /// A leader's new commit index must be held durably (same index, same
    /// term: log matching makes it the same entry) by a quorum of its
    /// configuration, at the moment it commits.
    fn check_durable_quorum(&self, n: usize, index: u64, term: u64) -> Check {
        let node = &self.nodes[n];
        let Some(core) = node.core.as_ref() else { return Ok(()) };
        let holds = |v: NodeId| self.index_of(v).is_some_and(|i| self.nodes[i].disk.durable.holds_term(index, term));
        let m = core.membership();
        if m.has_quorum(holds) {
            return Ok(());
        }
        let voters: Vec<u64> = m.all_voters().iter().map(|v| v.0).collect();
        let holders: Vec<u64> = m.all_voters().into_iter().filter(|v| holds(*v)).map(|v| v.0).collect();
        Err(Violation::new(
            "commit-durability",
            format!(
                "n{} commits ({index}, term {term}) but only {holders:?} of voters {voters:?} hold it durably",
                node.id
            ),
        ))
    }

    /// Checks once node `n`'s `Ready` is carried out.
    pub(crate) fn check_node(&mut self, n: usize) -> Check {
        let node = &self.nodes[n];
        let Some(core) = node.core.as_ref() else { return Ok(()) };
        let id = node.id.0;
        let (last, offset) = (core.last_index().0, core.first_index().0 - 1);
        let mirror_last_term = node.mirror.at(last).map(|(t, _)| t);
        if last != node.mirror.last_index()
            || offset != node.mirror.offset()
            || mirror_last_term != core.term_at(LogIndex(last)).map(|t| t.0)
        {
            return Err(Violation::new(
                "log-ops",
                format!(
                    "n{id}: core log ({offset}, {last}] but its log ops describe ({}, {}]",
                    node.mirror.offset(),
                    node.mirror.last_index()
                ),
            ));
        }
        let soft = (core.role(), core.term().0, core.leader().0);
        let was = node.last_soft;
        if soft != was {
            let role = match soft.0 {
                Role::Follower => "follower",
                Role::PreCandidate => "pre-candidate",
                Role::Candidate => "candidate",
                Role::Leader => "LEADER",
            };
            self.trace.record(self.now, Ev::Role { node: id, role, term: soft.1, leader: soft.2 });
        }
        // Leadership counts once its term is durable: a sole voter that
        // elects itself and crashes before its term reaches the disk has
        // led nothing anyone saw (persist-before-send checks it sent
        // nothing), and may legitimately vote for another in that term.
        let lead = node.lead_unchecked;
        if lead > node.led_term && node.disk.durable.hard_state.term.0 >= lead {
            self.checker.on_leader(id, lead, &node.mirror)?;
            self.nodes[n].led_term = lead;
        }
        let first_commit = self.check_commits(n)?;
        let node = &mut self.nodes[n];
        node.last_soft = soft;
        if soft.0 == Role::Leader && was.0 != Role::Leader {
            self.on_new_leader(n, false);
        } else if first_commit && soft.0 == Role::Leader {
            self.on_new_leader(n, true);
        }
        Ok(())
    }

    /// Checks the commit advances `observe` saw against the mirror: every
    /// committed entry is the same everywhere. Returns whether one was the
    /// node's first commit as leader of its term.
    fn check_commits(&mut self, n: usize) -> Result<bool, Violation> {
        let seen = std::mem::take(&mut self.nodes[n].seen_commits);
        let mut first_commit = false;
        for c in seen {
            let node = &self.nodes[n];
            let id = node.id.0;
            let from = node.commit_seen;
            self.checker.on_commit(id, c.term, from, c.to, c.as_leader, &node.mirror)?;
            self.trace.record(self.now, Ev::Commit { node: id, index: c.to });
            let node = &mut self.nodes[n];
            node.commit_seen = c.to;
            if c.as_leader && node.commit_term != c.term {
                node.commit_term = c.term;
                first_commit = true;
            }
        }
        Ok(first_commit)
    }
}
