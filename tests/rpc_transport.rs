//! Live tests of the mio transport on 127.0.0.1: Raft frames between
//! transports (all arrive, in order), reconnection after a peer restart,
//! handshake refusals (wrong token, cluster, version), and bad input against
//! a live listener while a well-behaved client keeps getting answers.
//!
//! Every wait is a condition polled against a deadline; no test sleeps to
//! wait for something (the slow-loris writer sleeps only to pace its bytes).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};
use ringraft::core::{GroupId, LogIndex, Message, MessageBody, NodeId, Term};
use ringraft::rpc::frame::write_frame;
use ringraft::rpc::transport::{ConnId, Ctx, Dest, Handler, Remote, SendError, Transport, TransportConfig};
use ringraft::rpc::{
    encode_packet, Admission, Body, ClientRequest, ClientResponse, ErrorCode, FrameDecoder, Hello, Packet, Role,
    HEADER_BYTES,
};
use ringraft::rpc::{raft_packet, PeerMsg};

const CLUSTER: u64 = 77;
const LOOPBACK: &str = "127.0.0.1:0";

fn admission(node: u64) -> Admission {
    Admission {
        cluster_id: CLUSTER,
        node_id: node,
        peer_token: Bytes::from_static(b"peer-secret"),
        client_token: Bytes::from_static(b"client-secret"),
        admin_token: Bytes::from_static(b"admin-secret"),
    }
}

fn config(node: u64, listen: SocketAddr, peers: &[(u64, SocketAddr)]) -> TransportConfig {
    let mut c = TransportConfig::new(listen, admission(node));
    c.peers = peers.iter().map(|&(n, a)| (NodeId(n), a)).collect();
    c
}

/// What a test handler saw.
#[derive(Default)]
struct Seen {
    /// Raft messages received, in arrival order.
    raft: Vec<Message>,
    /// `on_peer_up` calls per node.
    ups: Vec<NodeId>,
    /// Peers currently up.
    up: Vec<NodeId>,
    /// Connections that asked for status.
    clients: Vec<ConnId>,
}

#[derive(Clone, Default)]
struct Probe(Arc<(Mutex<Seen>, Condvar)>);

impl Probe {
    /// Waits until `pred` holds, failing the test after `secs` seconds.
    fn wait(&self, secs: u64, what: &str, pred: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut g = self.0 .0.lock();
        while !pred(&g) {
            assert!(!self.0 .1.wait_until(&mut g, deadline).timed_out() || pred(&g), "timed out waiting for {what}");
        }
    }

    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.0 .0.lock());
        self.0 .1.notify_all();
    }
}

/// Records Raft messages and peer events; answers `Status` (an echo for
/// the well-behaved client).
struct TestHandler {
    node: u64,
    probe: Probe,
}

impl Handler for TestHandler {
    fn on_frame(&mut self, ctx: &mut Ctx, from: Remote, packet: Packet) {
        match packet.body {
            Body::Peer(PeerMsg::Raft(m)) => self.probe.update(|s| s.raft.push(m)),
            Body::ClientRequest(ClientRequest::Status { health: false }) => {
                self.probe.update(|s| s.clients.push(from.conn));
                ctx.reply(
                    from.conn,
                    Packet {
                        group: GroupId(0),
                        request_id: packet.request_id,
                        body: Body::ClientResponse(ClientResponse::Status {
                            node_id: self.node,
                            fsyncs: 0,
                            entries_written: 0,
                            appends_sent: 0,
                            entries_sent: 0,
                            groups: vec![],
                            health: None,
                        }),
                    },
                )
            }
            _ => {}
        }
    }

    fn on_peer_up(&mut self, peer: NodeId) {
        self.probe.update(|s| {
            s.ups.push(peer);
            s.up.push(peer);
        });
    }

    fn on_peer_down(&mut self, peer: NodeId) {
        self.probe.update(|s| s.up.retain(|&p| p != peer));
    }
}

fn start(cfg: TransportConfig) -> (Transport, Probe) {
    let probe = Probe::default();
    let node = cfg.admission.node_id;
    let t = Transport::start(cfg, TestHandler { node, probe: probe.clone() }).expect("transport starts");
    (t, probe)
}

fn append(from: u64, to: u64, group: u64, i: u64) -> Message {
    Message {
        group: GroupId(group),
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(i),
            prev_log_term: Term(1),
            entries: vec![],
            commit: LogIndex(i),
        },
    }
}

/// A port free a moment ago, outside the kernel's ephemeral range.
fn free_addr() -> SocketAddr {
    ringraft_tools::demo::ports::free_addr().expect("a free port")
}

#[test]
fn three_transports_exchange_raft_frames_in_order() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let all: Vec<(u64, SocketAddr)> = (1..=3).zip(addrs.iter().copied()).collect();
    let nodes: Vec<(Transport, Probe)> = all
        .iter()
        .map(|&(n, a)| start(config(n, a, &all.iter().copied().filter(|&(m, _)| m != n).collect::<Vec<_>>())))
        .collect();
    for (_, p) in &nodes {
        p.wait(10, "all peers up", |s| s.up.len() == 2);
    }
    const N: u64 = 500;
    for i in 0..N {
        for (from, (t, _)) in (1..=3).zip(&nodes) {
            for to in (1..=3).filter(|&to| to != from) {
                let m = append(from, to, 1 + i % 3, i);
                t.handle().send(Dest::Peer(NodeId(to)), &raft_packet(m)).expect("queued");
            }
        }
    }
    for (to, (_, p)) in (1..=3).zip(&nodes) {
        p.wait(10, "all frames", |s| s.raft.len() as u64 == 2 * N);
        let seen = p.0 .0.lock();
        for from in (1..=3).filter(|&f| f != to) {
            let got: Vec<Message> = seen.raft.iter().filter(|m| m.from == NodeId(from)).cloned().collect();
            let want: Vec<Message> = (0..N).map(|i| append(from, to, 1 + i % 3, i)).collect();
            assert_eq!(got, want, "frames from {from} to {to} in order");
        }
    }
}

#[test]
fn a_restarted_peer_is_reconnected() {
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let (a, pa) = start(config(1, a_addr, &[(2, b_addr)]));
    let (b, _) = start(config(2, b_addr, &[(1, a_addr)]));
    pa.wait(10, "node 2 up", |s| s.ups.len() == 1);
    drop(b);
    pa.wait(10, "node 2 down", |s| s.up.is_empty());
    let (b2, pb2) = start(config(2, b_addr, &[(1, a_addr)]));
    pa.wait(10, "node 2 up again", |s| s.ups.len() == 2 && s.up.len() == 1);
    a.handle().send(Dest::Peer(NodeId(2)), &raft_packet(append(1, 2, 5, 9))).expect("queued");
    b2.handle().send(Dest::Peer(NodeId(1)), &raft_packet(append(2, 1, 5, 10))).expect("queued");
    pb2.wait(10, "frame at the new node 2", |s| s.raft == vec![append(1, 2, 5, 9)]);
    pa.wait(10, "frame from the new node 2", |s| s.raft == vec![append(2, 1, 5, 10)]);
}

// ---- a raw client speaking the protocol over std's blocking sockets ----

/// How many idle connections this process can open (each costs two file
/// descriptors here: the client end and the accepted end), raising the soft
/// limit to the hard one first. Prints when it must use fewer than `want`.
fn idle_connections_allowed(want: usize) -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    // Leave room for the other tests of this binary running alongside.
    let budget = (lim.rlim_cur as usize).saturating_sub(400) / 2;
    if budget < want {
        eprintln!("open-file limit {} allows {budget} idle connections, not {want}", lim.rlim_cur);
    }
    want.min(budget).max(10)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

fn encode(p: &Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_packet(&mut b, p).expect("encodes");
    b.to_vec()
}

fn hello(cluster: u64, role: Role, token: &'static [u8], versions: (u8, u8)) -> Vec<u8> {
    let h = Hello {
        cluster_id: cluster,
        node_id: 0,
        role,
        min_version: versions.0,
        max_version: versions.1,
        token: Bytes::from_static(token),
    };
    encode(&Packet { group: GroupId(0), request_id: 7, body: Body::Hello(h) })
}

fn client_hello() -> Vec<u8> {
    hello(CLUSTER, Role::Client, b"client-secret", (1, 1))
}

/// Reads one frame; `None` at end of stream.
fn read_packet(s: &mut TcpStream, d: &mut FrameDecoder) -> Option<Packet> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = d.next_frame().expect("valid frame from the server") {
            return Some(ringraft::rpc::decode_packet(&f).expect("valid body"));
        }
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => d.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Expects an error frame with `code`, then end of stream.
fn expect_refusal(s: &mut TcpStream, code: ErrorCode) {
    let mut d = FrameDecoder::new(1 << 20);
    match read_packet(s, &mut d).map(|p| p.body) {
        Some(Body::Error(e)) => assert_eq!(e.code(), code, "error frame: {}", e.message),
        other => panic!("expected an error frame {code:?}, got {other:?}"),
    }
    assert_eq!(read_packet(s, &mut d), None, "closed after the error frame");
}

/// A client that completed its handshake and asks for status.
struct GoodClient {
    s: TcpStream,
    d: FrameDecoder,
    next_id: u64,
}

impl GoodClient {
    fn connect(addr: SocketAddr) -> GoodClient {
        let mut s = connect(addr);
        s.write_all(&client_hello()).expect("hello");
        let mut d = FrameDecoder::new(1 << 20);
        let ok = read_packet(&mut s, &mut d).expect("an answer");
        assert!(matches!(ok.body, Body::HelloOk(_)), "admitted: {ok:?}");
        GoodClient { s, d, next_id: 100 }
    }

    fn ping(&mut self) {
        self.next_id += 1;
        let req = Packet {
            group: GroupId(0),
            request_id: self.next_id,
            body: Body::ClientRequest(ClientRequest::Status { health: false }),
        };
        self.s.write_all(&encode(&req)).expect("request");
        let p = read_packet(&mut self.s, &mut self.d).expect("an answer");
        assert_eq!(p.request_id, self.next_id);
        assert!(matches!(p.body, Body::ClientResponse(ClientResponse::Status { node_id: 1, .. })), "{p:?}");
    }
}

#[test]
fn wrong_token_cluster_or_version_is_refused_and_closed() {
    let (t, _) = start(config(1, LOOPBACK.parse().unwrap(), &[]));
    let addr = t.local_addr();
    let cases: [(Vec<u8>, ErrorCode); 4] = [
        (hello(CLUSTER, Role::Client, b"wrong", (1, 1)), ErrorCode::Unauthorized),
        (hello(CLUSTER, Role::Admin, b"client-secret", (1, 1)), ErrorCode::Unauthorized),
        (hello(CLUSTER + 1, Role::Client, b"client-secret", (1, 1)), ErrorCode::WrongCluster),
        (hello(CLUSTER, Role::Client, b"client-secret", (2, 3)), ErrorCode::VersionUnsupported),
    ];
    for (bytes, code) in cases {
        let mut s = connect(addr);
        s.write_all(&bytes).expect("hello");
        expect_refusal(&mut s, code);
    }
    assert_eq!(t.handle().stats().refused.load(std::sync::atomic::Ordering::Relaxed), 4);

    GoodClient::connect(addr).ping();
}

#[test]
fn a_node_with_the_wrong_peer_token_is_refused() {
    let (b, _) = start(config(5, LOOPBACK.parse().unwrap(), &[]));
    let mut cfg = config(2, LOOPBACK.parse().unwrap(), &[(5, b.local_addr())]);
    cfg.peer_token = Bytes::from_static(b"not-the-peer-secret");
    let (a, pa) = start(cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = || a.handle().stats().refused.load(std::sync::atomic::Ordering::Relaxed);
    // Poll the counter: the dialler keeps retrying on its backoff.
    while stats() < 2 {
        assert!(Instant::now() < deadline, "refusals seen: {}", stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(pa.0 .0.lock().ups.is_empty(), "never admitted");
}

fn raw_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_frame(&mut out, kind, GroupId(0), 0, |b| {
        b.put_slice(body);
        Ok(())
    })
    .expect("frame");
    out.to_vec()
}

#[test]
fn malformed_input_is_refused_while_a_good_client_is_served() {
    let mut cfg = config(1, LOOPBACK.parse().unwrap(), &[]);
    cfg.max_body = 1 << 20;
    let (t, _) = start(cfg);
    let addr = t.local_addr();
    let mut good = GoodClient::connect(addr);
    good.ping();

    let hello = client_hello();
    let mut oversized = hello.clone();
    oversized[24..28].copy_from_slice(&(2u32 << 20).to_le_bytes());
    let mut bad_crc = hello.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x01;
    let mut bad_version = hello.clone();
    bad_version[4] = 2;
    let mut flags = hello.clone();
    flags[6] = 1;
    let status = encode(&Packet {
        group: GroupId(0),
        request_id: 1,
        body: Body::ClientRequest(ClientRequest::Status { health: false }),
    });
    let garbage = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec();
    // (bytes before the case, after the handshake?, half-close after, expected code)
    let cases: Vec<(&str, Vec<u8>, bool, bool, ErrorCode)> = vec![
        ("truncated then close", hello[..HEADER_BYTES + 5].to_vec(), false, true, ErrorCode::Protocol),
        ("truncated header then close", hello[..10].to_vec(), false, true, ErrorCode::Protocol),
        ("oversized header", oversized[..HEADER_BYTES].to_vec(), false, false, ErrorCode::TooLarge),
        ("bad crc", bad_crc, false, false, ErrorCode::Protocol),
        ("bad version", bad_version, false, false, ErrorCode::VersionUnsupported),
        ("reserved flags", flags, false, false, ErrorCode::Protocol),
        ("garbage", garbage, false, false, ErrorCode::Protocol),
        ("frame before hello", status.clone(), false, false, ErrorCode::Protocol),
        ("unknown type before hello", raw_frame(0x7f, b"x"), false, false, ErrorCode::Protocol),
        ("unknown type", raw_frame(0x7f, b"x"), true, false, ErrorCode::Protocol),
        ("second hello", client_hello(), true, false, ErrorCode::Protocol),
        ("malformed body", raw_frame(0x4e, b"extra"), true, false, ErrorCode::BadRequest),
        ("raft from a client", encode(&raft_packet(append(3, 1, 1, 1))), true, false, ErrorCode::Unauthorized),
        ("oversized after hello", oversized[..HEADER_BYTES].to_vec(), true, false, ErrorCode::TooLarge),
    ];
    for (name, bytes, after_hello, half_close, code) in cases {
        let mut s = connect(addr);
        if after_hello {
            s.write_all(&client_hello()).expect("hello");
            let ok = read_packet(&mut s, &mut FrameDecoder::new(1 << 20)).expect("answer");
            assert!(matches!(ok.body, Body::HelloOk(_)), "{name}: admitted");
        }
        s.write_all(&bytes).expect("write");
        if half_close {
            s.shutdown(std::net::Shutdown::Write).expect("half-close");
        }
        eprintln!("case: {name}");
        expect_refusal(&mut s, code);
        good.ping();
    }
    assert!(t.handle().stats().protocol_errors.load(std::sync::atomic::Ordering::Relaxed) >= 11);
}

#[test]
fn slow_loris_and_idle_connections_time_out_while_a_good_client_is_served() {
    let mut cfg = config(1, LOOPBACK.parse().unwrap(), &[]);
    cfg.handshake_timeout = Duration::from_millis(2500);
    let (t, _) = start(cfg);
    let addr = t.local_addr();
    let mut good = GoodClient::connect(addr);

    let idle_count = idle_connections_allowed(500);
    let idle: Vec<TcpStream> = (0..idle_count).map(|_| connect(addr)).collect();
    let hello = client_hello();
    let loris = std::thread::spawn(move || {
        let mut s = connect(addr);
        let started = Instant::now();
        // One byte a second; the server must cut it off after 2.5 s.
        for b in hello.iter().take(10) {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            let mut probe = [0u8; 1];
            s.set_nonblocking(true).expect("nonblocking");
            let closed = !matches!(s.peek(&mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock);
            s.set_nonblocking(false).expect("blocking");
            if closed {
                break;
            }
        }
        expect_refusal(&mut s, ErrorCode::Protocol);
        started.elapsed()
    });

    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut pings, mut slowest) = (0u32, Duration::ZERO);
    while !loris.is_finished() {
        assert!(Instant::now() < deadline, "slow-loris not cut off");
        let t0 = Instant::now();
        good.ping();
        slowest = slowest.max(t0.elapsed());
        pings += 1;
    }
    let took = loris.join().expect("loris thread");
    eprintln!("loris cut off after {took:?}; {pings} pings, slowest {slowest:?}");
    // Behaviour, not speed: never cut before the 2.5 s timeout, cut well
    // before the test's own deadline, and the good client never starved
    // (bounds generous enough for a loaded 2-core CI machine).
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(12), "cut off after {took:?}");
    assert!(pings >= 3 && slowest < Duration::from_secs(5), "served throughout: {pings} pings, slowest {slowest:?}");
    // The idle connections are cut off by the same timeout.
    let t0 = Instant::now();
    for mut s in idle {
        expect_refusal(&mut s, ErrorCode::Protocol);
    }
    eprintln!("idle connections refused within {:?} after the slow-loris", t0.elapsed());
    good.ping();
}

#[test]
fn a_client_that_stops_reading_is_disconnected_at_the_buffer_bound() {
    let mut cfg = config(1, LOOPBACK.parse().unwrap(), &[]);
    cfg.write_buffer_max = 256 << 10;
    let (t, probe) = start(cfg);
    let addr = t.local_addr();
    let mut stalled = GoodClient::connect(addr);
    stalled.ping();
    let conn = probe.0 .0.lock().clients[0];
    let mut good = GoodClient::connect(addr);
    let big = Bytes::from(raw_frame(0x4f, &[0u8; 64 << 10]));
    let slow = || t.handle().stats().slow_readers.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(15);
    // At most 100 MB offered: far beyond socket buffers plus the 256 KiB bound.
    for _ in 0..1600 {
        if slow() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never disconnected");
        match t.handle().send_encoded(Dest::Conn(conn), big.clone()) {
            Ok(()) | Err(SendError::Busy) => {}
            Err(e) => panic!("send: {e}"),
        }
        good.ping(); // paces the sender through the I/O thread, and checks it serves
    }
    assert_eq!(slow(), 1, "the stalled client was cut off");
    good.ping();
}

/// Frames sent from several threads to one connection while its reader
/// stalls: the socket fills, so direct writes from the senders' threads go
/// partial or would block, and the I/O thread must finish them before
/// anything else. Every frame must arrive whole (the decoder checks each
/// CRC) and each thread's frames in the order it sent them.
#[test]
fn frames_from_many_threads_arrive_whole_and_in_order_through_a_stalled_reader() {
    let addr = free_addr();
    let (t, probe) = start(config(1, addr, &[]));
    let mut client = GoodClient::connect(addr);
    client.ping();
    let conn = {
        let seen = probe.0 .0.lock();
        seen.clients[0]
    };
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 1000;
    let payload = Bytes::from(vec![7u8; 4 << 10]);
    let senders: Vec<_> = (0..THREADS)
        .map(|th| {
            let h = t.handle();
            let payload = payload.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let m = Message {
                        group: GroupId(1),
                        from: NodeId(1),
                        to: NodeId(2),
                        term: Term(1),
                        body: MessageBody::AppendEntries {
                            prev_log_index: LogIndex(i),
                            prev_log_term: Term(1),
                            entries: vec![ringraft::core::Entry {
                                term: Term(1),
                                index: LogIndex(i + 1),
                                payload: ringraft::core::Payload::Normal(payload.clone()),
                            }],
                            commit: LogIndex(0),
                        },
                    };
                    let p = Packet {
                        group: GroupId(1),
                        request_id: th * 1_000_000 + i,
                        body: Body::Peer(PeerMsg::Raft(m)),
                    };
                    if i % 16 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let deadline = Instant::now() + Duration::from_secs(10);
                    loop {
                        match t_send(&h, conn, &p) {
                            Ok(()) => break,
                            Err(SendError::Busy) if Instant::now() < deadline => {
                                std::thread::sleep(Duration::from_millis(1))
                            }
                            Err(e) => panic!("send {th}/{i}: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    // Let the socket buffers fill, then read slowly, so that the socket
    // keeps filling and draining while the senders write.
    std::thread::sleep(Duration::from_millis(50));
    let mut next = vec![0u64; THREADS as usize];
    let mut got = 0;
    client.s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    while got < THREADS * PER_THREAD {
        let p = read_packet(&mut client.s, &mut client.d).expect("the connection stays open");
        let (th, i) = (p.request_id / 1_000_000, p.request_id % 1_000_000);
        assert_eq!(i, next[th as usize], "thread {th}'s frames in order");
        let Body::Peer(PeerMsg::Raft(m)) = &p.body else { panic!("not a raft frame: {:?}", p.body.msg_type()) };
        let MessageBody::AppendEntries { entries, .. } = &m.body else { panic!("not an append") };
        assert!(matches!(&entries[0].payload, ringraft::core::Payload::Normal(b) if b == &payload), "whole payload");
        next[th as usize] += 1;
        got += 1;
        if got % 64 == 0 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    for s in senders {
        s.join().expect("sender");
    }
    client.ping();
}

fn t_send(h: &ringraft::rpc::transport::TransportHandle, conn: ConnId, p: &Packet) -> Result<(), SendError> {
    h.send(Dest::Conn(conn), p)
}
