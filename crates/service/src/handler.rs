//! The service's front end, on the transport's I/O thread: checks client
//! and admin requests, turns writes into proposals and reads into read-index
//! rounds, and answers through the transport when the node calls back.
//!
//! Nothing here blocks: a proposal or a read is published into the node's
//! intake ring (a full ring answers `Busy` at once), and the answer is
//! written by whichever thread completes it (the FSM caller for writes and
//! reads, the core for status and membership) through the transport's
//! queue. Requests that need the leader are refused with `NotLeader` and
//! the leader's id at once when this node knows it is not the leader.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;

use super::command::{Command, Outcome, Stamped};
use super::health::NodeHealth;
use super::log_clock::{LogClock, LogTimeSeen};
use super::machine::{Refusal, ServiceState, SERVICE_GROUP};
use super::snapshot_store::ServiceSnapshots;
use ringraft::core::{ConfChange, GroupId, NodeId, ProposeError, ReadMode, Role as RaftRole, SnapshotMeta};
use ringraft::node::{GroupStatus as NodeGroupStatus, NodeError, NodeHandle, RoleWatch, SnapshotStore, StatsSource};
use ringraft::pipeline::completion::Callback;
use ringraft::pipeline::net::RaftHandler;
use ringraft::rpc::transport::{ConnId, Ctx, Handler, Remote, TransportHandle};
use ringraft::rpc::{
    AdminRequest, Body, ClientRequest, ClientResponse, ErrorCode, ErrorFrame, GroupStatus, Packet, PeerProgress,
    ReadConsistency, Records, Role, StreamInfo,
};
use ringraft::timer::HashedWheelTimer;

/// Longest stream name, in bytes.
pub const STREAM_NAME_MAX: usize = 255;
/// Most records one read returns.
pub const READ_RECORDS_MAX: usize = 10_000;
/// About the most record bytes one read returns.
pub const READ_BYTES_MAX: usize = 4 << 20;
/// Longest long-poll wait.
pub const TAIL_WAIT_MAX: Duration = Duration::from_secs(60);

/// Limits and defaults the front end applies.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest record.
    pub max_record_bytes: u32,
    /// Largest append (all its records).
    pub max_append_bytes: u32,
    /// Session ttl written into `OpenSession` commands.
    pub session_ttl_ms: u64,
    /// Retention given to new streams.
    pub retention_bytes: u64,
    /// Retention given to new streams.
    pub retention_age_ms: u64,
}

/// What the front end needs once the node runs.
pub(crate) struct Wired {
    pub node: NodeHandle,
    pub watch: Arc<RoleWatch>,
    pub state: Arc<Mutex<ServiceState>>,
    pub out: TransportHandle,
    pub timer: Arc<HashedWheelTimer>,
    pub stats: StatsSource,
    pub limits: Limits,
    /// Makes the log time of this node's proposals.
    pub log_clock: LogClock,
    /// The log time this node applied, and when.
    pub log_time_seen: Arc<LogTimeSeen>,
    /// Disk full and the like, for `Status`.
    pub health: Arc<NodeHealth>,
    /// The service's snapshots, for `FetchSnapshot`.
    pub snapshots: Arc<ServiceSnapshots>,
    /// The metas of the snapshots a `FetchSnapshot` started on, by index
    /// (a later chunk names only the index).
    pub fetched: Arc<Mutex<hashbrown::HashMap<u64, SnapshotMeta>>>,
}

/// Bytes in one `FetchSnapshot` answer.
const FETCH_CHUNK: usize = 1 << 20;

/// `FetchSnapshot` chunks being read at once (each on a thread of its own);
/// more are answered `Busy`.
const FETCHES_MAX: usize = 2;

/// The `FetchSnapshot` readers running now.
static FETCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The transport handler of a server: peer frames to the node, client and
/// admin frames to the service.
pub(crate) struct ServerHandler {
    pub raft: RaftHandler,
    /// Filled by the server once the node has started.
    pub slot: Arc<Mutex<Option<Wired>>>,
    wired: Option<Wired>,
    /// This node's id and health, for the `Status` answered before then.
    node_id: u64,
    health: Arc<NodeHealth>,
}

impl ServerHandler {
    pub(crate) fn new(
        raft: RaftHandler,
        slot: Arc<Mutex<Option<Wired>>>,
        node_id: u64,
        health: Arc<NodeHealth>,
    ) -> ServerHandler {
        ServerHandler { raft, slot, wired: None, node_id, health }
    }

    /// Answers a request that arrives before the storage is open: `Status`
    /// (no groups, the health); everything else `NotLeader` with no hint,
    /// which sends a client on to another server (this node cannot serve
    /// anything yet, however long its disk stays full).
    fn while_starting(&self, ctx: &mut Ctx, from: &Remote, packet: Packet) {
        let health = self.health.get(false);
        let p = match packet.body {
            Body::ClientRequest(ClientRequest::Status { health: want }) => answer(
                packet.request_id,
                ClientResponse::Status {
                    node_id: self.node_id,
                    fsyncs: 0,
                    entries_written: 0,
                    appends_sent: 0,
                    entries_sent: 0,
                    groups: Vec::new(),
                    health: want.then_some(health),
                },
            ),
            _ if health.disk_full => error(
                packet.group.0,
                packet.request_id,
                ErrorCode::NotLeader,
                0,
                "the node is starting: its disk is full (no space left on device); it goes on once space is freed",
            ),
            _ => error(packet.group.0, packet.request_id, ErrorCode::NotLeader, 0, "the node is starting"),
        };
        ctx.reply(from.conn, p);
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn error(group: u64, request_id: u64, code: ErrorCode, hint: u64, msg: impl Into<String>) -> Packet {
    Packet { group: GroupId(group), request_id, body: Body::Error(ErrorFrame::new(code, hint, msg)) }
}

fn answer(request_id: u64, r: ClientResponse) -> Packet {
    Packet { group: GroupId(0), request_id, body: Body::ClientResponse(r) }
}

/// Where and how to answer one request from another thread.
#[derive(Clone)]
struct ReplyTo {
    out: TransportHandle,
    conn: ConnId,
    request_id: u64,
    group: u64,
    watch: Arc<RoleWatch>,
}

impl ReplyTo {
    fn send(&self, p: Packet) {
        super::outbox::send(&self.out, self.conn, &p);
    }

    fn ok(&self, r: ClientResponse) {
        self.send(answer(self.request_id, r));
    }

    fn refuse(&self, (code, msg): Refusal) {
        let hint = if code == ErrorCode::NotLeader { self.watch.leader().map_or(0, |l| l.0) } else { 0 };
        self.send(error(self.group, self.request_id, code, hint, msg));
    }

    fn node_error(&self, e: NodeError) {
        self.refuse(refusal_of(&e));
    }
}

/// The wire refusal for a node error.
fn refusal_of(e: &NodeError) -> Refusal {
    let code = match e {
        NodeError::Busy => ErrorCode::Busy,
        // Dropped: overwritten by a new leader, certainly not applied;
        // ReadFailed: leadership could not be confirmed. Both: retry at the
        // leader.
        NodeError::NotLeader { .. } | NodeError::Dropped | NodeError::ReadFailed => ErrorCode::NotLeader,
        // A transfer ends within an election timeout: retry after a pause.
        NodeError::Refused(ProposeError::TransferInProgress) => ErrorCode::Busy,
        NodeError::Refused(ProposeError::ConfChangeInProgress) => ErrorCode::ConfChangeInProgress,
        NodeError::Refused(
            ProposeError::InvalidConfChange(_) | ProposeError::NotAMember(_) | ProposeError::VoterNotReady { .. },
        ) => ErrorCode::BadRequest,
        NodeError::Refused(ProposeError::NotLeader { .. }) => ErrorCode::NotLeader,
        NodeError::Transfer(_) => ErrorCode::BadRequest,
        NodeError::UnknownGroup(_) => ErrorCode::UnknownGroup,
        NodeError::ShuttingDown => ErrorCode::ShuttingDown,
        NodeError::Timeout => ErrorCode::Timeout,
        NodeError::Failed(_) | NodeError::Storage(_) | NodeError::Start(_) => ErrorCode::Internal,
    };
    (code, e.to_string())
}

fn check_member_id(node: u64) -> Result<(), Refusal> {
    if node == 0 {
        return Err((ErrorCode::BadRequest, "node id 0 is reserved".into()));
    }
    Ok(())
}

fn check_name(stream: &str) -> Result<(), Refusal> {
    let ok = !stream.is_empty()
        && stream.len() <= STREAM_NAME_MAX
        && stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err((
            ErrorCode::BadRequest,
            format!("bad stream name {stream:?}: 1 to {STREAM_NAME_MAX} characters of A-Z a-z 0-9 . _ -"),
        ))
    }
}

/// A request in a session needs a sequence number from 1.
fn check_session(session: u64, seq: u64) -> Result<(), Refusal> {
    if session != 0 && seq == 0 {
        return Err((ErrorCode::BadRequest, "a request in a session needs a sequence number from 1".into()));
    }
    Ok(())
}

fn check_append(limits: &Limits, stream: &str, session: u64, seq: u64, records: &[Bytes]) -> Result<(), Refusal> {
    check_name(stream)?;
    if records.is_empty() {
        return Err((ErrorCode::BadRequest, "an append needs at least one record".into()));
    }
    if session != 0 && seq == 0 {
        return Err((ErrorCode::BadRequest, "an append in a session needs a sequence number from 1".into()));
    }
    if let Some(r) = records.iter().find(|r| r.len() > limits.max_record_bytes as usize) {
        return Err((
            ErrorCode::TooLarge,
            format!("a record of {} bytes exceeds the limit of {} bytes", r.len(), limits.max_record_bytes),
        ));
    }
    let total: usize = records.iter().map(|r| r.len()).sum();
    if total > limits.max_append_bytes as usize {
        return Err((
            ErrorCode::TooLarge,
            format!("an append of {total} record bytes exceeds the limit of {} bytes", limits.max_append_bytes),
        ));
    }
    Ok(())
}

impl Handler for ServerHandler {
    fn on_frame(&mut self, ctx: &mut Ctx, from: Remote, packet: Packet) {
        if from.role == Role::Peer {
            return self.raft.on_frame(ctx, from, packet);
        }
        if self.wired.is_none() {
            self.wired = self.slot.lock().take();
        }
        let Some(w) = self.wired.as_mut() else {
            return self.while_starting(ctx, &from, packet);
        };
        let to = ReplyTo {
            out: w.out.clone(),
            conn: from.conn,
            request_id: packet.request_id,
            group: packet.group.0,
            watch: Arc::clone(&w.watch),
        };
        let r = match packet.body {
            Body::ClientRequest(req) => w.on_client(req, &to),
            Body::Admin(req) => w.on_admin(packet.group, req, &to),
            other => Err((ErrorCode::BadRequest, format!("a {:?} is not a request", other.msg_type()))),
        };
        if let Err(refusal) = r {
            let hint = if refusal.0 == ErrorCode::NotLeader { w.watch.leader().map_or(0, |l| l.0) } else { 0 };
            ctx.reply(from.conn, error(packet.group.0, packet.request_id, refusal.0, hint, refusal.1));
        }
    }

    fn on_peer_up(&mut self, peer: NodeId) {
        self.raft.on_peer_up(peer);
    }

    fn on_peer_down(&mut self, peer: NodeId) {
        self.raft.on_peer_down(peer);
    }
}

impl Wired {
    /// The log time of a command proposed now (`LogClock::stamp_as_leader`).
    fn stamp(&mut self) -> Result<u64, Refusal> {
        let watch = &self.watch;
        let term = watch.term();
        self.log_clock
            .stamp_as_leader(term, now_ms(), self.log_time_seen.now(), self.log_time_seen.get(), || watch.caught_up())
            .ok_or_else(|| (ErrorCode::Busy, "a new leader is applying the log of earlier terms; retry".to_string()))
    }

    fn leader_only(&self) -> Result<(), Refusal> {
        if self.watch.is_leader() {
            return Ok(());
        }
        let msg = match self.watch.leader() {
            Some(l) => format!("not the leader; the leader is node {l}"),
            None => "not the leader; no leader is known yet".to_string(),
        };
        Err((ErrorCode::NotLeader, msg))
    }

    /// Proposes `command`; `done` maps the outcome to a client answer.
    fn propose(
        &mut self,
        command: Command,
        to: &ReplyTo,
        done: impl FnOnce(u64, u64) -> ClientResponse + Send + 'static,
    ) -> Result<(), Refusal> {
        self.propose_as(command, to, move |a, b| Body::ClientResponse(done(a, b)))
    }

    /// Proposes `command`; `done` maps the outcome to the answer's body.
    fn propose_as(
        &mut self,
        command: Command,
        to: &ReplyTo,
        done: impl FnOnce(u64, u64) -> Body + Send + 'static,
    ) -> Result<(), Refusal> {
        self.leader_only()?;
        let data = Stamped { time_ms: self.stamp()?, command }
            .encode()
            .map_err(|e| (ErrorCode::BadRequest, format!("cannot encode the command: {e}")))?;
        let to = to.clone();
        let cb = Callback::new(move |r: Result<Bytes, NodeError>| match r {
            Err(e) => to.node_error(e),
            Ok(out) => match Outcome::decode(&out) {
                Ok(Outcome::Ok(a, b)) => {
                    to.send(Packet { group: GroupId(to.group), request_id: to.request_id, body: done(a, b) })
                }
                Ok(Outcome::Err(code, detail)) => to.refuse((code, outcome_message(code, detail))),
                Err(e) => to.refuse((ErrorCode::Internal, format!("bad state machine answer: {e}"))),
            },
        });
        self.node.propose(GroupId(SERVICE_GROUP), data, cb).map_err(|e| refusal_of(&e))
    }

    fn on_client(&mut self, req: ClientRequest, to: &ReplyTo) -> Result<(), Refusal> {
        match req {
            ClientRequest::Append { stream, session, seq, records } => {
                check_append(&self.limits, &stream, session, seq, &records)?;
                let cmd = Command::Append { stream, session, seq, records };
                self.propose(cmd, to, |first, count| ClientResponse::Append {
                    first_offset: first,
                    count: count as u32,
                })
            }
            ClientRequest::FetchSnapshot { index, content, offset, at_least } => {
                self.fetch_snapshot(index, content, offset, at_least, to)
            }
            ClientRequest::OpenSession => {
                let cmd = Command::OpenSession { ttl_ms: self.limits.session_ttl_ms };
                self.propose(cmd, to, |session, ttl_ms| ClientResponse::OpenSession { session, ttl_ms })
            }
            ClientRequest::CreateStream { stream, session, seq } => {
                check_name(&stream)?;
                check_session(session, seq)?;
                let cmd = Command::Create {
                    stream,
                    retention_bytes: self.limits.retention_bytes,
                    retention_age_ms: self.limits.retention_age_ms,
                    session,
                    seq,
                };
                self.propose(cmd, to, |group, _| ClientResponse::CreateStream { group })
            }
            ClientRequest::DeleteStream { stream, session, seq, incarnation } => {
                check_name(&stream)?;
                check_session(session, seq)?;
                let cmd = Command::Delete { stream, session, seq, incarnation };
                self.propose(cmd, to, |_, _| ClientResponse::DeleteStream)
            }
            ClientRequest::Trim { stream, before, session, seq } => {
                check_name(&stream)?;
                check_session(session, seq)?;
                self.propose(Command::Trim { stream, before, session, seq }, to, |first, _| ClientResponse::Trim {
                    first_offset: first,
                })
            }
            ClientRequest::Read { stream, offset, max_records, max_bytes, consistency } => {
                let read = ReadReq::new(stream, offset, max_records, max_bytes, None)?;
                self.read(consistency, to, read)
            }
            ClientRequest::Tail { stream, offset, max_records, max_bytes, consistency, wait_ms } => {
                let wait = Duration::from_millis(wait_ms as u64).min(TAIL_WAIT_MAX);
                let read = ReadReq::new(stream, offset, max_records, max_bytes, Some(wait))?;
                self.read(consistency, to, read)
            }
            ClientRequest::ListStreams { incarnations } => {
                let state = Arc::clone(&self.state);
                let to2 = to.clone();
                // Linearizable on any node (a follower asks the leader for
                // the read index), so tools pointed at one node work.
                self.read_barrier(ReadConsistency::Follower, to, move || {
                    let st = state.lock();
                    let mut v: Vec<StreamInfo> = st
                        .streams
                        .iter()
                        .map(|(name, s)| StreamInfo {
                            name: name.clone(),
                            group: SERVICE_GROUP,
                            first_offset: s.first,
                            next_offset: s.next,
                            incarnation: if incarnations { s.id } else { 0 },
                        })
                        .collect();
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    to2.ok(ClientResponse::ListStreams(v));
                })
            }
            ClientRequest::Status { health } => self.status(health, to),
        }
    }

    /// Runs `serve` on the FSM thread once this node may answer a read of
    /// the given consistency.
    fn read_barrier(
        &mut self,
        consistency: ReadConsistency,
        to: &ReplyTo,
        serve: impl FnOnce() + Send + 'static,
    ) -> Result<(), Refusal> {
        let mode = match consistency {
            ReadConsistency::Linearizable => {
                self.leader_only()?;
                ReadMode::ReadIndex
            }
            ReadConsistency::Lease => {
                self.leader_only()?;
                ReadMode::Lease
            }
            ReadConsistency::Follower => ReadMode::ReadIndex,
        };
        let to = to.clone();
        let cb = Callback::new(move |r: Result<ringraft::core::LogIndex, NodeError>| match r {
            Ok(_) => serve(),
            Err(e) => to.node_error(e),
        });
        self.node.read_index_mode(GroupId(SERVICE_GROUP), mode, cb).map_err(|e| refusal_of(&e))
    }

    fn read(&mut self, consistency: ReadConsistency, to: &ReplyTo, read: ReadReq) -> Result<(), Refusal> {
        let state = Arc::clone(&self.state);
        let timer = Arc::clone(&self.timer);
        let to2 = to.clone();
        self.read_barrier(consistency, to, move || read.serve(&state, &timer, to2))
    }

    /// One chunk of this node's snapshot for a node rebuilding its state:
    /// `index` 0 starts on the snapshot the core would send a peer now (its
    /// meta is remembered for the later chunks, which name its index and
    /// content). The chunk is read on a thread of its own, never on the
    /// transport's or the core's.
    fn fetch_snapshot(
        &mut self,
        index: u64,
        content: u64,
        offset: u64,
        at_least: u64,
        to: &ReplyTo,
    ) -> Result<(), Refusal> {
        let store = Arc::clone(&self.snapshots);
        let newer = Arc::clone(&self.snapshots);
        let fetched = Arc::clone(&self.fetched);
        let serve = move |meta: SnapshotMeta, to: ReplyTo| {
            use std::sync::atomic::Ordering::AcqRel;
            if FETCHES.fetch_add(1, AcqRel) >= FETCHES_MAX {
                FETCHES.fetch_sub(1, AcqRel);
                return to.refuse((ErrorCode::Busy, "too many snapshot fetches at once".into()));
            }
            let spawned = std::thread::Builder::new().name("snapshot-fetch".into()).spawn({
                let to = to.clone();
                move || {
                    struct Done;
                    impl Drop for Done {
                        fn drop(&mut self) {
                            FETCHES.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        }
                    }
                    let _done = Done;
                    let at = meta.last_index;
                    match store.read_chunk(at, offset, FETCH_CHUNK) {
                        Ok((data, done)) => {
                            let now = store.content_id(at);
                            if content != 0 && now != content {
                                return to.refuse((
                                    ErrorCode::OutOfRange,
                                    format!("snapshot {at} changed; start again from index 0"),
                                ));
                            }
                            to.ok(ClientResponse::FetchSnapshot {
                                last_index: meta.last_index,
                                last_term: meta.last_term,
                                membership: ringraft::storage::record::encode_membership(&meta.membership),
                                content: now,
                                offset,
                                data,
                                done,
                            });
                        }
                        Err(e) => to.refuse((
                            ErrorCode::OutOfRange,
                            format!("snapshot {at} is not here ({e}); start again from index 0"),
                        )),
                    }
                }
            });
            if let Err(e) = spawned {
                FETCHES.fetch_sub(1, AcqRel);
                to.refuse((ErrorCode::Busy, format!("cannot spawn a reader: {e}")));
            }
        };
        if index != 0 {
            let meta = self.fetched.lock().get(&index).cloned().ok_or_else(|| {
                (ErrorCode::OutOfRange, format!("snapshot {index} is not being fetched here; start again from index 0"))
            })?;
            serve(meta, to.clone());
            return Ok(());
        }
        let to2 = to.clone();
        let cb = Callback::new(move |r: Result<NodeGroupStatus, NodeError>| match r {
            Err(e) => to2.node_error(e),
            Ok(g) if g.snapshot.last_index.0 == 0 || g.snapshot.last_index.0 < at_least => {
                // A newer one is made at once; the asking node asks again.
                newer.make_newer();
                to2.refuse((
                    ErrorCode::OutOfRange,
                    format!(
                        "this node's snapshot ends at {}, before {at_least}; a newer one is being made, ask again",
                        g.snapshot.last_index
                    ),
                ));
            }
            Ok(g) => {
                let mut f = fetched.lock();
                f.insert(g.snapshot.last_index.0, g.snapshot.clone());
                // A few at most: the newest ones.
                while f.len() > 4 {
                    let Some(oldest) = f.keys().min().copied() else { break };
                    f.remove(&oldest);
                }
                drop(f);
                serve(g.snapshot, to2);
            }
        });
        self.node.status_with(GroupId(SERVICE_GROUP), cb).map_err(|e| refusal_of(&e))
    }

    fn status(&mut self, want_health: bool, to: &ReplyTo) -> Result<(), Refusal> {
        let stats = self.stats.clone();
        let health = Arc::clone(&self.health);
        let to = to.clone();
        let cb = Callback::new(move |r: Result<NodeGroupStatus, NodeError>| match r {
            Err(e) => to.node_error(e),
            Ok(g) => {
                let s = stats.get();
                to.ok(ClientResponse::Status {
                    node_id: g.node.0,
                    fsyncs: s.fsync_batches,
                    entries_written: s.entries_written,
                    appends_sent: s.appends_sent,
                    entries_sent: s.entries_sent,
                    groups: vec![wire_status(&g)],
                    health: want_health.then(|| health.get(s.log_disk_full)),
                });
            }
        });
        self.node.status_with(GroupId(SERVICE_GROUP), cb).map_err(|e| refusal_of(&e))
    }

    fn on_admin(&mut self, group: GroupId, req: AdminRequest, to: &ReplyTo) -> Result<(), Refusal> {
        if group.0 != SERVICE_GROUP {
            return Err((
                ErrorCode::UnknownGroup,
                format!("group {group} is not on this node (the service uses group 1)"),
            ));
        }
        let change = match req {
            // Only a caught-up learner becomes a voter (the core checks),
            // and a learner's address came with AddLearner: learning an
            // address here would act on a request the core then refuses.
            AdminRequest::AddVoter { node, addr } => {
                check_member_id(node)?;
                if !addr.is_empty() {
                    addr.parse::<SocketAddr>()
                        .map_err(|_| (ErrorCode::BadRequest, format!("bad address {addr:?}: want host:port")))?;
                }
                ConfChange::AddVoter(NodeId(node))
            }
            AdminRequest::AddLearner { node, addr } => {
                self.learn_addr(node, &addr)?;
                ConfChange::AddLearner(NodeId(node))
            }
            AdminRequest::RemoveVoter { node } | AdminRequest::RemoveLearner { node } => {
                ConfChange::RemoveNode(NodeId(node))
            }
            AdminRequest::ChangePeers { voters, learners } => ConfChange::ChangePeers {
                voters: voters.into_iter().map(NodeId).collect(),
                learners: learners.into_iter().map(NodeId).collect(),
            },
            AdminRequest::TransferLeader { target } => return self.transfer(target, to),
            AdminRequest::Snapshot => {
                // The leader snapshots itself: the request marks its state,
                // and a no-op entry through the log makes the next batch take
                // the checkpoint (followers snapshot on their own schedule).
                self.leader_only()?;
                self.state.lock().snapshot_wanted = true;
                let watch = Arc::clone(&self.watch);
                return self.propose_as(Command::Noop, to, move |index, _| Body::AdminResponse {
                    index,
                    leader: watch.leader().map_or(0, |l| l.0),
                });
            }
        };
        self.leader_only()?;
        let to = to.clone();
        let watch = Arc::clone(&self.watch);
        let cb = Callback::new(move |r: Result<ringraft::core::LogIndex, NodeError>| match r {
            Err(e) => to.node_error(e),
            Ok(index) => to.send(Packet {
                group: GroupId(to.group),
                request_id: to.request_id,
                body: Body::AdminResponse { index: index.0, leader: watch.leader().map_or(0, |l| l.0) },
            }),
        });
        self.node.change_membership_with(GroupId(SERVICE_GROUP), change, cb).map_err(|e| refusal_of(&e))
    }

    /// Tells this transport where a new member listens at once, and
    /// every replica through the log (`SetPeer`, ordered before the
    /// membership change that follows it), so a later leader reaches it too.
    fn learn_addr(&mut self, node: u64, addr: &str) -> Result<(), Refusal> {
        check_member_id(node)?;
        if addr.is_empty() {
            return Ok(());
        }
        let a: SocketAddr =
            addr.parse().map_err(|_| (ErrorCode::BadRequest, format!("bad address {addr:?}: want host:port")))?;
        self.leader_only()?;
        self.out.add_peer(NodeId(node), a).map_err(|e| (ErrorCode::ShuttingDown, e.to_string()))?;
        let data = Stamped { time_ms: self.stamp()?, command: Command::SetPeer { node, addr: addr.to_string() } }
            .encode()
            .map_err(|e| (ErrorCode::BadRequest, format!("cannot encode the command: {e}")))?;
        let cb = Callback::new(move |r: Result<Bytes, NodeError>| {
            if let Err(e) = r {
                log::warn!("service: replicating the address of node {node} failed: {e}");
            }
        });
        self.node.propose(GroupId(SERVICE_GROUP), data, cb).map_err(|e| refusal_of(&e))
    }

    /// Starts a leader transfer. The answer (PROTOCOL.md, "TransferLeader's
    /// answer") comes when it has started: `index` is the target's node id
    /// (the voter this leader picked when asked for 0), `leader` this node;
    /// the asker watches Status for the outcome.
    fn transfer(&mut self, target: u64, to: &ReplyTo) -> Result<(), Refusal> {
        self.leader_only()?;
        let to = to.clone();
        // leader_only passed: the leader this node knows is itself.
        let me = self.watch.leader().map_or(0, |l| l.0);
        let cb = Callback::new(move |r: Result<NodeId, NodeError>| match r {
            Err(e) => to.node_error(e),
            Ok(target) => to.send(Packet {
                group: GroupId(to.group),
                request_id: to.request_id,
                body: Body::AdminResponse { index: target.0, leader: me },
            }),
        });
        self.node.transfer_leader_with(GroupId(SERVICE_GROUP), NodeId(target), cb).map_err(|e| refusal_of(&e))
    }
}

fn outcome_message(code: ErrorCode, detail: u64) -> String {
    match code {
        ErrorCode::UnknownStream if detail != 0 => format!(
            "the stream of that name is incarnation {detail}, not the one named: it was deleted and created again \
             since; nothing was deleted"
        ),
        ErrorCode::UnknownStream => "no stream of that name".into(),
        ErrorCode::StreamExists => "a stream of that name exists".into(),
        ErrorCode::OutOfRange => format!("offset beyond the tail; the next offset is {detail}"),
        ErrorCode::SessionExpired => format!(
            "the session is unknown (expired or never opened) or the sequence number is older than the \
             deduplication window (highest applied {detail}); open a new session and check the stream before \
             re-sending"
        ),
        other => format!("{other:?}"),
    }
}

fn wire_status(g: &NodeGroupStatus) -> GroupStatus {
    let role = match g.role {
        RaftRole::Follower if !g.membership.voters.contains(&g.node) && g.membership.learners.contains(&g.node) => 4,
        RaftRole::Follower => 1,
        RaftRole::PreCandidate | RaftRole::Candidate => 2,
        RaftRole::Leader => 3,
    };
    let voters: Vec<u64> = g.membership.voters.union(&g.membership.voters_outgoing).map(|n| n.0).collect();
    GroupStatus {
        group: g.group.0,
        role,
        term: g.term.0,
        leader: g.leader.map_or(0, |l| l.0),
        commit: g.commit_index.0,
        applied: g.applied_index.0,
        last_index: g.last_index.0,
        voters,
        learners: g.membership.learners.iter().map(|n| n.0).collect(),
        peers: g
            .peers
            .iter()
            .filter_map(|p| {
                Some(PeerProgress { node: p.node.0, matched: p.matched?.0, next: p.next.map_or(0, |n| n.0) })
            })
            .collect(),
    }
}

/// A read or tail, checked.
struct ReadReq {
    stream: String,
    offset: u64,
    max_records: usize,
    max_bytes: usize,
    wait: Option<Duration>,
}

impl ReadReq {
    fn new(
        stream: String,
        offset: u64,
        max_records: u32,
        max_bytes: u32,
        wait: Option<Duration>,
    ) -> Result<ReadReq, Refusal> {
        check_name(&stream)?;
        let max_records = if max_records == 0 { 1000 } else { (max_records as usize).min(READ_RECORDS_MAX) };
        let max_bytes = if max_bytes == 0 { 1 << 20 } else { (max_bytes as usize).min(READ_BYTES_MAX) };
        Ok(ReadReq { stream, offset, max_records, max_bytes, wait })
    }

    /// On the FSM thread: answer now, or park a tail until records arrive
    /// or its wait runs out.
    fn serve(self, state: &Arc<Mutex<ServiceState>>, timer: &Arc<HashedWheelTimer>, to: ReplyTo) {
        let mut st = state.lock();
        let r = st.read(&self.stream, self.offset, self.max_records, self.max_bytes);
        let tail = |records: Records| -> ClientResponse { ClientResponse::Tail(records) };
        match (r, self.wait) {
            (Err(refusal), _) => to.refuse(refusal),
            (Ok(records), None) => to.ok(ClientResponse::Read(records)),
            (Ok(records), Some(_)) if !records.records.is_empty() => to.ok(tail(records)),
            (Ok(records), Some(wait)) if wait.is_zero() => to.ok(tail(records)),
            (Ok(_), Some(wait)) => {
                let to2 = to.clone();
                let id = st.add_tail(
                    &self.stream,
                    self.offset,
                    self.max_records,
                    self.max_bytes,
                    Box::new(move |r| match r {
                        Ok(records) => to2.ok(ClientResponse::Tail(records)),
                        Err(refusal) => to2.refuse(refusal),
                    }),
                );
                let state = Arc::clone(state);
                timer.schedule_after(wait, move || state.lock().expire_tail(id));
            }
        }
    }
}
