//! Rebuilding a node's service state from a peer (issue 16): when the
//! checkpoint is unusable and no intact local snapshot covers the Raft
//! log's start, the node fetches a peer's snapshot (any member's snapshot
//! is committed state) over the client protocol, verifies every byte as it
//! arrives (`snapshot::Receiver`), and records it as a received snapshot:
//! `received-<index>/` complete, then the state file's snapshot meta. The
//! normal start then goes on as after a crash between receiving a Raft
//! snapshot and installing it: the log is kept if it continues the
//! snapshot and reset to it otherwise (`node::recover`), and the snapshot
//! is installed. The node keeps its identity, its term and vote, and every
//! log entry after the snapshot; entries the snapshot covers are committed
//! state. Allowed only while the Raft state file reads back: a node whose
//! Raft state is damaged too refuses to start (the runbook: remove it, wipe
//! it, add it back as a learner).

use std::path::Path;

use super::kv::ServiceStorage;
use super::snapshot::{self, Receiver};
use ringraft::core::{GroupId, SnapshotMeta};
use ringraft::fs::Fs;
use ringraft::storage::StateFile;
use ringraft_client::{ClientConfig, SnapshotFetch};

/// Whether this node can rebuild a damaged service state by itself: its
/// log was never compacted (`log_start` 0), or a snapshot it received or
/// made covers the log's start and checks out.
pub(crate) fn local_rebuild_possible(storage: &ServiceStorage, service: &Path, log_start: u64) -> bool {
    log_start == 0
        || snapshot::pending_install(&*storage.fs, service, log_start)
        || intact_local_snapshot(storage, service, log_start).is_some()
}

/// This node's newest snapshot if it covers the log's start (`log_start`)
/// and every byte of it checks out. Verified once per index and process
/// (`ServiceStorage`): the opener asks every second while it waits for a
/// peer, and the rebuild asks again.
pub(crate) fn intact_local_snapshot(storage: &ServiceStorage, service: &Path, log_start: u64) -> Option<u64> {
    let fs = &*storage.fs;
    snapshot::newest(fs, service).filter(|&n| n >= log_start).filter(|&n| {
        let mut v = storage.verified.lock();
        if let Some((p, i, ok)) = v.as_ref() {
            if p == service && *i == n {
                return *ok;
            }
        }
        let ok = match snapshot::verify(fs, service, n) {
            Ok(()) => true,
            Err(e) => {
                log::error!("service: the local snapshot {n} is damaged too: {e}");
                false
            }
        };
        *v = Some((service.to_path_buf(), n, ok));
        ok
    })
}

/// The start of group `group`'s log: the index its state file's snapshot
/// ends at (0 for none).
///
/// # Errors
/// The state file cannot be read: the Raft state is damaged too.
pub(crate) fn log_start(raft_dir: &Path, group: GroupId) -> Result<u64, String> {
    let states = StateFile::new(raft_dir).map_err(|e| e.to_string())?;
    Ok(states.load(group).map_err(|e| e.to_string())?.map_or(0, |s| s.snapshot.last_index.0))
}

/// Why a fetch failed, and whether for lack of space.
pub(crate) struct FetchError {
    pub msg: String,
    pub disk_full: bool,
}

/// Fetches a snapshot at or after `log_start` from the first of `peers`
/// that has one, into `received-<index>/`, then records its meta in the
/// state file of `group` (hard state unchanged). Returns the meta. Stops
/// between chunks once `stopping` says so.
///
/// # Errors
/// No peer answered with such a snapshot (each peer's reason), the
/// transfer failed verification, the disk is full, or the state file could
/// not be written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch_from_peers(
    fs: &dyn Fs,
    service: &Path,
    raft_dir: &Path,
    group: GroupId,
    peers: &[String],
    cfg: &ClientConfig,
    log_start: u64,
    stopping: &dyn Fn() -> bool,
) -> Result<SnapshotMeta, FetchError> {
    let mut why = Vec::new();
    for addr in peers {
        match fetch_one(fs, service, cfg, addr, log_start, stopping) {
            Ok(meta) => {
                let failed =
                    |e: ringraft::storage::StorageError| FetchError { disk_full: e.is_no_space(), msg: e.to_string() };
                let states = StateFile::new(raft_dir).map_err(failed)?;
                let mut st = states.load(group).map_err(failed)?.unwrap_or_default();
                st.snapshot = meta.clone();
                states.store(group, &st).map_err(failed)?;
                log::warn!(
                    "service: rebuilt the service state from node at {addr}: snapshot {} (term {}) received and \
                     recorded; starting from it",
                    meta.last_index,
                    meta.last_term
                );
                return Ok(meta);
            }
            Err(e) if e.disk_full => return Err(e),
            Err(e) => why.push(format!("{addr}: {}", e.msg)),
        }
    }
    let msg = if why.is_empty() { "no peers are configured".into() } else { why.join("; ") };
    Err(FetchError { msg, disk_full: false })
}

/// One peer's snapshot, whole and verified, into `received-<index>/`.
fn fetch_one(
    fs: &dyn Fs,
    service: &Path,
    cfg: &ClientConfig,
    addr: &str,
    log_start: u64,
    stopping: &dyn Fn() -> bool,
) -> Result<SnapshotMeta, FetchError> {
    let err = |msg: String| FetchError { msg, disk_full: false };
    let mut f = SnapshotFetch::connect(cfg, addr).map_err(|e| err(e.to_string()))?;
    let first = f.chunk(0, 0, 0, log_start).map_err(|e| err(e.to_string()))?;
    let membership = ringraft::storage::record::decode_membership(&first.membership)
        .map_err(|e| err(format!("its snapshot's membership cannot be read: {e}")))?;
    let meta = SnapshotMeta { last_index: first.last_index, last_term: first.last_term, membership };
    let content = first.content;
    let index = meta.last_index.0;
    if index < log_start {
        return Err(err(format!(
            "its snapshot ends at {index}, before this node's log starts (after {log_start}); `ringraft admin \
             snapshot` makes a newer one"
        )));
    }
    if snapshot::pending_install(fs, service, index) {
        return Ok(meta);
    }
    log::info!("service: fetching snapshot {index} from {addr}");
    let mut rx = Receiver::default();
    let mut chunk = first;
    let mut offset = 0u64;
    loop {
        rx.write(fs, service, index, offset, &chunk.data, chunk.done).map_err(|e| FetchError {
            disk_full: super::checkpoint::is_disk_full(&e),
            msg: format!("snapshot {index}: {e}"),
        })?;
        offset += chunk.data.len() as u64;
        if chunk.done {
            break;
        }
        if chunk.data.is_empty() {
            return Err(err(format!("snapshot {index}: an empty chunk at {offset} that does not end it")));
        }
        if stopping() {
            return Err(err("the server is stopping".into()));
        }
        chunk = f.chunk(index, content, offset, log_start).map_err(|e| err(e.to_string()))?;
    }
    if !snapshot::pending_install(fs, service, index) {
        return Err(err(format!("snapshot {index} ended but is not complete")));
    }
    log::info!("service: snapshot {index} from {addr}: {offset} bytes verified");
    Ok(meta)
}
