//! The simulated network: which links are cut, and when (and how often) a
//! message sent now is delivered.
//!
//! Messages in flight live in the world's event queue with their delivery
//! time; this module only decides those times. Per message it may drop,
//! duplicate, hold back a little (reorder) or a lot (delay), each counted.
//! Partitions are a matrix of cut directed links, checked both when a
//! message is sent and when it arrives (a cut also loses what is in flight).

use super::knobs::Knobs;
use super::rng::Rng;
use super::stats::{FaultKind, Stats};

/// Delivery delays chosen for one message: none (lost), one, or two
/// (duplicated).
#[derive(Clone, Copy, Debug, Default)]
pub struct Deliveries {
    /// Delays in µs from now; `len` of them are valid.
    pub delays: [u64; 2],
    /// How many copies to deliver.
    pub len: usize,
}

/// Link state and message fault rates.
#[derive(Debug)]
pub struct Network {
    nodes: usize,
    /// `cut[from * nodes + to]`: messages from `from` to `to` are lost
    /// (indices are node id - 1).
    cut: Vec<bool>,
    /// Bumped by every partition; a timed heal only undoes its own.
    pub generation: u64,
    /// No message faults at all (the heal phase).
    pub perfect: bool,
}

impl Network {
    /// A fully connected network of `nodes` nodes.
    pub fn new(nodes: usize) -> Network {
        Network { nodes, cut: vec![false; nodes * nodes], generation: 0, perfect: false }
    }

    /// Whether a message from node index `from` reaches node index `to`.
    #[inline]
    pub fn link_up(&self, from: usize, to: usize) -> bool {
        !self.cut[from * self.nodes + to]
    }

    /// Reconnects every link.
    pub fn heal(&mut self) {
        self.cut.iter_mut().for_each(|c| *c = false);
        self.generation += 1;
    }

    /// Cuts every link between `side` (a bitmask of node indices) and the
    /// rest, both ways.
    pub fn split(&mut self, side: u64) {
        self.heal();
        for a in 0..self.nodes {
            for b in 0..self.nodes {
                if (side >> a & 1) != (side >> b & 1) {
                    self.cut[a * self.nodes + b] = true;
                }
            }
        }
    }

    /// Cuts the directed link `from -> to` (node indices).
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cut[from * self.nodes + to] = true;
    }

    /// Any link cut?
    pub fn partitioned(&self) -> bool {
        self.cut.iter().any(|c| *c)
    }

    /// Chooses when (and whether) a message sent now is delivered.
    pub fn plan(&self, rng: &mut Rng, k: &Knobs, stats: &mut Stats) -> Deliveries {
        let mut d = Deliveries::default();
        let base = |rng: &mut Rng| rng.range(k.net_delay_min_us, k.net_delay_max_us);
        if self.perfect {
            d.delays[0] = base(rng);
            d.len = 1;
            return d;
        }
        if rng.chance_ppm(k.drop_ppm) {
            stats.fault(FaultKind::Drop);
            return d;
        }
        let copies = if rng.chance_ppm(k.dup_ppm) {
            stats.fault(FaultKind::Duplicate);
            2
        } else {
            1
        };
        for slot in d.delays.iter_mut().take(copies) {
            let mut delay = base(rng);
            if rng.chance_ppm(k.reorder_ppm) {
                stats.fault(FaultKind::Reorder);
                delay += rng.range(1, k.reorder_extra_max_us);
            }
            if rng.chance_ppm(k.delay_ppm) {
                stats.fault(FaultKind::Delay);
                delay += rng.range(k.delay_extra_min_us, k.delay_extra_max_us);
            }
            *slot = delay;
        }
        d.len = copies;
        d
    }
}
