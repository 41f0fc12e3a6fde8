//! What the server's configuration is: [`ServerConfig`], [`StartMode`],
//! where a value came from ([`Source`]), [`ConfigError`] and the defaults.
//! The key table (`keys.rs`) and the loader (`load.rs`) both build on it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;

use ringraft::core::NodeId;
use ringraft::rpc::DEFAULT_MAX_BODY;

/// Default `listen`: loopback, so a node is not reachable from the network
/// until an operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7100";
/// Default `election_timeout_min_ms`.
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 300;
/// Default `election_timeout_max_ms`.
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 600;
/// Default `heartbeat_interval_ms`.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 50;
/// Default `checkpoint_entries`.
pub const DEFAULT_CHECKPOINT_ENTRIES: u64 = 65_536;
/// Default `checkpoint_interval_ms`.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 5_000;
/// Default `snapshot_entries`.
pub const DEFAULT_SNAPSHOT_ENTRIES: u64 = 262_144;
/// Default `checkpoint_bytes` (64 MiB).
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 64 << 20;
/// Default `snapshot_bytes` (256 MiB).
pub const DEFAULT_SNAPSHOT_BYTES: u64 = 256 << 20;
/// Default `snapshot_sends_max`.
pub const DEFAULT_SNAPSHOT_SENDS_MAX: u64 = 2;
/// Default `session_ttl_ms` (10 minutes).
pub const DEFAULT_SESSION_TTL_MS: u64 = 600_000;
/// Default `max_record_bytes` (1 MiB).
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 1 << 20;
/// Default `max_append_bytes` (8 MiB).
pub const DEFAULT_MAX_APPEND_BYTES: u32 = 8 << 20;
/// Largest `max_append_bytes`: one append, replicated, must fit in a frame
/// body ([`DEFAULT_MAX_BODY`]) with room left for headers.
pub const MAX_APPEND_BYTES_LIMIT: u32 = DEFAULT_MAX_BODY - (1 << 20);

/// How the server treats its data directory at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartMode {
    /// Restart an existing node: the data directory must already hold an
    /// `IDENTITY` (written by an earlier `Bootstrap` or `Join`).
    #[default]
    Auto,
    /// Create a new cluster whose initial voters are this node and every id
    /// in `peers`. The data directory must be empty.
    Bootstrap,
    /// A fresh node that waits, as a learner, to be added by an operator. The
    /// data directory must be empty.
    Join,
}

/// Everything `ringraft-server` runs with. Build one with
/// [`ServerConfig::from_args_env_file`] (the binary) or [`ServerConfig::new`]
/// (tests, embedding), then [`ServerConfig::validate`] it.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node's id, unique in the cluster. Required; never 0.
    pub node_id: NodeId,
    /// The cluster's id. Required (non-zero) with `Bootstrap` and `Join`. When
    /// restarting (`Auto`), 0 means "whatever `IDENTITY` says"; any other
    /// value must match it. Default 0.
    pub cluster_id: u64,
    /// Where the node keeps everything (see `service::identity` for the
    /// layout). Required.
    pub data_dir: PathBuf,
    /// Address the server binds for peers, clients and admins. Default
    /// `127.0.0.1:7100`.
    pub listen: SocketAddr,
    /// Address other nodes and clients reach this node at. Default `listen`;
    /// never an unspecified IP (`0.0.0.0`, `::`).
    pub advertise: SocketAddr,
    /// The other members' advertised addresses. Invariant (after
    /// [`ServerConfig::from_args_env_file`]): no entry for `node_id`, no id
    /// twice, no id 0. Default empty.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// What to do with the data directory at start. Default [`StartMode::Auto`].
    pub start_mode: StartMode,
    /// Secret peers present to each other (from `peer_token_file`); empty
    /// when no file is given. At most 1024 bytes.
    pub peer_token: Bytes,
    /// Secret clients present (from `client_token_file`); empty when none.
    pub client_token: Bytes,
    /// Secret admin connections present (from `admin_token_file`); empty when none.
    pub admin_token: Bytes,
    /// Lower bound of the randomized election timeout, milliseconds. Default 300.
    pub election_timeout_min_ms: u64,
    /// Upper bound (exclusive) of the election timeout, milliseconds; must be
    /// greater than the minimum. Default 600.
    pub election_timeout_max_ms: u64,
    /// Leader heartbeat period, milliseconds; must be below half the minimum
    /// election timeout. Default 50.
    pub heartbeat_interval_ms: u64,
    /// Checkpoint the state machine after this many applied entries. Default 65536.
    pub checkpoint_entries: u64,
    /// ... or after this long, milliseconds, with anything applied. Default 5000.
    pub checkpoint_interval_ms: u64,
    /// ... or after this many bytes of entries (records wait in memory
    /// until a checkpoint writes them). Default 64 MiB.
    pub checkpoint_bytes: u64,
    /// Take a snapshot and compact the log after this many entries. Default 262144.
    pub snapshot_entries: u64,
    /// ... or after this many bytes of entries (the log after the last
    /// snapshot is kept in memory). Default 256 MiB.
    pub snapshot_bytes: u64,
    /// Snapshot bytes per second this node sends to lagging or new members
    /// in total; 0 = no limit. Default 0.
    pub snapshot_bytes_per_sec: u64,
    /// Members this node sends snapshots to at once. Default 2.
    pub snapshot_sends_max: u64,
    /// Exactly-once sessions idle this long (log time), milliseconds, are
    /// forgotten. Default 600000 (10 minutes).
    pub session_ttl_ms: u64,
    /// Largest single record, bytes. Default 1 MiB.
    pub max_record_bytes: u32,
    /// Largest append (all its records together), bytes; at least
    /// `max_record_bytes`, at most [`MAX_APPEND_BYTES_LIMIT`]. Default 8 MiB.
    pub max_append_bytes: u32,
    /// Per-stream retention by size, bytes; 0 = unlimited. Default 0.
    pub retention_bytes: u64,
    /// Per-stream retention by age, seconds; 0 = unlimited. Default 0.
    pub retention_age_s: u64,
}

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag, e.g. `--listen`.
    Flag(String),
    /// An environment variable, e.g. `RINGRAFT_LISTEN`.
    Env(String),
    /// The TOML config file at this path.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::File(path) => write!(f, "config file {}", path.display()),
        }
    }
}

/// Why no [`ServerConfig`] could be built. Every message names the key and
/// where its value came from.
#[derive(Debug)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: print this to stdout and exit 0.
    Help(String),
    /// The command line itself is wrong (unknown flag, missing value); the
    /// text is clap's, ending with a pointer to `--help`.
    Usage(String),
    /// The config file could not be read or is not valid TOML.
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The config file has a key ringraft does not know (a typo, usually).
    UnknownKey {
        /// The key as written.
        key: String,
        /// The file.
        path: PathBuf,
    },
    /// A config-file value has the wrong TOML type.
    WrongType {
        /// The key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What the key takes.
        expected: &'static str,
        /// The TOML type found.
        found: &'static str,
    },
    /// A value could not be parsed or is out of range.
    BadValue {
        /// The key.
        key: &'static str,
        /// Where the value came from.
        source: Source,
        /// The value as given.
        value: String,
        /// What is wrong with it and what would be right.
        why: String,
    },
    /// A required key was given nowhere.
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A token file is missing, unreadable, empty or too long.
    TokenFile {
        /// The `*_token_file` key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Values that are fine alone do not fit together (found by
    /// [`ServerConfig::validate`]).
    Invalid {
        /// The key to change.
        key: &'static str,
        /// Why, with the values involved.
        why: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Help(text) | ConfigError::Usage(text) => f.write_str(text.trim_end()),
            ConfigError::File { path, why } => write!(f, "config file {}: {why}", path.display()),
            ConfigError::UnknownKey { key, path } => write!(
                f,
                "config file {}: unknown key {key:?} (the keys are listed by --help; check the spelling)",
                path.display()
            ),
            ConfigError::WrongType { key, path, expected, found } => {
                write!(f, "config file {}: key {key} must be {expected}, found TOML {found}", path.display())
            }
            ConfigError::BadValue { key, source, value, why } => write!(f, "{key} = {value:?} from {source}: {why}"),
            ConfigError::Missing { key } => write!(
                f,
                "{key} is required: give --{}, set {} or put {key} in the config file",
                kebab(key),
                env_name(key)
            ),
            ConfigError::TokenFile { key, path, why } => write!(f, "{key} {}: {why}", path.display()),
            ConfigError::Invalid { key, why } => write!(f, "{key}: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A value before it is parsed: text from a flag or variable, or a TOML value.
pub(super) enum Raw {
    Text(String),
    Toml(toml::Value),
}

/// The key's flag name: `election_timeout_min_ms` → `election-timeout-min-ms`.
pub(super) fn kebab(key: &str) -> String {
    key.replace('_', "-")
}

/// The key's environment variable: `listen` → `RINGRAFT_LISTEN`.
pub(super) fn env_name(key: &str) -> String {
    format!("RINGRAFT_{}", key.to_ascii_uppercase())
}
