//! Bad input at the service level, against real `ringraft-server`
//! processes: each is a clear, typed error and the cluster keeps serving.
//! Also: a retried append (same session and sequence number, sent again by
//! hand after the leader was killed) returns its first offsets instead of
//! appending twice; a sequence number behind the window and an unknown
//! session are refused with `SessionExpired`.

mod service_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringraft::core::GroupId;
use ringraft::rpc::frame::FrameDecoder;
use ringraft::rpc::{
    decode_packet, encode_packet, Body, ClientRequest, ClientResponse, ErrorCode, Hello, Packet, ReadConsistency, Role,
    DEFAULT_MAX_BODY, VERSION,
};
use ringraft_client::{Client, ClientConfig, ClientError};
use service_common::*;

#[test]
fn bad_requests_get_typed_errors_and_the_cluster_keeps_serving() {
    let dir = TempDir::new("errors-tokens");
    let token = dir.0.join("client.token");
    std::fs::write(&token, "s3cret\n").expect("token file");
    let admin_token = dir.0.join("admin.token");
    std::fs::write(&admin_token, "adm1n\n").expect("token file");
    let token_arg = token.to_string_lossy().to_string();
    let admin_arg = admin_token.to_string_lossy().to_string();
    let flags = ["--client-token-file", &token_arg, "--admin-token-file", &admin_arg];
    let c = Cluster::start_with_token("errors", 3, &flags, "s3cret");
    let cfg = c.config();
    let mut cl = Client::connect(cfg.clone()).expect("connect with the right token");

    // The answers are printed on failure: this once failed in CI under
    // load with something other than UnknownStream, and the log was gone.
    let r = cl.append("nope", vec![Bytes::from_static(b"x")]);
    assert!(
        matches!(r, Err(ClientError::UnknownStream(_))),
        "append to a missing stream: {r:?}; logs in {}",
        c.dir.0.display()
    );
    let r = cl.read("nope", 0, 10, 1024, ReadConsistency::Linearizable);
    assert!(matches!(r, Err(ClientError::UnknownStream(_))), "read of a missing stream: {r:?}");
    cl.create_stream("s").expect("create");
    assert!(matches!(cl.create_stream("s"), Err(ClientError::StreamExists(_))));
    assert!(matches!(cl.create_stream("bad name"), Err(ClientError::BadRequest(_))));
    cl.append("s", vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]).expect("append");
    let r = cl.read("s", 5, 10, 1024, ReadConsistency::Linearizable);
    assert!(matches!(r, Err(ClientError::OutOfRange { .. })), "beyond the tail: {r:?}");
    let big = Bytes::from(vec![7u8; (1 << 20) + 1]);
    assert!(matches!(cl.append("s", vec![big]), Err(ClientError::TooLarge)), "a record over 1 MiB");
    assert!(matches!(cl.trim("s", 3), Err(ClientError::OutOfRange { .. })), "a trim beyond the tail");
    assert_eq!(cl.trim("s", 1).expect("trim"), 1);
    let r = cl.read("s", 0, 10, 1024, ReadConsistency::Linearizable);
    assert!(matches!(r, Err(ClientError::OutOfRange { .. })), "trimmed away: {r:?}");
    let empty = cl.read("s", 2, 10, 1024, ReadConsistency::Linearizable).expect("read at the tail");
    assert!(empty.records.is_empty());
    assert!(matches!(cl.append("s", vec![]), Err(ClientError::BadRequest(_))), "an empty append");

    let wrong = Client::connect(c.config().with_token("guess"));
    assert!(matches!(wrong, Err(ClientError::Unauthorized)), "wrong token: {:?}", wrong.err());
    let no_token = Client::connect(ClientConfig::new(c.servers(), CLUSTER));
    assert!(matches!(no_token, Err(ClientError::Unauthorized)));
    let mut other = ClientConfig::new(c.servers(), CLUSTER + 1);
    other.token = Bytes::from_static(b"s3cret");
    assert!(matches!(Client::connect(other), Err(ClientError::WrongCluster)));
    // A client token does not open admin connections.
    let as_admin = Client::connect(cfg.clone().with_role(Role::Admin));
    assert!(matches!(as_admin, Err(ClientError::Unauthorized)));

    let r = cl.read("s", 1, 10, 1024, ReadConsistency::Linearizable).expect("still serving");
    assert_eq!(r.records, vec![Bytes::from_static(b"b")]);
}

/// A bare protocol connection, to send exactly the frames a test wants.
struct Raw {
    s: TcpStream,
    dec: FrameDecoder,
    next_id: u64,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut r = Raw { s, dec: FrameDecoder::new(DEFAULT_MAX_BODY), next_id: 1 };
        let hello = Hello {
            cluster_id: CLUSTER,
            node_id: 0,
            role: Role::Client,
            min_version: VERSION,
            max_version: VERSION,
            token: Bytes::new(),
        };
        assert!(matches!(r.call(Body::Hello(hello)), Body::HelloOk(_)));
        r
    }

    fn call(&mut self, body: Body) -> Body {
        let request_id = self.next_id;
        self.next_id += 1;
        let mut out = BytesMut::new();
        encode_packet(&mut out, &Packet { group: GroupId(0), request_id, body }).expect("encode");
        self.s.write_all(&out).expect("write");
        let mut buf = [0u8; 65536];
        loop {
            if let Some(f) = self.dec.next_frame().expect("valid frame") {
                let p = decode_packet(&f).expect("valid body");
                assert_eq!(p.request_id, request_id);
                return p.body;
            }
            let n = self.s.read(&mut buf).expect("read");
            assert!(n > 0, "server closed the connection");
            self.dec.push(&buf[..n]);
        }
    }

    /// Sends `body` until an answer other than NotLeader/Busy comes.
    fn call_leader(c: &Cluster, body: Body) -> Body {
        for _ in 0..200 {
            let leader = c.wait_leader(Duration::from_secs(20));
            let mut raw = Raw::connect(&c.procs[leader].addr.to_string());
            match raw.call(body.clone()) {
                Body::Error(e) if matches!(e.code(), ErrorCode::NotLeader | ErrorCode::Busy) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
        panic!("no leader answered");
    }
}

fn append(session: u64, seq: u64, rec: &'static [u8]) -> Body {
    Body::ClientRequest(ClientRequest::Append {
        stream: "s".into(),
        session,
        seq,
        records: vec![Bytes::from_static(rec)],
    })
}

#[test]
fn a_retried_append_across_a_leader_change_returns_its_first_offsets() {
    let mut c = Cluster::start("retry", 3, &[]);
    c.client().create_stream("s").expect("create");
    let Body::ClientResponse(ClientResponse::OpenSession { session, .. }) =
        Raw::call_leader(&c, Body::ClientRequest(ClientRequest::OpenSession))
    else {
        panic!("no session")
    };
    let first = Raw::call_leader(&c, append(session, 1, b"one"));
    let second = Raw::call_leader(&c, append(session, 2, b"two"));
    assert_eq!(first, Body::ClientResponse(ClientResponse::Append { first_offset: 0, count: 1 }));
    assert_eq!(second, Body::ClientResponse(ClientResponse::Append { first_offset: 1, count: 1 }));

    let leader = c.wait_leader(Duration::from_secs(5));
    c.kill9(leader);
    // The same (session, seq) again, at the new leader: the first answer.
    assert_eq!(Raw::call_leader(&c, append(session, 1, b"one")), first);
    assert_eq!(Raw::call_leader(&c, append(session, 2, b"two")), second);
    c.restart(leader);
    let third = Raw::call_leader(&c, append(session, 3, b"three"));
    assert_eq!(third, Body::ClientResponse(ClientResponse::Append { first_offset: 2, count: 1 }));
    let mut cl = c.client();
    let all = cl.read("s", 0, 100, 1 << 20, ReadConsistency::Linearizable).expect("read");
    assert_eq!(all.records.len(), 3, "each append once: {:?}", all.records);

    // An unknown session is refused, never applied.
    match Raw::call_leader(&c, append(session + 1_000_000, 1, b"ghost")) {
        Body::Error(e) => assert_eq!(e.code(), ErrorCode::SessionExpired),
        other => panic!("unknown session accepted: {other:?}"),
    }
    // A session without a seq is a bad request.
    match Raw::call_leader(&c, append(session, 0, b"zero")) {
        Body::Error(e) => assert_eq!(e.code(), ErrorCode::BadRequest),
        other => panic!("seq 0 accepted: {other:?}"),
    }
    let all = cl.read("s", 0, 100, 1 << 20, ReadConsistency::Linearizable).expect("read");
    assert_eq!(all.records.len(), 3);
}
