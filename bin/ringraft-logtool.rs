//! `ringraft-logtool`: inspect a ringraft log directory, and exercise one.
//!
//! * `verify` opens the log read-only, reads every entry back with its
//!   checksum verified and prints per group the first and last index and
//!   the entry count; a torn tail (what a crash leaves) is reported, not cut.
//! * `dump` prints entries (index, term, kind, payload length, payload CRC),
//!   read-only too.
//! * `repair` runs a server's recovery: cuts a torn tail, removes a blank
//!   newest segment, and says what it did. The only verb that changes a
//!   server's log.
//!
//! Tools never harm what they inspect: every verb refuses, creating
//! nothing, a log whose data directory is locked by a running server
//! (`LOCK` in the node's directory or the data directory; the tool holds
//! those locks while it works, so no server starts under it), and
//! `verify`, `dump` and `repair` a directory that holds no ringraft
//! segment. `--dir` may name the log
//! (`DATA/raft/log`) or the data directory (`DATA`).
//! * `stress` appends random batches and reports each batch before it is
//!   written and after `write` returned, one line per record, flushing stdout
//!   each time: a parent that kills it knows exactly what was acknowledged.
//!   The process-level fault tests (`tests/storage_*.rs`) use it as their
//!   child.
//!
//! ## The `stress` protocol (stdout, one item per line)
//!
//! ```text
//! start seed <S> groups <N> batches <B> max-batch <M> max-bytes <X> segment-bytes <Y>
//! state <group> <offset> <last> <term>          the log as opened, per group
//! opened <groups>                               recovery is over
//! batch <b>                                     intent of batch b, then its ops:
//! op append <group> <first> <count> <term>      entries first.. (truncates from first)
//! op purge <group> <index>
//! op reset <group> <index> <term>
//! write <b>                                     LogEngine::write is being called
//! truncated <group> <from>                      after write returned Ok:
//! ok <group> <index> <term> <crc32c-of-payload>
//! purged <group> <index>
//! reset <group> <index> <term>
//! acked <b>
//! error <b> <message>                           write failed (also on stderr)
//! done batches <b> entries <e> fsyncs <f>
//! ```
//!
//! Payloads are a pure function of (seed, group, index, term, max-bytes) so a
//! verifier can recompute every byte: `h = mix(seed ^ mix(group ^ mix(index ^
//! mix(term))))` with `mix` the splitmix64 finaliser; `h % 32 == 0` is a
//! no-op entry, `== 1` a configuration entry (voters `1..=1 + (h >> 8) % 5`,
//! plus learner `100 + (h >> 16) % 7` when bit 12 of `h` is set), otherwise
//! normal data of `mix(h ^ 1) % (max_bytes + 1)` bytes, the little-endian
//! words `mix(h)`, `mix(mix(h))`, ... truncated to that length.
//!
//! `stress` makes or extends a scratch log: it refuses a held lock, a
//! non-empty directory without segments, and any log inside a server's
//! data directory (it writes random entries).
//!
//! Exit codes: 0 success, 1 usage, 2 corruption (the message names the file
//! and byte offset), 3 any other storage error (I/O, full disk), 4 the log
//! is in use (a server holds its lock), 5 no ringraft log there (or, for
//! `stress`, a server's log), 86 a failed fdatasync (fail-stop, from the
//! engine).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use ringraft::core::{Entry, GroupId, LogIndex, LogOp, Membership, NodeId, Payload, SnapshotMeta, Term};
use ringraft::storage::record::encode_membership;
use ringraft::storage::{parse_segment_file_name, EngineConfig, LogEngine, StorageError};

const EXIT_USAGE: u8 = 1;
const EXIT_CORRUPT: u8 = 2;
const EXIT_STORAGE: u8 = 3;
const EXIT_IN_USE: u8 = 4;
const EXIT_NOT_A_LOG: u8 = 5;

const HELP: &str = "\
ringraft-logtool: inspect and exercise a ringraft log directory

USAGE:
    ringraft-logtool verify --dir D [--segment-bytes N]
    ringraft-logtool dump   --dir D [--group G] [--from I] [--count N] [--segment-bytes N]
    ringraft-logtool repair --dir D [--segment-bytes N]
    ringraft-logtool stress --dir D --seed S [--groups N] [--batches N] [--max-batch N]
                            [--max-bytes N] [--segment-bytes N]

D is a node's log directory (DATA/raft/log) or its data directory (DATA).

verify  reads every entry back with its checksum verified (read-only: a torn tail
        is reported, not cut), prints per group the first/last index and entry count
dump    prints entries: group, index, term, kind, payload length, payload CRC32C
        (read-only)
repair  runs a server's recovery on a stopped node's log: cuts a torn tail, removes
        a blank newest segment, prints what it did, then verifies
stress  appends random batches (truncating appends, purges and resets now and then)
        and prints each batch before writing it and every record once write returned
        (a scratch log only: it refuses a server's data directory)

Every verb refuses a log whose server is running (its LOCK is held); verify, dump
and repair also refuse a directory with no ringraft segment. They create nothing then.

Options default to: --groups 4 --batches 1000 --max-batch 16 --max-bytes 1024
--segment-bytes 67108864 (verify/dump) or 65536 (stress).

EXIT STATUS: 0 ok, 1 usage, 2 corruption, 3 other storage error, 4 in use by a running
server, 5 not a ringraft log (stress: a server's log), 86 failed fdatasync";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv.iter().any(|a| a == "--help" || a == "-h" || a == "help") {
        println!("{HELP}");
        return if argv.is_empty() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
    }
    let (cmd, rest) = (argv[0].as_str(), &argv[1..]);
    let allowed: &[&str] = match cmd {
        "verify" => &["dir", "segment-bytes"],
        "dump" => &["dir", "group", "from", "count", "segment-bytes"],
        "repair" => &["dir", "segment-bytes"],
        "stress" => &["dir", "seed", "groups", "batches", "max-batch", "max-bytes", "segment-bytes"],
        other => return usage(&format!("unknown command '{other}'")),
    };
    let args = match Args::parse(rest, allowed) {
        Ok(a) => a,
        Err(why) => return usage(&why),
    };
    let result = match cmd {
        "verify" => verify(&args),
        "dump" => dump(&args),
        "repair" => repair(&args),
        _ => stress(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(why)) => usage(&why),
        Err(Failure::Refused(code, why)) => {
            eprintln!("ringraft-logtool {cmd}: {why}");
            ExitCode::from(code)
        }
        Err(Failure::Storage(e)) => {
            eprintln!("ringraft-logtool {cmd}: {e}");
            ExitCode::from(exit_code_of(&e))
        }
        Err(Failure::Output(e)) => {
            eprintln!("ringraft-logtool {cmd}: cannot write output: {e}");
            ExitCode::from(EXIT_STORAGE)
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("ringraft-logtool: {why}\nrun `ringraft-logtool --help` for usage");
    ExitCode::from(EXIT_USAGE)
}

fn exit_code_of(e: &StorageError) -> u8 {
    match e {
        StorageError::Corrupt { .. } | StorageError::NotOurs { .. } | StorageError::VersionUnsupported { .. } => {
            EXIT_CORRUPT
        }
        _ => EXIT_STORAGE,
    }
}

/// Why a command stopped.
enum Failure {
    Usage(String),
    /// The directory is not the tool's to touch (exit code, why).
    Refused(u8, String),
    Storage(StorageError),
    Output(std::io::Error),
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Failure {
        Failure::Storage(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Output(e)
    }
}

/// `--key value` pairs, each key at most once.
struct Args {
    values: BTreeMap<String, String>,
}

impl Args {
    fn parse(argv: &[String], allowed: &[&str]) -> Result<Args, String> {
        let mut values = BTreeMap::new();
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            let Some(key) = flag.strip_prefix("--") else {
                return Err(format!("unexpected argument '{flag}' (options look like --name value)"));
            };
            if !allowed.contains(&key) {
                return Err(format!("unknown option '--{key}' for this command"));
            }
            let Some(value) = it.next() else { return Err(format!("--{key} needs a value")) };
            if values.insert(key.to_string(), value.clone()).is_some() {
                return Err(format!("--{key} given twice"));
            }
        }
        Ok(Args { values })
    }

    fn dir(&self) -> Result<PathBuf, Failure> {
        self.values.get("dir").map(PathBuf::from).ok_or_else(|| Failure::Usage("--dir is required".into()))
    }

    /// The log `--dir` names (the log directory, or a data directory
    /// holding `raft/log`), locked against servers for as long as the
    /// returned guard lives.
    fn existing_log(&self) -> Result<(PathBuf, LockGuard), Failure> {
        let dir = canonical(&self.dir()?)?;
        let log = find_log(&dir)?;
        let guard = LockGuard::take(&log)?;
        Ok((log, guard))
    }

    fn u64_or(&self, key: &str, default: Option<u64>) -> Result<u64, Failure> {
        match self.values.get(key) {
            Some(v) => v.parse().map_err(|_| Failure::Usage(format!("--{key} expects an unsigned integer, got '{v}'"))),
            None => default.ok_or_else(|| Failure::Usage(format!("--{key} is required"))),
        }
    }

    fn engine_config(&self, default_segment_bytes: u64) -> Result<EngineConfig, Failure> {
        let segment_bytes = self.u64_or("segment-bytes", Some(default_segment_bytes))?;
        if segment_bytes < 4096 {
            return Err(Failure::Usage(format!("--segment-bytes {segment_bytes} is below the minimum of 4096")));
        }
        Ok(EngineConfig { segment_bytes, ..EngineConfig::default() })
    }
}

/// Reads `group`'s entries `lo..=hi` in chunks, calling `visit` on each.
fn for_each_entry(
    log: &mut LogEngine,
    group: GroupId,
    lo: LogIndex,
    hi: LogIndex,
    mut visit: impl FnMut(&Entry) -> Result<(), Failure>,
) -> Result<u64, Failure> {
    let mut next = lo;
    let mut n = 0;
    while next <= hi {
        let chunk = log.entries(group, next, hi, 4096, 16 << 20)?;
        let Some(last) = chunk.last() else { break };
        next = last.index.next();
        for e in &chunk {
            visit(e)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Whether `dir` holds at least one file named like a segment.
fn has_segments(dir: &Path) -> bool {
    segment_files(dir) > 0
}

/// The log directory `dir` names: itself when it holds segments, else
/// `dir/raft/log` (a data directory) or `dir/log` (a node's directory).
/// Refuses anything else, creating nothing.
fn find_log(dir: &Path) -> Result<PathBuf, Failure> {
    if !dir.is_dir() {
        let why = format!("{} is not a directory: no ringraft log to open", dir.display());
        return Err(Failure::Refused(EXIT_NOT_A_LOG, why));
    }
    for candidate in [dir.to_path_buf(), dir.join("raft").join("log"), dir.join("log")] {
        if has_segments(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Failure::Refused(
        EXIT_NOT_A_LOG,
        format!(
            "{} holds no ringraft log segment (*.seg); give a node's log directory (DATA/raft/log) or its data \
             directory (DATA)",
            dir.display()
        ),
    ))
}

/// The `LOCK` files a server of this log (a canonical path) would hold,
/// in the order a server takes them: for a service node the data
/// directory's (two up, beside `IDENTITY`), then the node's directory's
/// (the log's parent). Only existing files: the tool creates none.
fn lock_files(log: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(node_dir) = log.parent() {
        if node_dir.file_name().is_some_and(|n| n == "raft") {
            if let Some(data) = node_dir.parent() {
                out.push(data.join("LOCK"));
            }
        }
        out.push(node_dir.join("LOCK"));
    }
    out.retain(|p| p.is_file());
    out
}

/// The data directory locks, held while a verb works so that no server
/// starts on the log under the tool (a server that tries is refused with
/// "in use", as two servers are).
struct LockGuard {
    _held: Vec<File>,
}

impl LockGuard {
    fn take(log: &Path) -> Result<LockGuard, Failure> {
        let mut held = Vec::new();
        for path in lock_files(log) {
            // Read-only: flock needs no write access, and the tool must not
            // create or modify the file.
            let file = File::open(&path).map_err(|e| {
                Failure::Storage(StorageError::Io { op: "open lock file", path: path.clone(), source: e })
            })?;
            match file.try_lock() {
                Ok(()) => held.push(file),
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Failure::Refused(
                        EXIT_IN_USE,
                        format!(
                            "the log {} is in use: another process (a running server, or another ringraft-logtool) \
                             holds {}; stop that server first (or inspect a copy)",
                            log.display(),
                            path.display()
                        ),
                    ))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Failure::Storage(StorageError::Io { op: "lock", path, source: e }))
                }
            }
        }
        Ok(LockGuard { _held: held })
    }
}

fn verify(args: &Args) -> Result<(), Failure> {
    let (dir, _lock) = args.existing_log()?;
    let cfg = args.engine_config(EngineConfig::default().segment_bytes)?;
    let mut log = LogEngine::open_read_only(&dir, cfg)?;
    summarise(&dir, &mut log)
}

fn repair(args: &Args) -> Result<(), Failure> {
    let (dir, _lock) = args.existing_log()?;
    let cfg = args.engine_config(EngineConfig::default().segment_bytes)?;
    let mut log = LogEngine::open(&dir, cfg)?;
    if log.recovery_notes().is_empty() {
        println!("nothing to repair: the log's tail is clean");
    }
    summarise(&dir, &mut log)
}

/// Prints what recovery found, then every group's range, reading each
/// entry back with its checksum verified.
fn summarise(dir: &Path, log: &mut LogEngine) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let segments = segment_files(dir);
    writeln!(out, "log {}: {} segment files, {} groups", dir.display(), segments, log.groups().len())?;
    for note in log.recovery_notes() {
        let tag = if note.repaired { "repaired" } else { "note" };
        writeln!(out, "{tag}: {note}")?;
    }
    let mut total = 0;
    for g in log.groups() {
        let (first, last) = (log.first_index(g), log.last_index(g));
        let start_term = log.term_at(g, first.prev()).map(|t| t.to_string()).unwrap_or_else(|| "-".into());
        let n = for_each_entry(log, g, first, last, |_| Ok(()))?;
        let expected = last.0 + 1 - first.0;
        if n != expected {
            return Err(Failure::Storage(StorageError::InvalidRequest(format!(
                "group {g}: read {n} entries of {first}..={last}, expected {expected}"
            ))));
        }
        writeln!(out, "group {g}: first {first} last {last} entries {n} start-term {start_term}")?;
        total += n;
    }
    writeln!(out, "ok: {total} entries, every checksum verified")?;
    Ok(())
}

/// Files named as the engine names segments (20 digits, `.seg`).
fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter(|e| e.file_name().to_str().and_then(parse_segment_file_name).is_some())
                .count()
        })
        .unwrap_or(0)
}

/// `dir` with every symlink, `.` and `..` resolved, so that the locks
/// beside it are found however the path was typed (`--dir .` inside a
/// node's log directory, a symlink to it). A directory that does not exist
/// is returned as given (nothing to lock; the verbs refuse or create it).
fn canonical(dir: &Path) -> Result<PathBuf, Failure> {
    match std::fs::canonicalize(dir) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(dir.to_path_buf()),
        Err(e) => Err(Failure::Storage(StorageError::Io { op: "resolve path", path: dir.to_path_buf(), source: e })),
    }
}

fn dump(args: &Args) -> Result<(), Failure> {
    let (dir, _lock) = args.existing_log()?;
    let cfg = args.engine_config(EngineConfig::default().segment_bytes)?;
    let mut log = LogEngine::open_read_only(&dir, cfg)?;
    for note in log.recovery_notes() {
        eprintln!("note: {note}");
    }
    let groups = match args.values.get("group") {
        Some(_) => vec![GroupId(args.u64_or("group", None)?)],
        None => log.groups(),
    };
    let count = args.u64_or("count", Some(u64::MAX))?;
    let mut out = std::io::stdout().lock();
    for g in groups {
        let first = log.first_index(g);
        let from = LogIndex(args.u64_or("from", Some(first.0))?.max(first.0));
        let last = log.last_index(g);
        let hi = LogIndex(last.0.min(from.0.saturating_add(count.saturating_sub(1))));
        if count == 0 || from > hi {
            writeln!(out, "group {g}: nothing in range (log holds {first}..={last})")?;
            continue;
        }
        for_each_entry(&mut log, g, from, hi, |e| {
            let (kind, bytes) = payload_bytes(&e.payload);
            writeln!(
                out,
                "group {g} index {} term {} kind {kind} len {} crc32c {:08x}",
                e.index,
                e.term,
                bytes.len(),
                crc32c::crc32c(&bytes)
            )?;
            Ok(())
        })?;
    }
    Ok(())
}

/// The kind name and the bytes a record of this payload stores.
fn payload_bytes(p: &Payload) -> (&'static str, Bytes) {
    match p {
        Payload::Normal(b) => ("normal", b.clone()),
        Payload::Noop => ("noop", Bytes::new()),
        Payload::Config(m) => ("config", encode_membership(m)),
    }
}

// --- stress -----------------------------------------------------------------

/// splitmix64's finaliser: the hash every derived value comes from.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The payload of entry (group, index, term) in a run with `seed` (see the
/// module docs; `tests/storage_common` recomputes it independently).
fn derived_payload(seed: u64, group: u64, index: u64, term: u64, max_bytes: u64) -> Payload {
    let h = mix(seed ^ mix(group ^ mix(index ^ mix(term))));
    match h % 32 {
        0 => Payload::Noop,
        1 => {
            let mut m = Membership::new((1..=1 + (h >> 8) % 5).map(NodeId));
            if (h >> 12) & 1 == 1 {
                m.learners.insert(NodeId(100 + (h >> 16) % 7));
            }
            Payload::Config(m)
        }
        _ => {
            let len = (mix(h ^ 1) % (max_bytes + 1)) as usize;
            let mut out = Vec::with_capacity(len + 8);
            let mut s = h;
            while out.len() < len {
                s = mix(s);
                out.extend_from_slice(&s.to_le_bytes());
            }
            out.truncate(len);
            Payload::Normal(Bytes::from(out))
        }
    }
}

/// The stress tool's view of one group.
#[derive(Clone, Copy, Debug, Default)]
struct GroupView {
    known: bool,
    offset: u64,
    last: u64,
    term: u64,
}

/// One operation of a batch, before it becomes a `LogOp`.
#[derive(Clone, Copy, Debug)]
enum Op {
    Append { group: u64, first: u64, count: u64, term: u64, truncates: bool },
    Purge { group: u64, index: u64 },
    Reset { group: u64, index: u64, term: u64 },
}

struct StressOpts {
    seed: u64,
    groups: u64,
    batches: u64,
    max_batch: u64,
    max_bytes: u64,
}

/// `stress` writes random entries: only into a new, empty or earlier
/// stress directory, never a server's.
fn scratch_log(dir: &Path) -> Result<LockGuard, Failure> {
    let dir = &canonical(dir)?;
    // A server's log has a LOCK beside it (a node's directory) or two up
    // (a service data directory); a scratch log has none.
    let in_server_dir = !lock_files(dir).is_empty()
        || dir.parent().and_then(Path::parent).is_some_and(|data| data.join("IDENTITY").exists());
    if in_server_dir {
        let why =
            format!("{} is a server's log; stress writes random entries and runs on scratch logs only", dir.display());
        return Err(Failure::Refused(EXIT_NOT_A_LOG, why));
    }
    if dir.is_dir() && !has_segments(dir) && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        let why =
            format!("{} holds files but no ringraft segment; stress needs an empty or new directory", dir.display());
        return Err(Failure::Refused(EXIT_NOT_A_LOG, why));
    }
    LockGuard::take(dir)
}

fn stress(args: &Args) -> Result<(), Failure> {
    let dir = args.dir()?;
    let _lock = scratch_log(&dir)?;
    let opts = StressOpts {
        seed: args.u64_or("seed", None)?,
        groups: args.u64_or("groups", Some(4))?.max(1),
        batches: args.u64_or("batches", Some(1000))?,
        max_batch: args.u64_or("max-batch", Some(16))?.max(1),
        max_bytes: args.u64_or("max-bytes", Some(1024))?,
    };
    let cfg = args.engine_config(64 << 10)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "start seed {} groups {} batches {} max-batch {} max-bytes {} segment-bytes {}",
        opts.seed, opts.groups, opts.batches, opts.max_batch, opts.max_bytes, cfg.segment_bytes
    )?;
    out.flush()?;
    let mut log = LogEngine::open(&dir, cfg)?;
    let mut view: BTreeMap<u64, GroupView> = BTreeMap::new();
    for g in log.groups() {
        let (offset, last) = (log.first_index(g).prev().0, log.last_index(g).0);
        let term = [log.term_at(g, LogIndex(last)), log.term_at(g, LogIndex(offset))]
            .into_iter()
            .flatten()
            .map(|t| t.0)
            .max()
            .unwrap_or(0)
            .max(1);
        view.insert(g.0, GroupView { known: true, offset, last, term });
        writeln!(out, "state {g} {offset} {last} {term}")?;
    }
    writeln!(out, "opened {}", view.len())?;
    out.flush()?;
    let mut rng = opts.seed ^ 0x5EED_5EED_5EED_5EED;
    let mut entries = 0u64;
    for b in 0..opts.batches {
        let ops = gen_batch(&mut rng, &mut view, &opts);
        writeln!(out, "batch {b}")?;
        for op in &ops {
            match *op {
                Op::Append { group, first, count, term, .. } => {
                    writeln!(out, "op append {group} {first} {count} {term}")?
                }
                Op::Purge { group, index } => writeln!(out, "op purge {group} {index}")?,
                Op::Reset { group, index, term } => writeln!(out, "op reset {group} {index} {term}")?,
            }
        }
        writeln!(out, "write {b}")?;
        out.flush()?;
        let log_ops: Vec<(GroupId, LogOp)> = ops.iter().map(|op| to_log_op(op, &opts)).collect();
        if let Err(e) = log.write(&log_ops) {
            writeln!(out, "error {b} {e}")?;
            out.flush()?;
            return Err(Failure::Storage(e));
        }
        for (op, (_, log_op)) in ops.iter().zip(&log_ops) {
            match (*op, log_op) {
                (Op::Append { group, first, truncates, .. }, LogOp::Append(es)) => {
                    if truncates {
                        writeln!(out, "truncated {group} {first}")?;
                    }
                    for e in es {
                        let crc = crc32c::crc32c(&payload_bytes(&e.payload).1);
                        writeln!(out, "ok {group} {} {} {crc:08x}", e.index, e.term)?;
                        entries += 1;
                    }
                }
                (Op::Purge { group, index }, _) => writeln!(out, "purged {group} {index}")?,
                (Op::Reset { group, index, term }, _) => writeln!(out, "reset {group} {index} {term}")?,
                (Op::Append { .. }, _) => unreachable!("appends map to LogOp::Append"),
            }
        }
        writeln!(out, "acked {b}")?;
        out.flush()?;
    }
    writeln!(out, "done batches {} entries {entries} fsyncs {}", opts.batches, log.stats().fsyncs)?;
    out.flush()?;
    Ok(())
}

fn to_log_op(op: &Op, opts: &StressOpts) -> (GroupId, LogOp) {
    match *op {
        Op::Append { group, first, count, term, .. } => {
            let es = (first..first + count)
                .map(|i| Entry {
                    term: Term(term),
                    index: LogIndex(i),
                    payload: derived_payload(opts.seed, group, i, term, opts.max_bytes),
                })
                .collect();
            (GroupId(group), LogOp::Append(es))
        }
        Op::Purge { group, index } => (GroupId(group), LogOp::Purge(LogIndex(index))),
        Op::Reset { group, index, term } => (
            GroupId(group),
            LogOp::Reset(SnapshotMeta {
                last_index: LogIndex(index),
                last_term: Term(term),
                membership: Membership::new([NodeId(1)]),
            }),
        ),
    }
}

fn next_rand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(1);
    mix(*state)
}

/// A batch of 1..=3 ops on random groups: mostly appends, sometimes a
/// truncating append with a new term, a purge or a reset. `view` is moved
/// to the state the batch leaves.
fn gen_batch(rng: &mut u64, view: &mut BTreeMap<u64, GroupView>, opts: &StressOpts) -> Vec<Op> {
    let n_ops = 1 + next_rand(rng) % 3;
    let per_op = (opts.max_batch / n_ops).max(1);
    let mut ops = Vec::new();
    for _ in 0..n_ops {
        let group = 1 + next_rand(rng) % opts.groups;
        let v = view.entry(group).or_default();
        let roll = next_rand(rng) % 100;
        if !v.known || roll < 86 {
            let count = 1 + next_rand(rng) % per_op;
            let truncates = v.known && v.last > v.offset && next_rand(rng) % 100 < 8;
            let (first, term) = if truncates {
                (v.offset + 1 + next_rand(rng) % (v.last - v.offset), v.term + 1)
            } else if v.known {
                (v.last + 1, if next_rand(rng) % 100 < 3 { v.term + 1 } else { v.term.max(1) })
            } else {
                (1, 1)
            };
            if !v.known {
                v.offset = first - 1;
            }
            *v = GroupView { known: true, offset: v.offset, last: first + count - 1, term };
            ops.push(Op::Append { group, first, count, term, truncates });
        } else if roll < 97 {
            // Up to a few past the end: the engine clamps a purge to the last index.
            let index = v.offset + next_rand(rng) % (v.last - v.offset + 8);
            v.offset = v.offset.max(index.min(v.last));
            ops.push(Op::Purge { group, index });
        } else {
            let index = v.last + next_rand(rng) % 20;
            let term = v.term + 1;
            *v = GroupView { known: true, offset: index, last: index, term };
            ops.push(Op::Reset { group, index, term });
        }
    }
    ops
}
