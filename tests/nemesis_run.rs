//! `ringraft-nemesis` end to end, on real `ringraft-server` processes of
//! this build: a short run under faults comes out clean with the summary
//! line the soak reports; a disk that lies about fsync is caught by the
//! power-loss check (skipped, with the reason, where this machine cannot
//! loop-mount); bad flags are refused with exit 2 and a message.

use std::path::PathBuf;
use std::process::{Command, Output};

fn nemesis(args: &[&str], dir: &str) -> Output {
    let dir = std::env::temp_dir().join(format!("ringraft-nemesis-test-{dir}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft-nemesis"))
        .args(args)
        .arg("--dir")
        .arg(&dir)
        .env("RINGRAFT_SERVER_BIN", env!("CARGO_BIN_EXE_ringraft-server"))
        .output()
        .expect("ringraft-nemesis runs");
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The value of `key=` in the summary line.
fn summary_value(out: &str, key: &str) -> u64 {
    let last = out.lines().rev().find(|l| l.starts_with("runs=")).expect("a summary line");
    last.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {last}"))
}

#[test]
fn a_short_run_under_faults_is_clean() {
    let o = nemesis(&["--seed", "11", "--seconds", "12", "--faults", "kill,pause,partition,drop,transfer"], "short");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(summary_value(&out, "anomalies"), 0, "{out}");
    assert_eq!(summary_value(&out, "runs"), 1, "{out}");
    assert!(summary_value(&out, "acked") > 100, "{out}");
    assert!(summary_value(&out, "reads") > 10, "{out}");
    let faults: u64 = out
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter(|w| w.starts_with("faults_"))
        .filter_map(|w| w.split('=').nth(1)?.parse::<u64>().ok())
        .sum();
    assert!(faults >= 2, "at least two faults in 12 s: {out}");
    assert!(out.contains("seeds=11 "), "{out}");
}

#[test]
fn a_disk_that_lies_about_fsync_is_caught_by_the_power_loss_check() {
    let o = nemesis(&["--seed", "12", "--seconds", "10", "--faults", "power-loss", "--lying-fsync"], "lying");
    let out = text(&o);
    if out.contains("skipped fault kind power-loss") {
        println!("skipped: this machine cannot loop-mount an image: {out}");
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("ANOMALY durability"), "{out}");
    assert!(out.contains("replay: scripts/nemesis.sh --seed 12"), "{out}");
    assert!(summary_value(&out, "anomalies") > 0, "{out}");
}

#[test]
fn bad_flags_are_refused() {
    for (args, says) in [
        (&["--nodes", "4"][..], "3 or 5"),
        (&["--faults", "kill,meteor"][..], "unknown fault kind \"meteor\""),
        (&["--seconds", "1"][..], "--seconds"),
        (&["--check", "/nonexistent/history", "--seed", "3"][..], "cannot be used with"),
    ] {
        let o = nemesis(args, "flags");
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: {out}");
    }
}

/// Processes whose command line mentions `needle` (servers of a run).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && cmd.contains("ringraft-server") {
                out.push(cmd);
            }
        }
    }
    out
}

/// Starts a 60 s run, sends SIGINT `signals` times once the cluster is
/// up; returns the output and exit code, and what is left running.
fn interrupted_run(name: &str, signals: usize) -> (String, Option<i32>, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("ringraft-nemesis-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let child = Command::new(env!("CARGO_BIN_EXE_ringraft-nemesis"))
        .args(["--seed", "13", "--seconds", "60", "--faults", "kill,partition", "--dir"])
        .arg(&dir)
        .env("RINGRAFT_SERVER_BIN", env!("CARGO_BIN_EXE_ringraft-server"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ringraft-nemesis starts");
    let needle = dir.display().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while processes_mentioning(&needle).len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    for _ in 0..signals {
        let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
        assert!(sent.success());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let o = child.wait_with_output().expect("ringraft-nemesis ends");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let left = processes_mentioning(&needle);
    let _ = std::fs::remove_dir_all(&dir);
    (text(&o), o.status.code(), left)
}

#[test]
fn an_interrupted_run_heals_checks_and_reports() {
    let (out, code, left) = interrupted_run("sigint", 1);
    assert_eq!(code, Some(130), "{out}");
    assert!(out.contains("interrupted: the last run was cut short"), "{out}");
    assert_eq!(summary_value(&out, "anomalies"), 0, "{out}");
    assert!(summary_value(&out, "acked") > 0, "{out}");
    assert!(left.is_empty(), "servers left running: {left:?}");
}

#[test]
fn a_second_signal_exits_at_once_and_takes_the_servers_with_it() {
    let (out, code, left) = interrupted_run("sigint2", 2);
    assert_eq!(code, Some(130), "{out}");
    assert!(out.contains("second SIGINT: exiting now"), "{out}");
    assert!(left.is_empty(), "servers outlived the runner: {left:?}");
}
