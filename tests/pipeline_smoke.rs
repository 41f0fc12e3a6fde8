//! A 3-node in-process cluster elects a leader and replicates.

mod pipeline_common;

use std::time::Duration;

use pipeline_common::*;

#[test]
fn three_nodes_replicate_a_thousand_proposals() {
    let c = Cluster::start("smoke");
    let l = c.wait_leader(Duration::from_secs(20));
    let mut h = c.handle(l);
    let mut last = 0;
    for id in 0..1000u64 {
        let out = h.propose_wait(GROUP, payload(id)).expect("propose");
        last = u64::from_le_bytes(out[..8].try_into().unwrap());
    }
    for i in 0..3 {
        c.wait_applied(i, last, Duration::from_secs(20));
    }
    let a: Vec<Vec<(u64, u64)>> = c.applied.iter().map(|a| a.lock().clone()).collect();
    assert_eq!(a[0], a[1]);
    assert_eq!(a[0], a[2]);
    c.shutdown();
}
