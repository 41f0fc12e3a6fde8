//! What the stages send Raft messages through, and an in-process network
//! for tests and the demo.
//!
//! A transport's `send` never blocks and may drop or reorder messages (the
//! core tolerates both; the mio adapter moves heartbeats of a batch behind
//! its other messages, and persisted messages leave from the append thread). Received
//! messages go into the destination node's intake ring through its
//! [`Inbound`] handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};

use super::input::Input;
use super::ring::{RingSender, SendError};
use crate::core::{Message, NodeId};

/// Sends Raft messages to peers.
pub trait RaftTransport: Send + Sync + 'static {
    /// Queues `msgs` (all to `to`, in order). Must not block; may drop them
    /// when the peer is unreachable or its queue is full.
    fn send(&self, to: NodeId, msgs: Vec<Message>);
}

/// Why an inbound delivery was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DeliverError {
    /// The node's intake ring is full; the messages were not accepted.
    Busy,
    /// The node has stopped.
    Closed,
}

/// A handle that feeds messages from the network into one node's intake
/// ring. Each thread that delivers should hold its own clone.
#[derive(Clone)]
pub struct Inbound {
    tx: RingSender<Input>,
}

impl Inbound {
    pub(crate) fn new(tx: RingSender<Input>) -> Inbound {
        Inbound { tx }
    }

    /// Publishes `msgs` into the intake ring, all or none, without blocking.
    ///
    /// # Errors
    /// [`DeliverError::Busy`] when the ring lacks room (nothing was
    /// accepted), [`DeliverError::Closed`] after the node stopped.
    pub fn deliver(&mut self, msgs: Vec<Message>) -> Result<(), DeliverError> {
        let mut inputs: Vec<Input> = msgs.into_iter().map(Input::Raft).collect();
        match self.tx.try_send_batch(&mut inputs) {
            Ok(()) => Ok(()),
            Err(SendError::Full(())) => Err(DeliverError::Busy),
            Err(SendError::Closed(())) => Err(DeliverError::Closed),
        }
    }
}

/// An in-process network: nodes registered by id, messages delivered
/// straight into the destination's intake ring. A node that is not
/// registered (stopped, killed, cut off) loses what is sent to it.
#[derive(Default)]
pub struct InProcNetwork {
    nodes: RwLock<HashMap<NodeId, Arc<Mutex<Inbound>>>>,
    /// Directed links that drop everything (a one-way partition).
    blocked: RwLock<hashbrown::HashSet<(NodeId, NodeId)>>,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl InProcNetwork {
    /// An empty network.
    pub fn new() -> Arc<InProcNetwork> {
        Arc::new(InProcNetwork::default())
    }

    /// Makes `id` reachable through `inbound` (replacing an older handle).
    pub fn register(&self, id: NodeId, inbound: Inbound) {
        self.nodes.write().insert(id, Arc::new(Mutex::new(inbound)));
    }

    /// Makes `id` unreachable: messages to it are dropped.
    pub fn unregister(&self, id: NodeId) {
        self.nodes.write().remove(&id);
    }

    /// Drops every message from `from` to `to` until [`InProcNetwork::unblock`].
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.blocked.write().insert((from, to));
    }

    /// Delivers messages from `from` to `to` again.
    pub fn unblock(&self, from: NodeId, to: NodeId) {
        self.blocked.write().remove(&(from, to));
    }

    /// Messages delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.delivered.load(Ordering::Relaxed), self.dropped.load(Ordering::Relaxed))
    }
}

impl RaftTransport for InProcNetwork {
    fn send(&self, to: NodeId, msgs: Vec<Message>) {
        let n = msgs.len() as u64;
        let from = msgs.first().map(|m| m.from).unwrap_or(NodeId::NONE);
        if self.blocked.read().contains(&(from, to)) {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let dest = self.nodes.read().get(&to).cloned();
        let ok = match dest {
            Some(inbound) => inbound.lock().deliver(msgs).is_ok(),
            None => false,
        };
        let counter = if ok { &self.delivered } else { &self.dropped };
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
