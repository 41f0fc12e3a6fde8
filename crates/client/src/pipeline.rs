//! [`Pipeline`]: many appends in flight on the client's one connection, for
//! throughput. Owns the appends between submission and answer: those sent on
//! the current connection (by request id), those waiting to be (re)sent, and
//! the answers not yet handed back. Frames are batched into few writes; on
//! `NotLeader`, `Busy` or a lost connection the in-flight appends are re-sent
//! with their original `(session, seq)`, each until its own deadline.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::error::ClientError;
use super::route::{unexpected, Client, Next, Route};
use super::AppendAck;
use ringraft_proto::{Body, ClientResponse, Packet};

/// Queued bytes past which [`Pipeline::submit`] writes at once instead of
/// waiting for the window to fill or for a read.
const FLUSH_BYTES: usize = 256 * 1024;

/// Names one submitted append; answers are handed back with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// The result of one pipelined append, with its ticket.
pub type Completion = (Ticket, Result<AppendAck, ClientError>);

/// One append between submission and answer.
struct Pending {
    ticket: Ticket,
    stream: Arc<str>,
    records: Vec<Bytes>,
    /// `(session, seq)`, fixed at submission; every re-send reuses them.
    session: u64,
    seq: u64,
    /// Completed with `Timeout` if still unanswered at this instant.
    deadline: Instant,
    /// Not (re)sent before this instant (backoff after `Busy`).
    not_before: Instant,
    /// Retryable errors so far (the backoff exponent).
    attempts: u32,
}

/// Appends in flight on one connection; see the module docs of `client::pipeline`.
///
/// Made by [`Client::pipeline`]. Dropping it abandons what is outstanding
/// (the connection is then closed, so no late answer reaches later calls).
pub struct Pipeline<'a> {
    client: &'a mut Client,
    /// Sent on the current connection, by request id.
    sent: HashMap<u64, Pending>,
    /// Waiting to be sent or re-sent, oldest first.
    unsent: VecDeque<Pending>,
    /// Answered, not yet returned by [`Pipeline::next_ack`].
    done: VecDeque<Completion>,
    next_ticket: u64,
    /// Failed connection attempts in a row (the backoff exponent).
    conn_failures: u32,
    /// No connection attempt before this instant.
    reconnect_at: Instant,
    /// The stream named last, shared by the appends to it (most callers
    /// append to one stream at a time: one allocation, not one per append).
    last_stream: Option<Arc<str>>,
}

impl Client {
    /// A pipeline of appends on this client's connection and session.
    pub fn pipeline(&mut self) -> Pipeline<'_> {
        Pipeline {
            client: self,
            sent: HashMap::new(),
            unsent: VecDeque::new(),
            done: VecDeque::new(),
            next_ticket: 1,
            conn_failures: 0,
            reconnect_at: Instant::now(),
            last_stream: None,
        }
    }
}

impl Pipeline<'_> {
    /// Appends not yet answered (sent or waiting to be re-sent). Answered
    /// appends that [`Pipeline::next_ack`] has not returned yet are not
    /// counted: see [`Pipeline::outstanding`].
    pub fn in_flight(&self) -> usize {
        self.sent.len() + self.unsent.len()
    }

    /// Appends submitted whose completion [`Pipeline::next_ack`] has not
    /// returned yet (in flight, plus answered and waiting to be returned).
    /// One read can answer many appends at once, so a caller that keeps a
    /// window of its own counts with this, not with `in_flight`.
    pub fn outstanding(&self) -> usize {
        self.in_flight() + self.done.len()
    }

    /// Queues an append of `records` to `stream` and returns its ticket
    /// without waiting for the answer. Blocks, reading answers, only while
    /// `max_in_flight` appends are unanswered. Frames are written in batches
    /// (when enough are queued, or before waiting for answers).
    ///
    /// # Errors
    /// Only when opening the exactly-once session fails (first submission,
    /// or after [`Client::reset_session`]); the append is then not queued.
    /// Errors of the append itself come back through [`Pipeline::next_ack`].
    pub fn submit(&mut self, stream: &str, records: Vec<Bytes>) -> Result<Ticket, ClientError> {
        while self.in_flight() >= self.client.cfg.max_in_flight.max(1) {
            self.step();
        }
        let now = Instant::now();
        let deadline = now + self.client.cfg.request_timeout;
        let (session, seq) = self.client.next_seq(deadline)?;
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let stream = match &self.last_stream {
            Some(s) if &**s == stream => Arc::clone(s),
            _ => {
                let s: Arc<str> = Arc::from(stream);
                self.last_stream = Some(Arc::clone(&s));
                s
            }
        };
        let p = Pending { ticket, stream, records, session, seq, deadline, not_before: now, attempts: 0 };
        self.unsent.push_back(p);
        self.send_ready(now);
        if self.client.conn.as_ref().is_some_and(|c| c.queued() >= FLUSH_BYTES) {
            self.flush();
        }
        Ok(ticket)
    }

    /// The next completed append, blocking until one completes; `None`
    /// when nothing is outstanding. Completions come in answer order, not
    /// submission order. Every ticket is completed exactly once: with its
    /// offsets, its error, or `Timeout` when its deadline passed.
    pub fn next_ack(&mut self) -> Option<Completion> {
        loop {
            if let Some(c) = self.done.pop_front() {
                return Some(c);
            }
            if self.in_flight() == 0 {
                return None;
            }
            self.step();
        }
    }

    /// Writes every queued request now (a lost connection is handled like
    /// any other: the appends are re-sent later).
    pub fn flush(&mut self) {
        let deadline = self.earliest_deadline().unwrap_or_else(|| Instant::now() + self.client.cfg.request_timeout);
        if let Some(conn) = self.client.conn.as_mut() {
            if let Err(e) = conn.flush(deadline) {
                self.on_conn_lost(&e);
            }
        }
    }

    /// Waits for every outstanding append and returns all completions not
    /// yet handed back.
    pub fn wait_all(&mut self) -> Vec<Completion> {
        let mut v = Vec::with_capacity(self.in_flight() + self.done.len());
        while let Some(c) = self.next_ack() {
            v.push(c);
        }
        v
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        self.sent.values().chain(self.unsent.iter()).map(|p| p.deadline).min()
    }

    /// One round of progress, never blocking past the earliest deadline:
    /// expire, connect if needed, send what is due, then read one answer.
    fn step(&mut self) {
        let now = Instant::now();
        self.expire(now);
        let Some(deadline) = self.earliest_deadline() else { return };
        if self.client.conn.is_none() {
            if now < self.reconnect_at {
                sleep_until(self.reconnect_at.min(deadline));
                return;
            }
            if let Err(e) = self.client.reconnect(deadline) {
                if e.is_retryable() {
                    self.reconnect_at = Instant::now() + self.client.backoff(self.conn_failures);
                    self.conn_failures += 1;
                } else {
                    self.fail_all(&e);
                }
                return;
            }
            self.conn_failures = 0;
        }
        self.send_ready(now);
        self.flush();
        let next_resend = self.unsent.iter().map(|p| p.not_before).min();
        let wait_until = next_resend.map_or(deadline, |t| t.min(deadline));
        let Some(conn) = self.client.conn.as_mut() else { return };
        if self.sent.is_empty() {
            sleep_until(wait_until);
            return;
        }
        match conn.recv(wait_until) {
            Ok(p) => self.on_packet(p),
            Err(ClientError::Timeout) => return,
            Err(e) => return self.on_conn_lost(&e),
        }
        // Everything that one read brought in is handled now, so the caller
        // sees all those completions at once and its next submissions leave
        // in one write instead of one write per answer.
        loop {
            let Some(conn) = self.client.conn.as_mut() else { return };
            match conn.buffered() {
                Ok(Some(p)) => self.on_packet(p),
                Ok(None) => return,
                Err(e) => return self.on_conn_lost(&e),
            }
        }
    }

    /// Completes with `Timeout` every append whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self.sent.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(p) = self.sent.remove(&id) {
                self.done.push_back((p.ticket, Err(ClientError::Timeout)));
            }
        }
        let done = &mut self.done;
        self.unsent.retain(|p| {
            let keep = p.deadline > now;
            if !keep {
                done.push_back((p.ticket, Err(ClientError::Timeout)));
            }
            keep
        });
    }

    fn fail_all(&mut self, e: &ClientError) {
        let all = self.sent.drain().map(|(_, p)| p).chain(self.unsent.drain(..)).collect::<Vec<_>>();
        for p in all {
            self.done.push_back((p.ticket, Err(e.duplicate())));
        }
    }

    /// Encodes every due unsent append into the connection's write buffer.
    fn send_ready(&mut self, now: Instant) {
        if self.client.conn.is_none() {
            return;
        }
        for _ in 0..self.unsent.len() {
            let Some(p) = self.unsent.pop_front() else { break };
            if p.not_before > now {
                self.unsent.push_back(p);
                continue;
            }
            let id = self.client.request_id();
            let queued = match self.client.conn.as_mut() {
                Some(conn) => conn.queue_append(id, &p.stream, p.session, p.seq, &p.records),
                None => Err(ClientError::Timeout),
            };
            match queued {
                Ok(()) => {
                    self.sent.insert(id, p);
                }
                Err(e) => self.done.push_back((p.ticket, Err(e))),
            }
        }
    }

    fn on_packet(&mut self, p: Packet) {
        let Some(mut pend) = self.sent.remove(&p.request_id) else {
            // A refusal before close (request id 0), else a late answer to
            // an append that already timed out.
            if let (0, Body::Error(e)) = (p.request_id, &p.body) {
                let err = ClientError::from_frame(e);
                self.client.on_error_frame(e, Route::Leader);
                self.on_conn_lost(&err);
            }
            return;
        };
        let e = match p.body {
            Body::ClientResponse(ClientResponse::Append { first_offset, count }) => {
                self.done.push_back((pend.ticket, Ok(AppendAck { first_offset, count })));
                return;
            }
            Body::Error(e) => e,
            other => {
                self.done.push_back((pend.ticket, Err(unexpected("AppendResponse", &other))));
                return;
            }
        };
        let err = ClientError::from_frame(&e);
        let next = self.client.on_error_frame(&e, Route::Leader);
        // Without a session a server Timeout leaves the outcome unknown:
        // re-sending could apply the append twice.
        if next == Next::Fail || (matches!(err, ClientError::Timeout) && pend.session == 0) {
            self.done.push_back((pend.ticket, Err(err)));
            return;
        }
        pend.attempts += 1;
        if next == Next::Backoff {
            pend.not_before = Instant::now() + self.client.backoff(pend.attempts - 1);
        }
        let not_before = pend.not_before;
        self.unsent.push_back(pend);
        if self.client.conn.is_none() {
            // NotLeader or ShuttingDown dropped the connection: everything
            // else sent on it goes again, to the next server.
            self.requeue_sent(true);
            self.reconnect_at = not_before;
        }
    }

    /// The connection broke: re-send what was on it (appends without a
    /// session have an unknown outcome and complete with `Timeout`).
    fn on_conn_lost(&mut self, e: &ClientError) {
        log::debug!("client pipeline: connection lost: {e}");
        self.client.drop_conn(true);
        self.requeue_sent(true);
        self.reconnect_at = Instant::now() + self.client.backoff(self.conn_failures);
        self.conn_failures += 1;
    }

    fn requeue_sent(&mut self, outcome_unknown: bool) {
        let mut again: Vec<Pending> = self.sent.drain().map(|(_, p)| p).collect();
        again.sort_by_key(|p| p.ticket);
        for p in again {
            if outcome_unknown && p.session == 0 {
                self.done.push_back((p.ticket, Err(ClientError::Timeout)));
            } else {
                self.unsent.push_back(p);
            }
        }
    }
}

impl Drop for Pipeline<'_> {
    fn drop(&mut self) {
        if self.in_flight() > 0 || self.client.conn.as_ref().is_some_and(|c| c.queued() > 0) {
            self.client.drop_conn(false);
        }
    }
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}
