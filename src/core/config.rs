//! Knobs of one Raft group's core, with their defaults and validation.
//!
//! Every limit is explicit and named with its unit. The relation between the
//! election timeout, the lease and the clock-drift bound is stated here once:
//!
//! * a follower refuses votes for `election_timeout_min_ms` (on its clock)
//!   after it last heard from a leader;
//! * a leader serves lease reads for `election_timeout_min_ms -
//!   lease_drift_ms` (on its clock) from the *send* time of a heartbeat round
//!   a quorum acknowledged.
//!
//! With clock rates within `±ρ` of real time the lease is safe while
//! `(E - D) / (1 - ρ) <= E / (1 + ρ)`, i.e. `D >= 2ρE / (1 + ρ)`. The default
//! `D = E / 10` tolerates `ρ` up to 5 %.

use super::types::{GroupId, NodeId};

/// Deliberate bugs the simulator must catch (feature `sim-mutants`).
#[cfg(feature = "sim-mutants")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// Commit an entry of a previous term by counting its replicas.
    CommitPrevTerm,
    /// Grant a second vote in a term that already has one.
    DoubleVote,
    /// Grant votes without the log up-to-date check.
    SkipUpToDate,
    /// Acknowledge appended entries before they are persisted.
    AckBeforePersist,
    /// Keep serving lease reads after sending TimeoutNow.
    LeaseAfterTimeoutNow,
    /// Hold the lease for 1.5 election timeouts instead of
    /// `election_timeout_min - lease_drift`.
    LeaseTooLong,
    /// Resume a half-received snapshot from a sender whose content
    /// checksum differs (same meta, other bytes).
    ResumeOtherContent,
    /// Make any node a voter, learner or not, caught up or not.
    PromoteUnchecked,
    /// Start follower read contexts from 0 at every start, whatever the
    /// incarnation (defect 02: an answer the leader sent an earlier life
    /// matches a new read). Caught by the node simulator, whose processes
    /// have clocks that start at 0.
    ReadCtxFromZero,
    /// Take a persist report of a write older than the latest truncation
    /// (defect 04: a follower acknowledges an entry replaced in flight).
    /// Caught by the node simulator's drill (three leaderships over one
    /// stalled follower write).
    PersistAckAba,
}

#[cfg(feature = "sim-mutants")]
impl Mutant {
    /// Every mutant, for listings and loops.
    pub const ALL: [Mutant; 10] = [
        Mutant::CommitPrevTerm,
        Mutant::DoubleVote,
        Mutant::SkipUpToDate,
        Mutant::AckBeforePersist,
        Mutant::LeaseAfterTimeoutNow,
        Mutant::LeaseTooLong,
        Mutant::ResumeOtherContent,
        Mutant::PromoteUnchecked,
        Mutant::ReadCtxFromZero,
        Mutant::PersistAckAba,
    ];

    /// The mutant's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::CommitPrevTerm => "commit-prev-term",
            Mutant::DoubleVote => "double-vote",
            Mutant::SkipUpToDate => "skip-up-to-date",
            Mutant::AckBeforePersist => "ack-before-persist",
            Mutant::LeaseAfterTimeoutNow => "lease-after-timeout-now",
            Mutant::LeaseTooLong => "lease-too-long",
            Mutant::ResumeOtherContent => "resume-other-content",
            Mutant::PromoteUnchecked => "promote-unchecked",
            Mutant::ReadCtxFromZero => "read-ctx-from-zero",
            Mutant::PersistAckAba => "persist-ack-aba",
        }
    }

    /// The mutant called `name`, if any.
    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Configuration of one group's core on one node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The group this core runs.
    pub group: GroupId,
    /// Lower bound of the randomized election timeout; also the time a
    /// follower refuses votes after hearing from a leader, and the
    /// check-quorum period.
    pub election_timeout_min_ms: u64,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_timeout_max_ms: u64,
    /// Interval between heartbeat rounds of a leader.
    pub heartbeat_interval_ms: u64,
    /// Clock-drift allowance subtracted from the election timeout to give
    /// the lease (see the module docs).
    pub lease_drift_ms: u64,
    /// Run a pre-vote round before a real election.
    pub pre_vote: bool,
    /// A leader steps down when a quorum has not answered within an election
    /// timeout.
    pub check_quorum: bool,
    /// Most entries in one AppendEntries message.
    pub append_entries_max: usize,
    /// Most payload bytes in one AppendEntries message (at least one entry is
    /// always sent).
    pub append_bytes_max: usize,
    /// Most AppendEntries messages in flight to one peer (pipelining window).
    pub inflight_msgs_max: usize,
    /// Entries kept behind a snapshot when the log is compacted, so a slightly
    /// lagging follower catches up from the log rather than by snapshot.
    pub snapshot_trailing_entries: u64,
    /// Seed of the core's RNG (election jitter). Drivers mix in the node id.
    pub seed: u64,
    /// Refuse a membership change that makes a node a voter unless it is a
    /// caught-up learner ([`RaftCore::voter_ready`](crate::core::RaftCore::voter_ready)).
    /// On by default; the simulator turns it off for some seeds to drive
    /// arbitrary changes through joint consensus.
    pub check_new_voters: bool,
    /// The deliberate bug to enable, if any.
    #[cfg(feature = "sim-mutants")]
    pub mutant: Option<Mutant>,
}

impl Config {
    /// Defaults suitable for a LAN cluster: 1–2 s elections, 100 ms heartbeats.
    pub fn new(id: NodeId, group: GroupId) -> Config {
        Config {
            id,
            group,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            heartbeat_interval_ms: 100,
            lease_drift_ms: 100,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 1024,
            append_bytes_max: 1 << 20,
            inflight_msgs_max: 256,
            snapshot_trailing_entries: 1024,
            seed: 0x5eed,
            check_new_voters: true,
            #[cfg(feature = "sim-mutants")]
            mutant: None,
        }
    }

    /// The lease a leader holds after a confirmed heartbeat round.
    pub fn lease_ms(&self) -> u64 {
        if self.mutant_is("lease-too-long") {
            return self.election_timeout_min_ms * 3 / 2;
        }
        self.election_timeout_min_ms.saturating_sub(self.lease_drift_ms)
    }

    /// Checks the relations between the knobs.
    ///
    /// # Errors
    /// A sentence naming the knob that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !self.id.is_some() {
            return Err("node id must be non-zero".into());
        }
        if self.heartbeat_interval_ms == 0 {
            return Err("heartbeat_interval_ms must be > 0".into());
        }
        if self.election_timeout_min_ms < 2 * self.heartbeat_interval_ms {
            return Err(format!(
                "election_timeout_min_ms ({}) must be at least twice heartbeat_interval_ms ({})",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(format!(
                "election_timeout_max_ms ({}) must exceed election_timeout_min_ms ({})",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            ));
        }
        if self.lease_drift_ms >= self.election_timeout_min_ms {
            return Err("lease_drift_ms must be below election_timeout_min_ms".into());
        }
        if self.append_entries_max == 0 || self.append_bytes_max == 0 || self.inflight_msgs_max == 0 {
            return Err("append_entries_max, append_bytes_max and inflight_msgs_max must be > 0".into());
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn mutant_is(&self, _m: &'static str) -> bool {
        #[cfg(feature = "sim-mutants")]
        {
            self.mutant.map(|m| m.name() == _m).unwrap_or(false)
        }
        #[cfg(not(feature = "sim-mutants"))]
        {
            false
        }
    }
}
