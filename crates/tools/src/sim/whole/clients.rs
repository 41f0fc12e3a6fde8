//! Simulated clients of the log service and the checker of what they saw.
//!
//! Clients open a session, then append (several in flight, each a unique
//! record, retried with the same `(session, seq)` when the answer is lost),
//! create, delete and trim streams, and read at every consistency level.
//! The history they record is checked at the end of the seed against what
//! the state machines applied (every entry, with the incarnation of the
//! stream it names before and after) and the replicas' final state:
//! lost, duplicated or invented records, stale or wrong reads, answers to
//! a retried request that disagree, and deletes that removed an
//! incarnation they did not name or removed one twice.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use ringraft::rpc::ErrorCode;
use ringraft_service::command::{Command, Outcome, Stamped};

use super::proc::Applied;

/// The streams clients use.
pub const STREAMS: [&str; 2] = ["a", "b"];

/// Read consistency levels, as the service offers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Read index on the leader.
    Linearizable,
    /// The leader's lease.
    Lease,
    /// Read index through a follower.
    Follower,
}

/// A request a client sends a node.
#[derive(Clone, Debug)]
pub enum Req {
    /// A command to propose (the node stamps it with log time).
    Cmd(Command),
    /// A read of a stream from an offset.
    Read {
        /// The stream.
        stream: String,
        /// First offset.
        from: u64,
        /// Consistency.
        mode: Consistency,
    },
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Applied: the outcome's two numbers.
    Ok(u64, u64),
    /// Applied as a refusal.
    Refused(ErrorCode),
    /// Definitely not in the log (not the leader, refused by the core,
    /// overwritten by a new leader); the leader if known.
    NotProposed(Option<u64>),
    /// May or may not have happened.
    Unknown,
    /// A read's answer: the stream's incarnation and records `from..next`.
    Read {
        /// Incarnation.
        inc: u64,
        /// The first offset returned.
        from: u64,
        /// The end the read saw.
        next: u64,
        /// The records.
        values: Vec<Bytes>,
    },
    /// A read that could not be served (refused, not confirmed).
    ReadFailed,
}

impl Reply {
    /// The reply to a proposal whose entry was applied with `out`.
    pub fn of_outcome(out: &Bytes) -> Reply {
        match Outcome::decode(out) {
            Ok(Outcome::Ok(a, b)) => Reply::Ok(a, b),
            Ok(Outcome::Err(code, _)) => Reply::Refused(code),
            Err(_) => Reply::Refused(ErrorCode::Internal),
        }
    }
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct HOp {
    /// Client.
    pub client: usize,
    /// What was asked.
    pub req: Req,
    /// Session and sequence of a command (0, 0 without).
    pub session: u64,
    /// Sequence.
    pub seq: u64,
    /// When it was first sent, µs.
    pub invoked: u64,
    /// Attempts sent.
    pub attempts: u32,
    /// Answers, with when they arrived.
    pub answers: Vec<(u64, Reply)>,
    /// No more attempts will be made.
    pub done: bool,
}

impl HOp {
    /// The first successful answer and its time.
    pub fn ok(&self) -> Option<(u64, u64, u64)> {
        self.answers.iter().find_map(|(at, r)| match r {
            Reply::Ok(a, b) => Some((*at, *a, *b)),
            _ => None,
        })
    }

    /// The single record an append carries.
    pub fn value(&self) -> Option<(&str, &Bytes)> {
        match &self.req {
            Req::Cmd(Command::Append { stream, records, .. }) if records.len() == 1 => Some((stream, &records[0])),
            _ => None,
        }
    }
}

/// One client.
#[derive(Debug, Default)]
pub struct Client {
    /// Its session (0 until opened).
    pub session: u64,
    /// The history op of the open in flight.
    pub opening: Option<usize>,
    /// The next sequence number.
    pub next_seq: u64,
    /// The node it believes leads.
    pub leader: Option<usize>,
    /// History ops in flight.
    pub inflight: Vec<usize>,
    /// Records appended so far (names the next one).
    pub appended: u64,
    /// Per stream, the incarnation and end it last saw.
    pub seen: BTreeMap<String, (u64, u64)>,
}

/// A stream in a replica's final state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalStream {
    /// Incarnation.
    pub inc: u64,
    /// First offset.
    pub first: u64,
    /// End.
    pub next: u64,
    /// Records `first..next`.
    pub values: Vec<Bytes>,
}

/// The first successful application of a `(session, seq)`: its index, the
/// incarnation of its stream after it, the records it carried, its answer.
type FirstOk = (u64, Option<u64>, Vec<Bytes>, Reply);

/// What the checker reads besides the history.
pub struct Context<'a> {
    /// Every entry as first applied anywhere.
    pub applied: &'a BTreeMap<u64, Applied>,
    /// When each was first applied (simulated µs).
    pub applied_at: &'a BTreeMap<u64, u64>,
    /// The replicas' final streams.
    pub finals: &'a BTreeMap<String, FinalStream>,
    /// When each leadership began (simulated µs).
    pub leaders_at: Vec<u64>,
    /// The session ttl the clients asked for, ms.
    pub session_ttl_ms: u64,
    /// The streams' retention by age, ms (0: none).
    pub retention_age_ms: u64,
    /// The streams' retention by size (0: none).
    pub retention_bytes: u64,
}

impl Context<'_> {
    /// The most log time may advance between two instants `from..to` of
    /// true time (µs): 1 + 1/10 of the time, plus the drift bound for the
    /// leadership in force and every one begun meanwhile
    /// (`service::log_clock`).
    fn log_time_bound_ms(&self, from: u64, to: u64) -> u64 {
        use ringraft_service::log_clock::{LOG_TIME_CATCH_UP_DIVISOR, LOG_TIME_DRIFT_MS};
        let us = to.saturating_sub(from);
        let leaderships = self.leaders_at.iter().filter(|t| **t >= from && **t <= to).count() as u64 + 1;
        (us + us / LOG_TIME_CATCH_UP_DIVISOR) / 1000 + 1 + LOG_TIME_DRIFT_MS * leaderships
    }
}

/// Checks the history against what was applied and the final state; one
/// line per anomaly.
pub fn check(ops: &[HOp], ctx: &Context) -> Vec<String> {
    let (applied, finals) = (ctx.applied, ctx.finals);
    let mut bad = Vec::new();
    // What each (session, seq) did when first applied successfully, and
    // how many incarnations each delete removed.
    let mut first_ok: HashMap<(u64, u64), FirstOk> = HashMap::new();
    let mut removals: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
    for (index, a) in applied {
        let Ok(st) = Stamped::decode(&a.data) else { continue };
        let reply = Reply::of_outcome(&a.out);
        let (session, seq) = match &st.command {
            Command::Append { session, seq, .. }
            | Command::Create { session, seq, .. }
            | Command::Delete { session, seq, .. }
            | Command::Trim { session, seq, .. } => (*session, *seq),
            _ => (0, 0),
        };
        if let Command::Delete { incarnation, stream, .. } = &st.command {
            if let (Some(before), true) = (a.inc_before, a.inc_after != a.inc_before) {
                if *incarnation != 0 && *incarnation != before {
                    bad.push(format!(
                        "delete-wrong-incarnation: entry {index} deletes {stream} incarnation {before}, but names {incarnation}"
                    ));
                }
                removals.entry((session, seq)).or_default().push(before);
            }
        }
        if session != 0 && matches!(reply, Reply::Ok(..)) {
            let records = match &st.command {
                Command::Append { records, .. } => records.clone(),
                _ => Vec::new(),
            };
            first_ok.entry((session, seq)).or_insert((*index, a.inc_after, records, reply));
        }
    }
    for ((session, seq), incs) in &removals {
        if *session != 0 && incs.len() > 1 {
            bad.push(format!(
                "delete-duplicated: the delete of session {session} seq {seq} removed incarnations {incs:?}"
            ));
        }
    }
    // Acknowledged appends: where they landed.
    struct Landed<'a> {
        stream: &'a str,
        inc: u64,
        offset: u64,
        value: &'a Bytes,
        acked_at: u64,
        invoked: u64,
    }
    let mut landed: Vec<Landed> = Vec::new();
    let mut appended: HashMap<&Bytes, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let oks: Vec<&Reply> = op.answers.iter().map(|(_, r)| r).filter(|r| matches!(r, Reply::Ok(..))).collect();
        if oks.windows(2).any(|w| w[0] != w[1]) {
            bad.push(format!("dedup-answer: op {i} of client {} got different answers {oks:?}", op.client));
        }
        let Some((stream, value)) = op.value() else { continue };
        appended.insert(value, i);
        let Some((acked_at, offset, count)) = op.ok() else { continue };
        let Some((index, inc, records, _)) = first_ok.get(&(op.session, op.seq)) else {
            bad.push(format!(
                "ack-unapplied: append {:?} (session {} seq {}) acknowledged at offset {offset}, never applied",
                value, op.session, op.seq
            ));
            continue;
        };
        if records.len() != 1 || records[0] != *value || count != 1 {
            bad.push(format!("ack-mismatch: append {value:?} acknowledged, entry {index} holds {records:?}"));
            continue;
        }
        let Some(inc) = *inc else {
            bad.push(format!("ack-no-stream: append {value:?} acknowledged at entry {index} with no stream"));
            continue;
        };
        landed.push(Landed { stream, inc, offset, value, acked_at, invoked: op.invoked });
    }
    // The final state: every acknowledged record of a live incarnation is
    // there (unless trimmed), once; nothing is there that no client wrote.
    let mut count: BTreeMap<&Bytes, u32> = BTreeMap::new();
    for (name, f) in finals {
        for (j, v) in f.values.iter().enumerate() {
            *count.entry(v).or_default() += 1;
            if !appended.contains_key(v) {
                bad.push(format!("invented: {name}@{} holds {v:?}, which no client appended", f.first + j as u64));
            }
        }
    }
    for (v, n) in &count {
        if *n > 1 {
            bad.push(format!("duplicate: {v:?} is in the final state {n} times"));
        }
    }
    for l in &landed {
        let Some(f) = finals.get(l.stream).filter(|f| f.inc == l.inc) else { continue };
        if l.offset < f.first {
            continue; // Trimmed (by a client or by retention).
        }
        let got = f.values.get((l.offset - f.first) as usize);
        if got != Some(l.value) {
            bad.push(format!(
                "lost-write: {:?} acknowledged at {}@{} (incarnation {}), the final state has {got:?}",
                l.value, l.stream, l.offset, l.inc
            ));
        }
    }
    // Sessions: none expires while used within its ttl, as true time
    // bounds log time.
    let mut used: HashMap<u64, Vec<(u64, u64)>> = HashMap::new(); // session -> (invoked, acked)
    for op in ops {
        let Some((at, a, _)) = op.ok() else { continue };
        let session = match op.req {
            Req::Cmd(Command::OpenSession { .. }) => a,
            _ => op.session,
        };
        if session != 0 {
            used.entry(session).or_default().push((op.invoked, at));
        }
    }
    for op in ops.iter().filter(|o| o.session != 0) {
        for (t, r) in &op.answers {
            if *r != Reply::Refused(ErrorCode::SessionExpired) {
                continue;
            }
            let last =
                used.get(&op.session).and_then(|v| v.iter().filter(|(_, acked)| acked < t).map(|(i, _)| *i).max());
            let Some(last) = last else { continue };
            let bound = ctx.log_time_bound_ms(last, *t);
            if bound < ctx.session_ttl_ms {
                bad.push(format!(
                    "session-expired-early: session {} refused as expired at {t}, used at {last}: log time can have \
                     advanced at most {bound} ms since, the ttl is {} ms",
                    op.session, ctx.session_ttl_ms
                ));
            }
        }
    }
    // Retention by age: no record trimmed before its true age can exceed
    // the retention (trims a client asked for, and streams also kept by
    // size, are left out).
    if ctx.retention_age_ms > 0 && ctx.retention_bytes == 0 {
        for (index, a) in applied {
            let client_trim = |name: &str| {
                Stamped::decode(&a.data)
                    .is_ok_and(|s| matches!(&s.command, Command::Trim { stream, .. } if stream == name))
            };
            let at = ctx.applied_at.get(index).copied().unwrap_or(0);
            for (name, id, old, new) in &a.trims {
                if *new <= *old || client_trim(name) {
                    continue;
                }
                for l in
                    landed.iter().filter(|l| l.stream == name && l.inc == *id && l.offset >= *old && l.offset < *new)
                {
                    let bound = ctx.log_time_bound_ms(l.invoked, at);
                    if bound < ctx.retention_age_ms {
                        bad.push(format!(
                            "trimmed-early: entry {index} trimmed {name}@{} ({:?}) by age at {at}, appended at {}: log \
                             time can have advanced at most {bound} ms since, the retention is {} ms",
                            l.offset, l.value, l.invoked, ctx.retention_age_ms
                        ));
                    }
                }
            }
        }
    }
    // Reads: what they returned is what was acknowledged before them.
    for op in ops {
        let Req::Read { stream, .. } = &op.req else { continue };
        for (_, r) in &op.answers {
            let Reply::Read { inc, from, next, values } = r else { continue };
            for l in landed.iter().filter(|l| l.stream == stream && l.inc == *inc && l.offset >= *from) {
                if l.offset >= *next {
                    if l.acked_at < op.invoked {
                        bad.push(format!(
                            "stale-read: a read of {stream} (incarnation {inc}) from {from} at {} ended at {next}, \
                             but {:?} was acknowledged at {} before, at {}",
                            op.invoked, l.value, l.offset, l.acked_at
                        ));
                    }
                } else if values.get((l.offset - from) as usize) != Some(l.value) {
                    bad.push(format!(
                        "read-mismatch: a read of {stream}@{} returned {:?}, acknowledged there: {:?}",
                        l.offset,
                        values.get((l.offset - from) as usize),
                        l.value
                    ));
                }
            }
        }
    }
    bad
}
