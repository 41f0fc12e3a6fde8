//! What the transport promises its users, and nothing of how: connection
//! ids, [`Remote`], [`Dest`], the [`Handler`] a node gives it and the
//! [`Ctx`] it answers through, [`TransportConfig`], [`SendError`] and the
//! [`Stats`] counters. Every other file of the transport imports these.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;

use crate::core::NodeId;
use crate::rpc::{Admission, Packet, ProtocolError, Role, DEFAULT_MAX_BODY};

/// Identifies one connection for the life of a transport (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Who sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    /// The connection it came on (answer with [`Ctx::reply`]).
    pub conn: ConnId,
    /// The role granted at the handshake.
    pub role: Role,
    /// The peer's node id for [`Role::Peer`] connections.
    pub node: Option<NodeId>,
    /// The remote socket address.
    pub addr: SocketAddr,
}

/// Where a frame sent through a [`TransportHandle`](super::TransportHandle) goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// The connection to this node (dialled or accepted).
    Peer(NodeId),
    /// One connection (answers to clients).
    Conn(ConnId),
}

/// What the transport delivers to; every method runs on the I/O thread and
/// must not block.
pub trait Handler: Send + 'static {
    /// One decoded frame after the handshake.
    fn on_frame(&mut self, ctx: &mut Ctx, from: Remote, packet: Packet);
    /// A peer connection completed its handshake.
    fn on_peer_up(&mut self, _peer: NodeId) {}
    /// A peer connection closed.
    fn on_peer_down(&mut self, _peer: NodeId) {}
}

/// Answers a handler gives while handling a frame; written after it returns.
#[derive(Debug, Default)]
pub struct Ctx {
    pub(super) replies: Vec<(ConnId, Packet)>,
}

impl Ctx {
    /// Queues `packet` on connection `to` (dropped if it closed meanwhile).
    pub fn reply(&mut self, to: ConnId, packet: Packet) {
        self.replies.push((to, packet));
    }
}

/// The transport's settings.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Address to listen on (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// This node's identity and the tokens it admits.
    pub admission: Admission,
    /// The token this node presents when it dials a peer.
    pub peer_token: Bytes,
    /// Peers by node id. This node dials those with a higher id.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Largest frame body accepted.
    pub max_body: u32,
    /// Bytes a connection's write buffer (and a peer's pending buffer) may hold.
    pub write_buffer_max: usize,
    /// Frames the send queue holds before [`SendError::Busy`].
    pub queue_max: usize,
    /// Time allowed from accept/connect to a completed handshake.
    pub handshake_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// How long a refused connection drains input before it is dropped.
    pub close_linger: Duration,
    /// Connections beyond this many are accepted and closed at once.
    pub max_connections: usize,
}

impl TransportConfig {
    /// Defaults around `listen` and `admission`: 16 MiB bodies, 32 MiB write
    /// buffers, 65,536 queued frames, 5 s handshake, 10 ms..2 s backoff.
    pub fn new(listen: SocketAddr, admission: Admission) -> TransportConfig {
        TransportConfig {
            listen,
            peer_token: admission.peer_token.clone(),
            admission,
            peers: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
            write_buffer_max: 32 << 20,
            queue_max: 65_536,
            handshake_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_secs(2),
            close_linger: Duration::from_secs(1),
            max_connections: 4096,
        }
    }
}

/// Why a send was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The send queue is full; retry later.
    Busy,
    /// The transport has shut down.
    Closed,
    /// The packet cannot be encoded.
    Encode(ProtocolError),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Busy => write!(f, "transport send queue full"),
            SendError::Closed => write!(f, "transport shut down"),
            SendError::Encode(e) => write!(f, "cannot encode: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Counters, readable from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Handshakes refused (wrong cluster, token, version).
    pub refused: AtomicU64,
    /// Connections closed for a protocol error or a handshake timeout.
    pub protocol_errors: AtomicU64,
    /// Connections closed because the peer stopped reading.
    pub slow_readers: AtomicU64,
    /// Frames dropped because a peer was down and its pending buffer full.
    pub dropped: AtomicU64,
    /// Frames delivered to the handler.
    pub delivered: AtomicU64,
}
