//! A frame's meaning: [`Packet`] (group, request id, [`Body`]) and the
//! codec between packets and frames, dispatching on the type byte to the
//! message files (`raft_msgs`, `client_msgs`, `handshake`).

use bytes::{Bytes, BytesMut};

use super::client_msgs::{self, AdminRequest, ClientRequest, ClientResponse};
use super::error::ProtocolError;
use super::frame::{self, Frame};
use super::handshake::{ErrorFrame, Hello, HelloOk};
use super::msg_type::MsgType;
use super::raft_msgs::{self, HeartbeatBatch, HeartbeatResponseBatch};
use crate::core::{GroupId, Message};

/// A decoded message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Handshake request.
    Hello(Hello),
    /// Handshake acceptance.
    HelloOk(HelloOk),
    /// An error answer.
    Error(ErrorFrame),
    /// A Raft message of one group; its `group` is the frame's group id.
    Raft(Message),
    /// Heartbeats of many groups (frame group id 0).
    HeartbeatBatch(HeartbeatBatch),
    /// Heartbeat answers of many groups (frame group id 0).
    HeartbeatResponseBatch(HeartbeatResponseBatch),
    /// A client request.
    ClientRequest(ClientRequest),
    /// A client answer.
    ClientResponse(ClientResponse),
    /// An admin request.
    Admin(AdminRequest),
    /// The answer to an admin request: the log index of the change, and the
    /// leader that made it.
    AdminResponse {
        /// Log index at which the change (or snapshot) took effect.
        index: u64,
        /// The group's leader.
        leader: u64,
    },
}

impl Body {
    /// The frame type this body travels as.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Body::Hello(_) => MsgType::Hello,
            Body::HelloOk(_) => MsgType::HelloOk,
            Body::Error(_) => MsgType::Error,
            Body::Raft(m) => raft_msgs::raft_type(&m.body),
            Body::HeartbeatBatch(_) => MsgType::HeartbeatBatch,
            Body::HeartbeatResponseBatch(_) => MsgType::HeartbeatResponseBatch,
            Body::ClientRequest(r) => r.msg_type(),
            Body::ClientResponse(r) => r.msg_type(),
            Body::Admin(r) => r.msg_type(),
            Body::AdminResponse { .. } => MsgType::AdminResponse,
        }
    }
}

/// A frame's meaning: the header fields a sender chooses, and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The group id of the header. For [`Body::Raft`] it must equal the
    /// message's `group`.
    pub group: GroupId,
    /// Chosen by the requester and echoed in the answer; 0 for one-way frames.
    pub request_id: u64,
    /// The body.
    pub body: Body,
}

impl Packet {
    /// A packet carrying one Raft message (group id from the message).
    pub fn raft(msg: Message) -> Packet {
        Packet { group: msg.group, request_id: 0, body: Body::Raft(msg) }
    }
}

/// Appends one `Append` request frame to `out` from borrowed parts: what
/// [`encode_packet`] makes of a `ClientRequest::Append`, without building
/// one (the SDK's pipeline sends each append from its own copy).
///
/// # Errors
/// A stream name over 65,535 bytes or too many records; `out` is then
/// unchanged.
pub fn encode_append_request(
    out: &mut BytesMut,
    request_id: u64,
    stream: &str,
    session: u64,
    seq: u64,
    records: &[Bytes],
) -> Result<(), ProtocolError> {
    frame::write_frame(out, MsgType::Append as u8, GroupId(0), request_id, |out| {
        client_msgs::put_append(out, stream, session, seq, records)
    })
}

/// Appends `p` as one frame to `out` (a reused buffer).
///
/// # Errors
/// [`ProtocolError::Malformed`] for a value the wire cannot carry (a Raft
/// message whose group differs from the packet's, non-consecutive entries, a
/// string over 65,535 bytes, ...); `out` is then unchanged.
pub fn encode_packet(out: &mut BytesMut, p: &Packet) -> Result<(), ProtocolError> {
    let kind = p.body.msg_type() as u8;
    frame::write_frame(out, kind, p.group, p.request_id, |out| match &p.body {
        Body::Hello(h) => h.encode(out),
        Body::HelloOk(h) => {
            h.encode(out);
            Ok(())
        }
        Body::Error(e) => e.encode(out),
        Body::Raft(m) => {
            if m.group != p.group {
                return Err(ProtocolError::Malformed("raft message group differs from the frame's"));
            }
            raft_msgs::encode_raft(out, m)
        }
        Body::HeartbeatBatch(b) => b.encode(out),
        Body::HeartbeatResponseBatch(b) => b.encode(out),
        Body::ClientRequest(r) => r.encode(out),
        Body::ClientResponse(r) => r.encode(out),
        Body::Admin(r) => r.encode(out),
        Body::AdminResponse { index, leader } => {
            use bytes::BufMut;
            out.put_u64_le(*index);
            out.put_u64_le(*leader);
            Ok(())
        }
    })
}

/// Decodes a frame's body according to its type byte.
///
/// # Errors
/// [`ProtocolError::UnknownType`] or any body error.
pub fn decode_packet(f: &Frame) -> Result<Packet, ProtocolError> {
    decode_body(f.header.kind, f.header.group, f.header.request_id, f.body.clone())
}

/// Decodes a body of type `kind` (the entry point of the body fuzzer).
///
/// # Errors
/// [`ProtocolError::UnknownType`] or any body error.
pub fn decode_body(kind: u8, group: GroupId, request_id: u64, body: Bytes) -> Result<Packet, ProtocolError> {
    let t = MsgType::from_u8(kind).ok_or(ProtocolError::UnknownType(kind))?;
    let mut r = frame::Reader::new(body);
    let body = match t {
        MsgType::Hello => Body::Hello(Hello::decode(&mut r)?),
        MsgType::HelloOk => Body::HelloOk(HelloOk::decode(&mut r)?),
        MsgType::Error => Body::Error(ErrorFrame::decode(&mut r)?),
        MsgType::HeartbeatBatch => Body::HeartbeatBatch(HeartbeatBatch::decode(&mut r)?),
        MsgType::HeartbeatResponseBatch => Body::HeartbeatResponseBatch(HeartbeatResponseBatch::decode(&mut r)?),
        MsgType::AdminResponse => Body::AdminResponse { index: r.u64()?, leader: r.u64()? },
        t if (0x10..0x20).contains(&(t as u8)) => Body::Raft(raft_msgs::decode_raft(t, group, &mut r)?),
        t if (0x40..0x54).contains(&(t as u8)) && (t as u8) & 1 == 0 => {
            Body::ClientRequest(ClientRequest::decode(t, &mut r)?)
        }
        t if (0x40..0x54).contains(&(t as u8)) => Body::ClientResponse(ClientResponse::decode(t, &mut r)?),
        t => Body::Admin(AdminRequest::decode(t, &mut r)?),
    };
    r.finish()?;
    Ok(Packet { group, request_id, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Entry, LogIndex, MessageBody, NodeId, Payload, Term};
    use crate::rpc::{FrameDecoder, DEFAULT_MAX_BODY};

    #[test]
    fn an_append_encoded_from_parts_is_the_same_frame_as_from_a_request() {
        let records = vec![Bytes::from_static(b"one"), Bytes::from_static(b"")];
        let req = ClientRequest::Append { stream: "s-1".into(), session: 7, seq: 9, records: records.clone() };
        let mut a = BytesMut::new();
        encode_packet(&mut a, &Packet { group: GroupId(0), request_id: 42, body: Body::ClientRequest(req) }).unwrap();
        let mut b = BytesMut::new();
        encode_append_request(&mut b, 42, "s-1", 7, 9, &records).unwrap();
        assert_eq!(a, b);
        let long = "x".repeat(70_000);
        assert!(encode_append_request(&mut b, 1, &long, 7, 9, &records).is_err());
        assert_eq!(a, b, "a failed encode leaves the buffer unchanged");
    }

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
        encode_packet(&mut out, &Packet::raft(msg.clone())).unwrap();
        let first_len = out.len();
        let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
        d.push(&out);
        let f = d.next_frame().unwrap().unwrap();
        let p = decode_packet(&f).unwrap();
        assert_eq!(p.body, Body::Raft(msg.clone()));
        let Body::Raft(Message { body: MessageBody::AppendEntries { entries, .. }, .. }) = &p.body else { panic!() };
        let Payload::Normal(data) = &entries[0].payload else { panic!() };
        let range = f.body.as_ptr() as usize..f.body.as_ptr() as usize + f.body.len();
        assert!(range.contains(&(data.as_ptr() as usize)), "payload points into the frame body");

        let cap = out.capacity();
        out.clear();
        encode_packet(&mut out, &Packet::raft(msg)).unwrap();
        assert_eq!((out.len(), out.capacity()), (first_len, cap), "no new allocation");

        // A group mismatch is refused and leaves the buffer as it was.
        let mut bad = Packet::raft(Message { group: GroupId(4), ..p_msg(&p) });
        bad.group = GroupId(5);
        assert!(encode_packet(&mut out, &bad).is_err());
        assert_eq!(out.len(), first_len);
    }

    fn p_msg(p: &Packet) -> Message {
        match &p.body {
            Body::Raft(m) => m.clone(),
            _ => unreachable!(),
        }
    }
}
