//! The table of configuration keys (name, type, default, help) that drives
//! `--help`, the config-file key check and the flag list, and the parsers
//! that turn a flag, variable or TOML value into a typed value with an error
//! that names the key and its source; token files; the self entry in `peers`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::model::{ConfigError, Raw, ServerConfig, Source, StartMode};
use super::model::{
    DEFAULT_CHECKPOINT_BYTES, DEFAULT_CHECKPOINT_ENTRIES, DEFAULT_CHECKPOINT_INTERVAL_MS,
    DEFAULT_ELECTION_TIMEOUT_MAX_MS, DEFAULT_ELECTION_TIMEOUT_MIN_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_LISTEN,
    DEFAULT_MAX_APPEND_BYTES, DEFAULT_MAX_RECORD_BYTES, DEFAULT_SESSION_TTL_MS, DEFAULT_SNAPSHOT_BYTES,
    DEFAULT_SNAPSHOT_ENTRIES, DEFAULT_SNAPSHOT_SENDS_MAX,
};
use ringraft::core::NodeId;
use ringraft::fs::Fs;
use ringraft::rpc::MAX_TOKEN;

/// What a key holds; decides which TOML types it accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A u64 id: a TOML integer, or a decimal string (TOML integers stop at 2^63).
    Id,
    /// A u64: a non-negative TOML integer.
    U64,
    /// A u32: a TOML integer up to 4294967295.
    U32,
    /// A path: a TOML string.
    Path,
    /// `IP:PORT`: a TOML string.
    Addr,
    /// `ID=IP:PORT,...`: a TOML string or a table of id = "IP:PORT".
    Peers,
    /// `auto`, `bootstrap` or `join`: a TOML string.
    Mode,
}

/// A key's default, as `--help` shows it.
pub(super) enum Shown {
    /// A number (the same constant `ServerConfig::new` uses).
    Num(u64),
    /// A description.
    Text(&'static str),
}

/// One configuration key.
pub(super) struct KeyDef {
    /// The field name, the TOML key; kebab-case is the flag, upper case the variable.
    pub(super) name: &'static str,
    /// `name` in kebab-case (clap wants a `&'static str`).
    pub(super) flag: &'static str,
    pub(super) kind: Kind,
    pub(super) value_name: &'static str,
    pub(super) default: Shown,
    pub(super) help: &'static str,
}

impl KeyDef {
    pub(super) fn default_text(&self) -> String {
        match self.default {
            Shown::Num(n) => n.to_string(),
            Shown::Text(t) => t.to_string(),
        }
    }
}

const fn key(
    (name, flag): (&'static str, &'static str),
    kind: Kind,
    value_name: &'static str,
    default: Shown,
    help: &'static str,
) -> KeyDef {
    KeyDef { name, flag, kind, value_name, default, help }
}

use Shown::{Num, Text};

/// Every key, in `--help` order.
pub(super) const KEYS: &[KeyDef] = &[
    key(
        ("node_id", "node-id"),
        Kind::Id,
        "ID",
        Text("none, required"),
        "This node's id, non-zero, unique in the cluster",
    ),
    key(
        ("cluster_id", "cluster-id"),
        Kind::Id,
        "ID",
        Text("0 = take it from IDENTITY"),
        "The cluster's id; required (non-zero) with --bootstrap/--join; on restart it must match IDENTITY",
    ),
    key(
        ("data_dir", "data-dir"),
        Kind::Path,
        "DIR",
        Text("none, required"),
        "Data directory (LOCK, IDENTITY, raft/, service/)",
    ),
    key(
        ("listen", "listen"),
        Kind::Addr,
        "IP:PORT",
        Text(DEFAULT_LISTEN),
        "Address to bind for peers, clients and admins",
    ),
    key(
        ("advertise", "advertise"),
        Kind::Addr,
        "IP:PORT",
        Text("the listen address"),
        "Address others reach this node at; required when listen is 0.0.0.0 or [::]",
    ),
    key(
        ("peers", "peers"),
        Kind::Peers,
        "ID=IP:PORT,...",
        Text("none"),
        "The other members' advertised addresses; an entry for this node must equal advertise and is ignored",
    ),
    key(("start_mode", "start-mode"), Kind::Mode, "MODE", Text("auto"), "auto, bootstrap or join (see MODES below)"),
    key(
        ("peer_token_file", "peer-token-file"),
        Kind::Path,
        "FILE",
        Text("none, no token"),
        "File holding the token peers present",
    ),
    key(
        ("client_token_file", "client-token-file"),
        Kind::Path,
        "FILE",
        Text("none, no token"),
        "File holding the token clients present",
    ),
    key(
        ("admin_token_file", "admin-token-file"),
        Kind::Path,
        "FILE",
        Text("none, no token"),
        "File holding the token admins present",
    ),
    key(
        ("election_timeout_min_ms", "election-timeout-min-ms"),
        Kind::U64,
        "MS",
        Num(DEFAULT_ELECTION_TIMEOUT_MIN_MS),
        "Shortest randomized election timeout, milliseconds",
    ),
    key(
        ("election_timeout_max_ms", "election-timeout-max-ms"),
        Kind::U64,
        "MS",
        Num(DEFAULT_ELECTION_TIMEOUT_MAX_MS),
        "Longest election timeout, milliseconds; > election_timeout_min_ms",
    ),
    key(
        ("heartbeat_interval_ms", "heartbeat-interval-ms"),
        Kind::U64,
        "MS",
        Num(DEFAULT_HEARTBEAT_INTERVAL_MS),
        "Leader heartbeat period, milliseconds; < election_timeout_min_ms / 2",
    ),
    key(
        ("checkpoint_entries", "checkpoint-entries"),
        Kind::U64,
        "N",
        Num(DEFAULT_CHECKPOINT_ENTRIES),
        "Checkpoint the state machine after this many applied entries",
    ),
    key(
        ("checkpoint_interval_ms", "checkpoint-interval-ms"),
        Kind::U64,
        "MS",
        Num(DEFAULT_CHECKPOINT_INTERVAL_MS),
        "... or after this many milliseconds with anything applied",
    ),
    key(
        ("checkpoint_bytes", "checkpoint-bytes"),
        Kind::U64,
        "BYTES",
        Num(DEFAULT_CHECKPOINT_BYTES),
        "... or after this many bytes of entries (records wait in memory until then)",
    ),
    key(
        ("snapshot_entries", "snapshot-entries"),
        Kind::U64,
        "N",
        Num(DEFAULT_SNAPSHOT_ENTRIES),
        "Snapshot and compact the log after this many entries",
    ),
    key(
        ("snapshot_bytes", "snapshot-bytes"),
        Kind::U64,
        "BYTES",
        Num(DEFAULT_SNAPSHOT_BYTES),
        "... or after this many bytes of entries (the log since the last snapshot stays in memory)",
    ),
    key(
        ("snapshot_bytes_per_sec", "snapshot-bytes-per-sec"),
        Kind::U64,
        "BYTES",
        Num(0),
        "Snapshot bytes per second sent to lagging or new members, in total (0: no limit)",
    ),
    key(
        ("snapshot_sends_max", "snapshot-sends-max"),
        Kind::U64,
        "N",
        Num(DEFAULT_SNAPSHOT_SENDS_MAX),
        "Members this node sends snapshots to at once",
    ),
    key(
        ("session_ttl_ms", "session-ttl-ms"),
        Kind::U64,
        "MS",
        Num(DEFAULT_SESSION_TTL_MS),
        "Forget exactly-once sessions idle this long (log time), milliseconds",
    ),
    key(
        ("max_record_bytes", "max-record-bytes"),
        Kind::U32,
        "BYTES",
        Num(DEFAULT_MAX_RECORD_BYTES as u64),
        "Largest record, bytes",
    ),
    key(
        ("max_append_bytes", "max-append-bytes"),
        Kind::U32,
        "BYTES",
        Num(DEFAULT_MAX_APPEND_BYTES as u64),
        "Largest append (all its records), bytes",
    ),
    key(
        ("retention_bytes", "retention-bytes"),
        Kind::U64,
        "BYTES",
        Text("0 = unlimited"),
        "Per-stream retention by size, bytes",
    ),
    key(
        ("retention_age_s", "retention-age-s"),
        Kind::U64,
        "SECONDS",
        Text("0 = unlimited"),
        "Per-stream retention by age, seconds",
    ),
];

/// The paragraphs after the flag list in `--help`.
pub(super) const AFTER_HELP: &str = "\
PRECEDENCE:
  Each key is looked up on its own: a flag (--election-timeout-min-ms) wins
  over an environment variable (RINGRAFT_ELECTION_TIMEOUT_MIN_MS), which wins
  over the TOML file from --config/RINGRAFT_CONFIG (election_timeout_min_ms =
  300), which wins over the default. An empty variable counts as unset. In the
  file, peers may also be a table: peers = { \"2\" = \"10.0.0.2:7100\" }.
  Tokens are only ever read from files (content, trailing whitespace trimmed,
  at most 1024 bytes), never from flags or variables.

MODES:
  auto       (default) restart a node: DATA_DIR must hold an IDENTITY.
  bootstrap  (--bootstrap) create a new cluster whose voters are this node and
             every id in peers; needs --cluster-id and an empty DATA_DIR.
  join       (--join) a fresh node, in an empty DATA_DIR, that waits to be
             added as a learner by an operator; needs --cluster-id.";

fn bad(key: &'static str, source: &Source, value: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::BadValue { key, source: source.clone(), value: value.into(), why: why.into() }
}

/// The file's path when the value came from the file (for `WrongType`).
fn file_path(source: &Source) -> PathBuf {
    match source {
        Source::File(p) => p.clone(),
        // Only TOML values can have a wrong type, and they come from the file.
        _ => PathBuf::new(),
    }
}

fn wrong_type(key: &'static str, source: &Source, expected: &'static str, value: &toml::Value) -> ConfigError {
    ConfigError::WrongType { key, path: file_path(source), expected, found: value.type_str() }
}

fn kind_of(key: &'static str) -> Kind {
    KEYS.iter().find(|d| d.name == key).map_or(Kind::U64, |d| d.kind)
}

/// A number key (`Kind::Id`, `U64`, `U32`).
pub(super) fn num(key: &'static str, raw: Raw, source: &Source) -> Result<u64, ConfigError> {
    let kind = kind_of(key);
    let max = if kind == Kind::U32 { u64::from(u32::MAX) } else { u64::MAX };
    let n = match raw {
        Raw::Toml(toml::Value::Integer(i)) => {
            u64::try_from(i).map_err(|_| bad(key, source, i.to_string(), "must not be negative"))?
        }
        Raw::Text(s) => parse_u64(key, source, &s)?,
        Raw::Toml(toml::Value::String(s)) if kind == Kind::Id => parse_u64(key, source, &s)?,
        Raw::Toml(v) => {
            let expected = if kind == Kind::Id { "an integer or a string of digits" } else { "an integer" };
            return Err(wrong_type(key, source, expected, &v));
        }
    };
    if n > max {
        return Err(bad(key, source, n.to_string(), format!("is larger than the most allowed, {max}")));
    }
    Ok(n)
}

fn parse_u64(key: &'static str, source: &Source, s: &str) -> Result<u64, ConfigError> {
    s.trim().parse::<u64>().map_err(|_| bad(key, source, s, "not a whole number (digits only, e.g. 300)"))
}

fn text(key: &'static str, raw: Raw, source: &Source, expected: &'static str) -> Result<String, ConfigError> {
    match raw {
        Raw::Text(s) | Raw::Toml(toml::Value::String(s)) => Ok(s),
        Raw::Toml(v) => Err(wrong_type(key, source, expected, &v)),
    }
}

/// A path key.
pub(super) fn path(key: &'static str, raw: Raw, source: &Source) -> Result<PathBuf, ConfigError> {
    let s = text(key, raw, source, "a string (a path)")?;
    if s.is_empty() {
        return Err(bad(key, source, s, "an empty path"));
    }
    Ok(PathBuf::from(s))
}

/// An `IP:PORT` key.
pub(super) fn addr(key: &'static str, raw: Raw, source: &Source) -> Result<SocketAddr, ConfigError> {
    let s = text(key, raw, source, "a string \"IP:PORT\"")?;
    parse_addr(&s).map_err(|why| bad(key, source, &s, why))
}

/// `start_mode`.
pub(super) fn mode(raw: Raw, source: &Source) -> Result<StartMode, ConfigError> {
    let s = text("start_mode", raw, source, "a string: \"auto\", \"bootstrap\" or \"join\"")?;
    match s.trim() {
        "auto" => Ok(StartMode::Auto),
        "bootstrap" => Ok(StartMode::Bootstrap),
        "join" => Ok(StartMode::Join),
        _ => Err(bad("start_mode", source, s, "must be auto, bootstrap or join")),
    }
}

/// `peers`: `"2=IP:PORT,3=IP:PORT"` (flag, variable or file string) or a
/// TOML table `{ "2" = "IP:PORT" }`. Ids must be non-zero and appear once.
pub(super) fn peers(raw: Raw, source: &Source) -> Result<Vec<(NodeId, SocketAddr)>, ConfigError> {
    const EXPECTED: &str = "a table of \"ID\" = \"IP:PORT\" or a string \"ID=IP:PORT,...\"";
    let pairs: Vec<(String, String)> = match raw {
        Raw::Text(s) | Raw::Toml(toml::Value::String(s)) => {
            let mut pairs = Vec::new();
            for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let Some((id, addr)) = entry.split_once('=') else {
                    return Err(bad("peers", source, entry, "an entry must be ID=IP:PORT, e.g. 2=127.0.0.1:7102"));
                };
                pairs.push((id.trim().to_string(), addr.trim().to_string()));
            }
            pairs
        }
        Raw::Toml(toml::Value::Table(t)) => {
            let mut pairs = Vec::new();
            for (id, v) in t {
                match v {
                    toml::Value::String(addr) => pairs.push((id, addr)),
                    other => return Err(wrong_type("peers", source, EXPECTED, &other)),
                }
            }
            pairs
        }
        Raw::Toml(v) => return Err(wrong_type("peers", source, EXPECTED, &v)),
    };
    let mut out: Vec<(NodeId, SocketAddr)> = Vec::with_capacity(pairs.len());
    for (id_text, addr_text) in pairs {
        let entry = format!("{id_text}={addr_text}");
        let id = match id_text.parse::<u64>() {
            Ok(id) if id != 0 => NodeId(id),
            _ => return Err(bad("peers", source, entry, "the id before '=' must be a non-zero whole number")),
        };
        let addr = parse_addr(&addr_text).map_err(|why| bad("peers", source, &entry, why))?;
        if out.iter().any(|(seen, _)| *seen == id) {
            return Err(bad("peers", source, entry, format!("node {id} is listed twice")));
        }
        out.push((id, addr));
    }
    Ok(out)
}

/// Parses `IP:PORT`, with a hint for the usual mistakes.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    text.parse::<SocketAddr>().map_err(|_| {
        if text.parse::<IpAddr>().is_ok() {
            format!("{text:?} has no port; write IP:PORT, e.g. 127.0.0.1:7100 or [::1]:7100")
        } else {
            format!("{text:?} is not IP:PORT (e.g. 127.0.0.1:7100 or [::1]:7100; host names are not resolved)")
        }
    })
}

/// `peer_token=...` on argv or `RINGRAFT_PEER_TOKEN` in the environment would
/// leak the secret to `ps` and crash reports; refuse them without echoing
/// the value, pointing at the `_file` form.
pub(super) fn reject_token_values(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    for role in ["peer", "client", "admin"] {
        let flag = format!("--{role}-token");
        let given = args
            .iter()
            .skip(1)
            .take_while(|a| *a != "--")
            .any(|a| a.strip_prefix(&flag).is_some_and(|rest| rest.is_empty() || rest.starts_with('=')));
        if given {
            return Err(ConfigError::Usage(format!(
                "error: unexpected argument '{flag}': tokens are never taken on the command line (they would \
                 show in ps); write the token to a file and pass --{role}-token-file FILE\n\nFor more \
                 information, try '--help'."
            )));
        }
        let var = format!("RINGRAFT_{}_TOKEN", role.to_ascii_uppercase());
        if env(&var).is_some() {
            return Err(ConfigError::Usage(format!(
                "error: {var} is set, but tokens are only taken from files; write the token to a file and \
                 set {var}_FILE instead"
            )));
        }
    }
    Ok(())
}

/// Drops an entry for this node whose address is its own advertised one
/// (handy: every node can share one `peers` list); any other self entry is
/// an error, since it means two different addresses for one node.
pub(super) fn drop_self(c: &mut ServerConfig, source: &Source) -> Result<(), ConfigError> {
    if let Some(&(id, addr)) = c.peers.iter().find(|(id, _)| *id == c.node_id) {
        if addr != c.advertise {
            return Err(ConfigError::BadValue {
                key: "peers",
                source: source.clone(),
                value: format!("{id}={addr}"),
                why: format!(
                    "lists this node (id {id}) at {addr}, but it advertises {}; fix one of them or drop the entry",
                    c.advertise
                ),
            });
        }
        c.peers.retain(|(i, _)| *i != id);
    }
    Ok(())
}

/// Reads a token file: the token is the content with trailing whitespace
/// trimmed; empty, unreadable or over [`MAX_TOKEN`] bytes is an error.
pub(super) fn read_token(key: &'static str, path: &Path) -> Result<Bytes, ConfigError> {
    let err = |why: String| ConfigError::TokenFile { key, path: path.to_path_buf(), why };
    // Operator input, read once at start-up: the real file system.
    let fs = ringraft::fs::real();
    // Read one byte past the limit plus slack for a trailing newline, so a
    // huge file is refused without reading it whole (a pipe works too).
    let mut data = fs.read_max(path, (MAX_TOKEN + 64 + 1) as u64).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => err(format!("cannot open it: {e}")),
        _ => err(format!("cannot read it: {e}")),
    })?;
    let len = data.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    data.truncate(len);
    if data.is_empty() {
        return Err(err("is empty; it must hold the token".into()));
    }
    if data.len() > MAX_TOKEN {
        return Err(err(format!("holds more than {MAX_TOKEN} bytes; a token is at most {MAX_TOKEN}")));
    }
    warn_if_world_readable(&*fs, key, path);
    Ok(Bytes::from(data))
}

fn warn_if_world_readable(fs: &dyn Fs, key: &str, path: &Path) {
    if fs.metadata(path).is_ok_and(|meta| meta.mode & 0o004 != 0) {
        log::warn!("{key} {} is readable by every user; chmod o-r it", path.display());
    }
}
