//! The mio transport: one I/O thread per process drives the listener and
//! every connection (peers, clients, operators) with one `mio::Poll`.
//!
//! # Threads, queues, wake-ups
//!
//! * One I/O thread ([`Transport::start`]) owns every socket. It blocks in
//!   `Poll::poll` with a timeout computed from the nearest deadline (a
//!   handshake timeout, a reconnect backoff, a closing linger); an idle
//!   transport makes no system calls and uses ~0 % CPU.
//! * Other threads send through a [`TransportHandle`]: the frame is encoded on
//!   the caller's thread and pushed on a bounded queue (`queue_max` frames;
//!   full → [`SendError::Busy`]). Only the push that finds the queue empty
//!   wakes the I/O thread through `mio::Waker`, so a burst costs one wake-up.
//!   Once a connection is open, a sender writes straight into its socket
//!   whenever the I/O thread has nothing pending for it (`direct.rs`), so
//!   at low load a send wakes nobody.
//! * Received frames are decoded on the I/O thread and given to the user's
//!   [`Handler`], also on the I/O thread; it may answer at once through
//!   [`Ctx::reply`] (no queue, no wake-up).
//!
//! # Buffers
//!
//! Each connection has one write buffer. The I/O thread appends every frame
//! queued for that connection, then issues one `write` per connection per loop
//! turn, so a burst of frames to a peer is coalesced into as few writes as the
//! socket accepts. A buffer may not exceed `write_buffer_max` bytes: a peer
//! that stops reading is disconnected, never allowed to grow memory. Frames
//! for a peer that is not connected wait in a pending buffer bounded the same
//! way (frames that do not fit are dropped and counted; Raft retries).
//!
//! # Topology: one connection per node pair
//!
//! One TCP connection per *unordered* node pair carries the Raft traffic of
//! every group both directions. **The node with the lower id dials**; the
//! higher one only accepts. This rules out the race of two simultaneous dials
//! without any tie-breaking protocol. When a peer restarts, the dialler sees
//! the close and reconnects with capped exponential backoff and jitter
//! (`[d/2, d]`, `d` doubling from `reconnect_min` to `reconnect_max`, reset by
//! a successful handshake). An accepted peer connection that claims a node id
//! already connected replaces the old connection (the peer restarted before
//! the old one was seen to close).
//!
//! # Handshake and bad input
//!
//! The connecting side sends `Hello`; the acceptor checks it with
//! [`Admission`](crate::rpc::Admission) and answers `HelloOk`, or an `Error` frame, a `log::warn!`
//! naming the remote address and the reason, and a close. A connection that
//! has not completed the handshake within `handshake_timeout` is closed (a
//! slow-loris costs one socket for that long). Any protocol error (truncated
//! stream, oversized, bad magic/version/flags, bad CRC, unknown type,
//! malformed body, a frame before `Hello`, a second `Hello`, a message the
//! role may not send) is answered with one `Error` frame and a close; other
//! connections are unaffected. A close after an error frame half-closes the
//! socket and discards input for up to `close_linger` so that the error frame
//! is not destroyed by a TCP reset before the peer reads it.
//!
//! # Non-guarantees
//!
//! * Frames are delivered in order per connection, but frames queued while a
//!   peer is disconnected beyond the pending bound, or in a write buffer when
//!   a connection drops, are lost.
//! * The handler must not block: it runs on the I/O thread.

mod conn;
mod contract;
mod direct;
mod event_loop;
mod handle;
mod peer;
mod shared;

pub use contract::{ConnId, Ctx, Dest, Handler, Remote, SendError, Stats, TransportConfig};
pub use handle::{Transport, TransportHandle};
