//! Identities and positions both sides of the wire use: [`Term`],
//! [`LogIndex`], [`NodeId`], [`GroupId`] and [`ReadId`].
//!
//! Newtypes keep a term from being passed where an index is expected; every
//! one is `Copy`, ordered and prints as its bare number.

use std::fmt;

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number, for encoding and arithmetic at the edges.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

newtype_u64!(
    /// A Raft term. Terms only grow on a node (asserted in the core).
    Term
);
newtype_u64!(
    /// A position in the Raft log; the first real entry has index 1, index 0
    /// is the empty prefix (term 0).
    LogIndex
);
newtype_u64!(
    /// A node (server) identity, unique within a cluster. 0 means "none".
    NodeId
);
newtype_u64!(
    /// A Raft group identity; many groups share one process and one connection.
    GroupId
);
newtype_u64!(
    /// The id a caller gives a read request so it can match the answer.
    ReadId
);

impl LogIndex {
    /// The index after this one.
    #[inline]
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one (saturating at 0).
    #[inline]
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl NodeId {
    /// The "no node" value (no leader known, no vote cast).
    pub const NONE: NodeId = NodeId(0);

    /// Whether this is a real node id.
    #[inline]
    pub const fn is_some(self) -> bool {
        self.0 != 0
    }
}
