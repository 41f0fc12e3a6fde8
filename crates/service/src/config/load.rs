//! Assembling a [`ServerConfig`] from the command line, the environment
//! and a TOML file, key by key ([`ServerConfig::load`]), its cross-key
//! checks ([`ServerConfig::validate`]) and `--help`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::{Arg, ArgAction, ArgMatches, ColorChoice, Command};

use super::keys::{self, KEYS};
use super::model::*;
use ringraft::core::NodeId;
use ringraft::rpc::MAX_TOKEN;

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
    let bytes = ringraft::fs::real().read(path).map_err(|e| file_err(format!("cannot read it: {e}")))?;
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
