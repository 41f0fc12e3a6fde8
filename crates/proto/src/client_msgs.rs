//! Client bodies (types `0x40`–`0x53`: even = request, odd = its answer)
//! and admin requests (`0x60`–`0x66`, answered by `AdminResponse` `0x67`).
//!
//! Client frames address a stream by name; the frame's group id is 0 (the
//! server routes by name). Admin frames carry the target group in the frame
//! header. Records are opaque bytes: `u32 length` then the bytes, handed out
//! as zero-copy slices of the frame body.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ProtocolError;
use super::frame::{put_len, put_string, Reader};
use super::ids::{LogIndex, Term};
use super::msg_type::MsgType;

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// Append records to a stream; answered with their offsets.
    Append {
        /// Stream name.
        stream: String,
        /// The client session (from `OpenSession`), or 0 for none: without
        /// a session a retried append may be applied twice.
        session: u64,
        /// The append's number within the session (1, 2, ...); a retry
        /// reuses it and gets the first answer back. 0 when `session` is 0.
        seq: u64,
        /// The records, in order.
        records: Vec<Bytes>,
    },
    /// Read committed records from `offset`.
    Read {
        /// Stream name.
        stream: String,
        /// First offset wanted.
        offset: u64,
        /// At most this many records.
        max_records: u32,
        /// At most about this many record bytes (at least one record is
        /// returned if any is available).
        max_bytes: u32,
        /// How fresh the answer must be.
        consistency: ReadConsistency,
    },
    /// Like `Read`, but waits up to `wait_ms` for records at `offset` to be
    /// committed (long poll for `tail -f`).
    Tail {
        /// Stream name.
        stream: String,
        /// First offset wanted (usually the previous answer's `next_offset`).
        offset: u64,
        /// At most this many records.
        max_records: u32,
        /// At most about this many record bytes.
        max_bytes: u32,
        /// How fresh the answer must be.
        consistency: ReadConsistency,
        /// How long to wait for new records, in milliseconds.
        wait_ms: u32,
    },
    /// Discard the stream's records before `before`.
    Trim {
        /// Stream name.
        stream: String,
        /// The new first offset.
        before: u64,
        /// Exactly-once session and sequence number, as for `Append`
        /// (0, 0: none). Optional trailing fields on the wire.
        session: u64,
        /// See `session`.
        seq: u64,
    },
    /// Create a stream.
    CreateStream {
        /// Stream name.
        stream: String,
        /// Exactly-once session and sequence number, as for `Append`
        /// (0, 0: none): a retry gets the first attempt's answer instead of
        /// `StreamExists`. Optional trailing fields on the wire.
        session: u64,
        /// See `session`.
        seq: u64,
    },
    /// Delete a stream and its records.
    DeleteStream {
        /// Stream name.
        stream: String,
        /// Exactly-once session and sequence number, as for `Append`
        /// (0, 0: none): a retry never deletes a stream re-created since.
        /// Optional trailing fields on the wire.
        session: u64,
        /// See `session`.
        seq: u64,
        /// Delete only this incarnation of the stream (its `StreamInfo::
        /// incarnation`); 0: whichever exists. Optional, trailing.
        incarnation: u64,
    },
    /// List every stream.
    ListStreams {
        /// Ask for each stream's incarnation (a trailing `u8` 1 on the
        /// wire; servers before 0.3 do not know it).
        incarnations: bool,
    },
    /// The node's status.
    Status {
        /// Ask for the node's [`Health`] (a trailing `u8` 1 on the wire;
        /// servers before issue 16 do not know it).
        health: bool,
    },
    /// Open an exactly-once session; answered with its id.
    OpenSession,
    /// One chunk of the node's newest snapshot, for a node whose own
    /// service state is lost and which rebuilds it (issue 16). `index` 0
    /// asks for the snapshot the node would send now (its meta comes with
    /// the first chunk); later chunks name `index` and `content` as the
    /// first answer gave them, and are refused if the node no longer has
    /// that snapshot.
    FetchSnapshot {
        /// The snapshot's last index, or 0 for the newest.
        index: u64,
        /// Its content checksum (0 with `index` 0).
        content: u64,
        /// Byte offset of the chunk.
        offset: u64,
        /// With `index` 0: the asking node needs a snapshot at or after
        /// this index; a node whose newest is older starts a newer one and
        /// refuses (`OutOfRange`, ask again).
        at_least: u64,
    },
}

/// How fresh a read must be (a `u8` on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReadConsistency {
    /// Linearizable, served by the leader after a ReadIndex round (the
    /// default). A follower answers `NotLeader`.
    #[default]
    Linearizable = 0,
    /// Served by the leader while its lease holds (no round trip); correct
    /// as long as clock drift stays within the configured bound.
    Lease = 1,
    /// Linearizable, served by whichever node receives it: a follower asks
    /// the leader for a read index and answers once it has applied that far.
    Follower = 2,
}

impl ReadConsistency {
    fn from_u8(b: u8) -> Result<ReadConsistency, ProtocolError> {
        match b {
            0 => Ok(ReadConsistency::Linearizable),
            1 => Ok(ReadConsistency::Lease),
            2 => Ok(ReadConsistency::Follower),
            _ => Err(ProtocolError::Malformed("unknown read consistency")),
        }
    }
}

/// Records returned by `Read` or `Tail`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// Offset of the first record (records are consecutive).
    pub first_offset: u64,
    /// The offset to ask for next.
    pub next_offset: u64,
    /// The records.
    pub records: Vec<Bytes>,
}

/// One stream in a `ListStreams` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// Stream name.
    pub name: String,
    /// The Raft group holding it.
    pub group: u64,
    /// Its first (untrimmed) offset.
    pub first_offset: u64,
    /// The offset the next append gets.
    pub next_offset: u64,
    /// Which stream of that name this is: the log index of the `Create`
    /// that made it, so a re-created stream has another. 0 when the server
    /// did not say (not asked, or a server before 0.3).
    pub incarnation: u64,
}

/// One group in a `Status` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group.
    pub group: u64,
    /// 1 follower, 2 candidate, 3 leader, 4 learner (others: unknown).
    pub role: u8,
    /// Current term.
    pub term: u64,
    /// The leader known, 0 if none.
    pub leader: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Voters of the configuration in force (both halves when joint).
    pub voters: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// Replication to each other member, as the leader sees it (empty on
    /// followers).
    pub peers: Vec<PeerProgress>,
}

/// One member's replication progress in a `Status` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The member.
    pub node: u64,
    /// Highest index known durable there.
    pub matched: u64,
    /// Next index the leader sends it.
    pub next: u64,
}

/// A client answer (errors travel as error frames instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResponse {
    /// The appended records got offsets `first_offset..first_offset+count`.
    Append {
        /// Offset of the first record appended.
        first_offset: u64,
        /// Records appended.
        count: u32,
    },
    /// Records read.
    Read(Records),
    /// Records read by a tail.
    Tail(Records),
    /// The stream now starts at `first_offset`.
    Trim {
        /// The stream's first offset after the trim.
        first_offset: u64,
    },
    /// The stream was created in `group`.
    CreateStream {
        /// The group holding the new stream.
        group: u64,
    },
    /// The stream is deleted.
    DeleteStream,
    /// Every stream.
    ListStreams(Vec<StreamInfo>),
    /// A new session, valid until unused for `ttl_ms` of log time.
    OpenSession {
        /// The session id to put in appends.
        session: u64,
        /// Idle time after which the cluster forgets the session.
        ttl_ms: u64,
    },
    /// This node and its groups.
    Status {
        /// The answering node.
        node_id: u64,
        /// `fdatasync` batches of its log since it started.
        fsyncs: u64,
        /// Log entries those batches wrote.
        entries_written: u64,
        /// AppendEntries messages sent as a leader since start.
        appends_sent: u64,
        /// Entries those messages carried.
        entries_sent: u64,
        /// Its groups.
        groups: Vec<GroupStatus>,
        /// Its health, when the request asked for it (a trailing `u8` of
        /// flags on the wire).
        health: Option<Health>,
    },
    /// A chunk of a snapshot and what the snapshot covers.
    FetchSnapshot {
        /// The snapshot's last index.
        last_index: LogIndex,
        /// The term of the entry at `last_index`.
        last_term: Term,
        /// The membership in force at `last_index`, as the log encodes it
        /// (PROTOCOL.md, InstallSnapshot). Opaque here: the receiver decodes
        /// and checks it.
        membership: Bytes,
        /// The snapshot's content checksum.
        content: u64,
        /// Byte offset of `data`.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// `data` ends the snapshot.
        done: bool,
    },
}

/// What a node says about itself in a `Status` answer, beyond its groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Its disk refuses writes for lack of space (log appends, checkpoints
    /// or, while starting, opening its storage): it serves what needs no
    /// disk and goes on by itself once space returns. Flag bit 0.
    pub disk_full: bool,
    /// Its storage is not open yet (it answers `Status` only; requests get
    /// `NotLeader` with no hint). Flag bit 1.
    pub starting: bool,
}

impl Health {
    fn to_flags(self) -> u8 {
        u8::from(self.disk_full) | (u8::from(self.starting) << 1)
    }

    fn from_flags(f: u8) -> Health {
        Health { disk_full: f & 1 != 0, starting: f & 2 != 0 }
    }
}

/// An admin request (frame group id = the group to change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminRequest {
    /// Add `node` (at `addr`, "host:port", empty if already known) as a voter.
    AddVoter {
        /// Node id.
        node: u64,
        /// Its address.
        addr: String,
    },
    /// Remove voter `node`.
    RemoveVoter {
        /// Node id.
        node: u64,
    },
    /// Add `node` as a learner (or demote a voter to one).
    AddLearner {
        /// Node id.
        node: u64,
        /// Its address.
        addr: String,
    },
    /// Remove learner `node`.
    RemoveLearner {
        /// Node id.
        node: u64,
    },
    /// Replace voters and learners at once (joint consensus).
    ChangePeers {
        /// The new voters.
        voters: Vec<u64>,
        /// The new learners.
        learners: Vec<u64>,
    },
    /// Transfer leadership to `target` (0: the best-caught-up voter).
    TransferLeader {
        /// Node id or 0.
        target: u64,
    },
    /// Take a snapshot now.
    Snapshot,
}

/// The body of an `Append` request, from borrowed parts.
pub(crate) fn put_append(
    out: &mut BytesMut,
    stream: &str,
    session: u64,
    seq: u64,
    records: &[Bytes],
) -> Result<(), ProtocolError> {
    put_string(out, stream)?;
    out.put_u64_le(session);
    out.put_u64_le(seq);
    put_records(out, records)
}

fn put_records(out: &mut BytesMut, records: &[Bytes]) -> Result<(), ProtocolError> {
    put_len(out, records.len())?;
    for r in records {
        put_len(out, r.len())?;
        out.put_slice(r);
    }
    Ok(())
}

fn get_records(r: &mut Reader) -> Result<Vec<Bytes>, ProtocolError> {
    let n = r.count(4)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u32()? as usize;
        v.push(r.bytes(len)?);
    }
    Ok(v)
}

fn put_ids(out: &mut BytesMut, ids: &[u64]) -> Result<(), ProtocolError> {
    put_len(out, ids.len())?;
    for id in ids {
        out.put_u64_le(*id);
    }
    Ok(())
}

fn get_ids(r: &mut Reader) -> Result<Vec<u64>, ProtocolError> {
    let n = r.count(8)?;
    (0..n).map(|_| r.u64()).collect()
}

impl Records {
    fn encode(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        out.put_u64_le(self.first_offset);
        out.put_u64_le(self.next_offset);
        put_records(out, &self.records)
    }

    fn decode(r: &mut Reader) -> Result<Records, ProtocolError> {
        Ok(Records { first_offset: r.u64()?, next_offset: r.u64()?, records: get_records(r)? })
    }
}

impl ClientRequest {
    /// The frame type of this request.
    pub fn msg_type(&self) -> MsgType {
        match self {
            ClientRequest::Append { .. } => MsgType::Append,
            ClientRequest::Read { .. } => MsgType::Read,
            ClientRequest::Tail { .. } => MsgType::Tail,
            ClientRequest::Trim { .. } => MsgType::Trim,
            ClientRequest::CreateStream { .. } => MsgType::CreateStream,
            ClientRequest::DeleteStream { .. } => MsgType::DeleteStream,
            ClientRequest::ListStreams { .. } => MsgType::ListStreams,
            ClientRequest::Status { .. } => MsgType::Status,
            ClientRequest::OpenSession => MsgType::OpenSession,
            ClientRequest::FetchSnapshot { .. } => MsgType::FetchSnapshot,
        }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            ClientRequest::Append { stream, session, seq, records } => {
                put_append(out, stream, *session, *seq, records)?;
            }
            ClientRequest::Read { stream, offset, max_records, max_bytes, consistency } => {
                put_string(out, stream)?;
                out.put_u64_le(*offset);
                out.put_u32_le(*max_records);
                out.put_u32_le(*max_bytes);
                out.put_u8(*consistency as u8);
            }
            ClientRequest::Tail { stream, offset, max_records, max_bytes, consistency, wait_ms } => {
                put_string(out, stream)?;
                out.put_u64_le(*offset);
                out.put_u32_le(*max_records);
                out.put_u32_le(*max_bytes);
                out.put_u8(*consistency as u8);
                out.put_u32_le(*wait_ms);
            }
            // The session fields (and the incarnation) trail the older
            // layout and are left out when 0, so an older server still
            // understands a request that does not use them.
            ClientRequest::Trim { stream, before, session, seq } => {
                put_string(out, stream)?;
                out.put_u64_le(*before);
                put_session(out, *session, *seq, None);
            }
            ClientRequest::CreateStream { stream, session, seq } => {
                put_string(out, stream)?;
                put_session(out, *session, *seq, None);
            }
            ClientRequest::DeleteStream { stream, session, seq, incarnation } => {
                put_string(out, stream)?;
                put_session(out, *session, *seq, Some(*incarnation));
            }
            ClientRequest::ListStreams { incarnations } => {
                if *incarnations {
                    out.put_u8(1);
                }
            }
            ClientRequest::Status { health } => {
                if *health {
                    out.put_u8(1);
                }
            }
            ClientRequest::OpenSession => {}
            ClientRequest::FetchSnapshot { index, content, offset, at_least } => {
                out.put_u64_le(*index);
                out.put_u64_le(*content);
                out.put_u64_le(*offset);
                out.put_u64_le(*at_least);
            }
        }
        Ok(())
    }

    pub(crate) fn decode(t: MsgType, r: &mut Reader) -> Result<ClientRequest, ProtocolError> {
        Ok(match t {
            MsgType::Append => ClientRequest::Append {
                stream: r.string()?,
                session: r.u64()?,
                seq: r.u64()?,
                records: get_records(r)?,
            },
            MsgType::Read => ClientRequest::Read {
                stream: r.string()?,
                offset: r.u64()?,
                max_records: r.u32()?,
                max_bytes: r.u32()?,
                consistency: ReadConsistency::from_u8(r.u8()?)?,
            },
            MsgType::Tail => ClientRequest::Tail {
                stream: r.string()?,
                offset: r.u64()?,
                max_records: r.u32()?,
                max_bytes: r.u32()?,
                consistency: ReadConsistency::from_u8(r.u8()?)?,
                wait_ms: r.u32()?,
            },
            MsgType::Trim => {
                let (stream, before) = (r.string()?, r.u64()?);
                let (session, seq, _) = get_session(r, false)?;
                ClientRequest::Trim { stream, before, session, seq }
            }
            MsgType::CreateStream => {
                let stream = r.string()?;
                let (session, seq, _) = get_session(r, false)?;
                ClientRequest::CreateStream { stream, session, seq }
            }
            MsgType::DeleteStream => {
                let stream = r.string()?;
                let (session, seq, incarnation) = get_session(r, true)?;
                ClientRequest::DeleteStream { stream, session, seq, incarnation }
            }
            MsgType::ListStreams => {
                let incarnations = r.remaining() > 0 && r.u8()? == 1;
                ClientRequest::ListStreams { incarnations }
            }
            MsgType::Status => ClientRequest::Status { health: r.remaining() > 0 && r.u8()? == 1 },
            MsgType::OpenSession => ClientRequest::OpenSession,
            MsgType::FetchSnapshot => ClientRequest::FetchSnapshot {
                index: r.u64()?,
                content: r.u64()?,
                offset: r.u64()?,
                at_least: r.u64()?,
            },
            _ => return Err(ProtocolError::UnknownType(t as u8)),
        })
    }
}

/// Writes the optional trailing `session u64 · seq u64` (and, for a
/// delete, `incarnation u64`), or nothing when they are all 0.
fn put_session(out: &mut BytesMut, session: u64, seq: u64, incarnation: Option<u64>) {
    if session == 0 && seq == 0 && incarnation.unwrap_or(0) == 0 {
        return;
    }
    out.put_u64_le(session);
    out.put_u64_le(seq);
    if let Some(i) = incarnation {
        out.put_u64_le(i);
    }
}

/// Reads what [`put_session`] wrote: all of it or nothing (0s).
fn get_session(r: &mut Reader, incarnation: bool) -> Result<(u64, u64, u64), ProtocolError> {
    if r.remaining() == 0 {
        return Ok((0, 0, 0));
    }
    let (session, seq) = (r.u64()?, r.u64()?);
    let inc = if incarnation { r.u64()? } else { 0 };
    Ok((session, seq, inc))
}

impl ClientResponse {
    /// The frame type of this answer.
    pub fn msg_type(&self) -> MsgType {
        match self {
            ClientResponse::Append { .. } => MsgType::AppendResponse,
            ClientResponse::Read(_) => MsgType::ReadResponse,
            ClientResponse::Tail(_) => MsgType::TailResponse,
            ClientResponse::Trim { .. } => MsgType::TrimResponse,
            ClientResponse::CreateStream { .. } => MsgType::CreateStreamResponse,
            ClientResponse::DeleteStream => MsgType::DeleteStreamResponse,
            ClientResponse::ListStreams(_) => MsgType::ListStreamsResponse,
            ClientResponse::Status { .. } => MsgType::StatusResponse,
            ClientResponse::OpenSession { .. } => MsgType::OpenSessionResponse,
            ClientResponse::FetchSnapshot { .. } => MsgType::FetchSnapshotResponse,
        }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            ClientResponse::Append { first_offset, count } => {
                out.put_u64_le(*first_offset);
                out.put_u32_le(*count);
            }
            ClientResponse::Read(rs) | ClientResponse::Tail(rs) => rs.encode(out)?,
            ClientResponse::Trim { first_offset } => out.put_u64_le(*first_offset),
            ClientResponse::CreateStream { group } => out.put_u64_le(*group),
            ClientResponse::DeleteStream => {}
            ClientResponse::OpenSession { session, ttl_ms } => {
                out.put_u64_le(*session);
                out.put_u64_le(*ttl_ms);
            }
            ClientResponse::FetchSnapshot { last_index, last_term, membership, content, offset, data, done } => {
                out.put_u64_le(last_index.0);
                out.put_u64_le(last_term.0);
                put_len(out, membership.len())?;
                out.put_slice(membership);
                out.put_u64_le(*content);
                out.put_u64_le(*offset);
                out.put_u8(u8::from(*done));
                put_len(out, data.len())?;
                out.put_slice(data);
            }
            ClientResponse::ListStreams(v) => {
                put_len(out, v.len())?;
                for s in v {
                    put_string(out, &s.name)?;
                    out.put_u64_le(s.group);
                    out.put_u64_le(s.first_offset);
                    out.put_u64_le(s.next_offset);
                }
                // Incarnations trail the list, one per stream, only when
                // asked for (an older client reads no further).
                if v.iter().any(|s| s.incarnation != 0) {
                    for s in v {
                        out.put_u64_le(s.incarnation);
                    }
                }
            }
            ClientResponse::Status { node_id, fsyncs, entries_written, appends_sent, entries_sent, groups, health } => {
                out.put_u64_le(*node_id);
                out.put_u64_le(*fsyncs);
                out.put_u64_le(*entries_written);
                out.put_u64_le(*appends_sent);
                out.put_u64_le(*entries_sent);
                put_len(out, groups.len())?;
                for g in groups {
                    out.put_u64_le(g.group);
                    out.put_u8(g.role);
                    out.put_u64_le(g.term);
                    out.put_u64_le(g.leader);
                    out.put_u64_le(g.commit);
                    out.put_u64_le(g.applied);
                    out.put_u64_le(g.last_index);
                    put_ids(out, &g.voters)?;
                    put_ids(out, &g.learners)?;
                    put_len(out, g.peers.len())?;
                    for p in &g.peers {
                        out.put_u64_le(p.node);
                        out.put_u64_le(p.matched);
                        out.put_u64_le(p.next);
                    }
                }
                // Only when asked for: an older client reads no further.
                if let Some(h) = health {
                    out.put_u8(h.to_flags());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn decode(t: MsgType, r: &mut Reader) -> Result<ClientResponse, ProtocolError> {
        Ok(match t {
            MsgType::AppendResponse => ClientResponse::Append { first_offset: r.u64()?, count: r.u32()? },
            MsgType::ReadResponse => ClientResponse::Read(Records::decode(r)?),
            MsgType::TailResponse => ClientResponse::Tail(Records::decode(r)?),
            MsgType::TrimResponse => ClientResponse::Trim { first_offset: r.u64()? },
            MsgType::CreateStreamResponse => ClientResponse::CreateStream { group: r.u64()? },
            MsgType::DeleteStreamResponse => ClientResponse::DeleteStream,
            MsgType::OpenSessionResponse => ClientResponse::OpenSession { session: r.u64()?, ttl_ms: r.u64()? },
            MsgType::FetchSnapshotResponse => {
                let last_index = LogIndex(r.u64()?);
                let last_term = Term(r.u64()?);
                let mlen = r.u32()? as usize;
                let membership = r.bytes(mlen)?;
                let content = r.u64()?;
                let offset = r.u64()?;
                let done = r.bool()?;
                let dlen = r.u32()? as usize;
                let data = r.bytes(dlen)?;
                ClientResponse::FetchSnapshot { last_index, last_term, membership, content, offset, data, done }
            }
            MsgType::ListStreamsResponse => {
                let n = r.count(26)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(StreamInfo {
                        name: r.string()?,
                        group: r.u64()?,
                        first_offset: r.u64()?,
                        next_offset: r.u64()?,
                        incarnation: 0,
                    });
                }
                if r.remaining() > 0 {
                    for s in v.iter_mut() {
                        s.incarnation = r.u64()?;
                    }
                }
                ClientResponse::ListStreams(v)
            }
            MsgType::StatusResponse => {
                let node_id = r.u64()?;
                let fsyncs = r.u64()?;
                let entries_written = r.u64()?;
                let appends_sent = r.u64()?;
                let entries_sent = r.u64()?;
                let n = r.count(61)?;
                let mut groups = Vec::with_capacity(n);
                for _ in 0..n {
                    groups.push(GroupStatus {
                        group: r.u64()?,
                        role: r.u8()?,
                        term: r.u64()?,
                        leader: r.u64()?,
                        commit: r.u64()?,
                        applied: r.u64()?,
                        last_index: r.u64()?,
                        voters: get_ids(r)?,
                        learners: get_ids(r)?,
                        peers: {
                            let n = r.count(24)?;
                            let mut v = Vec::with_capacity(n);
                            for _ in 0..n {
                                v.push(PeerProgress { node: r.u64()?, matched: r.u64()?, next: r.u64()? });
                            }
                            v
                        },
                    });
                }
                let health = if r.remaining() > 0 { Some(Health::from_flags(r.u8()?)) } else { None };
                ClientResponse::Status { node_id, fsyncs, entries_written, appends_sent, entries_sent, groups, health }
            }
            _ => return Err(ProtocolError::UnknownType(t as u8)),
        })
    }
}

impl AdminRequest {
    /// The frame type of this request.
    pub fn msg_type(&self) -> MsgType {
        match self {
            AdminRequest::AddVoter { .. } => MsgType::AddVoter,
            AdminRequest::RemoveVoter { .. } => MsgType::RemoveVoter,
            AdminRequest::AddLearner { .. } => MsgType::AddLearner,
            AdminRequest::RemoveLearner { .. } => MsgType::RemoveLearner,
            AdminRequest::ChangePeers { .. } => MsgType::ChangePeers,
            AdminRequest::TransferLeader { .. } => MsgType::TransferLeader,
            AdminRequest::Snapshot => MsgType::Snapshot,
        }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            AdminRequest::AddVoter { node, addr } | AdminRequest::AddLearner { node, addr } => {
                out.put_u64_le(*node);
                put_string(out, addr)?;
            }
            AdminRequest::RemoveVoter { node } | AdminRequest::RemoveLearner { node } => out.put_u64_le(*node),
            AdminRequest::ChangePeers { voters, learners } => {
                put_ids(out, voters)?;
                put_ids(out, learners)?;
            }
            AdminRequest::TransferLeader { target } => out.put_u64_le(*target),
            AdminRequest::Snapshot => {}
        }
        Ok(())
    }

    pub(crate) fn decode(t: MsgType, r: &mut Reader) -> Result<AdminRequest, ProtocolError> {
        Ok(match t {
            MsgType::AddVoter => AdminRequest::AddVoter { node: r.u64()?, addr: r.string()? },
            MsgType::RemoveVoter => AdminRequest::RemoveVoter { node: r.u64()? },
            MsgType::AddLearner => AdminRequest::AddLearner { node: r.u64()?, addr: r.string()? },
            MsgType::RemoveLearner => AdminRequest::RemoveLearner { node: r.u64()? },
            MsgType::ChangePeers => AdminRequest::ChangePeers { voters: get_ids(r)?, learners: get_ids(r)? },
            MsgType::TransferLeader => AdminRequest::TransferLeader { target: r.u64()? },
            MsgType::Snapshot => AdminRequest::Snapshot,
            _ => return Err(ProtocolError::UnknownType(t as u8)),
        })
    }
}
