//! The state the handles and the I/O thread share: the queue of frames
//! for the I/O thread, the connections other threads may write to directly,
//! routes learned at run time, the waker and the stop flag.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::contract::{Dest, Stats};
use super::direct;
use crate::core::NodeId;

/// Frames for the I/O thread: where they go, and the connection whose
/// `DirectState::queued` counted them, if one did (`direct.rs`).
pub(super) type Queued = (Dest, Bytes, Option<Arc<direct::Direct>>);

/// State shared by the handles and the I/O thread.
pub(super) struct Shared {
    /// Frames for the I/O thread.
    pub(super) queue: Mutex<Vec<Queued>>,
    /// Open connections other threads may write to directly (`direct.rs`).
    pub(super) direct: parking_lot::RwLock<hashbrown::HashMap<Dest, Arc<direct::Direct>>>,
    /// Peer addresses learned at run time (a member added by an operator).
    pub(super) routes: Mutex<Vec<(NodeId, SocketAddr)>>,
    pub(super) queue_max: usize,
    pub(super) waker: mio::Waker,
    pub(super) stop: AtomicBool,
    pub(super) stats: Stats,
}

impl Shared {
    pub(super) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("transport: waking the I/O thread failed: {e}");
        }
    }
}
