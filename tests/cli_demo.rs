//! `ringraft demo` end to end with real `ringraft-server` processes: a run
//! with a leader crash verifies, and bad flags are usage errors (exit 2).

use std::process::Command;

fn ringraft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ringraft"));
    c.env("RINGRAFT_SERVER_BIN", env!("CARGO_BIN_EXE_ringraft-server"));
    c
}

/// N from a line `verified N records on 3 nodes`.
fn verified_count(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("verified ")?;
    let n = rest.strip_suffix(" records on 3 nodes")?;
    n.parse().ok()
}

#[test]
fn the_demo_survives_a_leader_kill_and_verifies() {
    let out = ringraft().args(["demo", "--records", "3000", "--clients", "2"]).output().expect("run ringraft");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed ({}):\n{stdout}\n{stderr}", out.status);
    let last = stdout.lines().last().unwrap_or("");
    let n = verified_count(last).unwrap_or_else(|| panic!("last line {last:?} is not `verified N records on 3 nodes`"));
    assert!(n >= 3000, "only {n} records verified:\n{stdout}");
    assert!(stdout.contains("killed the leader, node "), "no kill reported:\n{stdout}");
    assert!(stdout.contains("new leader: node "), "no new leader reported:\n{stdout}");
    assert!(stdout.contains("restarted node "), "no restart reported:\n{stdout}");
    assert!(stdout.contains("records acknowledged: 3000 "), "not all 3000 acknowledged:\n{stdout}");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in
        [&["demo", "--bogus"][..], &["demo", "--clients", "x"], &["demo", "--size", "4"], &["demo", "--records"]]
    {
        let out = ringraft().args(args).output().expect("run ringraft");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("error:"), "{args:?}");
    }
    let out = ringraft().args(["demo", "--help"]).output().expect("run ringraft");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--no-crash"));
}
