//! `ringraft-server` (placeholder; being written).

fn main() {}
