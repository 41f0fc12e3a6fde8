//! Fault injection at process level (issue 7), part one: the history
//! format every nemesis run records and the checker that judges it.
//! `ringraft-nemesis --check FILE` (and `scripts/nemesis.sh --check FILE`)
//! runs the checker alone on a recorded history. [`proxy`] is the
//! fault-injecting TCP proxy the runner will put on every link. The runner
//! that drives real processes through faults is not built yet.

pub mod check;
pub mod history;
pub mod proxy;

pub use check::{check, Anomaly, Report};
pub use history::{History, ParseError};

/// Checks the history in `text` and renders the report: each anomaly with
/// the history lines that show it (the minimal window), the replay command
/// when the seed is known, and the summary line last. Returns the text and
/// the number of anomalies.
///
/// # Errors
/// The history does not parse.
pub fn check_text(text: &str) -> Result<(String, usize), ParseError> {
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
            Some(s) => out.push_str(&format!("replay: scripts/nemesis.sh --seed {s}\n")),
            None => out.push_str("replay: the history records no seed\n"),
        }
    }
    out.push_str(&r.summary());
    out.push('\n');
    Ok((out, r.anomalies.len()))
}
