//! The [`Client`] itself and its routing: which server to connect to
//! (leader hint first, else the list in turn), what to do with each error
//! frame (redirect, back off, give up) and the retry loop every blocking call
//! runs until its deadline. The public calls are in `api.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::error::ClientError;
use super::ClientConfig;
use ringraft_proto::GroupId;
use ringraft_proto::{Body, ClientRequest, ErrorCode, ErrorFrame, Packet};

/// An exactly-once session: appends are numbered 1, 2, ... within it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Session {
    /// The id the cluster gave it (the log index of its OpenSession entry).
    pub(crate) id: u64,
    /// The number the next append gets (starts at 1).
    pub(crate) next_seq: u64,
}

/// Where a request may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Only by the leader: `NotLeader` redirects.
    Leader,
    /// By any node (follower reads): `NotLeader` moves to the next server.
    Any,
    /// Only by the node connected to (status): no retry on another node.
    Here,
}

/// What to do after an error frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Reconnect at once (a leader hint names another known node).
    Redirect,
    /// Pause, then retry (on the same connection if it is still up).
    Backoff,
    /// Return the error to the caller.
    Fail,
}

/// A blocking client of one ringraft cluster: one connection at a time, to
/// one server, with leader discovery, redirects, retries with backoff, and
/// exactly-once appends. See the [module documentation](super).
pub struct Client {
    pub(crate) cfg: ClientConfig,
    pub(crate) conn: Option<Conn>,
    /// Node id → index in `cfg.servers`, learned from each HelloOk.
    pub(crate) nodes: HashMap<u64, usize>,
    /// The leader the servers last named (None: unknown).
    pub(crate) leader_hint: Option<u64>,
    /// The server tried next when no leader is known.
    pub(crate) cursor: usize,
    /// Request ids are unique per client, so a late answer to an abandoned
    /// attempt never matches a newer request.
    next_request_id: u64,
    pub(crate) session: Option<Session>,
    /// Xorshift state for backoff jitter (never 0).
    rng: u64,
}

impl Client {
    /// Connects to the first server in `config.servers` that completes the
    /// handshake (one pass over the list).
    ///
    /// # Errors
    /// `Unauthorized`, `WrongCluster` (configuration refusals: no other
    /// server is tried), or `NoServer` naming every address tried and the
    /// last failure. `BadRequest` for an empty server list.
    pub fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        if config.servers.is_empty() {
            return Err(ClientError::BadRequest("the server list is empty".into()));
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        let mut c = Client {
            cfg: config,
            conn: None,
            nodes: HashMap::new(),
            leader_hint: None,
            cursor: 0,
            next_request_id: 1,
            session: None,
            rng: seed | 1,
        };
        let deadline = Instant::now() + c.cfg.connect_timeout * c.cfg.servers.len() as u32;
        c.reconnect(deadline)?;
        Ok(c)
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The leader the servers last named, if any.
    pub fn leader_hint(&self) -> Option<u64> {
        self.leader_hint
    }

    /// The node id and address of the server currently connected, if any.
    pub fn connected_node(&self) -> Option<(u64, &str)> {
        let c = self.conn.as_ref()?;
        Some((c.node_id, self.cfg.servers.get(c.server).map(String::as_str).unwrap_or("")))
    }

    /// Forgets the exactly-once session (after `SessionExpired`); the next
    /// append opens a new one. Appends answered `SessionExpired` or
    /// `Timeout` may or may not have been applied: check before re-sending.
    pub fn reset_session(&mut self) {
        self.session = None;
    }

    pub(crate) fn request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Ensures a connection: to the hinted leader if its address is known,
    /// else to each server in turn from the cursor.
    ///
    /// # Errors
    /// A configuration refusal at once; else `NoServer` after one pass.
    pub(crate) fn reconnect(&mut self, deadline: Instant) -> Result<(), ClientError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let n = self.cfg.servers.len();
        let hinted = self.leader_hint.and_then(|h| self.nodes.get(&h).copied());
        let mut order: Vec<usize> = hinted.into_iter().collect();
        order.extend((0..n).map(|k| (self.cursor + k) % n).filter(|i| hinted != Some(*i)));
        let mut tried = Vec::new();
        let mut last = String::from("deadline passed before any attempt");
        for i in order {
            if Instant::now() >= deadline {
                break;
            }
            let addr = self.cfg.servers[i].clone();
            match Conn::open(&addr, i, &self.cfg, deadline) {
                Ok(c) => {
                    log::debug!("client: connected to node {} at {addr}", c.node_id);
                    self.nodes.retain(|_, v| *v != i);
                    self.nodes.insert(c.node_id, i);
                    self.cursor = i;
                    self.conn = Some(c);
                    return Ok(());
                }
                Err(e) if e.is_config_refusal() => return Err(e),
                Err(e) => {
                    last = format!("{addr}: {e}");
                    tried.push(addr);
                }
            }
        }
        Err(ClientError::NoServer { tried, last })
    }

    /// Drops the connection; with `advance` the next connection attempt
    /// (without a known leader) starts at the following server.
    pub(crate) fn drop_conn(&mut self, advance: bool) {
        if let Some(c) = self.conn.take() {
            if advance && c.server < self.cfg.servers.len() {
                self.cursor = (c.server + 1) % self.cfg.servers.len();
            }
        }
    }

    /// Acts on an error frame for a request routed by `route`: updates the
    /// leader hint and the connection, and says what to do next.
    pub(crate) fn on_error_frame(&mut self, e: &ErrorFrame, route: Route) -> Next {
        let here = self.conn.as_ref().map(|c| c.node_id);
        match (e.code(), route) {
            (ErrorCode::NotLeader, Route::Leader) => {
                let hint = (e.leader_hint != 0 && Some(e.leader_hint) != here).then_some(e.leader_hint);
                self.leader_hint = hint.or(self.leader_hint.filter(|h| Some(*h) != here));
                match hint {
                    Some(h) if self.nodes.contains_key(&h) => {
                        self.drop_conn(false);
                        Next::Redirect
                    }
                    _ => {
                        self.drop_conn(true);
                        Next::Backoff
                    }
                }
            }
            (ErrorCode::NotLeader, Route::Any) => {
                self.drop_conn(true);
                Next::Backoff
            }
            // A membership change in flight (or a new leader's first entry
            // not yet committed) ends by itself: wait and retry.
            (ErrorCode::Busy | ErrorCode::Timeout | ErrorCode::ConfChangeInProgress, Route::Leader | Route::Any) => {
                Next::Backoff
            }
            (ErrorCode::ShuttingDown, Route::Leader | Route::Any) => {
                if here.is_some() && here == self.leader_hint {
                    self.leader_hint = None;
                }
                self.drop_conn(true);
                Next::Backoff
            }
            _ => {
                if e.code().closes_connection() {
                    self.drop_conn(false);
                }
                Next::Fail
            }
        }
    }

    /// The pause before retry number `attempt` (0-based): `backoff_min`
    /// doubled per attempt, capped at `backoff_max`, with jitter in
    /// `[d/2, d]` so that clients do not retry in lockstep.
    pub(crate) fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self.cfg.backoff_min.saturating_mul(1u32 << attempt.min(20)).min(self.cfg.backoff_max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = base / 2;
        let jitter_ns = self.rng % (half.as_nanos() as u64 + 1);
        half + Duration::from_nanos(jitter_ns)
    }

    /// Sleeps the backoff for `attempt`, never past `deadline`.
    fn pause(&mut self, attempt: u32, deadline: Instant) {
        let d = self.backoff(attempt);
        if let Some(left) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(d.min(left));
        }
    }

    /// Sends `req` and waits for its answer on the current connection.
    fn round_trip(&mut self, group: u64, body: &Body, deadline: Instant) -> Result<Body, ClientError> {
        let id = self.request_id();
        let conn = self.conn.as_mut().ok_or(ClientError::Timeout)?;
        conn.queue(&Packet { group: GroupId(group), request_id: id, body: body.clone() })?;
        conn.flush(deadline)?;
        loop {
            let p = conn.recv(deadline)?;
            // Request id 0: a refusal before the server closes (ShuttingDown).
            if p.request_id == id || (p.request_id == 0 && matches!(p.body, Body::Error(_))) {
                return Ok(p.body);
            }
            // Otherwise a late answer to an abandoned attempt: skip it.
        }
    }

    /// Runs one request until it is answered, fails for good, or `deadline`
    /// passes, reconnecting and retrying per [`Client::on_error_frame`].
    /// `idempotent` says whether a request whose outcome is unknown (sent,
    /// then the connection broke) may be sent again.
    ///
    /// # Errors
    /// The typed error of a non-retryable answer; at the deadline `Timeout`
    /// if the last attempt's outcome is unknown, else the last error.
    pub(crate) fn call(
        &mut self,
        group: u64,
        body: Body,
        route: Route,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<Body, ClientError> {
        let mut attempt = 0u32;
        let mut last: Option<ClientError> = None;
        loop {
            if Instant::now() >= deadline {
                return Err(last.unwrap_or(ClientError::Timeout));
            }
            if let Err(e) = self.reconnect(deadline) {
                if !e.is_retryable() || route == Route::Here {
                    return Err(e);
                }
                last = Some(e);
                self.pause(attempt, deadline);
                attempt += 1;
                continue;
            }
            match self.round_trip(group, &body, deadline) {
                Ok(Body::Error(e)) => {
                    let err = ClientError::from_frame(&e);
                    match self.on_error_frame(&e, route) {
                        Next::Fail => return Err(err),
                        // A redirect goes at once, unless servers keep
                        // pointing at each other (an election in flight).
                        Next::Redirect if attempt >= 3 => self.pause(attempt - 3, deadline),
                        Next::Redirect => {}
                        Next::Backoff if matches!(err, ClientError::Timeout) && !idempotent => return Err(err),
                        Next::Backoff => self.pause(attempt, deadline),
                    }
                    last = Some(err);
                }
                Ok(answer) => return Ok(answer),
                Err(ClientError::Timeout) => {
                    // Deadline reached while waiting: the answer may still come.
                    self.drop_conn(false);
                    return Err(ClientError::Timeout);
                }
                Err(e @ ClientError::BadRequest(_)) => return Err(e),
                Err(e) => {
                    // The connection broke after the request was sent (or
                    // while sending): its outcome is unknown.
                    log::debug!("client: connection lost: {e}");
                    self.drop_conn(true);
                    if !idempotent || route == Route::Here {
                        return Err(if idempotent { e } else { ClientError::Timeout });
                    }
                    last = Some(ClientError::Timeout);
                    self.pause(attempt, deadline);
                }
            }
            attempt += 1;
        }
    }

    /// Runs a client request with [`Client::call`] and the default deadline.
    pub(crate) fn request(&mut self, req: ClientRequest, route: Route) -> Result<Body, ClientError> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        self.call(0, Body::ClientRequest(req), route, true, deadline)
    }
}

/// An answer of the wrong type for its request.
pub(crate) fn unexpected(what: &str, got: &Body) -> ClientError {
    ClientError::Server { code: 9, message: format!("expected a {what} answer, got a {:?} frame", got.msg_type()) }
}
