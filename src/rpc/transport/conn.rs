//! One connection as the I/O thread sees it: its socket, where it is in the
//! handshake, its frame decoder (read side) and its bounded write buffer.
//! Pure socket mechanics; the decisions live in `event_loop`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;

use crate::core::NodeId;
use crate::rpc::{FrameDecoder, Role};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepted; the first frame must be `Hello`.
    AwaitHello,
    /// Dialled; `Hello` is queued or sent, waiting for `HelloOk` from `expect`.
    AwaitHelloOk {
        /// The node the address belongs to.
        expect: NodeId,
    },
    /// Handshake done: normal traffic.
    Open,
    /// An error frame is queued: the write side shuts once it is flushed,
    /// input is discarded until end of stream or the deadline.
    Closing,
}

/// One socket and its buffers.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    /// The remote address (for logs and the handler).
    pub(super) addr: SocketAddr,
    pub(super) phase: Phase,
    /// The role granted (meaningful once `Open`; `Peer` for dialled ones).
    pub(super) role: Role,
    /// The peer's node id: for dialled connections from the start, for
    /// accepted ones once a peer `Hello` is admitted.
    pub(super) node: Option<NodeId>,
    /// False for a dialled socket until its first writable event shows the
    /// connect finished; nothing is written before.
    pub(super) connected: bool,
    pub(super) decoder: FrameDecoder,
    /// Encoded frames not yet written. Invariant: `len() <= write_buffer_max`.
    pub(super) wbuf: BytesMut,
    /// Handshake timeout, or the end of the closing linger.
    pub(super) deadline: Option<Instant>,
    /// Set while the connection is on the loop's to-flush list.
    pub(super) dirty: bool,
    /// The write side has been shut down (closing).
    pub(super) write_shut: bool,
    /// Shared with sending threads while the connection is open
    /// (`direct.rs`); its `head` is written before `wbuf`.
    pub(super) direct: Option<std::sync::Arc<super::direct::Direct>>,
}

impl Conn {
    pub(super) fn new(stream: TcpStream, addr: SocketAddr, phase: Phase, max_body: u32) -> Conn {
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("rpc {addr}: set_nodelay: {e}");
        }
        Conn {
            stream,
            addr,
            phase,
            role: Role::Peer,
            node: None,
            connected: true,
            decoder: FrameDecoder::new(max_body),
            wbuf: BytesMut::with_capacity(4096),
            deadline: None,
            dirty: false,
            write_shut: false,
            direct: None,
        }
    }

    /// One `read` into `scratch`: the bytes read (0 at end of stream).
    /// Bytes are fed to the decoder unless the connection is closing.
    pub(super) fn read_once(&mut self, scratch: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(scratch)?;
        if self.phase != Phase::Closing {
            self.decoder.push(&scratch[..n]);
        }
        Ok(n)
    }

    /// Writes as much of the buffer as the socket takes (one `write` call
    /// for a buffer the kernel accepts whole). `Ok` on `WouldBlock`: the
    /// next writable event resumes.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if !self.connected {
            return Ok(());
        }
        // Senders that write directly are kept out while this runs, and a
        // partial frame of theirs (`head`) goes first.
        let direct = self.direct.clone();
        let mut guard = direct.as_ref().map(|d| d.lock());
        if let Some(st) = guard.as_mut() {
            if !write_out(&mut self.stream, &mut st.head)? {
                st.busy = true;
                return Ok(());
            }
        }
        if !write_out(&mut self.stream, &mut self.wbuf)? {
            if let Some(st) = guard.as_mut() {
                st.busy = true;
            }
            return Ok(());
        }
        if let Some(st) = guard.as_mut() {
            st.busy = st.queued > 0;
        }
        drop(guard);
        if self.phase == Phase::Closing && !self.write_shut {
            self.write_shut = true;
            // The peer sees end of stream after the error frame.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Lets sending threads write to this (open) connection directly.
    pub(super) fn share_write_side(&mut self) -> Option<std::sync::Arc<super::direct::Direct>> {
        use std::os::fd::AsRawFd;
        if self.direct.is_none() {
            match super::direct::Direct::new(self.stream.as_raw_fd(), true) {
                Ok(d) => self.direct = Some(std::sync::Arc::new(d)),
                Err(e) => log::warn!("rpc {}: no direct writes ({e})", self.addr),
            }
        }
        self.direct.clone()
    }

    /// For a dialled socket on a writable event: has the connect finished?
    ///
    /// # Errors
    /// The connect failed.
    pub(super) fn check_connected(&mut self) -> io::Result<bool> {
        if self.connected {
            return Ok(true);
        }
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.connected = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Writes all of `buf` that the socket takes: `Ok(true)` when it is empty,
/// `Ok(false)` on `WouldBlock` (the next writable event resumes).
fn write_out(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<bool> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
