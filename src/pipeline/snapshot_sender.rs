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

use super::contract::SnapshotStore;
use super::transport::RaftTransport;
use crate::core::{GroupId, Message, MessageBody, NodeId};

/// A follower is counted as being served for this long after its last chunk.
const ACTIVE_FOR: Duration = Duration::from_secs(5);

/// The same chunk is sent to the same follower again only after this long.
const RESEND_AFTER: Duration = Duration::from_secs(1);

/// Limits of the sender.
#[derive(Clone, Copy, Debug)]
pub struct SenderLimits {
    /// Bytes of snapshot per chunk message.
    pub chunk_bytes: usize,
    /// Bytes per second of all transfers together (0: unlimited).
    pub bytes_per_sec: u64,
    /// Transfers at once.
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
            .spawn(move || run(rx, SenderSteps::new(stores, limits), transport.as_ref()))?;
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
    /// When the bytes sent so far are paid for (process time).
    paid_until: Duration,
}

/// Unused sending time that counts as credit.
const BURST: Duration = Duration::from_secs(1);

impl Pacer {
    fn new(bytes_per_sec: u64, now: Duration) -> Pacer {
        Pacer { bytes_per_sec, paid_until: now }
    }

    /// Books `bytes` sent at `now`; returns how long to wait before sending
    /// them (zero when uncapped or within the credit).
    fn wait(&mut self, bytes: u64, now: Duration) -> Duration {
        if self.bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        let floor = now.saturating_sub(BURST);
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        self.paid_until = self.paid_until.max(floor) + cost;
        self.paid_until.saturating_sub(now)
    }
}

/// The sender's logic, without its thread or clock: which requests it
/// serves, the bytes it fills them with, and how long the bandwidth cap
/// makes it wait. Times are the process's monotonic time (since it
/// started). The thread calls [`SenderSteps::on_request`] for each request
/// and sleeps off the wait; a simulation calls it at its own times (issue
/// 19: layers as steps).
pub struct SenderSteps {
    stores: HashMap<GroupId, Arc<dyn SnapshotStore>>,
    limits: SenderLimits,
    /// Followers served lately, with when.
    active: HashMap<NodeId, Duration>,
    /// The last chunk sent each follower: (snapshot, offset, when).
    last_sent: HashMap<NodeId, (crate::core::LogIndex, u64, Duration)>,
    pacer: Pacer,
}

impl SenderSteps {
    /// A sender reading `stores`, within `limits`.
    pub fn new(stores: HashMap<GroupId, Arc<dyn SnapshotStore>>, limits: SenderLimits) -> SenderSteps {
        let pacer = Pacer::new(limits.bytes_per_sec, Duration::ZERO);
        SenderSteps { stores, limits, active: HashMap::new(), last_sent: HashMap::new(), pacer }
    }

    /// Serves the core's request `msg` (an `InstallSnapshot` without its
    /// bytes) at `now`: the message filled with its chunk, and how long to
    /// wait before sending it; `None` when it is dropped (too many
    /// transfers at once, the same chunk sent within a second, no store or
    /// an unreadable snapshot: the core asks again).
    pub fn on_request(&mut self, mut msg: Message, now: Duration) -> Option<(Message, Duration)> {
        self.active.retain(|_, at| now.saturating_sub(*at) < ACTIVE_FOR);
        if !self.active.contains_key(&msg.to) && self.active.len() >= self.limits.sends_max {
            log::debug!("snapshot to {} waits: {} transfers already running", msg.to, self.active.len());
            return None;
        }
        let store = self.stores.get(&msg.group)?;
        let MessageBody::InstallSnapshot { meta, offset, data, done, content } = &mut msg.body else { return None };
        if self
            .last_sent
            .get(&msg.to)
            .is_some_and(|&(i, o, at)| i == meta.last_index && o == *offset && now.saturating_sub(at) < RESEND_AFTER)
        {
            return None;
        }
        match store.read_chunk(meta.last_index, *offset, self.limits.chunk_bytes) {
            Ok((bytes, last)) => {
                *data = bytes;
                *done = last;
                *content = store.content_id(meta.last_index);
            }
            Err(e) => {
                log::warn!("snapshot {} for node {}: cannot read at {offset}: {e}", meta.last_index, msg.to);
                return None;
            }
        }
        self.active.insert(msg.to, now);
        self.last_sent.retain(|_, s| now.saturating_sub(s.2) < RESEND_AFTER);
        self.last_sent.insert(msg.to, (meta.last_index, *offset, now));
        let wait = self.pacer.wait(data.len() as u64, now);
        Some((msg, wait))
    }
}

/// The thread: each request through [`SenderSteps::on_request`], the wait
/// slept off, the chunk sent.
fn run(rx: mpsc::Receiver<Message>, mut steps: SenderSteps, transport: &dyn RaftTransport) {
    let start = Instant::now();
    while let Ok(msg) = rx.recv() {
        let Some((msg, wait)) = steps.on_request(msg, start.elapsed()) else { continue };
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
        let t0 = Duration::from_secs(7);
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

    /// A store of one snapshot (index 9) of `len` bytes, each its offset's
    /// low byte.
    struct Bytesy(usize);

    impl SnapshotStore for Bytesy {
        fn read_chunk(
            &self,
            index: crate::core::LogIndex,
            offset: u64,
            max: usize,
        ) -> std::io::Result<(bytes::Bytes, bool)> {
            if index.0 != 9 {
                return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
            }
            let end = (offset as usize + max).min(self.0);
            let b: Vec<u8> = (offset as usize..end).map(|i| i as u8).collect();
            Ok((bytes::Bytes::from(b), end == self.0))
        }

        fn write_chunk(&self, _chunk: &crate::core::SnapshotChunk) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn request(to: u64, index: u64, offset: u64) -> Message {
        Message {
            group: GroupId(1),
            from: NodeId(1),
            to: NodeId(to),
            term: crate::core::Term(1),
            body: MessageBody::InstallSnapshot {
                meta: crate::core::SnapshotMeta {
                    last_index: crate::core::LogIndex(index),
                    ..crate::core::SnapshotMeta::default()
                },
                offset,
                data: bytes::Bytes::new(),
                done: false,
                content: 0,
            },
        }
    }

    /// The sender's decisions as a plain function of its requests and the
    /// time: what a simulation drives (issue 19).
    #[test]
    fn a_step_fills_paces_and_drops_as_the_limits_say() {
        let mut stores: HashMap<GroupId, Arc<dyn SnapshotStore>> = HashMap::new();
        stores.insert(GroupId(1), Arc::new(Bytesy(2500)));
        let limits = SenderLimits { chunk_bytes: 1000, bytes_per_sec: 1000, sends_max: 1 };
        let mut s = SenderSteps::new(stores, limits);
        let t = Duration::from_secs(100);
        let (m, wait) = s.on_request(request(2, 9, 0), t).expect("the first chunk goes");
        let MessageBody::InstallSnapshot { data, done, .. } = &m.body else { panic!("{m:?}") };
        assert_eq!((data.len(), *done, data[999]), (1000, false, 231));
        assert_eq!(wait, Duration::ZERO, "within the second of credit");
        assert!(s.on_request(request(2, 9, 0), t + Duration::from_millis(500)).is_none(), "same chunk within 1 s");
        assert!(s.on_request(request(3, 9, 0), t).is_none(), "a second follower waits (sends_max 1)");
        let (m, wait) = s.on_request(request(2, 9, 2000), t + Duration::from_millis(10)).expect("the last chunk");
        let MessageBody::InstallSnapshot { data, done, .. } = &m.body else { panic!("{m:?}") };
        assert_eq!((data.len(), *done), (500, true));
        assert_eq!(wait, Duration::from_millis(490), "1500 bytes at 1000/s, 10 ms in");
        assert!(s.on_request(request(2, 8, 0), t + Duration::from_secs(2)).is_none(), "an unreadable snapshot");
        let later = t + Duration::from_secs(6);
        assert!(s.on_request(request(3, 9, 0), later).is_some(), "follower 2 idle 5 s: a slot is free");
    }
}
