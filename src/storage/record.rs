//! The on-disk record and segment header formats (pure encode/decode).
//!
//! ```text
//! segment header (32 bytes)
//!   0  [u8; 8]  magic "RRAFTSEG"
//!   8  u32      format version (1)
//!   12 u32      reserved (0)
//!   16 u64      segment sequence number
//!   24 u32      CRC32C of bytes 0..24
//!   28 u32      reserved (0)
//! record (8-byte aligned; padded with zeros to a multiple of 8)
//!   0  u32      body length in bytes (> 0)
//!   4  u32      CRC32C of the body
//!   8  body:
//!      0  u8    kind (see `Kind`); bit 0x80 set on the first record of
//!               each write (everything up to one fdatasync)
//!      1  u64   group id
//!      9  u64   term
//!      17 u64   index
//!      25 ..    payload
//! ```
//! All integers little-endian. A record header of eight zero bytes marks the
//! end of the written part of a (preallocated, zero-filled) segment.

use bytes::{BufMut, Bytes};

use crate::core::{Entry, GroupId, LogIndex, Membership, NodeId, Payload, Term};

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RRAFTSEG";
/// The segment format version this build writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// Bytes before the body: length and CRC.
pub const RECORD_PREFIX_BYTES: usize = 8;
/// Bytes of the fixed part of a body.
pub const BODY_HEADER_BYTES: usize = 25;
/// Bit of the kind byte that marks the first record of a write.
pub const SYNC_START: u8 = 0x80;
/// Largest body accepted (bounded so a corrupt length cannot make us
/// allocate gigabytes).
pub const BODY_BYTES_MAX: usize = 256 << 20;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A log entry with application data.
    Normal = 1,
    /// A leader's no-op entry.
    Noop = 2,
    /// A configuration entry (payload: encoded membership).
    Config = 3,
    /// The group's log restarts after a snapshot at (index, term); payload:
    /// the snapshot's membership.
    Reset = 10,
    /// The group's entries up to `index` may be deleted.
    Purge = 11,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Normal,
            2 => Kind::Noop,
            3 => Kind::Config,
            10 => Kind::Reset,
            11 => Kind::Purge,
            _ => return None,
        })
    }
}

/// A decoded record body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What it is.
    pub kind: Kind,
    /// The group it belongs to.
    pub group: GroupId,
    /// Entry term (or the snapshot term of a reset).
    pub term: Term,
    /// Entry index (or the snapshot index of a reset, the purge point).
    pub index: LogIndex,
    /// The rest of the body.
    pub payload: Bytes,
}

impl Record {
    /// The record of a log entry.
    pub fn from_entry(group: GroupId, e: &Entry) -> Record {
        let (kind, payload) = match &e.payload {
            Payload::Normal(b) => (Kind::Normal, b.clone()),
            Payload::Noop => (Kind::Noop, Bytes::new()),
            Payload::Config(m) => (Kind::Config, encode_membership(m)),
        };
        Record { kind, group, term: e.term, index: e.index, payload }
    }

    /// The log entry this record holds, if it is one.
    ///
    /// # Errors
    /// A configuration payload that does not decode.
    pub fn to_entry(&self) -> Result<Option<Entry>, String> {
        let payload = match self.kind {
            Kind::Normal => Payload::Normal(self.payload.clone()),
            Kind::Noop => Payload::Noop,
            Kind::Config => Payload::Config(decode_membership(&self.payload)?),
            Kind::Reset | Kind::Purge => return Ok(None),
        };
        Ok(Some(Entry { term: self.term, index: self.index, payload }))
    }

    /// The record as a [`RecordRef`] (what the encoders work on).
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef { kind: self.kind, group: self.group, term: self.term, index: self.index, payload: &self.payload }
    }

    /// Bytes this record takes on disk, padding included.
    pub fn disk_bytes(&self) -> usize {
        self.as_ref().disk_bytes()
    }

    /// Appends the record, padded to 8 bytes, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_flagged(out, false);
    }

    /// Appends the record to `out`; `sync_start` marks it as the first record
    /// of a write. Recovery uses the mark to tell a torn last write (damage
    /// with only records of the same write after it) from corruption (a
    /// later write follows, so the damaged one had been synced).
    pub fn encode_flagged(&self, out: &mut Vec<u8>, sync_start: bool) {
        self.as_ref().encode_flagged(out, sync_start);
    }
}

/// A record to encode, borrowing its payload: the write path encodes log
/// entries through it without building a [`Record`] (and touching the
/// payload's reference count) for each.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// What it is.
    pub kind: Kind,
    /// The group it belongs to.
    pub group: GroupId,
    /// Entry term (or the snapshot term of a reset).
    pub term: Term,
    /// Entry index (or the snapshot index of a reset, the purge point).
    pub index: LogIndex,
    /// The rest of the body.
    pub payload: &'a Bytes,
}

/// The payload of a no-op entry.
static EMPTY: Bytes = Bytes::new();

impl<'a> RecordRef<'a> {
    /// The record of a log entry, unless its payload must be encoded first
    /// (a configuration: use [`Record::from_entry`]).
    pub fn of_entry(group: GroupId, e: &'a Entry) -> Option<RecordRef<'a>> {
        let (kind, payload) = match &e.payload {
            Payload::Normal(b) => (Kind::Normal, b),
            Payload::Noop => (Kind::Noop, &EMPTY),
            Payload::Config(_) => return None,
        };
        Some(RecordRef { kind, group, term: e.term, index: e.index, payload })
    }

    /// Bytes this record takes on disk, padding included.
    pub fn disk_bytes(&self) -> usize {
        padded(RECORD_PREFIX_BYTES + BODY_HEADER_BYTES + self.payload.len())
    }

    /// The prefix and fixed body fields, checksum left zero.
    fn head(&self, sync_start: bool) -> [u8; RECORD_PREFIX_BYTES + BODY_HEADER_BYTES] {
        let mut h = [0u8; RECORD_PREFIX_BYTES + BODY_HEADER_BYTES];
        h[0..4].copy_from_slice(&((BODY_HEADER_BYTES + self.payload.len()) as u32).to_le_bytes());
        h[8] = self.kind as u8 | if sync_start { SYNC_START } else { 0 };
        h[9..17].copy_from_slice(&self.group.0.to_le_bytes());
        h[17..25].copy_from_slice(&self.term.0.to_le_bytes());
        h[25..33].copy_from_slice(&self.index.0.to_le_bytes());
        h
    }

    /// See [`Record::encode_flagged`].
    pub fn encode_flagged(&self, out: &mut Vec<u8>, sync_start: bool) {
        let start = out.len();
        out.reserve(self.disk_bytes());
        out.extend_from_slice(&self.head(sync_start));
        out.extend_from_slice(self.payload);
        // One checksum pass over the body in place.
        let crc = crc32c::crc32c(&out[start + RECORD_PREFIX_BYTES..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        out.resize(start + self.disk_bytes(), 0);
    }

    /// Appends what precedes the payload (prefix and fixed body fields, the
    /// checksum covering the payload too) and returns how many zero bytes
    /// of padding must follow the payload: [`Record::encode_flagged`] for a
    /// caller that writes the payload from where it already is.
    pub fn encode_head_flagged(&self, out: &mut Vec<u8>, sync_start: bool) -> usize {
        let mut h = self.head(sync_start);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h[RECORD_PREFIX_BYTES..]), self.payload);
        h[4..8].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&h);
        self.disk_bytes() - h.len() - self.payload.len()
    }
}

/// The little-endian `u32` at `at`. Callers check the bounds first (an out
/// of range read is a broken invariant and panics with the slice index).
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The little-endian `u64` at `at` (bounds checked by the caller).
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The 8-byte record prefix at `at` (bounds checked by the caller).
pub fn prefix_at(b: &[u8], at: usize) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    a
}

/// `n` rounded up to a multiple of 8.
pub fn padded(n: usize) -> usize {
    (n + 7) & !7
}

/// What the 8-byte prefix at some offset says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// Eight zero bytes: the end of the written log.
    End,
    /// A record body of `len` bytes with checksum `crc` follows.
    Record {
        /// Body length.
        len: usize,
        /// Expected CRC32C of the body.
        crc: u32,
    },
    /// A length that cannot be right.
    Bad(&'static str),
}

/// Reads a record prefix.
pub fn decode_prefix(b: &[u8; 8]) -> Prefix {
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if len == 0 && crc == 0 {
        return Prefix::End;
    }
    if len < BODY_HEADER_BYTES {
        return Prefix::Bad("record shorter than its header");
    }
    if len > BODY_BYTES_MAX {
        return Prefix::Bad("record length beyond the maximum");
    }
    Prefix::Record { len, crc }
}

/// Decodes a body whose CRC is `crc`.
///
/// # Errors
/// A description of the problem (checksum, unknown kind).
pub fn decode_body(body: Bytes, crc: u32) -> Result<Record, &'static str> {
    if body.len() < BODY_HEADER_BYTES {
        return Err("record shorter than its header");
    }
    if crc32c::crc32c(&body) != crc {
        return Err("checksum mismatch");
    }
    let kind = Kind::from_u8(body[0] & !SYNC_START).ok_or("unknown record kind")?;
    Ok(Record {
        kind,
        group: GroupId(u64_at(&body, 1)),
        term: Term(u64_at(&body, 9)),
        index: LogIndex(u64_at(&body, 17)),
        payload: body.slice(BODY_HEADER_BYTES..),
    })
}

/// Whether a (checksum-verified) body is the first record of a write.
pub fn starts_write(body: &[u8]) -> bool {
    body.first().is_some_and(|k| k & SYNC_START != 0)
}

/// Encodes a segment header.
pub fn encode_segment_header(seq: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// A valid header of segment `seq`.
    Valid {
        /// The sequence number.
        seq: u64,
    },
    /// All zeros: the file was created but its header never written.
    Blank,
    /// Not our magic.
    NotOurs,
    /// Our magic, another version.
    Version(u32),
    /// Our magic, a bad checksum.
    Corrupt,
}

/// Decodes a segment header.
pub fn decode_segment_header(h: &[u8; SEGMENT_HEADER_BYTES as usize]) -> Header {
    if h.iter().all(|b| *b == 0) {
        return Header::Blank;
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Header::NotOurs;
    }
    let version = u32_at(h, 8);
    if version != SEGMENT_VERSION {
        return Header::Version(version);
    }
    let crc = u32_at(h, 24);
    if crc32c::crc32c(&h[0..24]) != crc {
        return Header::Corrupt;
    }
    Header::Valid { seq: u64_at(h, 16) }
}

/// Encodes a membership: three sets (voters, outgoing voters, learners),
/// each a u32 count followed by u64 ids.
pub fn encode_membership(m: &Membership) -> Bytes {
    let mut out = Vec::with_capacity(12 + 8 * m.members().len());
    for set in [&m.voters, &m.voters_outgoing, &m.learners] {
        out.put_u32_le(set.len() as u32);
        for id in set {
            out.put_u64_le(id.0);
        }
    }
    Bytes::from(out)
}

/// Decodes what [`encode_membership`] wrote.
///
/// # Errors
/// Truncated input or trailing bytes.
pub fn decode_membership(b: &[u8]) -> Result<Membership, String> {
    let mut pos = 0;
    let mut sets: [std::collections::BTreeSet<NodeId>; 3] = Default::default();
    for set in sets.iter_mut() {
        if b.len() < pos + 4 {
            return Err("membership truncated".into());
        }
        let n = u32_at(b, pos) as usize;
        pos += 4;
        if n > (b.len() - pos) / 8 {
            return Err(format!("membership claims {n} ids in {} bytes", b.len() - pos));
        }
        for _ in 0..n {
            set.insert(NodeId(u64_at(b, pos)));
            pos += 8;
        }
    }
    if pos != b.len() {
        return Err("trailing bytes after membership".into());
    }
    let [voters, voters_outgoing, learners] = sets;
    Ok(Membership { voters, voters_outgoing, learners })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_padded_to_eight_bytes() {
        let e = Entry { term: Term(3), index: LogIndex(9), payload: Payload::Normal(Bytes::from_static(b"hello")) };
        let r = Record::from_entry(GroupId(5), &e);
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        assert_eq!(buf.len() % 8, 0);
        assert_eq!(buf.len(), r.disk_bytes());
        let Prefix::Record { len, crc } = decode_prefix(buf[0..8].try_into().unwrap()) else { panic!() };
        let back = decode_body(Bytes::copy_from_slice(&buf[8..8 + len]), crc).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_entry().unwrap(), Some(e));
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let r =
            Record { kind: Kind::Purge, group: GroupId(1), term: Term(0), index: LogIndex(4), payload: Bytes::new() };
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        buf[20] ^= 1;
        let Prefix::Record { len, crc } = decode_prefix(buf[0..8].try_into().unwrap()) else { panic!() };
        assert_eq!(decode_body(Bytes::copy_from_slice(&buf[8..8 + len]), crc), Err("checksum mismatch"));
    }

    #[test]
    fn membership_round_trips_and_rejects_garbage() {
        let m = Membership {
            voters: [NodeId(1), NodeId(2)].into(),
            voters_outgoing: [NodeId(3)].into(),
            learners: [NodeId(4)].into(),
        };
        assert_eq!(decode_membership(&encode_membership(&m)).unwrap(), m);
        assert!(decode_membership(&[255, 255, 255, 255]).is_err());
        assert!(decode_membership(&[]).is_err());
    }

    #[test]
    fn segment_headers_are_recognised() {
        let h = encode_segment_header(7);
        assert_eq!(decode_segment_header(&h), Header::Valid { seq: 7 });
        assert_eq!(decode_segment_header(&[0; 32]), Header::Blank);
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_segment_header(&bad), Header::NotOurs);
        let mut bad = h;
        bad[17] ^= 1;
        assert_eq!(decode_segment_header(&bad), Header::Corrupt);
    }
}
