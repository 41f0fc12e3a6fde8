//! A node whose service checkpoint is lost or damaged starts again (issue
//! 16): real `ringraft-server` processes on 127.0.0.1, one node's sled
//! checkpoint garbled or rolled back while it is down, then restarted.

mod service_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringraft::rpc::AdminRequest;
use service_common::*;

/// Checkpoints every 50 entries or 50 ms, snapshots every 300 entries.
const FLAGS: &[&str] = &["--checkpoint-interval-ms", "50", "--checkpoint-entries", "50", "--snapshot-entries", "300"];

/// Appends `n` one-record entries `<tag>-<i>` to stream `s`.
fn append_n(c: &Cluster, tag: &str, n: usize) {
    let mut cl = c.client();
    for i in 0..n {
        cl.append("s", vec![Bytes::from(format!("{tag}-{i}"))]).expect("append");
    }
}

/// The leader's commit index.
fn commit(c: &Cluster) -> u64 {
    let l = c.wait_leader(Duration::from_secs(30));
    c.status(l).and_then(|s| s.groups.first().map(|g| g.commit)).unwrap_or(0)
}

/// The live state directory of node `i` (what `service/CURRENT` names).
fn state_dir(c: &Cluster, i: usize) -> PathBuf {
    let service = c.dir.0.join(format!("n{}", c.procs[i].id)).join("service");
    let name = std::fs::read_to_string(service.join("CURRENT")).expect("CURRENT");
    service.join(name.trim())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A 3-node cluster with `flags` whose stream `s` holds `a-0..a-<n>`, with
/// node 2 SIGKILLed after it applied (and, 300 ms later, checkpointed) them.
fn node_2_down_after(name: &str, flags: &[&str], n: usize) -> Cluster {
    let mut c = Cluster::start(name, 3, flags);
    c.client().create_stream("s").expect("create");
    append_n(&c, "a", n);
    let at = commit(&c);
    c.wait_applied(1, at, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    c.kill9(1);
    c
}

/// Flips bits in every file under `dir` (or in the file `dir`) past its
/// first `skip` bytes.
fn garble(dir: &Path, skip: usize) {
    let files = if dir.is_dir() { files_under(dir) } else { vec![dir.to_path_buf()] };
    for f in files {
        let mut bytes = std::fs::read(&f).expect("read a file to garble");
        for (k, b) in bytes.iter_mut().enumerate().skip(skip) {
            *b ^= (k as u8) | 0x5a;
        }
        std::fs::write(&f, bytes).expect("garble a file");
    }
}

/// Waits until node `i`'s log holds `text`.
fn wait_log(c: &Cluster, i: usize, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.log_of(i).contains(text) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.log_of(i).contains(text), "node {}'s log lacks {text:?}:\n{}", i + 1, c.log_of(i));
}

/// Stream `s` is the same on every node, and holds `expect`.
fn same_everywhere(c: &Cluster, expect: &[Bytes]) {
    let at = commit(c);
    for i in 0..c.procs.len() {
        c.wait_applied(i, at, Duration::from_secs(60));
        let got = read_all(&mut c.client_of(i), "s");
        assert_eq!(got.len(), expect.len(), "node {} has {} records, expected {}", i + 1, got.len(), expect.len());
        assert!(got == expect, "node {} holds other records than the cluster acknowledged", i + 1);
    }
}

fn expected(parts: &[(&str, usize)]) -> Vec<Bytes> {
    parts.iter().flat_map(|(tag, n)| (0..*n).map(move |i| Bytes::from(format!("{tag}-{i}")))).collect()
}

/// Defect 08: what a full disk and a SIGKILL left of node 2's sled
/// checkpoint in nemesis seed 626601 ("Read corrupted data") was refused on
/// every restart, so the node never came back. A damaged checkpoint is now
/// replaced by the newest local snapshot (verified) and the Raft log
/// replayed from it.
#[test]
fn defect_08_disk_full_kill_checkpoint() {
    let mut c = Cluster::start("defect08", 3, FLAGS);
    c.client().create_stream("s").expect("create");
    append_n(&c, "a", 400);
    c.admin().admin(1, AdminRequest::Snapshot).expect("snapshot");
    append_n(&c, "b", 120);
    let at = commit(&c);
    c.wait_applied(1, at, Duration::from_secs(30));
    // Let node 2 checkpoint what it applied, then kill it.
    std::thread::sleep(Duration::from_millis(300));
    c.kill9(1);
    garble(&state_dir(&c, 1).join("db"), 512);
    c.restart(1);
    append_n(&c, "c", 50);
    same_everywhere(&c, &expected(&[("a", 400), ("b", 120), ("c", 50)]));
    assert!(c.log_of(1).contains("unusable"), "node 2's log says its checkpoint was unusable:\n{}", c.log_of(1));
}

/// Defect 08, the quiet case: sled hands back an older checkpoint than the
/// snapshot this node made after it (a database that lost its last
/// batches). Trusting it would cut the segment files the snapshot shares
/// with the live state and leave the log unable to replay the gap.
#[test]
fn defect_08_a_checkpoint_older_than_the_local_snapshot_is_not_trusted() {
    let mut c = Cluster::start("defect08b", 3, FLAGS);
    c.client().create_stream("s").expect("create");
    append_n(&c, "a", 100);
    let at = commit(&c);
    c.wait_applied(1, at, Duration::from_secs(30));
    assert_eq!(c.sigterm(1).code(), Some(0));
    let old_db = c.dir.0.join("old-db");
    let st = std::process::Command::new("cp").arg("-a").arg(state_dir(&c, 1).join("db")).arg(&old_db).status();
    assert!(st.is_ok_and(|s| s.success()), "copy node 2's sled database");
    c.restart(1);
    append_n(&c, "b", 400);
    c.admin().admin(1, AdminRequest::Snapshot).expect("snapshot");
    append_n(&c, "c", 100);
    let at = commit(&c);
    c.wait_applied(1, at, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    c.kill9(1);
    let db = state_dir(&c, 1).join("db");
    std::fs::remove_dir_all(&db).expect("remove node 2's database");
    let st = std::process::Command::new("cp").arg("-a").arg(&old_db).arg(&db).status();
    assert!(st.is_ok_and(|s| s.success()), "put the old database back");
    c.restart(1);
    append_n(&c, "d", 50);
    same_everywhere(&c, &expected(&[("a", 100), ("b", 400), ("c", 100), ("d", 50)]));
    wait_log(&c, 1, "unusable");
}

/// A node that never made a snapshot (its log starts at 1) rebuilds a
/// damaged checkpoint by replaying its whole log.
#[test]
fn a_damaged_checkpoint_without_a_snapshot_is_rebuilt_from_the_whole_log() {
    let flags = ["--checkpoint-interval-ms", "50", "--checkpoint-entries", "50"];
    let mut c = node_2_down_after("rebuild-log", &flags, 200);
    let current = c.dir.0.join("n2/service/CURRENT");
    std::fs::write(&current, "state-gone\n").expect("point CURRENT at nothing");
    c.restart(1);
    append_n(&c, "b", 20);
    same_everywhere(&c, &expected(&[("a", 200), ("b", 20)]));
    wait_log(&c, 1, "replaying the whole Raft log");
}

/// When the checkpoint and the snapshot behind the log's start are both
/// damaged, the node cannot rebuild from its own disk: it fetches a peer's
/// snapshot, verifies it, and goes on with its Raft identity, term, vote and
/// log (issue 16, item 2).
#[test]
fn a_node_with_no_intact_local_state_rebuilds_it_from_a_peer() {
    let mut c = node_2_down_after("rebuild-peer", FLAGS, 400);
    garble(&state_dir(&c, 1).join("db"), 512);
    garble(&c.dir.0.join("n2/service/snapshots"), 0);
    c.restart(1);
    append_n(&c, "b", 30);
    same_everywhere(&c, &expected(&[("a", 400), ("b", 30)]));
    let log = c.log_of(1);
    assert!(log.contains("is damaged too"), "{log}");
    assert!(log.contains("rebuilt the service state from node at"), "{log}");
    // It is a voter as before, and the cluster can lose another node.
    let s = c.status(c.wait_leader(Duration::from_secs(10))).expect("status");
    assert!(s.groups[0].voters.contains(&2), "{:?}", s.groups[0]);
    let other = (0..3).find(|&i| i != 1 && Some(i) != Some(c.wait_leader(Duration::from_secs(5)))).expect("a follower");
    c.kill9(other);
    append_n(&c, "c", 10);
}

/// When its Raft state is damaged too, a node with no usable service state
/// refuses to start, says why and names the runbook: it cannot rebuild
/// without knowing what its log held.
#[test]
fn a_node_whose_raft_state_is_damaged_too_refuses_with_the_runbook() {
    let mut c = node_2_down_after("rebuild-none", FLAGS, 400);
    garble(&state_dir(&c, 1).join("db"), 512);
    garble(&c.dir.0.join("n2/service/snapshots"), 0);
    garble(&c.dir.0.join("n2/raft/group-1.state"), 0);
    c.restart(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = c.procs[1].child.as_mut().and_then(|ch| ch.try_wait().expect("wait")) {
            break s;
        }
        assert!(Instant::now() < deadline, "node 2 neither started nor refused:\n{}", c.log_of(1));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = c.log_of(1);
    assert!(log.contains("Raft state file cannot be read"), "{log}");
    assert!(log.contains("wipe its data directory and add it again as a learner"), "{log}");
    // The others go on.
    append_n(&c, "b", 10);
}

/// Runs the CLI's `status` against node `i` (with `extra` flags).
fn cli_status(c: &Cluster, i: usize, extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["--servers", &c.procs[i].addr.to_string(), "--cluster-id", &CLUSTER.to_string()])
        .args(["--timeout-ms", "2000", "status"])
        .args(extra)
        .output()
        .expect("run ringraft status");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Defect 09: a node restarted on a full disk exited ("cannot open the
/// sled database ... No space left on device") instead of waiting for
/// space. It now comes up, says `disk full` in `status` and its log, and
/// serves again once space returns, without a restart.
#[test]
fn defect_09_restart_on_full_disk() {
    let dir = TempDir::new("defect09");
    let disk = match ringraft_tools::nemesis::disks::Disk::tmpfs(&dir.0.join("n2"), 192) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: defect_09_restart_on_full_disk needs a tmpfs for node 2 (root and mount): {e}");
            return;
        }
    };
    let ports = ringraft_tools::demo::ports::free_ports(3).expect("free ports");
    let mut c = Cluster {
        dir,
        procs: (1..=3)
            .zip(ports)
            .map(|(id, port)| Proc { id, addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)), child: None })
            .collect(),
        extra: FLAGS.iter().map(|s| s.to_string()).collect(),
        token: Bytes::new(),
        envs: Vec::new(),
    };
    for i in 0..3 {
        c.spawn(i, &["--bootstrap"]);
    }
    c.wait_leader(Duration::from_secs(30));
    c.client().create_stream("s").expect("create");
    append_n(&c, "a", 200);
    let at = commit(&c);
    c.wait_applied(1, at, Duration::from_secs(30));
    let ballast = disk.fill().expect("fill node 2's disk");
    eprintln!("node 2's disk filled with {ballast} bytes");
    // The others go on; node 2 fails its log appends and checkpoints.
    append_n(&c, "b", 100);
    std::thread::sleep(Duration::from_millis(500));
    c.kill9(1);
    c.restart(1);
    std::thread::sleep(Duration::from_secs(3));
    let exited = c.procs[1].child.as_mut().and_then(|ch| ch.try_wait().expect("wait"));
    assert!(exited.is_none(), "node 2 exited ({exited:?}) when restarted on a full disk:\n{}", c.log_of(1));
    let table = cli_status(&c, 1, &[]);
    assert!(table.contains("disk full"), "status of node 2 on a full disk:\n{table}");
    let json = cli_status(&c, 1, &["--json"]);
    assert!(json.contains("\"disk_full\":true"), "status --json of node 2 on a full disk:\n{json}");
    assert!(c.log_of(1).contains("disk full"), "node 2's log says its disk is full:\n{}", c.log_of(1));
    append_n(&c, "c", 50);
    disk.drain().expect("free node 2's disk");
    same_everywhere(&c, &expected(&[("a", 200), ("b", 100), ("c", 50)]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while cli_status(&c, 1, &["--json"]).contains("\"disk_full\":true") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let json = cli_status(&c, 1, &["--json"]);
    assert!(json.contains("\"disk_full\":false"), "status --json of node 2 once space returned:\n{json}");
    let mount = c.dir.0.join("n2");
    drop(c);
    drop(disk);
    let _ = std::fs::remove_dir(&mount);
    let _ = std::fs::remove_dir(mount.parent().expect("the cluster's directory"));
}

/// A node whose live state is a snapshot it installed from the leader
/// (`state-<n>`, its log starting at n) rebuilds a damaged checkpoint from
/// that snapshot's local copy. (Found in review: the live `state-<n>` was
/// taken for a received snapshot waiting to be installed, and the rebuild
/// exited.)
#[test]
fn a_node_running_on_an_installed_snapshot_rebuilds_a_damaged_checkpoint() {
    let mut c = Cluster::start("rebuild-installed", 3, FLAGS);
    c.client().create_stream("s").expect("create");
    c.kill9(1);
    // More than the 1,024 entries a leader keeps behind its snapshot: node 2
    // must be sent one.
    append_n(&c, "a", 1_500);
    c.restart(1);
    let at = commit(&c);
    c.wait_applied(1, at, Duration::from_secs(60));
    wait_log(&c, 1, "installed snapshot");
    std::thread::sleep(Duration::from_millis(300));
    c.kill9(1);
    let live = state_dir(&c, 1);
    let name = live.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    assert!(name.starts_with("state-") && name != "state-0", "node 2 runs on an installed snapshot: {name}");
    garble(&live.join("db"), 512);
    c.restart(1);
    append_n(&c, "b", 10);
    same_everywhere(&c, &expected(&[("a", 1_500), ("b", 10)]));
    wait_log(&c, 1, "unusable");
}
