//! The snapshot sender: a thread that fills the leader's `InstallSnapshot`
//! messages with bytes from the group's [`SnapshotStore`] and sends them,
//! so that reading a large snapshot never stalls the core or a replicator.
//!
//! The core asks for one chunk per follower at a time (the next one when
//! the follower acknowledges, the same one again when the answer is late),
//! so a transfer needs no state here beyond two limits: at most
//! `sends_max` followers are served at once (a chunk for another follower
//! is dropped; the core asks again later, by which time a slot may be free),
//! and the bytes sent per second stay under `bytes_per_sec` (the thread
//! sleeps off any excess; 0 means no cap). A request for the chunk this
//! thread sent the same follower less than a second ago is dropped: under a
//! low bandwidth cap the core's resends would otherwise spend the budget on
//! copies. Every chunk carries the snapshot's content checksum.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use super::transport::RaftTransport;
use crate::core::{GroupId, Message, MessageBody, NodeId};
use crate::node::SnapshotStore;

/// A follower is counted as being served for this long after its last chunk.
const ACTIVE_FOR: Duration = Duration::from_secs(5);

/// The same chunk is sent to the same follower again only after this long.
const RESEND_AFTER: Duration = Duration::from_secs(1);

/// Limits of the sender.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SenderLimits {
    pub chunk_bytes: usize,
    pub bytes_per_sec: u64,
    pub sends_max: usize,
}

/// The handle the core thread holds.
pub(crate) struct SnapshotSender {
    tx: Option<mpsc::Sender<Message>>,
    thread: Option<JoinHandle<()>>,
}

impl SnapshotSender {
    pub fn start(
        id: NodeId,
        stores: HashMap<GroupId, Arc<dyn SnapshotStore>>,
        transport: Arc<dyn RaftTransport>,
        limits: SenderLimits,
    ) -> std::io::Result<SnapshotSender> {
        let (tx, rx) = mpsc::channel::<Message>();
        let thread = std::thread::Builder::new()
            .name(format!("n{id}-snapshot"))
            .spawn(move || run(rx, stores, transport.as_ref(), limits))?;
        Ok(SnapshotSender { tx: Some(tx), thread: Some(thread) })
    }

    /// Queues one chunk request (an `InstallSnapshot` without data).
    pub fn send(&self, msg: Message) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg);
        }
    }

    pub fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("snapshot sender panicked");
            }
        }
    }
}

impl Drop for SnapshotSender {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The bandwidth cap: a leaky bucket that lets at most [`BURST`] of unused
/// time count as credit, so a sender idle for an hour does not then send an
/// hour's worth at once (it used to: the cap was the average since the
/// thread started).
struct Pacer {
    bytes_per_sec: u64,
    /// When the bytes sent so far are paid for.
    paid_until: Instant,
}

/// Unused sending time that counts as credit.
const BURST: Duration = Duration::from_secs(1);

impl Pacer {
    fn new(bytes_per_sec: u64, now: Instant) -> Pacer {
        Pacer { bytes_per_sec, paid_until: now }
    }

    /// Books `bytes` sent at `now`; returns how long to wait before sending
    /// them (zero when uncapped or within the credit).
    fn wait(&mut self, bytes: u64, now: Instant) -> Duration {
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let floor = now.checked_sub(BURST).unwrap_or(now);
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        self.paid_until = self.paid_until.max(floor) + cost;
        self.paid_until.saturating_duration_since(now)
    }
}

fn run(
    rx: mpsc::Receiver<Message>,
    stores: HashMap<GroupId, Arc<dyn SnapshotStore>>,
    transport: &dyn RaftTransport,
    limits: SenderLimits,
) {
    let mut active: HashMap<NodeId, Instant> = HashMap::new();
    let mut last_sent: HashMap<NodeId, (crate::core::LogIndex, u64, Instant)> = HashMap::new();
    let mut pacer = Pacer::new(limits.bytes_per_sec, Instant::now());
    while let Ok(mut msg) = rx.recv() {
        let now = Instant::now();
        active.retain(|_, at| now.duration_since(*at) < ACTIVE_FOR);
        if !active.contains_key(&msg.to) && active.len() >= limits.sends_max {
            log::debug!("snapshot to {} waits: {} transfers already running", msg.to, active.len());
            continue;
        }
        let Some(store) = stores.get(&msg.group) else { continue };
        let MessageBody::InstallSnapshot { meta, offset, data, done, content } = &mut msg.body else { continue };
        if last_sent
            .get(&msg.to)
            .is_some_and(|&(i, o, at)| i == meta.last_index && o == *offset && now.duration_since(at) < RESEND_AFTER)
        {
            continue;
        }
        match store.read_chunk(meta.last_index, *offset, limits.chunk_bytes) {
            Ok((bytes, last)) => {
                *data = bytes;
                *done = last;
                *content = store.content_id(meta.last_index);
            }
            Err(e) => {
                log::warn!("snapshot {} for node {}: cannot read at {offset}: {e}", meta.last_index, msg.to);
                continue;
            }
        }
        active.insert(msg.to, now);
        last_sent.retain(|_, s| now.duration_since(s.2) < RESEND_AFTER);
        last_sent.insert(msg.to, (meta.last_index, *offset, now));
        let wait = pacer.wait(data.len() as u64, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        transport.send(msg.to, vec![msg]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_allows_a_second_of_credit_and_no_more() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000_000, t0);
        // An hour idle: still only one second's worth goes out at once.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(p.wait(1_000_000, later), Duration::ZERO, "a second of credit");
        assert_eq!(p.wait(500_000, later), Duration::from_millis(500), "then the cap");
        assert_eq!(p.wait(500_000, later), Duration::from_millis(1000));
        // Paid up a second later: the next half second waits half a second.
        let after = later + Duration::from_secs(1);
        assert_eq!(p.wait(500_000, after), Duration::from_millis(500));
        assert_eq!(Pacer::new(0, t0).wait(u64::MAX, t0), Duration::ZERO, "0: no cap");
    }
}
