//! `ringraft demo` end to end: it runs, verifies, and refuses bad flags.

use std::process::Command;

fn ringraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringraft"))
}

#[test]
fn the_demo_runs_a_crash_and_verifies() {
    let out = ringraft().args(["demo", "--proposals", "4000", "--threads", "4"]).output().expect("run ringraft");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("killing the leader"), "{stdout}");
    assert!(stdout.contains("caught up"), "{stdout}");
    assert!(stdout.contains("all 4000 acknowledged proposals present"), "{stdout}");
}

#[test]
fn bad_flags_get_usage_and_exit_code_2() {
    for args in [&["demo", "--threads", "x"][..], &["demo", "--bogus"], &["nope"], &[], &["demo", "--size"]] {
        let out = ringraft().args(args).output().expect("run ringraft");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: ringraft demo"), "{args:?}");
    }
    let out = ringraft().args(["demo", "--size", "4"]).output().expect("run ringraft");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size must be >= 8"));
    let out = ringraft().arg("--help").output().expect("run ringraft");
    assert!(out.status.success());
}
