//! TCP ports for the servers the harnesses start (the demo, the nemesis,
//! the cluster benchmark, the process-level tests).
//!
//! A server is told its port before it starts (every node's `--peers` names
//! the others), so the harness picks ports that are free now and hopes they
//! stay free until the server binds. A port from the kernel's ephemeral
//! range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by default)
//! does not: any outgoing connection may take it as its local port
//! meanwhile (nemesis seed 7003 lost a node to "Address already in use").
//! So ports come from below that range (or above it when there is no room
//! below), from a random starting point, each checked by binding it.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// The lowest port picked (below: well-known and registered services).
const PORT_MIN: u16 = 10_000;

/// The kernel's ephemeral port range, or Linux's default when unreadable.
pub fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let v: Vec<u16> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    match v[..] {
        [lo, hi] if lo <= hi => (lo, hi),
        _ => (32_768, 60_999),
    }
}

/// `n` distinct ports on 127.0.0.1, outside the ephemeral range, each
/// free when checked (bound all at once, then released together).
///
/// # Errors
/// Fewer than `n` free ports outside the ephemeral range.
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let (lo, hi) = ephemeral_range();
    let mut candidates: Vec<u16> = (PORT_MIN..lo.max(PORT_MIN)).collect();
    if candidates.len() < n.saturating_mul(16) {
        candidates.extend(hi.saturating_add(1).max(PORT_MIN)..=u16::MAX);
    }
    if candidates.is_empty() {
        return Err(io::Error::other(format!("no ports outside the ephemeral range {lo}-{hi}")));
    }
    // A random starting point, so harnesses running side by side rarely
    // try the same ports.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let start = (h.finish() % candidates.len() as u64) as usize;
    let mut held = Vec::with_capacity(n);
    for i in 0..candidates.len() {
        if held.len() == n {
            break;
        }
        let port = candidates[(start + i) % candidates.len()];
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push((port, l));
        }
    }
    if held.len() < n {
        return Err(io::Error::other(format!(
            "only {} of {n} ports free outside the ephemeral range {lo}-{hi}",
            held.len()
        )));
    }
    Ok(held.into_iter().map(|(port, _listener)| port).collect())
}

/// One free address on 127.0.0.1 ([`free_ports`]).
///
/// # Errors
/// No free port outside the ephemeral range.
pub fn free_addr() -> io::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_ports(1)?[0])))
}
