//! [`ClientError`]: every way a client call can fail, typed, with messages an
//! operator can act on. Built from the server's error frames
//! ([`ClientError::from_frame`]), from socket errors and from the codec.

use std::fmt;
use std::io;

use ringraft_proto::{ErrorCode, ErrorFrame, ProtocolError};

/// Why a client call failed.
///
/// Retryable conditions (`NotLeader`, `Busy`, `ShuttingDown`, lost
/// connections, server timeouts) are retried inside the call until its
/// deadline; they are only returned when the deadline passed with that
/// condition still in force.
#[derive(Debug)]
pub enum ClientError {
    /// No server would lead the request before the deadline; `leader` is the
    /// last leader hint received (None: no node knew a leader).
    NotLeader {
        /// The last leader hint, if any node named one.
        leader: Option<u64>,
    },
    /// The servers stayed overloaded until the deadline.
    Busy,
    /// No stream of that name (the server's message).
    UnknownStream(String),
    /// A stream of that name already exists (the server's message).
    StreamExists(String),
    /// The offset is trimmed away or beyond the stream's tail.
    OutOfRange {
        /// The server's explanation (it names the stream's bounds).
        message: String,
    },
    /// A record, batch or name exceeds a server limit.
    TooLarge,
    /// The exactly-once session is unknown to the cluster (expired after its
    /// idle time, or never opened) or the append fell out of its
    /// deduplication window. Whether the append was applied cannot be told:
    /// check the stream, then call `Client::reset_session` to open a new one.
    SessionExpired,
    /// The server refused the token (or the role may not send this request).
    Unauthorized,
    /// The server belongs to another cluster than `cluster_id`.
    WrongCluster,
    /// The server refused a value of the request (the server's message).
    BadRequest(String),
    /// The deadline passed without an answer. For an append this means the
    /// outcome is unknown: it may still commit.
    Timeout,
    /// The node is stopping (only returned when no other node took over
    /// before the deadline).
    ShuttingDown,
    /// No server in the list completed the handshake.
    NoServer {
        /// The addresses tried, in order.
        tried: Vec<String>,
        /// Why the last one failed.
        last: String,
    },
    /// A socket error on an established connection.
    Io(io::Error),
    /// The server sent bytes the codec could not decode.
    Protocol(ProtocolError),
    /// Any other error frame (its raw code and message).
    Server {
        /// The wire error code.
        code: u16,
        /// The server's message.
        message: String,
    },
}

impl ClientError {
    /// The error an error frame from the server stands for. `NotLeader`
    /// carries the frame's hint (0 becomes `None`).
    pub fn from_frame(e: &ErrorFrame) -> ClientError {
        let msg = e.message.clone();
        match ErrorCode::from_u16(e.code) {
            Some(ErrorCode::NotLeader) => {
                ClientError::NotLeader { leader: (e.leader_hint != 0).then_some(e.leader_hint) }
            }
            Some(ErrorCode::Busy) => ClientError::Busy,
            Some(ErrorCode::UnknownStream) => ClientError::UnknownStream(msg),
            Some(ErrorCode::StreamExists) => ClientError::StreamExists(msg),
            Some(ErrorCode::OutOfRange) => ClientError::OutOfRange { message: msg },
            Some(ErrorCode::TooLarge) => ClientError::TooLarge,
            Some(ErrorCode::SessionExpired) => ClientError::SessionExpired,
            Some(ErrorCode::Unauthorized) => ClientError::Unauthorized,
            Some(ErrorCode::WrongCluster) => ClientError::WrongCluster,
            Some(ErrorCode::BadRequest) => ClientError::BadRequest(msg),
            Some(ErrorCode::Timeout) => ClientError::Timeout,
            Some(ErrorCode::ShuttingDown) => ClientError::ShuttingDown,
            _ => ClientError::Server { code: e.code, message: msg },
        }
    }

    /// Whether trying again (on this or another server, after a pause) may
    /// succeed: `NotLeader`, `Busy`, `ShuttingDown`, `Timeout`, `NoServer`
    /// and connection errors.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::NotLeader { .. }
                | ClientError::Busy
                | ClientError::ShuttingDown
                | ClientError::Timeout
                | ClientError::NoServer { .. }
                | ClientError::Io(_)
                | ClientError::Protocol(_)
        )
    }

    /// A copy of this error (`io::Error` is not `Clone`: its kind and
    /// message are kept), to complete several requests with one cause.
    pub(crate) fn duplicate(&self) -> ClientError {
        use ClientError::*;
        match self {
            NotLeader { leader } => NotLeader { leader: *leader },
            Busy => Busy,
            UnknownStream(m) => UnknownStream(m.clone()),
            StreamExists(m) => StreamExists(m.clone()),
            OutOfRange { message } => OutOfRange { message: message.clone() },
            TooLarge => TooLarge,
            SessionExpired => SessionExpired,
            Unauthorized => Unauthorized,
            WrongCluster => WrongCluster,
            BadRequest(m) => BadRequest(m.clone()),
            Timeout => Timeout,
            ShuttingDown => ShuttingDown,
            NoServer { tried, last } => NoServer { tried: tried.clone(), last: last.clone() },
            Io(e) => Io(io::Error::new(e.kind(), e.to_string())),
            Protocol(e) => Protocol(e.clone()),
            Server { code, message } => Server { code: *code, message: message.clone() },
        }
    }

    /// Whether this refusal is about the client's configuration (token,
    /// cluster id, protocol version), so that no other server will accept it.
    pub(crate) fn is_config_refusal(&self) -> bool {
        matches!(self, ClientError::Unauthorized | ClientError::WrongCluster)
            || matches!(self, ClientError::Server { code, .. } if *code == ErrorCode::VersionUnsupported as u16)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotLeader { leader: Some(l) } => {
                write!(f, "no leader answered in time (last hint: node {l}); the cluster may be electing")
            }
            ClientError::NotLeader { leader: None } => {
                write!(f, "no node knows a leader; is a majority of the cluster up?")
            }
            ClientError::Busy => write!(f, "the servers are overloaded (busy) and stayed so until the deadline"),
            ClientError::UnknownStream(m) => write!(f, "unknown stream: {m}"),
            ClientError::StreamExists(m) => write!(f, "stream exists: {m}"),
            ClientError::OutOfRange { message } => write!(f, "offset out of range: {message}"),
            ClientError::TooLarge => write!(f, "request too large for the server's limits; send smaller batches"),
            ClientError::SessionExpired => write!(
                f,
                "exactly-once session expired or unknown: the append may or may not have been applied; \
                 check the stream, then open a new session"
            ),
            ClientError::Unauthorized => write!(f, "unauthorized: the server refused the token (check --token-file)"),
            ClientError::WrongCluster => write!(f, "wrong cluster: the server belongs to another cluster id"),
            ClientError::BadRequest(m) => write!(f, "bad request: {m}"),
            ClientError::Timeout => write!(f, "timed out: no answer before the deadline (an append may still commit)"),
            ClientError::ShuttingDown => write!(f, "the server is shutting down"),
            ClientError::NoServer { tried, last } => {
                write!(f, "no server reachable (tried {}): {last}", tried.join(", "))
            }
            ClientError::Io(e) => write!(f, "connection error: {e}"),
            ClientError::Protocol(e) => write!(f, "protocol error from the server: {e}"),
            ClientError::Server { code, message } => write!(f, "server error {code}: {message}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(e) => Some(e),
            ClientError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<ProtocolError> for ClientError {
    fn from(e: ProtocolError) -> Self {
        ClientError::Protocol(e)
    }
}
