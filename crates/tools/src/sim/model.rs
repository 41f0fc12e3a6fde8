//! The model state machine every simulated node runs, client payloads, and
//! the snapshot bytes that carry the state machine from node to node.
//!
//! The state is a chain hash over every applied entry (index, term,
//! payload digest): two nodes that applied the same prefix hold the same
//! chain, and any divergence shows at the first differing index. The same
//! chain function is used for the log mirrors the checker keeps, so "chain at
//! index i" means one thing everywhere. A snapshot encodes (last index, last
//! term, chain, count) plus padding so it spans several InstallSnapshot
//! chunks; a restored node continues the chain from there.

use bytes::{BufMut, Bytes, BytesMut};

use ringraft::core::{Entry, Membership, Payload};

use super::rng::{fnv1a, fold, mix64};

/// Magic at the start of every simulated snapshot.
const SNAP_MAGIC: &[u8; 8] = b"RRSIMSN1";

/// The digest of what an entry carries.
fn payload_digest(p: &Payload) -> u64 {
    match p {
        Payload::Noop => 0x6e6f_6f70,
        Payload::Normal(b) => fnv1a(b),
        Payload::Config(m) => membership_digest(m),
    }
}

fn membership_digest(m: &Membership) -> u64 {
    let mut h = 0xc0f1_u64;
    for (tag, set) in [(1u64, &m.voters), (2, &m.voters_outgoing), (3, &m.learners)] {
        for id in set {
            h = fold(h, tag << 56 | id.0);
        }
    }
    h
}

/// The chain hash after `prev` with `e` appended.
#[inline]
pub fn chain_next(prev: u64, e: &Entry) -> u64 {
    let h = fold(prev, e.index.0);
    let h = fold(h, e.term.0);
    fold(h, payload_digest(&e.payload))
}

/// The chain hash of the empty log.
pub const CHAIN_ZERO: u64 = 0;

/// The payload of client proposal `id`: the id in 8 little-endian bytes,
/// then `len - 8` filler bytes derived from it.
pub fn payload(id: u64, len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(len.max(8));
    b.put_u64_le(id);
    let mut x = mix64(id);
    while b.len() < len {
        b.put_u8(x as u8);
        x = x.rotate_right(8);
    }
    b.freeze()
}

/// The proposal id a payload carries, if it is one of ours.
pub fn payload_id(e: &Entry) -> Option<u64> {
    match &e.payload {
        Payload::Normal(b) if b.len() >= 8 => {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[..8]);
            Some(u64::from_le_bytes(w))
        }
        _ => None,
    }
}

/// The state of a node's model state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// The last applied index.
    pub applied: u64,
    /// The term of the last applied entry.
    pub applied_term: u64,
    /// The chain hash at `applied`.
    pub chain: u64,
    /// Client entries applied so far.
    pub normal_count: u64,
}

impl Model {
    /// Applies `e`, which must be the entry after `applied` (the caller
    /// checks and reports a gap as a violation).
    pub fn apply(&mut self, e: &Entry) {
        self.chain = chain_next(self.chain, e);
        self.applied = e.index.0;
        self.applied_term = e.term.0;
        if matches!(e.payload, Payload::Normal(_)) {
            self.normal_count += 1;
        }
    }

    /// The snapshot bytes of this state, padded by `pad` bytes.
    pub fn encode(&self, pad: usize, salt: u64) -> Bytes {
        let mut b = BytesMut::with_capacity(8 + 32 + 4 + pad + 8);
        b.put_slice(SNAP_MAGIC);
        b.put_u64_le(self.applied);
        b.put_u64_le(self.applied_term);
        b.put_u64_le(self.chain);
        b.put_u64_le(self.normal_count);
        b.put_u32_le(pad as u32);
        // The padding differs per node (`salt`), as two service nodes'
        // snapshots of one state differ in their segment layout: resuming
        // one node's snapshot with another's bytes fails the checksum.
        let mut x = mix64(self.chain ^ salt);
        for _ in 0..pad {
            b.put_u8(x as u8);
            x = x.rotate_right(8);
        }
        let sum = fnv1a(&b);
        b.put_u64_le(sum);
        b.freeze()
    }

    /// Decodes snapshot bytes made by [`Model::encode`].
    ///
    /// # Errors
    /// A sentence saying what is wrong with the bytes (truncated, bad magic,
    /// bad checksum): a snapshot transfer bug.
    pub fn decode(bytes: &[u8]) -> Result<Model, String> {
        let header = 8 + 32 + 4;
        if bytes.len() < header + 8 {
            return Err(format!("snapshot of {} bytes is truncated", bytes.len()));
        }
        if &bytes[..8] != SNAP_MAGIC {
            return Err("snapshot has a bad magic".into());
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let mut p = [0u8; 4];
        p.copy_from_slice(&bytes[40..44]);
        let pad = u32::from_le_bytes(p) as usize;
        if bytes.len() != header + pad + 8 {
            return Err(format!("snapshot is {} bytes, its header says {}", bytes.len(), header + pad + 8));
        }
        let end = header + pad;
        if fnv1a(&bytes[..end]) != word(end) {
            return Err("snapshot checksum mismatch".into());
        }
        Ok(Model { applied: word(8), applied_term: word(16), chain: word(24), normal_count: word(32) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft::core::{LogIndex, Term};

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let mut m = Model::default();
        m.apply(&Entry { term: Term(1), index: LogIndex(1), payload: Payload::Noop });
        m.apply(&Entry { term: Term(1), index: LogIndex(2), payload: Payload::Normal(payload(9, 20)) });
        let b = m.encode(40, 7);
        assert_eq!(Model::decode(&b), Ok(m));
        let mut bad = b.to_vec();
        bad[30] ^= 1;
        assert!(Model::decode(&bad).is_err());
        assert!(Model::decode(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn payload_ids_round_trip() {
        let e = Entry { term: Term(1), index: LogIndex(1), payload: Payload::Normal(payload(77, 33)) };
        assert_eq!(payload_id(&e), Some(77));
    }
}
