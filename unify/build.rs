//! Present so the `[build-dependencies]` pins of this crate take effect.
fn main() {}
