//! The service's replicated commands (the payload of a Raft entry) and the
//! outcome the state machine hands back to the proposer.
//!
//! Entry payload (little-endian, like the wire protocol):
//!
//! | field | type | why |
//! |---|---|---|
//! | kind | `u8` | 1 open session, 2 append, 3 create, 4 delete, 5 trim |
//! | time | `u64` | the proposing leader's clock, ms since the Unix epoch: **log time** |
//! | body | per kind | below |
//!
//! * open session: `ttl ms u64` (the leader's setting, so every replica expires it alike)
//! * append: `stream string` · `session u64` · `seq u64` · `count u32` · `count × (len u32, bytes)`
//! * create: `stream string` · `retention bytes u64` · `retention age ms u64` · [`session u64` · `seq u64`]
//! * delete: `stream string` · [`session u64` · `seq u64` · `incarnation u64`]
//! * trim: `stream string` · `before u64` · [`session u64` · `seq u64`]
//!
//! Fields in brackets trail the layout of 0.2 and are present only when not
//! all 0, so entries written by 0.2 (without them) replay unchanged.
//! * noop (6): nothing
//! * set peer (7): `node u64` · `addr string`
//!
//! Records are decoded as zero-copy slices of the entry's buffer, so the
//! state machine keeps them without copying. Every value that decides what
//! a replica does (time, ttl, retention) travels in the entry: replicas
//! never consult their own clock or configuration while applying.

use bytes::{BufMut, Bytes, BytesMut};

use ringraft::rpc::frame::{put_len, put_string, Reader};
use ringraft::rpc::{ErrorCode, ProtocolError};

/// A command of the log service, as replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Open an exactly-once session; its id is the entry's index.
    OpenSession {
        /// Idle log time after which the session is forgotten.
        ttl_ms: u64,
    },
    /// Append records (deduplicated by `(session, seq)` when `session != 0`).
    Append {
        /// Stream name.
        stream: String,
        /// Session id or 0.
        session: u64,
        /// Sequence number within the session.
        seq: u64,
        /// The records.
        records: Vec<Bytes>,
    },
    /// Create a stream with its retention.
    Create {
        /// Stream name.
        stream: String,
        /// Keep at most about this many record bytes (0: no limit).
        retention_bytes: u64,
        /// Drop records older than this much log time (0: no limit).
        retention_age_ms: u64,
        /// Session or 0: deduplicated by `(session, seq)` like an append.
        session: u64,
        /// Sequence number within the session.
        seq: u64,
    },
    /// Delete a stream.
    Delete {
        /// Stream name.
        stream: String,
        /// Session or 0: deduplicated by `(session, seq)` like an append.
        session: u64,
        /// Sequence number within the session.
        seq: u64,
        /// Delete only this incarnation (the index of its `Create`); 0: any.
        incarnation: u64,
    },
    /// Does nothing; carries log time and marks a point in the log (an
    /// operator's snapshot request rides on one).
    Noop,
    /// Member `node` listens at `addr` (`host:port`): every replica's
    /// transport learns it, so whichever node leads later can reach it.
    SetPeer {
        /// Node id.
        node: u64,
        /// Its address.
        addr: String,
    },
    /// Drop a stream's records before `before`.
    Trim {
        /// Stream name.
        stream: String,
        /// The new first offset.
        before: u64,
        /// Session or 0: deduplicated by `(session, seq)` like an append.
        session: u64,
        /// Sequence number within the session.
        seq: u64,
    },
}

/// A command with the log time it was proposed at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped {
    /// The leader's clock when it proposed, ms since the Unix epoch.
    pub time_ms: u64,
    /// The command.
    pub command: Command,
}

impl Stamped {
    /// Encodes for a Raft entry.
    ///
    /// # Errors
    /// A stream name over 65,535 bytes or more than `u32::MAX` records.
    pub fn encode(&self) -> Result<Bytes, ProtocolError> {
        let mut out = BytesMut::with_capacity(64 + self.records_len());
        let kind = match &self.command {
            Command::OpenSession { .. } => 1,
            Command::Append { .. } => 2,
            Command::Create { .. } => 3,
            Command::Delete { .. } => 4,
            Command::Trim { .. } => 5,
            Command::Noop => 6,
            Command::SetPeer { .. } => 7,
        };
        out.put_u8(kind);
        out.put_u64_le(self.time_ms);
        match &self.command {
            Command::OpenSession { ttl_ms } => out.put_u64_le(*ttl_ms),
            Command::Append { stream, session, seq, records } => {
                put_string(&mut out, stream)?;
                out.put_u64_le(*session);
                out.put_u64_le(*seq);
                put_len(&mut out, records.len())?;
                for r in records {
                    put_len(&mut out, r.len())?;
                    out.put_slice(r);
                }
            }
            Command::Create { stream, retention_bytes, retention_age_ms, session, seq } => {
                put_string(&mut out, stream)?;
                out.put_u64_le(*retention_bytes);
                out.put_u64_le(*retention_age_ms);
                put_trailing(&mut out, &[*session, *seq]);
            }
            Command::Delete { stream, session, seq, incarnation } => {
                put_string(&mut out, stream)?;
                put_trailing(&mut out, &[*session, *seq, *incarnation]);
            }
            Command::Noop => {}
            Command::SetPeer { node, addr } => {
                out.put_u64_le(*node);
                put_string(&mut out, addr)?;
            }
            Command::Trim { stream, before, session, seq } => {
                put_string(&mut out, stream)?;
                out.put_u64_le(*before);
                put_trailing(&mut out, &[*session, *seq]);
            }
        }
        Ok(out.freeze())
    }

    fn records_len(&self) -> usize {
        match &self.command {
            Command::Append { records, .. } => records.iter().map(|r| r.len() + 4).sum(),
            _ => 0,
        }
    }

    /// Decodes an entry's payload; records are slices of `data`.
    ///
    /// # Errors
    /// The payload does not follow the layout (a bug or a corrupt log: the
    /// log's CRC makes the latter unlikely).
    pub fn decode(data: &Bytes) -> Result<Stamped, ProtocolError> {
        let mut records = Vec::new();
        if let Some(v) = AppendView::decode(data, &mut records)? {
            let stream = v.stream().to_owned();
            let command = Command::Append { stream, session: v.session, seq: v.seq, records };
            return Ok(Stamped { time_ms: v.time_ms, command });
        }
        let mut r = Reader::new(data.clone());
        let kind = r.u8()?;
        let time_ms = r.u64()?;
        let command = match kind {
            1 => Command::OpenSession { ttl_ms: r.u64()? },
            3 => {
                let (stream, retention_bytes, retention_age_ms) = (r.string()?, r.u64()?, r.u64()?);
                let [session, seq] = get_trailing(&mut r)?;
                Command::Create { stream, retention_bytes, retention_age_ms, session, seq }
            }
            4 => {
                let stream = r.string()?;
                let [session, seq, incarnation] = get_trailing(&mut r)?;
                Command::Delete { stream, session, seq, incarnation }
            }
            5 => {
                let (stream, before) = (r.string()?, r.u64()?);
                let [session, seq] = get_trailing(&mut r)?;
                Command::Trim { stream, before, session, seq }
            }
            6 => Command::Noop,
            7 => Command::SetPeer { node: r.u64()?, addr: r.string()? },
            _ => return Err(ProtocolError::Malformed("unknown service command kind")),
        };
        r.finish()?;
        Ok(Stamped { time_ms, command })
    }
}

/// Writes `fields` unless they are all 0 (the layout before they existed).
fn put_trailing(out: &mut BytesMut, fields: &[u64]) {
    if fields.iter().any(|f| *f != 0) {
        for f in fields {
            out.put_u64_le(*f);
        }
    }
}

/// Reads what [`put_trailing`] wrote: all `N` fields, or none (all 0).
fn get_trailing<const N: usize>(r: &mut Reader) -> Result<[u64; N], ProtocolError> {
    let mut v = [0u64; N];
    if r.remaining() > 0 {
        for f in v.iter_mut() {
            *f = r.u64()?;
        }
    }
    Ok(v)
}

/// An append command read in place, the form the state machine applies
/// (most entries are appends): the stream name is a slice of the entry and
/// the records go into a list the caller reuses, so decoding allocates
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendView {
    /// The proposing leader's clock (log time).
    pub time_ms: u64,
    /// The stream name's bytes, checked to be UTF-8.
    stream: Bytes,
    /// Exactly-once session (0: none).
    pub session: u64,
    /// Sequence number within the session.
    pub seq: u64,
}

impl AppendView {
    /// Decodes `data` if it is an append, pushing its records (slices of
    /// `data`) onto `records`; `Ok(None)` for any other command.
    ///
    /// # Errors
    /// An append that does not follow the layout.
    pub fn decode(data: &Bytes, records: &mut Vec<Bytes>) -> Result<Option<AppendView>, ProtocolError> {
        if data.first() != Some(&2) {
            return Ok(None);
        }
        let mut r = Reader::new(data.clone());
        r.u8()?;
        let time_ms = r.u64()?;
        let stream = r.str_bytes()?;
        let session = r.u64()?;
        let seq = r.u64()?;
        let n = r.count(4)?;
        records.reserve(n);
        for _ in 0..n {
            let len = r.u32()? as usize;
            records.push(r.bytes(len)?);
        }
        r.finish()?;
        Ok(Some(AppendView { time_ms, stream, session, seq }))
    }

    /// The stream name.
    pub fn stream(&self) -> &str {
        // Checked by `Reader::str_bytes` when decoded.
        std::str::from_utf8(&self.stream).unwrap_or_default()
    }
}

/// Bytes of an encoded [`Outcome`].
pub const OUTCOME_BYTES: usize = 18;

/// What applying a command produced: success with up to two numbers, or an
/// error code. Encoded in 18 bytes: `code u16` (0 = ok) · `a u64` · `b u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success: append → (first offset, count); open session → (id, ttl);
    /// trim → (first offset, 0); create → (group, 0); delete → (0, 0).
    Ok(u64, u64),
    /// Refused; `a` carries a detail (e.g. the stream's next offset).
    Err(ErrorCode, u64),
}

impl Outcome {
    /// Encodes for the proposer.
    pub fn encode(self) -> Bytes {
        let mut out = BytesMut::with_capacity(OUTCOME_BYTES);
        self.put(&mut out);
        out.freeze()
    }

    /// Encodes into `chunk`, a buffer shared by many outcomes, and splits
    /// the result off: one allocation per few hundred outcomes instead of
    /// one each (the apply path makes one outcome per entry).
    pub fn encode_in(self, chunk: &mut BytesMut) -> Bytes {
        if chunk.capacity() - chunk.len() < OUTCOME_BYTES {
            *chunk = BytesMut::with_capacity(OUTCOME_BYTES * 256);
        }
        self.put(chunk);
        chunk.split().freeze()
    }

    fn put(self, out: &mut BytesMut) {
        let (code, a, b) = match self {
            Outcome::Ok(a, b) => (0, a, b),
            Outcome::Err(c, a) => (c as u16, a, 0),
        };
        out.put_u16_le(code);
        out.put_u64_le(a);
        out.put_u64_le(b);
    }

    /// Decodes what [`Outcome::encode`] made.
    ///
    /// # Errors
    /// Bytes that are not an outcome (a broken state machine).
    pub fn decode(data: &Bytes) -> Result<Outcome, ProtocolError> {
        let mut r = Reader::new(data.clone());
        let code = r.u16()?;
        let a = r.u64()?;
        let b = r.u64()?;
        r.finish()?;
        Ok(match code {
            0 => Outcome::Ok(a, b),
            c => Outcome::Err(ErrorCode::from_u16(c).unwrap_or(ErrorCode::Internal), a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_and_records_are_slices() {
        let cmds = vec![
            Command::OpenSession { ttl_ms: 60_000 },
            Command::Append {
                stream: "orders".into(),
                session: 7,
                seq: 3,
                records: vec![Bytes::from_static(b"a"), Bytes::new()],
            },
            Command::Create { stream: "s".into(), retention_bytes: 1 << 30, retention_age_ms: 0, session: 0, seq: 0 },
            Command::Create { stream: "s".into(), retention_bytes: 0, retention_age_ms: 9, session: 4, seq: 2 },
            Command::Delete { stream: "s".into(), session: 0, seq: 0, incarnation: 0 },
            Command::Delete { stream: "s".into(), session: 4, seq: 3, incarnation: 17 },
            Command::Trim { stream: "s".into(), before: 9, session: 0, seq: 0 },
            Command::Trim { stream: "s".into(), before: 9, session: 4, seq: 5 },
            Command::Noop,
            Command::SetPeer { node: 4, addr: "127.0.0.1:7104".into() },
        ];
        for command in cmds {
            let st = Stamped { time_ms: 1_700_000_000_000, command };
            let data = st.encode().unwrap();
            let back = Stamped::decode(&data).unwrap();
            assert_eq!(back, st);
            if let Command::Append { records, .. } = &back.command {
                let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
                assert!(range.contains(&(records[0].as_ptr() as usize)));
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], &[9, 0, 0, 0, 0, 0, 0, 0, 0][..], &[2, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0][..]] {
            assert!(Stamped::decode(&Bytes::copy_from_slice(bad)).is_err());
        }
        let ok = Outcome::Ok(5, 2);
        assert_eq!(Outcome::decode(&ok.encode()).unwrap(), ok);
        let e = Outcome::Err(ErrorCode::SessionExpired, 3);
        assert_eq!(Outcome::decode(&e.encode()).unwrap(), e);
        assert!(Outcome::decode(&Bytes::from_static(b"xx")).is_err());
    }

    #[test]
    fn outcomes_share_a_chunk_and_appends_decode_in_place() {
        let mut chunk = BytesMut::new();
        let outs: Vec<Bytes> = (0..600).map(|i| Outcome::Ok(i, i + 1).encode_in(&mut chunk)).collect();
        for (i, b) in outs.iter().enumerate() {
            assert_eq!(Outcome::decode(b).unwrap(), Outcome::Ok(i as u64, i as u64 + 1));
        }
        let st = Stamped {
            time_ms: 9,
            command: Command::Append {
                stream: "s".into(),
                session: 4,
                seq: 2,
                records: vec![Bytes::from_static(b"ab")],
            },
        };
        let data = st.encode().unwrap();
        let mut records = vec![Bytes::from_static(b"stale")];
        records.clear();
        let v = AppendView::decode(&data, &mut records).unwrap().unwrap();
        assert_eq!((v.time_ms, v.stream(), v.session, v.seq), (9, "s", 4, 2));
        assert_eq!(records, vec![Bytes::from_static(b"ab")]);
        let noop = Stamped { time_ms: 1, command: Command::Noop }.encode().unwrap();
        assert_eq!(AppendView::decode(&noop, &mut records).unwrap(), None);
        let mut bad = data.to_vec();
        bad[10] = 0xff; // the name's length
        assert!(AppendView::decode(&Bytes::from(bad), &mut records).is_err());
        let mut not_utf8 = data.to_vec();
        not_utf8[11] = 0xff; // the name's one byte
        assert!(AppendView::decode(&Bytes::from(not_utf8), &mut records).is_err());
    }
}
