//! The admin commands and `ringraft status` as an operator runs them on a
//! bad day (issue 17): a typo must not change the cluster, a transfer says
//! whether it happened, and `status` tells a script what it found by its
//! exit code.

mod service_common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::Bytes;
use service_common::*;

const CLI: &str = env!("CARGO_BIN_EXE_ringraft");

/// Runs the CLI against the cluster with `args`.
fn cli(c: &Cluster, args: &[&str]) -> Output {
    Command::new(CLI)
        .args(["--servers", &c.servers().join(","), "--cluster-id", &CLUSTER.to_string()])
        .args(args)
        .output()
        .expect("run ringraft")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The leader's (voters, learners).
fn members(c: &Cluster) -> (Vec<u64>, Vec<u64>) {
    let s = c.status(c.wait_leader(Duration::from_secs(10))).expect("leader status");
    let g = &s.groups[0];
    let mut v = g.voters.clone();
    v.sort_unstable();
    let mut l = g.learners.clone();
    l.sort_unstable();
    (v, l)
}

fn write_some(c: &Cluster, n: u64) {
    let mut cl = c.client();
    let _ = cl.create_stream("s");
    for i in 0..n {
        cl.append("s", vec![Bytes::from(format!("r{i}"))]).expect("append");
    }
}

#[test]
fn defect_12_a_voter_must_be_a_caught_up_learner() {
    let mut c = Cluster::start("admin-promote", 3, &[]);
    write_some(&c, 50);
    let three = (vec![1, 2, 3], vec![]);
    assert_eq!(members(&c), three);

    // Typos: a node that is not a member is never made a voter.
    let unused = free_addr().to_string();
    for args in [
        &["admin", "promote", "9"][..],
        &["admin", "change-peers", "--voters", "1,2,9"],
        &["admin", "add-voter", "9", &unused],
    ] {
        let o = cli(&c, args);
        assert!(!o.status.success(), "{args:?} must be refused: {}", text(&o));
        assert!(text(&o).contains("not a learner"), "{args:?} says why: {}", text(&o));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(members(&c), three, "{args:?} changed the membership");
    }
    let o = cli(&c, &["admin", "remove", "9"]);
    assert!(!o.status.success(), "removing a stranger: {}", text(&o));
    assert!(text(&o).contains("node 9 is not a member"), "{}", text(&o));

    // A learner that never answered (nothing listens at its address) is
    // not promoted; the error names the lag.
    let o = cli(&c, &["admin", "add-learner", "5", &unused]);
    assert!(o.status.success(), "add-learner: {}", text(&o));
    write_some(&c, 20);
    let o = cli(&c, &["admin", "promote", "5"]);
    assert!(!o.status.success(), "promoting a dead learner: {}", text(&o));
    assert!(text(&o).contains("behind"), "the error names the lag: {}", text(&o));
    assert_eq!(members(&c), (vec![1, 2, 3], vec![5]));
    let o = cli(&c, &["admin", "remove", "5"]);
    assert!(o.status.success(), "remove the learner: {}", text(&o));

    // The happy path: a live learner that caught up is promoted.
    let four = c.add_slot(4);
    c.spawn(four, &["--join"]);
    let addr = c.procs[four].addr.to_string();
    let o = cli(&c, &["admin", "add-learner", "4", &addr]);
    assert!(o.status.success(), "add-learner 4: {}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = cli(&c, &["admin", "promote", "4"]);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "node 4 never promoted: {}", text(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(members(&c), (vec![1, 2, 3, 4], vec![]));
}

/// The leader's node id and term, from the first server that answers as
/// leader.
fn leader_and_term(c: &Cluster) -> (u64, u64) {
    let i = c.wait_leader(Duration::from_secs(10));
    let s = c.status(i).expect("status");
    (s.node_id, s.groups[0].term)
}

#[test]
fn defect_13_transfer_leader_picks_a_voter_and_reports_the_outcome() {
    let mut c = Cluster::start("admin-transfer", 3, &[]);
    write_some(&c, 20);

    // No node id: the best caught-up voter takes over.
    let (old, _) = leader_and_term(&c);
    let o = cli(&c, &["admin", "transfer-leader"]);
    assert!(o.status.success(), "transfer-leader with no id: {}", text(&o));
    let (now, term) = leader_and_term(&c);
    assert_ne!(now, old, "leadership moved");
    assert!(text(&o).contains(&format!("ok: node {now} leads term {term}")), "{}", text(&o));

    // A named voter.
    let target = (1..=3).find(|n| *n != now).expect("another voter");
    let o = cli(&c, &["admin", "transfer-leader", &target.to_string()]);
    assert!(o.status.success(), "transfer-leader {target}: {}", text(&o));
    let (now, term) = leader_and_term(&c);
    assert_eq!(now, target);
    assert!(text(&o).contains(&format!("ok: node {target} leads term {term}")), "{}", text(&o));

    // Not a voter.
    let o = cli(&c, &["admin", "transfer-leader", "9"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("node 9 is not a voter"), "{}", text(&o));

    // A voter that is down cannot take over: exit 1, naming who still leads.
    let (leader, _) = leader_and_term(&c);
    let dead = (1..=3).find(|n| *n != leader).expect("a follower");
    let idx = c.procs.iter().position(|p| p.id == dead).expect("proc");
    c.kill9(idx);
    let o = cli(&c, &["admin", "transfer-leader", &dead.to_string()]);
    assert_eq!(o.status.code(), Some(1), "transfer to a dead voter must fail: {}", text(&o));
    assert!(
        text(&o).contains(&format!("transfer to {dead} did not finish; node {leader} still leads")),
        "{}",
        text(&o)
    );
}

/// `ringraft status` against `servers` with `extra` global flags.
fn status_cmd(servers: &[String], cluster: u64, extra: &[&str]) -> Output {
    Command::new(CLI)
        .args(["--servers", &servers.join(","), "--cluster-id", &cluster.to_string()])
        .args(extra)
        .arg("status")
        .output()
        .expect("run ringraft status")
}

#[test]
fn defect_14_status_exit_codes_say_what_was_found() {
    let mut c = Cluster::start("admin-status", 3, &[]);
    let o = status_cmd(&c.servers(), CLUSTER, &[]);
    assert_eq!(o.status.code(), Some(0), "all up, one leads: {}", text(&o));

    // Another cluster's id: every server refuses us; exit 3, saying why.
    let o = status_cmd(&c.servers(), CLUSTER + 1, &[]);
    assert_eq!(o.status.code(), Some(3), "wrong cluster: {}", text(&o));
    let out = text(&o);
    assert!(!out.contains(" down"), "a server of another cluster is not down: {out}");
    assert_eq!(out.matches("another cluster").count(), 3, "each line says why: {out}");

    // A usage error.
    let o = Command::new(CLI).args(["status", "--no-such-flag"]).output().expect("run");
    assert_eq!(o.status.code(), Some(2), "usage: {}", text(&o));

    // A node down: exit 1, and its line says so.
    c.kill9(2);
    let o = status_cmd(&c.servers(), CLUSTER, &[]);
    assert_eq!(o.status.code(), Some(1), "a node down: {}", text(&o));
    let addr = c.procs[2].addr.to_string();
    let line = text(&o).lines().find(|l| l.starts_with(&addr)).map(str::to_string).unwrap_or_default();
    assert!(line.contains(" down ("), "its line says down: {}", text(&o));
    drop(c);

    // A server that refuses our token: exit 3, naming the token.
    let dir = TempDir::new("admin-status-token-file");
    let token = dir.0.join("client.token");
    std::fs::write(&token, "s3cret-token\n").expect("token file");
    let token = token.display().to_string();
    let t = Cluster::start_with_token("admin-status-token", 1, &["--client-token-file", &token], "s3cret-token");
    let o = status_cmd(&t.servers(), CLUSTER, &[]);
    assert_eq!(o.status.code(), Some(3), "token refused: {}", text(&o));
    assert!(text(&o).contains("refuses our credentials"), "{}", text(&o));
}

/// Three free ports in a row (cluster.sh puts node i on BASE+i).
fn free_base_port() -> u16 {
    for attempt in 0..200u32 {
        let base = 20_000 + ((std::process::id() * 7 + attempt * 97) % 9_000) as u16;
        let ok = (1..=3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no three free ports in a row");
}

#[test]
fn defect_14_cluster_sh_restart_reports_a_node_that_dies_at_once() {
    let dir = TempDir::new("cluster-sh");
    let script = concat!(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."), "/scripts/cluster.sh");
    let base = free_base_port().to_string();
    let run = |args: &[&str]| {
        Command::new("bash")
            .arg(script)
            .args(args)
            .args(["--dir", dir.0.to_str().expect("utf-8 path")])
            // The binaries under test: cluster.sh runs $CARGO_TARGET_DIR/release/*.
            .env("CARGO_TARGET_DIR", Path::new(CLI).parent().and_then(Path::parent).expect("target dir"))
            .output()
            .expect("run cluster.sh")
    };
    // Whatever happens below, the nodes cluster.sh started are stopped
    // (by the PIDs it recorded).
    struct StopOnDrop<'a>(&'a dyn Fn(&[&str]) -> Output);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["stop"]);
        }
    }
    let _stop = StopOnDrop(&run);
    let o = run(&["start", "--base-port", &base]);
    assert!(o.status.success(), "start: {}", text(&o));
    let o = run(&["restart", "2"]);
    assert!(o.status.success(), "a healthy restart: {}", text(&o));
    // A node that cannot start (its IDENTITY is garbage) dies at once.
    std::fs::write(dir.0.join("n2").join("IDENTITY"), b"garbage").expect("write");
    let o = run(&["restart", "2"]);
    let stop = run(&["stop"]);
    assert!(!o.status.success(), "restart of a node that dies at once must fail: {}", text(&o));
    assert!(text(&o).contains("exited"), "{}", text(&o));
    assert!(stop.status.success(), "stop: {}", text(&stop));
}
