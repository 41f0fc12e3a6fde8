//! The history checker on recorded fixtures (tests/fixtures/nemesis/): a
//! clean history passes, and each planted anomaly (a lost write, a
//! duplicate, a reordered pair, a stale read) is reported by
//! `ringraft-nemesis --check` with the lines that show it, the replay
//! command and `anomalies=1` in the summary line, exit status 1. A history
//! that does not parse is a usage error naming the line.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("tests/fixtures/nemesis").join(name)
}

fn check(path: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringraft-nemesis")).arg("--check").arg(path).output().expect("runs")
}

fn summary(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_owned()
}

#[test]
fn a_clean_history_has_no_anomaly() {
    let out = check(&fixture("ok.history"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(summary(&out), "ops=9 acked=4 unknown=2 failed=1 reads=2 faults_kill=1 anomalies=0");
}

#[test]
fn each_planted_anomaly_is_reported_with_its_lines_and_the_replay_command() {
    // (fixture, anomaly kind, a history line the report must quote)
    let cases = [
        ("lost_write.history", "lost-write", "ok 5600 append 6 offset=3"),
        ("duplicate.history", "duplicate", "invoke 700 append 4 s0 c0-1"),
        ("reordered.history", "reordered", "ok 200 append 1 offset=1"),
        ("stale_read.history", "stale-read", "ok 600 read 3 next=1 a"),
    ];
    for (name, kind, quoted) in cases {
        let out = check(&fixture(name));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(stdout.contains(&format!("ANOMALY {kind}:")), "{name} should report {kind}:\n{stdout}");
        assert!(stdout.lines().any(|l| l.ends_with(quoted)), "{name}: the window quotes `{quoted}`:\n{stdout}");
        assert!(stdout.contains("replay: scripts/nemesis.sh --seed "), "{name}: {stdout}");
        assert!(summary(&out).ends_with(" anomalies=1"), "{name}: {}", summary(&out));
    }
}

#[test]
fn a_history_that_does_not_parse_names_its_line() {
    let dir = std::env::temp_dir().join(format!("ringraft-nemesis-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.history");
    std::fs::write(&bad, "seed 1\ninvoke 10 append 1 s0 a\nok 20 append 9 offset=0\n").expect("write");
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("never invoked"), "{err}");
    let out = check(&dir.join("missing.history"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 16: the replay line carries every flag that shapes the schedule
/// (a history of `--nodes 5` used to print `--seed 626601`, which replays a
/// 3-node run). The runner records them in an `options` line; an older
/// history without one still parses, and the replay line says what is
/// missing.
#[test]
fn the_replay_line_carries_the_runs_options_and_older_histories_still_parse() {
    let dir = std::env::temp_dir().join(format!("ringraft-nemesis-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = std::fs::read_to_string(fixture("lost_write.history")).unwrap();
    let with =
        old.replacen("seed 7\n", "seed 7\noptions --nodes 5 --seconds 60 --clients 4 --faults kill,snapshot\n", 1);
    let path = dir.join("with-options.history");
    std::fs::write(&path, &with).unwrap();
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("replay: scripts/nemesis.sh --seed 7 --nodes 5 --seconds 60 --clients 4 --faults kill,snapshot"),
        "{stdout}"
    );
    let out = check(&fixture("lost_write.history"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("replay: scripts/nemesis.sh --seed 7 "), "{stdout}");
    assert!(stdout.contains("records no run options"), "an older history says what the replay lacks: {stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
