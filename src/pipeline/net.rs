//! The pipeline over the mio transport (src/rpc/transport/): the same
//! [`RaftTransport`] trait the in-process network implements.
//!
//! Outbound, a replicator's batch for one peer is encoded into one buffer of
//! frames on the calling thread and queued on the transport with one push
//! (one wake of the I/O thread at most); the heartbeats of many groups in
//! that batch travel as one `HeartbeatBatch` frame (answers likewise). Inbound, [`RaftHandler`] runs on the
//! I/O thread and publishes the Raft messages of each frame into the node's
//! intake ring without blocking; when the ring is full the messages are
//! dropped and counted (Raft resends), so the I/O thread never stalls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;

use super::transport::{Inbound, RaftTransport};
use crate::core::{GroupId, Message, MessageBody, NodeId};
use crate::rpc::transport::{Ctx, Dest, Handler, Remote, SendError, TransportHandle};
use crate::rpc::{
    encode_packet, raft_packet, Body, HeartbeatBatch, HeartbeatItem, HeartbeatResponseBatch, HeartbeatResponseItem,
    Packet, PeerMsg, Role,
};

/// About the bytes `msgs` take encoded (frame headers and entry framing
/// over-estimated, so one allocation holds them); also the replicators'
/// measure for sending inline.
pub(crate) fn encoded_size_hint(msgs: &[Message]) -> usize {
    const PER_MESSAGE: usize = 96;
    const PER_ENTRY: usize = 32;
    msgs.iter()
        .map(|m| {
            PER_MESSAGE
                + match &m.body {
                    MessageBody::AppendEntries { entries, .. } => {
                        entries.iter().map(|e| e.size_bytes() + PER_ENTRY).sum::<usize>()
                    }
                    _ => 0,
                }
        })
        .sum()
}

/// Heartbeats (and their answers) of different groups in one send become
/// one batch frame each; everything else is encoded as it comes.
fn encode_batch(to: NodeId, msgs: Vec<Message>, buf: &mut BytesMut) {
    let from = msgs.first().map(|m| m.from).unwrap_or(NodeId::NONE);
    let beats = msgs.iter().filter(|m| matches!(m.body, MessageBody::Heartbeat { .. })).count();
    let answers = msgs.iter().filter(|m| matches!(m.body, MessageBody::HeartbeatResponse { .. })).count();
    let mut hb = HeartbeatBatch { from, to, items: Vec::new() };
    let mut hr = HeartbeatResponseBatch { from, to, items: Vec::new() };
    let mut rest: Vec<Packet> = Vec::with_capacity(msgs.len());
    for m in msgs {
        match m.body {
            MessageBody::Heartbeat { commit, read_round } if beats > 1 && m.from == from => {
                hb.items.push(HeartbeatItem { group: m.group, term: m.term, commit, read_round });
            }
            MessageBody::HeartbeatResponse { read_round } if answers > 1 && m.from == from => {
                hr.items.push(HeartbeatResponseItem { group: m.group, term: m.term, read_round });
            }
            _ => rest.push(raft_packet(m)),
        }
    }
    if !hb.items.is_empty() {
        rest.push(Packet { group: GroupId(0), request_id: 0, body: Body::Peer(PeerMsg::HeartbeatBatch(hb)) });
    }
    if !hr.items.is_empty() {
        rest.push(Packet { group: GroupId(0), request_id: 0, body: Body::Peer(PeerMsg::HeartbeatResponseBatch(hr)) });
    }
    for p in rest {
        if let Err(e) = encode_packet(buf, &p) {
            // The core never builds such a message; dropping it is what a
            // lossy network would do, and Raft recovers.
            log::error!("transport: cannot encode a {:?} for node {to}: {e}", p.body.msg_type());
        }
    }
}

impl RaftTransport for TransportHandle {
    fn send(&self, to: NodeId, msgs: Vec<Message>) {
        // Sized up front: growing it by doubling while encoding copied each
        // AppendEntries several times (a realloc storm on the core thread).
        let mut buf = BytesMut::with_capacity(encoded_size_hint(&msgs));
        encode_batch(to, msgs, &mut buf);
        if buf.is_empty() {
            return;
        }
        match self.send_encoded(Dest::Peer(to), buf.freeze()) {
            Ok(()) => {}
            Err(SendError::Busy) => log::debug!("transport: send queue full, dropping messages to node {to}"),
            Err(e) => log::debug!("transport: dropping messages to node {to}: {e}"),
        }
    }
}

/// The transport handler of a node: Raft frames from peers go into the
/// node's intake ring. Start the transport with it, start the node with the
/// transport's handle, then [`RaftHandler::attach`] the node's inbound.
#[derive(Clone, Default)]
pub struct RaftHandler {
    inbound: Arc<Mutex<Option<Inbound>>>,
    dropped: Arc<AtomicU64>,
}

impl RaftHandler {
    /// A handler with no node attached yet (frames are dropped until then).
    pub fn new() -> RaftHandler {
        RaftHandler::default()
    }

    /// Routes received Raft messages to this node's intake.
    pub fn attach(&self, inbound: Inbound) {
        *self.inbound.lock() = Some(inbound);
    }

    /// Stops routing (the node stopped).
    pub fn detach(&self) {
        *self.inbound.lock() = None;
    }

    /// Raft messages dropped because no node was attached or its intake
    /// ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn deliver(&self, msgs: Vec<Message>) {
        let n = msgs.len() as u64;
        let ok = match self.inbound.lock().as_mut() {
            Some(inbound) => inbound.deliver(msgs).is_ok(),
            None => false,
        };
        if !ok {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Handler for RaftHandler {
    fn on_frame(&mut self, _ctx: &mut Ctx, from: Remote, packet: Packet) {
        if from.role != Role::Peer {
            log::warn!(
                "transport: {:?} frame from a non-peer connection {} ignored",
                packet.body.msg_type(),
                from.addr
            );
            return;
        }
        match packet.body {
            Body::Peer(PeerMsg::Raft(m)) if from.node != Some(m.from) => {
                log::warn!(
                    "transport: peer {:?} at {} sent a message claiming to be from node {}; dropped",
                    from.node,
                    from.addr,
                    m.from
                );
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Body::Peer(PeerMsg::Raft(m)) => self.deliver(vec![m]),
            Body::Peer(PeerMsg::HeartbeatBatch(b)) if from.node == Some(b.from) => {
                self.deliver(b.to_messages().collect())
            }
            Body::Peer(PeerMsg::HeartbeatResponseBatch(b)) if from.node == Some(b.from) => {
                self.deliver(b.to_messages().collect())
            }
            other => log::warn!("transport: unexpected {:?} frame from peer {}", other.msg_type(), from.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{LogIndex, Term};
    use crate::rpc::frame::FrameDecoder;
    use crate::rpc::{decode_packet, DEFAULT_MAX_BODY};

    fn msg(group: u64, body: MessageBody) -> Message {
        Message { group: GroupId(group), from: NodeId(1), to: NodeId(2), term: Term(3), body }
    }

    fn decode_all(buf: BytesMut) -> Vec<Packet> {
        let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
        d.push(&buf);
        let mut out = Vec::new();
        while let Some(f) = d.next_frame().expect("valid frames") {
            out.push(decode_packet(&f).expect("valid body"));
        }
        out
    }

    #[test]
    fn heartbeats_of_many_groups_share_one_frame() {
        let hb = |g| msg(g, MessageBody::Heartbeat { commit: LogIndex(g), read_round: 9 });
        let append = msg(
            5,
            MessageBody::AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                entries: vec![],
                commit: LogIndex(0),
            },
        );
        let mut buf = BytesMut::new();
        encode_batch(NodeId(2), vec![hb(1), append.clone(), hb(2), hb(3)], &mut buf);
        let packets = decode_all(buf);
        assert_eq!(packets.len(), 2, "{packets:?}");
        assert_eq!(packets[0].body, Body::Peer(PeerMsg::Raft(append)));
        let Body::Peer(PeerMsg::HeartbeatBatch(b)) = &packets[1].body else { panic!("no batch: {packets:?}") };
        let back: Vec<Message> = b.to_messages().collect();
        assert_eq!(back, vec![hb(1), hb(2), hb(3)]);
    }

    #[test]
    fn a_lone_heartbeat_travels_as_itself() {
        let hb = msg(1, MessageBody::Heartbeat { commit: LogIndex(4), read_round: 1 });
        let mut buf = BytesMut::new();
        encode_batch(NodeId(2), vec![hb.clone()], &mut buf);
        assert_eq!(decode_all(buf), vec![raft_packet(hb)]);
    }
}
