//! Log entries and the messages cores exchange.
//!
//! These are plain values: the RPC codec (src/rpc/) turns them into bytes and
//! back, the simulator carries them as they are. Payloads are `bytes::Bytes`
//! so that sending one entry to four peers clones a pointer, not the data.

use bytes::Bytes;

use super::membership::Membership;
use super::types::{GroupId, LogIndex, NodeId, Term};

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The empty entry a new leader appends to commit its predecessors' entries.
    Noop,
    /// Application data, opaque to the core.
    Normal(Bytes),
    /// A membership configuration; it takes effect on every node as soon as it
    /// is appended to that node's log (not when committed).
    Config(Membership),
}

/// One entry of the Raft log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: Payload,
}

impl Entry {
    /// Bytes this entry costs in a message, for batching limits: the payload
    /// plus a fixed header allowance.
    pub fn size_bytes(&self) -> usize {
        const HEADER: usize = 24;
        HEADER
            + match &self.payload {
                Payload::Noop => 0,
                Payload::Normal(b) => b.len(),
                Payload::Config(m) => 8 * m.members().len() + 8,
            }
    }
}

/// The durable vote state of a node. Must be persisted before any message
/// that depends on it leaves the node (the core enforces this by putting such
/// messages in `Ready::persisted_messages`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, or `NodeId::NONE`.
    pub vote: NodeId,
}

/// What a snapshot covers: the log prefix up to `last_index` and the
/// membership in force at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub last_index: LogIndex,
    /// The term of the entry at `last_index`.
    pub last_term: Term,
    /// The membership in force at `last_index`.
    pub membership: Membership,
}

/// One message between two cores of the same group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The group the message belongs to.
    pub group: GroupId,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term when it sent the message (for `PreVote`, the term
    /// the sender would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// Why an append was refused, with the hint a leader needs to skip back
/// over a whole conflicting term in one round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectHint {
    /// The `prev_log_index` of the refused message (lets the leader ignore
    /// stale refusals).
    pub rejected_index: LogIndex,
    /// The follower's term at `min(rejected_index, last_index)`, or term 0 if
    /// its log is shorter than that.
    pub conflict_term: Term,
    /// The first index the follower holds with `conflict_term`, or its
    /// `last_index + 1` when its log is shorter.
    pub conflict_index: LogIndex,
}

/// The body of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Ask whether the receiver would vote for the sender in `term` (no term
    /// change on either side).
    PreVote {
        /// The term of the candidate's last entry.
        last_log_term: Term,
        /// The index of the candidate's last entry.
        last_log_index: LogIndex,
    },
    /// Answer to `PreVote`.
    PreVoteResponse {
        /// Whether the vote would be granted.
        granted: bool,
    },
    /// Ask for a vote in `term`.
    Vote {
        /// The term of the candidate's last entry.
        last_log_term: Term,
        /// The index of the candidate's last entry.
        last_log_index: LogIndex,
        /// Set when the campaign was started by `TimeoutNow`: the receiver
        /// votes even while it believes a leader's lease holds.
        transfer: bool,
    },
    /// Answer to `Vote`.
    VoteResponse {
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Replicate entries after `prev_log_index`.
    AppendEntries {
        /// The index just before `entries`.
        prev_log_index: LogIndex,
        /// The term of the entry at `prev_log_index`.
        prev_log_term: Term,
        /// The entries, consecutive, starting at `prev_log_index + 1`.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: LogIndex,
    },
    /// Answer to `AppendEntries` (or a durability report a follower sends on
    /// its own once more of its log is fsynced).
    AppendEntriesResponse {
        /// On success: the highest index known to match the leader's log and
        /// durable on the sender. On refusal: the sender's last index.
        match_index: LogIndex,
        /// Present when the append was refused.
        reject: Option<RejectHint>,
    },
    /// Leader liveness, commit propagation, and a ReadIndex/lease round.
    Heartbeat {
        /// `min(leader commit, receiver's match index)`.
        commit: LogIndex,
        /// The leader's read round this heartbeat belongs to.
        read_round: u64,
    },
    /// Answer to `Heartbeat`.
    HeartbeatResponse {
        /// The round being acknowledged.
        read_round: u64,
    },
    /// Start an election now, without pre-vote (leader transfer).
    TimeoutNow,
    /// One chunk of a snapshot. The core emits these with empty `data`; the
    /// driver fills `data`, `done` and `content` from its snapshot store.
    InstallSnapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Byte offset of `data` within the snapshot.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// Whether this is the last chunk.
        done: bool,
        /// A checksum of the snapshot's whole content (0: unknown). A
        /// receiver resumes a half-received snapshot only from a sender whose
        /// content matches: two leaders' snapshots at the same index and term
        /// hold the same state but need not be the same bytes.
        content: u64,
    },
    /// Answer to `InstallSnapshot`.
    InstallSnapshotResponse {
        /// The snapshot index the answer is about.
        last_index: LogIndex,
        /// The offset the receiver expects next (lets a new leader resume a
        /// half-sent snapshot).
        next_offset: u64,
        /// Whether the whole snapshot is installed.
        done: bool,
    },
    /// A follower asks the leader for a read index on behalf of its readers.
    ReadIndexRequest {
        /// Follower-local id of the batch of reads.
        ctx: u64,
    },
    /// The leader's answer to `ReadIndexRequest`.
    ReadIndexResponse {
        /// The follower's id of the batch.
        ctx: u64,
        /// The confirmed read index, or `None` when the leader could not
        /// confirm its leadership (the reads fail and may be retried).
        index: Option<LogIndex>,
    },
}

impl MessageBody {
    /// A short name for traces and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResp",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { .. } => "VoteResp",
            MessageBody::AppendEntries { .. } => "App",
            MessageBody::AppendEntriesResponse { .. } => "AppResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::InstallSnapshot { .. } => "Snap",
            MessageBody::InstallSnapshotResponse { .. } => "SnapResp",
            MessageBody::ReadIndexRequest { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
        }
    }
}
