//! Exactly-once sessions: the table the state machine keeps of each client
//! session's recent appends, so that a retried append gets its first answer
//! back instead of appending again.
//!
//! A session's id is the log index of its `OpenSession` entry. For each
//! session the table keeps the outcome of the last [`DEDUP_WINDOW`]
//! sequence numbers (pipelined appends may be applied in any order within
//! the window) and when it was last used, in **log time** (the proposing
//! leader's clock carried in each entry; replicas take the running maximum).
//! A session idle for its ttl is dropped by [`Sessions::expire`], called at
//! the same log positions on every replica, so all replicas agree on which
//! appends are duplicates.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hashbrown::HashMap;

use super::command::Outcome;
use ringraft::rpc::ErrorCode;

/// Sequence numbers remembered per session. A client must keep fewer
/// appends than this in flight (the SDK's pipeline window is capped below).
pub const DEDUP_WINDOW: u64 = 1024;

/// One session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    ttl_ms: u64,
    last_used_ms: u64,
    /// Highest sequence number applied.
    max_seq: u64,
    /// Outcomes sorted by sequence number; only seq > max_seq -
    /// DEDUP_WINDOW. A deque, not a tree: appends arrive in order almost
    /// always, so recording is a push at the back and forgetting a pop at
    /// the front, with no allocation per append.
    outcomes: VecDeque<(u64, Outcome)>,
}

impl Session {
    fn find(&self, seq: u64) -> Result<usize, usize> {
        self.outcomes.binary_search_by_key(&seq, |(s, _)| *s)
    }
}

/// What to do with an append of `(session, seq)`.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Apply it, then [`Sessions::record`] the outcome.
    Apply,
    /// Already applied: answer with this outcome, change nothing.
    Duplicate(Outcome),
    /// The session is unknown or the seq fell out of the window.
    Refuse(Outcome),
}

/// Every live session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    table: HashMap<u64, Session>,
}

impl Sessions {
    /// Opens session `id` (the index of its entry) at log time `now_ms`.
    pub fn open(&mut self, id: u64, ttl_ms: u64, now_ms: u64) {
        self.table.insert(id, Session { ttl_ms, last_used_ms: now_ms, ..Session::default() });
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Decides an append's fate and marks the session used.
    pub fn admit(&mut self, id: u64, seq: u64, now_ms: u64) -> Admit {
        let Some(s) = self.table.get_mut(&id) else {
            return Admit::Refuse(Outcome::Err(ErrorCode::SessionExpired, 0));
        };
        s.last_used_ms = s.last_used_ms.max(now_ms);
        // In order (the usual case): past everything recorded, so new.
        if seq > s.max_seq {
            return Admit::Apply;
        }
        if let Ok(i) = s.find(seq) {
            return Admit::Duplicate(s.outcomes[i].1);
        }
        if seq == 0 || seq + DEDUP_WINDOW <= s.max_seq {
            return Admit::Refuse(Outcome::Err(ErrorCode::SessionExpired, s.max_seq));
        }
        Admit::Apply
    }

    /// Remembers the outcome of an applied append and forgets what fell out
    /// of the window.
    pub fn record(&mut self, id: u64, seq: u64, outcome: Outcome) {
        let Some(s) = self.table.get_mut(&id) else { return };
        let in_order = s.outcomes.back().is_none_or(|(last, _)| *last < seq);
        match if in_order { Err(s.outcomes.len()) } else { s.find(seq) } {
            Ok(i) => s.outcomes[i].1 = outcome,
            Err(i) if i == s.outcomes.len() => s.outcomes.push_back((seq, outcome)),
            Err(i) => s.outcomes.insert(i, (seq, outcome)),
        }
        s.max_seq = s.max_seq.max(seq);
        let floor = s.max_seq.saturating_sub(DEDUP_WINDOW);
        while s.outcomes.front().is_some_and(|(first, _)| *first <= floor) {
            s.outcomes.pop_front();
        }
    }

    /// Drops sessions idle for longer than their ttl at log time `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.table.len();
        self.table.retain(|_, s| s.last_used_ms.saturating_add(s.ttl_ms) >= now_ms);
        before - self.table.len()
    }

    /// Serializes the table for a checkpoint (sorted by id, so equal tables
    /// give equal bytes).
    pub fn encode(&self) -> Bytes {
        let mut ids: Vec<&u64> = self.table.keys().collect();
        ids.sort();
        let mut out = BytesMut::with_capacity(16 + self.table.len() * 64);
        out.put_u64_le(ids.len() as u64);
        for id in ids {
            let s = &self.table[id];
            out.put_u64_le(*id);
            out.put_u64_le(s.ttl_ms);
            out.put_u64_le(s.last_used_ms);
            out.put_u64_le(s.max_seq);
            out.put_u32_le(s.outcomes.len() as u32);
            for (seq, o) in &s.outcomes {
                out.put_u64_le(*seq);
                out.put_slice(&o.encode());
            }
        }
        out.freeze()
    }

    /// Reads what [`Sessions::encode`] wrote.
    ///
    /// # Errors
    /// A description of what is wrong with the bytes.
    pub fn decode(mut b: Bytes) -> Result<Sessions, String> {
        let need =
            |b: &Bytes, n: usize| if b.remaining() < n { Err("session table truncated".to_string()) } else { Ok(()) };
        need(&b, 8)?;
        let n = b.get_u64_le();
        let mut table = HashMap::new();
        for _ in 0..n {
            need(&b, 36)?;
            let id = b.get_u64_le();
            let mut s = Session {
                ttl_ms: b.get_u64_le(),
                last_used_ms: b.get_u64_le(),
                max_seq: b.get_u64_le(),
                ..Session::default()
            };
            let k = b.get_u32_le();
            for _ in 0..k {
                need(&b, 26)?;
                let seq = b.get_u64_le();
                let o = Outcome::decode(&b.split_to(18)).map_err(|e| format!("session outcome: {e}"))?;
                s.outcomes.push_back((seq, o));
            }
            table.insert(id, s);
        }
        if b.has_remaining() {
            return Err("trailing bytes after the session table".into());
        }
        Ok(Sessions { table })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_gets_the_first_outcome_and_unknown_sessions_are_refused() {
        let mut s = Sessions::default();
        assert!(matches!(s.admit(5, 1, 0), Admit::Refuse(Outcome::Err(ErrorCode::SessionExpired, _))));
        s.open(5, 1000, 0);
        assert_eq!(s.admit(5, 1, 10), Admit::Apply);
        s.record(5, 1, Outcome::Ok(0, 3));
        assert_eq!(s.admit(5, 1, 20), Admit::Duplicate(Outcome::Ok(0, 3)));
        // Out of order inside the window is fine.
        assert_eq!(s.admit(5, 3, 20), Admit::Apply);
        s.record(5, 3, Outcome::Ok(3, 1));
        assert_eq!(s.admit(5, 2, 20), Admit::Apply);
        assert!(matches!(s.admit(5, 0, 20), Admit::Refuse(_)));
    }

    #[test]
    fn the_window_slides_and_old_seqs_are_refused_not_reapplied() {
        let mut s = Sessions::default();
        s.open(1, 1000, 0);
        for seq in 1..=DEDUP_WINDOW + 10 {
            assert_eq!(s.admit(1, seq, 0), Admit::Apply);
            s.record(1, seq, Outcome::Ok(seq, 1));
        }
        assert!(matches!(s.admit(1, 5, 0), Admit::Refuse(_)), "seq 5 fell out of the window");
        assert_eq!(s.admit(1, DEDUP_WINDOW + 10, 0), Admit::Duplicate(Outcome::Ok(DEDUP_WINDOW + 10, 1)));
        assert!(s.table[&1].outcomes.len() as u64 <= DEDUP_WINDOW);
    }

    #[test]
    fn expiry_uses_log_time_and_the_table_round_trips() {
        let mut s = Sessions::default();
        s.open(1, 100, 0);
        s.open(2, 100, 50);
        s.record(2, 1, Outcome::Ok(0, 1));
        assert_eq!(s.expire(120), 1);
        assert!(matches!(s.admit(1, 1, 120), Admit::Refuse(_)));
        let back = Sessions::decode(s.encode()).unwrap();
        assert_eq!(back, s);
        assert!(Sessions::decode(s.encode().slice(..10)).is_err());
    }
}
