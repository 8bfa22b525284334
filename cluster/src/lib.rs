//! # sluice-cluster
//!
//! Where Sluice's processes run: a [`local`] Ballista cluster of real
//! `sluice-scheduler` and `sluice-executor` processes on 127.0.0.1 (for
//! laptops, tests and benchmarks), and the Kubernetes client ([`k8s`]:
//! submit a pipeline as a Job, scale the executors, show status) that
//! renders the Helm chart's own Job template.
//!
//! To add a place to run: a module here that starts or reaches the
//! processes and hands back the scheduler URL; the engine only ever needs
//! that URL (`engine.scheduler`).

pub mod k8s;
pub mod local;

pub use local::{ClusterOptions, LocalCluster};
