//! Decodes every hex vector in `proto-spec/vectors/` and re-encodes it byte
//! for byte; checks the decoded value against the one the vector names;
//! checks every message type has a vector; checks the malformed vectors
//! fail with the error they name.
//!
//! `RINGRAFT_WRITE_VECTORS=1 cargo test --test rpc_vectors` rewrites
//! `messages.txt` from the values below (only when the wire format changes
//! on purpose, with a protocol version bump: see PROTOCOL.md §Compatibility).

use std::collections::BTreeSet;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use ringraft::core::{
    Entry, GroupId, LogIndex, Membership, Message, MessageBody, NodeId, Payload, RejectHint, SnapshotMeta, Term,
};
use ringraft::rpc::{
    decode_packet, encode_packet, AdminRequest, Body, ClientRequest, ClientResponse, ErrorCode, ErrorFrame, Frame,
    GroupStatus, Health, HeartbeatBatch, HeartbeatItem, HeartbeatResponseBatch, HeartbeatResponseItem, Hello, HelloOk,
    MsgType, Packet, PeerProgress, ProtocolError, ReadConsistency, Records, Role, StreamInfo, DEFAULT_MAX_BODY,
};
use ringraft::rpc::{raft_packet, PeerMsg};

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("proto-spec/vectors")
}

fn raft(group: u64, from: u64, to: u64, term: u64, body: MessageBody) -> Packet {
    raft_packet(Message { group: GroupId(group), from: NodeId(from), to: NodeId(to), term: Term(term), body })
}

fn pkt(group: u64, request_id: u64, body: Body) -> Packet {
    Packet { group: GroupId(group), request_id, body }
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

/// The named values the vectors encode.
fn cases() -> Vec<(&'static str, Packet)> {
    let joint = Membership {
        voters: [NodeId(1), NodeId(2), NodeId(4)].into(),
        voters_outgoing: [NodeId(1), NodeId(2), NodeId(3)].into(),
        learners: [NodeId(5)].into(),
    };
    vec![
        (
            "hello",
            pkt(
                0,
                1,
                Body::Hello(Hello {
                    cluster_id: 0xc1,
                    node_id: 2,
                    role: Role::Peer,
                    min_version: 1,
                    max_version: 1,
                    token: b(b"s3cret"),
                }),
            ),
        ),
        ("hello_ok", pkt(0, 1, Body::HelloOk(HelloOk { cluster_id: 0xc1, node_id: 1, version: 1, role: Role::Peer }))),
        ("error_not_leader", pkt(7, 42, Body::Error(ErrorFrame::new(ErrorCode::NotLeader, 3, "leader is 3")))),
        ("error_unauthorized", pkt(0, 0, Body::Error(ErrorFrame::new(ErrorCode::Unauthorized, 0, "bad token")))),
        ("pre_vote", raft(7, 2, 1, 5, MessageBody::PreVote { last_log_term: Term(4), last_log_index: LogIndex(100) })),
        ("pre_vote_response", raft(7, 1, 2, 4, MessageBody::PreVoteResponse { granted: true })),
        (
            "vote",
            raft(
                7,
                2,
                1,
                5,
                MessageBody::Vote { last_log_term: Term(4), last_log_index: LogIndex(100), transfer: true },
            ),
        ),
        ("vote_response", raft(7, 1, 2, 5, MessageBody::VoteResponse { granted: false })),
        (
            "append_entries",
            raft(
                7,
                1,
                2,
                5,
                MessageBody::AppendEntries {
                    prev_log_index: LogIndex(10),
                    prev_log_term: Term(4),
                    entries: vec![
                        Entry { term: Term(5), index: LogIndex(11), payload: Payload::Noop },
                        Entry { term: Term(5), index: LogIndex(12), payload: Payload::Normal(b(b"hello")) },
                        Entry { term: Term(5), index: LogIndex(13), payload: Payload::Config(joint.clone()) },
                    ],
                    commit: LogIndex(9),
                },
            ),
        ),
        (
            "append_entries_empty",
            raft(
                7,
                1,
                2,
                5,
                MessageBody::AppendEntries {
                    prev_log_index: LogIndex(13),
                    prev_log_term: Term(5),
                    entries: vec![],
                    commit: LogIndex(13),
                },
            ),
        ),
        (
            "append_entries_response_ok",
            raft(7, 2, 1, 5, MessageBody::AppendEntriesResponse { match_index: LogIndex(13), reject: None }),
        ),
        (
            "append_entries_response_reject",
            raft(
                7,
                2,
                1,
                5,
                MessageBody::AppendEntriesResponse {
                    match_index: LogIndex(8),
                    reject: Some(RejectHint {
                        rejected_index: LogIndex(10),
                        conflict_term: Term(3),
                        conflict_index: LogIndex(6),
                    }),
                },
            ),
        ),
        ("heartbeat", raft(7, 1, 2, 5, MessageBody::Heartbeat { commit: LogIndex(13), read_round: 77 })),
        ("heartbeat_response", raft(7, 2, 1, 5, MessageBody::HeartbeatResponse { read_round: 77 })),
        (
            "heartbeat_batch",
            pkt(
                0,
                0,
                Body::Peer(PeerMsg::HeartbeatBatch(HeartbeatBatch {
                    from: NodeId(1),
                    to: NodeId(2),
                    items: vec![
                        HeartbeatItem { group: GroupId(7), term: Term(5), commit: LogIndex(13), read_round: 77 },
                        HeartbeatItem { group: GroupId(8), term: Term(2), commit: LogIndex(400), read_round: 0 },
                    ],
                })),
            ),
        ),
        (
            "heartbeat_response_batch",
            pkt(
                0,
                0,
                Body::Peer(PeerMsg::HeartbeatResponseBatch(HeartbeatResponseBatch {
                    from: NodeId(2),
                    to: NodeId(1),
                    items: vec![
                        HeartbeatResponseItem { group: GroupId(7), term: Term(5), read_round: 77 },
                        HeartbeatResponseItem { group: GroupId(8), term: Term(2), read_round: 0 },
                    ],
                })),
            ),
        ),
        ("timeout_now", raft(7, 1, 3, 5, MessageBody::TimeoutNow)),
        (
            "install_snapshot",
            raft(
                7,
                1,
                2,
                5,
                MessageBody::InstallSnapshot {
                    meta: SnapshotMeta {
                        last_index: LogIndex(500),
                        last_term: Term(4),
                        membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
                    },
                    offset: 65536,
                    data: b(b"chunk"),
                    done: true,
                    content: 0,
                },
            ),
        ),
        (
            // The content checksum of issue 16: optional, trailing.
            "install_snapshot_with_content",
            raft(
                7,
                1,
                2,
                5,
                MessageBody::InstallSnapshot {
                    meta: SnapshotMeta {
                        last_index: LogIndex(500),
                        last_term: Term(4),
                        membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
                    },
                    offset: 65536,
                    data: b(b"chunk"),
                    done: false,
                    content: 0x0123_4567_89ab_cdef,
                },
            ),
        ),
        (
            "install_snapshot_response",
            raft(
                7,
                2,
                1,
                5,
                MessageBody::InstallSnapshotResponse { last_index: LogIndex(500), next_offset: 65541, done: true },
            ),
        ),
        ("read_index_request", raft(7, 2, 1, 5, MessageBody::ReadIndexRequest { ctx: 9 })),
        ("read_index_response", raft(7, 1, 2, 5, MessageBody::ReadIndexResponse { ctx: 9, index: Some(LogIndex(13)) })),
        ("read_index_response_failed", raft(7, 1, 2, 5, MessageBody::ReadIndexResponse { ctx: 9, index: None })),
        (
            "append",
            pkt(
                0,
                100,
                Body::ClientRequest(ClientRequest::Append {
                    stream: "orders".into(),
                    session: 17,
                    seq: 3,
                    records: vec![b(b"a"), b(b"bc")],
                }),
            ),
        ),
        ("append_response", pkt(0, 100, Body::ClientResponse(ClientResponse::Append { first_offset: 40, count: 2 }))),
        (
            "read",
            pkt(
                0,
                101,
                Body::ClientRequest(ClientRequest::Read {
                    stream: "orders".into(),
                    offset: 40,
                    max_records: 100,
                    max_bytes: 1 << 20,
                    consistency: ReadConsistency::Linearizable,
                }),
            ),
        ),
        (
            "read_response",
            pkt(
                0,
                101,
                Body::ClientResponse(ClientResponse::Read(Records {
                    first_offset: 40,
                    next_offset: 42,
                    records: vec![b(b"a"), b(b"bc")],
                })),
            ),
        ),
        (
            "tail",
            pkt(
                0,
                102,
                Body::ClientRequest(ClientRequest::Tail {
                    stream: "orders".into(),
                    offset: 42,
                    max_records: 100,
                    max_bytes: 1 << 20,
                    consistency: ReadConsistency::Follower,
                    wait_ms: 5000,
                }),
            ),
        ),
        (
            "tail_response",
            pkt(
                0,
                102,
                Body::ClientResponse(ClientResponse::Tail(Records {
                    first_offset: 42,
                    next_offset: 42,
                    records: vec![],
                })),
            ),
        ),
        (
            "trim",
            pkt(
                0,
                103,
                Body::ClientRequest(ClientRequest::Trim { stream: "orders".into(), before: 41, session: 0, seq: 0 }),
            ),
        ),
        ("trim_response", pkt(0, 103, Body::ClientResponse(ClientResponse::Trim { first_offset: 41 }))),
        (
            "create_stream",
            pkt(0, 104, Body::ClientRequest(ClientRequest::CreateStream { stream: "logs".into(), session: 0, seq: 0 })),
        ),
        ("create_stream_response", pkt(0, 104, Body::ClientResponse(ClientResponse::CreateStream { group: 8 }))),
        (
            "delete_stream",
            pkt(
                0,
                105,
                Body::ClientRequest(ClientRequest::DeleteStream {
                    stream: "logs".into(),
                    session: 0,
                    seq: 0,
                    incarnation: 0,
                }),
            ),
        ),
        ("delete_stream_response", pkt(0, 105, Body::ClientResponse(ClientResponse::DeleteStream))),
        ("list_streams", pkt(0, 106, Body::ClientRequest(ClientRequest::ListStreams { incarnations: false }))),
        (
            "list_streams_response",
            pkt(
                0,
                106,
                Body::ClientResponse(ClientResponse::ListStreams(vec![StreamInfo {
                    name: "orders".into(),
                    group: 7,
                    first_offset: 41,
                    next_offset: 42,
                    incarnation: 0,
                }])),
            ),
        ),
        // The optional trailing fields of 0.3: sessions on stream writes,
        // incarnations in the stream list.
        (
            "trim_in_session",
            pkt(
                0,
                109,
                Body::ClientRequest(ClientRequest::Trim { stream: "orders".into(), before: 41, session: 17, seq: 3 }),
            ),
        ),
        (
            "create_stream_in_session",
            pkt(
                0,
                110,
                Body::ClientRequest(ClientRequest::CreateStream { stream: "logs".into(), session: 17, seq: 4 }),
            ),
        ),
        (
            "delete_stream_in_session",
            pkt(
                0,
                111,
                Body::ClientRequest(ClientRequest::DeleteStream {
                    stream: "logs".into(),
                    session: 17,
                    seq: 5,
                    incarnation: 104,
                }),
            ),
        ),
        (
            "list_streams_with_incarnations",
            pkt(0, 112, Body::ClientRequest(ClientRequest::ListStreams { incarnations: true })),
        ),
        (
            "list_streams_response_with_incarnations",
            pkt(
                0,
                112,
                Body::ClientResponse(ClientResponse::ListStreams(vec![
                    StreamInfo { name: "logs".into(), group: 1, first_offset: 0, next_offset: 3, incarnation: 104 },
                    StreamInfo { name: "orders".into(), group: 1, first_offset: 41, next_offset: 42, incarnation: 9 },
                ])),
            ),
        ),
        ("open_session", pkt(0, 108, Body::ClientRequest(ClientRequest::OpenSession))),
        (
            "open_session_response",
            pkt(0, 108, Body::ClientResponse(ClientResponse::OpenSession { session: 17, ttl_ms: 600_000 })),
        ),
        (
            "error_session_expired",
            pkt(0, 108, Body::Error(ErrorFrame::new(ErrorCode::SessionExpired, 0, "session 17 expired"))),
        ),
        ("status", pkt(0, 107, Body::ClientRequest(ClientRequest::Status { health: false }))),
        (
            "status_response",
            pkt(
                0,
                107,
                Body::ClientResponse(ClientResponse::Status {
                    node_id: 1,
                    fsyncs: 90,
                    entries_written: 400,
                    appends_sent: 0,
                    entries_sent: 0,
                    groups: vec![GroupStatus {
                        group: 7,
                        role: 3,
                        term: 5,
                        leader: 1,
                        commit: 13,
                        applied: 13,
                        last_index: 13,
                        voters: vec![1, 2, 3],
                        learners: vec![4],
                        peers: vec![PeerProgress { node: 2, matched: 13, next: 14 }],
                    }],
                    health: None,
                }),
            ),
        ),
        // The health of issue 16: asked for with a trailing 1, answered
        // with a trailing flags byte (a starting node: no groups).
        ("status_with_health", pkt(0, 109, Body::ClientRequest(ClientRequest::Status { health: true }))),
        (
            "status_response_with_health",
            pkt(
                0,
                109,
                Body::ClientResponse(ClientResponse::Status {
                    node_id: 2,
                    fsyncs: 0,
                    entries_written: 0,
                    appends_sent: 0,
                    entries_sent: 0,
                    groups: vec![],
                    health: Some(Health { disk_full: true, starting: true }),
                }),
            ),
        ),
        // A node rebuilding its state fetches a peer's snapshot (issue 16).
        (
            "fetch_snapshot",
            pkt(
                0,
                110,
                Body::ClientRequest(ClientRequest::FetchSnapshot {
                    index: 500,
                    content: 77,
                    offset: 1_048_576,
                    at_least: 0,
                }),
            ),
        ),
        (
            "fetch_snapshot_response",
            pkt(
                0,
                110,
                Body::ClientResponse(ClientResponse::FetchSnapshot {
                    last_index: LogIndex(500),
                    last_term: Term(4),
                    membership: ringraft::storage::record::encode_membership(&Membership::new([
                        NodeId(1),
                        NodeId(2),
                        NodeId(3),
                    ])),
                    content: 77,
                    offset: 1_048_576,
                    data: b(b"chunk"),
                    done: true,
                }),
            ),
        ),
        ("add_voter", pkt(7, 200, Body::Admin(AdminRequest::AddVoter { node: 4, addr: "10.0.0.4:7100".into() }))),
        ("remove_voter", pkt(7, 201, Body::Admin(AdminRequest::RemoveVoter { node: 3 }))),
        ("add_learner", pkt(7, 202, Body::Admin(AdminRequest::AddLearner { node: 5, addr: String::new() }))),
        ("remove_learner", pkt(7, 203, Body::Admin(AdminRequest::RemoveLearner { node: 5 }))),
        (
            "change_peers",
            pkt(7, 204, Body::Admin(AdminRequest::ChangePeers { voters: vec![1, 2, 4], learners: vec![5] })),
        ),
        ("transfer_leader", pkt(7, 205, Body::Admin(AdminRequest::TransferLeader { target: 2 }))),
        ("snapshot", pkt(7, 206, Body::Admin(AdminRequest::Snapshot))),
        ("admin_response", pkt(7, 204, Body::AdminResponse { index: 14, leader: 1 })),
        // TransferLeader's answer: index = the target (node 2), leader = the old leader.
        ("transfer_leader_response", pkt(7, 205, Body::AdminResponse { index: 2, leader: 1 })),
    ]
}

/// Parses a vector file: `[name]` starts a section, `#` starts a comment,
/// everything else is hex digits (whitespace ignored).
fn parse(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.to_string(), String::new()));
        } else if !line.is_empty() {
            out.last_mut().expect("hex before the first [section]").1.push_str(line);
        }
    }
    out.into_iter()
        .map(|(n, h)| {
            let h: String = h.split_whitespace().collect();
            let bytes = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex in [{n}]")))
                .collect();
            (n, bytes)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

fn encode(p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_packet(&mut out, p).expect("encodes");
    out.to_vec()
}

fn render(cases: &[(&str, Packet)]) -> String {
    let mut s = String::from(
        "# ringraft wire protocol v1 test vectors (see PROTOCOL.md §Test vectors).\n\
         # [name] starts a vector; '#' starts a comment; the rest is hex, whitespace ignored.\n\
         # First line of each vector: the 32-byte frame header; then the body, 16 bytes a line.\n",
    );
    for (name, p) in cases {
        let bytes = encode(p);
        s.push_str(&format!("\n[{name}]  # type 0x{:02x}\n{}\n", p.body.msg_type() as u8, hex(&bytes[..32])));
        for line in bytes[32..].chunks(16) {
            s.push_str(&hex(line));
            s.push('\n');
        }
    }
    s
}

#[test]
fn every_vector_decodes_to_its_value_and_re_encodes_byte_for_byte() {
    let cases = cases();
    let path = dir().join("messages.txt");
    if std::env::var_os("RINGRAFT_WRITE_VECTORS").is_some() {
        std::fs::write(&path, render(&cases)).expect("write vectors");
    }
    let text = std::fs::read_to_string(&path).expect("proto-spec/vectors/messages.txt");
    let vectors = parse(&text);
    assert_eq!(vectors.len(), cases.len(), "one vector per case");
    for ((name, bytes), (cname, want)) in vectors.iter().zip(&cases) {
        assert_eq!(name, cname, "vectors are in case order");
        let f = Frame::decode_exact(bytes, DEFAULT_MAX_BODY).unwrap_or_else(|e| panic!("[{name}]: {e}"));
        let got = decode_packet(&f).unwrap_or_else(|e| panic!("[{name}]: {e}"));
        assert_eq!(&got, want, "[{name}] decodes to its value");
        assert_eq!(&encode(&got), bytes, "[{name}] re-encodes byte for byte");
    }
}

#[test]
fn every_message_type_has_a_vector() {
    let have: BTreeSet<u8> = cases().iter().map(|(_, p)| p.body.msg_type() as u8).collect();
    for t in MsgType::ALL {
        assert!(have.contains(&(*t as u8)), "no vector for {t:?}");
    }
}

#[test]
fn malformed_vectors_fail_with_the_error_they_name() {
    let text = std::fs::read_to_string(dir().join("malformed.txt")).expect("proto-spec/vectors/malformed.txt");
    let vectors = parse(&text);
    assert!(vectors.len() >= 6);
    for (name, bytes) in vectors {
        let r = Frame::decode_exact(&bytes, 1024).and_then(|f| decode_packet(&f));
        let e = r.expect_err(&name);
        let kind = match e {
            ProtocolError::Truncated { .. } => "truncated",
            ProtocolError::Oversized { .. } => "oversized",
            ProtocolError::UnknownType(_) => "unknown_type",
            ProtocolError::BadCrc { .. } => "bad_crc",
            ProtocolError::BadMagic(_) => "bad_magic",
            ProtocolError::VersionUnsupported(_) => "version_unsupported",
            ProtocolError::BadFlags(_) => "bad_flags",
            ProtocolError::Malformed(_) => "malformed",
        };
        assert!(name.starts_with(kind), "[{name}] failed with {e}");
    }
}
