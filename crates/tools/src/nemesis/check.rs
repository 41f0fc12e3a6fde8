//! The history checker. A stream is one list whose order every
//! acknowledged append reveals (its offset), so the checks are near-linear
//! (sorting, then one pass each) rather than a search over interleavings:
//!
//! * every replica holds the same stream after heal;
//! * every acknowledged append is in it exactly once, at the offset it was
//!   acknowledged with, with its bytes; a refused one is absent; one with an
//!   unknown outcome is there at most once; nothing is there that was never
//!   appended;
//! * real-time order: if append A was acknowledged before append B was
//!   invoked, A's offset is lower (B may be an unknown append that landed);
//! * reads: a read from `K` that saw the end at `N` returned exactly the
//!   final stream's records `K..N`, and `N` is past every append
//!   acknowledged before the read was invoked (no stale read);
//! * the runner's own `anomaly` lines (a crash, lost durable entries, no
//!   convergence) count too.

use std::collections::{BTreeMap, HashMap};

use super::history::{End, History, Kind, Op, Returned};

/// One violation, with the history lines that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// `lost-write`, `duplicate`, `reordered`, `stale-read`, ...
    pub kind: &'static str,
    /// What was found, in words.
    pub detail: String,
    /// The lines (1-based) of the events involved: the minimal window.
    pub lines: Vec<usize>,
}

/// What the checker found, with the counts of the summary line.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Appends and reads invoked.
    pub ops: u64,
    /// Appends acknowledged.
    pub acked: u64,
    /// Operations without an answer (unknown, or open at the end).
    pub unknown: u64,
    /// Operations refused.
    pub failed: u64,
    /// Reads answered.
    pub reads: u64,
    /// Faults injected per kind.
    pub faults: BTreeMap<String, u64>,
    /// Violations found.
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    /// Adds another run's counts and anomalies to these (a soak's total).
    pub fn merge(&mut self, other: Report) {
        self.ops += other.ops;
        self.acked += other.acked;
        self.unknown += other.unknown;
        self.failed += other.failed;
        self.reads += other.reads;
        for (k, n) in other.faults {
            *self.faults.entry(k).or_default() += n;
        }
        self.anomalies.extend(other.anomalies);
    }

    /// The one summary line of `key=value` pairs.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "ops={} acked={} unknown={} failed={} reads={}",
            self.ops, self.acked, self.unknown, self.failed, self.reads
        );
        for (k, n) in &self.faults {
            s.push_str(&format!(" faults_{k}={n}"));
        }
        s.push_str(&format!(" anomalies={}", self.anomalies.len()));
        s
    }
}

fn ok_at(op: &Op) -> Option<(u64, usize)> {
    match op.end {
        End::Ok { at, line, .. } => Some((at, line)),
        _ => None,
    }
}

/// Checks every stream of `h` (module docs).
pub fn check(h: &History) -> Report {
    let mut r = Report { faults: h.faults.clone(), ..Report::default() };
    for op in &h.ops {
        r.ops += 1;
        match (&op.end, &op.kind) {
            (End::Ok { .. }, Kind::Append { .. }) => r.acked += 1,
            (End::Ok { .. }, Kind::Read { .. }) => r.reads += 1,
            (End::Fail, _) => r.failed += 1,
            (End::Unknown | End::Open, _) => r.unknown += 1,
        }
    }
    let mut streams: Vec<&str> = h.ops.iter().map(|o| o.stream.as_str()).collect();
    streams.extend(h.finals.keys().map(|(_, s)| s.as_str()));
    streams.sort_unstable();
    streams.dedup();
    for s in streams {
        check_stream(h, s, &mut r.anomalies);
    }
    for (line, kind, detail) in &h.runner {
        r.anomalies.push(Anomaly { kind, detail: detail.clone(), lines: vec![*line] });
    }
    r
}

fn check_stream(h: &History, stream: &str, out: &mut Vec<Anomaly>) {
    let ops: Vec<&Op> = h.ops.iter().filter(|o| o.stream == stream).collect();
    let finals: Vec<(u64, usize, &Vec<String>)> =
        h.finals.iter().filter(|((_, s), _)| s == stream).map(|((n, _), (l, v))| (*n, *l, v)).collect();
    let Some(&(first_node, first_line, log)) = finals.first() else {
        if ops.iter().any(|o| matches!(o.end, End::Ok { .. })) {
            out.push(Anomaly {
                kind: "no-final",
                detail: format!("stream {stream}: no replica's final contents recorded"),
                lines: vec![],
            });
        }
        return;
    };
    for &(node, line, other) in &finals[1..] {
        if other != log {
            let at = log.iter().zip(other.iter()).position(|(a, b)| a != b).unwrap_or(log.len().min(other.len()));
            out.push(Anomaly {
                kind: "replicas-differ",
                detail: format!(
                    "stream {stream}: node {node} differs from node {first_node} at offset {at} ({} vs {} records)",
                    other.len(),
                    log.len()
                ),
                lines: vec![first_line, line],
            });
        }
    }
    // Where each record sits; a record twice is a duplicate.
    let mut offset_of: HashMap<&str, u64> = HashMap::new();
    let appends: HashMap<&str, &Op> = ops
        .iter()
        .filter_map(|o| match &o.kind {
            Kind::Append { value } => Some((value.as_str(), *o)),
            Kind::Read { .. } => None,
        })
        .collect();
    for (i, v) in log.iter().enumerate() {
        if let Some(prev) = offset_of.insert(v.as_str(), i as u64) {
            let lines = appends.get(v.as_str()).map(|o| vec![o.line, first_line]).unwrap_or_else(|| vec![first_line]);
            out.push(Anomaly {
                kind: "duplicate",
                detail: format!("stream {stream}: record {v} at offsets {prev} and {i}"),
                lines,
            });
        }
        if !appends.contains_key(v.as_str()) {
            out.push(Anomaly {
                kind: "never-appended",
                detail: format!("stream {stream}: record {v} at offset {i} was never appended"),
                lines: vec![first_line],
            });
        }
    }
    // Every append against the final stream.
    for o in &ops {
        let Kind::Append { value } = &o.kind else { continue };
        let found = offset_of.get(value.as_str()).copied();
        match &o.end {
            End::Ok { line, result: Returned::Offset(at), .. } => match found {
                None => out.push(Anomaly {
                    kind: "lost-write",
                    detail: format!(
                        "stream {stream}: append {} ({value}) acknowledged at offset {at} is missing",
                        o.id
                    ),
                    lines: vec![o.line, *line, first_line],
                }),
                Some(f) if f != *at => out.push(Anomaly {
                    kind: "wrong-offset",
                    detail: format!("stream {stream}: append {} ({value}) acknowledged at {at} but found at {f}", o.id),
                    lines: vec![o.line, *line, first_line],
                }),
                Some(_) => {}
            },
            End::Fail if found.is_some() => out.push(Anomaly {
                kind: "failed-but-present",
                detail: format!("stream {stream}: refused append {} ({value}) is in the stream", o.id),
                lines: vec![o.line, first_line],
            }),
            _ => {}
        }
    }
    check_order(stream, &ops, &offset_of, out);
    check_reads(stream, &ops, log, &offset_of, out);
}

/// Real-time order (module docs), by offset with a suffix minimum of the
/// acknowledgement times.
fn check_order(stream: &str, ops: &[&Op], offset_of: &HashMap<&str, u64>, out: &mut Vec<Anomaly>) {
    // (offset, op) of every append that landed.
    let mut landed: Vec<(u64, &Op)> = ops
        .iter()
        .filter_map(|o| match &o.kind {
            Kind::Append { value } => offset_of.get(value.as_str()).map(|&f| (f, *o)),
            Kind::Read { .. } => None,
        })
        .collect();
    landed.sort_by_key(|(f, _)| *f);
    // Earliest acknowledgement among the appends at higher offsets:
    // (time, its line, the append, its offset).
    let mut earliest: Option<(u64, usize, &Op, u64)> = None;
    for &(f, b) in landed.iter().rev() {
        if let Some((acked, a_line, a, a_off)) = earliest {
            if acked < b.invoke {
                out.push(Anomaly {
                    kind: "reordered",
                    detail: format!(
                        "stream {stream}: append {} was acknowledged at t={acked} before append {} was invoked at \
                         t={}, but landed after it (offset {a_off} > {f})",
                        a.id, b.id, b.invoke
                    ),
                    lines: vec![a.line, a_line, b.line],
                });
            }
        }
        if let Some((at, line)) = ok_at(b) {
            if earliest.is_none_or(|(e, ..)| at < e) {
                earliest = Some((at, line, b, f));
            }
        }
    }
}

/// Reads against the final stream and against the appends acknowledged
/// before them.
fn check_reads(stream: &str, ops: &[&Op], log: &[String], offset_of: &HashMap<&str, u64>, out: &mut Vec<Anomaly>) {
    // Acknowledged appends by acknowledgement time, with the running
    // highest offset (and which append holds it).
    let mut acked: Vec<(u64, u64, &Op)> = ops
        .iter()
        .filter_map(|o| match (&o.kind, &o.end) {
            (Kind::Append { value }, End::Ok { at, .. }) => offset_of.get(value.as_str()).map(|&f| (*at, f, *o)),
            _ => None,
        })
        .collect();
    acked.sort_by_key(|(at, _, _)| *at);
    let mut best: Vec<(u64, &Op)> = Vec::with_capacity(acked.len());
    for &(_, f, o) in &acked {
        let keep = best.last().filter(|(b, _)| *b >= f).copied();
        best.push(keep.unwrap_or((f, o)));
    }
    for o in ops {
        let (Kind::Read { from }, End::Ok { line, result: Returned::Records { next, values }, .. }) = (&o.kind, &o.end)
        else {
            continue;
        };
        let want = log.get(*from as usize..(*next as usize).min(log.len())).unwrap_or(&[]);
        if values.as_slice() != want || *next as usize > log.len() || values.len() as u64 != next.saturating_sub(*from)
        {
            out.push(Anomaly {
                kind: "read-mismatch",
                detail: format!(
                    "stream {stream}: read {} of {from}..{next} returned {} records that are not the stream's",
                    o.id,
                    values.len()
                ),
                lines: vec![o.line, *line],
            });
            continue;
        }
        // Appends acknowledged strictly before the read was invoked.
        let n = acked.partition_point(|(at, _, _)| *at < o.invoke);
        if let Some(&(high, a)) = n.checked_sub(1).map(|i| &best[i]) {
            if high >= *next {
                let a_line = ok_at(a).map_or(a.line, |(_, l)| l);
                out.push(Anomaly {
                    kind: "stale-read",
                    detail: format!(
                        "stream {stream}: read {} (invoked t={}) saw the stream end at {next}, but append {} at \
                         offset {high} was acknowledged before it",
                        o.id, o.invoke, a.id
                    ),
                    lines: vec![a.line, a_line, o.line, *line],
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::History;
    use super::*;

    fn kinds(text: &str) -> Vec<&'static str> {
        let h = History::parse(text).expect("parses");
        check(&h).anomalies.iter().map(|a| a.kind).collect()
    }

    const BASE: &str = "invoke 1 append 1 s a\nok 2 append 1 offset=0\ninvoke 3 append 2 s b\nok 4 append 2 offset=1\n";

    #[test]
    fn agreeing_replicas_and_matching_offsets_pass() {
        assert!(kinds(&format!("{BASE}final 1 s a,b\nfinal 2 s a,b\n")).is_empty());
    }

    #[test]
    fn replicas_that_differ_are_an_anomaly() {
        assert_eq!(kinds(&format!("{BASE}final 1 s a,b\nfinal 2 s a\n")), ["replicas-differ"]);
    }

    #[test]
    fn a_refused_append_in_the_stream_and_an_invented_record_are_anomalies() {
        let text = "invoke 1 append 1 s a\nfail 2 append 1 NotLeader\nfinal 1 s a,zz\n";
        let mut k = kinds(text);
        k.sort_unstable();
        assert_eq!(k, ["failed-but-present", "never-appended"]);
    }

    #[test]
    fn an_acknowledged_offset_that_differs_is_an_anomaly() {
        assert_eq!(kinds(&format!("{BASE}final 1 s b,a\n")), ["wrong-offset", "wrong-offset", "reordered"]);
    }

    #[test]
    fn a_read_that_returns_other_records_is_an_anomaly() {
        let text = format!("{BASE}invoke 5 read 3 s from=0\nok 6 read 3 next=2 a,x\nfinal 1 s a,b\n");
        assert_eq!(kinds(&text), ["read-mismatch"]);
        let text = format!("{BASE}invoke 5 read 3 s from=1\nok 6 read 3 next=2 b\nfinal 1 s a,b\n");
        assert!(kinds(&text).is_empty(), "a read from the middle to the end");
    }

    #[test]
    fn an_unknown_append_that_landed_after_a_later_ack_is_reordered() {
        // Append 2 was invoked after append 1 was acknowledged at offset 1,
        // its outcome is unknown, and it landed at offset 0.
        let text =
            "invoke 1 append 1 s a\nok 2 append 1 offset=1\ninvoke 3 append 2 s b\nunknown 9 append 2\nfinal 1 s b,a\n";
        assert_eq!(kinds(text), ["reordered"]);
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for (text, line) in [
            ("bogus 1\n", 1),
            ("invoke x append 1 s a\n", 1),
            ("invoke 1 append 1 s a\ninvoke 2 append 1 s b\n", 2),
            ("invoke 1 append 1 s a\nok 2 append 1 offset=0\nok 3 append 1 offset=0\n", 3),
            ("invoke 1 read 1 s from=0\nok 2 append 1 offset=0\n", 2),
            ("invoke 1 read 1 s\n", 1),
        ] {
            let e = History::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}
