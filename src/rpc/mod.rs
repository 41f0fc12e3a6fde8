//! Messages between nodes and the transport that carries every frame.
//!
//! The wire protocol itself (frames, handshake, client and admin messages,
//! the packet codec) is the `ringraft-proto` crate, specified byte by byte
//! in `proto-spec/PROTOCOL.md`; its items are re-exported here. This module
//! adds what only nodes speak:
//!
//! * `raft_msgs`: Raft messages between nodes, and heartbeat batches.
//! * `peer`: [`PeerMsg`], the protocol crate's peer body, so [`Packet`]
//!   here carries them.
//! * [`transport`]: the mio transport (one I/O thread, one connection per
//!   node pair, handshake, bounded buffers, reconnect).

mod peer;
mod raft_msgs;
pub mod transport;

pub use peer::{decode_body, decode_packet, raft_packet, Body, Packet, PeerMsg};
pub use raft_msgs::{HeartbeatBatch, HeartbeatItem, HeartbeatResponseBatch, HeartbeatResponseItem};
pub use ringraft_proto::{
    encode_append_request, encode_packet, frame, tokens_equal, AdminRequest, Admission, ClientRequest, ClientResponse,
    ErrorCode, ErrorFrame, Frame, FrameDecoder, FrameHeader, GroupStatus, Health, Hello, HelloOk, MsgType,
    PeerProgress, ProtocolError, ReadConsistency, Records, Role, StreamInfo, DEFAULT_MAX_BODY, HEADER_BYTES, MAGIC,
    MAX_TOKEN, VERSION,
};
