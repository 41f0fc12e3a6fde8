//! The event queue both simulators run on: timed events, the earliest
//! first, ties broken by insertion order, so a seed fixes the whole run.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An event of kind `K` at simulated time `at`.
#[derive(Debug)]
pub(crate) struct Timed<K> {
    pub at: u64,
    seq: u64,
    pub kind: K,
}

impl<K> PartialEq for Timed<K> {
    fn eq(&self, o: &Timed<K>) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<K> Eq for Timed<K> {}
impl<K> PartialOrd for Timed<K> {
    fn partial_cmp(&self, o: &Timed<K>) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<K> Ord for Timed<K> {
    // Reversed: `BinaryHeap` is a max-heap and the earliest event goes first.
    fn cmp(&self, o: &Timed<K>) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Timed events, the earliest first (insertion order among equals).
#[derive(Debug)]
pub(crate) struct EventQueue<K> {
    heap: BinaryHeap<Timed<K>>,
    seq: u64,
}

impl<K> EventQueue<K> {
    pub fn new() -> EventQueue<K> {
        EventQueue { heap: BinaryHeap::new(), seq: 0 }
    }

    /// Schedules `kind` at `at`.
    pub fn push(&mut self, at: u64, kind: K) {
        self.seq += 1;
        self.heap.push(Timed { at, seq: self.seq, kind });
    }

    /// The earliest event.
    pub fn pop(&mut self) -> Option<Timed<K>> {
        self.heap.pop()
    }
}
