//! The service's metadata as it is on disk: the state's metadata value
//! (streams, their chunks and retention, log time, members' addresses) and
//! the table of each stream's segment files. Below the checkpointer, the
//! state machine and the snapshot code, which all read or write it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hashbrown::HashMap;

use super::segments::{DiskStream, SegmentMeta};
use super::state::ServiceState;
use super::stream::{Chunk, Stream};
use ringraft::core::LogIndex;

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32_le(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn need(b: &Bytes, n: usize) -> Result<(), String> {
    if b.remaining() < n {
        return Err(format!("truncated: need {n} more bytes, have {}", b.remaining()));
    }
    Ok(())
}

fn get_str(b: &mut Bytes) -> Result<String, String> {
    need(b, 4)?;
    let n = b.get_u32_le() as usize;
    need(b, n)?;
    String::from_utf8(b.split_to(n).to_vec()).map_err(|_| "stream name is not UTF-8".to_string())
}

/// The state's metadata (not the records, not the sessions).
pub(crate) fn encode_meta(st: &ServiceState) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u64_le(st.applied.0);
    out.put_u64_le(st.log_time_ms);
    out.put_u64_le(st.next_sweep_ms);
    let mut names: Vec<&String> = st.streams.keys().collect();
    names.sort();
    out.put_u32_le(names.len() as u32);
    for name in names {
        let s = &st.streams[name];
        put_str(&mut out, name);
        for v in [s.id, s.first, s.ckpt_next, s.retention_bytes, s.retention_age_ms] {
            out.put_u64_le(v);
        }
        out.put_u32_le(s.chunks.len() as u32);
        for c in &s.chunks {
            out.put_u64_le(c.first);
            out.put_u64_le(c.bytes);
            out.put_u64_le(c.last_ms);
        }
    }
    out.put_u32_le(st.peers.len() as u32);
    for (node, addr) in &st.peers {
        out.put_u64_le(*node);
        put_str(&mut out, addr);
    }
    out.freeze()
}

/// Restores what [`encode_meta`] wrote. A stream's `next` is the offset
/// the checkpoint wrote up to: records after it are replayed from the log.
pub(crate) fn decode_meta(st: &mut ServiceState, mut b: Bytes) -> Result<(), String> {
    need(&b, 28)?;
    st.applied = LogIndex(b.get_u64_le());
    st.log_time_ms = b.get_u64_le();
    st.log_time_seen.note(st.log_time_ms);
    st.next_sweep_ms = b.get_u64_le();
    let n = b.get_u32_le();
    for _ in 0..n {
        let name = get_str(&mut b)?;
        need(&b, 44)?;
        let (id, first, next) = (b.get_u64_le(), b.get_u64_le(), b.get_u64_le());
        let mut s = Stream::new(id, b.get_u64_le(), b.get_u64_le());
        let k = b.get_u32_le();
        for _ in 0..k {
            need(&b, 24)?;
            s.chunks.push_back(Chunk { first: b.get_u64_le(), bytes: b.get_u64_le(), last_ms: b.get_u64_le() });
        }
        if first > next {
            return Err(format!("stream {name:?}: first offset {first} > next {next}"));
        }
        s.first = first;
        s.next = next;
        s.mem_first = next;
        s.ckpt_next = next;
        st.streams.insert(name, s);
    }
    need(&b, 4)?;
    for _ in 0..b.get_u32_le() {
        need(&b, 8)?;
        let node = b.get_u64_le();
        st.peers.insert(node, get_str(&mut b)?);
    }
    if b.has_remaining() {
        return Err("trailing bytes".into());
    }
    Ok(())
}

pub(crate) fn encode_disk(disk: &HashMap<u64, DiskStream>) -> Bytes {
    let mut out = BytesMut::new();
    let mut ids: Vec<&u64> = disk.keys().collect();
    ids.sort();
    out.put_u32_le(ids.len() as u32);
    for id in ids {
        let metas = disk[id].describe();
        out.put_u64_le(*id);
        out.put_u32_le(metas.len() as u32);
        for m in metas {
            out.put_u64_le(m.base);
            out.put_u64_le(m.len);
            out.put_u64_le(m.end);
            out.put_u32_le(m.crc);
            out.put_u32_le(m.index.len() as u32);
            for (o, p) in m.index {
                out.put_u64_le(o);
                out.put_u64_le(p);
            }
        }
    }
    out.freeze()
}

pub(crate) fn decode_disk(mut b: Bytes) -> Result<Vec<(u64, Vec<SegmentMeta>)>, String> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    need(&b, 4)?;
    let n = b.get_u32_le();
    let mut out = Vec::new();
    for _ in 0..n {
        need(&b, 12)?;
        let id = b.get_u64_le();
        let k = b.get_u32_le();
        let mut metas = Vec::new();
        for _ in 0..k {
            need(&b, 32)?;
            let (base, len, end, crc) = (b.get_u64_le(), b.get_u64_le(), b.get_u64_le(), b.get_u32_le());
            let m = b.get_u32_le() as usize;
            need(&b, m.saturating_mul(16))?;
            let index = (0..m).map(|_| (b.get_u64_le(), b.get_u64_le())).collect();
            metas.push(SegmentMeta { base, len, end, index, crc });
        }
        out.push((id, metas));
    }
    if b.has_remaining() {
        return Err("trailing bytes".into());
    }
    Ok(out)
}
