//! The client SDK (placeholder; being written).
