//! The fault-injecting proxy against an echo server on 127.0.0.1: bytes
//! pass both ways, a blackholed direction drops bytes while the connection
//! stays up, a delay delays, heal restores, and a cut closes the
//! connection while new ones are accepted.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ringraft_tools::nemesis::proxy::{Direction, Proxy};

/// An echo server; every connection gets a thread; ends with the test.
fn echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `msg` and waits up to `wait` for its echo; the bytes that came back.
fn round_trip(s: &mut TcpStream, msg: &[u8], wait: Duration) -> Vec<u8> {
    s.write_all(msg).expect("write");
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < msg.len() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

#[test]
fn faults_apply_per_direction_and_heal() {
    let p = Proxy::start(echo_server()).expect("proxy");
    let mut c = TcpStream::connect(p.addr()).expect("connect");
    assert_eq!(round_trip(&mut c, b"hello", Duration::from_secs(2)), b"hello");

    // Backward blackhole: the request reaches the server, the echo is lost.
    p.blackhole(Direction::Backward, true);
    assert!(round_trip(&mut c, b"lost", Duration::from_millis(300)).is_empty());
    p.blackhole(Direction::Backward, false);
    assert_eq!(round_trip(&mut c, b"again", Duration::from_secs(2)), b"again", "healed, same connection");
    let (fwd, dropped) = p.counts();
    assert!(dropped >= 4 && fwd > 0, "counted: {fwd} forwarded, {dropped} dropped");

    // Forward delay.
    p.delay(Direction::Forward, Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(round_trip(&mut c, b"slow", Duration::from_secs(2)), b"slow");
    assert!(t.elapsed() >= Duration::from_millis(140), "delayed {:?}", t.elapsed());
    p.heal();

    // Cut: the open connection ends; a new one works.
    p.cut();
    let mut buf = [0u8; 16];
    c.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let ended = matches!(c.read(&mut buf), Ok(0) | Err(_));
    assert!(ended, "a cut connection is closed");
    let mut c2 = TcpStream::connect(p.addr()).expect("reconnect");
    assert_eq!(round_trip(&mut c2, b"new", Duration::from_secs(2)), b"new");
}

/// A frame as the framed proxy sees it: a 32-byte header whose bytes
/// 24..28 are the body length, then the body (`tag` repeated).
fn frame(tag: u8, body_len: usize) -> Vec<u8> {
    let mut f = vec![0u8; 32];
    f[..4].copy_from_slice(b"RRPC");
    f[24..28].copy_from_slice(&(body_len as u32).to_le_bytes());
    f.extend(std::iter::repeat_n(tag, body_len));
    f
}

/// Reads whole frames until `wait` passes without more; their tags.
fn read_frames(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let mut tags = Vec::new();
    let mut at = 0;
    while got.len() - at >= 32 {
        let len = u32::from_le_bytes(got[at + 24..at + 28].try_into().expect("4 bytes")) as usize;
        assert!(got.len() - at >= 32 + len, "a frame was cut short: the proxy forwarded a partial frame");
        let body = &got[at + 32..at + 32 + len];
        assert!(body.iter().all(|&b| b == body[0]), "a frame's body was garbled");
        tags.push(body[0]);
        at += 32 + len;
    }
    assert_eq!(at, got.len(), "bytes after the last whole frame");
    tags
}

#[test]
fn framed_proxy_drops_whole_frames_but_never_the_first() {
    let proxy = Proxy::start_framed(echo_server()).expect("proxy");
    let mut s = TcpStream::connect(proxy.addr()).expect("connect");
    // Frames written in pieces that split headers and bodies still arrive whole.
    let mut bytes = Vec::new();
    for tag in 1..=20u8 {
        bytes.extend(frame(tag, usize::from(tag) * 37));
    }
    for piece in bytes.chunks(29) {
        s.write_all(piece).expect("write");
    }
    assert_eq!(read_frames(&mut s, Duration::from_millis(500)), (1..=20).collect::<Vec<u8>>());

    // Dropping everything one way: only whole frames vanish, and the
    // stream parses again after the heal.
    proxy.drop_frames(Direction::Forward, 1000);
    for tag in 21..=30u8 {
        s.write_all(&frame(tag, 100)).expect("write");
    }
    assert_eq!(read_frames(&mut s, Duration::from_millis(300)), Vec::<u8>::new(), "every frame dropped");
    proxy.heal();
    s.write_all(&frame(31, 10)).expect("write");
    assert_eq!(read_frames(&mut s, Duration::from_millis(500)), vec![31]);
    let (_, dropped) = proxy.counts();
    assert_eq!(dropped, 10 * 132, "ten frames of 132 bytes dropped");

    // A new connection's first frame (its handshake) is never dropped.
    proxy.drop_frames(Direction::Forward, 1000);
    let mut s2 = TcpStream::connect(proxy.addr()).expect("connect");
    s2.write_all(&frame(40, 5)).expect("write");
    s2.write_all(&frame(41, 5)).expect("write");
    assert_eq!(read_frames(&mut s2, Duration::from_millis(500)), vec![40]);

    // Half the frames: some pass, some do not, all whole.
    proxy.drop_frames(Direction::Forward, 500);
    for _ in 0..200 {
        s.write_all(&frame(50, 8)).expect("write");
    }
    let passed = read_frames(&mut s, Duration::from_millis(500)).len();
    assert!(passed > 20 && passed < 180, "{passed} of 200 frames passed at a 50 % drop rate");
}

#[test]
fn framed_proxy_forwards_a_stream_that_is_not_frames_raw() {
    let proxy = Proxy::start_framed(echo_server()).expect("proxy");
    let mut s = TcpStream::connect(proxy.addr()).expect("connect");
    // An HTTP request: bytes 24..28 read as a huge length.
    let msg = b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
    assert_eq!(round_trip(&mut s, msg, Duration::from_secs(2)), msg.to_vec());
}
