//! The log the acknowledgements imply, and the check of a reopened log
//! against it.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use ringraft::core::{Entry, LogIndex};
use ringraft::storage::LogEngine;

use super::child::{Rec, Transcript};
use super::payload::{derived_payload, payload_crc};
use super::support::{engine_config, report};

/// An entry the model expects: its term and where its payload comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ent {
    pub term: u64,
    pub seed: u64,
    pub max_bytes: u64,
    pub crc: u32,
}

/// One group as the engine should hold it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupModel {
    /// Entries `<= offset` are purged (or before a reset point).
    pub offset: u64,
    /// The term at `offset` when the log knows it.
    pub offset_term: Option<u64>,
    /// `entries[i]` is index `offset + 1 + i`.
    pub entries: VecDeque<Ent>,
}

impl GroupModel {
    pub fn last(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.offset {
            return self.offset_term;
        }
        (index > self.offset).then(|| self.entries.get((index - self.offset - 1) as usize).map(|e| e.term))?
    }
}

/// The log the acknowledgements imply, with the engine's semantics: an
/// append truncates from its first index; a purge is clamped to the last
/// index; a reset drops everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub groups: BTreeMap<u64, GroupModel>,
}

impl Model {
    /// # Panics
    /// On a record the engine would refuse (a gap): the child broke the
    /// protocol.
    pub fn apply(&mut self, rec: &Rec) {
        match *rec {
            Rec::Entry { group, index, term, seed, max_bytes } => {
                let crc = payload_crc(&derived_payload(seed, group, index, term, max_bytes));
                let ent = Ent { term, seed, max_bytes, crc };
                match self.groups.get_mut(&group) {
                    None => {
                        let g = GroupModel { offset: index - 1, offset_term: None, entries: [ent].into() };
                        self.groups.insert(group, g);
                    }
                    Some(g) => {
                        assert!(
                            index > g.offset && index <= g.last() + 1,
                            "group {group}: entry {index} outside {}..={}",
                            g.offset + 1,
                            g.last() + 1
                        );
                        g.entries.truncate((index - g.offset - 1) as usize);
                        g.entries.push_back(ent);
                    }
                }
            }
            Rec::Purge { group, index } => {
                let g = self.groups.entry(group).or_default();
                let to = index.min(g.last());
                if to > g.offset {
                    let term = g.term_at(to);
                    g.entries.drain(..(to - g.offset) as usize);
                    g.offset = to;
                    g.offset_term = term;
                }
            }
            Rec::Reset { group, index, term } => {
                self.groups
                    .insert(group, GroupModel { offset: index, offset_term: Some(term), entries: VecDeque::new() });
            }
        }
    }

    pub fn entries(&self) -> usize {
        self.groups.values().map(|g| g.entries.len()).sum()
    }
}

// --- checking a reopened log ----------------------------------------------------

/// One group as read back from the engine.
#[derive(Debug, Default)]
pub struct ObservedGroup {
    pub offset: u64,
    pub offset_term: Option<u64>,
    pub entries: Vec<Entry>,
    pub crcs: Vec<u32>,
}

/// Reads every group's state and entries through the engine's API, checking
/// that `term_at`, `first_index`, `last_index` and `entries` agree with
/// each other.
pub fn observe(log: &mut LogEngine) -> Result<BTreeMap<u64, ObservedGroup>, String> {
    let mut out = BTreeMap::new();
    for g in log.groups() {
        let (first, last) = (log.first_index(g), log.last_index(g));
        let mut entries = Vec::new();
        let mut next = first;
        while next <= last {
            let chunk = log.entries(g, next, last, 1000, usize::MAX).map_err(|e| format!("group {g}: read: {e}"))?;
            let Some(e) = chunk.last() else { return Err(format!("group {g}: no entry at {next} <= last {last}")) };
            next = e.index.next();
            entries.extend(chunk);
        }
        for (i, e) in entries.iter().enumerate() {
            let want = LogIndex(first.0 + i as u64);
            if e.index != want || log.term_at(g, want) != Some(e.term) {
                return Err(format!(
                    "group {g}: entry {i} of the read is {:?}, term_at says {:?}",
                    e,
                    log.term_at(g, want)
                ));
            }
        }
        let beyond = log.entries(g, last.next(), LogIndex(u64::MAX), 1, 1).map_err(|e| format!("group {g}: {e}"))?;
        if log.term_at(g, last.next()).is_some() || !beyond.is_empty() {
            return Err(format!("group {g}: something is served after last index {last}"));
        }
        let crcs = entries.iter().map(|e| payload_crc(&e.payload)).collect();
        let offset_term = log.term_at(g, first.prev()).map(|t| t.0);
        out.insert(g.0, ObservedGroup { offset: first.0 - 1, offset_term, entries, crcs });
    }
    Ok(out)
}

/// The first difference between what the engine holds and `model`.
pub fn difference(obs: &BTreeMap<u64, ObservedGroup>, model: &Model) -> Option<String> {
    let empty_obs = ObservedGroup::default();
    let empty_model = GroupModel::default();
    let keys: std::collections::BTreeSet<u64> = obs.keys().chain(model.groups.keys()).copied().collect();
    for g in keys {
        let m = model.groups.get(&g).unwrap_or(&empty_model);
        if !obs.contains_key(&g) && m.entries.is_empty() {
            // A group with no live entries is known to the log only while
            // the segment holding its reset or purge lives (segments go once
            // no group has a live entry in them): a reopen after that finds
            // no record of it. The engine's documented behaviour
            // (tests/storage_model.rs tolerates it too); a node's state file
            // holds the snapshot that start came from, and its start writes
            // the reset again (`drop_tail_not_following`).
            continue;
        }
        let o = obs.get(&g).unwrap_or(&empty_obs);
        let o_last = o.offset + o.entries.len() as u64;
        if o.offset != m.offset || o_last != m.last() {
            return Some(format!(
                "group {g}: log holds {}..={o_last}, expected {}..={}",
                o.offset + 1,
                m.offset + 1,
                m.last()
            ));
        }
        // `term_at(first_index - 1)` may be forgotten across a reopen (the
        // record that set it can be in a deleted segment; the core takes that
        // term from the snapshot meta), but must never be wrong.
        if o.offset_term.is_some() && o.offset_term != m.offset_term && m.offset != 0 {
            return Some(format!(
                "group {g}: term at {} is {:?}, expected {:?}",
                o.offset, o.offset_term, m.offset_term
            ));
        }
        for (i, (e, want)) in o.entries.iter().zip(&m.entries).enumerate() {
            if e.term.0 != want.term || o.crcs[i] != want.crc {
                return Some(format!(
                    "group {g}: entry {} has term {} crc {:08x}, expected term {} crc {:08x}",
                    e.index, e.term, o.crcs[i], want.term, want.crc
                ));
            }
        }
    }
    None
}

/// What a check found.
#[derive(Debug)]
pub struct Checked {
    /// How many records of the in-flight batch the log holds.
    pub inflight_applied: usize,
    /// Of how many.
    pub inflight_len: usize,
    /// The model with those records applied (the log's state now).
    pub model: Model,
    /// Entries compared byte for byte.
    pub entries: usize,
    pub bytes: usize,
}

/// Compares the engine's contents with `model` followed by some prefix of
/// `inflight`, then compares every payload byte for byte with its
/// derivation.
///
/// # Errors
/// A description of how the log differs from every allowed state.
pub fn check(log: &mut LogEngine, model: &Model, inflight: &[Rec]) -> Result<Checked, String> {
    let obs = observe(log)?;
    let mut cand = model.clone();
    let mut applied = None;
    let first_diff = difference(&obs, &cand);
    if first_diff.is_none() {
        applied = Some(0);
    } else {
        for (k, r) in inflight.iter().enumerate() {
            cand.apply(r);
            if difference(&obs, &cand).is_none() {
                applied = Some(k + 1);
                break;
            }
        }
    }
    let Some(k) = applied else {
        return Err(format!(
            "the log matches neither the acknowledged history ({}) nor it plus any prefix of the {} records \
             in flight (with all of them: {})",
            first_diff.unwrap_or_default(),
            inflight.len(),
            difference(&obs, &cand).unwrap_or_default()
        ));
    };
    // The log's state now: a group it forgot (above) starts afresh.
    cand.groups.retain(|g, m| obs.contains_key(g) || !m.entries.is_empty());
    let (mut entries, mut bytes) = (0, 0);
    for (g, o) in &obs {
        let m = &cand.groups[g];
        for (e, want) in o.entries.iter().zip(&m.entries) {
            let expected = derived_payload(want.seed, *g, e.index.0, e.term.0, want.max_bytes);
            if e.payload != expected {
                return Err(format!("group {g}: entry {} has the right CRC but different bytes", e.index));
            }
            entries += 1;
            bytes += e.size_bytes();
        }
    }
    Ok(Checked { inflight_applied: k, inflight_len: inflight.len(), model: cand, entries, bytes })
}

/// Opens the log in `dir` (recovery) and [`check`]s it.
pub fn reopen_and_check(dir: &Path, model: &Model, inflight: &[Rec]) -> Result<Checked, String> {
    let mut log = LogEngine::open(dir, engine_config()).map_err(|e| format!("reopen failed: {e}"))?;
    check(&mut log, model, inflight)
}

/// Checks that the child opened the log in the state the parent last
/// verified.
pub fn check_start_state(t: &Transcript, model: &Model) -> Result<(), String> {
    if !t.opened {
        return Ok(()); // Killed while opening: nothing to compare.
    }
    let seen: BTreeMap<u64, (u64, u64)> = t.start_state.iter().map(|&(g, o, l)| (g, (o, l))).collect();
    for (g, m) in &model.groups {
        if m.offset == 0 && m.entries.is_empty() {
            continue;
        }
        if seen.get(g) != Some(&(m.offset, m.last())) {
            return Err(format!(
                "the child opened group {g} as {:?}, the parent verified offset {} last {}",
                seen.get(g),
                m.offset,
                m.last()
            ));
        }
    }
    Ok(())
}

/// Counters a round-based test prints at its end.
#[derive(Debug, Default)]
pub struct Tally {
    pub rounds: usize,
    pub kills: usize,
    pub completed: usize,
    pub acked_batches: usize,
    pub acked_entries: usize,
    pub truncations: usize,
    pub purges: usize,
    pub resets: usize,
    pub inflight_none: usize,
    pub inflight_partial: usize,
    pub inflight_all: usize,
    pub entries_checked: usize,
    pub bytes_checked: usize,
}

impl Tally {
    pub fn add_run(&mut self, t: &Transcript) {
        self.rounds += 1;
        self.acked_batches += t.acked_batches();
        self.acked_entries += t.acked_entries();
        let (tr, p, r) = t.acked_markers();
        self.truncations += tr;
        self.purges += p;
        self.resets += r;
    }

    pub fn add_check(&mut self, c: &Checked) {
        if c.inflight_len > 0 {
            match c.inflight_applied {
                0 => self.inflight_none += 1,
                k if k == c.inflight_len => self.inflight_all += 1,
                _ => self.inflight_partial += 1,
            }
        }
        self.entries_checked += c.entries;
        self.bytes_checked += c.bytes;
    }

    pub fn print(&self, test: &str) {
        report(&format!(
            "{test}: {} rounds, {} killed, {} ran to the end; acknowledged {} batches, {} entries, {} truncating \
             appends, {} purges, {} resets; in-flight batch found applied: none {} / partly {} / wholly {}; \
             {} entries ({} bytes) compared byte for byte after reopening",
            self.rounds,
            self.kills,
            self.completed,
            self.acked_batches,
            self.acked_entries,
            self.truncations,
            self.purges,
            self.resets,
            self.inflight_none,
            self.inflight_partial,
            self.inflight_all,
            self.entries_checked,
            self.bytes_checked
        ));
    }
}
