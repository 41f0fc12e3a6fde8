//! The pipeline over the mio transport (src/rpc/transport/): the same
//! [`RaftTransport`] trait the in-process network implements.
//!
//! Outbound, a replicator's batch for one peer is encoded into one buffer of
//! frames on the calling thread and queued on the transport with one push
//! (one wake of the I/O thread at most). Inbound, [`RaftHandler`] runs on the
//! I/O thread and publishes the Raft messages of each frame into the node's
//! intake ring without blocking; when the ring is full the messages are
//! dropped and counted (Raft resends), so the I/O thread never stalls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;

use super::transport::{Inbound, RaftTransport};
use crate::core::{Message, NodeId};
use crate::rpc::transport::{Ctx, Dest, Handler, Remote, SendError, TransportHandle};
use crate::rpc::{encode_packet, Body, Packet, Role};

impl RaftTransport for TransportHandle {
    fn send(&self, to: NodeId, msgs: Vec<Message>) {
        let mut buf = BytesMut::new();
        for m in msgs {
            let kind = m.body.kind();
            if let Err(e) = encode_packet(&mut buf, &Packet::raft(m)) {
                // The core never builds such a message; dropping it is what
                // a lossy network would do, and Raft recovers.
                log::error!("transport: cannot encode a {kind} for node {to}: {e}");
            }
        }
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
            Body::Raft(m) if from.node != Some(m.from) => {
                log::warn!(
                    "transport: peer {:?} at {} sent a message claiming to be from node {}; dropped",
                    from.node,
                    from.addr,
                    m.from
                );
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Body::Raft(m) => self.deliver(vec![m]),
            Body::HeartbeatBatch(b) => self.deliver(b.to_messages().collect()),
            Body::HeartbeatResponseBatch(b) => self.deliver(b.to_messages().collect()),
            other => log::warn!("transport: unexpected {:?} frame from peer {}", other.msg_type(), from.addr),
        }
    }
}
