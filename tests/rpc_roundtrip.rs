//! Property tests of the RPC codec: random Raft messages (every body kind)
//! and heartbeat batches round-trip through encode, a chunked
//! `FrameDecoder` and decode; random, truncated and bit-flipped bytes never
//! make the frame or body decoders panic, and a flipped bit is always caught.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use ringraft::core::{
    Entry, GroupId, LogIndex, Membership, Message, MessageBody, NodeId, Payload, RejectHint, SnapshotMeta, Term,
};
use ringraft::rpc::{
    decode_body, decode_packet, encode_packet, Body, Frame, FrameDecoder, HeartbeatBatch, HeartbeatItem, MsgType,
    Packet, DEFAULT_MAX_BODY,
};
use ringraft::rpc::{raft_packet, PeerMsg};

fn membership() -> impl Strategy<Value = Membership> {
    (
        prop::collection::btree_set(1u64..9, 0..4),
        prop::collection::btree_set(1u64..9, 0..3),
        prop::collection::btree_set(9u64..12, 0..2),
    )
        .prop_map(|(v, o, l)| Membership {
            voters: v.into_iter().map(NodeId).collect(),
            voters_outgoing: o.into_iter().map(NodeId).collect(),
            learners: l.into_iter().map(NodeId).collect(),
        })
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        Just(Payload::Noop),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|v| Payload::Normal(Bytes::from(v))),
        membership().prop_map(Payload::Config),
    ]
}

fn body() -> impl Strategy<Value = MessageBody> {
    let u = any::<u64>;
    prop_oneof![
        (u(), u()).prop_map(|(t, i)| MessageBody::PreVote { last_log_term: Term(t), last_log_index: LogIndex(i) }),
        any::<bool>().prop_map(|granted| MessageBody::PreVoteResponse { granted }),
        (u(), u(), any::<bool>()).prop_map(|(t, i, transfer)| MessageBody::Vote {
            last_log_term: Term(t),
            last_log_index: LogIndex(i),
            transfer
        }),
        any::<bool>().prop_map(|granted| MessageBody::VoteResponse { granted }),
        (0u64..1 << 40, u(), prop::collection::vec((u(), payload()), 0..6), u()).prop_map(|(prev, pt, es, c)| {
            MessageBody::AppendEntries {
                prev_log_index: LogIndex(prev),
                prev_log_term: Term(pt),
                entries: es
                    .into_iter()
                    .enumerate()
                    .map(|(i, (t, payload))| Entry { term: Term(t), index: LogIndex(prev + 1 + i as u64), payload })
                    .collect(),
                commit: LogIndex(c),
            }
        }),
        (u(), prop::option::of((u(), u(), u()))).prop_map(|(m, r)| MessageBody::AppendEntriesResponse {
            match_index: LogIndex(m),
            reject: r.map(|(a, b, c)| RejectHint {
                rejected_index: LogIndex(a),
                conflict_term: Term(b),
                conflict_index: LogIndex(c)
            }),
        }),
        (u(), u()).prop_map(|(c, r)| MessageBody::Heartbeat { commit: LogIndex(c), read_round: r }),
        u().prop_map(|r| MessageBody::HeartbeatResponse { read_round: r }),
        Just(MessageBody::TimeoutNow),
        (u(), u(), membership(), u(), prop::collection::vec(any::<u8>(), 0..128), any::<bool>(), u()).prop_map(
            |(i, t, m, off, d, done, content)| MessageBody::InstallSnapshot {
                meta: SnapshotMeta { last_index: LogIndex(i), last_term: Term(t), membership: m },
                offset: off,
                data: Bytes::from(d),
                done,
                content,
            }
        ),
        (u(), u(), any::<bool>()).prop_map(|(i, n, done)| MessageBody::InstallSnapshotResponse {
            last_index: LogIndex(i),
            next_offset: n,
            done
        }),
        u().prop_map(|ctx| MessageBody::ReadIndexRequest { ctx }),
        (u(), prop::option::of(u()))
            .prop_map(|(ctx, i)| MessageBody::ReadIndexResponse { ctx, index: i.map(LogIndex) }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), body()).prop_map(|(g, f, t, term, body)| Message {
        group: GroupId(g),
        from: NodeId(f),
        to: NodeId(t),
        term: Term(term),
        body,
    })
}

fn batch() -> impl Strategy<Value = HeartbeatBatch> {
    (any::<u64>(), any::<u64>(), prop::collection::vec(any::<[u64; 4]>(), 0..20)).prop_map(|(f, t, items)| {
        HeartbeatBatch {
            from: NodeId(f),
            to: NodeId(t),
            items: items
                .into_iter()
                .map(|[g, term, c, r]| HeartbeatItem {
                    group: GroupId(g),
                    term: Term(term),
                    commit: LogIndex(c),
                    read_round: r,
                })
                .collect(),
        }
    })
}

/// Everything a decoder may be fed must come back as Ok or Err, never a
/// panic; returns how many frames came out.
fn feed(bytes: &[u8], chunk: usize, max: u32) -> usize {
    let mut d = FrameDecoder::new(max);
    let mut n = 0;
    for c in bytes.chunks(chunk.max(1)) {
        d.push(c);
        while let Ok(Some(f)) = d.next_frame() {
            let _ = decode_packet(&f);
            n += 1;
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn raft_messages_round_trip_through_a_chunked_decoder(
        msgs in prop::collection::vec(message(), 1..8),
        chunk in 1usize..200,
    ) {
        let mut out = BytesMut::new();
        for m in &msgs {
            encode_packet(&mut out, &Packet { group: m.group, request_id: m.term.0 ^ 7, body: Body::Peer(PeerMsg::Raft(m.clone())) })
                .unwrap();
        }
        let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
        let mut got = Vec::new();
        for c in out.chunks(chunk) {
            d.push(c);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(decode_packet(&f).unwrap());
            }
        }
        prop_assert_eq!(d.buffered(), 0);
        prop_assert_eq!(got.len(), msgs.len());
        for (p, m) in got.iter().zip(&msgs) {
            prop_assert_eq!(p.request_id, m.term.0 ^ 7);
            prop_assert_eq!(&p.body, &Body::Peer(PeerMsg::Raft(m.clone())));
        }
    }

    #[test]
    fn heartbeat_batches_round_trip(b in batch()) {
        let p = Packet { group: GroupId(0), request_id: 0, body: Body::Peer(PeerMsg::HeartbeatBatch(b.clone())) };
        let mut out = BytesMut::new();
        encode_packet(&mut out, &p).unwrap();
        let back = decode_packet(&Frame::decode_exact(&out, DEFAULT_MAX_BODY).unwrap()).unwrap();
        prop_assert_eq!(back, p);
        prop_assert_eq!(b.to_messages().count(), b.items.len());
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), chunk in 1usize..64) {
        feed(&bytes, chunk, 256);
        for t in MsgType::ALL {
            let _ = decode_body(*t as u8, GroupId(1), 0, Bytes::from(bytes.clone()));
        }
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        kind in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        // A valid header and CRC around random bytes reaches every body decoder.
        let mut out = BytesMut::new();
        ringraft::rpc::frame::write_frame(&mut out, kind, GroupId(3), 1, |b| {
            b.extend_from_slice(&body);
            Ok(())
        })
        .unwrap();
        let f = Frame::decode_exact(&out, DEFAULT_MAX_BODY).unwrap();
        if let Ok(p) = decode_packet(&f) {
            // Whatever decodes re-encodes to something that decodes the same.
            let mut again = BytesMut::new();
            if encode_packet(&mut again, &p).is_ok() {
                let f2 = Frame::decode_exact(&again, DEFAULT_MAX_BODY).unwrap();
                prop_assert_eq!(decode_packet(&f2).unwrap(), p);
            }
        }
    }

    #[test]
    fn truncated_and_bit_flipped_frames_are_refused(m in message(), cut in any::<prop::sample::Index>(), bit in any::<prop::sample::Index>()) {
        let mut out = BytesMut::new();
        encode_packet(&mut out, &raft_packet(m)).unwrap();
        let n = cut.index(out.len());
        prop_assert!(Frame::decode_exact(&out[..n], DEFAULT_MAX_BODY).is_err());
        prop_assert_eq!(feed(&out[..n], 7, DEFAULT_MAX_BODY), 0);
        let mut flipped = out.to_vec();
        let b = bit.index(flipped.len() * 8);
        flipped[b / 8] ^= 1 << (b % 8);
        // CRC32C catches every single-bit error; header damage is caught by
        // the header checks or the CRC.
        prop_assert!(Frame::decode_exact(&flipped, DEFAULT_MAX_BODY).is_err());
    }
}
