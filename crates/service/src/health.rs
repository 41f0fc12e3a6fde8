//! What a server knows about itself beyond Raft, for `Status`: whether its
//! storage is open yet, and whether its disk refuses writes for lack of
//! space. Set by the threads that meet the disk (the start-up opener, the
//! checkpoint outcome on the FSM thread; the log-append stage keeps its own
//! flag in the node's counters) and read by the front end.

use std::sync::atomic::{AtomicBool, Ordering};

use ringraft::rpc::Health;

/// Shared flags of one server.
#[derive(Debug, Default)]
pub(crate) struct NodeHealth {
    /// The storage is not open yet (the server answers `Status` only).
    starting: AtomicBool,
    /// Opening the storage at start failed for lack of space.
    start_full: AtomicBool,
    /// The last checkpoint (or install) failed for lack of space.
    service_full: AtomicBool,
}

impl NodeHealth {
    /// A server whose storage is not open yet.
    pub(crate) fn starting() -> NodeHealth {
        NodeHealth { starting: AtomicBool::new(true), ..NodeHealth::default() }
    }

    /// Opening the storage at start: `Some(full)` while still trying,
    /// `None` once it is open.
    pub(crate) fn set_starting(&self, full: Option<bool>) {
        self.starting.store(full.is_some(), Ordering::Release);
        self.start_full.store(full.unwrap_or(false), Ordering::Release);
    }

    /// The outcome of a checkpoint or install: whether it failed for lack
    /// of space.
    pub(crate) fn set_service_full(&self, full: bool) {
        self.service_full.store(full, Ordering::Release);
    }

    /// Whether the service's storage last failed for lack of space.
    pub(crate) fn service_full(&self) -> bool {
        self.service_full.load(Ordering::Acquire)
    }

    /// The health to report, given whether the log's disk is full now.
    pub(crate) fn get(&self, log_full: bool) -> Health {
        Health {
            disk_full: log_full || self.start_full.load(Ordering::Acquire) || self.service_full.load(Ordering::Acquire),
            starting: self.starting.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_full_disk_is_reported_until_it_clears() {
        let h = NodeHealth::starting();
        assert_eq!(h.get(false), Health { disk_full: false, starting: true });
        h.set_starting(Some(true));
        assert_eq!(h.get(false), Health { disk_full: true, starting: true });
        h.set_starting(None);
        assert_eq!(h.get(false), Health::default());
        assert!(h.get(true).disk_full);
        h.set_service_full(true);
        assert!(h.get(false).disk_full);
        h.set_service_full(false);
        assert!(!h.get(false).disk_full);
    }
}
