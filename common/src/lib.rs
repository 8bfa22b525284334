//! # sluice-common
//!
//! The vocabulary every Sluice crate shares, and nothing else: the one error
//! type ([`EngineError`], variants by phase, messages naming the file,
//! column, key or URL at fault), plain values for logs ([`logfmt`]) and
//! progress events ([`progress`]) that the command line draws as bars or
//! writes as JSON log lines. It sits at the bottom of the dependency graph
//! (like `datafusion-common`): it depends on no other engine crate.
//!
//! To add an error a user can cause: add a variant (or reuse one) in
//! [`error`] whose message names what is at fault; never `Internal`.

pub mod error;
pub mod logfmt;
pub mod progress;

pub use error::{EngineError, Result};
