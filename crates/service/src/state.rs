//! [`ServiceState`]: the replicated state of the log service (streams,
//! sessions, log time, members' addresses) and how a committed command
//! changes it. Plain in-memory data and logic, no I/O: the state machine
//! (`machine.rs`) applies to it, the checkpointer (`checkpoint.rs`) cuts
//! jobs from it and `disk_meta.rs` encodes it.

use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;
use parking_lot::Mutex;

use super::command::{AppendView, Command, Outcome, Stamped};
use super::log_clock::LogTimeSeen;
use super::segments::DiskStream;
use super::session::{Admit, Sessions};
use super::stream::{ReadBatch, Stream};
use ringraft::core::LogIndex;
use ringraft::rpc::{ErrorCode, Records};

/// The group every stream lives in (one group for now; see ARCHITECTURE.md).
pub const SERVICE_GROUP: u64 = 1;
/// Sessions and age retention are swept once per this much log time.
const SWEEP_EVERY_MS: u64 = 1000;

/// A refused request: the wire error code and a message for the client.
pub type Refusal = (ErrorCode, String);

/// Answers a long-poll tail.
pub type TailReply = Box<dyn FnOnce(Result<Records, Refusal>) + Send>;

struct Tail {
    id: u64,
    stream: String,
    offset: u64,
    max_records: usize,
    max_bytes: usize,
    reply: TailReply,
}

/// The replicated state plus what readers and the checkpointer share.
pub struct ServiceState {
    /// Highest index applied.
    pub applied: LogIndex,
    /// Running maximum of the entries' log time.
    pub log_time_ms: u64,
    /// `log_time_ms` and when it was reached, for the leader's stamping
    /// (kept across installs: the front end holds it).
    pub(crate) log_time_seen: Arc<LogTimeSeen>,
    pub(crate) next_sweep_ms: u64,
    /// Streams by name.
    pub streams: HashMap<String, Stream>,
    /// Exactly-once sessions.
    pub sessions: Sessions,
    /// Segment files by stream id, shared with the checkpointer.
    pub(crate) disk: Arc<Mutex<HashMap<u64, DiskStream>>>,
    /// Stream ids deleted since the last checkpoint job.
    pub(crate) deleted: Vec<u64>,
    tails: Vec<Tail>,
    pub(crate) next_tail: u64,
    /// Written records kept in memory per stream as a read cache.
    pub(crate) cache_records: usize,
    /// An operator asked for a snapshot now.
    pub(crate) snapshot_wanted: bool,
    /// Members' addresses, as replicated (`SetPeer`).
    pub peers: std::collections::BTreeMap<u64, String>,
    /// Told of every address `SetPeer` applies (the server's transport).
    pub(crate) peer_hook: Option<PeerHook>,
    /// The records of the append being applied (kept to reuse its memory).
    scratch: Vec<Bytes>,
}

/// Called with a member's id and address when they are applied.
pub type PeerHook = Arc<dyn Fn(u64, &str) + Send + Sync>;

impl ServiceState {
    /// An empty state (a new node), or the one a checkpoint restored.
    pub(crate) fn new(disk: Arc<Mutex<HashMap<u64, DiskStream>>>) -> ServiceState {
        ServiceState {
            applied: LogIndex(0),
            log_time_ms: 0,
            log_time_seen: Arc::default(),
            next_sweep_ms: 0,
            streams: HashMap::new(),
            sessions: Sessions::default(),
            disk,
            deleted: Vec::new(),
            tails: Vec::new(),
            next_tail: 1,
            cache_records: 4096,
            snapshot_wanted: false,
            peers: std::collections::BTreeMap::new(),
            peer_hook: None,
            scratch: Vec::new(),
        }
    }

    /// A state with no checkpoint behind it (benchmarks, tests): records
    /// stay in memory.
    pub fn in_memory() -> ServiceState {
        ServiceState::new(Default::default())
    }

    /// Applies one committed command at `index`.
    pub fn apply(&mut self, index: LogIndex, data: &Bytes) -> Outcome {
        self.applied = index;
        // Appends (nearly every entry) are read in place.
        let mut records = std::mem::take(&mut self.scratch);
        let append = AppendView::decode(data, &mut records);
        let out = match &append {
            Ok(Some(v)) => Some(self.apply_append(v, &records)),
            Ok(None) | Err(_) => None,
        };
        records.clear();
        self.scratch = records;
        if let Some(out) = out {
            return out;
        }
        let st = match append.and_then(|_| Stamped::decode(data)) {
            Ok(st) => st,
            Err(e) => {
                // Every replica decodes the same bytes the same way, so all
                // refuse this entry alike; the state stays identical.
                log::error!("service: entry {index} is not a service command ({e}); ignored");
                return Outcome::Err(ErrorCode::Internal, 0);
            }
        };
        self.advance_log_time(st.time_ms);
        if self.log_time_ms >= self.next_sweep_ms {
            self.sweep();
        }
        let now = self.log_time_ms;
        match st.command {
            Command::Noop => Outcome::Ok(index.0, 0),
            Command::SetPeer { node, addr } => {
                if let Some(h) = &self.peer_hook {
                    h(node, &addr);
                }
                self.peers.insert(node, addr);
                Outcome::Ok(index.0, 0)
            }
            Command::OpenSession { ttl_ms } => {
                self.sessions.open(index.0, ttl_ms, now);
                Outcome::Ok(index.0, ttl_ms)
            }
            Command::Append { .. } => unreachable!("appends are applied by apply_append"),
            Command::Create { stream, retention_bytes, retention_age_ms, session, seq } => {
                self.in_session(session, seq, |st| {
                    if st.streams.contains_key(&stream) {
                        return Outcome::Err(ErrorCode::StreamExists, 0);
                    }
                    st.streams.insert(stream, Stream::new(index.0, retention_bytes, retention_age_ms));
                    Outcome::Ok(SERVICE_GROUP, index.0)
                })
            }
            Command::Delete { stream, session, seq, incarnation } => {
                // The mutant forgets the session: a retried delete applies again.
                let session = if ringraft::fs::mutant("delete-not-deduplicated") { 0 } else { session };
                self.in_session(session, seq, |st| match st.streams.get(&stream) {
                    None => Outcome::Err(ErrorCode::UnknownStream, 0),
                    // Another stream of that name than the one the client
                    // saw: it was deleted and re-created since.
                    Some(s) if incarnation != 0 && s.id != incarnation => Outcome::Err(ErrorCode::UnknownStream, s.id),
                    Some(_) => {
                        if let Some(s) = st.streams.remove(&stream) {
                            st.deleted.push(s.id);
                        }
                        st.fail_tails(&stream);
                        Outcome::Ok(0, 0)
                    }
                })
            }
            Command::Trim { stream, before, session, seq } => {
                self.in_session(session, seq, |st| match st.streams.get_mut(&stream) {
                    None => Outcome::Err(ErrorCode::UnknownStream, 0),
                    Some(s) if before > s.next => Outcome::Err(ErrorCode::OutOfRange, s.next),
                    Some(s) => {
                        s.trim(before);
                        Outcome::Ok(s.first, 0)
                    }
                })
            }
        }
    }

    /// Applies `op` once per `(session, seq)`: a retry gets the first
    /// outcome back (defect 06: a retried delete used to remove a stream
    /// re-created since). Session 0 applies every time.
    fn in_session(&mut self, session: u64, seq: u64, op: impl FnOnce(&mut Self) -> Outcome) -> Outcome {
        if session == 0 {
            return op(self);
        }
        match self.sessions.admit(session, seq, self.log_time_ms) {
            Admit::Duplicate(o) | Admit::Refuse(o) => o,
            Admit::Apply => {
                let o = op(self);
                self.sessions.record(session, seq, o);
                o
            }
        }
    }

    /// Log time is the running maximum of the entries' stamps (the `max`
    /// stays: logs written before stamps were clamped replay identically).
    /// Every entry confirms the log time in force now, also one that does
    /// not advance it: a new leader's bound counts from the last entry, not
    /// from when log time last moved (defect 25: a log time stalled by a
    /// leader whose clock was behind was caught up at once by the next).
    fn advance_log_time(&mut self, time_ms: u64) {
        self.log_time_ms = self.log_time_ms.max(time_ms);
        self.log_time_seen.note(self.log_time_ms);
    }

    /// The shared record of the log time applied, for the front end.
    pub fn log_time_seen(&self) -> Arc<LogTimeSeen> {
        Arc::clone(&self.log_time_seen)
    }

    /// Applies an append, deduplicated by its session.
    fn apply_append(&mut self, v: &AppendView, records: &[Bytes]) -> Outcome {
        self.advance_log_time(v.time_ms);
        if self.log_time_ms >= self.next_sweep_ms {
            self.sweep();
        }
        self.in_session(v.session, v.seq, |st| st.append(v.stream(), records))
    }

    fn append(&mut self, stream: &str, records: &[Bytes]) -> Outcome {
        let now = self.log_time_ms;
        let Some(s) = self.streams.get_mut(stream) else {
            return Outcome::Err(ErrorCode::UnknownStream, 0);
        };
        let first = s.append(records, now);
        if s.retention_bytes > 0 {
            s.apply_retention(now);
        }
        Outcome::Ok(first, records.len() as u64)
    }

    /// Expires idle sessions and applies age retention; runs at the same log
    /// positions on every replica.
    fn sweep(&mut self) {
        let now = self.log_time_ms;
        self.next_sweep_ms = now + SWEEP_EVERY_MS;
        let expired = self.sessions.expire(now);
        if expired > 0 {
            log::debug!("service: {expired} idle sessions expired at log time {now}");
        }
        for s in self.streams.values_mut() {
            if s.retention_age_ms > 0 {
                s.apply_retention(now);
            }
        }
    }

    /// Reads committed records of `stream` from `offset`.
    ///
    /// # Errors
    /// `UnknownStream`; `OutOfRange` below the first offset or past the
    /// next; `Internal` when a segment file cannot be read.
    pub fn read(&self, stream: &str, offset: u64, max_records: usize, max_bytes: usize) -> Result<Records, Refusal> {
        let Some(s) = self.streams.get(stream) else {
            return Err((ErrorCode::UnknownStream, format!("no stream named {stream:?}")));
        };
        if offset < s.first {
            return Err((
                ErrorCode::OutOfRange,
                format!("offset {offset} of {stream:?} is trimmed away; the stream starts at {}", s.first),
            ));
        }
        if offset > s.next {
            return Err((
                ErrorCode::OutOfRange,
                format!("offset {offset} of {stream:?} is beyond its tail; the next offset is {}", s.next),
            ));
        }
        let mut batch = ReadBatch::new(max_records.max(1), max_bytes);
        if offset < s.mem_first {
            let disk = self.disk.lock();
            let Some(d) = disk.get(&s.id) else {
                return Err((
                    ErrorCode::Internal,
                    format!("stream {stream:?}: records {offset}.. have no segment file"),
                ));
            };
            d.read(offset, s.mem_first, &mut batch)
                .map_err(|e| (ErrorCode::Internal, format!("stream {stream:?}: reading its segment: {e}")))?;
        }
        let at = offset + batch.records.len() as u64;
        if at >= s.mem_first && !batch.full() {
            s.read_mem(at, &mut batch);
        }
        let next_offset = offset + batch.records.len() as u64;
        Ok(Records { first_offset: offset, next_offset, records: batch.records })
    }

    /// Registers a long-poll tail; answered by [`ServiceState::serve_tails`]
    /// when records arrive, or by [`ServiceState::expire_tail`]. Returns its id.
    pub fn add_tail(
        &mut self,
        stream: &str,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
        reply: TailReply,
    ) -> u64 {
        let id = self.next_tail;
        self.next_tail += 1;
        self.tails.push(Tail { id, stream: stream.to_string(), offset, max_records, max_bytes, reply });
        id
    }

    /// Answers every tail whose stream now has records at its offset.
    pub fn serve_tails(&mut self) {
        if self.tails.is_empty() {
            return;
        }
        let tails = std::mem::take(&mut self.tails);
        for t in tails {
            let ready = match self.streams.get(&t.stream) {
                Some(s) => s.next > t.offset || t.offset < s.first,
                None => true,
            };
            if ready {
                (t.reply)(self.read(&t.stream, t.offset, t.max_records, t.max_bytes));
            } else {
                self.tails.push(t);
            }
        }
    }

    /// Answers tail `id` with no records (its wait ran out).
    pub fn expire_tail(&mut self, id: u64) {
        if let Some(i) = self.tails.iter().position(|t| t.id == id) {
            let t = self.tails.swap_remove(i);
            (t.reply)(Ok(Records { first_offset: t.offset, next_offset: t.offset, records: Vec::new() }));
        }
    }

    fn fail_tails(&mut self, stream: &str) {
        let (dead, live): (Vec<Tail>, Vec<Tail>) =
            std::mem::take(&mut self.tails).into_iter().partition(|t| t.stream == stream);
        self.tails = live;
        for t in dead {
            (t.reply)(Err((ErrorCode::UnknownStream, format!("stream {stream:?} was deleted"))));
        }
    }

    /// Answers every waiting tail with no records (the state is being
    /// replaced; the client polls again).
    pub(crate) fn release_tails(&mut self) {
        for t in std::mem::take(&mut self.tails) {
            (t.reply)(Ok(Records { first_offset: t.offset, next_offset: t.offset, records: Vec::new() }));
        }
    }

    /// Answers every waiting tail `ShuttingDown`.
    pub fn fail_all_tails(&mut self) {
        for t in std::mem::take(&mut self.tails) {
            (t.reply)(Err((ErrorCode::ShuttingDown, "the node is stopping".into())));
        }
    }
}
