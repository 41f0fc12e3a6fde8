//! The service's snapshots as the node sees them: the [`SnapshotStore`]
//! the snapshot sender reads chunks from (open readers kept for transfers
//! in progress) and the log-append stage writes received chunks to.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashMap;
use parking_lot::Mutex;

use super::kv::ServiceStorage;
use super::snapshot::{self, Receiver, SnapshotReader};
use ringraft::core::{LogIndex, SnapshotChunk};
use ringraft::node::SnapshotStore;

/// The service's snapshots as the node sees them: read by the snapshot
/// sender, received by the log-append stage.
pub(crate) struct ServiceSnapshots {
    fs: Arc<dyn ringraft::fs::Fs>,
    clock: Arc<dyn ringraft::clock::Monotonic>,
    service: PathBuf,
    /// A peer asked for a snapshot this node does not have (it installed
    /// one, or restarted after making one): make a fresh one.
    want: AtomicBool,
    receiver: Mutex<Receiver>,
    /// The snapshots being sent, by index, with their last use: an open
    /// reader holds its files, so a transfer keeps its snapshot after a
    /// newer one removed the directory (defect 10). At most
    /// [`SNAPSHOTS_SENDING_MAX`] stay open; one unused for
    /// [`SNAPSHOT_READER_IDLE`] is closed.
    readers: Mutex<HashMap<u64, (SnapshotReader, Duration)>>,
}

/// Snapshots held open for transfers at once (each pins the segment files
/// the live state dropped since it was made). Opening one more closes the
/// least recently used; its transfer restarts with the newest snapshot.
pub(crate) const SNAPSHOTS_SENDING_MAX: usize = 4;

/// A snapshot reader unused this long is closed.
const SNAPSHOT_READER_IDLE: Duration = Duration::from_secs(30);

impl ServiceSnapshots {
    /// The snapshots of the service directory `service` on `storage`.
    pub(crate) fn new(storage: &ServiceStorage, service: PathBuf) -> ServiceSnapshots {
        ServiceSnapshots {
            fs: Arc::clone(&storage.fs),
            clock: Arc::clone(&storage.clock),
            service,
            want: AtomicBool::new(false),
            receiver: Mutex::new(Receiver::default()),
            readers: Mutex::new(HashMap::new()),
        }
    }

    /// Asks for a snapshot now (a node rebuilding its state needs a newer
    /// one than this node has): the next poll of the state machine takes it.
    pub(crate) fn make_newer(&self) {
        self.want.store(true, Ordering::Release);
    }

    /// Whether a fresh snapshot was asked for; takes the request.
    pub(crate) fn take_want(&self) -> bool {
        self.want.swap(false, Ordering::AcqRel)
    }

    /// Whether a fresh snapshot was asked for.
    pub(crate) fn wants(&self) -> bool {
        self.want.load(Ordering::Acquire)
    }
}

impl SnapshotStore for ServiceSnapshots {
    fn read_chunk(&self, index: LogIndex, offset: u64, max: usize) -> std::io::Result<(Bytes, bool)> {
        let mut readers = self.readers.lock();
        let now = self.clock.now();
        readers.retain(|_, (_, used)| now.saturating_sub(*used) < SNAPSHOT_READER_IDLE);
        if !readers.contains_key(&index.0) {
            match SnapshotReader::open(&*self.fs, &self.service, index.0) {
                Ok(r) => {
                    if readers.len() >= SNAPSHOTS_SENDING_MAX {
                        // Ties (a simulated clock stands still) by index, not
                        // by the map's order.
                        let oldest = readers.iter().map(|(i, (_, used))| (*used, *i)).min().map(|(_, i)| i);
                        if let Some(i) = oldest {
                            log::info!("service: closing snapshot {i} (more than {SNAPSHOTS_SENDING_MAX} being sent)");
                            readers.remove(&i);
                        }
                    }
                    readers.insert(index.0, (r, now));
                }
                Err(e) => {
                    if !self.want.swap(true, Ordering::AcqRel) {
                        log::info!("service: snapshot {index} is not here ({e}); making a fresh one");
                    }
                    return Err(e);
                }
            }
        }
        let (reader, used) = readers.get_mut(&index.0).expect("opened above");
        *used = now;
        reader.read_at(offset, max)
    }

    fn content_id(&self, index: LogIndex) -> u64 {
        let readers = self.readers.lock();
        if let Some((r, _)) = readers.get(&index.0) {
            return r.content;
        }
        self.fs
            .read(&self.service.join("snapshots").join(format!("{:020}", index.0)).join("MANIFEST"))
            .map_or(0, |p| snapshot::content_id(&p))
    }

    fn write_chunk(&self, chunk: &SnapshotChunk) -> std::io::Result<()> {
        let index = chunk.meta.last_index.0;
        self.receiver.lock().write(&*self.fs, &self.service, index, chunk.offset, &chunk.data, chunk.done)
    }
}
