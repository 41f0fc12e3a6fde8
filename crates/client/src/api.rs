//! The blocking calls of [`Client`]: streams (append, read, tail, trim,
//! create, delete, list), status and admin requests. Each builds its request,
//! runs it through the retry loop in `route.rs` and unpacks the answer.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::conn::Conn;
use super::error::ClientError;
use super::route::{unexpected, Client, Route, Session};
use super::{AdminAck, AppendAck, ClientConfig, Status};
use ringraft_proto::{
    AdminRequest, Body, ClientRequest, ClientResponse, Packet, ReadConsistency, Records, Role, StreamInfo,
};
use ringraft_proto::{GroupId, LogIndex, Term};

impl Client {
    /// Appends `records` to `stream` at the leader; they get consecutive
    /// offsets. With `exactly_once` the append carries the session and its
    /// sequence number, so retries inside the call are never applied twice.
    ///
    /// # Errors
    /// `Timeout` when the deadline passed with the outcome unknown (the
    /// append may still commit; without exactly-once it may also be applied
    /// twice if re-sent), `SessionExpired`, `UnknownStream`, `TooLarge`,
    /// `NotLeader`/`Busy` if those persisted until the deadline, `NoServer`.
    pub fn append(&mut self, stream: &str, records: Vec<Bytes>) -> Result<AppendAck, ClientError> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        let (session, seq) = self.next_seq(deadline)?;
        let req = ClientRequest::Append { stream: stream.to_owned(), session, seq, records };
        match self.call(0, Body::ClientRequest(req), Route::Leader, session != 0, deadline)? {
            Body::ClientResponse(ClientResponse::Append { first_offset, count }) => {
                Ok(AppendAck { first_offset, count })
            }
            other => Err(unexpected("AppendResponse", &other)),
        }
    }

    /// The `(session, seq)` for the next append: `(0, 0)` without
    /// exactly-once; else from the session, opening one first if needed.
    pub(crate) fn next_seq(&mut self, deadline: Instant) -> Result<(u64, u64), ClientError> {
        if !self.cfg.exactly_once {
            return Ok((0, 0));
        }
        let mut s = match self.session {
            Some(s) => s,
            None => self.open_session(deadline)?,
        };
        let seq = s.next_seq;
        s.next_seq += 1;
        self.session = Some(s);
        Ok((s.id, seq))
    }

    fn open_session(&mut self, deadline: Instant) -> Result<Session, ClientError> {
        match self.call(0, Body::ClientRequest(ClientRequest::OpenSession), Route::Leader, true, deadline)? {
            Body::ClientResponse(ClientResponse::OpenSession { session, ttl_ms }) => {
                log::debug!("client: opened session {session} (ttl {ttl_ms} ms)");
                Ok(Session { id: session, next_seq: 1 })
            }
            other => Err(unexpected("OpenSessionResponse", &other)),
        }
    }

    /// Reads up to `max_records` committed records (about `max_bytes` at
    /// most, but at least one if any) of `stream` from `offset`.
    /// `ReadConsistency::Follower` reads are served by whichever node is
    /// connected; the others go to the leader.
    ///
    /// # Errors
    /// `OutOfRange` (trimmed away or beyond the tail), `UnknownStream`,
    /// `Timeout`, `NotLeader`/`Busy` if those persisted, `NoServer`.
    pub fn read(
        &mut self,
        stream: &str,
        offset: u64,
        max_records: u32,
        max_bytes: u32,
        consistency: ReadConsistency,
    ) -> Result<Records, ClientError> {
        let route = if consistency == ReadConsistency::Follower { Route::Any } else { Route::Leader };
        let req = ClientRequest::Read { stream: stream.to_owned(), offset, max_records, max_bytes, consistency };
        match self.request(req, route)? {
            Body::ClientResponse(ClientResponse::Read(r)) => Ok(r),
            other => Err(unexpected("ReadResponse", &other)),
        }
    }

    /// Like [`Client::read`] (linearizable), but the leader may hold the
    /// request up to `wait` for records to arrive at `offset` (long poll).
    /// No records means the wait expired. The call's deadline is `wait`
    /// plus `request_timeout`.
    ///
    /// # Errors
    /// As [`Client::read`].
    pub fn tail(
        &mut self,
        stream: &str,
        offset: u64,
        max_records: u32,
        max_bytes: u32,
        wait: Duration,
    ) -> Result<Records, ClientError> {
        let deadline = Instant::now() + wait + self.cfg.request_timeout;
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        let req = ClientRequest::Tail {
            stream: stream.to_owned(),
            offset,
            max_records,
            max_bytes,
            consistency: ReadConsistency::Linearizable,
            wait_ms,
        };
        match self.call(0, Body::ClientRequest(req), Route::Leader, true, deadline)? {
            Body::ClientResponse(ClientResponse::Tail(r) | ClientResponse::Read(r)) => Ok(r),
            other => Err(unexpected("TailResponse", &other)),
        }
    }

    /// Runs a write that changes a stream (trim, create, delete) at the
    /// leader. With `exactly_once` it carries the session and a sequence
    /// number, so the retries inside the call are applied once at most (a
    /// retry gets the first attempt's answer); without, a request whose
    /// connection broke after it was sent is not re-sent (`Timeout`).
    fn stream_write(&mut self, make: impl FnOnce(u64, u64) -> ClientRequest) -> Result<Body, ClientError> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        let (session, seq) = self.next_seq(deadline)?;
        self.call(0, Body::ClientRequest(make(session, seq)), Route::Leader, session != 0, deadline)
    }

    /// Discards the records of `stream` before offset `before`; returns the
    /// stream's first offset afterwards.
    ///
    /// # Errors
    /// `UnknownStream`, `OutOfRange` (beyond the tail), `SessionExpired`,
    /// `Timeout`, `NoServer`.
    pub fn trim(&mut self, stream: &str, before: u64) -> Result<u64, ClientError> {
        let stream = stream.to_owned();
        match self.stream_write(|session, seq| ClientRequest::Trim { stream, before, session, seq })? {
            Body::ClientResponse(ClientResponse::Trim { first_offset }) => Ok(first_offset),
            other => Err(unexpected("TrimResponse", &other)),
        }
    }

    /// Creates `stream`; returns the Raft group that holds it. A retry
    /// inside the call after a lost answer gets the first attempt's answer
    /// (with `exactly_once`).
    ///
    /// # Errors
    /// `StreamExists`, `BadRequest` (bad name), `SessionExpired`,
    /// `Timeout`, `NoServer`.
    pub fn create_stream(&mut self, stream: &str) -> Result<u64, ClientError> {
        let stream = stream.to_owned();
        match self.stream_write(|session, seq| ClientRequest::CreateStream { stream, session, seq })? {
            Body::ClientResponse(ClientResponse::CreateStream { group }) => Ok(group),
            other => Err(unexpected("CreateStreamResponse", &other)),
        }
    }

    /// Deletes `stream` and its records, whichever incarnation exists. A
    /// retry inside the call after a lost answer never deletes a stream
    /// created again since (with `exactly_once`).
    ///
    /// # Errors
    /// `UnknownStream`, `SessionExpired`, `Timeout`, `NoServer`.
    pub fn delete_stream(&mut self, stream: &str) -> Result<(), ClientError> {
        self.delete_stream_incarnation(stream, 0)
    }

    /// Deletes `stream` only if it is still the incarnation
    /// [`Client::list_streams`] showed (`StreamInfo::incarnation`; 0: any):
    /// a stream deleted and created again by someone else is left alone.
    ///
    /// # Errors
    /// `UnknownStream` (none of that name, or another incarnation),
    /// `SessionExpired`, `Timeout`, `NoServer`.
    pub fn delete_stream_incarnation(&mut self, stream: &str, incarnation: u64) -> Result<(), ClientError> {
        let stream = stream.to_owned();
        match self.stream_write(|session, seq| ClientRequest::DeleteStream { stream, session, seq, incarnation })? {
            Body::ClientResponse(ClientResponse::DeleteStream) => Ok(()),
            other => Err(unexpected("DeleteStreamResponse", &other)),
        }
    }

    /// Every stream, with its group, offsets and incarnation.
    ///
    /// # Errors
    /// `Timeout`, `NotLeader` if no leader emerged, `NoServer`.
    pub fn list_streams(&mut self) -> Result<Vec<StreamInfo>, ClientError> {
        match self.request(ClientRequest::ListStreams { incarnations: true }, Route::Leader)? {
            Body::ClientResponse(ClientResponse::ListStreams(v)) => Ok(v),
            other => Err(unexpected("ListStreamsResponse", &other)),
        }
    }

    /// The status of the node this client is connected to (connecting first
    /// if needed; never redirected).
    ///
    /// # Errors
    /// `Timeout`, `Io` (the connection broke), `NoServer`.
    pub fn status(&mut self) -> Result<Status, ClientError> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        let answer =
            self.call(0, Body::ClientRequest(ClientRequest::Status { health: true }), Route::Here, true, deadline)?;
        status_from(answer)
    }

    /// The status of the server at `addr` (one connection, no redirect,
    /// bounded by `connect_timeout` + `request_timeout`).
    ///
    /// # Errors
    /// As [`probe_status`].
    pub fn status_of(&self, addr: &str) -> Result<Status, ClientError> {
        probe_status(&self.cfg, addr)
    }

    /// Sends an admin request for `group` to its leader. Needs a client
    /// configured with `Role::Admin` and the admin token.
    ///
    /// # Errors
    /// `BadRequest` if the client's role is not Admin or the server refused
    /// a value, `Server` for `ConfChangeInProgress` / `UnknownGroup`,
    /// `Unauthorized`, `Timeout` (the change may still take effect),
    /// `NoServer`.
    pub fn admin(&mut self, group: u64, req: AdminRequest) -> Result<AdminAck, ClientError> {
        if self.cfg.role != Role::Admin {
            return Err(ClientError::BadRequest("admin requests need a client with Role::Admin".into()));
        }
        let deadline = Instant::now() + self.cfg.request_timeout;
        match self.call(group, Body::Admin(req), Route::Leader, true, deadline)? {
            Body::AdminResponse { index, leader } => Ok(AdminAck { index, leader }),
            other => Err(unexpected("AdminResponse", &other)),
        }
    }
}

fn status_from(answer: Body) -> Result<Status, ClientError> {
    match answer {
        Body::ClientResponse(ClientResponse::Status {
            node_id,
            fsyncs,
            entries_written,
            appends_sent,
            entries_sent,
            groups,
            health,
        }) => Ok(Status { node_id, fsyncs, entries_written, appends_sent, entries_sent, groups, health }),
        other => Err(unexpected("StatusResponse", &other)),
    }
}

/// Asks the one server at `addr` for its status, on a connection of its own
/// made with `cfg`'s identity (no client needed, so it works while other
/// servers are down). The node's health is asked for; a server of a release
/// before it (which refuses the request's trailing flag and closes the
/// connection) is asked again without it, and its `health` is `None`.
///
/// # Errors
/// `Io`/`Timeout` if the server is unreachable or silent, the server's
/// refusal (`Unauthorized`, `WrongCluster`), or its error frame.
pub fn probe_status(cfg: &ClientConfig, addr: &str) -> Result<Status, ClientError> {
    match probe(cfg, addr, true) {
        Ok(s) => Ok(s),
        // Connected, then refused or cut off: perhaps an older server.
        Err((e, true)) if !matches!(e, ClientError::Timeout) => {
            probe(cfg, addr, false).map_err(|(e2, _)| if matches!(e2, ClientError::Io(_)) { e } else { e2 })
        }
        Err((e, _)) => Err(e),
    }
}

/// One status request; the error says whether the handshake had passed.
fn probe(cfg: &ClientConfig, addr: &str, health: bool) -> Result<Status, (ClientError, bool)> {
    let deadline = Instant::now() + cfg.connect_timeout + cfg.request_timeout;
    let mut conn = Conn::open(addr, usize::MAX, cfg, deadline).map_err(|e| (e, false))?;
    let id = 2; // The handshake used request id 1 on this connection.
    let body = Body::ClientRequest(ClientRequest::Status { health });
    conn.queue(&Packet { group: GroupId(0), request_id: id, body }).map_err(|e| (e, true))?;
    conn.flush(deadline).map_err(|e| (e, true))?;
    loop {
        let p = conn.recv(deadline).map_err(|e| (e, true))?;
        if p.request_id != id && !matches!(p.body, Body::Error(_)) {
            continue;
        }
        return match p.body {
            Body::Error(e) => Err((ClientError::from_frame(&e), true)),
            other => status_from(other).map_err(|e| (e, true)),
        };
    }
}

/// A chunk of a peer's snapshot, as [`SnapshotFetch::chunk`] returns it.
pub struct FetchedChunk {
    /// The snapshot's last index.
    pub last_index: LogIndex,
    /// The term of the entry at `last_index`.
    pub last_term: Term,
    /// The membership at `last_index` as the log encodes it (the engine's
    /// `storage::record::decode_membership` reads it).
    pub membership: Bytes,
    /// The snapshot's content checksum.
    pub content: u64,
    /// The chunk.
    pub data: Bytes,
    /// `data` ends the snapshot.
    pub done: bool,
}

/// Fetches one server's snapshot chunk by chunk over one connection (a
/// node rebuilding its service state; `ClientRequest::FetchSnapshot`).
pub struct SnapshotFetch {
    conn: Conn,
    next_id: u64,
    timeout: Duration,
}

impl SnapshotFetch {
    /// Connects to `addr` with `cfg`'s identity.
    ///
    /// # Errors
    /// As [`probe_status`].
    pub fn connect(cfg: &ClientConfig, addr: &str) -> Result<SnapshotFetch, ClientError> {
        let deadline = Instant::now() + cfg.connect_timeout;
        let conn = Conn::open(addr, usize::MAX, cfg, deadline)?;
        Ok(SnapshotFetch { conn, next_id: 2, timeout: cfg.request_timeout })
    }

    /// The chunk at `offset` of snapshot `index` (0: the server's newest,
    /// whose meta comes back) with `content` (0 with index 0).
    ///
    /// # Errors
    /// The server's refusal (the snapshot changed or is gone: start again
    /// from index 0), `Io`, `Timeout`.
    pub fn chunk(&mut self, index: u64, content: u64, offset: u64, at_least: u64) -> Result<FetchedChunk, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let id = self.next_id;
        self.next_id += 1;
        let body = Body::ClientRequest(ClientRequest::FetchSnapshot { index, content, offset, at_least });
        self.conn.queue(&Packet { group: GroupId(0), request_id: id, body })?;
        self.conn.flush(deadline)?;
        loop {
            let p = self.conn.recv(deadline)?;
            if p.request_id != id {
                continue;
            }
            return match p.body {
                Body::Error(e) => Err(ClientError::from_frame(&e)),
                Body::ClientResponse(ClientResponse::FetchSnapshot {
                    last_index,
                    last_term,
                    membership,
                    content,
                    offset: at,
                    data,
                    done,
                }) => {
                    if at != offset {
                        return Err(ClientError::BadRequest(format!("asked for offset {offset}, got {at}")));
                    }
                    Ok(FetchedChunk { last_index, last_term, membership, content, data, done })
                }
                other => Err(unexpected("FetchSnapshotResponse", &other)),
            };
        }
    }
}
