//! The client SDK against scripted fake servers: a `TcpListener` on
//! 127.0.0.1 per fake node, speaking the real codec, recording every request
//! it receives and answering from a script. Covers the handshake, leader
//! redirects, backoff on `Busy`, deadlines, exactly-once re-sends after a
//! dropped connection, `SessionExpired`, and the pipeline (out-of-order
//! answers, re-sends after `NotLeader`). Every test is bounded in time.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringraft::core::GroupId;
use ringraft::rpc::{
    decode_packet, encode_packet, Body, ClientRequest, ClientResponse, ErrorCode, ErrorFrame, FrameDecoder, HelloOk,
    Packet, DEFAULT_MAX_BODY,
};
use ringraft_client::{Client, ClientConfig, ClientError, Ticket};

const CLUSTER: u64 = 7;
const TOKEN: &[u8] = b"sesame";
const SESSION: u64 = 77;

/// What the fake does with one request.
enum Reply {
    Answer(Body),
    /// Never answer (the request is still recorded).
    Nothing,
    /// Close the connection without answering.
    Close,
}

type Script = Box<dyn FnMut(&ClientRequest) -> Reply + Send>;

struct Fake {
    addr: String,
    received: Arc<Mutex<Vec<ClientRequest>>>,
    /// The largest number of requests answered from one read (pipelining).
    max_batch: Arc<AtomicUsize>,
}

impl Fake {
    fn appends(&self) -> Vec<(u64, u64)> {
        let got = self.received.lock().unwrap();
        got.iter()
            .filter_map(|r| match r {
                ClientRequest::Append { session, seq, .. } => Some((*session, *seq)),
                _ => None,
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&ClientRequest) -> bool) -> usize {
        self.received.lock().unwrap().iter().filter(|r| f(r)).count()
    }
}

/// Answers like a healthy leader: a session, appends at `seq * 10`.
fn healthy(req: &ClientRequest) -> Reply {
    Reply::Answer(Body::ClientResponse(match req {
        ClientRequest::OpenSession => ClientResponse::OpenSession { session: SESSION, ttl_ms: 60_000 },
        ClientRequest::Append { seq, records, .. } => {
            ClientResponse::Append { first_offset: seq * 10, count: records.len() as u32 }
        }
        ClientRequest::CreateStream { .. } => ClientResponse::CreateStream { group: 1 },
        ClientRequest::Status { .. } => ClientResponse::Status {
            node_id: 0,
            fsyncs: 0,
            entries_written: 0,
            appends_sent: 0,
            entries_sent: 0,
            groups: vec![],
            health: None,
        },
        _ => ClientResponse::DeleteStream,
    }))
}

fn error(code: ErrorCode, hint: u64) -> Reply {
    Reply::Answer(Body::Error(ErrorFrame::new(code, hint, format!("{code:?}"))))
}

fn spawn_fake(node_id: u64, reverse: bool, script: impl FnMut(&ClientRequest) -> Reply + Send + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = Arc::new(Mutex::new(Vec::new()));
    let max_batch = Arc::new(AtomicUsize::new(0));
    let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
    let (rec, mb) = (received.clone(), max_batch.clone());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (rec, mb, script) = (rec.clone(), mb.clone(), script.clone());
            thread::spawn(move || serve(stream, node_id, reverse, &rec, &mb, &script));
        }
    });
    Fake { addr, received, max_batch }
}

/// One connection: handshake, then requests per the script. Answers of one
/// read are written together, reversed if `reverse`.
fn serve(
    mut s: TcpStream,
    node_id: u64,
    reverse: bool,
    rec: &Mutex<Vec<ClientRequest>>,
    max_batch: &AtomicUsize,
    script: &Mutex<Script>,
) {
    let mut dec = FrameDecoder::new(DEFAULT_MAX_BODY);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        let mut answers = Vec::new();
        let mut close = false;
        while let Ok(Some(f)) = dec.next_frame() {
            let p = decode_packet(&f).unwrap();
            let reply = match &p.body {
                Body::Hello(h) if h.cluster_id != CLUSTER => {
                    close = true;
                    error(ErrorCode::WrongCluster, 0)
                }
                Body::Hello(h) if h.token != TOKEN => {
                    close = true;
                    error(ErrorCode::Unauthorized, 0)
                }
                Body::Hello(h) => {
                    let ok = HelloOk { cluster_id: CLUSTER, node_id, version: 1, role: h.role };
                    Reply::Answer(Body::HelloOk(ok))
                }
                Body::ClientRequest(r) => {
                    rec.lock().unwrap().push(r.clone());
                    (script.lock().unwrap())(r)
                }
                _ => Reply::Answer(Body::AdminResponse { index: 9, leader: node_id }),
            };
            match reply {
                Reply::Answer(body) => answers.push(Packet { group: GroupId(0), request_id: p.request_id, body }),
                Reply::Nothing => {}
                Reply::Close => return,
            }
            if close {
                break;
            }
        }
        max_batch.fetch_max(answers.len(), Ordering::Relaxed);
        if reverse {
            answers.reverse();
        }
        let mut out = BytesMut::new();
        for a in &answers {
            encode_packet(&mut out, a).unwrap();
        }
        if s.write_all(&out).is_err() || close {
            return;
        }
    }
}

fn config(fakes: &[&Fake]) -> ClientConfig {
    let mut c = ClientConfig::new(fakes.iter().map(|f| f.addr.clone()).collect(), CLUSTER).with_token(TOKEN);
    c.request_timeout = Duration::from_secs(3);
    c
}

fn recs(n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("r{i}"))).collect()
}

#[test]
fn handshake_learns_the_node_id() {
    let a = spawn_fake(5, false, healthy);
    let mut c = Client::connect(config(&[&a])).unwrap();
    assert_eq!(c.connected_node(), Some((5, a.addr.as_str())));
    assert_eq!(c.create_stream("s").unwrap(), 1);
}

#[test]
fn handshake_refusals_are_typed() {
    let a = spawn_fake(1, false, healthy);
    let e = Client::connect(config(&[&a]).with_token("wrong")).err().unwrap();
    assert!(matches!(e, ClientError::Unauthorized), "{e}");
    let mut cfg = config(&[&a]);
    cfg.cluster_id = CLUSTER + 1;
    let e = Client::connect(cfg).err().unwrap();
    assert!(matches!(e, ClientError::WrongCluster), "{e}");
}

#[test]
fn no_server_lists_what_was_tried() {
    // A port nobody listens on: bind, note the port, close.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut cfg = ClientConfig::new(vec![addr.clone()], CLUSTER);
    cfg.connect_timeout = Duration::from_millis(200);
    match Client::connect(cfg) {
        Err(ClientError::NoServer { tried, .. }) => assert_eq!(tried, vec![addr]),
        other => panic!("expected NoServer, got {:?}", other.err()),
    }
}

#[test]
fn not_leader_redirects_to_the_hinted_node() {
    // A is leader only once `a_leads` is set; B leads until then.
    let a_leads = Arc::new(AtomicBool::new(false));
    let (al, bl) = (a_leads.clone(), a_leads.clone());
    let is_append = |r: &ClientRequest| matches!(r, ClientRequest::Append { .. });
    let a = spawn_fake(1, false, move |r| match al.load(Ordering::SeqCst) || !is_append(r) {
        true => healthy(r),
        false => error(ErrorCode::NotLeader, 2),
    });
    let b = spawn_fake(2, false, move |r| match bl.load(Ordering::SeqCst) && is_append(r) {
        true => error(ErrorCode::NotLeader, 1),
        false => healthy(r),
    });
    let mut c = Client::connect(config(&[&a, &b])).unwrap();
    assert_eq!(c.connected_node().map(|n| n.0), Some(1));
    // Hint 2 is not known yet: the client tries the next server, learns it.
    let ack = c.append("s", recs(2)).unwrap();
    assert_eq!((ack.first_offset, ack.count), (10, 2));
    assert_eq!((c.leader_hint(), c.connected_node().map(|n| n.0)), (Some(2), Some(2)));
    // Now B points at A, whose address is known: a direct redirect.
    a_leads.store(true, Ordering::SeqCst);
    let ack = c.append("s", recs(1)).unwrap();
    assert_eq!(ack.first_offset, 20);
    assert_eq!(c.connected_node().map(|n| n.0), Some(1));
    // Every attempt of one append carried the same (session, seq).
    assert_eq!(a.appends(), vec![(SESSION, 1), (SESSION, 2)]);
    assert_eq!(b.appends(), vec![(SESSION, 1), (SESSION, 2)]);
}

#[test]
fn not_leader_without_hint_tries_the_next_server() {
    let a = spawn_fake(1, false, |_| error(ErrorCode::NotLeader, 0));
    let b = spawn_fake(2, false, healthy);
    let mut cfg = config(&[&a, &b]);
    cfg.exactly_once = false;
    let mut c = Client::connect(cfg).unwrap();
    let ack = c.append("s", recs(1)).unwrap();
    assert_eq!(ack.first_offset, 0, "seq 0 without a session");
    assert_eq!(c.connected_node().map(|n| n.0), Some(2));
    assert_eq!(a.appends(), vec![(0, 0)]);
}

#[test]
fn busy_is_retried_with_backoff() {
    let mut busy_left = 2;
    let a = spawn_fake(1, false, move |r| {
        if matches!(r, ClientRequest::Append { .. }) && busy_left > 0 {
            busy_left -= 1;
            return error(ErrorCode::Busy, 0);
        }
        healthy(r)
    });
    let mut c = Client::connect(config(&[&a])).unwrap();
    assert_eq!(c.append("s", recs(1)).unwrap().first_offset, 10);
    assert_eq!(a.appends(), vec![(SESSION, 1); 3]);
}

#[test]
fn a_silent_server_times_out_within_the_deadline() {
    let a = spawn_fake(1, false, |_| Reply::Nothing);
    let mut cfg = config(&[&a]);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.exactly_once = false;
    let mut c = Client::connect(cfg).unwrap();
    let t0 = Instant::now();
    let e = c.append("s", recs(1)).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, ClientError::Timeout), "{e}");
    assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_dropped_connection_resends_the_same_session_and_seq() {
    let mut appends = 0;
    let a = spawn_fake(1, false, move |r| {
        if matches!(r, ClientRequest::Append { .. }) {
            appends += 1;
            if appends == 1 {
                return Reply::Close;
            }
        }
        healthy(r)
    });
    let mut c = Client::connect(config(&[&a])).unwrap();
    assert_eq!(c.append("s", recs(3)).unwrap().first_offset, 10);
    assert_eq!(c.append("s", recs(3)).unwrap().first_offset, 20);
    assert_eq!(a.appends(), vec![(SESSION, 1), (SESSION, 1), (SESSION, 2)]);
    assert_eq!(a.count(|r| matches!(r, ClientRequest::OpenSession)), 1);
}

#[test]
fn session_expired_surfaces_typed_and_reset_opens_a_new_session() {
    let mut appends = 0;
    let a = spawn_fake(1, false, move |r| {
        if matches!(r, ClientRequest::Append { .. }) {
            appends += 1;
            if appends == 1 {
                return error(ErrorCode::SessionExpired, 0);
            }
        }
        healthy(r)
    });
    let mut c = Client::connect(config(&[&a])).unwrap();
    let e = c.append("s", recs(1)).unwrap_err();
    assert!(matches!(e, ClientError::SessionExpired), "{e}");
    assert!(!e.is_retryable());
    c.reset_session();
    assert_eq!(c.append("s", recs(1)).unwrap().first_offset, 10, "seq 1 of the new session");
    assert_eq!(a.count(|r| matches!(r, ClientRequest::OpenSession)), 2);
    assert_eq!(a.appends(), vec![(SESSION, 1), (SESSION, 1)]);
}

#[test]
fn pipeline_matches_out_of_order_answers() {
    let a = spawn_fake(1, true, healthy);
    let mut cfg = config(&[&a]);
    cfg.max_in_flight = 64;
    let mut c = Client::connect(cfg).unwrap();
    let mut p = c.pipeline();
    let mut acks: HashMap<Ticket, u64> = HashMap::new();
    for _ in 0..1_000 {
        p.submit("s", recs(1)).unwrap();
        assert!(p.in_flight() <= 64);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some((t, r)) = p.next_ack() {
        assert!(Instant::now() < deadline);
        assert!(acks.insert(t, r.unwrap().first_offset).is_none(), "{t:?} answered twice");
    }
    drop(p);
    assert_eq!(acks.len(), 1_000);
    for (t, off) in acks {
        assert_eq!(off, t.0 * 10, "ticket {t:?} got another append's answer");
    }
    let mb = a.max_batch.load(Ordering::Relaxed);
    assert!(mb > 1 && mb <= 64, "answers per read {mb}");
}

#[test]
fn answers_read_together_are_outstanding_until_returned() {
    let a = spawn_fake(1, true, healthy);
    let mut cfg = config(&[&a]);
    cfg.max_in_flight = 64;
    let mut c = Client::connect(cfg).unwrap();
    let mut p = c.pipeline();
    for _ in 0..32 {
        p.submit("s", recs(1)).unwrap();
    }
    assert_eq!((p.in_flight(), p.outstanding()), (32, 32));
    let first = p.next_ack().expect("one completion");
    assert!(first.1.is_ok());
    // The fake answers a batch at once: the rest of that read is answered
    // but not returned, so it still counts against a caller's own window.
    assert_eq!(p.outstanding(), 31, "in flight {}", p.in_flight());
    assert!(p.in_flight() < 31, "the answers the first read brought in are decoded together");
    let mut n = 1;
    while p.next_ack().is_some() {
        n += 1;
    }
    assert_eq!((n, p.outstanding(), p.in_flight()), (32, 0, 0));
}

#[test]
fn pipeline_resends_in_flight_appends_after_not_leader() {
    let a = spawn_fake(1, true, |r| match r {
        ClientRequest::Append { .. } => error(ErrorCode::NotLeader, 2),
        _ => healthy(r),
    });
    let b = spawn_fake(2, true, healthy);
    let mut cfg = config(&[&a, &b]);
    cfg.max_in_flight = 32;
    let mut c = Client::connect(cfg).unwrap();
    let mut p = c.pipeline();
    for _ in 0..200 {
        p.submit("s", recs(2)).unwrap();
    }
    let done = p.wait_all();
    drop(p);
    assert_eq!(done.len(), 200);
    let tickets: HashSet<Ticket> = done.iter().map(|(t, _)| *t).collect();
    assert_eq!(tickets.len(), 200);
    for (t, r) in &done {
        assert_eq!(r.as_ref().unwrap().first_offset, t.0 * 10);
    }
    let at_a = a.appends();
    assert!(!at_a.is_empty(), "some appends went to A first");
    let at_b: HashSet<(u64, u64)> = b.appends().into_iter().collect();
    assert_eq!(at_b, (1..=200).map(|s| (SESSION, s)).collect(), "B got every (session, seq)");
    assert!(at_a.iter().all(|x| at_b.contains(x)), "re-sends kept their (session, seq)");
    assert_eq!(c.connected_node().map(|n| n.0), Some(2));
}
