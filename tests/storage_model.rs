//! Model test of the log engine: random sequences of batched appends (some
//! overwriting a suffix), purges, resets, limited reads and reopens, over
//! several groups, on tiny segments and a tiny cache so that rotation,
//! oversized records, segment deletion and disk reads happen all the time.
//! After every operation the engine must agree with a plain in-memory model
//! on `first_index`, `last_index`, `term_at` and `entries` of every group.
//!
//! Operations are generated abstractly ("append 3 entries, 2 back from the
//! tail") and made concrete against the model, so every batch is valid and
//! proptest can shrink a failure to a short sequence.
//!
//! Knobs: `PROPTEST_CASES` (default 48 cases of up to 60 operations).
//!
//! Two relaxations are deliberate, both only across a reopen: the format
//! cannot do better today (no record restates a group's start when the
//! segment holding its reset or purge is deleted), so the test tolerates
//! them rather than fail on them:
//! * `term_at(first_index - 1)` (the term at a purge or reset point) may
//!   read `None` after a reopen: the record that carried it can sit in a
//!   segment that was deleted.
//! * a group whose log is empty may be forgotten by a reopen (reported as
//!   never seen) once every record it wrote is in deleted segments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use proptest::prelude::*;
use ringraft::core::{Entry, GroupId, LogIndex, LogOp, Membership, NodeId, Payload, SnapshotMeta, Term};
use ringraft::storage::record::{self, Prefix};
use ringraft::storage::{EngineConfig, LogEngine, StorageError};

/// Groups that operations touch; `GROUPS + 1` is never touched and must stay
/// unknown.
const GROUPS: u64 = 3;
/// Payload sizes; the largest do not fit a tiny segment, so they get a
/// segment of their own, and 5000 is written from the caller's buffer
/// rather than copied (see `storage::gather`).
const SIZES: [usize; 10] = [0, 1, 8, 17, 60, 130, 300, 700, 2500, 5000];
const COUNT_LIMITS: [usize; 6] = [0, 1, 2, 3, 10, usize::MAX];
const BYTE_LIMITS: [usize; 7] = [0, 1, 40, 100, 500, 5000, usize::MAX];

// --- generated operations -------------------------------------------------

/// One log change of a batch, relative to the model's state.
#[derive(Clone, Debug)]
enum Step {
    /// Append `count` entries starting `back` entries before the tail's end
    /// (0: a plain append; more: overwrite a suffix).
    Append { group: u64, back: u8, count: u8, size: u8, kind: u8 },
    /// Purge up to a point picked around the group's live range (below the
    /// start, inside, past the end).
    Purge { group: u64, pick: u16 },
    /// Restart the group after a snapshot at `last_index + delta`.
    Reset { group: u64, delta: i8 },
}

#[derive(Clone, Debug)]
enum Op {
    /// One `LogEngine::write` of these steps.
    Write(Vec<Step>),
    /// `entries(lo, lo + len, count, bytes)` with `lo` picked around the
    /// group's live range.
    Read { group: u64, pick: u16, len: u8, count: u8, bytes: u8 },
    /// Drop the engine and open the directory again.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let group = 1..=GROUPS;
    let back = prop_oneof![3 => Just(0u8), 1 => 1..12u8];
    prop_oneof![
        6 => (group.clone(), back, 1..8u8, any::<u8>(), any::<u8>())
            .prop_map(|(group, back, count, size, kind)| Step::Append { group, back, count, size, kind }),
        1 => (group.clone(), any::<u16>()).prop_map(|(group, pick)| Step::Purge { group, pick }),
        1 => (group, -6..30i8).prop_map(|(group, delta)| Step::Reset { group, delta }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => prop::collection::vec(step(), 1..5).prop_map(Op::Write),
        4 => (1..=GROUPS + 1, any::<u16>(), any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(group, pick, len, count, bytes)| Op::Read { group, pick, len, count, bytes }),
        1 => Just(Op::Reopen),
    ]
}

fn engine_config() -> impl Strategy<Value = EngineConfig> {
    (prop::sample::select(vec![256u64, 1024, 4096]), prop::sample::select(vec![0usize, 100, 1000, 1 << 20])).prop_map(
        |(segment_bytes, cache_bytes_per_group)| EngineConfig {
            segment_bytes,
            cache_bytes_per_group,
            ..EngineConfig::default()
        },
    )
}

// --- the model ------------------------------------------------------------

/// What one group's log should hold.
#[derive(Clone, Debug, Default)]
struct GroupModel {
    /// The group has been written to (an entry or a marker).
    known: bool,
    /// Entries up to and including `offset` are gone.
    offset: u64,
    /// The term at `offset`, when the log knows it.
    offset_term: Option<Term>,
    /// `offset_term` must be reported exactly (false after a reopen, when
    /// `None` is also allowed).
    offset_term_exact: bool,
    /// Entries `offset + 1 ..= last`.
    entries: Vec<Entry>,
    /// The newest term this group has used (generator state).
    term: u64,
}

impl GroupModel {
    fn last(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    fn term_at(&self, i: u64) -> Option<Term> {
        if i == self.offset {
            return self.offset_term;
        }
        if i < self.offset {
            return None;
        }
        self.entries.get((i - self.offset - 1) as usize).map(|e| e.term)
    }

    /// Applies a log op the way the engine documents it.
    fn apply(&mut self, op: &LogOp) {
        match op {
            LogOp::Append(es) => {
                let first = es[0].index.0;
                if !self.known {
                    self.offset = first - 1;
                    self.offset_term = None;
                    self.offset_term_exact = true;
                }
                assert!(first > self.offset && first <= self.last() + 1, "generator made a gap");
                self.entries.truncate((first - self.offset - 1) as usize);
                self.entries.extend(es.iter().cloned());
            }
            LogOp::Purge(i) => {
                // A group never seen before starts after the purge point.
                let p = if self.known { i.0.min(self.last()) } else { i.0 };
                if !self.known {
                    self.offset = p;
                    self.offset_term = None;
                    self.offset_term_exact = true;
                } else if p > self.offset {
                    let t = self.term_at(p);
                    self.entries.drain(..(p - self.offset) as usize);
                    self.offset = p;
                    self.offset_term = t;
                    self.offset_term_exact = true;
                }
            }
            LogOp::Reset(meta) => {
                self.entries.clear();
                self.offset = meta.last_index.0;
                self.offset_term = Some(meta.last_term);
                self.offset_term_exact = true;
            }
        }
        self.known = true;
    }

    /// What `entries(lo, hi, count_max, bytes_max)` must return.
    fn read(&self, lo: u64, hi: u64, count_max: usize, bytes_max: usize) -> Result<Vec<Entry>, ()> {
        if !self.known {
            return Ok(Vec::new());
        }
        let hi = hi.min(self.last());
        if lo > hi || count_max == 0 {
            return Ok(Vec::new());
        }
        if lo <= self.offset {
            return Err(());
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in &self.entries[(lo - self.offset - 1) as usize..=(hi - self.offset - 1) as usize] {
            if out.len() == count_max {
                break;
            }
            bytes += e.size_bytes();
            if bytes > bytes_max && !out.is_empty() {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }
}

type Model = BTreeMap<u64, GroupModel>;

fn payload(g: u64, index: u64, term: u64, size: u8, kind: u8) -> Payload {
    match kind % 8 {
        0 => Payload::Noop,
        1 => Payload::Config(Membership {
            voters: (1..=1 + index % 4).map(NodeId).collect(),
            voters_outgoing: if index.is_multiple_of(3) { [NodeId(9)].into() } else { Default::default() },
            learners: if term.is_multiple_of(2) { [NodeId(7)].into() } else { Default::default() },
        }),
        _ => {
            let n = SIZES[size as usize % SIZES.len()];
            let seed = g.wrapping_mul(31).wrapping_add(index.wrapping_mul(7)).wrapping_add(term);
            Payload::Normal((0..n).map(|k| (seed.wrapping_add(k as u64 * 13) % 251) as u8).collect::<Bytes>())
        }
    }
}

/// Makes a step concrete against `m` (the group's model as the batch so far
/// leaves it).
fn concrete(step: &Step, m: &mut GroupModel) -> LogOp {
    match *step {
        Step::Append { group, back, count, size, kind } => {
            let start = if !m.known {
                1 + u64::from(back % 8)
            } else {
                (m.last() + 1).saturating_sub(u64::from(back)).max(m.offset + 1)
            };
            // An overwrite comes from a newer leader: a new term, so a stale
            // entry read back shows up in `term_at` too.
            if start <= m.last() || m.term == 0 || kind % 5 == 0 {
                m.term += 1;
            }
            let entries = (start..start + u64::from(count))
                .map(|i| Entry {
                    term: Term(m.term),
                    index: LogIndex(i),
                    payload: payload(group, i, m.term, size.wrapping_add(i as u8), kind.wrapping_add(i as u8)),
                })
                .collect();
            LogOp::Append(entries)
        }
        Step::Purge { pick, .. } => {
            if !m.known {
                return LogOp::Purge(LogIndex(u64::from(pick % 10)));
            }
            let lo = m.offset.saturating_sub(2);
            let span = m.last() - m.offset + 6;
            LogOp::Purge(LogIndex(lo + u64::from(pick) % span))
        }
        Step::Reset { delta, .. } => {
            m.term += 1;
            let index = (m.last() as i64 + i64::from(delta)).max(0) as u64;
            LogOp::Reset(SnapshotMeta {
                last_index: LogIndex(index),
                last_term: Term(m.term),
                membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
            })
        }
    }
}

// --- checks ---------------------------------------------------------------

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

fn check_group(log: &mut LogEngine, g: u64, m: &GroupModel) -> Result<(), String> {
    let gid = GroupId(g);
    let (first, last) = if m.known { (m.offset + 1, m.last()) } else { (1, 0) };
    ensure!(
        log.first_index(gid) == LogIndex(first),
        "group {g}: first_index {} != model {first}",
        log.first_index(gid)
    );
    ensure!(log.last_index(gid) == LogIndex(last), "group {g}: last_index {} != model {last}", log.last_index(gid));
    for i in m.offset.saturating_sub(1)..=last + 1 {
        let got = log.term_at(gid, LogIndex(i));
        let want = if m.known { m.term_at(i) } else { None };
        let relaxed = m.known && i == m.offset && !m.offset_term_exact && got.is_none();
        ensure!(got == want || relaxed, "group {g}: term_at({i}) = {got:?}, model {want:?}");
    }
    let all = log
        .entries(gid, LogIndex(first), LogIndex(last), usize::MAX, usize::MAX)
        .map_err(|e| format!("group {g}: reading {first}..={last}: {e}"))?;
    if all != m.entries {
        let got: Vec<(u64, u64)> = all.iter().map(|e| (e.index.0, e.term.0)).collect();
        let want: Vec<(u64, u64)> = m.entries.iter().map(|e| (e.index.0, e.term.0)).collect();
        return Err(format!("group {g}: entries differ\n  engine {got:?}\n  model  {want:?}"));
    }
    Ok(())
}

fn check_all(log: &mut LogEngine, model: &Model) -> Result<(), String> {
    for g in 1..=GROUPS + 1 {
        check_group(log, g, &model.get(&g).cloned().unwrap_or_default())?;
    }
    let known: Vec<GroupId> = model.iter().filter(|(_, m)| m.known).map(|(g, _)| GroupId(*g)).collect();
    ensure!(log.groups() == known, "groups() = {:?}, model {known:?}", log.groups());
    Ok(())
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
        .count()
}

/// A batch in one line: `g1 append 3..=5 t2 [0,60,noop]; g2 purge 4`.
fn describe(batch: &[(GroupId, LogOp)]) -> String {
    let one = |(g, op): &(GroupId, LogOp)| match op {
        LogOp::Append(es) => {
            let sizes: Vec<String> = es
                .iter()
                .map(|e| match &e.payload {
                    Payload::Noop => "noop".to_string(),
                    Payload::Config(_) => "conf".to_string(),
                    Payload::Normal(b) => b.len().to_string(),
                })
                .collect();
            let (a, b) = (es[0].index, es[es.len() - 1].index);
            format!("g{g} append {a}..={b} t{} [{}]", es[0].term, sizes.join(","))
        }
        LogOp::Purge(i) => format!("g{g} purge {i}"),
        LogOp::Reset(m) => format!("g{g} reset {}/t{}", m.last_index, m.last_term),
    };
    batch.iter().map(one).collect::<Vec<_>>().join("; ")
}

// --- the run --------------------------------------------------------------

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("storage-model-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(dir: &Path, cfg: EngineConfig, ops: &[Op], trace: &mut Vec<String>) -> Result<(), String> {
    let mut log = LogEngine::open(dir, cfg.clone()).map_err(|e| format!("open: {e}"))?;
    let mut model = Model::new();
    for (n, op) in ops.iter().enumerate() {
        let at = |e: String| format!("op #{n} failed: {e}");
        match op {
            Op::Write(steps) => {
                let mut next = model.clone();
                let batch: Vec<(GroupId, LogOp)> = steps
                    .iter()
                    .map(|s| {
                        let g = match s {
                            Step::Append { group, .. } | Step::Purge { group, .. } | Step::Reset { group, .. } => {
                                *group
                            }
                        };
                        let m = next.entry(g).or_default();
                        let op = concrete(s, m);
                        m.apply(&op);
                        (GroupId(g), op)
                    })
                    .collect();
                trace.push(format!("#{n} write {}", describe(&batch)));
                log.write(&batch).map_err(|e| at(format!("write: {e}")))?;
                model = next;
                if model.values().all(|m| m.entries.is_empty()) {
                    let n = segment_files(dir);
                    ensure!(n == 1, "{}", at(format!("every log is empty but {n} segment files remain")));
                }
            }
            Op::Read { group, pick, len, count, bytes } => {
                let m = model.get(group).cloned().unwrap_or_default();
                let lo = m.offset.saturating_sub(1) + u64::from(*pick) % (m.entries.len() as u64 + 3);
                let hi = lo + u64::from(*len % 40);
                let count_max = COUNT_LIMITS[*count as usize % COUNT_LIMITS.len()];
                let bytes_max = BYTE_LIMITS[*bytes as usize % BYTE_LIMITS.len()];
                trace.push(format!("#{n} read group {group} {lo}..={hi} count {count_max} bytes {bytes_max}"));
                let got = log.entries(GroupId(*group), LogIndex(lo), LogIndex(hi), count_max, bytes_max);
                match (got, m.read(lo, hi, count_max, bytes_max)) {
                    (Ok(got), Ok(want)) => ensure!(
                        got == want,
                        "{}",
                        at(format!(
                            "read {lo}..={hi} count {count_max} bytes {bytes_max}: engine {:?}, model {:?}",
                            got.iter().map(|e| e.index.0).collect::<Vec<_>>(),
                            want.iter().map(|e| e.index.0).collect::<Vec<_>>()
                        ))
                    ),
                    (Err(StorageError::InvalidRequest(_)), Err(())) => {}
                    (got, want) => return Err(at(format!("read {lo}..={hi}: engine {got:?}, model {want:?}"))),
                }
            }
            Op::Reopen => {
                trace.push(format!("#{n} reopen"));
                drop(log);
                log = LogEngine::open(dir, cfg.clone()).map_err(|e| at(format!("reopen: {e}")))?;
                for (g, m) in model.iter_mut() {
                    m.offset_term_exact = false;
                    let forgotten = !log.groups().contains(&GroupId(*g));
                    if m.known && m.entries.is_empty() && forgotten {
                        *m = GroupModel { term: m.term, ..GroupModel::default() };
                    }
                }
            }
        }
        check_all(&mut log, &model).map_err(at)?;
    }
    Ok(())
}

/// Runs the operations and, on a failure, prints what was really done and
/// what the segment files hold.
fn run_traced(cfg: EngineConfig, ops: &[Op]) -> Result<(), String> {
    let dir = TempDir::new();
    let mut trace = Vec::new();
    run(&dir.0, cfg, ops, &mut trace).map_err(|why| format!("{}\n{why}\n{}", trace.join("\n"), dump(&dir.0)))
}

/// The records of every segment file in `dir`, one line per file.
fn dump(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut out = String::from("segment files after the failure:");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let mut recs = Vec::new();
        let mut pos = record::SEGMENT_HEADER_BYTES as usize;
        while pos + 8 <= data.len() {
            let Prefix::Record { len, crc } = record::decode_prefix(data[pos..pos + 8].try_into().unwrap()) else {
                break;
            };
            let Some(body) = data.get(pos + 8..pos + 8 + len) else { break };
            match record::decode_body(Bytes::copy_from_slice(body), crc) {
                Ok(r) => recs.push(format!("g{} {:?} {}/t{}", r.group, r.kind, r.index, r.term)),
                Err(why) => {
                    recs.push(format!("<{why} at {pos}>"));
                    break;
                }
            }
            pos += record::padded(8 + len);
        }
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        out.push_str(&format!("\n  {name} ({} bytes): {}", data.len(), recs.join(", ")));
    }
    out
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_engine_matches_the_model(cfg in engine_config(), ops in prop::collection::vec(op(), 1..60)) {
        if let Err(why) = run_traced(cfg.clone(), &ops) {
            return Err(TestCaseError::fail(format!("{cfg:?}\n{why}")));
        }
    }
}
