//! The frame: a 32-byte header (magic, version, type, flags, group id,
//! request id, body length, CRC32C) followed by the body, and the incremental
//! [`FrameDecoder`] that cuts frames out of whatever chunks a socket yields.
//!
//! Layout (little-endian, `proto-spec/PROTOCOL.md` §"Frame header"):
//!
//! ```text
//!  0  [u8;4] magic "RRPC"     16 u64 request id
//!  4  u8     version (1)      24 u32 body length
//!  5  u8     type             28 u32 CRC32C of bytes 0..28, then the body
//!  6  u16    flags (0)
//!  8  u64    group id
//! ```
//!
//! The body length is checked against the configured maximum as soon as the
//! header is complete, before any buffer is grown for the body. Bodies are
//! handed out as `Bytes` slices of the read buffer (no copy).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::ProtocolError;
use super::ids::GroupId;

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"RRPC";
/// The protocol version this build speaks (the only one so far).
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_BYTES: usize = 32;
/// Flag bits version 1 defines (none; all 16 are reserved and must be 0).
pub const FLAGS_KNOWN: u16 = 0;
/// The default maximum body length: 16 MiB.
pub const DEFAULT_MAX_BODY: u32 = 16 << 20;

/// A parsed, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version (always [`VERSION`] once validated).
    pub version: u8,
    /// Message type byte (see [`super::MsgType`]).
    pub kind: u8,
    /// Flag bits (0 in version 1).
    pub flags: u16,
    /// The Raft group the frame is about (0: none / many).
    pub group: GroupId,
    /// Chosen by the requester, echoed in the answer (0 for one-way messages).
    pub request_id: u64,
    /// Bytes of body after the header.
    pub body_len: u32,
    /// CRC32C (Castagnoli) of header bytes 0..28 followed by the body.
    pub crc: u32,
}

impl FrameHeader {
    /// Parses and validates a header: magic, version, reserved flags and
    /// the body length against `max_body`. The CRC is checked later, with the
    /// body.
    ///
    /// # Errors
    /// [`ProtocolError::BadMagic`], [`ProtocolError::VersionUnsupported`],
    /// [`ProtocolError::BadFlags`] or [`ProtocolError::Oversized`].
    pub fn parse(h: &[u8; HEADER_BYTES], max_body: u32) -> Result<FrameHeader, ProtocolError> {
        let magic = [h[0], h[1], h[2], h[3]];
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        let mut b = &h[4..];
        let version = b.get_u8();
        let kind = b.get_u8();
        let flags = b.get_u16_le();
        let group = GroupId(b.get_u64_le());
        let request_id = b.get_u64_le();
        let body_len = b.get_u32_le();
        let crc = b.get_u32_le();
        if version != VERSION {
            return Err(ProtocolError::VersionUnsupported(version));
        }
        if flags & !FLAGS_KNOWN != 0 {
            return Err(ProtocolError::BadFlags(flags));
        }
        if body_len > max_body {
            return Err(ProtocolError::Oversized { len: u64::from(body_len), max: u64::from(max_body) });
        }
        Ok(FrameHeader { version, kind, flags, group, request_id, body_len, crc })
    }
}

/// One whole frame: its header and its body, a slice of the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The validated header.
    pub header: FrameHeader,
    /// The body (CRC already checked).
    pub body: Bytes,
}

impl Frame {
    /// Decodes exactly one frame from `bytes` (test vectors, fuzzing).
    ///
    /// # Errors
    /// Everything [`FrameDecoder::next_frame`] reports, plus
    /// [`ProtocolError::Truncated`] for an incomplete frame and
    /// [`ProtocolError::Malformed`] for bytes after it.
    pub fn decode_exact(bytes: &[u8], max_body: u32) -> Result<Frame, ProtocolError> {
        let mut d = FrameDecoder::new(max_body);
        d.push(bytes);
        match d.next_frame()? {
            Some(f) if d.buffered() == 0 => Ok(f),
            Some(_) => Err(ProtocolError::Malformed("bytes after the frame")),
            None => {
                let need = d.pending.map_or(HEADER_BYTES, |h| HEADER_BYTES + h.body_len as usize);
                Err(ProtocolError::Truncated { need, have: bytes.len() })
            }
        }
    }
}

/// Appends one frame to `out`: a header, then whatever `body` writes, then
/// patches the length and CRC in. On error `out` is left as it was.
///
/// # Errors
/// Whatever `body` returns, or [`ProtocolError::Oversized`] if the body
/// exceeds `u32::MAX` bytes.
pub fn write_frame(
    out: &mut BytesMut,
    kind: u8,
    group: GroupId,
    request_id: u64,
    body: impl FnOnce(&mut BytesMut) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    let start = out.len();
    out.put_slice(&MAGIC);
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u16_le(0);
    out.put_u64_le(group.0);
    out.put_u64_le(request_id);
    out.put_u64_le(0); // length and CRC, patched below
    if let Err(e) = body(out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - HEADER_BYTES;
    let Ok(len32) = u32::try_from(len) else {
        out.truncate(start);
        return Err(ProtocolError::Oversized { len: len as u64, max: u64::from(u32::MAX) });
    };
    out[start + 24..start + 28].copy_from_slice(&len32.to_le_bytes());
    let crc = frame_crc(&out[start..start + 28], &out[start + HEADER_BYTES..]);
    out[start + 28..start + 32].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The CRC32C of header bytes 0..28 followed by the body.
pub fn frame_crc(head28: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(head28), body)
}

/// Cuts frames out of a byte stream fed in arbitrary chunks.
///
/// After an error the decoder is poisoned: every later call returns the
/// same error (the connection must be closed; framing cannot be recovered).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_body: u32,
    pending: Option<FrameHeader>,
    failed: Option<ProtocolError>,
}

impl FrameDecoder {
    /// A decoder refusing bodies longer than `max_body` bytes.
    pub fn new(max_body: u32) -> FrameDecoder {
        FrameDecoder { buf: BytesMut::with_capacity(4096), max_body, pending: None, failed: None }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The read buffer, for reading a socket straight into it (append only).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// A header that fails [`FrameHeader::parse`] (checked as soon as its 32
    /// bytes are in, before the body is buffered) or a CRC mismatch.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.next_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                let Some(h) = self.buf.get(..HEADER_BYTES) else { return Ok(None) };
                let mut raw = [0u8; HEADER_BYTES];
                raw.copy_from_slice(h);
                let h = FrameHeader::parse(&raw, self.max_body)?;
                self.pending = Some(h);
                h
            }
        };
        let need = HEADER_BYTES + header.body_len as usize;
        if self.buf.len() < need {
            // Safe to reserve: body_len was checked against max_body.
            self.buf.reserve(need - self.buf.len());
            return Ok(None);
        }
        let frame = self.buf.split_to(need).freeze();
        self.pending = None;
        let actual = frame_crc(&frame[..28], &frame[HEADER_BYTES..]);
        if actual != header.crc {
            return Err(ProtocolError::BadCrc { expected: header.crc, actual });
        }
        Ok(Some(Frame { header, body: frame.slice(HEADER_BYTES..) }))
    }
}

/// A cursor over a body that fails with [`ProtocolError`] instead of
/// panicking and hands out payloads as zero-copy slices.
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    /// A reader at the start of `buf`.
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], ProtocolError> {
        if self.remaining() < n {
            return Err(ProtocolError::Truncated { need: self.pos + n, have: self.buf.len() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads a `u8`.
    ///
    /// # Errors
    /// [`ProtocolError::Truncated`] at the end of the body.
    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a little-endian `u16`.
    ///
    /// # Errors
    /// [`ProtocolError::Truncated`] at the end of the body.
    pub fn u16(&mut self) -> Result<u16, ProtocolError> {
        let mut b = self.take(2)?;
        Ok(b.get_u16_le())
    }

    /// Reads a little-endian `u32`.
    ///
    /// # Errors
    /// [`ProtocolError::Truncated`] at the end of the body.
    pub fn u32(&mut self) -> Result<u32, ProtocolError> {
        let mut b = self.take(4)?;
        Ok(b.get_u32_le())
    }

    /// Reads a little-endian `u64`.
    ///
    /// # Errors
    /// [`ProtocolError::Truncated`] at the end of the body.
    pub fn u64(&mut self) -> Result<u64, ProtocolError> {
        let mut b = self.take(8)?;
        Ok(b.get_u64_le())
    }

    /// A bool byte: 0 or 1, anything else is malformed.
    pub fn bool(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ProtocolError::Malformed("bool byte not 0 or 1")),
        }
    }

    /// `n` bytes as a slice of the body (no copy).
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, ProtocolError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }

    /// A u32 count of items at least `item_min` bytes each, checked against
    /// the bytes left so that no allocation is sized by an unchecked count.
    pub fn count(&mut self, item_min: usize) -> Result<usize, ProtocolError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_min.max(1)) > self.remaining() {
            return Err(ProtocolError::Malformed("count exceeds the bytes left"));
        }
        Ok(n)
    }

    /// A u16-length-prefixed UTF-8 string as a slice of the body (no copy;
    /// the UTF-8 check is done here).
    pub fn str_bytes(&mut self) -> Result<Bytes, ProtocolError> {
        let n = self.u16()? as usize;
        let b = self.bytes(n)?;
        std::str::from_utf8(&b).map_err(|_| ProtocolError::Malformed("string is not UTF-8"))?;
        Ok(b)
    }

    /// A u16-length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String, ProtocolError> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| ProtocolError::Malformed("string is not UTF-8"))
    }

    /// Fails unless the whole body was consumed.
    pub fn finish(self) -> Result<(), ProtocolError> {
        if self.remaining() != 0 {
            return Err(ProtocolError::Malformed("trailing bytes after the body"));
        }
        Ok(())
    }
}

/// Writes a u16-length-prefixed UTF-8 string.
///
/// # Errors
/// [`ProtocolError::Malformed`] if it is longer than 65,535 bytes.
pub fn put_string(out: &mut BytesMut, s: &str) -> Result<(), ProtocolError> {
    let n = u16::try_from(s.len()).map_err(|_| ProtocolError::Malformed("string longer than 65535 bytes"))?;
    out.put_u16_le(n);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// Writes a u32 length or count.
///
/// # Errors
/// [`ProtocolError::Malformed`] if it does not fit in 32 bits.
pub fn put_len(out: &mut BytesMut, n: usize) -> Result<(), ProtocolError> {
    out.put_u32_le(u32::try_from(n).map_err(|_| ProtocolError::Malformed("length does not fit in u32"))?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_frame() -> BytesMut {
        let mut out = BytesMut::new();
        write_frame(&mut out, 0x1a, GroupId(7), 99, |b| {
            b.put_slice(b"hello");
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn byte_at_a_time_yields_the_frame_once() {
        let f = one_frame();
        let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
        let mut got = Vec::new();
        for b in f.iter() {
            d.push(&[*b]);
            while let Some(fr) = d.next_frame().unwrap() {
                got.push(fr);
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].body[..], b"hello");
        assert_eq!(got[0].header.group, GroupId(7));
        assert_eq!(got[0].header.request_id, 99);
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        let f = one_frame();
        let mut d = FrameDecoder::new(4);
        d.push(&f[..HEADER_BYTES]);
        assert_eq!(d.next_frame(), Err(ProtocolError::Oversized { len: 5, max: 4 }));
        assert!(d.next_frame().is_err(), "poisoned");
    }

    #[test]
    fn a_flipped_body_bit_fails_the_crc() {
        let mut f = one_frame();
        f[HEADER_BYTES + 1] ^= 0x10;
        assert!(matches!(Frame::decode_exact(&f, 64), Err(ProtocolError::BadCrc { .. })));
        let f = one_frame();
        assert!(matches!(Frame::decode_exact(&f[..35], 64), Err(ProtocolError::Truncated { need: 37, have: 35 })));
    }
}
