//! Empty on purpose: see Cargo.toml (one feature set for the shared dependency tree).
