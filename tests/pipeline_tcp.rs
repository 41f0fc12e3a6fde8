//! The pipeline over the mio transport: three nodes on 127.0.0.1, each with
//! its own transport and three groups sharing the stages, replicate
//! proposals; a follower restarted with a new transport catches up.

mod pipeline_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pipeline_common::*;
use ringraft::core::{GroupId, NodeId, Role};
use ringraft::node::{GroupConfig, Node, NodeConfig, StateMachine};
use ringraft::pipeline::net::RaftHandler;
use ringraft::rpc::transport::{Transport, TransportConfig};
use ringraft::rpc::Admission;

fn free_addr() -> SocketAddr {
    ringraft_tools::demo::ports::free_addr().expect("a free port")
}

struct TcpNode {
    node: Option<Node>,
    transport: Transport,
    handler: RaftHandler,
}

fn start(id: NodeId, addrs: &[SocketAddr], dir: &std::path::Path, applied: Applied) -> TcpNode {
    let admission = Admission {
        cluster_id: 7,
        node_id: id.0,
        peer_token: Bytes::from_static(b"peer-secret"),
        client_token: Bytes::from_static(b"client"),
        admin_token: Bytes::from_static(b"admin"),
    };
    let mut cfg = TransportConfig::new(addrs[id.0 as usize - 1], admission);
    cfg.peers = ids().into_iter().filter(|p| *p != id).map(|p| (p, addrs[p.0 as usize - 1])).collect();
    let handler = RaftHandler::new();
    let transport = Transport::start(cfg, handler.clone()).expect("transport starts");
    // Group 1 is checked; groups 2 and 3 share the stages (and the
    // heartbeat frames) with it.
    let mut groups: Vec<(GroupConfig, Box<dyn StateMachine>)> = vec![(group_config(id), Box::new(Recorder(applied)))];
    for g in [2, 3] {
        let mut gc = group_config(id);
        gc.raft.group = GroupId(g);
        groups.push((gc, Box::new(Recorder(Applied::default()))));
    }
    let node = Node::start(NodeConfig::new(id, dir), groups, Arc::new(transport.handle())).expect("node starts");
    handler.attach(node.inbound());
    TcpNode { node: Some(node), transport, handler }
}

fn leader(nodes: &[TcpNode]) -> usize {
    leader_of(nodes, GROUP)
}

fn leader_of(nodes: &[TcpNode], group: GroupId) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if let Some(node) = &n.node {
                if node.handle().status(group).is_ok_and(|s| s.role == Role::Leader) {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader over TCP within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_applied(a: &Applied, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.lock().last().map(|e| e.0).unwrap_or(0) < index {
        assert!(Instant::now() < deadline, "applied only {:?} of {index}", a.lock().last());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn three_nodes_replicate_over_tcp_and_a_restarted_follower_catches_up() {
    let tmp = TempDir::new("tcp");
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let applied: Vec<Applied> = (0..3).map(|_| Applied::default()).collect();
    let dirs: Vec<_> = (1..=3).map(|i| tmp.0.join(format!("n{i}"))).collect();
    let mut nodes: Vec<TcpNode> =
        ids().into_iter().enumerate().map(|(i, id)| start(id, &addrs, &dirs[i], applied[i].clone())).collect();
    let l = leader(&nodes);
    let mut h = nodes[l].node.as_ref().unwrap().handle();
    let mut last = 0;
    for id in 0..500u64 {
        let out = h.propose_wait(GROUP, payload(id)).expect("propose over tcp");
        last = u64::from_le_bytes(out[..8].try_into().unwrap());
    }
    for a in &applied {
        wait_applied(a, last);
    }
    for g in [GroupId(2), GroupId(3)] {
        let gl = leader_of(&nodes, g);
        nodes[gl].node.as_ref().unwrap().handle().propose_wait(g, payload(1)).expect("propose to another group");
    }

    // Restart a follower (node and transport) and write more meanwhile.
    let f = (l + 1) % 3;
    let mut old = nodes.remove(f);
    old.handler.detach();
    if let Some(n) = old.node.take() {
        n.kill();
    }
    old.transport.shutdown();
    for id in 500..1000u64 {
        let out = h.propose_wait(GROUP, payload(id)).expect("propose with a follower down");
        last = u64::from_le_bytes(out[..8].try_into().unwrap());
    }
    let fresh = Applied::default();
    nodes.insert(f, start(ids()[f], &addrs, &dirs[f], fresh.clone()));
    wait_applied(&fresh, last);
    let want = applied[l].lock().clone();
    assert_eq!(*fresh.lock(), want, "the restarted follower applied a different sequence");
    // Follower reads (ReadIndex through the leader) work over TCP, also on
    // the restarted follower and with nothing being written.
    for (i, n) in nodes.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let idx = n.node.as_ref().unwrap().handle().read_index_wait_until(GROUP, deadline);
        assert!(idx.as_ref().is_ok_and(|x| x.0 >= last), "read on node {} (leader {}): {idx:?}", i + 1, l + 1);
    }
    for n in nodes.iter_mut() {
        if let Some(node) = n.node.take() {
            node.shutdown();
        }
        n.transport.shutdown();
    }
}
