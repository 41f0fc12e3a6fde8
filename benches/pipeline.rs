//! Benchmarks of the staged pipeline runtime (src/pipeline/, src/node/), each
//! printed beside its physical reference measured in the same run.
//!
//! * `ring`: one stage-ring hop, parked and spinning, and batch throughput.
//! * `timer`: `HashedWheelTimer` schedule+cancel cost and firing lateness.
//! * `throughput`: a 3-node in-process cluster on the real disk: entries/s
//!   and commit latency under load, low-load latency, and raw
//!   `write + fdatasync` of the same bytes.
//!
//! Run all: `cargo bench --bench pipeline`; one: `cargo bench --bench
//! pipeline -- throughput` (the first argument that is not a flag names it;
//! cargo's own `--bench` flag is ignored).

#[path = "pipeline/ring.rs"]
mod ring;
#[path = "pipeline/throughput.rs"]
mod throughput;
#[path = "pipeline/timer.rs"]
mod timer;

/// The benches, by the name that selects them.
const BENCHES: [(&str, fn()); 3] = [("ring", ring::run), ("timer", timer::run), ("throughput", throughput::run)];

fn main() {
    let selected = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if let Some(name) = &selected {
        if !BENCHES.iter().any(|(n, _)| n == name) {
            let names: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
            eprintln!("pipeline bench: unknown bench {name:?}; choose one of {}", names.join(", "));
            std::process::exit(2);
        }
    }
    for (name, run) in BENCHES {
        if selected.as_deref().is_none_or(|s| s == name) {
            println!("== pipeline/{name}");
            run();
            println!();
        }
    }
}
