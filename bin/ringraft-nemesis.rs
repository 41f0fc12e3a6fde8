//! `ringraft-nemesis`: checks a recorded nemesis history (`--check FILE`).
//! Prints every anomaly with the history lines that show it, then one
//! summary line of `key=value` pairs ending in `anomalies=N`.
//!
//! Exit codes: 0 no anomaly, 1 anomalies found, 2 bad usage or a history
//! that does not parse.

use std::process::ExitCode;

use clap::Parser;

/// Check a nemesis history: every acknowledged append present exactly once
/// at its offset, the same stream on every replica, real-time order, no
/// stale or invented read. The history format is documented in
/// src/nemesis/history.rs.
#[derive(Parser)]
#[command(name = "ringraft-nemesis", version)]
struct Args {
    /// The recorded history to check.
    #[arg(long, value_name = "FILE")]
    check: std::path::PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.check) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringraft-nemesis: cannot read {}: {e}", args.check.display());
            return ExitCode::from(2);
        }
    };
    match ringraft::nemesis::check_text(&text) {
        Ok((report, 0)) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Ok((report, _)) => {
            print!("{report}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("ringraft-nemesis: {}: {e}", args.check.display());
            ExitCode::from(2)
        }
    }
}
