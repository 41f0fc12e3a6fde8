//! `ringraft-bench`: the whole-system benchmark. Spawns a local cluster of
//! real `ringraft-server` processes on temp dirs (or targets an existing
//! cluster), measures this machine's physical references first (`ideal`:
//! fdatasync latency, loopback round trip, raw write+fdatasync throughput),
//! drives a closed-loop append/read workload (`load`), samples the servers'
//! status counters and CPU time around the measured window (`cluster`), and
//! prints each result beside its ideal (`report`).
//!
//! [`run`] owns a run: the temp directory, the child processes (through the
//! demo's `Servers` guard, which kills them on every exit path), the
//! workload threads and the output.
//!
//! **Output.** Stdout gets the configuration, the ideal, then a table with
//! one row per measurement (one row, or one per `--sweep` value). With
//! `--json`, after the table, stdout ends with one JSON object per
//! measurement, one per line (JSON Lines): a single run's JSON is therefore
//! the last line; a sweep's rows are its last N lines, the last row last.
//! The progress bar goes to stderr and is hidden when stderr is not a
//! terminal.
//!
//! **Connections.** `--clients C` logical clients share
//! `min(C, 16)` connections, each on its own thread with its own
//! [`Client`](ringraft_client::Client). A connection carrying one logical
//! client with `--window 1` uses blocking `append`; otherwise it drives a
//! [`Pipeline`](ringraft_client::Pipeline) whose window is
//! (its logical clients) × `--window`, which keeps the same number of appends
//! in flight as C closed-loop clients would.
//!
//! **Non-guarantees.** The figures of one run on a shared 2-vCPU machine are
//! noisy (differences under ~15 % are noise); entries per AppendEntries is
//! not exposed by the servers' status and is reported as n/a.

mod cluster;
mod config;
mod ideal;
mod load;
mod report;
mod run;

pub use config::{BenchConfig, BenchError, Sweep, SweepParam, Target, CONNECTIONS_MAX, FSYNC_POLICY, SIZE_MAX};
pub use ideal::Ideal;
pub use report::Measurement;
pub use run::run;
