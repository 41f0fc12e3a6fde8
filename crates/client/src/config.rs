//! [`ClientConfig`] (servers, identity, timeouts, backoff, exactly-once,
//! pipelining window) and the small answer types the SDK returns.

use std::time::Duration;

use bytes::Bytes;

use ringraft_proto::{GroupStatus, Health, Role};

/// How a [`Client`](super::Client) finds and talks to the cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Addresses (`host:port`) of the cluster's servers, tried in order.
    pub servers: Vec<String>,
    /// The cluster id the servers must have (checked in the handshake).
    pub cluster_id: u64,
    /// The shared secret of `role`.
    pub token: Bytes,
    /// `Role::Client` for stream requests, `Role::Admin` to also send
    /// membership requests (with the admin token).
    pub role: Role,
    /// Limit on one TCP connect plus handshake (default 1 s).
    pub connect_timeout: Duration,
    /// The deadline of one blocking call, retries included (default 5 s).
    pub request_timeout: Duration,
    /// First pause after a retryable error (default 5 ms); doubles per retry.
    pub backoff_min: Duration,
    /// Largest pause between retries (default 500 ms).
    pub backoff_max: Duration,
    /// Open a session and number appends so that retries are never applied
    /// twice (default true). Without it a retried append may duplicate.
    pub exactly_once: bool,
    /// Appends a [`Pipeline`](super::Pipeline) keeps unanswered at most
    /// (default 256; at least 1).
    pub max_in_flight: usize,
}

impl ClientConfig {
    /// A client configuration for `servers` of cluster `cluster_id`, with an
    /// empty token, `Role::Client` and the defaults listed on each field.
    pub fn new(servers: Vec<String>, cluster_id: u64) -> ClientConfig {
        ClientConfig {
            servers,
            cluster_id,
            token: Bytes::new(),
            role: Role::Client,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(500),
            exactly_once: true,
            max_in_flight: 256,
        }
    }

    /// The same configuration with `token` (builder style).
    pub fn with_token(mut self, token: impl Into<Bytes>) -> ClientConfig {
        self.token = token.into();
        self
    }

    /// The same configuration with `role` (builder style).
    pub fn with_role(mut self, role: Role) -> ClientConfig {
        self.role = role;
        self
    }
}

/// Where an append landed: records got offsets
/// `first_offset .. first_offset + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendAck {
    /// Offset of the first record.
    pub first_offset: u64,
    /// Records appended.
    pub count: u32,
}

/// The answer to an admin request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminAck {
    /// Log index at which the change (or snapshot) took effect; for
    /// `TransferLeader`, the target's node id (the transfer has started,
    /// not finished: watch `status` for the new leader).
    pub index: u64,
    /// The leader that made it (for `TransferLeader`, the old leader).
    pub leader: u64,
}

/// One node's status, as its `Status` answer reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The answering node.
    pub node_id: u64,
    /// Log fdatasync batches since it started.
    pub fsyncs: u64,
    /// Log entries those batches wrote.
    pub entries_written: u64,
    /// AppendEntries messages it sent as a leader.
    pub appends_sent: u64,
    /// Entries those messages carried.
    pub entries_sent: u64,
    /// Its groups (role, term, leader, indices, members, peer progress).
    pub groups: Vec<GroupStatus>,
    /// Disk full, starting ([`Health`]); `None` from a server of a release
    /// before issue 16.
    pub health: Option<Health>,
}
