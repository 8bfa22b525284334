//! # sluice-engine
//!
//! The engine owns everything between a YAML config and the lake: the config
//! schema, the lake abstraction over `object_store`, the one DataFusion session
//! setup used embedded and on Ballista, ingestion, the synthetic data generator,
//! pipeline steps with their atomic manifests, the model registry, run reports,
//! the Kubernetes client and the `sluice` command line.
//!
//! Feature math lives in `sluice-transforms`, tree math in `sluice-ml`; this
//! crate only wires them to data.
//!
//! To add a pipeline step: implement it in `steps/`, give it a name in
//! [`config::StepName`], and list its inputs so manifests and `--resume` know
//! what it depends on.

pub mod cli;
pub mod cluster;
pub mod commit;
pub mod config;
pub mod datagen;
pub mod drift;
pub mod dtrain;
pub mod error;
pub mod explain;
pub mod ingest;
pub mod k8s;
pub mod lake;
pub mod logfmt;
pub mod outputs;
pub mod pipeline;
pub mod predict;
pub mod progress;
pub mod registry;
pub mod report;
mod report_build;
pub mod schema;
pub mod session;
pub mod slices;
pub mod watchdog;

pub use error::{EngineError, Result};
