//! Ingestion: turns the lake's inputs into the validated unified table.
//!
//! * [`training_input`]: the union of the labelled CSV files matching a glob,
//!   read as text with an explicit schema, every value cast with validation,
//!   bad values either reported (file, line, column, expected, found) or
//!   routed to a `rejected` output and counted.
//! * [`inference_input`]: the seven raw tables joined as one DataFusion plan
//!   (inner `devices`, left the others) in the unified column order, after a
//!   check that every table directory exists, every table matches the
//!   contract and no key is duplicated (a duplicate would multiply rows).
//!
//! Both return DataFrames validated against [`crate::schema`]; writing them
//! is the caller's job (the pipeline step's commit protocol, or
//! [`write_parquet`] for the CLI and tests).

pub use sluice_core::bounds;
pub mod checks;
mod inference;
pub mod partition;
pub mod raw;
mod training;

pub use checks::ValueChecks;
pub use inference::{
    check_joined_rows, deferred_join_parts, device_slices, inference_input, inference_input_sliced,
    inference_input_with, name_bounds_error, raw_table_input, DeferredJoin, DeviceSlice,
    InferenceOptions,
};
pub use partition::PartitionFilter;
pub use sluice_core::ordered::{
    keys_ordered_udaf, keys_proven_unique, keys_proven_unique_counting, KEYS_ORDERED_UDAF,
};
pub use training::training_input;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::DataFrame;

use crate::error::Result;
use crate::lake::Lake;

/// Options of [`training_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOptions {
    /// Glob of the training CSV files relative to the lake root
    /// (default `training/*.csv`).
    pub csv_glob: String,
    /// `false` (default): fail on the first unparsable value, naming file,
    /// line and column. `true`: route bad rows to [`IngestOutput::rejected`]
    /// and count them in the log and the diagnostics.
    pub reject_bad_rows: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            csv_glob: "training/*.csv".to_string(),
            reject_bad_rows: false,
        }
    }
}

/// Rows rejected from one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedFile {
    /// The file (relative to the lake root).
    pub file: String,
    /// Rows rejected from it.
    pub rows: u64,
}

/// What ingestion found on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestDiagnostics {
    /// The inputs read (files for training, table directories for inference).
    pub sources: Vec<String>,
    /// Rows routed to the rejected output, in total.
    pub rejected_rows: u64,
    /// Rejected rows per file (only files with at least one).
    pub rejected_files: Vec<RejectedFile>,
    /// Inference: data files read over all raw tables.
    pub files_read: usize,
    /// Inference: data files pruned by partition filters, never opened.
    pub files_pruned: usize,
    /// Inference: rows of `samples` (from the footers); the joined table
    /// must have exactly as many.
    pub expected_rows: Option<u64>,
    /// Inference: the raw tables whose keys are not stored in key order
    /// (their duplicates were looked for by a `GROUP BY`); key-range
    /// filters on them cannot skip row groups.
    pub unordered_tables: Vec<String>,
}

/// The result of ingestion: the validated unified (or training) table as a
/// lazy DataFrame, the rejected rows when configured, and diagnostics.
#[derive(Debug)]
pub struct IngestOutput {
    /// The validated table in the reference column order and types.
    pub df: DataFrame,
    /// When not empty: the same table as disjoint key-range slices to be
    /// executed one after another (see [`inference_input_sliced`]), so peak
    /// memory is one slice's. Writers use [`IngestOutput::parts`].
    pub slices: Vec<DataFrame>,
    /// Rows that failed validation (all input columns as text plus
    /// `_source_file` and `_bad_columns`), when `reject_bad_rows` is set.
    pub rejected: Option<DataFrame>,
    /// What was read and rejected.
    pub diagnostics: IngestDiagnostics,
}

impl IngestOutput {
    /// The plans to execute in order to produce the table: the slices when
    /// the table was sliced, otherwise the one plan.
    pub fn parts(&self) -> Vec<DataFrame> {
        if self.slices.is_empty() {
            vec![self.df.clone()]
        } else {
            self.slices.clone()
        }
    }
}

/// Writes a DataFrame as Parquet files under the lake directory `rel`
/// (through the session's object store registry, so any lake works).
pub async fn write_parquet(df: DataFrame, lake: &Lake, rel: &str) -> Result<()> {
    let mut url = lake.table_url(rel);
    if !url.ends_with('/') {
        url.push('/');
    }
    df.write_parquet(&url, DataFrameWriteOptions::new(), None)
        .await?;
    Ok(())
}
