//! The per-group state file: current term, vote and the latest snapshot's
//! meta (index, term, membership), replaced atomically.
//!
//! ```text
//!   0  [u8; 8]  magic "RRAFTHST"
//!   8  u32      format version (1)
//!   12 u32      body length
//!   16 body:    u64 term, u64 vote, u64 snapshot index, u64 snapshot term,
//!               membership (see record::encode_membership)
//!   ..  u32     CRC32C of everything before it
//! ```
//! A store writes `group-<id>.state.tmp`, fsyncs it, renames it over
//! `group-<id>.state` and fsyncs the directory, so a crash leaves either the
//! old file or the new one, never a mix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BufMut;

use super::error::{create_dir_all_durably, replace_file_on, StorageError};
use super::record::{decode_membership, encode_membership, u32_at, u64_at};
use crate::core::{GroupId, HardState, LogIndex, NodeId, SnapshotMeta, Term};
use crate::fs::Fs;

const MAGIC: [u8; 8] = *b"RRAFTHST";
const VERSION: u32 = 1;
/// Bound on the body so a corrupt length cannot make us allocate much.
const BODY_BYTES_MAX: usize = 1 << 20;

/// What the state file of a group holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupState {
    /// Term and vote.
    pub hard_state: HardState,
    /// The latest snapshot (index 0 for none; its membership is then the
    /// group's initial membership).
    pub snapshot: SnapshotMeta,
}

/// The state files of a data directory.
#[derive(Clone, Debug)]
pub struct StateFile {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
}

impl StateFile {
    /// State files live in `dir` (created if missing), on the real file
    /// system.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(dir: &Path) -> Result<StateFile, StorageError> {
        StateFile::on(crate::fs::real(), dir)
    }

    /// State files live in `dir` of `fs` (created if missing).
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn on(fs: Arc<dyn Fs>, dir: &Path) -> Result<StateFile, StorageError> {
        create_dir_all_durably(&*fs, dir)?;
        Ok(StateFile { fs, dir: dir.to_path_buf() })
    }

    fn path(&self, group: GroupId) -> PathBuf {
        self.dir.join(format!("group-{}.state", group.0))
    }

    /// Replaces `group`'s state durably.
    ///
    /// # Errors
    /// `NoSpace` or `Io` (the old state stays); a failed fsync fails stop.
    pub fn store(&self, group: GroupId, state: &GroupState) -> Result<(), StorageError> {
        let path = self.path(group);
        replace_file_on(&*self.fs, &path, &path.with_extension("state.tmp"), &encode(state))
    }

    /// Reads `group`'s state, `None` if it was never stored.
    ///
    /// # Errors
    /// `NotOurs`, `VersionUnsupported`, `Corrupt` (naming the file), `Io`.
    pub fn load(&self, group: GroupId) -> Result<Option<GroupState>, StorageError> {
        let path = self.path(group);
        let bytes = match self.fs.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("read state file", &path, e)),
        };
        decode(&bytes, &path).map(Some)
    }
}

fn encode(state: &GroupState) -> Vec<u8> {
    let membership = encode_membership(&state.snapshot.membership);
    let mut body = Vec::with_capacity(32 + membership.len());
    body.put_u64_le(state.hard_state.term.0);
    body.put_u64_le(state.hard_state.vote.0);
    body.put_u64_le(state.snapshot.last_index.0);
    body.put_u64_le(state.snapshot.last_term.0);
    body.extend_from_slice(&membership);
    let mut out = Vec::with_capacity(20 + body.len());
    out.extend_from_slice(&MAGIC);
    out.put_u32_le(VERSION);
    out.put_u32_le(body.len() as u32);
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.put_u32_le(crc);
    out
}

fn decode(b: &[u8], path: &Path) -> Result<GroupState, StorageError> {
    let corrupt =
        |offset: u64, reason: &str| StorageError::Corrupt { path: path.into(), offset, reason: reason.into() };
    if b.len() < 16 || b[0..8] != MAGIC {
        return Err(StorageError::NotOurs { path: path.into() });
    }
    let version = u32_at(b, 8);
    if version != VERSION {
        return Err(StorageError::VersionUnsupported { path: path.into(), found: version });
    }
    let len = u32_at(b, 12) as usize;
    if !(32..=BODY_BYTES_MAX).contains(&len) || b.len() != 16 + len + 4 {
        return Err(corrupt(12, "state file length does not match its header"));
    }
    let crc = u32_at(b, 16 + len);
    if crc32c::crc32c(&b[..16 + len]) != crc {
        return Err(corrupt(16 + len as u64, "state file checksum mismatch"));
    }
    let body = &b[16..16 + len];
    let membership = decode_membership(&body[32..]).map_err(|why| corrupt(48, &why))?;
    Ok(GroupState {
        hard_state: HardState { term: Term(u64_at(body, 0)), vote: NodeId(u64_at(body, 8)) },
        snapshot: SnapshotMeta {
            last_index: LogIndex(u64_at(body, 16)),
            last_term: Term(u64_at(body, 24)),
            membership,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Membership;

    fn sample() -> GroupState {
        GroupState {
            hard_state: HardState { term: Term(7), vote: NodeId(2) },
            snapshot: SnapshotMeta {
                last_index: LogIndex(100),
                last_term: Term(6),
                membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
            },
        }
    }

    #[test]
    fn state_round_trips_and_replaces_atomically() {
        let dir = std::env::temp_dir().join(format!("ringraft-hs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = StateFile::new(&dir).unwrap();
        assert_eq!(files.load(GroupId(1)).unwrap(), None);
        files.store(GroupId(1), &sample()).unwrap();
        assert_eq!(files.load(GroupId(1)).unwrap(), Some(sample()));
        let mut next = sample();
        next.hard_state.term = Term(8);
        files.store(GroupId(1), &next).unwrap();
        assert_eq!(files.load(GroupId(1)).unwrap(), Some(next));
        assert!(!dir.join("group-1.state.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_state_files_are_named_errors() {
        let p = Path::new("/x/group-1.state");
        let good = encode(&sample());
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        assert!(matches!(decode(&flipped, p), Err(StorageError::Corrupt { .. })));
        assert!(matches!(decode(b"hello world, not ours", p), Err(StorageError::NotOurs { .. })));
        let mut v2 = good.clone();
        v2[8] = 2;
        assert!(matches!(decode(&v2, p), Err(StorageError::VersionUnsupported { found: 2, .. })));
        assert!(matches!(decode(&good[..good.len() - 1], p), Err(StorageError::Corrupt { .. })));
        assert!(decode(&good, p).is_ok());
    }
}
