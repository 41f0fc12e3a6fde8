//! The demo's check: read the whole `demo` stream from each node on its own
//! (follower reads served by that node), then prove that every
//! acknowledged append sits at its acknowledged offset with the right bytes
//! on every node, that no record appears twice, that nothing unwritten
//! appears, and that all nodes hold the same stream.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::procs::POLL;
use super::workload::{header, payload, WriterLog, STREAM};
use super::DemoError;
use ringraft_client::{Client, ClientConfig, ClientError, ReadConsistency};

/// Records per read request.
const READ_RECORDS_MAX: u32 = 8_192;
/// Bytes per read request (soft cap).
const READ_BYTES_MAX: u32 = 2 << 20;

/// What the check found.
pub(super) struct Verified {
    /// Records in the stream (the same on every node).
    pub records: u64,
    /// Unknown-outcome appends that did land in the stream.
    pub unknown_applied: u64,
}

/// Reads `addr`'s copy of the stream from offset 0 until it holds at least
/// `want` records and the node has no more, polling up to `deadline`.
fn read_node(cfg: &ClientConfig, addr: &str, want: u64, deadline: Instant) -> Result<Vec<Bytes>, DemoError> {
    let mut cfg = cfg.clone();
    cfg.servers = vec![addr.to_string()];
    let fail = |what: String| DemoError::Verify(format!("reading node {addr}: {what}"));
    let mut client = loop {
        match Client::connect(cfg.clone()) {
            Ok(c) => break c,
            Err(e) if Instant::now() >= deadline => return Err(fail(e.to_string())),
            Err(_) => std::thread::sleep(POLL * 5),
        }
    };
    let mut got: Vec<Bytes> = Vec::new();
    loop {
        let at = got.len() as u64;
        let r = client.read(STREAM, at, READ_RECORDS_MAX, READ_BYTES_MAX, ReadConsistency::Follower);
        let more = match r {
            Ok(r) if r.first_offset != at => {
                return Err(fail(format!("asked for offset {at}, got {}", r.first_offset)))
            }
            Ok(r) => {
                let n = r.records.len();
                got.extend(r.records);
                n > 0
            }
            // A restarted node may not know the stream yet, or be busy
            // catching up: look again until the deadline.
            Err(e) if retryable_read(&e) => false,
            Err(e) => return Err(fail(e.to_string())),
        };
        if more {
            continue;
        }
        if got.len() as u64 >= want {
            return Ok(got);
        }
        if Instant::now() >= deadline {
            return Err(fail(format!("only {} of {want} records within the deadline", got.len())));
        }
        std::thread::sleep(POLL * 2);
    }
}

fn retryable_read(e: &ClientError) -> bool {
    e.is_retryable() || matches!(e, ClientError::UnknownStream(_) | ClientError::OutOfRange { .. })
}

/// Reads every node's copy (each at least `want` records, and as long as
/// the longest copy) within `within`.
pub(super) fn read_all(
    cfg: &ClientConfig,
    addrs: &[String],
    want: u64,
    within: Duration,
) -> Result<Vec<Vec<Bytes>>, DemoError> {
    let deadline = Instant::now() + within;
    let mut copies = Vec::with_capacity(addrs.len());
    for a in addrs {
        copies.push(read_node(cfg, a, want, deadline)?);
    }
    // An append whose outcome was unknown may have committed after a node
    // was read: read the shorter copies again up to the longest.
    let longest = copies.iter().map(Vec::len).max().unwrap_or(0) as u64;
    for (a, copy) in addrs.iter().zip(copies.iter_mut()) {
        if (copy.len() as u64) < longest {
            *copy = read_node(cfg, a, longest, deadline)?;
        }
    }
    Ok(copies)
}

/// Checks the copies against what the writers logged.
///
/// # Errors
/// `Verify` with the first problem found.
pub(super) fn check(copies: &[Vec<Bytes>], logs: &[WriterLog], size: usize) -> Result<Verified, DemoError> {
    let bad = |m: String| Err(DemoError::Verify(m));
    let Some(first) = copies.first() else { return bad("no copies to check".into()) };
    for (n, copy) in copies.iter().enumerate().skip(1) {
        if copy.len() != first.len() {
            return bad(format!("node {} holds {} records, node 1 holds {}", n + 1, copy.len(), first.len()));
        }
        if let Some(at) = (0..copy.len()).find(|&i| copy[i] != first[i]) {
            return bad(format!("node {} and node 1 differ at offset {at}", n + 1));
        }
    }
    for (n, copy) in copies.iter().enumerate() {
        for log in logs {
            for &(offset, seq) in &log.acked {
                let want = payload(log.client, seq, size);
                match copy.get(offset as usize) {
                    Some(r) if *r == want => {}
                    Some(r) => {
                        let found = header(r).map_or("a malformed record".into(), |(c, s)| format!("({c}, {s})"));
                        return bad(format!(
                            "acknowledged append (client {}, seq {seq}) at offset {offset} is missing on node {}: \
                             that offset holds {found}",
                            log.client,
                            n + 1
                        ));
                    }
                    None => {
                        return bad(format!(
                            "acknowledged offset {offset} is beyond node {}'s {} records",
                            n + 1,
                            copy.len()
                        ))
                    }
                }
            }
        }
    }
    let unknown_applied = check_unique(first, logs, size)?;
    Ok(Verified { records: first.len() as u64, unknown_applied })
}

/// Every record is one the writers sent, intact, and appears once; returns
/// how many unknown-outcome appends are among them.
fn check_unique(stream: &[Bytes], logs: &[WriterLog], size: usize) -> Result<u64, DemoError> {
    let unknown: HashSet<(u64, u64)> = logs.iter().flat_map(|l| l.unknown.iter().map(|&s| (l.client, s))).collect();
    let acked: HashSet<(u64, u64)> = logs.iter().flat_map(|l| l.acked.iter().map(|&(_, s)| (l.client, s))).collect();
    let mut seen: HashMap<(u64, u64), usize> = HashMap::with_capacity(stream.len());
    let mut unknown_applied = 0;
    for (offset, r) in stream.iter().enumerate() {
        let Some(key) = header(r).filter(|&(c, s)| *r == payload(c, s, size)) else {
            return Err(DemoError::Verify(format!("offset {offset} holds a record the demo never wrote")));
        };
        if let Some(before) = seen.insert(key, offset) {
            return Err(DemoError::Verify(format!(
                "(client {}, seq {}) is stored twice: at offsets {before} and {offset}",
                key.0, key.1
            )));
        }
        if unknown.contains(&key) {
            unknown_applied += 1;
        } else if !acked.contains(&key) {
            return Err(DemoError::Verify(format!(
                "offset {offset} holds (client {}, seq {}), which was never submitted",
                key.0, key.1
            )));
        }
    }
    Ok(unknown_applied)
}
