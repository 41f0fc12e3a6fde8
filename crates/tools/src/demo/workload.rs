//! The demo's writers: one thread per client, each with its own [`Client`]
//! and [`Pipeline`](ringraft_client::Pipeline) keeping a window of one-record
//! appends in flight. Every record starts with `(client id, sequence)` so it
//! is unique and checkable; each thread records where its acknowledged
//! appends landed and which ones ended with an unknown outcome.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;

use super::DemoError;
use ringraft_client::{Client, ClientConfig, ClientError, Ticket};

/// The stream the demo writes.
pub(super) const STREAM: &str = "demo";
/// Bytes of the `(client, seq)` header at the start of every record.
pub(super) const HEADER_BYTES: usize = 16;
/// A writer gives up after this many failed appends in a row.
const FAILURES_MAX: u64 = 10_000;

/// The record client `client` writes as its append number `seq`: the header,
/// then filler derived from both (so a wrong byte anywhere is caught).
pub(super) fn payload(client: u64, seq: u64, size: usize) -> Bytes {
    let mut v = Vec::with_capacity(size.max(HEADER_BYTES));
    v.extend_from_slice(&client.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    let salt = client.wrapping_mul(31).wrapping_add(seq.wrapping_mul(7));
    v.extend((HEADER_BYTES..size).map(|j| salt.wrapping_add(j as u64) as u8));
    Bytes::from(v)
}

/// The `(client, seq)` header of a record, if it has one.
pub(super) fn header(record: &[u8]) -> Option<(u64, u64)> {
    let client = u64::from_le_bytes(record.get(..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(record.get(8..HEADER_BYTES)?.try_into().ok()?);
    Some((client, seq))
}

/// What one writer did.
#[derive(Default)]
pub(super) struct WriterLog {
    /// The writer's client id.
    pub client: u64,
    /// `(offset, seq)` of every acknowledged append.
    pub acked: Vec<(u64, u64)>,
    /// Sequences whose append ended without an answer (timeout or another
    /// error): each may or may not be in the stream.
    pub unknown: Vec<u64>,
    /// Errors by kind, for the summary.
    pub errors: HashMap<String, u64>,
}

/// State shared by the writers and the thread watching them.
pub(super) struct Shared {
    /// Appends acknowledged so far, by all writers.
    pub acked: AtomicU64,
    /// Set to make the writers stop early (the demo is failing).
    pub abort: AtomicBool,
}

/// What each writer is asked to do.
#[derive(Clone)]
pub(super) struct WriterSpec {
    pub cfg: ClientConfig,
    /// Acknowledged appends to reach.
    pub count: u64,
    /// Record bytes.
    pub size: usize,
}

/// Starts `clients` writer threads sharing `total` appends between them.
/// Each sends a message on `done` when it ends.
pub(super) fn start(
    spec: &WriterSpec,
    clients: u64,
    total: u64,
    shared: &Arc<Shared>,
    done: &mpsc::Sender<u64>,
) -> Vec<JoinHandle<Result<WriterLog, DemoError>>> {
    (0..clients)
        .map(|c| {
            let mut spec = spec.clone();
            // The first `total % clients` writers take one more.
            spec.count = total / clients + u64::from(c < total % clients);
            let (shared, done) = (shared.clone(), done.clone());
            std::thread::spawn(move || {
                let r = writer(c + 1, &spec, &shared);
                let _ = done.send(c + 1);
                r
            })
        })
        .collect()
}

/// One writer: keeps the pipeline full until `spec.count` appends are
/// acknowledged. A failed append is not re-sent (that could store it twice);
/// its sequence is noted as unknown and the next append is a new one.
fn writer(client: u64, spec: &WriterSpec, shared: &Shared) -> Result<WriterLog, DemoError> {
    let mut log = WriterLog { client, acked: Vec::with_capacity(spec.count as usize), ..WriterLog::default() };
    let window = spec.cfg.max_in_flight.max(1);
    let mut c = Client::connect(spec.cfg.clone()).map_err(|e| DemoError::Client(format!("client {client}: {e}")))?;
    let mut p = c.pipeline();
    let mut tickets: HashMap<Ticket, u64> = HashMap::new();
    let (mut next_seq, mut failures_in_row) = (0u64, 0u64);
    loop {
        if shared.abort.load(Ordering::Relaxed) {
            return Ok(log);
        }
        while (log.acked.len() + p.outstanding()) < spec.count as usize && p.outstanding() < window {
            let t = p.submit(STREAM, vec![payload(client, next_seq, spec.size)]);
            let t = t.map_err(|e| DemoError::Client(format!("client {client}: opening a session: {e}")))?;
            tickets.insert(t, next_seq);
            next_seq += 1;
        }
        let Some((ticket, result)) = p.next_ack() else { return Ok(log) };
        let Some(seq) = tickets.remove(&ticket) else { continue };
        match result {
            Ok(ack) => {
                log.acked.push((ack.first_offset, seq));
                shared.acked.fetch_add(1, Ordering::Relaxed);
                failures_in_row = 0;
            }
            Err(e) => {
                log.unknown.push(seq);
                *log.errors.entry(error_kind(&e)).or_default() += 1;
                failures_in_row += 1;
                if failures_in_row >= FAILURES_MAX {
                    return Err(DemoError::Client(format!(
                        "client {client}: {failures_in_row} appends failed in a row; last: {e}"
                    )));
                }
            }
        }
    }
}

/// A short name for an error's kind (the summary counts them).
fn error_kind(e: &ClientError) -> String {
    let s = format!("{e:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("error").to_string()
}
