//! What the I/O thread knows about one peer node: the route to it, the
//! frames waiting for it while it is down, and its reconnect backoff.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::Token;

/// One peer node.
pub(super) struct PeerSlot {
    /// The address to dial; `None` for peers that dial us (lower ids).
    pub(super) dial_addr: Option<SocketAddr>,
    /// The connection to the peer (in handshake or open).
    pub(super) conn: Option<Token>,
    /// The handshake completed on `conn`.
    pub(super) up: bool,
    /// Whole frames queued while the peer is not up.
    /// Invariant: `len() <= write_buffer_max`.
    pub(super) pending: BytesMut,
    /// The next reconnect delay (before jitter), in `[reconnect_min, reconnect_max]`.
    pub(super) backoff: Duration,
    /// When to dial next, if not connected.
    pub(super) next_dial: Option<Instant>,
}

impl PeerSlot {
    pub(super) fn new(dial_addr: Option<SocketAddr>, backoff: Duration) -> PeerSlot {
        PeerSlot { dial_addr, conn: None, up: false, pending: BytesMut::new(), backoff, next_dial: None }
    }
}
