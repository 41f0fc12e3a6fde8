//! The handshake (hello, hello-ok), the error frame, and the pure admission
//! check a listener applies to a hello: cluster id, version range, and a
//! constant-time token comparison for the connection's role.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{ErrorCode, ProtocolError};
use super::frame::{Reader, VERSION};

/// Longest auth token a hello may carry, in bytes.
pub const MAX_TOKEN: usize = 1024;

/// What a connection is for; decides which token it must present and which
/// messages it may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Another node of the cluster (Raft traffic); the peer token.
    Peer = 1,
    /// A client (stream requests); the client token.
    Client = 2,
    /// An operator (client and admin requests); the admin token.
    Admin = 3,
}

impl Role {
    fn from_u8(b: u8) -> Option<Role> {
        match b {
            1 => Some(Role::Peer),
            2 => Some(Role::Client),
            3 => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The first frame on every connection (type `0x01`), sent by the side that
/// connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The cluster the sender believes it joins.
    pub cluster_id: u64,
    /// The sender's node id (0 for clients and operators).
    pub node_id: u64,
    /// What the connection is for.
    pub role: Role,
    /// Lowest protocol version the sender speaks.
    pub min_version: u8,
    /// Highest protocol version the sender speaks.
    pub max_version: u8,
    /// The shared secret for `role` (at most [`MAX_TOKEN`] bytes).
    pub token: Bytes,
}

impl Hello {
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        if self.token.len() > MAX_TOKEN {
            return Err(ProtocolError::Malformed("token longer than MAX_TOKEN"));
        }
        out.put_u64_le(self.cluster_id);
        out.put_u64_le(self.node_id);
        out.put_u8(self.role as u8);
        out.put_u8(self.min_version);
        out.put_u8(self.max_version);
        out.put_u8(0);
        out.put_u16_le(self.token.len() as u16);
        out.put_slice(&self.token);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Hello, ProtocolError> {
        let cluster_id = r.u64()?;
        let node_id = r.u64()?;
        let role = Role::from_u8(r.u8()?).ok_or(ProtocolError::Malformed("unknown role"))?;
        let min_version = r.u8()?;
        let max_version = r.u8()?;
        if r.u8()? != 0 {
            return Err(ProtocolError::Malformed("reserved byte not zero"));
        }
        let n = r.u16()? as usize;
        if n > MAX_TOKEN {
            return Err(ProtocolError::Malformed("token longer than MAX_TOKEN"));
        }
        let token = r.bytes(n)?;
        Ok(Hello { cluster_id, node_id, role, min_version, max_version, token })
    }
}

/// The acceptance of a hello (type `0x02`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloOk {
    /// The server's cluster id.
    pub cluster_id: u64,
    /// The server's node id.
    pub node_id: u64,
    /// The version both sides use from now on.
    pub version: u8,
    /// The role granted.
    pub role: Role,
}

impl HelloOk {
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.cluster_id);
        out.put_u64_le(self.node_id);
        out.put_u8(self.version);
        out.put_u8(self.role as u8);
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<HelloOk, ProtocolError> {
        Ok(HelloOk {
            cluster_id: r.u64()?,
            node_id: r.u64()?,
            version: r.u8()?,
            role: Role::from_u8(r.u8()?).ok_or(ProtocolError::Malformed("unknown role"))?,
        })
    }
}

/// An error answer (type `0x03`): to a request (same request id) or, with
/// request id 0, a refusal of the connection just before it closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// The raw code; see [`ErrorFrame::code`].
    pub code: u16,
    /// For `NotLeader`: the leader this node knows, 0 if none. 0 otherwise.
    pub leader_hint: u64,
    /// A human-readable explanation (UTF-8, at most 65,535 bytes).
    pub message: String,
}

impl ErrorFrame {
    /// An error frame with `code`.
    pub fn new(code: ErrorCode, leader_hint: u64, message: impl Into<String>) -> ErrorFrame {
        ErrorFrame { code: code as u16, leader_hint, message: message.into() }
    }

    /// The code; unknown codes (from a newer peer) read as `Internal`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.code).unwrap_or(ErrorCode::Internal)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        let n = u16::try_from(self.message.len()).map_err(|_| ProtocolError::Malformed("error message too long"))?;
        out.put_u16_le(self.code);
        out.put_u16_le(n);
        out.put_u32_le(0);
        out.put_u64_le(self.leader_hint);
        out.put_slice(self.message.as_bytes());
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<ErrorFrame, ProtocolError> {
        let code = r.u16()?;
        let n = r.u16()? as usize;
        if r.u32()? != 0 {
            return Err(ProtocolError::Malformed("reserved bytes not zero"));
        }
        let leader_hint = r.u64()?;
        let b = r.bytes(n)?;
        let message =
            String::from_utf8(b.to_vec()).map_err(|_| ProtocolError::Malformed("error message is not UTF-8"))?;
        Ok(ErrorFrame { code, leader_hint, message })
    }
}

/// Compares two tokens in time that depends only on their lengths, not on
/// where they first differ.
pub fn tokens_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

/// What a listener admits: its identity and one token per role.
#[derive(Clone, Debug)]
pub struct Admission {
    /// This cluster's id.
    pub cluster_id: u64,
    /// This node's id.
    pub node_id: u64,
    /// Token peers must present.
    pub peer_token: Bytes,
    /// Token clients must present.
    pub client_token: Bytes,
    /// Token operators must present.
    pub admin_token: Bytes,
}

impl Admission {
    /// Decides a hello: the acceptance to send, or the error frame to send
    /// before closing. Checks, in order: version range, cluster id, token.
    ///
    /// # Errors
    /// An [`ErrorFrame`] with `VersionUnsupported`, `WrongCluster` or
    /// `Unauthorized`.
    pub fn admit(&self, h: &Hello) -> Result<HelloOk, ErrorFrame> {
        if !(h.min_version..=h.max_version).contains(&VERSION) {
            return Err(ErrorFrame::new(
                ErrorCode::VersionUnsupported,
                0,
                format!("this node speaks protocol version {VERSION} only"),
            ));
        }
        if h.cluster_id != self.cluster_id {
            return Err(ErrorFrame::new(ErrorCode::WrongCluster, 0, format!("this is cluster {}", self.cluster_id)));
        }
        let want = match h.role {
            Role::Peer => &self.peer_token,
            Role::Client => &self.client_token,
            Role::Admin => &self.admin_token,
        };
        if !tokens_equal(&h.token, want) {
            return Err(ErrorFrame::new(ErrorCode::Unauthorized, 0, "bad token"));
        }
        Ok(HelloOk { cluster_id: self.cluster_id, node_id: self.node_id, version: VERSION, role: h.role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(cluster: u64, role: Role, token: &'static [u8]) -> Hello {
        Hello { cluster_id: cluster, node_id: 2, role, min_version: 1, max_version: 1, token: Bytes::from(token) }
    }

    #[test]
    fn admission_checks_version_cluster_and_token() {
        let a = Admission {
            cluster_id: 9,
            node_id: 1,
            peer_token: Bytes::from_static(b"peer"),
            client_token: Bytes::from_static(b"cli"),
            admin_token: Bytes::from_static(b"adm"),
        };
        assert_eq!(a.admit(&hello(9, Role::Peer, b"peer")).unwrap().role, Role::Peer);
        assert_eq!(a.admit(&hello(8, Role::Peer, b"peer")).unwrap_err().code(), ErrorCode::WrongCluster);
        assert_eq!(a.admit(&hello(9, Role::Admin, b"cli")).unwrap_err().code(), ErrorCode::Unauthorized);
        let mut h = hello(9, Role::Client, b"cli");
        h.min_version = 2;
        h.max_version = 3;
        assert_eq!(a.admit(&h).unwrap_err().code(), ErrorCode::VersionUnsupported);
        assert!(tokens_equal(b"", b""));
        assert!(!tokens_equal(b"ab", b"abc"));
    }
}
