//! The cost of applying records in the log service's state machine, beside
//! the two ways of making them durable a second time that the design weighed
//! (ARCHITECTURE.md, "Where records live"):
//!
//! 1. apply: decode the entry, append zero-copy slices to the stream in
//!    memory, deduplicate by session (what the FSM thread does per entry);
//! 2. checkpoint: write the same records to a stream segment file with one
//!    `fdatasync` per 65,536 entries (what the checkpoint thread does, off
//!    the apply path);
//! 3. the rejected alternative: one sled key per record.
//!
//! `cargo bench --bench service` (plain harness; figures in ns per record).

use std::time::Instant;

use bytes::Bytes;
use ringraft::core::LogIndex;
use ringraft_service::command::{Command, Stamped};
use ringraft_service::machine::ServiceState;
use ringraft_service::segments::DiskStream;

const RECORD: usize = 128;

fn entries(n: usize, per: usize, session: bool) -> Vec<Bytes> {
    let mut v = vec![Stamped {
        time_ms: 1,
        command: Command::Create { stream: "s".into(), retention_bytes: 0, retention_age_ms: 0, session: 0, seq: 0 },
    }
    .encode()
    .expect("encode")];
    if session {
        v.push(Stamped { time_ms: 1, command: Command::OpenSession { ttl_ms: 60_000 } }.encode().expect("encode"));
    }
    for i in 0..n {
        let records = (0..per).map(|_| Bytes::from(vec![i as u8; RECORD])).collect();
        let (session, seq) = if session { (2, i as u64 + 1) } else { (0, 0) };
        let command = Command::Append { stream: "s".into(), session, seq, records };
        v.push(Stamped { time_ms: 2, command }.encode().expect("encode"));
    }
    v
}

fn apply_ns_per_record(per: usize, session: bool) -> f64 {
    let n = 200_000 / per;
    let es = entries(n, per, session);
    let mut st = ServiceState::in_memory();
    let t = Instant::now();
    for (i, e) in es.iter().enumerate() {
        st.apply(LogIndex(i as u64 + 1), e);
    }
    t.elapsed().as_nanos() as f64 / (n * per) as f64
}

fn checkpoint_ns_per_record() -> f64 {
    let dir = std::env::temp_dir().join(format!("ringraft-bench-svc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut d = DiskStream::new(ringraft::fs::real(), dir.clone());
    let recs: Vec<Bytes> = (0..65_536).map(|i| Bytes::from(vec![i as u8; RECORD])).collect();
    let t = Instant::now();
    let rounds = 4;
    for r in 0..rounds {
        let files = d.append(r * 65_536, &recs).expect("append");
        for f in files {
            f.sync_data().expect("fdatasync");
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / (rounds as usize * recs.len()) as f64;
    let _ = std::fs::remove_dir_all(&dir);
    ns
}

fn sled_ns_per_record() -> f64 {
    let dir = std::env::temp_dir().join(format!("ringraft-bench-sled-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::Config::new().path(&dir).flush_every_ms(None).open().expect("sled");
    let n = 50_000u64;
    let value = vec![7u8; RECORD];
    let t = Instant::now();
    for i in 0..n {
        db.insert(i.to_be_bytes(), value.as_slice()).expect("insert");
    }
    db.flush().expect("flush");
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    ns
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.as_deref().is_some_and(|f| !"service".contains(f) && !f.contains("service")) {
        return;
    }
    let a1 = apply_ns_per_record(1, true);
    let a16 = apply_ns_per_record(16, false);
    let ck = checkpoint_ns_per_record();
    let sl = sled_ns_per_record();
    println!("service state machine, {RECORD}-byte records (ns per record, one run)");
    println!("  apply, 1 record per append, with session dedup : {a1:>8.0}");
    println!("  apply, 16 records per append, no session       : {a16:>8.0}");
    println!("  checkpoint write + fdatasync per 65,536        : {ck:>8.0}");
    println!("  alternative: one sled key per record           : {sl:>8.0}  ({:.0}x the apply cost)", sl / a1);
}
