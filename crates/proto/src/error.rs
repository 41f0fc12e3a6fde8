//! Errors of the wire protocol: [`ProtocolError`] (what the decoder found
//! wrong with bytes it was given) and [`ErrorCode`] (what an error frame tells
//! the peer). See `proto-spec/PROTOCOL.md` §"Error codes".

use std::fmt;

/// Why bytes could not be decoded (or a value could not be encoded).
///
/// Every decoder returns one of these instead of panicking; a connection that
/// produces one is answered with an error frame (see
/// [`ProtocolError::code`]) and closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The input ended before the frame or field was complete.
    Truncated {
        /// Bytes the decoder needed.
        need: usize,
        /// Bytes it had.
        have: usize,
    },
    /// The header declares a body larger than the configured maximum.
    Oversized {
        /// Declared body length.
        len: u64,
        /// The limit in force.
        max: u64,
    },
    /// The type byte names no message this version knows.
    UnknownType(u8),
    /// The CRC32C in the header does not match the header and body.
    BadCrc {
        /// The CRC the header carries.
        expected: u32,
        /// The CRC computed over the bytes received.
        actual: u32,
    },
    /// The frame does not start with the protocol magic.
    BadMagic([u8; 4]),
    /// The header's version is not one this node speaks.
    VersionUnsupported(u8),
    /// Reserved flag bits are set.
    BadFlags(u16),
    /// The body does not follow its message's layout (trailing bytes, a bool
    /// that is not 0 or 1, a bad count, invalid UTF-8, ...).
    Malformed(&'static str),
}

impl ProtocolError {
    /// The error code an error frame sent in answer to this error carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::Oversized { .. } => ErrorCode::TooLarge,
            ProtocolError::VersionUnsupported(_) => ErrorCode::VersionUnsupported,
            ProtocolError::Malformed(_) => ErrorCode::BadRequest,
            _ => ErrorCode::Protocol,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Truncated { need, have } => write!(f, "truncated: need {need} bytes, have {have}"),
            ProtocolError::Oversized { len, max } => write!(f, "frame body of {len} bytes exceeds the limit {max}"),
            ProtocolError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            ProtocolError::BadCrc { expected, actual } => {
                write!(f, "bad CRC32C: header says 0x{expected:08x}, computed 0x{actual:08x}")
            }
            ProtocolError::BadMagic(m) => write!(f, "bad magic {m:02x?}"),
            ProtocolError::VersionUnsupported(v) => write!(f, "unsupported protocol version {v}"),
            ProtocolError::BadFlags(fl) => write!(f, "reserved flag bits set: 0x{fl:04x}"),
            ProtocolError::Malformed(why) => write!(f, "malformed body: {why}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The code an error frame (type `0x03`) carries. Numbering is stable:
/// codes are never reused; a receiver treats an unknown code as
/// [`ErrorCode::Internal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// This node is not the group's leader; the frame's leader hint names
    /// the leader it knows (0 when none). Retry there.
    NotLeader = 1,
    /// The node is overloaded (queues full); retry after a pause.
    Busy = 2,
    /// The frame's group id names no group on this node.
    UnknownGroup = 3,
    /// The body is malformed or its values are invalid.
    BadRequest = 4,
    /// Wrong or missing token, or a message the connection's role may not send.
    Unauthorized = 5,
    /// The handshake offered no protocol version this node speaks.
    VersionUnsupported = 6,
    /// A frame or value exceeds a limit.
    TooLarge = 7,
    /// The handshake named another cluster.
    WrongCluster = 8,
    /// Framing broke (bad magic, bad CRC, unknown type, out-of-order frame);
    /// the connection closes.
    Protocol = 9,
    /// The named stream does not exist.
    UnknownStream = 10,
    /// A stream of that name already exists.
    StreamExists = 11,
    /// The requested offset is trimmed away or beyond the tail.
    OutOfRange = 12,
    /// The operation did not complete in time; its outcome is unknown.
    Timeout = 13,
    /// A bug or an unexpected local failure.
    Internal = 14,
    /// The node is shutting down.
    ShuttingDown = 15,
    /// A membership change is already in progress in the group.
    ConfChangeInProgress = 16,
    /// The append's session is unknown to the cluster (expired after its
    /// idle time, or never opened), or its sequence number fell out of the
    /// deduplication window: the cluster can no longer tell whether it was
    /// applied, so it refuses rather than risk a duplicate. Open a new
    /// session; check the stream before re-sending.
    SessionExpired = 17,
}

impl ErrorCode {
    /// The code for a number read off the wire; unknown numbers map to
    /// `None` (a receiver treats them as [`ErrorCode::Internal`]).
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            1 => NotLeader,
            2 => Busy,
            3 => UnknownGroup,
            4 => BadRequest,
            5 => Unauthorized,
            6 => VersionUnsupported,
            7 => TooLarge,
            8 => WrongCluster,
            9 => Protocol,
            10 => UnknownStream,
            11 => StreamExists,
            12 => OutOfRange,
            13 => Timeout,
            14 => Internal,
            15 => ShuttingDown,
            16 => ConfChangeInProgress,
            17 => SessionExpired,
            _ => return None,
        })
    }

    /// Whether the connection closes after an error frame with this code.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::Unauthorized
                | ErrorCode::VersionUnsupported
                | ErrorCode::WrongCluster
                | ErrorCode::Protocol
                | ErrorCode::ShuttingDown
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for v in 0..=20u16 {
            if let Some(c) = ErrorCode::from_u16(v) {
                assert_eq!(c as u16, v);
            }
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ProtocolError::Oversized { len: 9, max: 1 }.code(), ErrorCode::TooLarge);
    }
}
