//! The fault-injecting proxy against an echo server on 127.0.0.1: bytes
//! pass both ways, a blackholed direction drops bytes while the connection
//! stays up, a delay delays, heal restores, and a cut closes the
//! connection while new ones are accepted.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ringraft::nemesis::proxy::{Direction, Proxy};

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
