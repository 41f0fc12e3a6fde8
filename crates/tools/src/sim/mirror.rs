//! What the checker keeps of each simulated node's log: the [`Mirror`]
//! (term and chain hash per index, replayed from the core's log ops) and
//! the commit advances seen ([`SeenCommit`]) that are checked against it.
//! A leaf: the nodes, the observer and the checker all import it.

use std::collections::VecDeque;

/// The checker's copy of a node's in-memory log: (term, chain hash) per
/// index, kept aligned with the core's log by replaying `Ready::log_ops`.
///
/// Invariant: `entries[0]` is the entry at `offset` (the compaction or
/// snapshot point); `entries[i]` is at `offset + i`.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    offset: u64,
    entries: VecDeque<(u64, u64)>,
}

impl Mirror {
    /// A mirror whose log starts after `(offset, term, chain)`.
    pub fn new(offset: u64, term: u64, chain: u64) -> Mirror {
        let mut entries = VecDeque::new();
        entries.push_back((term, chain));
        Mirror { offset, entries }
    }

    /// The compaction point.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The last index.
    pub fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64 - 1
    }

    /// (term, chain) at `index`, if held.
    #[inline]
    pub fn at(&self, index: u64) -> Option<(u64, u64)> {
        if index < self.offset {
            return None;
        }
        self.entries.get((index - self.offset) as usize).copied()
    }

    /// Truncates after `index - 1` and appends `(term, chain)` at `index`.
    ///
    /// # Errors
    /// When `index` does not fit (an append below the compaction point or
    /// past the end).
    pub fn put(&mut self, index: u64, term: u64, chain: u64) -> Result<(), String> {
        if index <= self.offset || index > self.last_index() + 1 {
            return Err(format!(
                "log op writes index {} outside the log ({}..={})",
                index,
                self.offset,
                self.last_index()
            ));
        }
        self.entries.truncate((index - self.offset) as usize);
        self.entries.push_back((term, chain));
        Ok(())
    }

    /// Drops entries before `index` (which becomes the offset).
    pub fn purge(&mut self, index: u64) -> Result<(), String> {
        if index <= self.offset {
            return Ok(());
        }
        if index > self.last_index() {
            return Err(format!("purge to {} beyond the log end {}", index, self.last_index()));
        }
        self.entries.drain(..(index - self.offset) as usize);
        self.offset = index;
        Ok(())
    }
}

/// A commit advance seen by `observe`, checked against the mirror later.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeenCommit {
    /// The node's term at the time.
    pub term: u64,
    /// The new commit index.
    pub to: u64,
    /// Advanced by the node as leader.
    pub as_leader: bool,
}
