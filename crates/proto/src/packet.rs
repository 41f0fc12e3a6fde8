//! A frame's meaning: [`Packet`] (group, request id, [`Body`]) and the
//! codec between packets and frames, dispatching on the type byte to the
//! message files (`client_msgs`, `handshake`).
//!
//! Messages between nodes (Raft messages, heartbeat batches) are not
//! this crate's: a [`Body`] carries them as a [`PeerBody`] the engine
//! defines and encodes. A client decodes with [`NoPeer`], so a peer
//! message on a client connection is an error, and the client needs
//! nothing of the server to speak the protocol.

use bytes::{BufMut, Bytes, BytesMut};

use super::client_msgs::{self, AdminRequest, ClientRequest, ClientResponse};
use super::error::ProtocolError;
use super::frame::{self, Frame, Reader};
use super::handshake::{ErrorFrame, Hello, HelloOk};
use super::ids::GroupId;
use super::msg_type::MsgType;

/// The messages between nodes a [`Body`] can carry, with their codec
/// (implemented by the engine for Raft messages and heartbeat batches).
pub trait PeerBody: Clone + std::fmt::Debug + PartialEq + Eq + Sized {
    /// The frame type this body travels as (one of [`MsgType::is_peer`]).
    fn msg_type(&self) -> MsgType;

    /// Appends the body's bytes to `out`; `group` is the frame's group id.
    ///
    /// # Errors
    /// [`ProtocolError::Malformed`] for a value the wire cannot carry.
    fn encode(&self, group: GroupId, out: &mut BytesMut) -> Result<(), ProtocolError>;

    /// Reads a body of the peer type `kind` in a frame of group `group`.
    ///
    /// # Errors
    /// Any body error.
    fn decode(kind: MsgType, group: GroupId, r: &mut Reader) -> Result<Self, ProtocolError>;
}

/// No messages between nodes: what a client speaks. A peer message
/// decoded with it is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPeer {}

impl PeerBody for NoPeer {
    fn msg_type(&self) -> MsgType {
        match *self {}
    }

    fn encode(&self, _group: GroupId, _out: &mut BytesMut) -> Result<(), ProtocolError> {
        match *self {}
    }

    fn decode(_kind: MsgType, _group: GroupId, _r: &mut Reader) -> Result<Self, ProtocolError> {
        Err(ProtocolError::Malformed("a message between nodes on a client connection"))
    }
}

/// A decoded message body; `P` is what messages between nodes decode to
/// ([`NoPeer`] for a client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<P = NoPeer> {
    /// Handshake request.
    Hello(Hello),
    /// Handshake acceptance.
    HelloOk(HelloOk),
    /// An error answer.
    Error(ErrorFrame),
    /// A message between nodes.
    Peer(P),
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

impl<P: PeerBody> Body<P> {
    /// The frame type this body travels as.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Body::Hello(_) => MsgType::Hello,
            Body::HelloOk(_) => MsgType::HelloOk,
            Body::Error(_) => MsgType::Error,
            Body::Peer(p) => p.msg_type(),
            Body::ClientRequest(r) => r.msg_type(),
            Body::ClientResponse(r) => r.msg_type(),
            Body::Admin(r) => r.msg_type(),
            Body::AdminResponse { .. } => MsgType::AdminResponse,
        }
    }
}

/// A frame's meaning: the header fields a sender chooses, and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<P = NoPeer> {
    /// The group id of the header. For a Raft message it must equal the
    /// message's group.
    pub group: GroupId,
    /// Chosen by the requester and echoed in the answer; 0 for one-way frames.
    pub request_id: u64,
    /// The body.
    pub body: Body<P>,
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
pub fn encode_packet<P: PeerBody>(out: &mut BytesMut, p: &Packet<P>) -> Result<(), ProtocolError> {
    let kind = p.body.msg_type() as u8;
    frame::write_frame(out, kind, p.group, p.request_id, |out| match &p.body {
        Body::Hello(h) => h.encode(out),
        Body::HelloOk(h) => {
            h.encode(out);
            Ok(())
        }
        Body::Error(e) => e.encode(out),
        Body::Peer(m) => m.encode(p.group, out),
        Body::ClientRequest(r) => r.encode(out),
        Body::ClientResponse(r) => r.encode(out),
        Body::Admin(r) => r.encode(out),
        Body::AdminResponse { index, leader } => {
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
pub fn decode_packet<P: PeerBody>(f: &Frame) -> Result<Packet<P>, ProtocolError> {
    decode_body(f.header.kind, f.header.group, f.header.request_id, f.body.clone())
}

/// Decodes a body of type `kind` (the entry point of the body fuzzer).
///
/// # Errors
/// [`ProtocolError::UnknownType`] or any body error.
pub fn decode_body<P: PeerBody>(
    kind: u8,
    group: GroupId,
    request_id: u64,
    body: Bytes,
) -> Result<Packet<P>, ProtocolError> {
    let t = MsgType::from_u8(kind).ok_or(ProtocolError::UnknownType(kind))?;
    let mut r = Reader::new(body);
    let body = match t {
        MsgType::Hello => Body::Hello(Hello::decode(&mut r)?),
        MsgType::HelloOk => Body::HelloOk(HelloOk::decode(&mut r)?),
        MsgType::Error => Body::Error(ErrorFrame::decode(&mut r)?),
        MsgType::AdminResponse => Body::AdminResponse { index: r.u64()?, leader: r.u64()? },
        t if t.is_peer() => Body::Peer(P::decode(t, group, &mut r)?),
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

    #[test]
    fn an_append_encoded_from_parts_is_the_same_frame_as_from_a_request() {
        let records = vec![Bytes::from_static(b"one"), Bytes::from_static(b"")];
        let req = ClientRequest::Append { stream: "s-1".into(), session: 7, seq: 9, records: records.clone() };
        let mut a = BytesMut::new();
        let p: Packet = Packet { group: GroupId(0), request_id: 42, body: Body::ClientRequest(req) };
        encode_packet(&mut a, &p).unwrap();
        let mut b = BytesMut::new();
        encode_append_request(&mut b, 42, "s-1", 7, 9, &records).unwrap();
        assert_eq!(a, b);
        let long = "x".repeat(70_000);
        assert!(encode_append_request(&mut b, 1, &long, 7, 9, &records).is_err());
        assert_eq!(a, b, "a failed encode leaves the buffer unchanged");
    }

    #[test]
    fn a_client_refuses_a_message_between_nodes() {
        let err = decode_body::<NoPeer>(MsgType::AppendEntries as u8, GroupId(1), 0, Bytes::new()).unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed(_)), "{err}");
    }
}
