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
//! [`Admission`] and answers `HelloOk`, or an `Error` frame, a `log::warn!`
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
mod direct;
mod event_loop;
mod peer;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use super::{encode_packet, Admission, Packet, ProtocolError, Role, DEFAULT_MAX_BODY};
use crate::core::NodeId;

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

/// Where a frame sent through a [`TransportHandle`] goes.
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
    replies: Vec<(ConnId, Packet)>,
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

/// Frames for the I/O thread: where they go, and the connection whose
/// `DirectState::queued` counted them, if one did (`direct.rs`).
type Queued = (Dest, Bytes, Option<Arc<direct::Direct>>);

/// State shared by the handles and the I/O thread.
struct Shared {
    /// Frames for the I/O thread.
    queue: Mutex<Vec<Queued>>,
    /// Open connections other threads may write to directly (`direct.rs`).
    direct: parking_lot::RwLock<hashbrown::HashMap<Dest, Arc<direct::Direct>>>,
    /// Peer addresses learned at run time (a member added by an operator).
    routes: Mutex<Vec<(NodeId, SocketAddr)>>,
    queue_max: usize,
    waker: mio::Waker,
    stop: AtomicBool,
    stats: Stats,
}

impl Shared {
    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("transport: waking the I/O thread failed: {e}");
        }
    }
}

/// A cheap, clonable sender usable from any thread.
#[derive(Clone)]
pub struct TransportHandle {
    shared: Arc<Shared>,
}

impl TransportHandle {
    /// Encodes `packet` here and queues it for `to`.
    ///
    /// # Errors
    /// [`SendError::Busy`] when the queue is full, [`SendError::Closed`]
    /// after shutdown, [`SendError::Encode`] for an unencodable packet.
    pub fn send(&self, to: Dest, packet: &Packet) -> Result<(), SendError> {
        let mut buf = BytesMut::with_capacity(256);
        encode_packet(&mut buf, packet).map_err(SendError::Encode)?;
        self.send_encoded(to, buf.freeze())
    }

    /// Queues frames already encoded (one or more whole frames) for `to`.
    ///
    /// # Errors
    /// [`SendError::Busy`] or [`SendError::Closed`].
    pub fn send_encoded(&self, to: Dest, frames: Bytes) -> Result<(), SendError> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let d = self.shared.direct.read().get(&to).map(Arc::clone);
        if let Some(d) = d {
            let mut st = d.lock();
            match direct::try_write(&d, &mut st, &frames) {
                direct::Written::Done { flush_needed: false } | direct::Written::Broken => return Ok(()),
                // The rest waits in `head`: an empty, counted item makes the
                // I/O thread flush this connection.
                direct::Written::Done { flush_needed: true } => {
                    st.queued += 1;
                    return self.push(to, Bytes::new(), Some(Arc::clone(&d)), false);
                }
                // Pushed while holding the connection's lock, so no later
                // direct write overtakes it.
                direct::Written::Queue => {
                    let r = self.push(to, frames, Some(Arc::clone(&d)), true);
                    if r.is_err() {
                        st.queued -= 1;
                    }
                    return r;
                }
            }
        }
        self.push(to, frames, None, true)
    }

    /// Puts frames on the I/O thread's queue (refused when full and
    /// `bounded`) and wakes it if the queue was empty.
    fn push(
        &self,
        to: Dest,
        frames: Bytes,
        counted: Option<Arc<direct::Direct>>,
        bounded: bool,
    ) -> Result<(), SendError> {
        let was_empty = {
            let mut q = self.shared.queue.lock();
            if bounded && q.len() >= self.shared.queue_max {
                return Err(SendError::Busy);
            }
            q.push((to, frames, counted));
            q.len() == 1
        };
        // Only the push that found the queue empty wakes: the I/O thread
        // takes the whole queue at once, so later pushes ride along.
        if was_empty {
            self.shared.wake();
        }
        Ok(())
    }

    /// Learns (or changes) the address of peer `node`: this node dials it
    /// from now on if its id is higher, as for the peers it started with.
    ///
    /// # Errors
    /// [`SendError::Closed`] after shutdown.
    pub fn add_peer(&self, node: NodeId, addr: SocketAddr) -> Result<(), SendError> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        self.shared.routes.lock().push((node, addr));
        self.shared.wake();
        Ok(())
    }

    /// The transport's counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

/// A running transport; dropping it shuts it down.
pub struct Transport {
    handle: TransportHandle,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Transport {
    /// Binds the listener and starts the I/O thread.
    ///
    /// # Errors
    /// Binding, creating the poll or spawning the thread failed.
    pub fn start(config: TransportConfig, handler: impl Handler) -> io::Result<Transport> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), event_loop::WAKER)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            direct: parking_lot::RwLock::new(hashbrown::HashMap::new()),
            routes: Mutex::new(Vec::new()),
            queue_max: config.queue_max,
            waker,
            stop: AtomicBool::new(false),
            stats: Stats::default(),
        });
        let lp = event_loop::IoLoop::new(config, poll, Arc::clone(&shared), Box::new(handler))?;
        let local_addr = lp.local_addr()?;
        let thread = std::thread::Builder::new().name(format!("rpc-io-{local_addr}")).spawn(move || lp.run())?;
        Ok(Transport { handle: TransportHandle { shared }, local_addr, thread: Some(thread) })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A sender for other threads.
    pub fn handle(&self) -> TransportHandle {
        self.handle.clone()
    }

    /// Stops the I/O thread, closes every socket, and waits for it.
    pub fn shutdown(&mut self) {
        self.handle.shared.stop.store(true, Ordering::Release);
        self.handle.shared.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("transport {}: the I/O thread panicked", self.local_addr);
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.shutdown();
    }
}
