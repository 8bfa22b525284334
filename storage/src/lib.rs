//! # sluice-lake
//!
//! Everything Sluice keeps in the lake and how it gets there: the object
//! stores behind a lake URL ([`lake`]: local directories, `abfss://`/`az://`
//! on ADLS, `s3://`, `gs://`), the atomic commit of a step's outputs
//! ([`commit`]: files written under an attempt prefix, then one manifest
//! that makes them visible), the versioned model [`registry`] (`latest`,
//! deploy records) and the data contract's table [`schema`]s with the
//! checks that read a file by meaning, not by how its writer declared it.
//!
//! It knows nothing about pipelines or steps: the engine decides what to
//! write, this crate makes the write atomic and names the file at fault
//! when a read fails.
//!
//! To add a storage scheme: map its URL to an `object_store` builder in
//! [`lake::Lake::open`] (credentials from the environment only, never the
//! config) and add it to the list in `docs/LAKE.md`.

pub mod commit;
pub mod lake;
pub mod registry;
pub mod schema;
