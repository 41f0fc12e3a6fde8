//! Raft message bodies (types `0x10`–`0x1e`) and heartbeat batches.
//!
//! Every single-group Raft body starts with the same 24 bytes: `from u64,
//! to u64, term u64`; the group is the frame header's. Entries in
//! `AppendEntries` carry no index: entry `i` has index `prev_log_index + 1 +
//! i` (the core only sends consecutive entries). Configuration payloads use
//! the storage layer's membership encoding
//! ([`crate::storage::record::encode_membership`]).

use bytes::{BufMut, BytesMut};

use ringraft_proto::{put_len, MsgType, ProtocolError, Reader};

use crate::core::{Entry, GroupId, LogIndex, Message, MessageBody, NodeId, Payload, RejectHint, SnapshotMeta, Term};
use crate::storage::record::{decode_membership, encode_membership};

/// Entry kind byte: application data.
const ENTRY_NORMAL: u8 = 1;
/// Entry kind byte: the no-op a new leader appends.
const ENTRY_NOOP: u8 = 2;
/// Entry kind byte: a membership configuration.
const ENTRY_CONFIG: u8 = 3;
/// Bytes of an entry's fixed part: term u64, kind u8, length u32.
const ENTRY_HEAD: usize = 13;

/// The frame type of a Raft body.
pub(crate) fn raft_type(b: &MessageBody) -> MsgType {
    match b {
        MessageBody::PreVote { .. } => MsgType::PreVote,
        MessageBody::PreVoteResponse { .. } => MsgType::PreVoteResponse,
        MessageBody::Vote { .. } => MsgType::Vote,
        MessageBody::VoteResponse { .. } => MsgType::VoteResponse,
        MessageBody::AppendEntries { .. } => MsgType::AppendEntries,
        MessageBody::AppendEntriesResponse { .. } => MsgType::AppendEntriesResponse,
        MessageBody::Heartbeat { .. } => MsgType::Heartbeat,
        MessageBody::HeartbeatResponse { .. } => MsgType::HeartbeatResponse,
        MessageBody::TimeoutNow => MsgType::TimeoutNow,
        MessageBody::InstallSnapshot { .. } => MsgType::InstallSnapshot,
        MessageBody::InstallSnapshotResponse { .. } => MsgType::InstallSnapshotResponse,
        MessageBody::ReadIndexRequest { .. } => MsgType::ReadIndexRequest,
        MessageBody::ReadIndexResponse { .. } => MsgType::ReadIndexResponse,
    }
}

/// Writes the body of `m` (without the frame header).
pub(crate) fn encode_raft(out: &mut BytesMut, m: &Message) -> Result<(), ProtocolError> {
    out.put_u64_le(m.from.0);
    out.put_u64_le(m.to.0);
    out.put_u64_le(m.term.0);
    match &m.body {
        MessageBody::PreVote { last_log_term, last_log_index } => {
            out.put_u64_le(last_log_term.0);
            out.put_u64_le(last_log_index.0);
        }
        MessageBody::PreVoteResponse { granted } | MessageBody::VoteResponse { granted } => out.put_u8(*granted as u8),
        MessageBody::Vote { last_log_term, last_log_index, transfer } => {
            out.put_u64_le(last_log_term.0);
            out.put_u64_le(last_log_index.0);
            out.put_u8(*transfer as u8);
        }
        MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, commit } => {
            out.put_u64_le(prev_log_index.0);
            out.put_u64_le(prev_log_term.0);
            out.put_u64_le(commit.0);
            put_len(out, entries.len())?;
            for (i, e) in entries.iter().enumerate() {
                if Some(e.index.0) != prev_log_index.0.checked_add(1 + i as u64) {
                    return Err(ProtocolError::Malformed("entries not consecutive after prev_log_index"));
                }
                out.put_u64_le(e.term.0);
                match &e.payload {
                    Payload::Normal(b) => {
                        out.put_u8(ENTRY_NORMAL);
                        put_len(out, b.len())?;
                        out.put_slice(b);
                    }
                    Payload::Noop => {
                        out.put_u8(ENTRY_NOOP);
                        out.put_u32_le(0);
                    }
                    Payload::Config(m) => {
                        let b = encode_membership(m);
                        out.put_u8(ENTRY_CONFIG);
                        put_len(out, b.len())?;
                        out.put_slice(&b);
                    }
                }
            }
        }
        MessageBody::AppendEntriesResponse { match_index, reject } => {
            out.put_u64_le(match_index.0);
            let h = reject.unwrap_or(RejectHint {
                rejected_index: LogIndex(0),
                conflict_term: Term(0),
                conflict_index: LogIndex(0),
            });
            out.put_u8(reject.is_some() as u8);
            out.put_u64_le(h.rejected_index.0);
            out.put_u64_le(h.conflict_term.0);
            out.put_u64_le(h.conflict_index.0);
        }
        MessageBody::Heartbeat { commit, read_round } => {
            out.put_u64_le(commit.0);
            out.put_u64_le(*read_round);
        }
        MessageBody::HeartbeatResponse { read_round } => out.put_u64_le(*read_round),
        MessageBody::TimeoutNow => {}
        MessageBody::InstallSnapshot { meta, offset, data, done, content } => {
            out.put_u64_le(meta.last_index.0);
            out.put_u64_le(meta.last_term.0);
            out.put_u64_le(*offset);
            out.put_u8(*done as u8);
            let mb = encode_membership(&meta.membership);
            put_len(out, mb.len())?;
            out.put_slice(&mb);
            put_len(out, data.len())?;
            out.put_slice(data);
            // Optional, trailing: left out when unknown (0).
            if *content != 0 {
                out.put_u64_le(*content);
            }
        }
        MessageBody::InstallSnapshotResponse { last_index, next_offset, done } => {
            out.put_u64_le(last_index.0);
            out.put_u64_le(*next_offset);
            out.put_u8(*done as u8);
        }
        MessageBody::ReadIndexRequest { ctx } => out.put_u64_le(*ctx),
        MessageBody::ReadIndexResponse { ctx, index } => {
            out.put_u64_le(*ctx);
            out.put_u8(index.is_some() as u8);
            out.put_u64_le(index.map_or(0, |i| i.0));
        }
    }
    Ok(())
}

/// Decodes a Raft body of type `t` (a type in `0x10..0x20` other than the
/// batches).
pub(crate) fn decode_raft(t: MsgType, group: GroupId, r: &mut Reader) -> Result<Message, ProtocolError> {
    let from = NodeId(r.u64()?);
    let to = NodeId(r.u64()?);
    let term = Term(r.u64()?);
    let body = match t {
        MsgType::PreVote => MessageBody::PreVote { last_log_term: Term(r.u64()?), last_log_index: LogIndex(r.u64()?) },
        MsgType::PreVoteResponse => MessageBody::PreVoteResponse { granted: r.bool()? },
        MsgType::Vote => {
            MessageBody::Vote { last_log_term: Term(r.u64()?), last_log_index: LogIndex(r.u64()?), transfer: r.bool()? }
        }
        MsgType::VoteResponse => MessageBody::VoteResponse { granted: r.bool()? },
        MsgType::AppendEntries => {
            let prev_log_index = LogIndex(r.u64()?);
            let prev_log_term = Term(r.u64()?);
            let commit = LogIndex(r.u64()?);
            let n = r.count(ENTRY_HEAD)?;
            let mut entries = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let index =
                    prev_log_index.0.checked_add(1 + i).ok_or(ProtocolError::Malformed("entry index overflows u64"))?;
                let term = Term(r.u64()?);
                let kind = r.u8()?;
                let len = r.u32()? as usize;
                let data = r.bytes(len)?;
                let payload = match kind {
                    ENTRY_NORMAL => Payload::Normal(data),
                    ENTRY_NOOP if len == 0 => Payload::Noop,
                    ENTRY_NOOP => return Err(ProtocolError::Malformed("no-op entry with a payload")),
                    ENTRY_CONFIG => Payload::Config(
                        decode_membership(&data).map_err(|_| ProtocolError::Malformed("bad membership"))?,
                    ),
                    _ => return Err(ProtocolError::Malformed("unknown entry kind")),
                };
                entries.push(Entry { term, index: LogIndex(index), payload });
            }
            MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, commit }
        }
        MsgType::AppendEntriesResponse => {
            let match_index = LogIndex(r.u64()?);
            let rejected = r.bool()?;
            let h = RejectHint {
                rejected_index: LogIndex(r.u64()?),
                conflict_term: Term(r.u64()?),
                conflict_index: LogIndex(r.u64()?),
            };
            let reject = if rejected {
                Some(h)
            } else if h.rejected_index.0 | h.conflict_term.0 | h.conflict_index.0 != 0 {
                return Err(ProtocolError::Malformed("reject hint set on an accepted append"));
            } else {
                None
            };
            MessageBody::AppendEntriesResponse { match_index, reject }
        }
        MsgType::Heartbeat => MessageBody::Heartbeat { commit: LogIndex(r.u64()?), read_round: r.u64()? },
        MsgType::HeartbeatResponse => MessageBody::HeartbeatResponse { read_round: r.u64()? },
        MsgType::TimeoutNow => MessageBody::TimeoutNow,
        MsgType::InstallSnapshot => {
            let last_index = LogIndex(r.u64()?);
            let last_term = Term(r.u64()?);
            let offset = r.u64()?;
            let done = r.bool()?;
            let mlen = r.u32()? as usize;
            let mb = r.bytes(mlen)?;
            let membership = decode_membership(&mb).map_err(|_| ProtocolError::Malformed("bad membership"))?;
            let dlen = r.u32()? as usize;
            let data = r.bytes(dlen)?;
            let content = if r.remaining() > 0 { r.u64()? } else { 0 };
            MessageBody::InstallSnapshot {
                meta: SnapshotMeta { last_index, last_term, membership },
                offset,
                data,
                done,
                content,
            }
        }
        MsgType::InstallSnapshotResponse => MessageBody::InstallSnapshotResponse {
            last_index: LogIndex(r.u64()?),
            next_offset: r.u64()?,
            done: r.bool()?,
        },
        MsgType::ReadIndexRequest => MessageBody::ReadIndexRequest { ctx: r.u64()? },
        MsgType::ReadIndexResponse => {
            let ctx = r.u64()?;
            let ok = r.bool()?;
            let index = r.u64()?;
            if !ok && index != 0 {
                return Err(ProtocolError::Malformed("index set on a failed read-index answer"));
            }
            MessageBody::ReadIndexResponse { ctx, index: ok.then_some(LogIndex(index)) }
        }
        _ => return Err(ProtocolError::UnknownType(t as u8)),
    };
    Ok(Message { group, from, to, term, body })
}

/// One group's heartbeat inside a [`HeartbeatBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatItem {
    /// The group.
    pub group: GroupId,
    /// The leader's term in that group.
    pub term: Term,
    /// As in `MessageBody::Heartbeat`.
    pub commit: LogIndex,
    /// As in `MessageBody::Heartbeat`.
    pub read_round: u64,
}

/// Heartbeats of many groups from one node to another, in one frame (type
/// `0x18`, frame group id 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatBatch {
    /// The sending node.
    pub from: NodeId,
    /// The receiving node.
    pub to: NodeId,
    /// One item per group.
    pub items: Vec<HeartbeatItem>,
}

impl HeartbeatBatch {
    /// The batch as single-group heartbeat messages, for the core.
    pub fn to_messages(&self) -> impl Iterator<Item = Message> + '_ {
        self.items.iter().map(|i| Message {
            group: i.group,
            from: self.from,
            to: self.to,
            term: i.term,
            body: MessageBody::Heartbeat { commit: i.commit, read_round: i.read_round },
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        out.put_u64_le(self.from.0);
        out.put_u64_le(self.to.0);
        put_len(out, self.items.len())?;
        for i in &self.items {
            out.put_u64_le(i.group.0);
            out.put_u64_le(i.term.0);
            out.put_u64_le(i.commit.0);
            out.put_u64_le(i.read_round);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<HeartbeatBatch, ProtocolError> {
        let from = NodeId(r.u64()?);
        let to = NodeId(r.u64()?);
        let n = r.count(32)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(HeartbeatItem {
                group: GroupId(r.u64()?),
                term: Term(r.u64()?),
                commit: LogIndex(r.u64()?),
                read_round: r.u64()?,
            });
        }
        Ok(HeartbeatBatch { from, to, items })
    }
}

/// One group's heartbeat answer inside a [`HeartbeatResponseBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatResponseItem {
    /// The group.
    pub group: GroupId,
    /// The responder's term in that group.
    pub term: Term,
    /// The round acknowledged.
    pub read_round: u64,
}

/// Heartbeat answers of many groups in one frame (type `0x19`, frame group
/// id 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatResponseBatch {
    /// The answering node.
    pub from: NodeId,
    /// The leader being answered.
    pub to: NodeId,
    /// One item per group.
    pub items: Vec<HeartbeatResponseItem>,
}

impl HeartbeatResponseBatch {
    /// The batch as single-group heartbeat answers, for the core.
    pub fn to_messages(&self) -> impl Iterator<Item = Message> + '_ {
        self.items.iter().map(|i| Message {
            group: i.group,
            from: self.from,
            to: self.to,
            term: i.term,
            body: MessageBody::HeartbeatResponse { read_round: i.read_round },
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        out.put_u64_le(self.from.0);
        out.put_u64_le(self.to.0);
        put_len(out, self.items.len())?;
        for i in &self.items {
            out.put_u64_le(i.group.0);
            out.put_u64_le(i.term.0);
            out.put_u64_le(i.read_round);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<HeartbeatResponseBatch, ProtocolError> {
        let from = NodeId(r.u64()?);
        let to = NodeId(r.u64()?);
        let n = r.count(24)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(HeartbeatResponseItem { group: GroupId(r.u64()?), term: Term(r.u64()?), read_round: r.u64()? });
        }
        Ok(HeartbeatResponseBatch { from, to, items })
    }
}
