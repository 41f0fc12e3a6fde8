//! RPC micro-benchmarks, each beside its reference in the same run.
//!
//! 1. Codec: encode and decode (`FrameDecoder` + `decode_packet`) of an
//!    AppendEntries with 64 entries of 128 B; messages/s and GB/s of frame
//!    bytes, on one thread.
//! 2. Loopback request/response: a client on a blocking socket sends `Status`
//!    requests (32-byte frames) to a [`Transport`] whose handler answers each
//!    on the I/O thread (44-byte frames), with 1 and 64 requests in flight;
//!    beside it, a raw TCP echo server (one thread, blocking `read`/`write`)
//!    echoing the same request bytes, driven by the same client code.
//!
//! 3. Idle: CPU ticks the process spends in one idle second afterwards.
//!
//! Run: `cargo bench --bench rpc`. Knob: `RPC_BENCH_SECS` (seconds per
//! cell, default 2).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringraft::core::{Entry, GroupId, LogIndex, Message, MessageBody, NodeId, Payload, Term};
use ringraft::rpc::raft_packet;
use ringraft::rpc::transport::{Ctx, Handler, Remote, Transport, TransportConfig};
use ringraft::rpc::{
    decode_packet, encode_packet, Admission, Body, ClientRequest, ClientResponse, FrameDecoder, Hello, Packet, Role,
    DEFAULT_MAX_BODY,
};

fn secs() -> Duration {
    let s = std::env::var("RPC_BENCH_SECS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

fn append_entries() -> Packet {
    let entries = (1..=64)
        .map(|i| Entry {
            term: Term(3),
            index: LogIndex(1000 + i),
            payload: Payload::Normal(Bytes::from(vec![7u8; 128])),
        })
        .collect();
    raft_packet(Message {
        group: GroupId(9),
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(1000),
            prev_log_term: Term(3),
            entries,
            commit: LogIndex(990),
        },
    })
}

fn codec(dur: Duration) {
    let p = append_entries();
    let mut out = BytesMut::with_capacity(16 << 10);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        for _ in 0..1000 {
            out.clear();
            encode_packet(&mut out, &p).expect("encodes");
        }
        n += 1000;
    }
    let frame_len = out.len() as f64;
    report("encode AppendEntries 64x128B", n, frame_len, start.elapsed());

    let frame = out.clone().freeze();
    let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        for _ in 0..1000 {
            d.push(&frame);
            let f = d.next_frame().expect("valid").expect("whole");
            let q = decode_packet(&f).expect("decodes");
            std::hint::black_box(q);
        }
        n += 1000;
    }
    report("decode AppendEntries 64x128B", n, frame_len, start.elapsed());
}

fn report(what: &str, n: u64, frame_len: f64, el: Duration) {
    let per_s = n as f64 / el.as_secs_f64();
    println!("{what:<34} {frame_len:>6} B/frame {per_s:>12.0} msg/s {:>7.2} GB/s", per_s * frame_len / 1e9);
}

/// The (empty) status answer both ends of the echo use.
fn status_answer() -> Body {
    Body::ClientResponse(ClientResponse::Status {
        node_id: 1,
        fsyncs: 0,
        entries_written: 0,
        appends_sent: 0,
        entries_sent: 0,
        groups: vec![],
        health: None,
    })
}

struct StatusEcho;

impl Handler for StatusEcho {
    fn on_frame(&mut self, ctx: &mut Ctx, from: Remote, packet: Packet) {
        if let Body::ClientRequest(ClientRequest::Status { .. }) = packet.body {
            let body = status_answer();
            ctx.reply(from.conn, Packet { group: GroupId(0), request_id: packet.request_id, body });
        }
    }
}

fn encode(p: &Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_packet(&mut b, p).expect("encodes");
    b.to_vec()
}

/// Keeps `inflight` requests outstanding for `dur`; answers/s.
fn drive(s: &mut TcpStream, req: &[u8], resp_len: usize, inflight: usize, dur: Duration) -> f64 {
    let burst: Vec<u8> = req.repeat(inflight);
    s.write_all(&burst).expect("write");
    let mut buf = vec![0u8; 64 << 10];
    let (mut got_bytes, mut done) = (0usize, 0u64);
    let start = Instant::now();
    while start.elapsed() < dur {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "server closed");
        got_bytes += n;
        let whole = got_bytes / resp_len;
        got_bytes %= resp_len;
        done += whole as u64;
        if whole > 0 {
            s.write_all(&burst[..whole * req.len()]).expect("write");
        }
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    // Drain what is still in flight so that the next cell starts clean.
    let mut left = inflight * resp_len - got_bytes;
    while left > 0 {
        left -= s.read(&mut buf[..left.min(64 << 10)]).expect("drain");
    }
    rate
}

fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn loopback(dur: Duration) {
    let adm = Admission {
        cluster_id: 1,
        node_id: 1,
        peer_token: Bytes::from_static(b"p"),
        client_token: Bytes::from_static(b"c"),
        admin_token: Bytes::from_static(b"a"),
    };
    let t = Transport::start(TransportConfig::new("127.0.0.1:0".parse().expect("addr"), adm), StatusEcho)
        .expect("transport");
    let mut rpc = TcpStream::connect(t.local_addr()).expect("connect");
    rpc.set_nodelay(true).expect("nodelay");
    let hello = Hello {
        cluster_id: 1,
        node_id: 0,
        role: Role::Client,
        min_version: 1,
        max_version: 1,
        token: Bytes::from_static(b"c"),
    };
    rpc.write_all(&encode(&Packet { group: GroupId(0), request_id: 1, body: Body::Hello(hello) })).expect("hello");
    let mut d = FrameDecoder::new(1 << 20);
    let mut buf = [0u8; 256];
    while d.next_frame().expect("frame").is_none() {
        let n = rpc.read(&mut buf).expect("read");
        assert!(n > 0, "refused");
        d.push(&buf[..n]);
    }
    let req = encode(&Packet {
        group: GroupId(0),
        request_id: 5,
        body: Body::ClientRequest(ClientRequest::Status { health: false }),
    });
    let resp_len = encode(&Packet { group: GroupId(0), request_id: 5, body: status_answer() }).len();
    let mut raw = TcpStream::connect(echo_server()).expect("connect echo");
    raw.set_nodelay(true).expect("nodelay");
    for inflight in [1usize, 64] {
        // Alternate halves so drift on a shared machine hits both alike.
        let half = dur / 2;
        let a =
            (drive(&mut rpc, &req, resp_len, inflight, half) + drive(&mut rpc, &req, resp_len, inflight, half)) / 2.0;
        let b =
            (drive(&mut raw, &req, req.len(), inflight, half) + drive(&mut raw, &req, req.len(), inflight, half)) / 2.0;
        println!(
            "loopback req/resp, {inflight:>2} in flight: transport {a:>9.0}/s ({:>6.1} us/req)  raw echo {b:>9.0}/s ({:>6.1} us/req)  ratio {:.2}",
            1e6 * inflight as f64 / a,
            1e6 * inflight as f64 / b,
            a / b
        );
    }
    // Idle: the transport (one open client connection) must not spin.
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    println!("idle transport: {} CPU ticks (1/100 s) in 1 s of wall time", cpu_ticks() - before);
}

/// The process's user + system CPU time in clock ticks, from `/proc/self/stat`.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); index 0 here is field 3.
    fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let dur = secs();
    codec(dur);
    loopback(dur);
}
