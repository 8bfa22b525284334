//! The crate's single error type, with variants by phase.

use datafusion::error::DataFusionError;

/// Everything that can go wrong while configuring, planning, fitting or
/// applying a feature pipeline.
///
/// Variants are grouped by the phase in which they are detected; messages name
/// the transform, the column and what was expected so a user can fix the
/// configuration without reading the code.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A transform's parameters are invalid on their own (independent of data),
    /// e.g. an unknown time zone or an empty column list.
    #[error("config error in {transform}: {message}")]
    Config {
        /// Transform name as written in YAML (e.g. `TimeExtractor`).
        transform: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A configured input column does not exist in the input schema.
    #[error(
        "plan error in {transform}: column `{column}` does not exist; available columns: [{available}]"
    )]
    MissingColumn {
        /// Transform name.
        transform: String,
        /// The configured column.
        column: String,
        /// Comma separated list of the columns that do exist.
        available: String,
    },
    /// A configured input column exists but has a type the transform cannot use.
    #[error(
        "plan error in {transform}: column `{column}` has type {found}, expected {expected}; available columns: [{available}]"
    )]
    WrongType {
        /// Transform name.
        transform: String,
        /// The configured column.
        column: String,
        /// What the transform accepts.
        expected: String,
        /// The type found in the schema.
        found: String,
        /// Comma separated list of `name: type` of the existing columns.
        available: String,
    },
    /// A fitted pipeline's state does not match its specs (corrupt or hand-edited
    /// artefact) or a step needs state it was never fitted with.
    #[error("fitted state error in {transform}: {message}")]
    State {
        /// Transform name.
        transform: String,
        /// What is inconsistent.
        message: String,
    },
    /// Fitting a transform failed while running its aggregate query.
    #[error("fit error in {transform} (column `{column}`): {source}")]
    Fit {
        /// Transform name.
        transform: String,
        /// The column being fitted.
        column: String,
        /// The underlying query error.
        #[source]
        source: DataFusionError,
    },
    /// A batch handed to [`crate::assemble`] lacks a feature column or has one
    /// that cannot be cast to Float64.
    #[error("data error: feature column `{column}`: {message}")]
    Data {
        /// The feature column at fault.
        column: String,
        /// What was expected.
        message: String,
    },
    /// (De)serialization of specs or fitted state failed.
    #[error("serialization error: {0}")]
    Serde(String),
    /// An error from DataFusion while building a plan.
    #[error("datafusion error while building the feature plan: {0}")]
    DataFusion(#[from] DataFusionError),
}

impl From<TransformError> for DataFusionError {
    fn from(e: TransformError) -> Self {
        match e {
            TransformError::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
