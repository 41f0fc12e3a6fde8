//! The follower whose storage `tests/fs_faults_recover.rs` crashes: the
//! Raft traffic it sees (clusters of leaders, terms, commits, partitions),
//! the writes its append stage makes of it (state files first, then one log
//! batch), and a model of what those writes leave durable: the log as the
//! engine holds it and the state file, record by record, so a crash point
//! of a batch maps to one model state.

use std::collections::BTreeMap;

use ringraft::core::{Entry, GroupId, HardState, LogIndex, LogOp, Membership, NodeId, SnapshotMeta, Term};
use ringraft::storage::GroupState;

use crate::storage_common::{derived_payload, Rng};

/// The groups the follower runs.
pub const GROUPS: [u64; 2] = [1, 2];
/// The follower whose storage is modelled.
pub const ME: NodeId = NodeId(1);
/// Every group's initial voters.
pub const VOTERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
/// Largest payload of an entry.
pub const MAX_BYTES: u64 = 200;

/// The membership a snapshot at `index` records: two kinds, so a state
/// file that mixes snapshots up shows.
fn membership_at(index: u64) -> Membership {
    let mut m = Membership::new(VOTERS);
    if index % 2 == 1 {
        m.learners.insert(NodeId(4));
    }
    m
}

/// The meta of a snapshot at `index` of `term`.
fn snapshot(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta { last_index: LogIndex(index), last_term: Term(term), membership: membership_at(index) }
}

/// One group's cluster as its leaders see it: the truth the follower's
/// storage is checked against. Unaffected by the follower's crashes.
pub struct Cluster {
    /// `log[i]` is the term of entry `i + 1` in the current leader's log.
    log: Vec<u64>,
    /// Entries up to here are committed: every later leader holds them.
    /// Invariant: `commit <= log.len()`.
    commit: u64,
    /// The current leader's term.
    term: u64,
    /// The log of each earlier term's leader (a leader only appends, so it
    /// held every entry of it when it wrote it).
    past: BTreeMap<u64, Vec<u64>>,
    /// The follower is cut off with an old leader: (its term, its commit
    /// index, jobs left). That leader's log in `past` grows meanwhile.
    cut_off: Option<(u64, u64, u64)>,
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster { log: Vec::new(), commit: 0, term: 1, past: BTreeMap::new(), cut_off: None }
    }

    fn len(&self) -> u64 {
        self.log.len() as u64
    }

    fn term_at(&self, index: u64) -> u64 {
        if index == 0 {
            0
        } else {
            self.log[(index - 1) as usize]
        }
    }

    pub fn leader_log(&self, term: u64) -> Option<&Vec<u64>> {
        if term == self.term {
            Some(&self.log)
        } else {
            self.past.get(&term)
        }
    }

    /// A new leader wins the next term; its log is the old leader's up to
    /// a point at or after the commit index (the rest was never committed).
    fn elect(&mut self, rng: &mut Rng) {
        self.past.insert(self.term, self.log.clone());
        self.term += 1;
        let keep = self.commit + rng.below(self.len() - self.commit + 1);
        self.log.truncate(keep as usize);
    }

    /// What the rest of the cluster does meanwhile: the leader appends, a
    /// quorum commits, now and then another leader takes over.
    fn step(&mut self, rng: &mut Rng, t: &mut Tally) {
        if rng.below(100) < 50 {
            for _ in 0..1 + rng.below(6) {
                self.log.push(self.term);
            }
        }
        if rng.below(100) < 35 {
            self.commit += rng.below(self.len() - self.commit + 1);
        }
        if rng.below(100) < 2 {
            self.elect(rng);
            t.elections += 1;
        }
    }
}

/// One record the log engine writes: an entry of an append, a purge
/// marker, a reset marker. A crash keeps a prefix of a batch's records.
#[derive(Clone, Debug)]
pub enum Rec {
    Entry { group: u64, index: u64, term: u64 },
    Purge { group: u64, index: u64 },
    Reset { group: u64, meta: SnapshotMeta },
}

impl Rec {
    pub fn group(&self) -> u64 {
        match self {
            Rec::Entry { group, .. } | Rec::Purge { group, .. } | Rec::Reset { group, .. } => *group,
        }
    }
}

/// A group's log as the engine holds it, from the node's side: what it may
/// rely on. Entries at or before a recovered snapshot are left out (the
/// engine may keep some; nothing reads them).
#[derive(Clone, Debug, Default)]
pub struct LogModel {
    /// The index before the first entry.
    pub offset: u64,
    /// `terms[i]` is the term of entry `offset + 1 + i`.
    pub terms: Vec<u64>,
}

impl LogModel {
    pub fn last(&self) -> u64 {
        self.offset + self.terms.len() as u64
    }

    pub fn term(&self, index: u64) -> Option<u64> {
        if index <= self.offset {
            return None;
        }
        self.terms.get((index - self.offset - 1) as usize).copied()
    }

    /// What the engine does with one record (an append past the end leaves
    /// a gap and is refused before anything is written: never generated).
    pub fn apply(&mut self, rec: &Rec) {
        match rec {
            Rec::Entry { index, term, .. } => {
                assert!(
                    *index > self.offset && *index <= self.last() + 1,
                    "test bug: entry {index} appended to a log holding {}..={}",
                    self.offset + 1,
                    self.last()
                );
                self.terms.truncate((index - self.offset - 1) as usize);
                self.terms.push(*term);
            }
            Rec::Purge { index, .. } => {
                let to = (*index).min(self.last()).max(self.offset);
                self.terms.drain(..(to - self.offset) as usize);
                self.offset = to;
            }
            Rec::Reset { meta, .. } => {
                self.offset = meta.last_index.0;
                self.terms.clear();
            }
        }
    }

    /// Whether the log continues `snap`: holds its last entry with its
    /// term, or starts right after it (both are committed, so a log that
    /// starts there started at the same entry).
    pub fn continues(&self, snap: &SnapshotMeta) -> bool {
        let s = snap.last_index.0;
        s == 0 || self.offset == s || self.term(s) == Some(snap.last_term.0)
    }

    /// (index, term) of the entries after `index`.
    pub fn after(&self, index: u64) -> Vec<(u64, u64)> {
        (index.max(self.offset) + 1..=self.last()).map(|i| (i, self.terms[(i - self.offset - 1) as usize])).collect()
    }
}

/// What is durable of one group: its state file and its log.
#[derive(Clone, Debug)]
pub struct GroupDisk {
    pub state: GroupState,
    pub log: LogModel,
}

/// What is durable of every group.
pub type Disk = BTreeMap<u64, GroupDisk>;

/// The state a brand-new group is bootstrapped with.
pub fn bootstrap_disk() -> Disk {
    let state = GroupState { hard_state: HardState::default(), snapshot: snapshot(0, 0) };
    GROUPS.iter().map(|g| (*g, GroupDisk { state: state.clone(), log: LogModel::default() })).collect()
}

/// One write of the append stage: state files first (in order), then one
/// log batch (its records in order).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub states: Vec<(u64, GroupState)>,
    pub recs: Vec<Rec>,
}

/// `disk` after the first `stored` state files and the first `recs`
/// records of `b`.
pub fn after_prefix(disk: &Disk, b: &Batch, stored: usize, recs: usize) -> Disk {
    let mut out = disk.clone();
    for (g, st) in &b.states[..stored] {
        out.get_mut(g).expect("a modelled group").state = st.clone();
    }
    for r in &b.recs[..recs] {
        out.get_mut(&r.group()).expect("a modelled group").log.apply(r);
    }
    out
}

/// What a correct recovery makes of `gd`: the state file as it is; the
/// log's entries after the snapshot when the log continues it, else none
/// (the log is reset to it). `Err` for a state no correct design could
/// recover from (a log that starts after the snapshot).
pub fn expected(gd: &GroupDisk) -> Result<Vec<(u64, u64)>, String> {
    let s = gd.state.snapshot.last_index.0;
    if gd.log.offset > s {
        return Err(format!("the log starts after {}, beyond the snapshot at {s}", gd.log.offset));
    }
    Ok(if gd.log.continues(&gd.state.snapshot) { gd.log.after(s) } else { Vec::new() })
}

/// The follower as its core sees it while it runs: the durable state its
/// writes so far give, and the commit index it has learned per group.
#[derive(Clone)]
pub struct View {
    pub disk: Disk,
    pub commit: BTreeMap<u64, u64>,
}

/// Counters printed at the end.
#[derive(Default)]
pub struct Tally {
    pub lives: u64,
    pub clean_lives: u64,
    pub crashes: u64,
    pub recovery_crashes: u64,
    pub batches: u64,
    pub full: u64,
    pub failed_syncs: u64,
    pub elections: u64,
    pub votes: u64,
    pub partitions: u64,
    pub overwrites: u64,
    pub installs_kept: u64,
    pub installs_reset: u64,
    pub local_snapshots: u64,
    pub purges: u64,
    pub inflight_found: u64,
    /// Crashes that left a log holding a newer snapshot's index with
    /// another term (recovery resets it).
    pub stale_other_term: u64,
    /// Crashes that left a log ending before a newer snapshot.
    pub stale_behind: u64,
}

/// The index up to which the follower's log agrees with `leader`'s log.
fn matched(log: &LogModel, leader: &[u64]) -> u64 {
    let mut m = log.offset;
    while m < log.last() && (m as usize) < leader.len() && log.term(m + 1) == Some(leader[m as usize]) {
        m += 1;
    }
    m
}

/// One job of the core for group `g` (one `Ready`): appended to `b` and
/// applied to the follower's view.
fn gen_job(rng: &mut Rng, cl: &mut Cluster, view: &mut View, g: u64, b: &mut Batch, t: &mut Tally) {
    let gd = view.disk.get_mut(&g).expect("a modelled group");
    let commit = view.commit.get_mut(&g).expect("a modelled group");
    let before = gd.state.clone();
    let mut recs = Vec::new();
    let roll = rng.below(100);
    if let Some((term, leader_commit, left)) = cl.cut_off {
        // Cut off with the old leader, which goes on appending in its term
        // (never committing: it has no quorum).
        cl.cut_off = (left > 1).then_some((term, leader_commit, left - 1));
        let old = cl.past.get_mut(&term).expect("the old leader's log is kept");
        for _ in 0..rng.below(4) {
            old.push(term);
        }
        if gd.state.hard_state.term.0 < term {
            gd.state.hard_state = HardState { term: Term(term), vote: NodeId::NONE };
        }
        append_entries(rng, Leader { log: old, commit: leader_commit }, gd, commit, g, &mut recs, t);
    } else if roll < 4 {
        // A partition: the follower stays with the old leader while the
        // others elect a new one, which drops the uncommitted entries.
        let (term, leader_commit) = (cl.term, cl.commit);
        cl.elect(rng);
        cl.cut_off = Some((term, leader_commit, 1 + rng.below(8)));
        t.elections += 1;
        t.partitions += 1;
    } else if roll < 8 {
        // An election this follower votes in; its candidate wins.
        cl.elect(rng);
        gd.state.hard_state = HardState { term: Term(cl.term), vote: NodeId(2 + rng.below(2)) };
        t.elections += 1;
        t.votes += 1;
    } else {
        if gd.state.hard_state.term.0 < cl.term {
            gd.state.hard_state = HardState { term: Term(cl.term), vote: NodeId::NONE };
        }
        let local_room = gd.state.snapshot.last_index.0 < (*commit).min(gd.log.last());
        if roll < 30 && cl.commit > *commit {
            install_snapshot(rng, cl, gd, commit, g, &mut recs, t);
        } else if roll < 45 && local_room {
            take_snapshot(rng, cl, gd, *commit, g, &mut recs, t);
        } else {
            append_entries(rng, Leader { log: &cl.log, commit: cl.commit }, gd, commit, g, &mut recs, t);
        }
    }
    if gd.state != before {
        b.states.push((g, gd.state.clone()));
    }
    for r in &recs {
        gd.log.apply(r);
    }
    b.recs.extend(recs);
}

/// What a follower hears of a leader: its log (`log[i]` is the term of
/// entry `i + 1`) and its commit index.
struct Leader<'a> {
    log: &'a [u64],
    commit: u64,
}

/// An AppendEntries from `leader` whose previous entry matches: the
/// follower writes from the first entry its log lacks or holds with
/// another term (as the core does), overwriting a conflicting tail.
fn append_entries(
    rng: &mut Rng,
    leader: Leader<'_>,
    gd: &GroupDisk,
    commit: &mut u64,
    g: u64,
    recs: &mut Vec<Rec>,
    t: &mut Tally,
) {
    let m = matched(&gd.log, leader.log);
    let prev = if rng.below(100) < 70 { m } else { gd.log.offset + rng.below(m - gd.log.offset + 1) };
    let hi = (prev + rng.below(9)).min(leader.log.len() as u64).max(prev);
    let term_at = |i: u64| leader.log[(i - 1) as usize];
    if let Some(c) = (prev + 1..=hi).find(|&i| gd.log.term(i) != Some(term_at(i))) {
        if c <= gd.log.last() {
            t.overwrites += 1;
        }
        recs.extend((c..=hi).map(|i| Rec::Entry { group: g, index: i, term: term_at(i) }));
    }
    *commit = (*commit).max(leader.commit.min(hi));
}

/// A snapshot received from the leader (past the follower's commit index):
/// its meta goes to the state file; the log is kept when it holds the
/// snapshot's entry with its term, else reset to it.
fn install_snapshot(
    rng: &mut Rng,
    cl: &Cluster,
    gd: &mut GroupDisk,
    commit: &mut u64,
    g: u64,
    recs: &mut Vec<Rec>,
    t: &mut Tally,
) {
    // Half the time into a tail the leader's log replaced (the follower
    // missed the overwrite), where the log holds the index with another
    // term: the case a reset must not leave half done (defect 03).
    let m = matched(&gd.log, &cl.log).max(*commit);
    let stale_hi = cl.commit.min(gd.log.last());
    let s = if m < stale_hi && rng.below(2) == 0 {
        m + 1 + rng.below(stale_hi - m)
    } else {
        *commit + 1 + rng.below(cl.commit - *commit)
    };
    assert!(s > gd.state.snapshot.last_index.0, "test bug: snapshot {s} is not new");
    let meta = snapshot(s, cl.term_at(s));
    if gd.log.term(s) == Some(meta.last_term.0) {
        t.installs_kept += 1;
    } else {
        recs.push(Rec::Reset { group: g, meta: meta.clone() });
        t.installs_reset += 1;
    }
    gd.state.snapshot = meta;
    *commit = s;
}

/// The state machine took a snapshot at a committed index: its meta goes
/// to the state file, then the log is purged behind it (keeping 0..=3
/// trailing entries, as `snapshot_trailing_entries` does).
fn take_snapshot(
    rng: &mut Rng,
    cl: &Cluster,
    gd: &mut GroupDisk,
    commit: u64,
    g: u64,
    recs: &mut Vec<Rec>,
    t: &mut Tally,
) {
    let lo = gd.state.snapshot.last_index.0 + 1;
    let hi = commit.min(gd.log.last());
    let a = lo + rng.below(hi - lo + 1);
    let term = gd.log.term(a).expect("a committed entry after the snapshot is in the log");
    assert_eq!(term, cl.term_at(a), "test bug: committed entry {a} differs from the leader's");
    gd.state.snapshot = snapshot(a, term);
    let to = a - rng.below(4).min(a);
    if to > gd.log.offset {
        recs.push(Rec::Purge { group: g, index: to });
        t.purges += 1;
    }
    t.local_snapshots += 1;
}

/// One batch of the append stage: 1..=3 jobs, each of a random group,
/// with the rest of the cluster moving between them.
pub fn gen_batch(rng: &mut Rng, clusters: &mut BTreeMap<u64, Cluster>, view: &mut View, t: &mut Tally) -> Batch {
    let mut b = Batch::default();
    for _ in 0..1 + rng.below(3) {
        let g = GROUPS[rng.below(GROUPS.len() as u64) as usize];
        let cl = clusters.get_mut(&g).expect("a modelled group");
        cl.step(rng, t);
        gen_job(rng, cl, view, g, &mut b, t);
    }
    b
}

/// The log ops of `recs`: consecutive entries of one group in one append.
pub fn to_ops(recs: &[Rec], seed: u64) -> Vec<(GroupId, LogOp)> {
    let mut ops: Vec<(GroupId, LogOp)> = Vec::new();
    for r in recs {
        match r {
            Rec::Entry { group, index, term } => {
                let payload = derived_payload(seed, *group, *index, *term, MAX_BYTES);
                let e = Entry { term: Term(*term), index: LogIndex(*index), payload };
                if let Some((g, LogOp::Append(es))) = ops.last_mut() {
                    if g.0 == *group && es.last().is_some_and(|l| l.index.next() == e.index) {
                        es.push(e);
                        continue;
                    }
                }
                ops.push((GroupId(*group), LogOp::Append(vec![e])));
            }
            Rec::Purge { group, index } => ops.push((GroupId(*group), LogOp::Purge(LogIndex(*index)))),
            Rec::Reset { group, meta } => ops.push((GroupId(*group), LogOp::Reset(meta.clone()))),
        }
    }
    ops
}
