//! The ringraft wire protocol, as both sides speak it: specified byte by
//! byte in `proto-spec/PROTOCOL.md` (hex vectors in `proto-spec/vectors/`).
//!
//! * [`frame`]: the 32-byte header, CRC32C, [`FrameDecoder`] for partial
//!   reads, and the [`Reader`] every body decoder reads with.
//! * `handshake`: hello / hello-ok / error frames, token check.
//! * `client_msgs`: client (streams) and admin (membership) requests and
//!   answers.
//! * `packet`: [`Packet`] and [`Body`], and the codec between packets and
//!   frames. Messages between nodes are the engine's ([`PeerBody`]); a
//!   client decodes with [`NoPeer`].
//! * `ids`: the newtypes both sides share ([`NodeId`], [`GroupId`],
//!   [`Term`], [`LogIndex`], [`ReadId`]).
//! * `error`: [`ProtocolError`] and the wire [`ErrorCode`]s.
//!
//! Encoding appends to a caller-owned, reused `BytesMut`
//! ([`encode_packet`]); decoding ([`decode_packet`]) slices payloads out of
//! the frame's body without copying. No decoder panics on any input.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod client_msgs;
mod error;
pub mod frame;
mod handshake;
mod ids;
mod msg_type;
mod packet;

pub use client_msgs::{
    AdminRequest, ClientRequest, ClientResponse, GroupStatus, Health, PeerProgress, ReadConsistency, Records,
    StreamInfo,
};
pub use error::{ErrorCode, ProtocolError};
pub use frame::{
    put_len, put_string, Frame, FrameDecoder, FrameHeader, Reader, DEFAULT_MAX_BODY, HEADER_BYTES, MAGIC, VERSION,
};
pub use handshake::{tokens_equal, Admission, ErrorFrame, Hello, HelloOk, Role, MAX_TOKEN};
pub use ids::{GroupId, LogIndex, NodeId, ReadId, Term};
pub use msg_type::MsgType;
pub use packet::{decode_body, decode_packet, encode_append_request, encode_packet, Body, NoPeer, Packet, PeerBody};
