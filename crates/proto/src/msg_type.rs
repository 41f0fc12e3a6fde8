//! The type byte of every frame ([`MsgType`]), one table of stable codes
//! (`proto-spec/PROTOCOL.md` lists the same). Every codec file imports
//! it from here.

macro_rules! msg_types {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// The type byte of a frame. Codes are stable and never reused.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum MsgType {
            $($(#[$doc])* $name = $code,)*
        }

        impl MsgType {
            /// The type for a byte read off the wire.
            pub fn from_u8(b: u8) -> Option<MsgType> {
                match b {
                    $($code => Some(MsgType::$name),)*
                    _ => None,
                }
            }

            /// Every type, in code order (tests, fuzz seeds).
            pub const ALL: &'static [MsgType] = &[$(MsgType::$name,)*];

            /// Whether this type travels only between nodes (`0x10..0x20`:
            /// Raft messages and heartbeat batches).
            pub fn is_peer(self) -> bool {
                (0x10..0x20).contains(&(self as u8))
            }
        }
    };
}

msg_types! {
    /// Handshake: the connecting side introduces itself.
    Hello = 0x01,
    /// Handshake accepted.
    HelloOk = 0x02,
    /// An error answer (to any request, or a handshake refusal).
    Error = 0x03,
    /// Raft pre-vote request.
    PreVote = 0x10,
    /// Raft pre-vote answer.
    PreVoteResponse = 0x11,
    /// Raft vote request.
    Vote = 0x12,
    /// Raft vote answer.
    VoteResponse = 0x13,
    /// Raft append entries.
    AppendEntries = 0x14,
    /// Raft append entries answer.
    AppendEntriesResponse = 0x15,
    /// Raft heartbeat for one group.
    Heartbeat = 0x16,
    /// Heartbeat answer for one group.
    HeartbeatResponse = 0x17,
    /// Heartbeats of many groups in one frame.
    HeartbeatBatch = 0x18,
    /// Heartbeat answers of many groups in one frame.
    HeartbeatResponseBatch = 0x19,
    /// Raft timeout-now (leader transfer).
    TimeoutNow = 0x1a,
    /// One snapshot chunk.
    InstallSnapshot = 0x1b,
    /// Snapshot chunk answer.
    InstallSnapshotResponse = 0x1c,
    /// A follower's read-index request.
    ReadIndexRequest = 0x1d,
    /// The leader's read-index answer.
    ReadIndexResponse = 0x1e,
    /// Client: append records to a stream.
    Append = 0x40,
    /// Client: append answer.
    AppendResponse = 0x41,
    /// Client: read records.
    Read = 0x42,
    /// Client: records read.
    ReadResponse = 0x43,
    /// Client: long-poll read at the tail.
    Tail = 0x44,
    /// Client: records read by tail.
    TailResponse = 0x45,
    /// Client: trim a stream's prefix.
    Trim = 0x46,
    /// Client: trim answer.
    TrimResponse = 0x47,
    /// Client: create a stream.
    CreateStream = 0x48,
    /// Client: create answer.
    CreateStreamResponse = 0x49,
    /// Client: delete a stream.
    DeleteStream = 0x4a,
    /// Client: delete answer.
    DeleteStreamResponse = 0x4b,
    /// Client: list streams.
    ListStreams = 0x4c,
    /// Client: the streams.
    ListStreamsResponse = 0x4d,
    /// Client: node status.
    Status = 0x4e,
    /// Client: the status.
    StatusResponse = 0x4f,
    /// Client: open an exactly-once session.
    OpenSession = 0x50,
    /// Client: the new session.
    OpenSessionResponse = 0x51,
    /// Client: one chunk of the node's snapshot (a node rebuilding its
    /// state).
    FetchSnapshot = 0x52,
    /// Client: the chunk and the snapshot's meta.
    FetchSnapshotResponse = 0x53,
    /// Admin: add a voter.
    AddVoter = 0x60,
    /// Admin: remove a voter.
    RemoveVoter = 0x61,
    /// Admin: add a learner.
    AddLearner = 0x62,
    /// Admin: remove a learner.
    RemoveLearner = 0x63,
    /// Admin: replace voters and learners.
    ChangePeers = 0x64,
    /// Admin: transfer leadership.
    TransferLeader = 0x65,
    /// Admin: take a snapshot now.
    Snapshot = 0x66,
    /// Admin: the answer to any admin request.
    AdminResponse = 0x67,
}
