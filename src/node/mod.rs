//! `Node`: the library user's entry point. A node runs any number of Raft
//! groups over one set of pipeline stages (src/pipeline/): one core thread,
//! one log-append thread, one FSM caller, one replicator per peer and one
//! wheel-timer thread, sharing one log engine in `data_dir/log`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use bytes::Bytes;
//! # use ringraft::core::{GroupId, LogIndex, NodeId};
//! # use ringraft::node::{GroupConfig, Node, NodeConfig, StateMachine};
//! # use ringraft::pipeline::transport::InProcNetwork;
//! struct Counter(u64);
//! impl StateMachine for Counter {
//!     fn apply(&mut self, _: LogIndex, data: &Bytes) -> Bytes {
//!         self.0 += data.len() as u64;
//!         Bytes::copy_from_slice(&self.0.to_le_bytes())
//!     }
//! }
//! let net = InProcNetwork::new();
//! let voters = [NodeId(1), NodeId(2), NodeId(3)];
//! let node = Node::start(
//!     NodeConfig::new(NodeId(1), "/tmp/n1"),
//!     vec![(GroupConfig::new(NodeId(1), GroupId(1), voters), Box::new(Counter(0)))],
//!     net.clone(),
//! )?;
//! net.register(NodeId(1), node.inbound());
//! let total = node.handle().propose_wait(GroupId(1), Bytes::from_static(b"hello"))?;
//! node.shutdown();
//! # Ok::<(), ringraft::node::NodeError>(())
//! ```

mod config;
mod recover;
mod running;
mod start;

pub use crate::pipeline::{GroupStatus, NodeError, PeerStatus, Restore, RoleWatch, SnapshotStore, StateMachine};
pub use config::{GroupConfig, NodeConfig};
pub use recover::{open_group, recover_group};
pub use running::{Node, NodeHandle, NodeStats, StatsSource};
