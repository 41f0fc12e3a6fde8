//! One measurement's figures ([`Measurement`]), computed from the
//! workload's totals and the server samples taken around the window, and
//! their two renderings: a table row (beside a fixed header) and a one-line
//! JSON object written by hand.

use std::fmt::Write as _;

use super::cluster::Sample;
use super::ideal::Ideal;
use super::load::Totals;
use super::{BenchConfig, FSYNC_POLICY};

/// The figures of one measurement. `None` means "not obtainable" (shown as
/// n/a, and `null` in JSON).
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Logical clients.
    pub clients: usize,
    /// Appends in flight per logical client.
    pub window: usize,
    /// Record bytes.
    pub size: usize,
    /// Streams written.
    pub streams: usize,
    /// Fraction of operations that were reads (as asked).
    pub reads_fraction: f64,
    /// The measured window, s.
    pub duration_s: f64,
    /// Appends acknowledged in the window.
    pub appends: u64,
    /// Reads answered in the window.
    pub read_ops: u64,
    /// (appends + reads) / s.
    pub ops_s: f64,
    /// Record bytes appended and read per second, in MB (10^6 bytes).
    pub mb_s: f64,
    /// Latency percentiles and maximum of all operations, µs.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p90_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// See `p50_us`.
    pub max_us: f64,
    /// The ideal append latency (2 RTT + 1 fsync) of this machine, µs.
    pub ideal_us: f64,
    /// fdatasync p50 and loopback RTT p50 behind `ideal_us`, µs.
    pub fsync_p50_us: f64,
    /// See `fsync_p50_us`.
    pub rtt_p50_us: f64,
    /// The raw write+fdatasync ceiling divided by 3 replicas, MB/s.
    pub ceiling_mb_s: f64,
    /// The node leading at the end of the window.
    pub leader: Option<u64>,
    /// Δentries_written / Δfsyncs of the leader over the window.
    pub entries_per_fsync: Option<f64>,
    /// Δentries_sent / Δappends_sent of the leader: entries per
    /// AppendEntries message.
    pub entries_per_append: Option<f64>,
    /// Σ over all nodes of Δfsyncs, per second of the window.
    pub fsyncs_s: Option<f64>,
    /// CPU use of each spawned server `(node, %)` (100 % = one core);
    /// empty for an existing cluster.
    pub cpu_pct: Vec<(u64, Option<f64>)>,
    /// Server CPU time of all nodes per operation, µs.
    pub cpu_us_per_op: Option<f64>,
    /// CPU use of the bench process itself (100 % = one core).
    pub bench_cpu_pct: Option<f64>,
    /// Failed operations by kind (warmup included).
    pub errors: Vec<(String, u64)>,
}

fn delta(before: &Sample, after: &Sample, node: u64, f: fn(&ringraft_client::Status) -> u64) -> Option<u64> {
    Some(f(after.node(node)?).saturating_sub(f(before.node(node)?)))
}

impl Measurement {
    /// The figures of `totals` (recorded over `cfg.duration`) and of the
    /// server counters between `before` and `after`.
    pub(super) fn new(
        cfg: &BenchConfig,
        ideal: &Ideal,
        totals: &Totals,
        before: &Sample,
        after: &Sample,
        cpu_nodes: &[u64],
    ) -> Measurement {
        let secs = cfg.duration.as_secs_f64().max(1e-9);
        let ops = totals.appends + totals.reads;
        let q = |x: f64| if totals.hist.is_empty() { 0.0 } else { totals.hist.value_at_quantile(x) as f64 };
        let dt = after.at.saturating_duration_since(before.at).as_secs_f64().max(1e-9);
        let leader = after.leader().or_else(|| before.leader());
        let entries_per_fsync = leader.and_then(|l| {
            let fsyncs = delta(before, after, l, |s| s.fsyncs)?;
            let entries = delta(before, after, l, |s| s.entries_written)?;
            (fsyncs > 0).then(|| entries as f64 / fsyncs as f64)
        });
        let entries_per_append = leader.and_then(|l| {
            let appends = delta(before, after, l, |s| s.appends_sent)?;
            let entries = delta(before, after, l, |s| s.entries_sent)?;
            (appends > 0).then(|| entries as f64 / appends as f64)
        });
        let nodes: Vec<u64> = after.statuses.iter().flatten().map(|s| s.node_id).collect();
        let fsyncs: Option<u64> = nodes.iter().map(|&n| delta(before, after, n, |s| s.fsyncs)).sum();
        let cpu_us: Vec<Option<f64>> =
            before.server_cpu_us.iter().zip(&after.server_cpu_us).map(|(b, a)| a.zip(*b).map(|(a, b)| a - b)).collect();
        let cpu_total: Option<f64> = if cpu_us.is_empty() { None } else { cpu_us.iter().copied().sum() };
        let pct = |us: f64| us / (dt * 1e6) * 100.0;
        Measurement {
            clients: cfg.clients,
            window: cfg.window,
            size: cfg.size,
            streams: cfg.streams,
            reads_fraction: cfg.reads,
            duration_s: secs,
            appends: totals.appends,
            read_ops: totals.reads,
            ops_s: ops as f64 / secs,
            mb_s: totals.bytes as f64 / secs / 1e6,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if totals.hist.is_empty() { 0.0 } else { totals.hist.max() as f64 },
            ideal_us: ideal.append_us(),
            fsync_p50_us: ideal.fsync_p50_us,
            rtt_p50_us: ideal.rtt_p50_us,
            ceiling_mb_s: ideal.cluster_ceiling_mb_s(),
            leader,
            entries_per_fsync,
            entries_per_append,
            fsyncs_s: fsyncs.filter(|_| !nodes.is_empty()).map(|f| f as f64 / dt),
            cpu_pct: cpu_nodes.iter().copied().zip(cpu_us.iter().map(|c| c.map(pct))).collect(),
            cpu_us_per_op: cpu_total.filter(|_| ops > 0).map(|c| c / ops as f64),
            bench_cpu_pct: after.self_cpu_us.zip(before.self_cpu_us).map(|(a, b)| pct(a - b)),
            errors: totals.errors.clone(),
        }
    }

    /// p50 latency as a multiple of the ideal append latency.
    pub fn p50_over_ideal(&self) -> f64 {
        self.p50_us / self.ideal_us.max(1e-9)
    }

    /// MB/s as a fraction of the raw ceiling shared by 3 replicas.
    pub fn mb_s_over_ceiling(&self) -> f64 {
        self.mb_s / self.ceiling_mb_s.max(1e-9)
    }

    /// The measurement as one table row (columns of `table_header`).
    pub fn table_row(&self) -> String {
        let cpu = if self.cpu_pct.is_empty() {
            "n/a".to_owned()
        } else {
            self.cpu_pct.iter().map(|(_, c)| opt(*c, 0)).collect::<Vec<_>>().join("/")
        };
        format!(
            "{:>7} {:>6} {:>6} {:>7} | {:>9.0} {:>7.2} | {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>7.0} | {:>6.1}x {:>6.3} | {:>6} {:>9} {:>6} {:>8} | {:>11} {:>9} {:>6}",
            self.clients,
            self.window,
            self.size,
            self.streams,
            self.ops_s,
            self.mb_s,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.p50_over_ideal(),
            self.mb_s_over_ceiling(),
            self.leader.map_or("n/a".into(), |l| l.to_string()),
            opt(self.entries_per_fsync, 1),
            opt(self.entries_per_append, 1),
            opt(self.fsyncs_s, 0),
            cpu,
            opt(self.cpu_us_per_op, 1),
            opt(self.bench_cpu_pct, 0),
        )
    }

    /// The measurement as one JSON object on one line (non-finite and
    /// unobtainable figures are `null`).
    pub fn json(&self) -> String {
        let mut o = JsonObject::default();
        o.num("ops_s", Some(self.ops_s));
        o.num("mb_s", Some(self.mb_s));
        for (k, v) in [("p50_us", self.p50_us), ("p90_us", self.p90_us), ("p99_us", self.p99_us)] {
            o.num(k, Some(v));
        }
        o.num("p999_us", Some(self.p999_us));
        o.num("max_us", Some(self.max_us));
        o.num("entries_per_fsync", self.entries_per_fsync);
        o.num("entries_per_append_entries", self.entries_per_append);
        o.num("fsyncs_s", self.fsyncs_s);
        o.num("cpu_us_per_op", self.cpu_us_per_op);
        o.num("ideal_us", Some(self.ideal_us));
        o.num("fsync_p50_us", Some(self.fsync_p50_us));
        o.num("rtt_p50_us", Some(self.rtt_p50_us));
        o.num("ceiling_mb_s", Some(self.ceiling_mb_s));
        o.num("p50_over_ideal", Some(self.p50_over_ideal()));
        o.num("mb_s_over_ceiling", Some(self.mb_s_over_ceiling()));
        o.num("leader", self.leader.map(|l| l as f64));
        let cpu: Vec<String> = self.cpu_pct.iter().map(|(_, c)| json_num(*c)).collect();
        o.raw("cpu_pct", if cpu.is_empty() { "null".into() } else { format!("[{}]", cpu.join(",")) });
        o.num("bench_cpu_pct", self.bench_cpu_pct);
        for (k, v) in
            [("clients", self.clients), ("window", self.window), ("size", self.size), ("streams", self.streams)]
        {
            o.num(k, Some(v as f64));
        }
        o.num("reads", Some(self.reads_fraction));
        o.num("duration_s", Some(self.duration_s));
        o.num("appends", Some(self.appends as f64));
        o.num("read_ops", Some(self.read_ops as f64));
        o.num("errors", Some(self.errors.iter().map(|(_, n)| *n).sum::<u64>() as f64));
        o.raw("fsync_policy", format!("\"{FSYNC_POLICY}\""));
        o.finish()
    }
}

/// The header of the table [`Measurement::table_row`] fills.
pub fn table_header() -> String {
    let top = format!(
        "{:>7} {:>6} {:>6} {:>7} | {:>9} {:>7} | {:>6} {:>6} {:>6} {:>6} {:>7} | {:>7} {:>6} | {:>6} {:>9} {:>6} {:>8} | {:>11} {:>9} {:>6}",
        "clients", "window", "size", "streams", "ops/s", "MB/s", "p50", "p90", "p99", "p999", "max", "p50/", "MB/s/", "leader",
        "entries/", "ent/", "fsyncs/s", "server", "server", "bench"
    );
    let bottom = format!(
        "{:>7} {:>6} {:>6} {:>7} | {:>9} {:>7} | {:>36} | {:>7} {:>6} | {:>6} {:>9} {:>6} {:>8} | {:>11} {:>9} {:>6}",
        "",
        "",
        "bytes",
        "",
        "",
        "",
        "latency µs",
        "ideal",
        "ceil/3",
        "",
        "fsync",
        "AE",
        "all nodes",
        "cpu% each",
        "cpu µs/op",
        "cpu%"
    );
    format!("{top}\n{bottom}")
}

/// `v` with `digits` decimals, or n/a.
fn opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite()).map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

/// A JSON number (finite) or `null`.
fn json_num(v: Option<f64>) -> String {
    match v.filter(|x| x.is_finite()) {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
        None => "null".into(),
    }
}

/// A JSON object built by hand: keys are plain ASCII constants, so they
/// need no escaping.
#[derive(Default)]
struct JsonObject {
    body: String,
}

impl JsonObject {
    fn num(&mut self, key: &str, v: Option<f64>) {
        self.raw(key, json_num(v));
    }

    fn raw(&mut self, key: &str, value: String) {
        let sep = if self.body.is_empty() { "" } else { "," };
        let _ = write!(self.body, "{sep}\"{key}\":{value}");
    }

    fn finish(self) -> String {
        format!("{{{}}}", self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_are_finite_or_null() {
        assert_eq!(json_num(Some(3.0)), "3");
        assert_eq!(json_num(Some(2.5)), "2.500");
        assert_eq!(json_num(Some(f64::NAN)), "null");
        assert_eq!(json_num(None), "null");
        let mut o = JsonObject::default();
        o.num("a", Some(1.0));
        o.raw("b", "[1,null]".into());
        assert_eq!(o.finish(), r#"{"a":1,"b":[1,null]}"#);
    }
}
