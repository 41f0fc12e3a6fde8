//! `ringraft-bench` end to end with real `ringraft-server` processes: a short
//! run ends stdout with one JSON object holding every required figure, a
//! sweep prints one row per value, and bad flags are usage errors (exit 2).

use std::process::{Command, Output};

/// The keys the JSON object must hold, each with a number.
const REQUIRED: [&str; 9] =
    ["ops_s", "mb_s", "p50_us", "p99_us", "p999_us", "entries_per_fsync", "fsyncs_s", "cpu_us_per_op", "ideal_us"];

fn bench(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ringraft-bench"));
    c.env("RINGRAFT_SERVER_BIN", env!("CARGO_BIN_EXE_ringraft-server"));
    c.args(args).output().expect("run ringraft-bench")
}

/// The number after `"key":` in a flat one-line JSON object (None if the
/// key is missing or its value is not a number).
fn json_number(obj: &str, key: &str) -> Option<f64> {
    let at = obj.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &obj[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Lines of the table: data rows start with the (right-aligned) clients
/// column, a number, before the first `|`.
fn table_rows(stdout: &str) -> Vec<&str> {
    let is_row = |l: &&str| {
        l.split('|').next().and_then(|c| c.split_whitespace().next()).is_some_and(|w| w.parse::<u64>().is_ok())
    };
    stdout.lines().filter(|l| l.contains('|')).filter(is_row).collect()
}

#[test]
fn a_short_run_ends_with_json_figures() {
    let out = bench(&["--duration", "1", "--warmup", "0", "--clients", "2", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed ({}):\n{stdout}\n{stderr}", out.status);
    let last = stdout.lines().last().unwrap_or("").trim();
    assert!(last.starts_with('{') && last.ends_with('}'), "last line is not a JSON object: {last:?}");
    for key in REQUIRED {
        assert!(json_number(last, key).is_some(), "no number for {key:?} in {last}");
    }
    let ops = json_number(last, "ops_s").unwrap_or(0.0);
    assert!(ops > 0.0, "ops_s {ops} in {last}");
    // CPU of every spawned server, not only of those found running early.
    let cpu = last.split("\"cpu_pct\":[").nth(1).and_then(|r| r.split(']').next()).unwrap_or("");
    assert_eq!(cpu.split(',').filter(|c| c.parse::<f64>().is_ok()).count(), 3, "cpu_pct of 3 servers: {last}");
    assert!(stdout.contains("fdatasync per batch, always on"), "fsync policy not shown:\n{stdout}");
    assert!(stdout.contains("ideal append latency"), "no ideal shown:\n{stdout}");
    assert_eq!(table_rows(&stdout).len(), 1, "expected one table row:\n{stdout}");
}

#[test]
fn a_sweep_prints_one_row_per_value() {
    let out = bench(&["--sweep", "clients=1,2", "--duration", "1", "--warmup", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed ({}):\n{stdout}\n{stderr}", out.status);
    let rows = table_rows(&stdout);
    assert_eq!(rows.len(), 2, "expected two rows:\n{stdout}");
    assert!(rows[0].trim_start().starts_with("1 ") && rows[1].trim_start().starts_with("2 "), "{rows:?}");
}

#[test]
fn a_streams_sweep_spreads_appends_over_that_many_streams() {
    let out = bench(&["--sweep", "streams=1,3", "--clients", "4", "--duration", "1", "--warmup", "0", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed ({}):\n{stdout}\n{stderr}", out.status);
    let rows = table_rows(&stdout);
    assert_eq!(rows.len(), 2, "expected two rows:\n{stdout}");
    let streams: Vec<&str> = rows.iter().map(|r| r.split_whitespace().nth(3).unwrap_or("")).collect();
    assert_eq!(streams, ["1", "3"], "the streams column: {rows:?}");
    let json: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(json.len(), 2, "{stdout}");
    assert_eq!(json_number(json[1], "streams"), Some(3.0), "{}", json[1]);
    for row in &json {
        assert!(json_number(row, "ops_s").unwrap_or(0.0) > 0.0, "{row}");
        assert_eq!(json_number(row, "errors"), Some(0.0), "every append to an existing stream: {row}");
    }
}

#[test]
fn bad_flags_are_usage_errors() {
    let cases: [&[&str]; 7] = [
        &["--bogus"],
        &["--clients", "x"],
        &["--reads", "1.5"],
        &["--sweep", "nodes=1,2"],
        &["--sweep", "streams=0"],
        &["--sweep", "clients=0"],
        &["--clients", "0"],
    ];
    for args in cases {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("error"), "{args:?}");
    }
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--spawn", "--cluster", "--window", "--sweep", "--json", "--warmup"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
