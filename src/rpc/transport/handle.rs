//! The transport's public face: [`Transport`] (binds, starts the I/O
//! thread, shuts it down) and the clonable [`TransportHandle`] other
//! threads send through.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use super::contract::{Dest, Handler, SendError, Stats, TransportConfig};
use super::shared::Shared;
use super::{direct, event_loop};
use crate::core::NodeId;
use crate::rpc::{encode_packet, Packet};

/// A cheap, clonable sender usable from any thread.
#[derive(Clone)]
pub struct TransportHandle {
    pub(super) shared: Arc<Shared>,
}

impl TransportHandle {
    /// Encodes `packet` here and queues it for `to`.
    ///
    /// # Errors
    /// [`SendError::Busy`] when the queue is full, [`SendError::Closed`]
    /// after shutdown, [`SendError::Encode`] for an unencodable packet.
    pub fn send(&self, to: Dest, packet: &Packet) -> Result<(), SendError> {
        let mut buf = BytesMut::with_capacity(256);
        encode_packet(&mut buf, packet).map_err(SendError::Encode)?;
        self.send_encoded(to, buf.freeze())
    }

    /// Queues frames already encoded (one or more whole frames) for `to`.
    ///
    /// # Errors
    /// [`SendError::Busy`] or [`SendError::Closed`].
    pub fn send_encoded(&self, to: Dest, frames: Bytes) -> Result<(), SendError> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let d = self.shared.direct.read().get(&to).map(Arc::clone);
        if let Some(d) = d {
            let mut st = d.lock();
            match direct::try_write(&d, &mut st, &frames) {
                direct::Written::Done { flush_needed: false } | direct::Written::Broken => return Ok(()),
                // The rest waits in `head`: an empty, counted item makes the
                // I/O thread flush this connection.
                direct::Written::Done { flush_needed: true } => {
                    st.queued += 1;
                    return self.push(to, Bytes::new(), Some(Arc::clone(&d)), false);
                }
                // Pushed while holding the connection's lock, so no later
                // direct write overtakes it.
                direct::Written::Queue => {
                    let r = self.push(to, frames, Some(Arc::clone(&d)), true);
                    if r.is_err() {
                        st.queued -= 1;
                    }
                    return r;
                }
            }
        }
        self.push(to, frames, None, true)
    }

    /// Puts frames on the I/O thread's queue (refused when full and
    /// `bounded`) and wakes it if the queue was empty.
    fn push(
        &self,
        to: Dest,
        frames: Bytes,
        counted: Option<Arc<direct::Direct>>,
        bounded: bool,
    ) -> Result<(), SendError> {
        let was_empty = {
            let mut q = self.shared.queue.lock();
            if bounded && q.len() >= self.shared.queue_max {
                return Err(SendError::Busy);
            }
            q.push((to, frames, counted));
            q.len() == 1
        };
        // Only the push that found the queue empty wakes: the I/O thread
        // takes the whole queue at once, so later pushes ride along.
        if was_empty {
            self.shared.wake();
        }
        Ok(())
    }

    /// Learns (or changes) the address of peer `node`: this node dials it
    /// from now on if its id is higher, as for the peers it started with.
    ///
    /// # Errors
    /// [`SendError::Closed`] after shutdown.
    pub fn add_peer(&self, node: NodeId, addr: SocketAddr) -> Result<(), SendError> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        self.shared.routes.lock().push((node, addr));
        self.shared.wake();
        Ok(())
    }

    /// The transport's counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

/// A running transport; dropping it shuts it down.
pub struct Transport {
    handle: TransportHandle,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Transport {
    /// Binds the listener and starts the I/O thread.
    ///
    /// # Errors
    /// Binding, creating the poll or spawning the thread failed.
    pub fn start(config: TransportConfig, handler: impl Handler) -> io::Result<Transport> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), event_loop::WAKER)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            direct: parking_lot::RwLock::new(hashbrown::HashMap::new()),
            routes: Mutex::new(Vec::new()),
            queue_max: config.queue_max,
            waker,
            stop: AtomicBool::new(false),
            stats: Stats::default(),
        });
        let lp = event_loop::IoLoop::new(config, poll, Arc::clone(&shared), Box::new(handler))?;
        let local_addr = lp.local_addr()?;
        let thread = std::thread::Builder::new().name(format!("rpc-io-{local_addr}")).spawn(move || lp.run())?;
        Ok(Transport { handle: TransportHandle { shared }, local_addr, thread: Some(thread) })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A sender for other threads.
    pub fn handle(&self) -> TransportHandle {
        self.handle.clone()
    }

    /// Stops the I/O thread, closes every socket, and waits for it.
    pub fn shutdown(&mut self) {
        self.handle.shared.stop.store(true, Ordering::Release);
        self.handle.shared.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("transport {}: the I/O thread panicked", self.local_addr);
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.shutdown();
    }
}
