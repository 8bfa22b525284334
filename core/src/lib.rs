//! # sluice-core
//!
//! What every Sluice process shares, and all the scheduler and executor
//! binaries link: the one [`session`] setup (embedded, Ballista client,
//! scheduler, executor) with the one list of Sluice functions (the
//! transforms, the model's [`predict`] and [`explain`] UDFs, the
//! distributed-training aggregates, the [`ordered`] key check and the
//! contract's [`bounds`] check on raw values), the lake's
//! object stores in every process, the Ballista job [`watchdog`], and the
//! one [`logging`] setup. No command-line, Kubernetes or report crate is
//! below it.
//!
//! To add a function that must run on executors: implement it (in
//! `sluice-transforms`, `sluice-ml` or here) and add it to the list in
//! [`session`] (`sluice_scalar_udfs` / `sluice_aggregate_udfs`); the
//! scheduler and executors then resolve it by name.

pub mod bounds;
pub mod explain;
pub mod logging;
pub mod memory;
pub mod ordered;
pub mod predict;
pub mod session;
pub mod watchdog;
