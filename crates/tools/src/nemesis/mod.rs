//! Fault injection at process level (issue 7): real `ringraft-server`
//! processes, real sockets, real fsync, real `kill -9`, and a checker over
//! everything the clients saw.
//!
//! * [`history`]: the history format every run records;
//! * [`check`](mod@check): the near-linear checker that judges it;
//! * [`proxy`]: the fault-injecting TCP proxy on every peer link;
//! * [`disks`]: tmpfs and loop-mounted image disks for disk-full and
//!   power-loss faults;
//! * [`cluster`]: the servers behind their proxies;
//! * [`faults`]: the seeded fault schedule and each fault's heal;
//! * [`workload`]: the recording clients;
//! * [`record`]: the shared history writer;
//! * [`run`](mod@run): one run start to verdict, and the soak.
//!
//! `ringraft-nemesis` (and `scripts/nemesis.sh`) runs them; `--check FILE`
//! runs the checker alone on a recorded history.

pub mod check;
pub mod cluster;
pub mod disks;
pub mod faults;
pub mod history;
pub mod proxy;
pub mod record;
pub mod run;
pub mod workload;

pub use check::{check, Anomaly, Report};
pub use history::{History, ParseError};
/// Checks the history in `text` and renders the report: each anomaly with
/// the history lines that show it (the minimal window), the replay command
/// when the seed is known, and the summary line last. Returns the text and
/// the report.
///
/// # Errors
/// The history does not parse.
pub fn check_text(text: &str) -> Result<(String, Report), ParseError> {
    let h = History::parse(text)?;
    let r = check(&h);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for a in &r.anomalies {
        out.push_str(&format!("ANOMALY {}: {}\n", a.kind, a.detail));
        for &l in &a.lines {
            if let Some(t) = lines.get(l.wrapping_sub(1)) {
                let t: String = if t.chars().count() > 200 {
                    t.chars().take(200).chain("...".chars()).collect()
                } else {
                    (*t).to_owned()
                };
                out.push_str(&format!("  {l:>6} | {t}\n"));
            }
        }
    }
    if !r.anomalies.is_empty() {
        match h.seed {
            Some(s) => match &h.options {
                Some(o) => out.push_str(&format!("replay: scripts/nemesis.sh --seed {s} {o}\n")),
                None => out.push_str(&format!(
                    "replay: scripts/nemesis.sh --seed {s} (the history records no run options: add the original \
                     run's --nodes, --seconds, --clients and --faults)\n"
                )),
            },
            None => out.push_str("replay: the history records no seed\n"),
        }
    }
    out.push_str(&r.summary());
    out.push('\n');
    Ok((out, r))
}
