//! Answers written on the FSM caller thread are gathered per connection
//! and handed to the transport once per FSM batch: one encode buffer, one
//! queue push and at most one wake-up of the I/O thread per connection per
//! batch, instead of per answer.
//!
//! The outbox is thread-local and exists only on the thread that called
//! [`enable`] (the FSM caller, from the service's state machine); answers
//! from any other thread (status from the core thread, a tail expiring on
//! the timer thread) go straight to the transport. [`flush`] runs at the end
//! of every FSM batch, after every callback of the batch ran.

use std::cell::RefCell;

use bytes::BytesMut;
use hashbrown::HashMap;

use ringraft::rpc::encode_packet;
use ringraft::rpc::transport::{ConnId, Dest, TransportHandle};
use ringraft::rpc::Packet;

#[derive(Default)]
struct Outbox {
    enabled: bool,
    by_conn: HashMap<ConnId, (TransportHandle, BytesMut)>,
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

/// Gather answers on this thread from now on (the FSM caller).
pub(crate) fn enable() {
    OUTBOX.with(|o| o.borrow_mut().enabled = true);
}

/// Queues `p` for `conn`: gathered when this thread has an outbox, else
/// sent at once.
pub(crate) fn send(out: &TransportHandle, conn: ConnId, p: &Packet) {
    let gathered = OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        if !o.enabled {
            return Ok(false);
        }
        let (_, buf) = o.by_conn.entry(conn).or_insert_with(|| (out.clone(), BytesMut::with_capacity(4096)));
        encode_packet(buf, p).map(|()| true)
    });
    match gathered {
        Ok(true) => {}
        Ok(false) => {
            if let Err(e) = out.send(Dest::Conn(conn), p) {
                log::debug!("service: answer to connection {conn:?} dropped: {e}");
            }
        }
        Err(e) => log::error!("service: cannot encode an answer for connection {conn:?}: {e}"),
    }
}

/// Hands every gathered answer to the transport.
pub(crate) fn flush() {
    let batches: Vec<(ConnId, TransportHandle, BytesMut)> =
        OUTBOX.with(|o| o.borrow_mut().by_conn.drain().map(|(c, (h, b))| (c, h, b)).collect());
    for (conn, out, buf) in batches {
        if let Err(e) = out.send_encoded(Dest::Conn(conn), buf.freeze()) {
            log::debug!("service: answers to connection {conn:?} dropped: {e}");
        }
    }
}
