//! Messages between nodes on the wire: [`PeerMsg`] (a Raft message, or a
//! heartbeat batch of many groups) is the engine's [`PeerBody`], so a
//! [`Packet`] here is the protocol crate's packet carrying them. The
//! protocol crate dispatches on the type byte and calls this codec for the
//! peer types (`0x10..0x20`, `raft_msgs.rs`).

use bytes::{Bytes, BytesMut};
use ringraft_proto::{Frame, MsgType, PeerBody, ProtocolError, Reader};

use super::raft_msgs::{decode_raft, encode_raft, raft_type, HeartbeatBatch, HeartbeatResponseBatch};
use crate::core::{GroupId, Message};

/// A message between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMsg {
    /// A Raft message of one group; its `group` is the frame's group id.
    Raft(Message),
    /// Heartbeats of many groups (frame group id 0).
    HeartbeatBatch(HeartbeatBatch),
    /// Heartbeat answers of many groups (frame group id 0).
    HeartbeatResponseBatch(HeartbeatResponseBatch),
}

impl PeerBody for PeerMsg {
    fn msg_type(&self) -> MsgType {
        match self {
            PeerMsg::Raft(m) => raft_type(&m.body),
            PeerMsg::HeartbeatBatch(_) => MsgType::HeartbeatBatch,
            PeerMsg::HeartbeatResponseBatch(_) => MsgType::HeartbeatResponseBatch,
        }
    }

    fn encode(&self, group: GroupId, out: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            PeerMsg::Raft(m) if m.group != group => {
                Err(ProtocolError::Malformed("raft message group differs from the frame's"))
            }
            PeerMsg::Raft(m) => encode_raft(out, m),
            PeerMsg::HeartbeatBatch(b) => b.encode(out),
            PeerMsg::HeartbeatResponseBatch(b) => b.encode(out),
        }
    }

    fn decode(kind: MsgType, group: GroupId, r: &mut Reader) -> Result<PeerMsg, ProtocolError> {
        Ok(match kind {
            MsgType::HeartbeatBatch => PeerMsg::HeartbeatBatch(HeartbeatBatch::decode(r)?),
            MsgType::HeartbeatResponseBatch => PeerMsg::HeartbeatResponseBatch(HeartbeatResponseBatch::decode(r)?),
            t => PeerMsg::Raft(decode_raft(t, group, r)?),
        })
    }
}

/// A decoded body as a node sees it (client bodies and [`PeerMsg`]s).
pub type Body = ringraft_proto::Body<PeerMsg>;

/// A frame's meaning as a node sees it.
pub type Packet = ringraft_proto::Packet<PeerMsg>;

/// A packet carrying one Raft message (group id from the message).
pub fn raft_packet(msg: Message) -> Packet {
    Packet { group: msg.group, request_id: 0, body: Body::Peer(PeerMsg::Raft(msg)) }
}

/// Decodes a frame's body as a node does (messages between nodes as
/// [`PeerMsg`]s): [`ringraft_proto::decode_packet`] for this crate's
/// [`Packet`].
///
/// # Errors
/// [`ProtocolError::UnknownType`] or any body error.
pub fn decode_packet(f: &Frame) -> Result<Packet, ProtocolError> {
    ringraft_proto::decode_packet(f)
}

/// Decodes a body of type `kind` as a node does (the entry point of the
/// body fuzzer): [`ringraft_proto::decode_body`] for this crate's
/// [`Packet`].
///
/// # Errors
/// [`ProtocolError::UnknownType`] or any body error.
pub fn decode_body(kind: u8, group: GroupId, request_id: u64, body: Bytes) -> Result<Packet, ProtocolError> {
    ringraft_proto::decode_body(kind, group, request_id, body)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use ringraft_proto::{encode_packet, FrameDecoder, DEFAULT_MAX_BODY};

    use super::*;
    use crate::core::{Entry, LogIndex, MessageBody, NodeId, Payload, Term};

    #[test]
    fn payloads_are_slices_of_the_read_buffer_and_the_encode_buffer_is_reused() {
        let msg = Message {
            group: GroupId(3),
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                entries: vec![Entry {
                    term: Term(1),
                    index: LogIndex(1),
                    payload: Payload::Normal(vec![9; 100].into()),
                }],
                commit: LogIndex(0),
            },
        };
        let mut out = BytesMut::with_capacity(4096);
        encode_packet(&mut out, &raft_packet(msg.clone())).unwrap();
        let first_len = out.len();
        let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
        d.push(&out);
        let f = d.next_frame().unwrap().unwrap();
        let p = decode_packet(&f).unwrap();
        assert_eq!(p.body, Body::Peer(PeerMsg::Raft(msg.clone())));
        let Body::Peer(PeerMsg::Raft(Message { body: MessageBody::AppendEntries { entries, .. }, .. })) = &p.body
        else {
            panic!()
        };
        let Payload::Normal(data) = &entries[0].payload else { panic!() };
        let range = f.body.as_ptr() as usize..f.body.as_ptr() as usize + f.body.len();
        assert!(range.contains(&(data.as_ptr() as usize)), "payload points into the frame body");

        let cap = out.capacity();
        out.clear();
        encode_packet(&mut out, &raft_packet(msg)).unwrap();
        assert_eq!((out.len(), out.capacity()), (first_len, cap), "no new allocation");

        // A group mismatch is refused and leaves the buffer as it was.
        let mut bad = raft_packet(Message { group: GroupId(4), ..p_msg(&p) });
        bad.group = GroupId(5);
        assert!(encode_packet(&mut out, &bad).is_err());
        assert_eq!(out.len(), first_len);
    }

    fn p_msg(p: &Packet) -> Message {
        match &p.body {
            Body::Peer(PeerMsg::Raft(m)) => m.clone(),
            _ => unreachable!(),
        }
    }
}
