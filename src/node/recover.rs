//! Opening one group at a node's start: rebuild its core from its state
//! file and log, and check its state machine against them.
//!
//! The storage step of that, [`recover_group`], is public and spawns
//! nothing, so a test can run it on a simulated disk after every crash
//! (tests/fs_faults_recover.rs) and check exactly what `start` runs.

use std::sync::Arc;

use super::config::GroupConfig;
use crate::core::{GroupId, LogIndex, LogOp, RaftCore, Recovered, SnapshotMeta};
use crate::pipeline::{GroupCore, GroupFsm, NodeError, RoleWatch, SnapshotStore, StateMachine};
use crate::storage::{GroupState, LogEngine, StateFile};

/// Recovers one group's storage as [`Node::start`](super::Node::start)
/// does before its core is built, and returns what the core starts from.
///
/// In order:
/// 1. The group's state file is read. A group with none is bootstrapped:
///    its initial voters (`config.initial_voters`) become the membership of
///    a snapshot at index 0, stored durably before anything else.
/// 2. The log is made to continue the snapshot the state file names. A
///    crash between storing a received snapshot's meta and writing the
///    log's `Reset` (the node does them in that order) leaves the old log
///    behind the snapshot: a log that holds the snapshot's last index with
///    another term, or ends before it, is reset to the snapshot durably,
///    here, before any entry is served (defect 03).
/// 3. The entries after the snapshot are read back, consecutive from
///    `snapshot.last_index + 1` to the log's last index.
///
/// The returned [`Recovered`] has `applied` 0 (the state machine says how
/// far it got; `start` fills it in) and a fresh random `epoch`. Nothing
/// here spawns a thread or takes the data directory's lock: the caller
/// holds it. A failed fsync fails stop
/// ([`Fs::fail_stop`](crate::fs::Fs::fail_stop)): the process exits (a
/// simulated disk crashes instead).
///
/// # Errors
/// [`NodeError::Storage`] when the state file cannot be read or stored
/// (damaged, not ours, I/O, no space) or the log cannot be read or reset;
/// [`NodeError::Start`] for a group with no state on disk and neither
/// initial voters nor `join`, and for a log that starts after the entry
/// following the snapshot (entries are missing: the data directory is
/// damaged).
pub fn recover_group(engine: &mut LogEngine, states: &StateFile, config: &GroupConfig) -> Result<Recovered, NodeError> {
    let group = config.raft.group;
    let state = match states.load(group)? {
        Some(s) => s,
        None => {
            if config.initial_voters.is_empty() && !config.join {
                return Err(NodeError::Start(format!("group {group} has no state on disk and no initial voters")));
            }
            let boot = Recovered::bootstrap(config.initial_voters.iter().copied());
            let s = GroupState { hard_state: boot.hard_state, snapshot: boot.snapshot };
            states.store(group, &s)?;
            s
        }
    };
    drop_tail_not_following(engine, group, &state.snapshot)?;
    let first = engine.first_index(group).max(state.snapshot.last_index.next());
    let last = engine.last_index(group);
    let entries = if first <= last { engine.entries(group, first, last, usize::MAX, usize::MAX)? } else { Vec::new() };
    log::info!(
        "group {group}: recovered term {} vote {} snapshot {} log {}..={}",
        state.hard_state.term,
        state.hard_state.vote,
        state.snapshot.last_index,
        first,
        last
    );
    Ok(Recovered {
        hard_state: state.hard_state,
        snapshot: state.snapshot,
        entries,
        applied: LogIndex(0),
        epoch: random_epoch(),
    })
}

/// 64 random bits, different at every start of the process: std's hash
/// seeds come from the operating system's random source.
fn random_epoch() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Makes the log continue the snapshot the state file names, or says why
/// it cannot.
///
/// A crash between storing a received snapshot's meta and writing the
/// log's `Reset` leaves the old log behind the snapshot (defect 03). The
/// log continues the snapshot only if it holds the snapshot's last entry
/// with the same term (log matching), or starts exactly at the snapshot
/// (after a reset or a purge, whose term may be unknown after a reopen).
/// Otherwise it is reset to the snapshot, durably, before the core sees
/// it: entries after a mismatching term belong to a history the snapshot
/// replaced and cannot be committed; a log that ends before the snapshot
/// would leave a gap the next append could not fill.
///
/// # Errors
/// A log that starts after the snapshot: entries are missing, or the state
/// file is older than the log; the data directory is damaged.
fn drop_tail_not_following(engine: &mut LogEngine, group: GroupId, snapshot: &SnapshotMeta) -> Result<(), NodeError> {
    let s = snapshot.last_index;
    if s.0 == 0 {
        return Ok(());
    }
    let (first, last) = (engine.first_index(group), engine.last_index(group));
    let start = first.prev();
    if start > s {
        return Err(NodeError::Start(format!(
            "group {group}: the log starts after index {start}, but the snapshot in the state file ends at {s}: \
             entries {}..{start} are missing (the data directory is damaged; wipe it and add the node again)",
            s.next(),
        )));
    }
    let why = match engine.term_at(group, s) {
        Some(t) if t == snapshot.last_term => return Ok(()),
        None if start == s => return Ok(()),
        Some(t) => {
            format!("the log holds term {t} at index {s} but the snapshot there has term {}", snapshot.last_term)
        }
        None => format!("the log ends at index {last}, before the snapshot at {s}"),
    };
    // The storage mutant brings defect 03 back: the stale tail is kept.
    if crate::fs::mutant("recover-keeps-stale-tail") {
        return Ok(());
    }
    log::warn!(
        "group {group}: {why}: resetting the log to the snapshot, dropping entries {}..={last} (a crash came \
         between storing the snapshot and resetting the log)",
        start.next()
    );
    engine.write(&[(group, LogOp::Reset(snapshot.clone()))])?;
    Ok(())
}

/// One group's start, as [`Node::start`](super::Node::start) runs it after locking the data
/// directory and opening the log (and a simulated node at every start):
/// [`recover_group`], then the state machine's
/// [`recover`](StateMachine::recover), checked against the log, then the
/// core (at monotonic time `now()`, read once recovery is done) and the
/// FSM caller's side of the group.
/// `epoch` replaces the start's random one (a simulation draws it from its
/// seed).
///
/// # Errors
/// What `recover_group` refuses, the state machine's refusal, a state
/// machine older than the log's start, or one ahead of the log's end
/// ([`NodeError::Start`]).
#[allow(clippy::type_complexity)]
pub fn open_group(
    engine: &mut LogEngine,
    states: &StateFile,
    gc: GroupConfig,
    mut sm: Box<dyn StateMachine>,
    watch: Arc<RoleWatch>,
    now: impl FnOnce() -> crate::core::Time,
    epoch: Option<u64>,
) -> Result<(GroupCore, GroupFsm, Option<Arc<dyn SnapshotStore>>), NodeError> {
    let group = gc.raft.group;
    let mut rec = recover_group(engine, states, &gc)?;
    if let Some(e) = epoch {
        rec.epoch = e;
    }
    let durable = sm.recover(&rec.snapshot).map_err(|e| NodeError::Start(format!("group {group}: {e}")))?;
    if durable < rec.snapshot.last_index && rec.snapshot.last_index.0 > 0 {
        return Err(NodeError::Start(format!(
            "group {group}: the state machine holds index {durable}, but the log starts after the snapshot at {} \
             (the state machine's data is older than the log's; wipe this node's data directory and add it again)",
            rec.snapshot.last_index
        )));
    }
    let last = rec.entries.last().map(|e| e.index).unwrap_or(rec.snapshot.last_index);
    if durable > last {
        return Err(NodeError::Start(format!(
            "group {group}: the state machine has applied up to index {durable}, but the log ends at {last} \
             (the log lost entries the state machine saw; the data directory is damaged)"
        )));
    }
    rec.applied = durable;
    let applied = rec.snapshot.last_index.max(durable);
    let store = sm.snapshot_store();
    // The time after recovery (a rebuild or an install may take long): the
    // core's first deadlines count from here.
    let core = GroupCore::new(RaftCore::new(gc.raft, rec, now()), watch, store.is_some());
    Ok((core, GroupFsm::new(sm, applied), store))
}
