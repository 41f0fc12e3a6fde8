//! The deliberate bugs in the layers around the core that the node
//! simulator must catch, and the switch that turns one on in a
//! `sim-mutants` build.

/// The deliberate bugs in the layers around the core (storage, recovery,
/// the service) that the node simulator must catch (issues 18 and 19),
/// each a one-line return of a defect fixed earlier: see
/// `scripts/mutants.sh`. (The core's own are `core::Mutant`.)
pub const MUTANTS: [&str; 6] = [
    "recover-keeps-stale-tail",
    "snapshot-fsync-retry",
    "checkpoint-single-copy",
    "snapshot-incoming-race",
    "log-time-unbounded",
    "delete-not-deduplicated",
];

/// Whether the deliberate storage bug `name` ([`MUTANTS`]) is on: only in
/// a build with the `sim-mutants` feature (never a release), and only when
/// the environment variable `RINGRAFT_FS_MUTANT` names it.
#[cfg(feature = "sim-mutants")]
pub fn mutant(name: &str) -> bool {
    static ON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    debug_assert!(MUTANTS.contains(&name), "unknown storage mutant {name:?}");
    ON.get_or_init(|| std::env::var("RINGRAFT_FS_MUTANT").ok()).as_deref() == Some(name)
}

/// Whether the deliberate storage bug `name` is on: never, in a build
/// without the `sim-mutants` feature.
#[cfg(not(feature = "sim-mutants"))]
#[inline(always)]
pub fn mutant(_name: &str) -> bool {
    false
}
