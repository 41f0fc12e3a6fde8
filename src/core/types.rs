//! Identities and positions that cross module boundaries: `Term`,
//! `LogIndex`, `NodeId`, `GroupId` and `ReadId` (the wire protocol's,
//! `ringraft_proto::ids`, re-exported), and the core's notion of time.

use std::fmt;

pub use ringraft_proto::{GroupId, LogIndex, NodeId, ReadId, Term};

/// A point in time as the core sees it: microseconds on the driver's
/// monotonic clock. The core never reads a clock; every input that depends on
/// time carries one of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// The time `ms` milliseconds after this one.
    #[inline]
    pub const fn plus_ms(self, ms: u64) -> Time {
        Time(self.0 + ms * 1000)
    }

    /// The time `us` microseconds after this one.
    #[inline]
    pub const fn plus_us(self, us: u64) -> Time {
        Time(self.0 + us)
    }

    /// Microseconds since the driver's epoch.
    #[inline]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// A time far in the future, used for "no deadline".
    pub const NEVER: Time = Time(u64::MAX);
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}ms", self.0 / 1000, self.0 % 1000)
    }
}
