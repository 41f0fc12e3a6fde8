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

use super::snapshot::{self, Receiver};
use crate::client::{ClientConfig, SnapshotFetch};
use crate::core::{GroupId, SnapshotMeta};
use crate::storage::StateFile;

/// Whether this node can rebuild a damaged service state by itself: its
/// log was never compacted (`log_start` 0), or a snapshot it received or
/// made covers the log's start and checks out.
pub(crate) fn local_rebuild_possible(service: &Path, log_start: u64) -> bool {
    if log_start == 0 || snapshot::received(service, log_start) {
        return true;
    }
    snapshot::newest(service).filter(|&n| n >= log_start).is_some_and(|n| match snapshot::verify(service, n) {
        Ok(()) => true,
        Err(e) => {
            log::error!("service: the local snapshot {n} is damaged too: {e}");
            false
        }
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

/// Fetches a snapshot at or after `log_start` from the first of `peers`
/// that has one, into `received-<index>/`, then records its meta in the
/// state file of `group` (hard state unchanged). Returns the meta.
///
/// # Errors
/// No peer answered with such a snapshot (each peer's reason), the
/// transfer failed verification, or the state file could not be written.
pub(crate) fn fetch_from_peers(
    service: &Path,
    raft_dir: &Path,
    group: GroupId,
    peers: &[String],
    cfg: &ClientConfig,
    log_start: u64,
) -> Result<SnapshotMeta, String> {
    let mut why = Vec::new();
    for addr in peers {
        match fetch_one(service, cfg, addr, log_start) {
            Ok(meta) => {
                let states = StateFile::new(raft_dir).map_err(|e| e.to_string())?;
                let mut st = states.load(group).map_err(|e| e.to_string())?.unwrap_or_default();
                st.snapshot = meta.clone();
                states.store(group, &st).map_err(|e| e.to_string())?;
                log::warn!(
                    "service: rebuilt the service state from node at {addr}: snapshot {} (term {}) received and \
                     recorded; starting from it",
                    meta.last_index,
                    meta.last_term
                );
                return Ok(meta);
            }
            Err(e) => why.push(format!("{addr}: {e}")),
        }
    }
    Err(if why.is_empty() { "no peers are configured".into() } else { why.join("; ") })
}

/// One peer's snapshot, whole and verified, into `received-<index>/`.
fn fetch_one(service: &Path, cfg: &ClientConfig, addr: &str, log_start: u64) -> Result<SnapshotMeta, String> {
    let mut f = SnapshotFetch::connect(cfg, addr).map_err(|e| e.to_string())?;
    let first = f.chunk(0, 0, 0).map_err(|e| e.to_string())?;
    let (meta, content) = (first.meta.clone(), first.content);
    let index = meta.last_index.0;
    if index < log_start {
        return Err(format!(
            "its snapshot ends at {index}, before this node's log starts (after {log_start}); `ringraft admin \
             snapshot` makes a newer one"
        ));
    }
    if snapshot::received(service, index) {
        return Ok(meta);
    }
    log::info!("service: fetching snapshot {index} from {addr}");
    let mut rx = Receiver::default();
    let mut chunk = first;
    let mut offset = 0u64;
    loop {
        rx.write(service, index, offset, &chunk.data, chunk.done).map_err(|e| format!("snapshot {index}: {e}"))?;
        offset += chunk.data.len() as u64;
        if chunk.done {
            break;
        }
        chunk = f.chunk(index, content, offset).map_err(|e| e.to_string())?;
    }
    if !snapshot::received(service, index) {
        return Err(format!("snapshot {index} ended but is not complete"));
    }
    log::info!("service: snapshot {index} from {addr}: {offset} bytes verified");
    Ok(meta)
}
