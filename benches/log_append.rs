//! Append throughput of the log engine beside its physical reference.
//!
//! For each record size (128 B, 1 KiB, 64 KiB) and batch (1, 16, 256
//! records per `LogEngine::write`, one group), the same number of bytes per
//! batch is also appended to a plain file with `pwrite` + `fdatasync` on the
//! same filesystem ("raw"). The two run in the same process, one batch each
//! in turn (log, raw, raw, log, ...), so that drift and bursts of load on a
//! shared machine hit both alike. Only the write calls are timed. Each cell
//! prints records/s, MB/s (bytes on disk: records with their headers and
//! padding, the same bytes raw writes), fsyncs/s, p50/p99 of one write, the
//! CPU time of one write, and the log/raw ratios.
//!
//! Targets: at batch 256 the log reaches >= 80 % of raw bytes/s; at batch 1
//! its fsyncs/s are within 15 % of raw.
//!
//! Run: `cargo bench --bench log_append`. Knobs: `LOG_APPEND_SECS` (seconds
//! per cell, default 2), `LOG_APPEND_SIZES` and `LOG_APPEND_BATCHES`
//! (comma-separated lists, e.g. `65536` and `1,256`),
//! `LOG_APPEND_SEGMENT_MB` and `LOG_APPEND_CACHE_KB` (the log's segment
//! size and hot-tail cache per group, default the engine's),
//! `LOG_APPEND_DIR` (where the temp directory goes, default the target
//! directory; `/dev/shm` shows the CPU cost alone). The log's segments and
//! the raw file live in that temp directory, removed at the end.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringraft::core::{Entry, GroupId, LogIndex, LogOp, Payload, Term};
use ringraft::storage::record::Record;
use ringraft::storage::{EngineConfig, LogEngine};

const SIZES: [usize; 3] = [128, 1024, 64 << 10];
const BATCHES: [usize; 3] = [1, 16, 256];
/// The raw file is cut back to empty when it reaches this size, like the
/// log moving to a new segment (the log's default segment size).
const RAW_FILE_BYTES_MAX: u64 = 64 << 20;
const G: GroupId = GroupId(1);

/// What one side did in a cell. Only the `write` calls are timed.
#[derive(Default)]
struct Side {
    records: u64,
    bytes: u64,
    fsyncs: u64,
    elapsed: Duration,
    write_us: Vec<u32>,
    cpu: Duration,
}

impl Side {
    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_us(&mut self, p: usize) -> u32 {
        self.write_us.sort_unstable();
        self.write_us.get(self.write_us.len() * p / 100).copied().unwrap_or(0)
    }

    fn cpu_us_per_write(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.write_us.len().max(1) as f64
    }

    fn record(&mut self, took: Duration, cpu: Duration, records: u64, bytes: u64, fsyncs: u64) {
        self.elapsed += took;
        self.cpu += cpu;
        self.write_us.push(took.as_micros() as u32);
        self.records += records;
        self.bytes += bytes;
        self.fsyncs += fsyncs;
    }
}

/// CPU time of the calling thread (user + system).
#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The log under test: appends `batch` entries of `size` bytes per write.
struct LogSide {
    log: LogEngine,
    payload: Bytes,
    next: u64,
    disk_bytes_per_record: u64,
    bytes_since_purge: u64,
}

impl LogSide {
    fn open(dir: &Path, size: usize) -> LogSide {
        let segment_bytes =
            std::env::var("LOG_APPEND_SEGMENT_MB").ok().and_then(|s| s.parse::<u64>().ok()).map(|mb| mb << 20);
        let cache_bytes =
            std::env::var("LOG_APPEND_CACHE_KB").ok().and_then(|s| s.parse::<usize>().ok()).map(|kb| kb << 10);
        let cfg = EngineConfig {
            segment_bytes: segment_bytes.unwrap_or(EngineConfig::default().segment_bytes),
            cache_bytes_per_group: cache_bytes.unwrap_or(EngineConfig::default().cache_bytes_per_group),
            ..EngineConfig::default()
        };
        let log = LogEngine::open(dir, cfg).expect("open log");
        let payload = Bytes::from((0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
        let probe = Entry { term: Term(1), index: LogIndex(1), payload: Payload::Normal(payload.clone()) };
        let disk_bytes_per_record = Record::from_entry(G, &probe).disk_bytes() as u64;
        LogSide { log, payload, next: 1, disk_bytes_per_record, bytes_since_purge: 0 }
    }

    fn write_one(&mut self, batch: usize, side: &mut Side) {
        let entries: Vec<Entry> = (0..batch as u64)
            .map(|i| Entry {
                term: Term(1),
                index: LogIndex(self.next + i),
                payload: Payload::Normal(self.payload.clone()),
            })
            .collect();
        let ops = [(G, LogOp::Append(entries))];
        let fsyncs = self.log.stats().fsyncs;
        let (t, cpu) = (Instant::now(), thread_cpu());
        self.log.write(&ops).expect("log write");
        let (took, cpu) = (t.elapsed(), thread_cpu() - cpu);
        // The caller's own entries are dropped outside the timed part.
        drop(ops);
        self.next += batch as u64;
        let bytes = batch as u64 * self.disk_bytes_per_record;
        side.record(took, cpu, batch as u64, bytes, self.log.stats().fsyncs - fsyncs);
        self.bytes_since_purge += bytes;
        if self.bytes_since_purge > 4 * RAW_FILE_BYTES_MAX {
            // Untimed: let the log drop what it no longer needs, so the disk
            // holds a few segments, not gigabytes.
            self.log.write(&[(G, LogOp::Purge(LogIndex(self.next - 1)))]).expect("log purge");
            self.bytes_since_purge = 0;
        }
    }
}

/// The reference: the same bytes per batch appended to a plain file.
struct RawSide {
    file: File,
    buf: Vec<u8>,
    len: u64,
}

impl RawSide {
    fn open(path: &Path, batch_bytes: usize) -> RawSide {
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(path).expect("create raw file");
        let buf = (0..batch_bytes).map(|i| (i * 17 % 253) as u8).collect();
        RawSide { file, buf, len: 0 }
    }

    fn write_one(&mut self, records_per_batch: usize, side: &mut Side) {
        if self.len + self.buf.len() as u64 > RAW_FILE_BYTES_MAX {
            // Untimed, like the log's segment deletion.
            self.file.set_len(0).expect("cut raw file");
            self.len = 0;
        }
        let (t, cpu) = (Instant::now(), thread_cpu());
        self.file.write_all_at(&self.buf, self.len).expect("raw write");
        self.file.sync_data().expect("raw fdatasync");
        let (took, cpu) = (t.elapsed(), thread_cpu() - cpu);
        self.len += self.buf.len() as u64;
        side.record(took, cpu, records_per_batch as u64, self.buf.len() as u64, 1);
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Cell {
    size: usize,
    batch: usize,
    log: Side,
    raw: Side,
}

/// Runs one cell for about `secs` seconds: one batch of each side in turn
/// (log, raw, raw, log, ...), so both see the same moments of the machine.
fn run_cell(root: &Path, size: usize, batch: usize, secs: f64) -> Cell {
    let dir = TempDir(root.join(format!("cell-{size}-{batch}")));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).expect("create cell dir");
    let mut log = LogSide::open(&dir.0.join("log"), size);
    let mut raw = RawSide::open(&dir.0.join("raw.dat"), batch * log.disk_bytes_per_record as usize);
    let (mut log_side, mut raw_side) = (Side::default(), Side::default());
    // Warm up both (first allocation, page faults), untimed.
    log.write_one(batch, &mut Side::default());
    raw.write_one(batch, &mut Side::default());
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut round = 0u64;
    while Instant::now() < deadline || round < 8 {
        if round.is_multiple_of(2) {
            log.write_one(batch, &mut log_side);
            raw.write_one(batch, &mut raw_side);
        } else {
            raw.write_one(batch, &mut raw_side);
            log.write_one(batch, &mut log_side);
        }
        round += 1;
    }
    Cell { size, batch, log: log_side, raw: raw_side }
}

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// A comma-separated list from the environment, or the default.
fn knob(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => {
            v.split(',').map(|x| x.trim().parse().unwrap_or_else(|_| panic!("{name}: bad number {x:?}"))).collect()
        }
        Err(_) => default.to_vec(),
    }
}

fn main() {
    let secs: f64 = std::env::var("LOG_APPEND_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let base = std::env::var("LOG_APPEND_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    let root = TempDir(PathBuf::from(base).join(format!("log-append-{}", std::process::id())));
    println!("log_append: LogEngine::write (one group) vs raw write+fdatasync of the same bytes, {secs} s per cell");
    println!("temp dir: {}\n", root.0.display());
    println!(
        "| record | batch | log rec/s | raw rec/s | log MB/s | raw MB/s | log fsync/s | raw fsync/s \
         | log p50/p99 µs | raw p50/p99 µs | log/raw CPU µs | log/raw bytes/s | log/raw fsyncs/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut cells = Vec::new();
    for size in knob("LOG_APPEND_SIZES", &SIZES) {
        for batch in knob("LOG_APPEND_BATCHES", &BATCHES) {
            let mut c = run_cell(&root.0, size, batch, secs);
            let mb = |s: &Side| s.per_sec(s.bytes) / 1e6;
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {}/{} | {}/{} | {:.0}/{:.0} | {:.0} % | {:.0} % |",
                size_name(size),
                batch,
                c.log.per_sec(c.log.records),
                c.raw.per_sec(c.raw.records),
                mb(&c.log),
                mb(&c.raw),
                c.log.per_sec(c.log.fsyncs),
                c.raw.per_sec(c.raw.fsyncs),
                c.log.percentile_us(50),
                c.log.percentile_us(99),
                c.raw.percentile_us(50),
                c.raw.percentile_us(99),
                c.log.cpu_us_per_write(),
                c.raw.cpu_us_per_write(),
                100.0 * mb(&c.log) / mb(&c.raw),
                100.0 * c.log.per_sec(c.log.fsyncs) / c.raw.per_sec(c.raw.fsyncs),
            );
            cells.push(c);
        }
    }
    println!();
    for c in &cells {
        let bytes = c.log.per_sec(c.log.bytes) / c.raw.per_sec(c.raw.bytes);
        let fsyncs = c.log.per_sec(c.log.fsyncs) / c.raw.per_sec(c.raw.fsyncs);
        if c.batch == 256 {
            let verdict = if bytes >= 0.80 { "met" } else { "MISSED" };
            println!(
                "target {} x 256: log bytes/s >= 80 % of raw: {:.0} % {verdict}",
                size_name(c.size),
                100.0 * bytes
            );
        }
        if c.batch == 1 {
            let verdict = if fsyncs >= 0.85 { "met" } else { "MISSED" };
            println!(
                "target {} x 1: log fsyncs/s within 15 % of raw: {:.0} % {verdict}",
                size_name(c.size),
                100.0 * fsyncs
            );
        }
    }
}
