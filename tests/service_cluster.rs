//! The log service with real `ringraft-server` processes on 127.0.0.1:
//! SDK appends and reads on a 3-node cluster, SIGKILL of the leader under
//! load (a new leader, every acknowledged record on every node, no
//! duplicates), a retried append across a leader change that returns its
//! first offsets, leader transfer under load, graceful restart.

mod service_common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringraft::rpc::AdminRequest;
use ringraft_client::{Client, ClientError};
use service_common::*;

/// Every record of `stream` as node `i` has it (follower read).
pub fn read_stream(c: &Cluster, i: usize, stream: &str, at_least: u64) -> Vec<Bytes> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = read_all(&mut c.client_of(i), stream);
        if out.len() as u64 >= at_least {
            return out;
        }
        assert!(Instant::now() < deadline, "node {} has {} of {at_least} records", i + 1, out.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn record(client: u64, seq: u64) -> Bytes {
    let mut v = format!("{client:04}-{seq:08}-").into_bytes();
    v.resize(64, b'.');
    Bytes::from(v)
}

struct Acks {
    /// offset → record, for every acknowledged append.
    acked: Vec<(u64, Bytes)>,
    /// Records whose outcome is unknown.
    unknown: Vec<Bytes>,
}

/// `clients` threads append `per_client` single-record appends each with a
/// pipeline; `progress` counts acknowledgements.
fn load(
    c: &Cluster,
    stream: &str,
    clients: u64,
    per_client: u64,
    progress: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<Acks>> {
    (0..clients)
        .map(|t| {
            let cfg = c.config();
            let stream = stream.to_string();
            let progress = Arc::clone(&progress);
            std::thread::spawn(move || {
                let mut cl = Client::connect(cfg).expect("connect");
                let mut acks = Acks { acked: Vec::new(), unknown: Vec::new() };
                let mut sent: HashMap<u64, Bytes> = HashMap::new();
                let mut p = cl.pipeline();
                let done = |acks: &mut Acks,
                            sent: &mut HashMap<u64, Bytes>,
                            (ticket, r): (
                    ringraft_client::Ticket,
                    Result<ringraft_client::AppendAck, ClientError>,
                )| {
                    let rec = sent.remove(&ticket.0).expect("a ticket we sent");
                    match r {
                        Ok(a) => {
                            acks.acked.push((a.first_offset, rec));
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                        // Out of retries (a slow CI machine): the outcome is
                        // unknown, the append may or may not be in the stream.
                        Err(e) if e.is_retryable() => acks.unknown.push(rec),
                        Err(e) => panic!("append failed: {e}"),
                    }
                };
                for seq in 0..per_client {
                    let rec = record(t, seq);
                    let ticket = p.submit(&stream, vec![rec.clone()]).expect("submit");
                    sent.insert(ticket.0, rec);
                }
                while let Some(x) = p.next_ack() {
                    done(&mut acks, &mut sent, x);
                }
                acks
            })
        })
        .collect()
}

/// Checks the stream on every node against the acknowledgements.
fn verify(c: &Cluster, stream: &str, acks: &[Acks]) -> usize {
    let max = acks.iter().flat_map(|a| a.acked.iter().map(|x| x.0)).max().unwrap_or(0);
    let streams: Vec<Vec<Bytes>> = (0..c.procs.len())
        .filter(|i| c.procs[*i].child.is_some())
        .map(|i| read_stream(c, i, stream, max + 1))
        .collect();
    for s in &streams[1..] {
        assert_eq!(s, &streams[0], "replicas differ");
    }
    let s = &streams[0];
    for a in acks {
        for (off, rec) in &a.acked {
            assert_eq!(&s[*off as usize], rec, "acknowledged record at offset {off} differs");
        }
    }
    let mut seen = HashSet::new();
    for r in s {
        assert!(seen.insert(r.clone()), "record {:?} appears twice", String::from_utf8_lossy(r));
    }
    s.len()
}

#[test]
fn sigkill_of_the_leader_under_load_loses_no_acknowledged_record() {
    let mut c = Cluster::start("kill9", 3, &[]);
    c.client().create_stream("s").expect("create");
    let progress = Arc::new(AtomicU64::new(0));
    let threads = load(&c, "s", 4, 2_500, Arc::clone(&progress));
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::Relaxed) < 3_000 {
        assert!(Instant::now() < deadline, "load too slow: {}", progress.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(5));
    }
    let old = c.wait_leader(Duration::from_secs(5));
    let term_before = c.status(old).and_then(|s| s.groups.first().map(|g| g.term)).unwrap_or(0);
    let at_kill = progress.load(Ordering::Relaxed);
    c.kill9(old);
    let new = c.wait_leader(Duration::from_secs(20));
    eprintln!("killed node {} after {at_kill} acks", old + 1);
    assert_ne!(new, old);
    let term_after = c.status(new).and_then(|s| s.groups.first().map(|g| g.term)).unwrap_or(0);
    assert!(term_after > term_before, "a new term: {term_before} → {term_after}");
    c.restart(old);
    let acks: Vec<Acks> = threads.into_iter().map(|t| t.join().expect("load thread")).collect();
    let acked: usize = acks.iter().map(|a| a.acked.len()).sum();
    let unknown: usize = acks.iter().map(|a| a.unknown.len()).sum();
    assert!(acked >= 9_000, "most appends acknowledged: {acked} (+{unknown} unknown)");
    let n = verify(&c, "s", &acks);
    eprintln!("acked {acked}, unknown {unknown}, stream {n}, leader {} → {}", old + 1, new + 1);
    assert!(n >= acked && n <= acked + unknown, "stream has {n} records, {acked} acked, {unknown} unknown");
}

#[test]
fn sigterm_drains_and_a_restarted_cluster_serves_everything() {
    let mut c = Cluster::start("term", 3, &[]);
    let mut cl = c.client();
    cl.create_stream("s").expect("create");
    let mut expect = Vec::new();
    for i in 0..200u64 {
        let recs = vec![record(9, i), record(9, 10_000 + i)];
        let a = cl.append("s", recs.clone()).expect("append");
        assert_eq!(a.first_offset, 2 * i);
        expect.extend(recs);
    }
    drop(cl);
    for i in 0..3 {
        assert!(c.sigterm(i).success(), "graceful exit of node {}", i + 1);
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_leader(Duration::from_secs(20));
    for i in 0..3 {
        assert_eq!(read_stream(&c, i, "s", 400), expect);
    }
    assert!(c.log_of(0).contains("restored checkpoint"), "the restart used the checkpoint");
}

#[test]
fn leader_transfer_under_load() {
    let c = Cluster::start("transfer", 3, &[]);
    c.client().create_stream("s").expect("create");
    let progress = Arc::new(AtomicU64::new(0));
    let threads = load(&c, "s", 2, 2_000, Arc::clone(&progress));
    while progress.load(Ordering::Relaxed) < 500 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let leader = c.wait_leader(Duration::from_secs(5));
    let target = (leader + 1) % 3;
    let mut admin = c.admin();
    admin.admin(1, AdminRequest::TransferLeader { target: c.procs[target].id }).expect("transfer accepted");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.wait_leader(Duration::from_secs(5)) != target {
        assert!(Instant::now() < deadline, "leadership did not move to node {}", target + 1);
        std::thread::sleep(Duration::from_millis(20));
    }
    let acks: Vec<Acks> = threads.into_iter().map(|t| t.join().expect("load thread")).collect();
    verify(&c, "s", &acks);
}

/// Defect 06: a Delete retried after a lost answer must not remove a stream
/// another client has since re-created. Client A's delete is applied but
/// its answer is lost (the proxy drops the server's replies); client B
/// re-creates the stream and appends; A's connection breaks and its client
/// sends the delete again. The retry must be recognised as the same
/// operation (sessions deduplicate it) and leave B's stream alone.
#[test]
fn defect_06_a_retried_delete_does_not_remove_a_stream_recreated_since() {
    use ringraft_client::ClientConfig;
    use ringraft_tools::nemesis::proxy::{Direction, Proxy};

    let c = Cluster::start("retry-delete", 1, &[]);
    let server: std::net::SocketAddr = c.servers()[0].parse().unwrap();
    let proxy = Proxy::start(server).expect("proxy");
    let mut b = c.client();
    b.create_stream("s").expect("create");
    let mut cfg = ClientConfig::new(vec![proxy.addr().to_string()], CLUSTER).with_token(c.token.clone());
    cfg.request_timeout = Duration::from_secs(30);
    let mut a = Client::connect(cfg).expect("A connects");
    // A's first append opens its exactly-once session.
    a.append("s", vec![Bytes::from_static(b"A's record")]).expect("A appends");
    proxy.blackhole(Direction::Backward, true);
    let deleter = std::thread::spawn(move || a.delete_stream("s"));
    // A's delete is applied; its answer is lost.
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.list_streams().expect("list").iter().any(|s| s.name == "s") {
        assert!(Instant::now() < deadline, "A's delete was never applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    b.create_stream("s").expect("B re-creates the stream");
    b.append("s", vec![Bytes::from_static(b"B's record")]).expect("append");
    // A's connection breaks: its client re-sends the delete.
    proxy.heal();
    proxy.cut();
    let res = deleter.join().expect("deleter thread");
    assert!(res.is_ok(), "A's delete succeeded once, so its retry answers that: {res:?}");
    let streams = b.list_streams().expect("list");
    assert!(streams.iter().any(|s| s.name == "s"), "the retried delete removed the stream B re-created");
    assert_eq!(read_all(&mut b, "s"), vec![Bytes::from_static(b"B's record")]);
}

/// Defect 06, the second half: a delete names the incarnation it saw, so a
/// stream deleted and created again by someone else is left alone, from
/// the SDK and from the CLI (`ringraft streams` shows the incarnation,
/// `ringraft delete --incarnation N` uses it). A create retried inside one
/// call is applied once too.
#[test]
fn a_delete_naming_an_old_incarnation_deletes_nothing_sdk_and_cli() {
    let c = Cluster::start("incarnation", 1, &[]);
    let mut a = c.client();
    a.create_stream("s").expect("create");
    let old = a.list_streams().expect("list").into_iter().find(|s| s.name == "s").expect("s").incarnation;
    assert!(old > 0, "the list names the incarnation");
    a.delete_stream_incarnation("s", old).expect("delete the incarnation seen");
    a.create_stream("s").expect("create again");
    a.append("s", vec![Bytes::from_static(b"new")]).expect("append");
    let new = a.list_streams().expect("list").into_iter().find(|s| s.name == "s").expect("s").incarnation;
    assert!(new > old, "a re-created stream is another incarnation ({new} after {old})");
    match a.delete_stream_incarnation("s", old) {
        Err(ClientError::UnknownStream(msg)) => assert!(msg.contains(&new.to_string()), "{msg}"),
        other => panic!("deleting incarnation {old} when {new} exists: {other:?}"),
    }
    assert_eq!(read_all(&mut a, "s"), vec![Bytes::from_static(b"new")]);

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .args(["--servers", &c.servers().join(","), "--cluster-id", &CLUSTER.to_string()])
            .args(args)
            .output()
            .expect("run ringraft");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (st, out, err) = cli(&["streams"]);
    assert!(st.success(), "{err}");
    assert!(
        out.contains("INCARNATION")
            && out.lines().any(|l| l.starts_with("s ") && l.trim_end().ends_with(&new.to_string())),
        "{out}"
    );
    let (st, _, err) = cli(&["delete", "s", "--incarnation", &old.to_string()]);
    assert!(!st.success() && err.contains("incarnation"), "a stale incarnation is refused: {err}");
    assert_eq!(read_all(&mut a, "s").len(), 1, "nothing was deleted");
    let (st, _, err) = cli(&["delete", "s", "--incarnation", "x"]);
    assert_eq!(st.code(), Some(2), "a bad number is a usage error: {err}");
    let (st, out, err) = cli(&["delete", "s", "--incarnation", &new.to_string()]);
    assert!(st.success(), "{out}{err}");
    assert!(a.list_streams().expect("list").iter().all(|s| s.name != "s"));
}

/// A data directory written by the previous release (commit 0989377, made
/// by tests/fixtures/datadir-0989377/make.sh and killed with SIGKILL)
/// starts with this build: its checkpoint, snapshot and log replay give
/// back every stream as written, and it takes new writes (with the new
/// session fields) and restarts again.
#[test]
fn a_data_directory_of_the_previous_release_starts_and_keeps_its_streams() {
    let dir = TempDir::new("fixture-0989377");
    let tarball = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("tests/fixtures/datadir-0989377/n1.tar.gz");
    let st = std::process::Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(&dir.0).status();
    match st {
        Ok(s) if s.success() => {}
        other => panic!("cannot unpack {} with tar: {other:?}", tarball.display()),
    }
    let mut c = Cluster {
        dir,
        procs: vec![Proc { id: 1, addr: free_addr(), child: None }],
        extra: Vec::new(),
        token: Bytes::new(),
        envs: Vec::new(),
    };
    c.spawn(0, &[]);
    c.wait_leader(Duration::from_secs(30));
    let expect_orders: Vec<Bytes> =
        (5..60).flat_map(|i| (0..10).map(move |j| Bytes::from(format!("orders-{i}-{j}")))).collect();
    let expect_logs: Vec<Bytes> = (0..70).map(|i| Bytes::from(format!("log-{i}"))).collect();
    let check = |c: &Cluster, extra: usize| {
        let mut cl = c.client();
        let mut names: Vec<String> = cl.list_streams().expect("list").into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names, ["logs", "orders"], "{}", c.log_of(0));
        let orders = read_from(&mut cl, "orders", 50);
        assert_eq!(&orders[..expect_orders.len()], &expect_orders[..], "orders as the old release wrote it");
        assert_eq!(orders.len(), expect_orders.len() + extra);
        let logs = read_all(&mut cl, "logs");
        assert_eq!(&logs[..expect_logs.len()], &expect_logs[..]);
    };
    check(&c, 0);
    let mut cl = c.client();
    cl.append("orders", vec![Bytes::from_static(b"after the upgrade")]).expect("append");
    cl.create_stream("new").expect("create in a session");
    cl.delete_stream("new").expect("delete in a session");
    assert_eq!(c.sigterm(0).code(), Some(0));
    c.restart(0);
    c.wait_leader(Duration::from_secs(30));
    check(&c, 1);
}
