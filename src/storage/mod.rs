//! Durable storage: the segmented Raft log shared by all groups of a node
//! (group fsync), and the small per-group state file (vote, snapshot meta)
//! replaced atomically.

mod engine;
mod error;
mod gather;
mod hard_state;
pub mod reaper;
pub mod record;
mod segment;
#[cfg(test)]
mod tests;

pub use crate::fs::{fail_stop, FAIL_STOP_EXIT_CODE};
pub use engine::{EngineConfig, EngineStats, LogEngine, RecoveryNote, RecoveryNoteKind};
pub use error::{
    create_dir_all_durably, is_no_space, replace_file, replace_file_on, sync_dir, sync_dir_on, sync_file_or_die,
    StorageError,
};
pub use hard_state::{GroupState, StateFile};
pub use reaper::Reaper;
pub use segment::parse_segment_file_name;
