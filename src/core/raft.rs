//! `RaftCore`: the state of one group on one node, role transitions, timers
//! and the dispatch of inputs. The protocol itself lives beside it:
//! election.rs (votes), replication.rs (append, commit, persist),
//! read_index.rs (ReadIndex, lease, follower read; its bookkeeping is
//! read.rs), conf.rs (membership, transfer) and
//! snapshot.rs (install, compaction), each an `impl RaftCore` block.

use std::collections::BTreeMap;

use super::config::Config;
use super::log::RaftLog;
use super::membership::Membership;
use super::message::{Entry, HardState, Message, MessageBody, SnapshotMeta};
use super::progress::Progress;
use super::read::ReadState as Reads;
use super::ready::{LogOp, Ready, Role, SoftState};
use super::types::{LogIndex, NodeId, Term, Time};

/// A leader transfer in progress.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    pub target: NodeId,
    pub deadline: Time,
    pub timeout_now_sent: bool,
}

/// What a node recovers from storage when it starts.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The durable vote state.
    pub hard_state: HardState,
    /// The latest snapshot (the default meta for none); for a node
    /// bootstrapping a new group, a meta at index 0 naming the initial voters.
    pub snapshot: SnapshotMeta,
    /// Log entries after the snapshot, consecutive.
    pub entries: Vec<Entry>,
    /// The index the state machine has durably applied (0 if unknown).
    pub applied: LogIndex,
    /// A number that differs between incarnations of this node: the node
    /// runtime draws a random one at every start. Follower read context
    /// ids start from it plus the start time, so an answer the leader
    /// sent to an earlier incarnation never matches a new read (defect
    /// 02). 0 leaves the start time alone, which is enough only where one
    /// clock runs across restarts (the simulator).
    pub epoch: u64,
}

impl Recovered {
    /// The starting point of a brand-new group with these voters.
    pub fn bootstrap(voters: impl IntoIterator<Item = NodeId>) -> Recovered {
        Recovered {
            snapshot: SnapshotMeta { membership: Membership::new(voters), ..SnapshotMeta::default() },
            ..Recovered::default()
        }
    }
}

/// The sans-IO Raft state machine of one group on one node.
///
/// Feed it inputs (`step`, `tick`, `propose`, `on_persisted`, `on_applied`,
/// `read_index`, ...), then call `take_ready` and carry out what it says.
pub struct RaftCore {
    pub(crate) cfg: Config,
    /// splitmix64 state for election jitter.
    rng: u64,
    /// The driver's clock as of the latest input; never decreases.
    pub(crate) now: Time,

    // --- durable vote state -------------------------------------------
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    /// `term`/`vote` changed since the last ready.
    pub(crate) hard_state_dirty: bool,
    /// This node leads a term whose hard state may not be durable yet: it
    /// won without waiting for any vote (it alone is a quorum), so nothing
    /// ordered its sends after the write of its term. Until an entry of the
    /// term is persisted (the hard state was written in that job or before),
    /// every message waits in `persisted_messages`. Found by the simulator
    /// (seed 1959): a sole voter elected itself, sent term-2 entries to
    /// learners, crashed before its hard state was durable, restarted in
    /// term 1, won term 2 again and wrote different entries at the same
    /// (index, term): the learners kept the old ones (log matching broken).
    pub(crate) term_unsynced: bool,

    // --- log and membership -------------------------------------------
    pub(crate) log: RaftLog,
    /// The membership in force at the log offset (from the snapshot).
    pub(crate) conf_base: (LogIndex, Membership),
    /// Configuration entries after the offset, in log order.
    pub(crate) conf_log: Vec<(LogIndex, Membership)>,
    /// The latest local snapshot.
    pub(crate) snapshot: SnapshotMeta,

    // --- role -----------------------------------------------------------
    pub(crate) role: Role,
    pub(crate) leader: NodeId,
    /// When to start an election (followers and candidates).
    pub(crate) election_deadline: Time,
    /// The last time this node heard from a live leader of its term (or its
    /// start time): votes are refused for an election timeout after it.
    pub(crate) leader_contact: Time,
    /// Answers to this node's (pre-)vote requests.
    pub(crate) votes: BTreeMap<NodeId, bool>,

    // --- leader -----------------------------------------------------------
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) heartbeat_deadline: Time,
    pub(crate) check_quorum_deadline: Time,
    /// An entry of the current term is committed (reads may be served).
    pub(crate) committed_in_term: bool,
    pub(crate) transfer: Option<Transfer>,
    /// The commit index at the last check-quorum tick of this leader.
    pub(crate) commit_mark: LogIndex,
    /// Entries committed between the last two check-quorum ticks (about
    /// an election timeout): how far a new voter may lag.
    pub(crate) committed_per_timeout: u64,
    /// Proposals were appended and must be broadcast at the next ready.
    pub(crate) broadcast_pending: bool,
    pub(crate) reads: Reads,

    // --- follower ---------------------------------------------------------
    /// Highest index known to match the current leader's log.
    pub(crate) leader_match: LogIndex,
    /// Highest index acknowledged to the current leader.
    pub(crate) acked: LogIndex,
    /// A snapshot being received: its meta, its content checksum and the
    /// next expected offset.
    pub(crate) receiving: Option<(SnapshotMeta, u64, u64)>,
    /// Older snapshots still being sent to some peer (a transfer keeps the
    /// snapshot it started with; `snapshot` is the newest).
    pub(crate) snapshots_in_transfer: Vec<SnapshotMeta>,

    /// The driver reported that its disk refuses writes: a leader steps
    /// down and nobody campaigns until the disk is reported healthy again,
    /// so that the cluster elects a node that can persist.
    pub(crate) storage_failed: bool,
    /// The driver's apply stage is backed up: committed entries stay in the
    /// log (not in `Ready`) until it asks for them again.
    apply_paused: bool,

    pub(crate) ready: Ready,
    last_soft: SoftState,
}

impl RaftCore {
    /// Starts a core from what storage recovered, at time `now`.
    ///
    /// # Panics
    /// If the configuration is invalid (call `Config::validate` first to get
    /// the reason as an error) or the recovered entries do not follow the
    /// snapshot.
    pub fn new(cfg: Config, recovered: Recovered, now: Time) -> RaftCore {
        // The mutant brings defect 02 back: read contexts from 0 at every start.
        let epoch = if cfg.mutant_is("read-ctx-from-zero") { 0 } else { recovered.epoch };
        if let Err(e) = cfg.validate() {
            panic!("invalid raft config: {e}");
        }
        let log = RaftLog::recover(&recovered.snapshot, recovered.entries, recovered.applied);
        let conf_base = (recovered.snapshot.last_index, recovered.snapshot.membership.clone());
        let rng = cfg.seed ^ cfg.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ cfg.group.0.rotate_left(17);
        let soft = SoftState { role: Role::Follower, term: recovered.hard_state.term, leader: NodeId::NONE };
        let mut core = RaftCore {
            cfg,
            rng,
            now,
            term: recovered.hard_state.term,
            vote: recovered.hard_state.vote,
            hard_state_dirty: false,
            term_unsynced: false,
            log,
            conf_base,
            conf_log: Vec::new(),
            snapshot: recovered.snapshot,
            role: Role::Follower,
            leader: NodeId::NONE,
            election_deadline: Time::NEVER,
            // A restarted node may have acknowledged a leader's heartbeat just
            // before it crashed; refusing votes for one election timeout after
            // start keeps that leader's lease sound.
            leader_contact: now,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            heartbeat_deadline: Time::NEVER,
            check_quorum_deadline: Time::NEVER,
            committed_in_term: false,
            transfer: None,
            commit_mark: LogIndex(0),
            committed_per_timeout: 0,
            broadcast_pending: false,
            reads: Reads::starting_at(now, epoch),
            leader_match: LogIndex(0),
            acked: LogIndex(0),
            receiving: None,
            snapshots_in_transfer: Vec::new(),
            storage_failed: false,
            apply_paused: false,
            ready: Ready::default(),
            last_soft: soft,
        };
        let recovered_confs: Vec<(LogIndex, Membership)> = (core.log.first_index().0..=core.log.last_index().0)
            .filter_map(|i| core.log.entry(LogIndex(i)))
            .filter_map(|e| match &e.payload {
                super::message::Payload::Config(m) => Some((e.index, m.clone())),
                _ => None,
            })
            .collect();
        core.conf_log = recovered_confs;
        core.reset_election_deadline();
        core
    }

    // --- accessors ----------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The configuration the core runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The known leader, or `NodeId::NONE`.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// The vote state as it will be (or was) persisted.
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote }
    }

    /// The membership in force (the latest configuration in the log).
    pub fn membership(&self) -> &Membership {
        self.conf_log.last().map(|(_, m)| m).unwrap_or(&self.conf_base.1)
    }

    /// The commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.log.committed
    }

    /// Entries the last log compaction removed from memory, for the driver
    /// to free on another thread (freeing a snapshot's worth of payloads
    /// takes tens of milliseconds). Not taking them is fine: the next
    /// compaction frees them.
    pub fn take_compacted(&mut self) -> Option<std::collections::VecDeque<crate::core::Entry>> {
        self.log.take_compacted()
    }

    /// The highest index known durable on this node.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted
    }

    /// The highest index the driver reported applied.
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied
    }

    /// The last log index.
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The term of the entry at `index`, if held in memory.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The first index still held in memory.
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// The latest local snapshot.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// Replication progress of `peer` (leaders only).
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        self.progress.get(&peer)
    }

    /// The target of a leader transfer in progress.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|t| t.target)
    }

    /// The earliest time the core wants `tick` called.
    pub fn next_deadline(&self) -> Time {
        let mut d = self.election_deadline;
        if self.role == Role::Leader {
            d = d.min(self.heartbeat_deadline).min(self.check_quorum_deadline);
            if let Some(t) = self.transfer {
                d = d.min(t.deadline);
            }
        }
        d
    }

    /// Whether `take_ready` has something to hand out.
    pub fn has_ready(&self) -> bool {
        self.hard_state_dirty
            || self.broadcast_pending
            || self.reads.round_pending()
            || !self.ready.is_empty()
            || (!self.apply_paused && self.log.committed.min(self.log.persisted) > self.log.apply_sent)
            || self.soft_state() != self.last_soft
            || (self.role == Role::Leader && self.commit_unsent())
    }

    /// Whether some peer has not been told a commit index it could use.
    fn commit_unsent(&self) -> bool {
        let committed = self.log.committed;
        self.progress.values().any(|p| committed.min(p.matched) > p.commit_sent)
    }

    fn soft_state(&self) -> SoftState {
        SoftState { role: self.role, term: self.term, leader: self.leader }
    }

    /// Hands out everything the core wants done since the last call. This is
    /// also the batch boundary: proposals and reads that arrived since the
    /// last call are replicated and confirmed together here.
    pub fn take_ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            if self.broadcast_pending {
                self.broadcast_pending = false;
                self.broadcast_append();
            }
            // The read round's heartbeats carry the commit index too, so the
            // commit-only heartbeats go out only to peers the round missed.
            self.flush_read_round();
            self.propagate_commit();
        } else {
            self.flush_forwarded_reads();
        }
        if !self.apply_paused {
            let entries = self.log.take_committed(usize::MAX);
            self.ready.committed_entries.extend(entries);
        }
        let soft = self.soft_state();
        if soft != self.last_soft {
            self.ready.soft_state = Some(soft);
            self.last_soft = soft;
        }
        if self.hard_state_dirty {
            self.ready.hard_state = Some(self.hard_state());
            self.hard_state_dirty = false;
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.next_deadline = self.next_deadline();
        if !ready.log_ops.is_empty() {
            ready.write_seq = self.log.take_write_seq();
        }
        ready
    }

    // --- inputs --------------------------------------------------------------

    pub(crate) fn advance_clock(&mut self, now: Time) {
        if now > self.now {
            self.now = now;
        }
    }

    /// The driver's disk refused a write (full, I/O error) and nothing it
    /// was given since may become durable until it recovers. A leader steps
    /// down at once, so that a node whose disk works can be elected; until
    /// [`RaftCore::on_storage_recovered`] this node does not campaign (nor
    /// answer `TimeoutNow`). Idempotent.
    pub fn on_storage_failed(&mut self, now: Time) {
        self.advance_clock(now);
        if !self.storage_failed {
            log::warn!(
                "{} term {}: storage refuses writes; not leading or campaigning until it recovers",
                self.cfg.id,
                self.term
            );
        }
        self.storage_failed = true;
        if self.role != Role::Follower {
            self.become_follower(self.term, NodeId::NONE);
        }
    }

    /// Holds committed entries back from `Ready::committed_entries` while
    /// `paused` (the driver's apply stage is backed up), handing them all out
    /// once resumed. Commit, replication and reads go on meanwhile; reads
    /// are served once their index is applied, so they wait too.
    pub fn set_apply_paused(&mut self, paused: bool) {
        self.apply_paused = paused;
    }

    /// The disk takes writes again: the node may campaign again.
    pub fn on_storage_recovered(&mut self) {
        if self.storage_failed {
            log::info!("{} term {}: storage recovered", self.cfg.id, self.term);
        }
        self.storage_failed = false;
    }

    /// Tells the core the time; fires due timers (election, heartbeat,
    /// check-quorum, transfer abort).
    pub fn tick(&mut self, now: Time) {
        self.advance_clock(now);
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                if self.now >= self.election_deadline {
                    self.on_election_timeout();
                }
            }
        }
    }

    fn tick_leader(&mut self) {
        if self.now >= self.heartbeat_deadline {
            self.heartbeat_deadline = self.now.plus_ms(self.cfg.heartbeat_interval_ms);
            self.broadcast_heartbeat();
        }
        if self.now >= self.check_quorum_deadline {
            self.check_quorum_deadline = self.now.plus_ms(self.cfg.election_timeout_min_ms);
            if self.committed_in_term {
                self.committed_per_timeout = self.log.committed.0.saturating_sub(self.commit_mark.0);
                self.commit_mark = self.log.committed;
            }
            self.restart_stalled_snapshot_sends();
            if self.cfg.check_quorum && !self.quorum_active() {
                log::info!("{} term {}: lost contact with a quorum, stepping down", self.cfg.id, self.term);
                self.become_follower(self.term, NodeId::NONE);
                return;
            }
        }
        if let Some(t) = self.transfer {
            if self.now >= t.deadline {
                log::info!("{} term {}: leader transfer to {} timed out", self.cfg.id, self.term, t.target);
                self.transfer = None;
            }
        }
    }

    fn quorum_active(&mut self) -> bool {
        let id = self.cfg.id;
        let active = {
            let progress = &self.progress;
            self.membership().has_quorum(|n| n == id || progress.get(&n).is_some_and(|p| p.recent_active))
        };
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
        active
    }

    /// Handles one message from a peer, received at `now`.
    pub fn step(&mut self, now: Time, msg: Message) {
        self.advance_clock(now);
        if msg.group != self.cfg.group || msg.to != self.cfg.id {
            log::warn!("{}: dropping message for group {} node {}", self.cfg.id, msg.group, msg.to);
            return;
        }
        if msg.term > self.term {
            if !self.on_higher_term(&msg) {
                return;
            }
        } else if msg.term < self.term {
            self.on_lower_term(&msg);
            return;
        }
        self.dispatch(msg);
    }

    /// A message from a later term. Returns whether to go on handling it.
    fn on_higher_term(&mut self, msg: &Message) -> bool {
        match &msg.body {
            MessageBody::Vote { transfer, .. } => {
                if !transfer && self.in_lease() {
                    log::debug!(
                        "{}: ignoring vote from {} for term {}: leader lease holds",
                        self.cfg.id,
                        msg.from,
                        msg.term
                    );
                    return false;
                }
                self.become_follower(msg.term, NodeId::NONE);
                true
            }
            MessageBody::PreVote { .. } => true,
            MessageBody::PreVoteResponse { granted: true } => true,
            MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                self.become_follower(msg.term, msg.from);
                true
            }
            _ => {
                self.become_follower(msg.term, NodeId::NONE);
                true
            }
        }
    }

    /// A message from an earlier term: tell a stale leader or pre-candidate
    /// about the newer term, ignore the rest.
    fn on_lower_term(&mut self, msg: &Message) {
        match msg.body {
            MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                let body = MessageBody::AppendEntriesResponse { match_index: LogIndex(0), reject: None };
                self.send(msg.from, body);
            }
            MessageBody::PreVote { .. } => {
                self.send(msg.from, MessageBody::PreVoteResponse { granted: false });
            }
            MessageBody::ReadIndexRequest { ctx } => {
                self.send(msg.from, MessageBody::ReadIndexResponse { ctx, index: None });
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, msg: Message) {
        let from = msg.from;
        match msg.body {
            MessageBody::PreVote { last_log_term, last_log_index } => {
                self.on_pre_vote(from, msg.term, last_log_term, last_log_index)
            }
            MessageBody::Vote { last_log_term, last_log_index, .. } => {
                self.on_vote(from, last_log_term, last_log_index)
            }
            MessageBody::PreVoteResponse { granted } => self.on_vote_response(from, msg.term, granted, true),
            MessageBody::VoteResponse { granted } => self.on_vote_response(from, msg.term, granted, false),
            MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, commit } => {
                self.on_append(from, prev_log_index, prev_log_term, entries, commit)
            }
            MessageBody::AppendEntriesResponse { match_index, reject } => {
                self.on_append_response(from, match_index, reject)
            }
            MessageBody::Heartbeat { commit, read_round } => self.on_heartbeat(from, commit, read_round),
            MessageBody::HeartbeatResponse { read_round } => self.on_heartbeat_response(from, read_round),
            MessageBody::TimeoutNow => self.on_timeout_now(from),
            MessageBody::InstallSnapshot { meta, offset, data, done, content } => {
                self.on_install_snapshot(from, meta, offset, data, done, content)
            }
            MessageBody::InstallSnapshotResponse { last_index, next_offset, done } => {
                self.on_install_snapshot_response(from, last_index, next_offset, done)
            }
            MessageBody::ReadIndexRequest { ctx } => self.on_read_index_request(from, ctx),
            MessageBody::ReadIndexResponse { ctx, index } => self.on_read_index_response(ctx, index),
        }
    }

    // --- helpers shared by the protocol files ---------------------------------

    /// Queues a message to `to`. Messages that depend on a vote state not yet
    /// persisted wait for the ready's writes.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let msg = Message { group: self.cfg.group, from: self.cfg.id, to, term: self.term, body };
        self.send_msg(msg);
    }

    /// Queues entries for the durable log, merged into the previous append
    /// of this ready when they continue or overwrite its tail, so one ready
    /// carries one append per run of entries.
    pub(crate) fn push_append_op(&mut self, entries: Vec<Entry>) {
        let Some(first) = entries.first().map(|e| e.index) else { return };
        if let Some(LogOp::Append(prev)) = self.ready.log_ops.last_mut() {
            let prev_first = prev.first().map(|e| e.index).unwrap_or(first);
            if prev_first < first && first.0 <= prev_first.0 + prev.len() as u64 {
                prev.truncate((first.0 - prev_first.0) as usize);
                prev.extend(entries);
                return;
            }
        }
        self.ready.log_ops.push(LogOp::Append(entries));
    }

    pub(crate) fn send_msg(&mut self, msg: Message) {
        if self.hard_state_dirty || self.term_unsynced {
            self.ready.persisted_messages.push(msg);
        } else {
            self.ready.messages.push(msg);
        }
    }

    pub(crate) fn set_hard_state(&mut self, term: Term, vote: NodeId) {
        assert!(term >= self.term, "term regressed from {} to {}", self.term, term);
        if term != self.term || vote != self.vote {
            if term != self.term {
                self.term_unsynced = false;
            }
            self.term = term;
            self.vote = vote;
            self.hard_state_dirty = true;
        }
    }

    /// Whether this node believes a leader is alive: it leads, or it heard
    /// from a leader (or started) less than an election timeout ago.
    pub(crate) fn in_lease(&self) -> bool {
        match self.role {
            // A leader refuses disruptive votes only while check-quorum keeps
            // it honest; without it a deposed leader could ignore votes forever.
            Role::Leader => self.cfg.check_quorum,
            _ => self.now < self.leader_contact.plus_ms(self.cfg.election_timeout_min_ms),
        }
    }

    pub(crate) fn random_election_timeout_ms(&mut self) -> u64 {
        // splitmix64: tiny, deterministic, good enough for jitter.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let span = self.cfg.election_timeout_max_ms - self.cfg.election_timeout_min_ms;
        self.cfg.election_timeout_min_ms + z % span
    }

    pub(crate) fn reset_election_deadline(&mut self) {
        let ms = self.random_election_timeout_ms();
        self.election_deadline = self.now.plus_ms(ms);
    }

    /// Becomes a follower of `leader` (or of nobody) in `term`.
    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId) {
        let was_leader = self.role == Role::Leader;
        let term_changed = term > self.term;
        if term_changed {
            self.set_hard_state(term, NodeId::NONE);
        }
        // What matched the previous leader says nothing about the next one.
        if term_changed || self.leader != leader || self.role != Role::Follower {
            self.leader_match = LogIndex(0);
            self.acked = LogIndex(0);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.transfer = None;
        self.broadcast_pending = false;
        if was_leader {
            self.progress.clear();
            self.heartbeat_deadline = Time::NEVER;
            self.check_quorum_deadline = Time::NEVER;
        }
        self.fail_reads();
        self.reset_election_deadline();
    }

    /// Records the membership carried by a configuration entry just appended.
    pub(crate) fn on_conf_appended(&mut self, index: LogIndex, membership: Membership) {
        self.conf_log.push((index, membership));
        if self.role == Role::Leader {
            self.sync_progress_with_membership();
        }
    }

    /// Reverts configurations whose entries were truncated at `from`.
    pub(crate) fn on_log_truncated(&mut self, from: LogIndex) {
        self.conf_log.retain(|(i, _)| *i < from);
    }

    /// The membership in force at `index` (for snapshot metas).
    pub(crate) fn membership_at(&self, index: LogIndex) -> Membership {
        self.conf_log
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| self.conf_base.1.clone())
    }

    /// Whether this node may start elections: a voter of its membership, or
    /// a voter of the previous one while the latest is not known committed.
    ///
    /// The second case is the Raft thesis' rule (§4.2.2): a server removed
    /// by a configuration it appended may still be needed to commit it. Found
    /// by the simulator (seeds 116, 184): a leader that removed or demoted
    /// itself lost leadership before the change committed; it alone held the
    /// newest log, so no voter of the old configuration could win and, not
    /// being a voter of the new one, it never campaigned: the group stalled
    /// for good. Its own vote is not counted (`tally` asks the membership).
    pub(crate) fn promotable(&self) -> bool {
        if self.storage_failed {
            return false;
        }
        let id = self.cfg.id;
        if self.membership().is_voter(id) {
            return true;
        }
        let n = self.conf_log.len();
        let Some((latest, _)) = self.conf_log.last() else { return false };
        let previous = if n >= 2 { &self.conf_log[n - 2].1 } else { &self.conf_base.1 };
        *latest > self.log.committed && previous.is_voter(id)
    }
}
