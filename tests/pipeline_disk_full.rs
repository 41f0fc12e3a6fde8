//! A leader whose disk fills up steps down, and the cluster elects a node
//! that can write: node 1's data directory is a small tmpfs (root only:
//! without permission to mount, the test prints `skipped:` and why), node 1
//! is made leader, and large proposals fill its disk. Once the tmpfs grows
//! again node 1 writes what it held, catches up and can lead again.

mod pipeline_common;
#[path = "storage_common/tmpfs.rs"]
mod tmpfs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pipeline_common::*;
use ringraft::core::{NodeId, Role};
use ringraft::node::{Node, NodeConfig, NodeError};
use ringraft::pipeline::transport::InProcNetwork;
use tmpfs::Tmpfs;

const DISK_BYTES: u64 = 3 << 20;

fn start(net: &Arc<InProcNetwork>, id: NodeId, dir: &std::path::Path) -> Node {
    let mut cfg = NodeConfig::new(id, dir);
    cfg.engine.segment_bytes = 1 << 20;
    let node = Node::start(cfg, vec![(group_config(id), Box::new(Recorder(Applied::default())))], net.clone())
        .unwrap_or_else(|e| panic!("node {id}: {e}"));
    net.register(id, node.inbound());
    node
}

fn role(n: &Node) -> Option<Role> {
    n.handle().status(GROUP).ok().map(|s| s.role)
}

#[test]
fn a_leader_with_a_full_disk_steps_down_and_the_others_go_on() {
    let tmp = TempDir::new("diskfull");
    let dirs: Vec<_> = (1..=3).map(|i| tmp.0.join(format!("n{i}"))).collect();
    std::fs::create_dir_all(&dirs[0]).unwrap();
    let _disk = match Tmpfs::mount(&dirs[0], DISK_BYTES) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let net = InProcNetwork::new();
    let nodes: Vec<Node> = ids().into_iter().zip(&dirs).map(|(id, d)| start(&net, id, d)).collect();

    // Make node 1 the leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    while role(&nodes[0]) != Some(Role::Leader) {
        assert!(Instant::now() < deadline, "node 1 never became leader");
        if let Some(l) = nodes.iter().find(|n| role(n) == Some(Role::Leader)) {
            let _ = l.handle().transfer_leader(GROUP, NodeId(1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // 64 KiB proposals until node 1 can no longer lead.
    let big = Bytes::from(vec![7u8; 64 << 10]);
    let mut h = nodes[0].handle();
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "node 1 kept leading with a full disk ({acked} acknowledged)");
        match h.propose_wait_until(GROUP, big.clone(), Instant::now() + Duration::from_secs(2)) {
            Ok(_) => acked += 1,
            Err(NodeError::NotLeader { .. }) => break,
            // Unanswered: the leader stopped being able to write it.
            Err(NodeError::Timeout) if role(&nodes[0]) != Some(Role::Leader) => break,
            Err(e) if e.is_retryable() => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("unexpected error while filling the disk: {e}"),
        }
        assert!(acked < 1000, "{acked} × 64 KiB acknowledged on a {DISK_BYTES}-byte disk");
    }
    eprintln!("disk full after {acked} acknowledged 64 KiB proposals; node 1 stepped down");

    // Another node leads and commits; node 1 does not take leadership back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        assert!(Instant::now() < deadline, "no new leader after node 1's disk filled");
        if let Some(i) = (1..3).find(|&i| role(&nodes[i]) == Some(Role::Leader)) {
            break i;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut nh = nodes[new].handle();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match nh.propose_wait(GROUP, payload(1)) {
            Ok(_) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("the new leader cannot commit: {e}"),
        }
    }
    assert_ne!(role(&nodes[0]), Some(Role::Leader));

    // Give node 1 room again: it writes what it held, reports the disk
    // healthy, catches up, and can take leadership back.
    let out =
        std::process::Command::new("mount").args(["-o", "remount,size=64m"]).arg(&dirs[0]).output().expect("run mount");
    assert!(out.status.success(), "remount failed: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "node 1 did not take leadership back after its disk recovered");
        if role(&nodes[0]) == Some(Role::Leader) {
            break;
        }
        if let Some(l) = nodes.iter().find(|n| role(n) == Some(Role::Leader)) {
            let _ = l.handle().transfer_leader(GROUP, NodeId(1));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut h = nodes[0].handle();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match h.propose_wait_until(GROUP, big.clone(), Instant::now() + Duration::from_secs(5)) {
            Ok(_) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("node 1 cannot commit after its disk recovered: {e}"),
        }
    }
    eprintln!("node 1 recovered, caught up and leads again");
    for n in nodes {
        n.shutdown();
    }
}

#[test]
fn a_node_whose_disk_stays_full_still_shuts_down_and_loses_nothing_acknowledged() {
    let tmp = TempDir::new("diskfull1");
    let dir = tmp.0.join("n1");
    std::fs::create_dir_all(&dir).unwrap();
    let _disk = match Tmpfs::mount(&dir, 2 << 20) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let solo = || {
        let mut g = ringraft::node::GroupConfig::new(NodeId(1), GROUP, [NodeId(1)]);
        g.raft.election_timeout_min_ms = 100;
        g.raft.election_timeout_max_ms = 200;
        g.raft.heartbeat_interval_ms = 20;
        g.raft.lease_drift_ms = 20;
        g
    };
    let applied = Applied::default();
    let mut cfg = NodeConfig::new(NodeId(1), &dir);
    cfg.engine.segment_bytes = 1 << 20;
    let node = Node::start(cfg.clone(), vec![(solo(), Box::new(Recorder(applied)))], InProcNetwork::new()).unwrap();
    let big = Bytes::from(vec![9u8; 64 << 10]);
    let mut h = node.handle();
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline && acked.len() < 1000, "the disk never filled");
        match h.propose_wait_until(GROUP, big.clone(), Instant::now() + Duration::from_secs(2)) {
            Ok(b) => acked.push(u64::from_le_bytes(b[..8].try_into().unwrap())),
            Err(NodeError::Timeout) | Err(NodeError::NotLeader { .. }) if !acked.is_empty() => break,
            Err(e) if e.is_retryable() => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("unexpected error while filling the disk: {e}"),
        }
    }
    node.shutdown(); // abandons the batch the disk refuses; must not hang
    let out = std::process::Command::new("mount").args(["-o", "remount,size=64m"]).arg(&dir).output().unwrap();
    assert!(out.status.success());
    let replayed = Applied::default();
    let node = Node::start(cfg, vec![(solo(), Box::new(Recorder(replayed.clone())))], InProcNetwork::new()).unwrap();
    let mut h = node.handle();
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.propose_wait_until(GROUP, payload(1), Instant::now() + Duration::from_secs(5)).is_err() {
        assert!(Instant::now() < deadline, "the restarted node never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let got: std::collections::HashSet<u64> = replayed.lock().iter().map(|a| a.0).collect();
    for i in &acked {
        assert!(got.contains(i), "acknowledged entry {i} lost after a full disk and a restart");
    }
    eprintln!("full disk: {} acknowledged, shut down while full, all present after restart", acked.len());
    node.shutdown();
}
