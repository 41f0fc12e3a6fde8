//! The client SDK of the replicated log service: a blocking [`Client`] (std
//! `TcpStream`, one connection at a time to one server of the cluster) that
//! finds the leader, follows `NotLeader` redirects, retries with capped
//! exponential backoff and jitter until each call's deadline, and makes
//! appends exactly-once with a session; plus a [`Pipeline`] that keeps many
//! appends in flight on the connection for throughput.
//!
//! ```no_run
//! use bytes::Bytes;
//! use ringraft_client::{Client, ClientConfig};
//! use ringraft_client::ReadConsistency;
//!
//! # fn main() -> Result<(), ringraft_client::ClientError> {
//! let servers = vec!["127.0.0.1:7100".to_string(), "127.0.0.1:7101".to_string()];
//! let mut client = Client::connect(ClientConfig::new(servers, 1).with_token("secret"))?;
//! client.create_stream("events")?;
//! let ack = client.append("events", vec![Bytes::from("hello"), Bytes::from("world")])?;
//! let got = client.read("events", ack.first_offset, 100, 1 << 20, ReadConsistency::Linearizable)?;
//! for (i, r) in got.records.iter().enumerate() {
//!     println!("{}\t{}", got.first_offset + i as u64, String::from_utf8_lossy(r));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Pipelined appends (answers come back in any order, matched by ticket):
//!
//! ```no_run
//! # use bytes::Bytes;
//! # use ringraft_client::{Client, ClientConfig};
//! # fn main() -> Result<(), ringraft_client::ClientError> {
//! # let mut client = Client::connect(ClientConfig::new(vec!["127.0.0.1:7100".into()], 1))?;
//! let mut p = client.pipeline();
//! for i in 0..10_000u32 {
//!     p.submit("events", vec![Bytes::from(i.to_le_bytes().to_vec())])?;
//! }
//! while let Some((ticket, result)) = p.next_ack() {
//!     let ack = result?;
//!     println!("{ticket:?} at {}", ack.first_offset);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! **Guarantees.** With `exactly_once` (the default) an append is applied at
//! most once however often it is retried, by this call or by a pipeline
//! re-send, because every attempt carries the same `(session, seq)`.
//!
//! **Non-guarantees.** `ClientError::Timeout` on an append means the outcome
//! is unknown: it may still commit. A new `append` call after a timeout is a
//! new append (a new `seq`), so re-sending the same records may store them
//! twice. Without `exactly_once`, an append whose connection broke after it
//! was sent is not re-sent (it completes with `Timeout`). `SessionExpired` is
//! never retried under a new session behind the caller's back.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod config;
mod conn;
mod error;
mod pipeline;
mod route;

pub use api::probe_status;
pub use api::{FetchedChunk, SnapshotFetch};
pub use config::{AdminAck, AppendAck, ClientConfig, Status};
pub use error::ClientError;
pub use pipeline::{Completion, Pipeline, Ticket};
pub use route::Client;

pub use ringraft_proto::{AdminRequest, GroupStatus, Health, PeerProgress, ReadConsistency, Records, Role, StreamInfo};
