//! The data directory's identity file (placeholder; being written).
