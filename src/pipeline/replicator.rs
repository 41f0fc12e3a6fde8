//! Replicators (SOFAJRaft's `Replicator`): one ring and one sender thread
//! per peer. The core hands each peer's messages of one `Ready` to that
//! peer's ring; the thread drains the ring and passes everything it found to
//! the transport as one batch (one coalesced write), so encoding and
//! queueing run off the core thread when traffic is heavy.
//!
//! When a peer's ring is idle (everything handed to it has been sent) and
//! the batch is small, the core sends inline instead: the group-commit
//! leader pattern. Order is kept because only the core publishes into these
//! rings and it sends inline only once the replicator has finished every
//! batch it was given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hashbrown::HashMap;

use super::ring::{ring, Recv, RingSender, SendError};
use super::transport::RaftTransport;
use crate::core::{Message, NodeId};

/// Largest batch (in payload bytes) the core sends inline.
const INLINE_BYTES_MAX: usize = 64 << 10;

struct Peer {
    tx: RingSender<Vec<Message>>,
    /// Batches handed to the ring and not yet sent.
    queued: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// Counters of all replicators of a node.
#[derive(Debug, Default)]
pub(crate) struct ReplicatorCounters {
    pub inline_batches: AtomicU64,
    pub handed_off: AtomicU64,
    pub dropped: AtomicU64,
}

/// The core thread's side of every peer's replicator.
pub(crate) struct Replicators {
    node: NodeId,
    peers: HashMap<NodeId, Peer>,
    transport: Arc<dyn RaftTransport>,
    capacity: usize,
    spin: Duration,
    /// Set by `Node::kill`: what is still queued is not sent.
    killed: Arc<std::sync::atomic::AtomicBool>,
    pub counters: Arc<ReplicatorCounters>,
}

impl Replicators {
    pub fn new(
        node: NodeId,
        transport: Arc<dyn RaftTransport>,
        capacity: usize,
        spin: Duration,
        killed: Arc<std::sync::atomic::AtomicBool>,
    ) -> Replicators {
        Replicators {
            node,
            peers: HashMap::new(),
            transport,
            capacity,
            spin,
            killed,
            counters: Arc::new(ReplicatorCounters::default()),
        }
    }

    /// Sends `msgs` (all to `to`, in order): inline when the peer's
    /// replicator is idle and the batch small, else through its ring.
    pub fn send(&mut self, to: NodeId, msgs: Vec<Message>) {
        if !self.peers.contains_key(&to) {
            match self.spawn(to) {
                Ok(p) => {
                    self.peers.insert(to, p);
                }
                Err(e) => {
                    log::error!("node {}: cannot start the replicator of peer {to}: {e}; sending inline", self.node);
                    self.transport.send(to, msgs);
                    return;
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&to) else { return };
        let bytes = super::net::encoded_size_hint(&msgs);
        if peer.queued.load(Ordering::Acquire) == 0 && bytes <= INLINE_BYTES_MAX {
            self.counters.inline_batches.fetch_add(1, Ordering::Relaxed);
            self.transport.send(to, msgs);
            return;
        }
        peer.queued.fetch_add(1, Ordering::AcqRel);
        match peer.tx.try_send(msgs) {
            Ok(()) => {
                self.counters.handed_off.fetch_add(1, Ordering::Relaxed);
            }
            Err(SendError::Full(_)) | Err(SendError::Closed(_)) => {
                // Raft resends what a peer did not acknowledge.
                peer.queued.fetch_sub(1, Ordering::AcqRel);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn spawn(&self, to: NodeId) -> std::io::Result<Peer> {
        let (tx, mut rx) = ring::<Vec<Message>>("replicator", self.capacity, self.spin);
        let queued = Arc::new(AtomicU64::new(0));
        let q = Arc::clone(&queued);
        let transport = Arc::clone(&self.transport);
        let killed = Arc::clone(&self.killed);
        let thread = std::thread::Builder::new().name(format!("n{}-repl-{to}", self.node)).spawn(move || {
            let mut batches = Vec::with_capacity(256);
            loop {
                if let Recv::Closed = rx.recv_batch(&mut batches, None) {
                    return;
                }
                let n = batches.len() as u64;
                let mut all: Vec<Message> = Vec::new();
                for b in batches.drain(..) {
                    all.extend(b);
                }
                if !all.is_empty() && !killed.load(Ordering::Acquire) {
                    transport.send(to, all);
                }
                q.fetch_sub(n, Ordering::AcqRel);
            }
        })?;
        Ok(Peer { tx, queued, thread: Some(thread) })
    }

    /// Closes every ring and waits for the threads (they send what they
    /// hold first).
    pub fn shutdown(&mut self) {
        for (_, mut p) in self.peers.drain() {
            drop(p.tx);
            if let Some(t) = p.thread.take() {
                if t.join().is_err() {
                    log::error!("node {}: a replicator thread panicked", self.node);
                }
            }
        }
    }
}
