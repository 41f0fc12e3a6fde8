//! `ringraft-server`'s configuration and data directory: precedence of flag
//! over environment over file over default, every start mode, the errors an
//! operator sees for bad values, the `IDENTITY` checks and the lock, and the
//! binary's `--help` and exit codes.
//!
//! The environment is a fake passed to `from_args_env_file`, so these tests
//! never read or change the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use ringraft::core::NodeId;
use ringraft_service::config::{ConfigError, ServerConfig, Source, StartMode};
use ringraft_service::identity::{DataDir, Identity, IdentityError, IDENTITY_FILE};

// --- fixtures -------------------------------------------------------------

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ringraft-service-config-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
    let argv = std::iter::once("ringraft-server").chain(args.iter().copied()).map(String::from);
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ServerConfig::from_args_env_file(argv, &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
}

/// Parses with `--node-id 1 --data-dir /tmp/x` plus `args`.
fn parse_min(args: &[&str]) -> Result<ServerConfig, ConfigError> {
    let mut all = vec!["--node-id", "1", "--data-dir", "/tmp/ringraft-unused"];
    all.extend_from_slice(args);
    parse(&all, &[])
}

fn err_text(r: Result<ServerConfig, ConfigError>) -> (ConfigError, String) {
    let e = r.expect_err("expected a config error");
    let text = e.to_string();
    (e, text)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const ALL_KEYS: &[&str] = &[
    "node_id",
    "cluster_id",
    "data_dir",
    "listen",
    "advertise",
    "peers",
    "start_mode",
    "peer_token_file",
    "client_token_file",
    "admin_token_file",
    "election_timeout_min_ms",
    "election_timeout_max_ms",
    "heartbeat_interval_ms",
    "checkpoint_entries",
    "checkpoint_interval_ms",
    "snapshot_entries",
    "session_ttl_ms",
    "max_record_bytes",
    "max_append_bytes",
    "retention_bytes",
    "retention_age_s",
];

// --- sources and precedence -----------------------------------------------

/// Tests that hold a data directory's flock and tests that start processes
/// run one at a time: a fork shares the parent's open files until its exec
/// closes them, so a lock dropped here can look held for that instant.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn defaults_match_new() {
    let c = parse(&["--node-id", "3", "--data-dir", "/var/lib/rr"], &[]).unwrap();
    let d = ServerConfig::new(NodeId(3), 0, "/var/lib/rr");
    assert_eq!(c.node_id, NodeId(3));
    assert_eq!(c.cluster_id, 0);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/rr"));
    assert_eq!(c.listen, addr("127.0.0.1:7100"));
    assert_eq!(c.advertise, c.listen);
    assert!(c.peers.is_empty());
    assert_eq!(c.start_mode, StartMode::Auto);
    assert!(c.peer_token.is_empty() && c.client_token.is_empty() && c.admin_token.is_empty());
    let pairs = [
        (c.election_timeout_min_ms, d.election_timeout_min_ms, 300),
        (c.election_timeout_max_ms, d.election_timeout_max_ms, 600),
        (c.heartbeat_interval_ms, d.heartbeat_interval_ms, 50),
        (c.checkpoint_entries, d.checkpoint_entries, 65536),
        (c.checkpoint_interval_ms, d.checkpoint_interval_ms, 5000),
        (c.snapshot_entries, d.snapshot_entries, 262144),
        (c.session_ttl_ms, d.session_ttl_ms, 600_000),
        (u64::from(c.max_record_bytes), u64::from(d.max_record_bytes), 1 << 20),
        (u64::from(c.max_append_bytes), u64::from(d.max_append_bytes), 8 << 20),
        (c.retention_bytes, d.retention_bytes, 0),
        (c.retention_age_s, d.retention_age_s, 0),
    ];
    for (parsed, new, want) in pairs {
        assert_eq!((parsed, new), (want, want));
    }
    d.validate().unwrap();
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let dir = TempDir::new("precedence");
    let file = dir.file(
        "c.toml",
        "node_id = 1\ndata_dir = \"/d\"\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 900\n\
         heartbeat_interval_ms = 60\nlisten = \"127.0.0.1:7001\"\n",
    );
    let env = [
        ("RINGRAFT_CONFIG", file.as_str()),
        ("RINGRAFT_ELECTION_TIMEOUT_MIN_MS", "500"),
        ("RINGRAFT_ELECTION_TIMEOUT_MAX_MS", "1000"),
        ("RINGRAFT_HEARTBEAT_INTERVAL_MS", ""), // empty counts as unset: the file's 60 stays
    ];
    let c = parse(&["--election-timeout-min-ms", "700"], &env).unwrap();
    assert_eq!(c.election_timeout_min_ms, 700, "flag over env and file");
    assert_eq!(c.election_timeout_max_ms, 1000, "env over file");
    assert_eq!(c.heartbeat_interval_ms, 60, "file over default");
    assert_eq!(c.listen, addr("127.0.0.1:7001"));
    assert_eq!(c.advertise, c.listen, "advertise defaults to the resolved listen");
    assert_eq!(c.snapshot_entries, 262144, "default");
    assert_eq!(c.node_id, NodeId(1));
}

#[test]
fn config_flag_beats_config_env() {
    let dir = TempDir::new("config-path");
    let a = dir.file("a.toml", "node_id = 7\ndata_dir = \"/a\"\n");
    let b = dir.file("b.toml", "node_id = 8\ndata_dir = \"/b\"\n");
    let c = parse(&["--config", &b], &[("RINGRAFT_CONFIG", &a)]).unwrap();
    assert_eq!((c.node_id, c.data_dir), (NodeId(8), PathBuf::from("/b")));
    let c = parse(&[], &[("RINGRAFT_CONFIG", &a), ("RINGRAFT_NODE_ID", "9")]).unwrap();
    assert_eq!((c.node_id, c.data_dir), (NodeId(9), PathBuf::from("/a")));
}

#[test]
fn every_key_from_the_file() {
    let dir = TempDir::new("all-file");
    let tok = dir.file("peer.tok", "s3cret\n");
    let file = dir.file(
        "c.toml",
        &format!(
            "node_id = 2\ncluster_id = \"18446744073709551615\"\ndata_dir = \"/d\"\nlisten = \"0.0.0.0:7200\"\n\
             advertise = \"10.0.0.2:7200\"\npeers = {{ \"1\" = \"10.0.0.1:7200\", \"3\" = \"10.0.0.3:7200\" }}\n\
             start_mode = \"join\"\npeer_token_file = {tok:?}\nelection_timeout_min_ms = 1000\n\
             election_timeout_max_ms = 2000\nheartbeat_interval_ms = 100\ncheckpoint_entries = 10\n\
             checkpoint_interval_ms = 20\nsnapshot_entries = 30\nsession_ttl_ms = 40\nmax_record_bytes = 50\n\
             max_append_bytes = 60\nretention_bytes = 70\nretention_age_s = 80\n"
        ),
    );
    let c = parse(&["--config", &file], &[]).unwrap();
    assert_eq!(c.cluster_id, u64::MAX, "ids above 2^63 may be written as strings");
    assert_eq!(c.listen, addr("0.0.0.0:7200"));
    assert_eq!(c.advertise, addr("10.0.0.2:7200"));
    assert_eq!(c.peers, vec![(NodeId(1), addr("10.0.0.1:7200")), (NodeId(3), addr("10.0.0.3:7200"))]);
    assert_eq!(c.start_mode, StartMode::Join);
    assert_eq!(&c.peer_token[..], b"s3cret");
    let got = [
        c.checkpoint_entries,
        c.checkpoint_interval_ms,
        c.snapshot_entries,
        c.session_ttl_ms,
        u64::from(c.max_record_bytes),
        u64::from(c.max_append_bytes),
        c.retention_bytes,
        c.retention_age_s,
    ];
    assert_eq!(got, [10, 20, 30, 40, 50, 60, 70, 80]);
}

// --- modes ----------------------------------------------------------------

#[test]
fn start_modes_from_each_source() {
    assert_eq!(parse_min(&[]).unwrap().start_mode, StartMode::Auto);
    assert_eq!(parse_min(&["--bootstrap", "--cluster-id", "5"]).unwrap().start_mode, StartMode::Bootstrap);
    assert_eq!(parse_min(&["--join", "--cluster-id", "5"]).unwrap().start_mode, StartMode::Join);
    assert_eq!(parse_min(&["--start-mode", "join", "--cluster-id", "5"]).unwrap().start_mode, StartMode::Join);
    let env = [("RINGRAFT_NODE_ID", "1"), ("RINGRAFT_DATA_DIR", "/d"), ("RINGRAFT_CLUSTER_ID", "5")];
    let mut with_mode = env.to_vec();
    with_mode.push(("RINGRAFT_START_MODE", "bootstrap"));
    assert_eq!(parse(&[], &with_mode).unwrap().start_mode, StartMode::Bootstrap);
    assert_eq!(parse(&["--join"], &with_mode).unwrap().start_mode, StartMode::Join, "flag over env");

    let (e, _) = err_text(parse_min(&["--bootstrap", "--join"]));
    assert!(matches!(e, ConfigError::Usage(_)), "{e:?}");
    let (e, text) = err_text(parse_min(&["--bootstrap"]));
    assert!(matches!(e, ConfigError::Invalid { key: "cluster_id", .. }), "{e:?}");
    assert!(text.contains("cluster_id"), "{text}");
    let (_, text) = err_text(parse_min(&["--start-mode", "restart"]));
    assert!(text.contains("start_mode") && text.contains("auto, bootstrap or join"), "{text}");
}

// --- bad values -----------------------------------------------------------

#[test]
fn missing_required_keys_name_every_source() {
    let (e, text) = err_text(parse(&["--data-dir", "/d"], &[]));
    assert!(matches!(e, ConfigError::Missing { key: "node_id" }), "{e:?}");
    assert!(text.contains("--node-id") && text.contains("RINGRAFT_NODE_ID"), "{text}");
    let (e, _) = err_text(parse(&["--node-id", "1"], &[]));
    assert!(matches!(e, ConfigError::Missing { key: "data_dir" }), "{e:?}");
    let (e, _) = err_text(parse(&["--node-id", "0", "--data-dir", "/d"], &[]));
    assert!(matches!(e, ConfigError::Invalid { key: "node_id", .. }), "{e:?}");
}

#[test]
fn non_numeric_and_out_of_range_numbers() {
    let (e, text) = err_text(parse_min(&["--election-timeout-min-ms", "fast"]));
    match e {
        ConfigError::BadValue { key, source, .. } => {
            assert_eq!(key, "election_timeout_min_ms");
            assert_eq!(source, Source::Flag("--election-timeout-min-ms".into()));
        }
        other => panic!("{other:?}"),
    }
    assert!(text.contains("fast") && text.contains("--election-timeout-min-ms"), "{text}");
    let (_, text) = err_text(parse(&["--data-dir", "/d"], &[("RINGRAFT_NODE_ID", "one")]));
    assert!(text.contains("RINGRAFT_NODE_ID") && text.contains("node_id"), "{text}");
    let (_, text) = err_text(parse_min(&["--max-record-bytes", "4294967296"]));
    assert!(text.contains("max_record_bytes") && text.contains("4294967295"), "{text}");
}

#[test]
fn addresses() {
    let (_, text) = err_text(parse_min(&["--listen", "127.0.0.1"]));
    assert!(text.contains("listen") && text.contains("no port"), "{text}");
    let (_, text) = err_text(parse_min(&["--advertise", "db1.example:7100"]));
    assert!(text.contains("advertise") && text.contains("IP:PORT"), "{text}");
    let (e, text) = err_text(parse_min(&["--listen", "0.0.0.0:7100"]));
    assert!(matches!(e, ConfigError::Invalid { key: "advertise", .. }), "{e:?}");
    assert!(text.contains("0.0.0.0:7100"), "{text}");
    let (e, _) = err_text(parse_min(&["--listen", "[::]:7100"]));
    assert!(matches!(e, ConfigError::Invalid { key: "advertise", .. }), "{e:?}");
    let c = parse_min(&["--listen", "0.0.0.0:7100", "--advertise", "10.1.2.3:7100"]).unwrap();
    assert_eq!((c.listen, c.advertise), (addr("0.0.0.0:7100"), addr("10.1.2.3:7100")));
}

#[test]
fn peers_syntax_duplicates_and_self() {
    let c = parse_min(&["--peers", "2=127.0.0.1:7102, 3=127.0.0.1:7103"]).unwrap();
    assert_eq!(c.peers, vec![(NodeId(2), addr("127.0.0.1:7102")), (NodeId(3), addr("127.0.0.1:7103"))]);
    // This node at its own advertised address: allowed and dropped.
    let c = parse_min(&["--peers", "1=127.0.0.1:7100,2=127.0.0.1:7102"]).unwrap();
    assert_eq!(c.peers, vec![(NodeId(2), addr("127.0.0.1:7102"))]);
    let (e, text) = err_text(parse_min(&["--peers", "1=127.0.0.1:7999,2=127.0.0.1:7102"]));
    assert!(matches!(e, ConfigError::BadValue { key: "peers", .. }), "{e:?}");
    assert!(text.contains("127.0.0.1:7999") && text.contains("127.0.0.1:7100"), "{text}");
    let (_, text) = err_text(parse_min(&["--peers", "2=127.0.0.1:7102,2=127.0.0.1:7103"]));
    assert!(text.contains("twice"), "{text}");
    for bad in ["2:127.0.0.1:7102", "x=127.0.0.1:7102", "0=127.0.0.1:7102", "2=127.0.0.1"] {
        let (e, _) = err_text(parse_min(&["--peers", bad]));
        assert!(matches!(e, ConfigError::BadValue { key: "peers", .. }), "{bad}: {e:?}");
    }
    let dir = TempDir::new("peers-toml");
    let f = dir.file(
        "c.toml",
        "node_id = 1\ndata_dir = \"/d\"\npeers = { \"2\" = \"127.0.0.1:7102\", \"02\" = \"127.0.0.1:7103\" }\n",
    );
    let (_, text) = err_text(parse(&["--config", &f], &[]));
    assert!(text.contains("twice"), "{text}");
    let f = dir.file("s.toml", "node_id = 1\ndata_dir = \"/d\"\npeers = \"2=127.0.0.1:7102\"\n");
    assert_eq!(parse(&["--config", &f], &[]).unwrap().peers.len(), 1);
    let mut c = ServerConfig::new(NodeId(1), 0, "/d");
    c.peers = vec![(NodeId(2), addr("127.0.0.1:7102")), (NodeId(2), addr("127.0.0.1:7103"))];
    assert!(matches!(c.validate(), Err(ConfigError::Invalid { key: "peers", .. })));
}

#[test]
fn timing_rules() {
    let (e, text) = err_text(parse_min(&["--heartbeat-interval-ms", "150"]));
    assert!(matches!(e, ConfigError::Invalid { key: "heartbeat_interval_ms", .. }), "{e:?}");
    assert!(text.contains("150") && text.contains("300"), "{text}");
    parse_min(&["--heartbeat-interval-ms", "149"]).unwrap();
    let (e, _) = err_text(parse_min(&["--election-timeout-max-ms", "300"]));
    assert!(matches!(e, ConfigError::Invalid { key: "election_timeout_max_ms", .. }), "{e:?}");
    let (e, _) = err_text(parse_min(&["--election-timeout-min-ms", "700"]));
    assert!(matches!(e, ConfigError::Invalid { key: "election_timeout_max_ms", .. }), "{e:?}");
    let (e, _) = err_text(parse_min(&["--max-append-bytes", "100", "--max-record-bytes", "200"]));
    assert!(matches!(e, ConfigError::Invalid { key: "max_append_bytes", .. }), "{e:?}");
}

#[test]
fn toml_unknown_key_wrong_type_and_syntax() {
    let dir = TempDir::new("toml");
    let f = dir.file("typo.toml", "node_id = 1\ndata_dir = \"/d\"\nheartbeat_ms = 10\n");
    let (e, text) = err_text(parse(&["--config", &f], &[]));
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    assert!(text.contains("heartbeat_ms") && text.contains(&f), "{text}");
    let f = dir.file("type.toml", "node_id = 1\ndata_dir = \"/d\"\nelection_timeout_min_ms = \"300\"\n");
    let (e, text) = err_text(parse(&["--config", &f], &[]));
    assert!(matches!(e, ConfigError::WrongType { key: "election_timeout_min_ms", .. }), "{e:?}");
    assert!(text.contains(&f) && text.contains("an integer") && text.contains("string"), "{text}");
    let f = dir.file("addr.toml", "node_id = 1\ndata_dir = \"/d\"\nlisten = 7100\n");
    let (e, _) = err_text(parse(&["--config", &f], &[]));
    assert!(matches!(e, ConfigError::WrongType { key: "listen", .. }), "{e:?}");
    let f = dir.file("neg.toml", "node_id = -1\ndata_dir = \"/d\"\n");
    let (e, _) = err_text(parse(&["--config", &f], &[]));
    assert!(matches!(e, ConfigError::BadValue { key: "node_id", .. }), "{e:?}");
    let f = dir.file("syntax.toml", "node_id = = 1\n");
    let (e, text) = err_text(parse(&["--config", &f], &[]));
    assert!(matches!(e, ConfigError::File { .. }) && text.contains(&f), "{e:?}");
    let missing = dir.path().join("nope.toml");
    let (e, _) = err_text(parse(&["--config", missing.to_str().unwrap()], &[]));
    assert!(matches!(e, ConfigError::File { .. }), "{e:?}");
}

// --- tokens ---------------------------------------------------------------

#[test]
fn tokens_only_from_files() {
    for args in [&["--peer-token", "s3cret"][..], &["--client-token=s3cret"], &["--admin-token", "x"]] {
        let (e, text) = err_text(parse_min(args));
        assert!(matches!(e, ConfigError::Usage(_)), "{args:?}: {e:?}");
        assert!(!text.contains("s3cret"), "the secret must not be echoed: {text}");
        assert!(text.contains("-token-file"), "{text}");
    }
    let env = [("RINGRAFT_NODE_ID", "1"), ("RINGRAFT_DATA_DIR", "/d"), ("RINGRAFT_PEER_TOKEN", "s3cret")];
    let (e, text) = err_text(parse(&[], &env));
    assert!(matches!(e, ConfigError::Usage(_)) && text.contains("RINGRAFT_PEER_TOKEN_FILE"), "{text}");

    let dir = TempDir::new("tokens");
    let peer = dir.file("peer", "  peer secret \n\n");
    let client = dir.file("client", "c");
    let admin_env = dir.file("admin", "admin\r\n");
    let args = ["--node-id", "1", "--data-dir", "/d", "--peer-token-file", &peer, "--client-token-file", &client];
    let c = parse(&args, &[("RINGRAFT_ADMIN_TOKEN_FILE", &admin_env)]).unwrap();
    assert_eq!(&c.peer_token[..], b"  peer secret", "only trailing whitespace is trimmed");
    assert_eq!(&c.client_token[..], b"c");
    assert_eq!(&c.admin_token[..], b"admin");

    let empty = dir.file("empty", " \n");
    let (e, text) = err_text(parse_min(&["--peer-token-file", &empty]));
    assert!(matches!(e, ConfigError::TokenFile { key: "peer_token_file", .. }), "{e:?}");
    assert!(text.contains(&empty) && text.contains("empty"), "{text}");
    let missing = dir.path().join("missing").to_str().unwrap().to_string();
    let (e, text) = err_text(parse_min(&["--client-token-file", &missing]));
    assert!(matches!(e, ConfigError::TokenFile { key: "client_token_file", .. }), "{e:?}");
    assert!(text.contains(&missing), "{text}");
    let long = dir.file("long", &"x".repeat(1025));
    let (_, text) = err_text(parse_min(&["--admin-token-file", &long]));
    assert!(text.contains("1024"), "{text}");
    let max = dir.file("max", &format!("{}\n", "x".repeat(1024)));
    assert_eq!(parse_min(&["--admin-token-file", &max]).unwrap().admin_token.len(), 1024);
}

// --- help -----------------------------------------------------------------

#[test]
fn help_lists_every_key_default_and_env() {
    let (e, _) = err_text(parse(&["--help"], &[]));
    let ConfigError::Help(text) = e else { panic!("{e:?}") };
    for key in ALL_KEYS {
        let flag = format!("--{}", key.replace('_', "-"));
        let env = format!("RINGRAFT_{}", key.to_uppercase());
        assert!(text.contains(&flag), "help lacks {flag}");
        assert!(text.contains(&env), "help lacks {env}");
        assert!(text.contains(&format!("[file: {key}]")), "help lacks file key {key}");
    }
    for s in ["[default: 300]", "[default: 127.0.0.1:7100]", "RINGRAFT_CONFIG", "PRECEDENCE", "MODES", "--bootstrap"] {
        assert!(text.contains(s), "help lacks {s}");
    }
    assert!(matches!(parse(&["--version"], &[]), Err(ConfigError::Help(_))));
}

// --- data directory and identity ------------------------------------------

fn cfg(dir: &Path, node: u64, cluster: u64, mode: StartMode) -> ServerConfig {
    let mut c = ServerConfig::new(NodeId(node), cluster, dir.join("data"));
    c.start_mode = mode;
    c
}

#[test]
fn bootstrap_writes_identity_then_auto_reopens() {
    let _serial = serial();
    let tmp = TempDir::new("id-boot");
    {
        let d = DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Bootstrap)).unwrap();
        assert!(d.is_new());
        assert_eq!(d.identity(), Identity { cluster_id: 77, node_id: NodeId(1) });
        assert!(d.raft_dir().is_dir() && d.service_dir().is_dir());
        assert_eq!(d.raft_dir(), tmp.path().join("data/raft"));
        let bytes = std::fs::read(tmp.path().join("data").join(IDENTITY_FILE)).unwrap();
        assert_eq!(bytes.len(), 28);
        assert_eq!(&bytes[0..4], b"RRID");
        assert_eq!(bytes[4..8], 1u32.to_le_bytes());
        assert_eq!(bytes[8..16], 77u64.to_le_bytes());
        assert_eq!(bytes[16..24], 1u64.to_le_bytes());
        assert_eq!(bytes[24..28], crc32c::crc32c(&bytes[..24]).to_le_bytes());
    }
    for cluster in [0, 77] {
        let d = DataDir::open(&cfg(tmp.path(), 1, cluster, StartMode::Auto)).unwrap();
        assert!(!d.is_new());
        assert_eq!(d.identity().cluster_id, 77);
    }
    let e = DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Bootstrap)).unwrap_err();
    assert!(matches!(e, IdentityError::NotEmpty { .. }), "{e:?}");
    assert!(e.to_string().contains("IDENTITY"), "{e}");
    let e = DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Join)).unwrap_err();
    assert!(matches!(e, IdentityError::NotEmpty { .. }), "{e:?}");
}

#[test]
fn join_needs_an_empty_dir() {
    let _serial = serial();
    let tmp = TempDir::new("id-join");
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::write(tmp.path().join("data/stray.log"), b"x").unwrap();
    let e = DataDir::open(&cfg(tmp.path(), 2, 5, StartMode::Join)).unwrap_err();
    assert!(matches!(e, IdentityError::NotEmpty { .. }) && e.to_string().contains("stray.log"), "{e}");
    // A mount point's lost+found is fine while empty, not once it holds
    // something (fsck put a file there: someone should look).
    std::fs::remove_file(tmp.path().join("data/stray.log")).unwrap();
    std::fs::create_dir(tmp.path().join("data/lost+found")).unwrap();
    std::fs::write(tmp.path().join("data/lost+found/#1234"), b"x").unwrap();
    let e = DataDir::open(&cfg(tmp.path(), 2, 5, StartMode::Join)).unwrap_err();
    assert!(matches!(e, IdentityError::NotEmpty { .. }) && e.to_string().contains("lost+found"), "{e}");
    std::fs::remove_file(tmp.path().join("data/lost+found/#1234")).unwrap();
    let d = DataDir::open(&cfg(tmp.path(), 2, 5, StartMode::Join)).unwrap();
    assert!(d.is_new());
}

#[test]
fn auto_on_empty_dir_names_bootstrap_and_join() {
    let _serial = serial();
    let tmp = TempDir::new("id-auto");
    let e = DataDir::open(&cfg(tmp.path(), 1, 0, StartMode::Auto)).unwrap_err();
    assert!(matches!(e, IdentityError::Missing { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("--bootstrap") && text.contains("--join"), "{text}");
}

#[test]
fn foreign_identity_refused() {
    let _serial = serial();
    let tmp = TempDir::new("id-foreign");
    drop(DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Bootstrap)).unwrap());
    for (node, cluster) in [(2, 77), (1, 78), (2, 0)] {
        let e = DataDir::open(&cfg(tmp.path(), node, cluster, StartMode::Auto)).unwrap_err();
        match &e {
            IdentityError::Foreign { found, expected, .. } => {
                assert_eq!(*found, Identity { cluster_id: 77, node_id: NodeId(1) });
                assert_eq!(*expected, Identity { cluster_id: cluster, node_id: NodeId(node) });
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("node 1 of cluster 77"), "{e}");
    }
}

#[test]
fn corrupt_identity_refused() {
    let _serial = serial();
    let tmp = TempDir::new("id-corrupt");
    drop(DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Bootstrap)).unwrap());
    let path = tmp.path().join("data").join(IDENTITY_FILE);
    let good = std::fs::read(&path).unwrap();
    let open = || DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Auto));
    for at in [0, 5, 9, 17, 26] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let e = open().unwrap_err();
        assert!(matches!(e, IdentityError::Corrupt { .. }), "flip at {at}: {e:?}");
        assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
    }
    for len in [0, 3, 20, 27] {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(matches!(open(), Err(IdentityError::Corrupt { .. })), "truncated to {len}");
    }
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert!(matches!(open(), Err(IdentityError::Corrupt { .. })));
    // A well-formed file from a future version.
    let mut v2 = good.clone();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&v2[..24]);
    v2[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &v2).unwrap();
    assert!(matches!(open(), Err(IdentityError::UnsupportedVersion { version: 2, .. })));
    std::fs::write(&path, &good).unwrap();
    open().unwrap();
}

#[test]
fn second_open_is_locked_until_the_first_drops() {
    let _serial = serial();
    let tmp = TempDir::new("id-lock");
    let first = DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Bootstrap)).unwrap();
    let e = DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Auto)).unwrap_err();
    assert!(matches!(e, IdentityError::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("another ringraft-server"), "{e}");
    drop(first);
    DataDir::open(&cfg(tmp.path(), 1, 77, StartMode::Auto)).unwrap();
}

// --- the binary -----------------------------------------------------------

#[test]
fn binary_help_and_bad_flag() {
    let _serial = serial();
    let bin = env!("CARGO_BIN_EXE_ringraft-server");
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for key in ALL_KEYS {
        assert!(stdout.contains(&format!("RINGRAFT_{}", key.to_uppercase())), "--help lacks {key}");
    }
    let out = Command::new(bin).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--no-such-flag") && stderr.contains("--help"), "{stderr}");
    let out = Command::new(bin).args(["--node-id", "1"]).env_remove("RINGRAFT_DATA_DIR").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("data_dir is required"));
}
