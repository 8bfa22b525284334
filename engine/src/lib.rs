//! # sluice-engine
//!
//! The engine owns what happens between a YAML config and the lake: the
//! config schema, ingestion (the seven-table join, the labelled CSVs),
//! pipeline steps and their typed outputs, the distributed-training driver,
//! drift checks, and the data of run reports (rendered by `sluice-report`).
//! The lake, the commit protocol and the
//! registry are `sluice-lake`; the session setup and the function list are
//! `sluice-core` (both re-exported here under their old paths); processes
//! and Kubernetes are `sluice-cluster`; the command line is the `sluice`
//! crate.
//!
//! Feature math lives in `sluice-transforms`, tree math in `sluice-ml`; this
//! crate only wires them to data.
//!
//! To add a pipeline step: implement it in `steps/`, give it a name in
//! [`config::StepName`], and list its inputs so manifests and `--resume` know
//! what it depends on.

pub mod config;
pub mod context;
pub mod drift;
pub mod dsearch;
pub mod dtrain;
pub mod ingest;
pub mod outputs;
pub mod pipeline;
mod report_build;
pub mod slices;

// The lower layers, under the paths the engine's modules use.
pub use sluice_common::{error, logfmt, progress};
pub use sluice_core::{explain, memory, predict, session, watchdog};
pub use sluice_lake::{commit, lake, registry, schema};
pub use sluice_report as report;

pub use error::{EngineError, Result};
