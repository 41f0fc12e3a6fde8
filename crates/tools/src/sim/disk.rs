//! One simulated node's disk: the durable store (vote state, snapshot, log)
//! and the ordered queue of writes in flight.
//!
//! A `Ready`'s hard state, snapshot chunks and log changes become one
//! [`WriteJob`]; jobs complete strictly in submission order after a disk
//! delay (long while the disk is "slow"). A crash loses every job not
//! completed, except that a torn crash keeps a random prefix of the job in
//! progress: hard state first, then snapshot, then log entries one by one.
//! Each durable entry carries its chain hash so the checker can count
//! durable copies of an exact entry in O(1).

use std::collections::VecDeque;

use bytes::Bytes;

use ringraft::core::{Entry, HardState, LogIndex, Message, PersistPoint, Recovered, SnapshotMeta};

/// A snapshot as stored: what it covers, its bytes, and the chain hash at
/// its last index (decoded from the bytes when it was stored).
#[derive(Clone, Debug, Default)]
pub struct StoredSnapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The bytes (see `model::Model::encode`).
    pub data: Bytes,
    /// The chain hash at `meta.last_index`.
    pub chain: u64,
}

/// The durable log: entries after `offset`, each with its chain hash.
///
/// Invariant: `entries[i].0.index == offset + 1 + i`.
#[derive(Clone, Debug, Default)]
pub struct DurableLog {
    offset: u64,
    offset_chain: u64,
    entries: VecDeque<(Entry, u64)>,
}

impl DurableLog {
    /// The last index held (the offset when empty).
    pub fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    /// The chain hash at `index`, if held (including the offset itself).
    pub fn chain_at(&self, index: u64) -> Option<u64> {
        if index == self.offset {
            return Some(self.offset_chain);
        }
        if index < self.offset {
            return None;
        }
        self.entries.get((index - self.offset - 1) as usize).map(|(_, c)| *c)
    }

    /// The term of the entry at `index`, if held (not the offset).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index - self.offset - 1) as usize).map(|(e, _)| e.term.0)
    }

    fn append(&mut self, entries: &[(Entry, u64)]) -> Result<(), String> {
        let Some((first, _)) = entries.first() else { return Ok(()) };
        let first = first.index.0;
        if first <= self.offset || first > self.last_index() + 1 {
            return Err(format!(
                "durable append at {} does not fit the durable log ({}..={})",
                first,
                self.offset,
                self.last_index()
            ));
        }
        self.entries.truncate((first - self.offset - 1) as usize);
        self.entries.extend(entries.iter().cloned());
        Ok(())
    }

    fn purge(&mut self, upto: u64) -> Result<(), String> {
        if upto <= self.offset {
            return Ok(());
        }
        let Some(chain) = self.chain_at(upto) else {
            return Err(format!("purge to {} beyond the durable log end {}", upto, self.last_index()));
        };
        self.entries.drain(..(upto - self.offset) as usize);
        self.offset = upto;
        self.offset_chain = chain;
        Ok(())
    }

    fn reset(&mut self, at: u64, chain: u64) {
        self.entries.clear();
        self.offset = at;
        self.offset_chain = chain;
    }
}

/// Everything that survives a crash.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    /// The vote state.
    pub hard_state: HardState,
    /// The latest complete snapshot (created locally or installed).
    pub snapshot: StoredSnapshot,
    /// The log.
    pub log: DurableLog,
}

impl Durable {
    /// Whether this store durably holds the entry at `index` with `term`
    /// (a snapshot at or past `index` counts: it was taken from applied,
    /// hence committed, state). Log matching, checked separately, makes
    /// (index, term) name one entry.
    pub fn holds_term(&self, index: u64, term: u64) -> bool {
        let s = self.snapshot.meta.last_index.0;
        if index < s || (index == s && self.snapshot.meta.last_term.0 == term) {
            return true;
        }
        self.log.term_at(index) == Some(term)
    }

    /// What a restarting core recovers, and the chain hash of each recovered
    /// entry (aligned with `Recovered::entries`).
    ///
    /// Like a real recovery, it first drops a log that does not continue the
    /// snapshot: a torn write can store an installed snapshot without the
    /// log reset that followed it, leaving an old (even conflicting) log
    /// behind the snapshot.
    pub fn recover(&mut self) -> (Recovered, Vec<u64>) {
        let snap = &self.snapshot;
        let s = snap.meta.last_index.0;
        if self.log.chain_at(s) != Some(snap.chain) {
            self.log.reset(s, snap.chain);
        }
        let mut entries = Vec::new();
        let mut chains = Vec::new();
        for i in (s + 1)..=self.log.last_index() {
            let (e, c) = &self.log.entries[(i - self.log.offset - 1) as usize];
            entries.push(e.clone());
            chains.push(*c);
        }
        let rec = Recovered {
            hard_state: self.hard_state,
            snapshot: snap.meta.clone(),
            entries,
            applied: snap.meta.last_index,
            // The simulated clock runs on across restarts, so the start
            // time alone keeps read context ids apart.
            epoch: 0,
        };
        (rec, chains)
    }
}

/// One unit of a write job, applied to the durable store in order.
#[derive(Clone, Debug)]
pub enum WriteItem {
    /// Replace the vote state.
    HardState(HardState),
    /// A received snapshot is complete: it becomes the stored snapshot.
    Snapshot(StoredSnapshot),
    /// Truncate from the first entry's index and append (entry, chain).
    Append(Vec<(Entry, u64)>),
    /// Drop the log prefix up to this index.
    Purge(LogIndex),
    /// Drop the whole log; it continues after (index, chain).
    Reset(LogIndex, u64),
}

/// A write in flight: what to write, and what to release when it is done.
#[derive(Debug)]
pub struct WriteJob {
    /// Sequence number on this disk.
    pub id: u64,
    /// What to write, in order.
    pub items: Vec<WriteItem>,
    /// Messages to send once durable.
    pub persisted_messages: Vec<Message>,
    /// What to report through `on_persisted`.
    pub persist_point: Option<PersistPoint>,
}

/// A log entry a torn write left durable: (index, term, chain hash).
pub type Survivor = (u64, u64, u64);

/// A node's disk.
#[derive(Debug, Default)]
pub struct Disk {
    /// The durable store.
    pub durable: Durable,
    queue: VecDeque<WriteJob>,
    next_id: u64,
    last_done_at: u64,
}

impl Disk {
    /// A disk whose durable store starts as `durable`.
    pub fn new(durable: Durable) -> Disk {
        Disk { durable, ..Disk::default() }
    }

    /// The lowest index a write still in flight replaces or appends at or
    /// below `index`, if any: an acknowledgement of `index` now would vouch
    /// for entries a pending truncation is about to change.
    pub fn pending_rewrite_at_or_below(&self, index: u64) -> Option<u64> {
        self.queue
            .iter()
            .flat_map(|j| j.items.iter())
            .filter_map(|item| match item {
                WriteItem::Append(es) => es.first().map(|(e, _)| e.index.0),
                _ => None,
            })
            .filter(|first| *first <= index)
            .min()
    }

    /// Queues a job that takes `delay_us` from `now` (but never completes
    /// before an earlier job). Returns its id and completion time.
    pub fn submit(
        &mut self,
        items: Vec<WriteItem>,
        persisted_messages: Vec<Message>,
        persist_point: Option<PersistPoint>,
        now: u64,
        delay_us: u64,
    ) -> (u64, u64) {
        let done_at = (now + delay_us).max(self.last_done_at);
        self.last_done_at = done_at;
        self.next_id += 1;
        let id = self.next_id;
        self.queue.push_back(WriteJob { id, items, persisted_messages, persist_point });
        (id, done_at)
    }

    /// Completes the oldest job, which must be `id`, and returns it.
    ///
    /// # Errors
    /// When jobs complete out of order or a log change does not fit the
    /// durable log (a driver or core bug).
    pub fn complete(&mut self, id: u64) -> Result<WriteJob, String> {
        match self.queue.front() {
            Some(j) if j.id == id => {}
            other => return Err(format!("disk job {} completed but the head is {:?}", id, other.map(|j| j.id))),
        }
        let job = self.queue.pop_front().ok_or("disk queue empty")?;
        for item in &job.items {
            self.write(item, usize::MAX)?;
        }
        Ok(job)
    }

    fn write(&mut self, item: &WriteItem, entries_max: usize) -> Result<(), String> {
        let d = &mut self.durable;
        match item {
            WriteItem::HardState(hs) => d.hard_state = *hs,
            WriteItem::Snapshot(s) => d.snapshot = s.clone(),
            WriteItem::Append(es) => d.log.append(&es[..es.len().min(entries_max)])?,
            WriteItem::Purge(i) => d.log.purge(i.0)?,
            WriteItem::Reset(i, c) => d.log.reset(i.0, *c),
        }
        Ok(())
    }

    /// The node crashed. Every job in flight is lost; with `torn = Some(r)`
    /// a prefix of the oldest one (chosen by the random word `r`) survives.
    /// Returns, when a torn write happened (some job was in flight), the
    /// (index, term, chain) of the log entries that survived.
    ///
    /// # Errors
    /// When the surviving prefix does not fit the durable log.
    pub fn crash(&mut self, torn: Option<u64>) -> Result<Option<Vec<Survivor>>, String> {
        let head = self.queue.pop_front();
        self.queue.clear();
        self.last_done_at = 0;
        let (Some(r), Some(job)) = (torn, head) else { return Ok(None) };
        let units: u64 = job
            .items
            .iter()
            .map(|i| match i {
                WriteItem::Append(es) => es.len() as u64,
                _ => 1,
            })
            .sum();
        if units == 0 {
            return Ok(None);
        }
        // A strict prefix: the write was cut somewhere before its end.
        let mut keep = r % units;
        let mut survived = Vec::new();
        for item in &job.items {
            if keep == 0 {
                break;
            }
            let n = match item {
                WriteItem::Append(es) => (es.len() as u64).min(keep),
                _ => 1,
            };
            self.write(item, n as usize)?;
            if let WriteItem::Append(es) = item {
                survived.extend(es[..n as usize].iter().map(|(e, c)| (e.index.0, e.term.0, *c)));
            }
            keep -= n;
        }
        Ok(Some(survived))
    }
}
