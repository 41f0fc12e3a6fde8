//! What the stages ask of the code around them and tell it back: the
//! [`StateMachine`] a group applies to and its [`SnapshotStore`], the
//! [`Restore`] answer of an install, and the [`GroupStatus`] the core
//! reports. The stages and `node` both import these from here (the node
//! re-exports them as its public API).

use bytes::Bytes;

use std::sync::Arc;

use crate::core::{GroupId, LogIndex, Membership, NodeId, Role, SnapshotChunk, SnapshotMeta, Term};

/// The replicated state of one group, driven by the FSM caller.
///
/// `apply` is called for every committed application entry, in log order,
/// exactly once per node run (after a restart the log is replayed from the
/// entry after the index [`StateMachine::recover`] returns). Calls arrive in batches; `on_batch_end`
/// follows each batch, so an implementation may defer its own flushing to
/// it. Both run on the FSM caller thread: slow code here slows applying (not
/// replication).
pub trait StateMachine: Send + 'static {
    /// Applies the entry at `index`; the returned bytes go to the proposer.
    fn apply(&mut self, index: LogIndex, data: &Bytes) -> Bytes;

    /// The end of a batch of `apply` calls.
    fn on_batch_end(&mut self) {}

    /// Called once when the node starts, with the snapshot the log starts
    /// after. Returns the highest index whose effects the state machine
    /// keeps durably (its last checkpoint, at least `snapshot.last_index`):
    /// the log is replayed from the entry after it. A state machine that
    /// finds itself behind the snapshot installs the snapshot it received
    /// before a crash, or fails. The default, 0, replays the whole log into
    /// a fresh instance (and never lets the log be compacted).
    ///
    /// # Errors
    /// A message for the operator; the node does not start.
    fn recover(&mut self, snapshot: &SnapshotMeta) -> Result<LogIndex, String> {
        let _ = snapshot;
        Ok(LogIndex(0))
    }

    /// Asks to have [`StateMachine::on_batch_end`] called again after this
    /// long even if nothing is applied meanwhile (background work such as a
    /// checkpoint in flight wants finishing). `None` (the default): only
    /// after batches, so an idle node sleeps.
    fn next_poll(&self) -> Option<std::time::Duration> {
        None
    }

    /// Polled after each batch: a snapshot of the state up to the returned
    /// index is stored and can be served by [`StateMachine::snapshot_store`];
    /// the node may compact its log behind it. The default never does.
    fn snapshot_point(&mut self) -> Option<LogIndex> {
        None
    }

    /// Replaces the state with the snapshot `meta` that the node received
    /// (its chunks went to [`SnapshotStore::write_chunk`] and are durable).
    /// [`Restore::RetryAfter`] asks to be called again later with the same
    /// snapshot (a full disk, waited out): nothing of this group is applied
    /// meanwhile, and every step of the install must be repeatable.
    ///
    /// # Errors
    /// The snapshot cannot be installed; the node stops (fail-stop).
    fn restore(&mut self, meta: &SnapshotMeta) -> Result<Restore, String> {
        Err(format!("this state machine cannot install snapshot {}", meta.last_index))
    }

    /// Where snapshots are read from (leader) and received into (follower);
    /// `None` (the default) means the group never sends or takes one.
    fn snapshot_store(&self) -> Option<Arc<dyn SnapshotStore>> {
        None
    }
}

/// What became of [`StateMachine::restore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// The snapshot is the state now.
    Done,
    /// Not installed yet (the state is as before); call again after this
    /// long.
    RetryAfter(std::time::Duration),
}

/// A group's snapshot bytes, for the node's snapshot sender and its
/// log-append stage. A snapshot is an opaque byte stream named by its last
/// index.
pub trait SnapshotStore: Send + Sync {
    /// Up to `max` bytes of snapshot `index` from `offset`, and whether
    /// they end it. Runs on the snapshot sender thread.
    ///
    /// # Errors
    /// The snapshot is gone (a newer one replaced it) or unreadable; the
    /// chunk is not sent and the leader retries later.
    fn read_chunk(&self, index: LogIndex, offset: u64, max: usize) -> std::io::Result<(Bytes, bool)>;

    /// A checksum of snapshot `index`'s whole content, sent with every
    /// chunk (0: unknown, the default). A receiver resumes a half-received
    /// snapshot only from a sender with the same content, so two nodes'
    /// snapshots at one index may differ in their bytes. Called after
    /// [`SnapshotStore::read_chunk`] succeeded for `index`.
    fn content_id(&self, index: LogIndex) -> u64 {
        let _ = index;
        0
    }

    /// Stores one received chunk durably; chunks arrive in order, a chunk
    /// at offset 0 starts over. Runs on the log-append thread, before the
    /// chunk is acknowledged.
    ///
    /// # Errors
    /// `InvalidData` when the bytes fail verification (the node stops
    /// rather than install them); other kinds are retried as disk errors.
    fn write_chunk(&self, chunk: &SnapshotChunk) -> std::io::Result<()>;
}

/// Replication state of one peer as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub node: NodeId,
    /// Highest index known durable on the peer (leader only).
    pub matched: Option<LogIndex>,
    /// Next index to send (leader only).
    pub next: Option<LogIndex>,
}

/// A group's state on one node.
#[derive(Clone, Debug)]
pub struct GroupStatus {
    /// The group.
    pub group: GroupId,
    /// The node reporting.
    pub node: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Highest committed index it knows of.
    pub commit_index: LogIndex,
    /// Highest index its state machine applied (as the core knows).
    pub applied_index: LogIndex,
    /// Highest index durable in its log.
    pub persisted_index: LogIndex,
    /// Last index in its log.
    pub last_index: LogIndex,
    /// The membership in force.
    pub membership: Membership,
    /// The newest snapshot the log is compacted behind (what a peer that
    /// needs one is sent).
    pub snapshot: crate::core::SnapshotMeta,
    /// The other members.
    pub peers: Vec<PeerStatus>,
}
