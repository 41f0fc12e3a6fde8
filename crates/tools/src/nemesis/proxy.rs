//! A fault-injecting TCP proxy for one link (this kernel has no `tc
//! netem`): it listens on 127.0.0.1, forwards every accepted connection to
//! its target, and applies the faults set on it to each direction.
//!
//! * **blackhole** a direction: bytes are read and thrown away, the
//!   connection stays up (a partition the sockets do not notice; with one
//!   direction only, an asymmetric one);
//! * **delay** a direction: each chunk waits before it is forwarded;
//! * **drop** a share of a direction's frames (a framed proxy only, see
//!   [`Proxy::start_framed`]): whole ringraft frames vanish from a stream
//!   that stays up, so every later frame still parses;
//! * **cut**: every open connection is closed at once, so the peers
//!   reconnect (frames in flight are lost; what was sent after a
//!   reconnect can overtake them).
//!
//! Two threads per proxied connection move the bytes, blocked in `read`
//! while idle (no polling); a cut or a dropped proxy shuts the sockets
//! down, which ends them. The acceptor blocks in `accept`; dropping the
//! proxy wakes it with a connection of its own.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

/// The faults of one direction of a link.
#[derive(Debug, Default)]
struct Way {
    /// Bytes are dropped, the connection kept.
    blackhole: AtomicBool,
    /// Milliseconds each chunk waits.
    delay_ms: AtomicU64,
    /// Frames dropped per thousand (framed proxies only).
    drop_per_mille: AtomicU64,
}

/// State shared by the proxy's threads.
#[derive(Debug, Default)]
struct Shared {
    /// Client → target.
    forward: Way,
    /// Target → client.
    backward: Way,
    stop: AtomicBool,
    /// Forward whole ringraft frames only (so that some can be dropped).
    framed: bool,
    /// Open links by id (both sockets), to close on `cut`.
    open: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    next_link: AtomicU64,
    /// Bytes forwarded and dropped, for tests and reports.
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// Which way of the link a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting side to the target.
    Forward,
    /// From the target back.
    Backward,
}

/// A running proxy; see the module docs.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on an ephemeral 127.0.0.1 port and forwards to `target`.
    ///
    /// # Errors
    /// Binding or spawning the acceptor failed.
    pub fn start(target: SocketAddr) -> io::Result<Proxy> {
        Proxy::start_with(target, false)
    }

    /// Like [`Proxy::start`] for a link that carries ringraft frames
    /// (`proto-spec/PROTOCOL.md`: a 32-byte header whose bytes 24..28 are
    /// the body length): it forwards whole frames only, so that
    /// [`Proxy::drop_frames`] can drop some. A stream that does not parse
    /// as frames (a length over 64 MiB) is forwarded raw from there on.
    ///
    /// # Errors
    /// As [`Proxy::start`].
    pub fn start_framed(target: SocketAddr) -> io::Result<Proxy> {
        Proxy::start_with(target, true)
    }

    fn start_with(target: SocketAddr, framed: bool) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { framed, ..Shared::default() });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(&listener, target, &s))?;
        Ok(Proxy { addr, shared, acceptor: Some(acceptor) })
    }

    /// Where clients of the link connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops (or, with `false`, forwards again) the bytes of one direction.
    pub fn blackhole(&self, d: Direction, on: bool) {
        self.way(d).blackhole.store(on, Ordering::Release);
    }

    /// Delays each chunk of one direction.
    pub fn delay(&self, d: Direction, by: Duration) {
        self.way(d).delay_ms.store(by.as_millis() as u64, Ordering::Release);
    }

    /// Drops `per_mille` of every thousand frames of one direction, never a
    /// connection's first (its handshake). No effect on an unframed proxy.
    pub fn drop_frames(&self, d: Direction, per_mille: u64) {
        self.way(d).drop_per_mille.store(per_mille.min(1000), Ordering::Release);
    }

    /// Closes every open connection (new ones are accepted as before).
    pub fn cut(&self) {
        for (_, a, b) in self.shared.open.lock().drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }

    /// Clears every fault.
    pub fn heal(&self) {
        for d in [Direction::Forward, Direction::Backward] {
            self.blackhole(d, false);
            self.delay(d, Duration::ZERO);
            self.drop_frames(d, 0);
        }
    }

    /// `(bytes forwarded, bytes dropped)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.forwarded.load(Ordering::Relaxed), self.shared.dropped.load(Ordering::Relaxed))
    }

    fn way(&self, d: Direction) -> &Way {
        match d {
            Direction::Forward => &self.shared.forward,
            Direction::Backward => &self.shared.backward,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wakes the acceptor out of `accept`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, s: &Arc<Shared>) {
    let mut pumps: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let accepted = listener.accept();
        if s.stop.load(Ordering::Acquire) {
            break;
        }
        match accepted {
            Ok((client, _)) => {
                if let Err(e) = link(client, target, s, &mut pumps) {
                    log::debug!("proxy to {target}: {e}");
                }
            }
            Err(e) => {
                log::debug!("proxy to {target}: accept: {e}");
                // A persistent accept error (out of descriptors) must not spin.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        pumps.retain(|p| !p.is_finished());
    }
    // Every link is shut down, so every pump ends.
    for (_, a, b) in s.open.lock().drain(..) {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }
    for p in pumps {
        let _ = p.join();
    }
}

/// Connects `client` to `target` and starts its two pumps.
fn link(client: TcpStream, target: SocketAddr, s: &Arc<Shared>, pumps: &mut Vec<JoinHandle<()>>) -> io::Result<()> {
    let server = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
    for sock in [&client, &server] {
        sock.set_nodelay(true)?;
    }
    let id = s.next_link.fetch_add(1, Ordering::Relaxed);
    s.open.lock().push((id, client.try_clone()?, server.try_clone()?));
    let (c2, s2) = (client.try_clone()?, server.try_clone()?);
    for (from, to, forward) in [(client, s2, true), (server, c2, false)] {
        let sh = Arc::clone(s);
        let seed = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(forward);
        pumps.push(std::thread::Builder::new().name("proxy-pump".into()).spawn(move || {
            pump(from, to, &sh, forward, seed);
            sh.open.lock().retain(|(l, _, _)| *l != id);
        })?);
    }
    Ok(())
}

/// Largest body a framed proxy expects; beyond it the stream is not ours.
const FRAME_BODY_MAX: usize = 64 << 20;
/// A frame header's size and where its body length sits.
const HEADER: usize = 32;
const BODY_LEN_AT: usize = 24;

/// Moves bytes one way until either side closes or the link is cut;
/// applies that direction's faults to every chunk (or, framed, to every
/// whole frame).
fn pump(mut from: TcpStream, mut to: TcpStream, s: &Shared, forward: bool, seed: u64) {
    let way = if forward { &s.forward } else { &s.backward };
    let mut buf = vec![0u8; 64 << 10];
    // Framed: bytes of an incomplete frame, and how many frames went by.
    let (mut framed, mut pending, mut frames) = (s.framed, Vec::new(), 0u64);
    let mut kept = Vec::new();
    let mut rng = seed | 1;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if way.blackhole.load(Ordering::Acquire) {
            s.dropped.fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        let delay = way.delay_ms.load(Ordering::Acquire);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let out: &[u8] = if framed {
            pending.extend_from_slice(&buf[..n]);
            kept.clear();
            let mut at = 0;
            while pending.len() - at >= HEADER {
                let mut len = [0u8; 4];
                len.copy_from_slice(&pending[at + BODY_LEN_AT..at + BODY_LEN_AT + 4]);
                let len = u32::from_le_bytes(len) as usize;
                if len > FRAME_BODY_MAX {
                    framed = false;
                    break;
                }
                if pending.len() - at < HEADER + len {
                    break;
                }
                let frame = &pending[at..at + HEADER + len];
                at += HEADER + len;
                frames += 1;
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if frames > 1 && rng % 1000 < way.drop_per_mille.load(Ordering::Acquire) {
                    s.dropped.fetch_add(frame.len() as u64, Ordering::Relaxed);
                } else {
                    kept.extend_from_slice(frame);
                }
            }
            if !framed {
                // Not our protocol after all: everything goes through raw.
                kept.extend_from_slice(&pending[at..]);
                at = pending.len();
            }
            pending.drain(..at);
            &kept
        } else {
            &buf[..n]
        };
        if to.write_all(out).is_err() {
            break;
        }
        s.forwarded.fetch_add(out.len() as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
