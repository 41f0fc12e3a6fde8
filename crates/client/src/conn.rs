//! One blocking connection to one server: TCP connect with a timeout, the
//! handshake, a write buffer that batches frames, and reads bounded by a
//! deadline. Owns the socket, the [`FrameDecoder`] and the encode buffer;
//! knows nothing about retries or leaders (see `route.rs`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::error::ClientError;
use super::ClientConfig;
use ringraft_proto::GroupId;
use ringraft_proto::{decode_packet, encode_packet, Body, FrameDecoder, Hello, Packet, DEFAULT_MAX_BODY, VERSION};

/// The shortest socket timeout we set: `set_read_timeout(Some(0))` is an error.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// An established, handshaken connection.
pub(crate) struct Conn {
    stream: TcpStream,
    decoder: FrameDecoder,
    /// Encoded frames not yet written (batched until [`Conn::flush`]).
    out: BytesMut,
    /// The server's node id, from its HelloOk.
    pub(crate) node_id: u64,
    /// Index of the server in `ClientConfig::servers` (usize::MAX when the
    /// address is not from the list).
    pub(crate) server: usize,
    /// Read buffer, reused (zeroing 64 KiB per read cost microseconds).
    chunk: Box<[u8]>,
    /// The socket timeouts last set: setting them is a system call, so they
    /// are changed only when a call's deadline needs it.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// Whether a socket timeout of `current` must change to honour `want`:
/// when it would wait past the deadline, or is so short that the call
/// would wake up many times before it.
fn must_reset(current: Option<Duration>, want: Duration) -> bool {
    current.is_none_or(|c| c > want || c < want / 2)
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
}

fn resolve(addr: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address")).into());
    }
    Ok(addrs)
}

impl Conn {
    /// Connects to `addr` and completes the handshake, all before
    /// `connect_timeout` or `deadline`, whichever is earlier.
    ///
    /// # Errors
    /// `Io` (refused, unreachable), `Timeout`, `Protocol`, or the typed
    /// refusal the server sent (`Unauthorized`, `WrongCluster`, ...).
    pub(crate) fn open(addr: &str, server: usize, cfg: &ClientConfig, deadline: Instant) -> Result<Conn, ClientError> {
        let deadline = deadline.min(Instant::now() + cfg.connect_timeout);
        let mut last: Option<ClientError> = None;
        let mut stream = None;
        for sa in resolve(addr)? {
            let Some(left) = remaining(deadline) else { break };
            match TcpStream::connect_timeout(&sa, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e.into()),
            }
        }
        let Some(stream) = stream else { return Err(last.unwrap_or(ClientError::Timeout)) };
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            decoder: FrameDecoder::new(DEFAULT_MAX_BODY),
            out: BytesMut::with_capacity(64 * 1024),
            node_id: 0,
            server,
            chunk: vec![0u8; READ_CHUNK].into_boxed_slice(),
            read_timeout: None,
            write_timeout: None,
        };
        conn.handshake(cfg, deadline)?;
        Ok(conn)
    }

    fn handshake(&mut self, cfg: &ClientConfig, deadline: Instant) -> Result<(), ClientError> {
        let hello = Hello {
            cluster_id: cfg.cluster_id,
            node_id: 0,
            role: cfg.role,
            min_version: VERSION,
            max_version: VERSION,
            token: cfg.token.clone(),
        };
        self.queue(&Packet { group: GroupId(0), request_id: 1, body: Body::Hello(hello) })?;
        self.flush(deadline)?;
        let p = self.recv(deadline)?;
        match p.body {
            Body::HelloOk(ok) if ok.cluster_id != cfg.cluster_id => Err(ClientError::WrongCluster),
            Body::HelloOk(ok) => {
                self.node_id = ok.node_id;
                Ok(())
            }
            Body::Error(e) => Err(ClientError::from_frame(&e)),
            other => Err(ClientError::Server {
                code: 9,
                message: format!("expected HelloOk, got {:?} frame", other.msg_type()),
            }),
        }
    }

    /// Encodes `p` into the write buffer (nothing is sent yet).
    ///
    /// # Errors
    /// `Protocol` when the request cannot be encoded (a name over 65,535
    /// bytes, too many records).
    pub(crate) fn queue(&mut self, p: &Packet) -> Result<(), ClientError> {
        encode_packet(&mut self.out, p).map_err(|e| ClientError::BadRequest(e.to_string()))
    }

    /// Encodes an append request into the write buffer from borrowed parts
    /// (nothing is sent yet).
    ///
    /// # Errors
    /// `BadRequest` when the request cannot be encoded.
    pub(crate) fn queue_append(
        &mut self,
        request_id: u64,
        stream: &str,
        session: u64,
        seq: u64,
        records: &[bytes::Bytes],
    ) -> Result<(), ClientError> {
        ringraft_proto::encode_append_request(&mut self.out, request_id, stream, session, seq, records)
            .map_err(|e| ClientError::BadRequest(e.to_string()))
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.out.len()
    }

    /// Writes every queued frame, giving up at `deadline`.
    ///
    /// # Errors
    /// `Timeout` if the socket would not take the bytes in time (the
    /// connection must then be dropped: a frame may be half written), `Io`.
    pub(crate) fn flush(&mut self, deadline: Instant) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let left = remaining(deadline).ok_or(ClientError::Timeout)?.max(MIN_TIMEOUT);
        if must_reset(self.write_timeout, left) {
            self.stream.set_write_timeout(Some(left))?;
            self.write_timeout = Some(left);
        }
        let r = self.stream.write_all(&self.out);
        self.out.clear();
        r.map_err(timeout_or_io)
    }

    /// The next frame already read from the socket, without a system call:
    /// `None` when no whole frame is buffered.
    ///
    /// # Errors
    /// `Protocol` for undecodable bytes.
    pub(crate) fn buffered(&mut self) -> Result<Option<Packet>, ClientError> {
        match self.decoder.next_frame()? {
            Some(frame) => Ok(Some(decode_packet(&frame)?)),
            None => Ok(None),
        }
    }

    /// The next frame from the server, waiting at most until `deadline`.
    ///
    /// # Errors
    /// `Timeout` when nothing complete arrived in time (the connection stays
    /// usable), `Io` when the server closed the connection or the socket
    /// failed, `Protocol` for undecodable bytes.
    pub(crate) fn recv(&mut self, deadline: Instant) -> Result<Packet, ClientError> {
        loop {
            if let Some(p) = self.buffered()? {
                return Ok(p);
            }
            let left = remaining(deadline).ok_or(ClientError::Timeout)?.max(MIN_TIMEOUT);
            if must_reset(self.read_timeout, left) {
                self.stream.set_read_timeout(Some(left))?;
                self.read_timeout = Some(left);
            }
            match self.stream.read(&mut self.chunk) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection").into())
                }
                Ok(n) => self.decoder.push(&self.chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(timeout_or_io(e)),
            }
        }
    }
}

fn timeout_or_io(e: io::Error) -> ClientError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
        _ => ClientError::Io(e),
    }
}
