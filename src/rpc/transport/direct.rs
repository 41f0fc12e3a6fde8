//! Direct writes: a thread that sends through a [`super::TransportHandle`]
//! writes its frames straight into an open connection's socket when the
//! I/O thread has nothing pending for it, instead of queueing them and
//! waking the I/O thread. At low load that removes a parked hop (15–20 µs
//! here) from every send: the leader's AppendEntries, a follower's answer,
//! the answer to a client.
//!
//! The rules that keep bytes in order and frames whole, all under the
//! connection's [`Direct`] lock:
//! * Only one writer touches the socket at a time: a sender writes only
//!   while holding the lock, and so does the I/O thread when it flushes.
//! * A sender writes only when the connection is not `busy`: nothing of
//!   the I/O thread's is waiting to be written (its buffer, `head`, or
//!   frames queued through the lock). Otherwise it queues the frames and
//!   counts them in `queued`, still under the lock, so no later direct
//!   write can overtake them.
//! * What the socket did not take of a direct write (a partial frame) goes
//!   into `head`, which the I/O thread writes before anything else.
//! * Only the I/O thread clears `busy`, when `head`, its buffer and
//!   `queued` are all empty.
//!
//! The socket is a `dup` of the I/O thread's, so a sender never writes to
//! a descriptor number the I/O thread closed and the kernel reused; the I/O
//! thread shuts the socket down when it closes the connection.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use bytes::BytesMut;
use parking_lot::{Mutex, MutexGuard};

/// The shared write side of one open connection.
pub(super) struct Direct {
    fd: OwnedFd,
    state: Mutex<DirectState>,
}

/// See the module docs.
#[derive(Default)]
pub(super) struct DirectState {
    /// The I/O thread has (or is about to have) bytes for the socket.
    pub busy: bool,
    /// Frames queued through the lock and not yet in the I/O thread's buffer.
    pub queued: usize,
    /// The unwritten rest of a direct write; written before anything else.
    pub head: BytesMut,
    /// The connection left the open phase: no more direct writes.
    pub closed: bool,
}

impl Direct {
    /// Shares the socket `fd` (duplicated here).
    ///
    /// # Errors
    /// `dup` failed (out of descriptors): the connection then works
    /// through the I/O thread only.
    #[allow(unsafe_code)]
    pub(super) fn new(fd: RawFd, busy: bool) -> io::Result<Direct> {
        // SAFETY: dup of a descriptor the caller owns and keeps open for the
        // call; the new descriptor is owned by the returned value only.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(dup) };
        Ok(Direct { fd, state: Mutex::new(DirectState { busy, ..DirectState::default() }) })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, DirectState> {
        self.state.lock()
    }

    /// One non-blocking `send` (no SIGPIPE): the bytes taken.
    ///
    /// # Errors
    /// The socket's error; `WouldBlock` when its buffer is full.
    #[allow(unsafe_code)]
    pub(super) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes for the call; the
            // descriptor is owned by `self`.
            let rc = unsafe {
                libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
            };
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// What [`try_write`] did with the frames.
pub(super) enum Written {
    /// All on the socket, or the rest kept in `head` for the I/O thread
    /// (which must be told to flush).
    Done { flush_needed: bool },
    /// Not written: queue them (the caller counted them in `queued`).
    Queue,
    /// The socket failed: the I/O thread will see it; the frames are lost
    /// like on any broken connection.
    Broken,
}

/// Writes `frames` directly if the rules allow (module docs); the caller
/// holds `st`, the lock of `d`.
pub(super) fn try_write(d: &Direct, st: &mut DirectState, frames: &[u8]) -> Written {
    if st.closed || st.busy {
        st.queued += 1;
        return Written::Queue;
    }
    match d.send(frames) {
        Ok(n) if n == frames.len() => Written::Done { flush_needed: false },
        Ok(n) => {
            st.head.extend_from_slice(&frames[n..]);
            st.busy = true;
            Written::Done { flush_needed: true }
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            st.head.extend_from_slice(frames);
            st.busy = true;
            Written::Done { flush_needed: true }
        }
        Err(e) => {
            log::debug!("rpc: direct write failed: {e}");
            Written::Broken
        }
    }
}
