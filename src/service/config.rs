//! `ringraft-server`'s settings: the [`ServerConfig`] the server runs with and
//! how it is assembled from the command line, the environment and a TOML file.
//!
//! Every setting is a *key* (`election_timeout_min_ms`). A key can be given
//! three ways, and the first one found wins:
//!
//! 1. a flag, the key in kebab-case: `--election-timeout-min-ms 250`;
//! 2. an environment variable, `RINGRAFT_` and the key in upper case:
//!    `RINGRAFT_ELECTION_TIMEOUT_MIN_MS=250` (an empty variable counts as unset);
//! 3. the TOML file named by `--config FILE` or `RINGRAFT_CONFIG`:
//!    `election_timeout_min_ms = 250`;
//!
//! and otherwise the default. Each key is resolved on its own, so a file can
//! set `listen` while the environment overrides only `node_id`. Secrets are
//! never values: the three tokens are given as *files* (`peer_token_file`),
//! because argv and the environment show up in `ps` and in crash reports.
//! Relative paths are relative to the process's working directory.
//!
//! Cross-key rules (timeouts, peers, modes) live in [`ServerConfig::validate`],
//! which also runs on a config built in code with [`ServerConfig::new`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::{Arg, ArgAction, ArgMatches, ColorChoice, Command};

use crate::core::NodeId;
use crate::rpc::{DEFAULT_MAX_BODY, MAX_TOKEN};

mod keys;

use keys::KEYS;

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

impl ServerConfig {
    /// A config with every optional key at its default.
    pub fn new(node_id: NodeId, cluster_id: u64, data_dir: impl Into<PathBuf>) -> ServerConfig {
        let listen = SocketAddr::from(([127, 0, 0, 1], 7100));
        ServerConfig {
            node_id,
            cluster_id,
            data_dir: data_dir.into(),
            listen,
            advertise: listen,
            peers: Vec::new(),
            start_mode: StartMode::Auto,
            peer_token: Bytes::new(),
            client_token: Bytes::new(),
            admin_token: Bytes::new(),
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            checkpoint_entries: DEFAULT_CHECKPOINT_ENTRIES,
            checkpoint_interval_ms: DEFAULT_CHECKPOINT_INTERVAL_MS,
            checkpoint_bytes: DEFAULT_CHECKPOINT_BYTES,
            snapshot_entries: DEFAULT_SNAPSHOT_ENTRIES,
            snapshot_bytes: DEFAULT_SNAPSHOT_BYTES,
            snapshot_bytes_per_sec: 0,
            snapshot_sends_max: DEFAULT_SNAPSHOT_SENDS_MAX,
            session_ttl_ms: DEFAULT_SESSION_TTL_MS,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            retention_bytes: 0,
            retention_age_s: 0,
        }
    }

    /// Builds the config from the command line (`args[0]` is the program
    /// name), the environment (`env` looks a variable up; pass
    /// `&|k| std::env::var(k).ok()` in a real process) and the TOML file they
    /// name, then validates it. See the module docs for the precedence.
    ///
    /// # Errors
    /// [`ConfigError::Help`] when `--help`/`--version` was given (not a
    /// failure: print it, exit 0); any other variant names the key, where its
    /// value came from and what was wrong.
    pub fn from_args_env_file(
        args: impl IntoIterator<Item = String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let args: Vec<String> = args.into_iter().collect();
        keys::reject_token_values(&args, env)?;
        let matches = command().try_get_matches_from(&args).map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                ConfigError::Help(e.render().to_string())
            }
            _ => ConfigError::Usage(e.render().to_string()),
        })?;
        let env_value = |name: &str| env(name).filter(|v| !v.is_empty());
        let file = match matches.get_one::<String>("config").cloned().or_else(|| env_value("RINGRAFT_CONFIG")) {
            Some(path) => Some(load_file(Path::new(&path))?),
            None => None,
        };
        let layers = Layers { matches, env: &env_value, file };
        let config = layers.build()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules that tie keys together: ids non-zero, a cluster id
    /// for `Bootstrap`/`Join`, timeouts ordered, limits consistent, peers
    /// without duplicates or this node, an advertised address others can use.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key to change and the values involved.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, why: String| Err(ConfigError::Invalid { key, why });
        if !self.node_id.is_some() {
            return bad("node_id", "must not be 0 (0 means \"no node\")".into());
        }
        if self.cluster_id == 0 && self.start_mode != StartMode::Auto {
            return bad("cluster_id", format!("a non-zero cluster id is required with {:?}", self.start_mode));
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty".into());
        }
        if self.advertise.ip().is_unspecified() {
            return bad(
                "advertise",
                format!(
                    "{} is not an address others can reach; when listen is a wildcard ({}), set advertise \
                     to this host's reachable IP:PORT",
                    self.advertise, self.listen
                ),
            );
        }
        self.validate_timing()?;
        self.validate_limits()?;
        self.validate_peers()
    }

    fn validate_timing(&self) -> Result<(), ConfigError> {
        let (min, max, beat) = (self.election_timeout_min_ms, self.election_timeout_max_ms, self.heartbeat_interval_ms);
        if min == 0 {
            return Err(ConfigError::Invalid { key: "election_timeout_min_ms", why: "must be > 0".into() });
        }
        if max <= min {
            let why = format!("{max} must be greater than election_timeout_min_ms {min}");
            return Err(ConfigError::Invalid { key: "election_timeout_max_ms", why });
        }
        if beat == 0 || beat.saturating_mul(2) >= min {
            let why = format!(
                "{beat} must be > 0 and below half of election_timeout_min_ms {min} (so a leader's \
                 heartbeats arrive before followers time out)"
            );
            return Err(ConfigError::Invalid { key: "heartbeat_interval_ms", why });
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let positive = [
            ("checkpoint_entries", self.checkpoint_entries),
            ("checkpoint_interval_ms", self.checkpoint_interval_ms),
            ("snapshot_entries", self.snapshot_entries),
            ("checkpoint_bytes", self.checkpoint_bytes),
            ("snapshot_bytes", self.snapshot_bytes),
            ("snapshot_sends_max", self.snapshot_sends_max),
            ("session_ttl_ms", self.session_ttl_ms),
            ("max_record_bytes", u64::from(self.max_record_bytes)),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid { key, why: "must be > 0".into() });
        }
        if self.max_append_bytes < self.max_record_bytes || self.max_append_bytes > MAX_APPEND_BYTES_LIMIT {
            let why = format!(
                "{} must be at least max_record_bytes {} and at most {MAX_APPEND_BYTES_LIMIT} (one append \
                 must fit in a replication frame)",
                self.max_append_bytes, self.max_record_bytes
            );
            return Err(ConfigError::Invalid { key: "max_append_bytes", why });
        }
        for (key, token) in [
            ("peer_token_file", &self.peer_token),
            ("client_token_file", &self.client_token),
            ("admin_token_file", &self.admin_token),
        ] {
            if token.len() > MAX_TOKEN {
                let why = format!("token is {} bytes, the most is {MAX_TOKEN}", token.len());
                return Err(ConfigError::Invalid { key, why });
            }
        }
        Ok(())
    }

    fn validate_peers(&self) -> Result<(), ConfigError> {
        let mut seen: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
        for &(id, addr) in &self.peers {
            let why = if !id.is_some() {
                Some("node id 0 is not allowed".to_string())
            } else if id == self.node_id {
                Some(format!("lists this node ({id}); peers holds the other members only"))
            } else if seen.insert(id, addr).is_some() {
                Some(format!("node {id} appears twice"))
            } else if addr == self.advertise {
                Some(format!("node {id} has this node's own advertised address {addr}"))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ConfigError::Invalid { key: "peers", why });
            }
        }
        Ok(())
    }
}

/// The `--help` text (the same the binary prints).
pub fn help_text() -> String {
    command().render_long_help().to_string()
}

/// The key's flag name: `election_timeout_min_ms` → `election-timeout-min-ms`.
fn kebab(key: &str) -> String {
    key.replace('_', "-")
}

/// The key's environment variable: `listen` → `RINGRAFT_LISTEN`.
fn env_name(key: &str) -> String {
    format!("RINGRAFT_{}", key.to_ascii_uppercase())
}

/// The clap command: one `--kebab-key VALUE` per key (no clap defaults, no
/// clap env: both would hide the file layer), plus `--config`,
/// `--bootstrap` and `--join`.
fn command() -> Command {
    let mut cmd = Command::new("ringraft-server")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Runs one node of a ringraft replicated log cluster.")
        .after_help(keys::AFTER_HELP)
        .color(ColorChoice::Never)
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("TOML file with any of the keys below (flag names with '_' for '-') [env: RINGRAFT_CONFIG]"),
        )
        .arg(
            Arg::new("bootstrap")
                .long("bootstrap")
                .action(ArgAction::SetTrue)
                .help("Same as --start-mode bootstrap: create a new cluster of this node and every peer"),
        )
        .arg(
            Arg::new("join")
                .long("join")
                .action(ArgAction::SetTrue)
                .conflicts_with_all(["bootstrap", "start_mode"])
                .help("Same as --start-mode join: a fresh node waiting to be added as a learner"),
        );
    for key in KEYS {
        debug_assert_eq!(key.flag, kebab(key.name), "KEYS flag column");
        let mut arg = Arg::new(key.name).long(key.flag).value_name(key.value_name).help(format!(
            "{} [default: {}] [env: {}] [file: {}]",
            key.help,
            key.default_text(),
            env_name(key.name),
            key.name
        ));
        if key.name == "start_mode" {
            arg = arg.conflicts_with("bootstrap");
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Reads and parses the config file and checks it has only known keys.
fn load_file(path: &Path) -> Result<(PathBuf, toml::Table), ConfigError> {
    let file_err = |why: String| ConfigError::File { path: path.to_path_buf(), why };
    // Operator input, read once at start-up: the real file system.
    let bytes = crate::fs::real().read(path).map_err(|e| file_err(format!("cannot read it: {e}")))?;
    // The words `std::fs::read_to_string` used for this.
    let text = String::from_utf8(bytes)
        .map_err(|_| file_err("cannot read it: stream did not contain valid UTF-8".to_string()))?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| file_err(format!("not valid TOML: {}", e.to_string().trim_end())))?;
    if let Some(key) = table.keys().find(|k| !KEYS.iter().any(|d| d.name == k.as_str())) {
        return Err(ConfigError::UnknownKey { key: key.clone(), path: path.to_path_buf() });
    }
    Ok((path.to_path_buf(), table))
}

/// A value before it is parsed: text from a flag or variable, or a TOML value.
enum Raw {
    Text(String),
    Toml(toml::Value),
}

/// The three sources, asked key by key in precedence order.
struct Layers<'a> {
    matches: ArgMatches,
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Option<(PathBuf, toml::Table)>,
}

impl Layers<'_> {
    /// The winning value for `key` and where it came from, if any.
    fn raw(&self, key: &'static str) -> Option<(Raw, Source)> {
        if key == "start_mode" {
            for mode in ["bootstrap", "join"] {
                if self.matches.get_flag(mode) {
                    return Some((Raw::Text(mode.into()), Source::Flag(format!("--{mode}"))));
                }
            }
        }
        if let Some(v) = self.matches.get_one::<String>(key) {
            return Some((Raw::Text(v.clone()), Source::Flag(format!("--{}", kebab(key)))));
        }
        let var = env_name(key);
        if let Some(v) = (self.env)(&var) {
            return Some((Raw::Text(v), Source::Env(var)));
        }
        let (path, table) = self.file.as_ref()?;
        table.get(key).map(|v| (Raw::Toml(v.clone()), Source::File(path.clone())))
    }

    /// Resolves every key into a config (defaults for what is not given),
    /// reads the token files and drops this node from `peers`.
    fn build(&self) -> Result<ServerConfig, ConfigError> {
        let node_id = self.num("node_id")?.ok_or(ConfigError::Missing { key: "node_id" })?;
        let data_dir = self.path("data_dir")?.ok_or(ConfigError::Missing { key: "data_dir" })?;
        let mut c = ServerConfig::new(NodeId(node_id), 0, data_dir);
        if let Some(listen) = self.addr("listen")? {
            c.listen = listen;
        }
        c.advertise = self.addr("advertise")?.unwrap_or(c.listen);
        if let Some((raw, source)) = self.raw("start_mode") {
            c.start_mode = keys::mode(raw, &source)?;
        }
        let u64_fields: [(&'static str, &mut u64); 14] = [
            ("cluster_id", &mut c.cluster_id),
            ("election_timeout_min_ms", &mut c.election_timeout_min_ms),
            ("election_timeout_max_ms", &mut c.election_timeout_max_ms),
            ("heartbeat_interval_ms", &mut c.heartbeat_interval_ms),
            ("checkpoint_entries", &mut c.checkpoint_entries),
            ("checkpoint_interval_ms", &mut c.checkpoint_interval_ms),
            ("snapshot_entries", &mut c.snapshot_entries),
            ("checkpoint_bytes", &mut c.checkpoint_bytes),
            ("snapshot_bytes", &mut c.snapshot_bytes),
            ("snapshot_bytes_per_sec", &mut c.snapshot_bytes_per_sec),
            ("snapshot_sends_max", &mut c.snapshot_sends_max),
            ("session_ttl_ms", &mut c.session_ttl_ms),
            ("retention_bytes", &mut c.retention_bytes),
            ("retention_age_s", &mut c.retention_age_s),
        ];
        for (key, field) in u64_fields {
            if let Some(v) = self.num(key)? {
                *field = v;
            }
        }
        for (key, field) in
            [("max_record_bytes", &mut c.max_record_bytes), ("max_append_bytes", &mut c.max_append_bytes)]
        {
            if let Some(v) = self.num(key)? {
                // `keys::num` range-checks `Kind::U32` keys, so this never saturates.
                *field = u32::try_from(v).unwrap_or(u32::MAX);
            }
        }
        for (key, field) in [
            ("peer_token_file", &mut c.peer_token),
            ("client_token_file", &mut c.client_token),
            ("admin_token_file", &mut c.admin_token),
        ] {
            if let Some(path) = self.path(key)? {
                *field = keys::read_token(key, &path)?;
            }
        }
        if let Some((raw, source)) = self.raw("peers") {
            c.peers = keys::peers(raw, &source)?;
            keys::drop_self(&mut c, &source)?;
        }
        Ok(c)
    }

    fn num(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        self.raw(key).map(|(raw, source)| keys::num(key, raw, &source)).transpose()
    }

    fn path(&self, key: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        self.raw(key).map(|(raw, source)| keys::path(key, raw, &source)).transpose()
    }

    fn addr(&self, key: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
        self.raw(key).map(|(raw, source)| keys::addr(key, raw, &source)).transpose()
    }
}
