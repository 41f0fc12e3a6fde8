//! The readable trace of a run and its hash.
//!
//! Every step records a small `Copy` event; the events are folded into a
//! 64-bit trace hash (two runs of one seed must give the same hash), kept in
//! a ring of the last [`TAIL_LINES`] for failure reports, and printed as
//! they happen with `--trace`. Formatting happens only when a line is shown,
//! so tracing costs a hash fold per step.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write as _;

use super::rng::{fnv1a, fold};

/// Lines kept for a failure report.
pub const TAIL_LINES: usize = 50;

/// One traced event. Node fields are node ids.
#[derive(Clone, Copy, Debug)]
pub enum Ev {
    /// A message reached its node and was stepped.
    Deliver {
        /// Sender.
        from: u64,
        /// Receiver.
        to: u64,
        /// `MessageBody::kind`.
        kind: &'static str,
        /// Message term.
        term: u64,
        /// Kind-specific numbers (e.g. prev index, entry count, commit).
        a: u64,
        /// See `a`.
        b: u64,
        /// See `a`.
        c: u64,
    },
    /// A message was lost on arrival (partition, node down).
    Lost {
        /// Sender.
        from: u64,
        /// Receiver.
        to: u64,
        /// `MessageBody::kind`.
        kind: &'static str,
        /// Why it was lost.
        why: &'static str,
    },
    /// A node's timer fired.
    Tick {
        /// The node.
        node: u64,
    },
    /// A write job completed.
    Persisted {
        /// The node.
        node: u64,
        /// The job id.
        job: u64,
        /// The persist point reported, if any (0 for none).
        index: u64,
    },
    /// The state machine applied up to `index`.
    Applied {
        /// The node.
        node: u64,
        /// The last index applied.
        index: u64,
    },
    /// A node's role, term or leader changed.
    Role {
        /// The node.
        node: u64,
        /// The new role.
        role: &'static str,
        /// The term.
        term: u64,
        /// The known leader.
        leader: u64,
    },
    /// A node's commit index advanced.
    Commit {
        /// The node.
        node: u64,
        /// The new commit index.
        index: u64,
    },
    /// A client proposed a batch.
    Propose {
        /// The node asked.
        node: u64,
        /// First index (0 when refused).
        first: u64,
        /// Last index (0 when refused).
        last: u64,
    },
    /// A client issued a read.
    Read {
        /// The node asked.
        node: u64,
        /// The read id.
        id: u64,
        /// "index" or "lease".
        mode: &'static str,
        /// Highest acknowledged index when issued.
        floor: u64,
    },
    /// A read was confirmed (`ok`) or failed.
    ReadDone {
        /// The node.
        node: u64,
        /// The read id.
        id: u64,
        /// The read index (0 when failed).
        index: u64,
    },
    /// A fault or world change (crash, partition, ...).
    Fault {
        /// What happened.
        what: &'static str,
        /// Numbers that say to whom (node ids, masks, indices).
        a: u64,
        /// See `a`.
        b: u64,
    },
}

impl Ev {
    fn hash_into(&self, h: u64) -> u64 {
        match *self {
            Ev::Deliver { from, to, kind, term, a, b, c } => {
                [1, from, to, fnv1a(kind.as_bytes()), term, a, b, c].iter().fold(h, |h, w| fold(h, *w))
            }
            Ev::Lost { from, to, kind, why } => {
                [2, from, to, fnv1a(kind.as_bytes()), fnv1a(why.as_bytes())].iter().fold(h, |h, w| fold(h, *w))
            }
            Ev::Tick { node } => fold(fold(h, 3), node),
            Ev::Persisted { node, job, index } => [4, node, job, index].iter().fold(h, |h, w| fold(h, *w)),
            Ev::Applied { node, index } => [5, node, index].iter().fold(h, |h, w| fold(h, *w)),
            Ev::Role { node, role, term, leader } => {
                [6, node, fnv1a(role.as_bytes()), term, leader].iter().fold(h, |h, w| fold(h, *w))
            }
            Ev::Commit { node, index } => [7, node, index].iter().fold(h, |h, w| fold(h, *w)),
            Ev::Propose { node, first, last } => [8, node, first, last].iter().fold(h, |h, w| fold(h, *w)),
            Ev::Read { node, id, mode, floor } => {
                [9, node, id, fnv1a(mode.as_bytes()), floor].iter().fold(h, |h, w| fold(h, *w))
            }
            Ev::ReadDone { node, id, index } => [10, node, id, index].iter().fold(h, |h, w| fold(h, *w)),
            Ev::Fault { what, a, b } => [11, fnv1a(what.as_bytes()), a, b].iter().fold(h, |h, w| fold(h, *w)),
        }
    }
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ev::Deliver { from, to, kind, term, a, b, c } => {
                write!(f, "n{to} <- n{from} {kind} t{term} [{a} {b} {c}]")
            }
            Ev::Lost { from, to, kind, why } => write!(f, "n{to} <- n{from} {kind} LOST ({why})"),
            Ev::Tick { node } => write!(f, "n{node} tick"),
            Ev::Persisted { node, job, index } => write!(f, "n{node} disk job {job} done (persist point {index})"),
            Ev::Applied { node, index } => write!(f, "n{node} applied to {index}"),
            Ev::Role { node, role, term, leader } => write!(f, "n{node} is {role} in term {term} (leader n{leader})"),
            Ev::Commit { node, index } => write!(f, "n{node} commit -> {index}"),
            Ev::Propose { node, first: 0, .. } => write!(f, "client -> n{node} propose refused"),
            Ev::Propose { node, first, last } => write!(f, "client -> n{node} proposed {first}..={last}"),
            Ev::Read { node, id, mode, floor } => write!(f, "client -> n{node} read #{id} ({mode}, floor {floor})"),
            Ev::ReadDone { node, id, index: 0 } => write!(f, "n{node} read #{id} failed"),
            Ev::ReadDone { node, id, index } => write!(f, "n{node} read #{id} confirmed at {index}"),
            Ev::Fault { what, a, b } => write!(f, "NEMESIS {what} [{a} {b}]"),
        }
    }
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    hash: u64,
    tail: VecDeque<(u64, Ev)>,
    print: bool,
}

impl Trace {
    /// A trace; with `print` every event is written to stdout as it happens.
    pub fn new(print: bool) -> Trace {
        Trace { hash: 0x7472_6163_6521, tail: VecDeque::with_capacity(TAIL_LINES + 1), print }
    }

    /// Records `ev` at simulated time `now` (µs).
    #[inline]
    pub fn record(&mut self, now: u64, ev: Ev) {
        self.hash = ev.hash_into(fold(self.hash, now));
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back((now, ev));
        if self.print {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", line(now, &ev));
        }
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The last recorded events, formatted.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().map(|(t, ev)| line(*t, ev)).collect()
    }
}

fn line(now: u64, ev: &Ev) -> String {
    format!("{:>6}.{:03}ms {}", now / 1000, now % 1000, ev)
}
