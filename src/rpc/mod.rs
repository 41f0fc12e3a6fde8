//! The wire protocol: frames, message bodies and their codec, specified byte
//! by byte in `proto-spec/PROTOCOL.md` (with hex vectors in
//! `proto-spec/vectors/`).
//!
//! * [`frame`]: the 32-byte header, CRC32C, [`FrameDecoder`] for partial reads.
//! * `raft_msgs`: Raft messages between nodes, and heartbeat batches.
//! * `client_msgs`: client (streams) and admin (membership) requests/answers.
//! * `handshake`: hello / hello-ok / error frames, token check.
//! * `error`: [`ProtocolError`] and the wire [`ErrorCode`]s.
//! * [`transport`]: the mio transport (one I/O thread, one connection per
//!   node pair, handshake, bounded buffers, reconnect).
//!
//! Encoding appends to a caller-owned, reused `BytesMut`
//! ([`encode_packet`]); decoding ([`decode_packet`]) slices payloads out of
//! the frame's body without copying. No decoder panics on any input.

mod client_msgs;
mod error;
pub mod frame;
mod handshake;
mod msg_type;
mod packet;
mod raft_msgs;
pub mod transport;

pub use client_msgs::{
    AdminRequest, ClientRequest, ClientResponse, GroupStatus, Health, PeerProgress, ReadConsistency, Records,
    StreamInfo,
};
pub use error::{ErrorCode, ProtocolError};
pub use frame::{Frame, FrameDecoder, FrameHeader, DEFAULT_MAX_BODY, HEADER_BYTES, MAGIC, VERSION};
pub use handshake::{tokens_equal, Admission, ErrorFrame, Hello, HelloOk, Role, MAX_TOKEN};
pub use msg_type::MsgType;
pub use packet::{decode_body, decode_packet, encode_append_request, encode_packet, Body, Packet};
pub use raft_msgs::{HeartbeatBatch, HeartbeatItem, HeartbeatResponseBatch, HeartbeatResponseItem};
