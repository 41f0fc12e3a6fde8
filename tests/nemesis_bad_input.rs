//! Bad input at process level, against real `ringraft-server` processes
//! while a client keeps appending (every acknowledged record must be on
//! every replica at the end):
//!
//! * garbage bytes, a wrong magic, a bad CRC, an unknown message type, an
//!   oversized length, a frame before the handshake, a Raft message from a
//!   client connection, a peer that presents the wrong peer token, a
//!   client with the wrong token: each connection is refused or closed,
//!   nothing else changes;
//! * a slow-loris handshake is cut off;
//! * a flood of connections (more than the server accepts) is refused
//!   without hurting the client, and the server takes new connections
//!   after it;
//! * a corrupted segment file: the node refuses to start and names the
//!   file and offset; the other two keep serving; the operator's repair
//!   (remove the node, empty its directory, `--join`, add it as a learner,
//!   promote it) brings it back with every record;
//! * a full disk on one node (a tmpfs; skipped with the reason when this
//!   machine cannot mount one): the node says so in its log, the cluster
//!   keeps serving, and the node catches up once space is freed.

mod service_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringraft::core::{GroupId, LogIndex, Message, MessageBody, NodeId, Term};
use ringraft::rpc::PeerMsg;
use ringraft::rpc::{encode_packet, Body, Hello, Packet, Role, DEFAULT_MAX_BODY, VERSION};
use ringraft_client::{AdminRequest, Client, ClientError};
use ringraft_tools::nemesis::disks::Disk;
use service_common::*;

/// A client appending unique records to `s` until stopped (at most 60 s or
/// 20,000 records); returns the records acknowledged.
fn background_writer(c: &Cluster, stop: &Arc<AtomicBool>) -> JoinHandle<Vec<Bytes>> {
    let mut cfg = c.config();
    cfg.request_timeout = Duration::from_secs(10);
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let mut cl = Client::connect(cfg).expect("writer connects");
        let (mut acked, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(60));
        let mut n = 0u32;
        while !stop.load(Ordering::Acquire) && Instant::now() < deadline && n < 20_000 {
            let rec = Bytes::from(format!("w{n}"));
            n += 1;
            match cl.append("s", vec![rec.clone()]) {
                Ok(_) => acked.push(rec),
                Err(e) => assert!(e.is_retryable(), "the writer got a refusal: {e}"),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        acked
    })
}

/// Every record acknowledged is on every replica exactly once, in order.
fn assert_on_every_replica(c: &Cluster, acked: &[Bytes]) {
    let leader = c.wait_leader(Duration::from_secs(30));
    let commit = c.status(leader).and_then(|s| s.groups.first().map(|g| g.commit)).expect("leader status");
    for i in 0..c.procs.len() {
        c.wait_applied(i, commit, Duration::from_secs(30));
        let got = read_all(&mut c.client_of(i), "s");
        let wanted: std::collections::HashSet<&Bytes> = acked.iter().collect();
        let kept: Vec<&Bytes> = got.iter().filter(|r| wanted.contains(r)).collect();
        assert_eq!(kept.len(), acked.len(), "node {}: acknowledged records missing or doubled", c.procs[i].id);
        assert!(kept.iter().zip(acked).all(|(a, b)| *a == b), "node {}: acknowledged records out of order", i + 1);
    }
}

/// Writes `bytes` on a fresh connection to `addr`; true when the server
/// closes it (EOF or reset) within `within`, whatever it answered first.
fn closed_after(addr: &str, bytes: &[u8], within: Duration) -> bool {
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn frame(p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_packet(&mut out, p).expect("encode");
    out.to_vec()
}

fn hello(role: Role, node_id: u64, token: &'static [u8]) -> Vec<u8> {
    let h = Hello {
        cluster_id: CLUSTER,
        node_id,
        role,
        min_version: VERSION,
        max_version: VERSION,
        token: Bytes::from_static(token),
    };
    frame(&Packet { group: GroupId(0), request_id: 1, body: Body::Hello(h) })
}

/// Re-computes a frame's CRC after a test changed its header.
fn reseal(f: &mut [u8]) {
    let mut covered = f[..28].to_vec();
    covered.extend_from_slice(&f[32..]);
    let crc = crc32c::crc32c(&covered);
    f[28..32].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn malformed_frames_wrong_tokens_slow_loris_and_floods_leave_the_cluster_serving() {
    let dir = TempDir::new("bad-input-tokens");
    let (client_tok, peer_tok) = (dir.0.join("client.token"), dir.0.join("peer.token"));
    std::fs::write(&client_tok, "c-secret\n").expect("token");
    std::fs::write(&peer_tok, "p-secret\n").expect("token");
    let (ct, pt) = (client_tok.display().to_string(), peer_tok.display().to_string());
    let c =
        Cluster::start_with_token("bad-input", 3, &["--client-token-file", &ct, "--peer-token-file", &pt], "c-secret");
    c.client().create_stream("s").expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = background_writer(&c, &stop);
    let target = c.procs[c.wait_leader(Duration::from_secs(10))].addr.to_string();
    let within = Duration::from_secs(10);

    let good = hello(Role::Client, 0, b"c-secret");
    let mut garbage = vec![0u8; 256];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    assert!(closed_after(&target, &garbage, within), "garbage bytes");
    let mut bad_magic = good.clone();
    bad_magic[..4].copy_from_slice(b"HTTP");
    assert!(closed_after(&target, &bad_magic, within), "a wrong magic");
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    assert!(closed_after(&target, &bad_crc, within), "a bad CRC");
    let mut unknown_type = good.clone();
    unknown_type[5] = 0xee;
    reseal(&mut unknown_type);
    assert!(closed_after(&target, &unknown_type, within), "an unknown message type");
    let mut oversized = good.clone();
    oversized.truncate(32);
    oversized[24..28].copy_from_slice(&(DEFAULT_MAX_BODY + 1).to_le_bytes());
    assert!(closed_after(&target, &oversized, within), "a body length over the limit");
    let status = frame(&Packet {
        group: GroupId(0),
        request_id: 1,
        body: Body::ClientRequest(ringraft::rpc::ClientRequest::Status { health: false }),
    });
    assert!(closed_after(&target, &status, within), "a request before the handshake");
    assert!(closed_after(&target, &hello(Role::Client, 0, b"guess"), within), "a wrong client token");
    assert!(closed_after(&target, &hello(Role::Peer, 2, b"guess"), within), "a peer with a wrong peer token");
    let mut raft_from_client = good.clone();
    raft_from_client.extend(frame(&Packet {
        group: GroupId(1),
        request_id: 0,
        body: Body::Peer(PeerMsg::Raft(Message {
            group: GroupId(1),
            from: NodeId(2),
            to: NodeId(1),
            term: Term(9_999),
            body: MessageBody::Vote { last_log_term: Term(9_998), last_log_index: LogIndex(1 << 40), transfer: true },
        })),
    }));
    let c2 = Client::connect(c.config()).map(|_| ());
    assert!(c2.is_ok(), "a good client still connects");
    let _ = closed_after(&target, &raft_from_client, Duration::from_secs(2));
    let term = c.status(0).and_then(|s| s.groups.first().map(|g| g.term)).expect("status");
    assert!(term < 9_999, "a vote request sent on a client connection was obeyed (term {term})");

    // Slow-loris: a handshake one byte every 300 ms is cut off.
    let mut loris = TcpStream::connect(&target).expect("connect");
    loris.set_write_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let t0 = Instant::now();
    let mut cut = false;
    for b in good.iter().cycle().take(200) {
        if loris.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 1];
        loris.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        if matches!(loris.read(&mut probe), Ok(0)) {
            cut = true;
            break;
        }
    }
    assert!(cut, "a slow-loris handshake was never cut off ({:?})", t0.elapsed());
    println!("slow-loris cut off after {:?}", t0.elapsed());

    // A flood: more connections than the server keeps (4,096), all idle,
    // as many as this process may open while keeping some for the client.
    let limit = open_files_limit().saturating_sub(64).min(5_000);
    let mut flood = Vec::new();
    for _ in 0..limit {
        match TcpStream::connect(&target) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
    }
    let opened = flood.len();
    let mut served = 0;
    for _ in 0..3 {
        let mut cfg = c.config();
        cfg.request_timeout = Duration::from_secs(10);
        if Client::connect(cfg).and_then(|mut cl| cl.append("s", vec![Bytes::from_static(b"during-flood")])).is_ok() {
            served += 1;
        }
    }
    drop(flood);
    println!("flood: {opened} connections opened; {served} of 3 appends during it succeeded");
    assert!(served > 0, "no append succeeded during a flood of {opened} connections");
    // After the flood, the node takes connections again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.status(c.procs.iter().position(|p| p.addr.to_string() == target).expect("target")).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the flooded node takes no connections 20 s after the flood");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Release);
    let acked = writer.join().expect("writer");
    assert!(acked.len() > 100, "the writer made progress throughout: {}", acked.len());
    assert_on_every_replica(&c, &acked);
}

/// This process's soft limit on open files (`/proc/self/limits`).
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).unwrap_or(1024)
}

/// The last non-zero byte of a file plus one (the zero-filled, preallocated
/// rest of a segment is not data).
fn used_len(path: &Path) -> usize {
    let bytes = std::fs::read(path).expect("segment");
    bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

fn wait_exit(c: &mut Cluster, i: usize, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(s) = c.procs[i].child.as_mut().and_then(|ch| ch.try_wait().ok().flatten()) {
            c.procs[i].child = None;
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_corrupted_segment_is_reported_and_the_node_rejoins_after_repair() {
    let mut c = Cluster::start("bad-input-corrupt", 3, &[]);
    let mut cl = c.client();
    cl.create_stream("s").expect("create");
    let mut acked = Vec::new();
    for n in 0..300 {
        let rec = Bytes::from(format!("r{n}"));
        cl.append("s", vec![rec.clone()]).expect("append");
        acked.push(rec);
    }
    let victim = (c.wait_leader(Duration::from_secs(10)) + 1) % 3;
    c.kill9(victim);
    let log_dir = c.dir.0.join(format!("n{}/raft/log", c.procs[victim].id));
    let seg = std::fs::read_dir(&log_dir)
        .expect("log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    let used = used_len(&seg);
    let mut bytes = std::fs::read(&seg).expect("segment");
    // A third of the way in: a record with later writes behind it.
    bytes[used / 3] ^= 0x5a;
    std::fs::write(&seg, &bytes).expect("corrupt the segment");

    c.restart(victim);
    let status = wait_exit(&mut c, victim, Duration::from_secs(20)).expect("the node refuses to start");
    assert!(!status.success(), "{status}");
    let log = c.log_of(victim);
    let seg_name = seg.file_name().expect("name").to_string_lossy().to_string();
    assert!(log.contains(&seg_name), "the error names the segment file: {log}");
    assert!(log.to_lowercase().contains("corrupt"), "the error says corrupt: {log}");

    // The other two keep serving.
    for n in 300..400 {
        let rec = Bytes::from(format!("r{n}"));
        cl.append("s", vec![rec.clone()]).expect("append with one node down");
        acked.push(rec);
    }

    // The repair: remove it, empty its directory, join, add, promote.
    let id = c.procs[victim].id;
    let mut admin = c.admin();
    admin.admin(1, AdminRequest::RemoveVoter { node: id }).expect("remove the broken node");
    std::fs::remove_dir_all(c.dir.0.join(format!("n{id}"))).expect("empty its directory");
    c.spawn(victim, &["--join"]);
    let addr = c.procs[victim].addr.to_string();
    admin.admin(1, AdminRequest::AddLearner { node: id, addr }).expect("add it as a learner");
    let leader = c.wait_leader(Duration::from_secs(10));
    let commit = c.status(leader).and_then(|s| s.groups.first().map(|g| g.commit)).expect("status");
    c.wait_applied(victim, commit, Duration::from_secs(60));
    admin.admin(1, AdminRequest::AddVoter { node: id, addr: String::new() }).expect("promote it");
    assert_on_every_replica(&c, &acked);
}

#[test]
fn a_full_disk_on_one_node_is_reported_and_the_node_catches_up_after_repair() {
    // Small thresholds: checkpoints and snapshots want the disk often.
    let flags = ["--checkpoint-entries", "100", "--snapshot-entries", "500"];
    let mut c = Cluster::start("bad-input-full", 3, &flags);
    let victim = (c.wait_leader(Duration::from_secs(10)) + 1) % 3;
    let id = c.procs[victim].id;
    // The node moves onto a tmpfs: stop it, move its data, mount, move back.
    c.kill9(victim);
    let data = c.dir.0.join(format!("n{id}"));
    let aside = c.dir.0.join(format!("n{id}.aside"));
    std::fs::rename(&data, &aside).expect("move aside");
    // Unmounted when dropped (lazily if a server still holds it).
    let disk = match Disk::tmpfs(&data, 256) {
        Ok(d) => d,
        Err(why) => {
            println!("skipped: cannot mount a tmpfs for the full-disk case ({why}); needs root");
            return;
        }
    };
    let copied = Command::new("cp").arg("-a").arg(format!("{}/.", aside.display())).arg(&data).status();
    assert!(copied.is_ok_and(|s| s.success()), "copy the data onto the tmpfs");
    c.restart(victim);
    let mut cl = c.client();
    cl.create_stream("s").expect("create");
    let filled = disk.fill().expect("fill the disk");
    println!("ballast of {filled} bytes fills node {id}'s disk");

    let mut acked = Vec::new();
    for n in 0..3_000 {
        let rec = Bytes::from(format!("f{n}"));
        match cl.append("s", vec![rec.clone()]) {
            Ok(_) => acked.push(rec),
            Err(ClientError::Timeout) => panic!("the cluster stopped serving with one full disk"),
            Err(e) => panic!("append: {e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.log_of(victim).contains("No space left on device") {
        assert!(Instant::now() < deadline, "the full node never said its disk is full: {}", c.log_of(victim));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.procs[victim].child.as_mut().is_some_and(|ch| ch.try_wait().ok().flatten().is_none()), "still running");

    disk.drain().expect("free the space");
    assert_on_every_replica(&c, &acked);
    // Servers first, then the mount, then the directory under it.
    for i in 0..c.procs.len() {
        c.kill9(i);
    }
    drop(disk);
    drop(c);
}
