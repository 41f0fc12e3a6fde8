//! The I/O thread: accepts, dials, reads, runs the handshake, delivers
//! frames to the handler, coalesces writes, and enforces every timeout and
//! bound. See the module docs of `transport` for the design.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::conn::{Conn, Phase};
use super::contract::{ConnId, Ctx, Dest, Handler, Remote, TransportConfig};
use super::peer::PeerSlot;
use super::shared::{Queued, Shared};
use crate::core::{GroupId, NodeId};
use crate::rpc::{
    decode_packet, encode_packet, Body, ErrorCode, ErrorFrame, Frame, Hello, MsgType, Packet, PeerMsg, Role, VERSION,
};

const LISTENER: Token = Token(0);
pub(super) const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Bytes one `read` call may bring in.
const READ_CHUNK: usize = 64 * 1024;

pub(super) struct IoLoop {
    cfg: TransportConfig,
    poll: Poll,
    listener: TcpListener,
    shared: Arc<Shared>,
    handler: Box<dyn Handler>,
    /// Invariant: keys are never reused (`next_token` only grows).
    conns: HashMap<Token, Conn>,
    next_token: usize,
    peers: HashMap<NodeId, PeerSlot>,
    scratch: Vec<u8>,
    ctx: Ctx,
    to_flush: Vec<Token>,
    rng: u64,
}

impl IoLoop {
    pub(super) fn new(
        cfg: TransportConfig,
        poll: Poll,
        shared: Arc<Shared>,
        handler: Box<dyn Handler>,
    ) -> io::Result<IoLoop> {
        let mut listener = TcpListener::bind(cfg.listen)?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let me = cfg.admission.node_id;
        let mut peers = HashMap::new();
        for &(id, addr) in &cfg.peers {
            let dial = id.0 > me;
            let mut slot = PeerSlot::new(dial.then_some(addr), cfg.reconnect_min);
            slot.next_dial = dial.then(Instant::now);
            peers.insert(id, slot);
        }
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Ok(IoLoop {
            rng: (seed ^ me.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
            cfg,
            poll,
            listener,
            shared,
            handler,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            peers,
            scratch: vec![0; READ_CHUNK],
            ctx: Ctx::default(),
            to_flush: Vec::new(),
        })
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("rpc: poll failed, the transport stops: {e}");
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {} // the queue is drained below, every turn
                    t => {
                        if ev.is_writable() {
                            self.on_writable(t);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read_conn(t);
                        }
                    }
                }
            }
            self.drain_queue();
            self.on_timers(Instant::now());
            self.flush_all();
        }
        // Dropping the sockets closes them.
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            self.close(t);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| c.deadline);
        let dials = self.peers.values().filter(|p| p.conn.is_none()).filter_map(|p| p.next_dial);
        conns.chain(dials).min()
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, addr)) => self.on_accepted(stream, addr),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the listener stays registered and
                    // the next readiness edge retries.
                    log::warn!("rpc: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn on_accepted(&mut self, stream: TcpStream, addr: SocketAddr) {
        self.shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if self.conns.len() >= self.cfg.max_connections {
            log::warn!("rpc {addr}: refused, {} connections open", self.conns.len());
            return;
        }
        let mut c = Conn::new(stream, addr, Phase::AwaitHello, self.cfg.max_body);
        c.deadline = Some(Instant::now() + self.cfg.handshake_timeout);
        self.insert(c);
    }

    fn insert(&mut self, mut c: Conn) -> Option<Token> {
        let t = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self.poll.registry().register(&mut c.stream, t, Interest::READABLE | Interest::WRITABLE) {
            log::warn!("rpc {}: register failed: {e}", c.addr);
            return None;
        }
        self.conns.insert(t, c);
        Some(t)
    }

    fn dial(&mut self, peer: NodeId) {
        let Some(slot) = self.peers.get_mut(&peer) else { return };
        let Some(addr) = slot.dial_addr else { return };
        slot.next_dial = None;
        let stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("rpc: dialling node {} at {addr}: {e}", peer.0);
                self.schedule_redial(peer);
                return;
            }
        };
        let mut c = Conn::new(stream, addr, Phase::AwaitHelloOk { expect: peer }, self.cfg.max_body);
        c.connected = false;
        c.node = Some(peer);
        c.deadline = Some(Instant::now() + self.cfg.handshake_timeout);
        let hello = Packet {
            group: GroupId(0),
            request_id: 1,
            body: Body::Hello(Hello {
                cluster_id: self.cfg.admission.cluster_id,
                node_id: self.cfg.admission.node_id,
                role: Role::Peer,
                min_version: VERSION,
                max_version: VERSION,
                token: self.cfg.peer_token.clone(),
            }),
        };
        if let Err(e) = encode_packet(&mut c.wbuf, &hello) {
            log::error!("rpc: cannot encode our hello: {e}");
            return;
        }
        match self.insert(c) {
            Some(t) => {
                if let Some(slot) = self.peers.get_mut(&peer) {
                    slot.conn = Some(t);
                }
            }
            None => self.schedule_redial(peer),
        }
    }

    fn schedule_redial(&mut self, peer: NodeId) {
        let r = self.next_rand();
        let Some(slot) = self.peers.get_mut(&peer) else { return };
        if slot.dial_addr.is_none() {
            return;
        }
        // Jitter: a uniform delay in [d/2, d].
        let d = slot.backoff.as_micros() as u64;
        let delay = Duration::from_micros(d / 2 + r % (d / 2 + 1));
        slot.next_dial = Some(Instant::now() + delay);
        slot.backoff = (slot.backoff * 2).min(self.cfg.reconnect_max);
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64: jitter needs spread, not quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn on_writable(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else { return };
        match c.check_connected() {
            Ok(true) => self.mark_flush(t),
            Ok(false) => {}
            Err(e) => {
                log::debug!("rpc: connecting to {}: {e}", c.addr);
                self.close(t);
            }
        }
    }

    fn read_conn(&mut self, t: Token) {
        loop {
            let Some(c) = self.conns.get_mut(&t) else { return };
            match c.read_once(&mut self.scratch) {
                Ok(0) => {
                    let (closing, buffered) = (c.phase == Phase::Closing, c.decoder.buffered());
                    if !closing && buffered > 0 {
                        let msg = format!("stream ended inside a frame ({buffered} bytes buffered)");
                        self.fail(t, ErrorCode::Protocol, &msg);
                        // The peer sent everything it will: write the error
                        // frame now, nothing is left to linger for.
                        if let Some(c) = self.conns.get_mut(&t) {
                            let _ = c.flush();
                        }
                    }
                    self.close(t);
                    return;
                }
                Ok(_) => {
                    if self.conns.get(&t).is_some_and(|c| c.phase != Phase::Closing) {
                        self.process_frames(t);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("rpc {}: read: {e}", c.addr);
                    self.close(t);
                    return;
                }
            }
        }
    }

    fn process_frames(&mut self, t: Token) {
        while let Some(c) = self.conns.get_mut(&t) {
            if c.phase == Phase::Closing {
                break;
            }
            match c.decoder.next_frame() {
                Ok(Some(f)) => self.on_frame_in(t, f),
                Ok(None) => break,
                Err(e) => {
                    self.fail(t, e.code(), &e.to_string());
                    break;
                }
            }
        }
        let mut replies = std::mem::take(&mut self.ctx.replies);
        for (to, p) in replies.drain(..) {
            self.send_packet(Token(to.0 as usize), &p);
        }
        self.ctx.replies = replies;
    }

    fn on_frame_in(&mut self, t: Token, f: Frame) {
        let Some(c) = self.conns.get(&t) else { return };
        let phase = c.phase;
        if phase == Phase::AwaitHello && f.header.kind != MsgType::Hello as u8 {
            let msg = format!("out of order: frame type 0x{:02x} before Hello", f.header.kind);
            return self.fail(t, ErrorCode::Protocol, &msg);
        }
        let p = match decode_packet(&f) {
            Ok(p) => p,
            Err(e) => return self.fail(t, e.code(), &e.to_string()),
        };
        match (phase, p.body) {
            (Phase::AwaitHello, Body::Hello(h)) => self.on_hello(t, p.request_id, h),
            (Phase::AwaitHelloOk { expect }, Body::HelloOk(ok)) => {
                if ok.node_id != expect.0 || ok.cluster_id != self.cfg.admission.cluster_id {
                    let msg = format!("expected node {} of our cluster, found node {}", expect.0, ok.node_id);
                    return self.fail(t, ErrorCode::WrongCluster, &msg);
                }
                self.peer_up(t, expect);
            }
            (Phase::AwaitHelloOk { expect }, Body::Error(e)) => {
                let addr = self.conns.get(&t).map(|c| c.addr);
                log::warn!("rpc: node {} at {addr:?} refused us: {:?}: {}", expect.0, e.code(), e.message);
                self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.close(t);
            }
            (Phase::AwaitHelloOk { .. }, _) => self.fail(t, ErrorCode::Protocol, "out of order: expected HelloOk"),
            (Phase::Open, Body::Hello(_) | Body::HelloOk(_)) => {
                self.fail(t, ErrorCode::Protocol, "out of order: handshake frame after the handshake")
            }
            (Phase::Open, body) => self.deliver(t, Packet { body, ..p }),
            _ => {}
        }
    }

    fn on_hello(&mut self, t: Token, request_id: u64, h: Hello) {
        let me = self.cfg.admission.node_id;
        let verdict = match self.cfg.admission.admit(&h) {
            Ok(_) if h.role == Role::Peer && (h.node_id == 0 || h.node_id == me) => {
                Err(ErrorFrame::new(ErrorCode::BadRequest, 0, format!("peer node id {} not allowed", h.node_id)))
            }
            v => v,
        };
        let Some(c) = self.conns.get_mut(&t) else { return };
        match verdict {
            Ok(ok) => {
                c.role = h.role;
                c.phase = Phase::Open;
                c.deadline = None;
                let p = Packet { group: GroupId(0), request_id, body: Body::HelloOk(ok) };
                self.send_packet(t, &p);
                if h.role == Role::Peer {
                    self.adopt_peer(t, NodeId(h.node_id));
                } else {
                    self.open_direct(t, None);
                }
            }
            Err(e) => {
                log::warn!(
                    "rpc {}: refused hello (node {}, role {:?}, cluster {}): {:?}: {}",
                    c.addr,
                    h.node_id,
                    h.role,
                    h.cluster_id,
                    e.code(),
                    e.message
                );
                self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.refuse(t, request_id, e);
            }
        }
    }

    /// An accepted peer connection becomes the route to `node`, replacing
    /// an older one (the peer restarted).
    fn adopt_peer(&mut self, t: Token, node: NodeId) {
        let min = self.cfg.reconnect_min;
        let slot = self.peers.entry(node).or_insert_with(|| PeerSlot::new(None, min));
        if let Some(old) = slot.conn.filter(|&o| o != t) {
            self.close(old);
        }
        if let Some(c) = self.conns.get_mut(&t) {
            c.node = Some(node);
        }
        self.peer_up(t, node);
    }

    fn peer_up(&mut self, t: Token, node: NodeId) {
        let Some(slot) = self.peers.get_mut(&node) else { return };
        slot.conn = Some(t);
        slot.up = true;
        slot.backoff = self.cfg.reconnect_min;
        slot.next_dial = None;
        let pending = std::mem::take(&mut slot.pending);
        if let Some(c) = self.conns.get_mut(&t) {
            c.phase = Phase::Open;
            c.deadline = None;
        }
        if !pending.is_empty() {
            self.append(t, &pending);
        }
        self.open_direct(t, Some(node));
        self.handler.on_peer_up(node);
    }

    /// Lets other threads write to open connection `t` directly (as
    /// `Dest::Conn`, and as `Dest::Peer(node)` for a peer's).
    fn open_direct(&mut self, t: Token, node: Option<NodeId>) {
        let Some(c) = self.conns.get_mut(&t) else { return };
        let Some(d) = c.share_write_side() else { return };
        let mut map = self.shared.direct.write();
        map.insert(Dest::Conn(ConnId(t.0 as u64)), Arc::clone(&d));
        if let Some(n) = node {
            map.insert(Dest::Peer(n), d);
        }
        drop(map);
        // The first flush clears `busy` once the handshake answer is out.
        self.mark_flush(t);
    }

    /// Stops direct writes to connection `t` (it is closing or closed).
    fn close_direct(&mut self, t: Token) {
        let Some(d) = self.conns.get(&t).and_then(|c| c.direct.clone()) else { return };
        d.lock().closed = true;
        self.shared.direct.write().retain(|_, v| !Arc::ptr_eq(v, &d));
    }

    fn deliver(&mut self, t: Token, p: Packet) {
        let Some(c) = self.conns.get(&t) else { return };
        let allowed = match &p.body {
            Body::Peer(PeerMsg::Raft(_))
            | Body::Peer(PeerMsg::HeartbeatBatch(_))
            | Body::Peer(PeerMsg::HeartbeatResponseBatch(_)) => c.role == Role::Peer,
            Body::Admin(_) => c.role == Role::Admin,
            _ => true,
        };
        if !allowed {
            let msg = format!("a {:?} connection may not send {:?}", c.role, p.body.msg_type());
            return self.refuse_with(t, p.request_id, ErrorCode::Unauthorized, &msg);
        }
        let from = Remote { conn: ConnId(t.0 as u64), role: c.role, node: c.node, addr: c.addr };
        self.shared.stats.delivered.fetch_add(1, Ordering::Relaxed);
        self.handler.on_frame(&mut self.ctx, from, p);
    }

    /// A protocol error: one error frame (request id 0), then close.
    fn fail(&mut self, t: Token, code: ErrorCode, msg: &str) {
        let Some(c) = self.conns.get(&t) else { return };
        if c.phase == Phase::Closing {
            return;
        }
        log::warn!("rpc {}: {msg}; closing", c.addr);
        self.shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        self.refuse(t, 0, ErrorFrame::new(code, 0, msg));
    }

    fn refuse_with(&mut self, t: Token, request_id: u64, code: ErrorCode, msg: &str) {
        if let Some(c) = self.conns.get(&t) {
            log::warn!("rpc {}: {msg}; closing", c.addr);
        }
        self.refuse(t, request_id, ErrorFrame::new(code, 0, msg));
    }

    /// Queues `e`, then closes: the write side shuts once it is flushed and
    /// input is drained until end of stream or `close_linger`.
    fn refuse(&mut self, t: Token, request_id: u64, e: ErrorFrame) {
        self.close_direct(t);
        let p = Packet { group: GroupId(0), request_id, body: Body::Error(e) };
        self.send_packet(t, &p);
        self.detach_peer(t);
        let linger = self.cfg.close_linger;
        if let Some(c) = self.conns.get_mut(&t) {
            c.phase = Phase::Closing;
            c.deadline = Some(Instant::now() + linger);
            self.mark_flush(t);
        }
    }

    /// Encodes `p` straight into connection `t`'s write buffer (no copy),
    /// under the same bound as [`IoLoop::append`].
    fn send_packet(&mut self, t: Token, p: &Packet) {
        let max = self.cfg.write_buffer_max;
        let Some(c) = self.conns.get_mut(&t) else { return };
        let before = c.wbuf.len();
        if let Err(e) = encode_packet(&mut c.wbuf, p) {
            log::error!("rpc: cannot encode {:?}: {e}", p.body.msg_type());
            return;
        }
        if c.wbuf.len() > max {
            c.wbuf.truncate(before);
            self.on_slow_reader(t);
            return;
        }
        self.mark_flush(t);
    }

    fn on_slow_reader(&mut self, t: Token) {
        if let Some(c) = self.conns.get(&t) {
            log::warn!("rpc {}: peer is not reading ({} bytes unsent); disconnecting", c.addr, c.wbuf.len());
        }
        self.shared.stats.slow_readers.fetch_add(1, Ordering::Relaxed);
        self.close(t);
    }

    /// Appends whole frames to a write buffer; a buffer that would pass its
    /// bound means the peer stopped reading: it is disconnected.
    fn append(&mut self, t: Token, frames: &[u8]) {
        let max = self.cfg.write_buffer_max;
        let Some(c) = self.conns.get_mut(&t) else { return };
        if c.wbuf.len() + frames.len() > max {
            return self.on_slow_reader(t);
        }
        c.wbuf.extend_from_slice(frames);
        self.mark_flush(t);
    }

    fn mark_flush(&mut self, t: Token) {
        if let Some(c) = self.conns.get_mut(&t) {
            if !c.dirty {
                c.dirty = true;
                self.to_flush.push(t);
            }
        }
    }

    fn flush_all(&mut self) {
        let mut list = std::mem::take(&mut self.to_flush);
        for t in list.drain(..) {
            let Some(c) = self.conns.get_mut(&t) else { continue };
            c.dirty = false;
            if let Err(e) = c.flush() {
                log::debug!("rpc {}: write: {e}", c.addr);
                self.close(t);
            }
        }
        self.to_flush = list;
    }

    fn drain_routes(&mut self) {
        let routes: Vec<(NodeId, SocketAddr)> = std::mem::take(&mut *self.shared.routes.lock());
        let me = self.cfg.admission.node_id;
        for (id, addr) in routes {
            if id.0 == me {
                continue;
            }
            let slot = self.peers.entry(id).or_insert_with(|| PeerSlot::new(None, self.cfg.reconnect_min));
            if id.0 > me && slot.dial_addr != Some(addr) {
                log::info!("rpc: peer {id} is at {addr}");
                slot.dial_addr = Some(addr);
                if slot.conn.is_none() {
                    slot.next_dial = Some(Instant::now());
                }
            }
        }
    }

    fn drain_queue(&mut self) {
        self.drain_routes();
        let batch: Vec<Queued> = std::mem::take(&mut *self.shared.queue.lock());
        for (dest, frames, counted) in batch {
            match dest {
                Dest::Conn(id) => {
                    let t = Token(id.0 as usize);
                    if self.conns.get(&t).is_some_and(|c| c.phase == Phase::Open) {
                        self.append(t, &frames);
                    }
                }
                Dest::Peer(n) => self.send_to_peer(n, &frames),
            }
            if let Some(d) = counted {
                // In the buffer now (or dropped with a closed connection):
                // no longer between a sender and the buffer. The flush
                // that empties the buffer clears `busy`.
                let mut st = d.lock();
                st.queued = st.queued.saturating_sub(1);
            }
        }
    }

    fn send_to_peer(&mut self, n: NodeId, frames: &[u8]) {
        let max = self.cfg.write_buffer_max;
        let Some(slot) = self.peers.get_mut(&n) else {
            self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match slot.conn {
            Some(t) if slot.up => self.append(t, frames),
            _ if slot.pending.len() + frames.len() <= max => slot.pending.extend_from_slice(frames),
            _ => {
                self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        let expired: Vec<Token> =
            self.conns.iter().filter(|(_, c)| c.deadline.is_some_and(|d| d <= now)).map(|(t, _)| *t).collect();
        for t in expired {
            let Some(c) = self.conns.get(&t) else { continue };
            match c.phase {
                Phase::Closing => self.close(t),
                Phase::AwaitHello => self.fail(t, ErrorCode::Protocol, "handshake timeout"),
                _ => {
                    log::warn!("rpc {}: no HelloOk within the handshake timeout", c.addr);
                    self.close(t);
                }
            }
        }
        let due: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.conn.is_none() && p.next_dial.is_some_and(|d| d <= now))
            .map(|(n, _)| *n)
            .collect();
        for n in due {
            self.dial(n);
        }
    }

    /// Forgets `t` as the route to its peer; schedules a redial if we dial.
    fn detach_peer(&mut self, t: Token) {
        let Some(node) = self.conns.get(&t).and_then(|c| c.node) else { return };
        let Some(slot) = self.peers.get_mut(&node) else { return };
        if slot.conn != Some(t) {
            return;
        }
        slot.conn = None;
        let was_up = std::mem::replace(&mut slot.up, false);
        self.schedule_redial(node);
        if was_up {
            self.handler.on_peer_down(node);
        }
    }

    fn close(&mut self, t: Token) {
        self.close_direct(t);
        self.detach_peer(t);
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            if c.direct.is_some() {
                // Senders' duplicate of the socket would keep it open.
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
