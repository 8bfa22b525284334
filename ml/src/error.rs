//! The one error type of `sluice-ml`, with variants by phase.

use thiserror::Error;

/// Everything that can go wrong in the ML core, grouped by phase.
///
/// Messages name the column, row, parameter or artefact field at fault and
/// what was expected, so a user can act on them without reading the code.
#[derive(Debug, Error)]
pub enum MlError {
    /// Invalid hyperparameters or grid-search configuration.
    #[error("invalid parameter `{param}`: {message}")]
    Params {
        /// camelCase parameter name (as in the pipeline config).
        param: String,
        /// What was wrong and what is accepted.
        message: String,
    },
    /// The input data does not fit what the operation expects
    /// (missing or non-numeric column, length mismatch, bad label, ...).
    #[error("invalid input data: {0}")]
    Data(String),
    /// Training could not produce a model (e.g. a single class in the labels).
    #[error("training failed: {0}")]
    Training(String),
    /// A model artefact could not be written or read back.
    #[error("model artefact: {0}")]
    Artefact(#[from] ArtefactError),
    /// An Arrow kernel failed while reading feature columns.
    #[error("arrow error while reading column `{column}`: {source}")]
    Arrow {
        /// The column being read.
        column: String,
        /// The underlying Arrow error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A model cannot be written in the requested export format.
    #[error("model export: {0}")]
    Export(String),
    /// A broken internal invariant (a bug in `sluice-ml`).
    #[error("internal error (please report): {0}")]
    Internal(String),
}

/// Why a model artefact could not be loaded or stored.
#[derive(Debug, Error)]
pub enum ArtefactError {
    /// The bytes do not start with the Sluice model magic: not a Sluice model file.
    #[error("not a Sluice model artefact: expected magic bytes {expected:?} at offset 0, found {found:?}")]
    Foreign {
        /// The magic bytes that identify a Sluice model.
        expected: String,
        /// What the input started with (lossy UTF-8 of at most 8 bytes).
        found: String,
    },
    /// The artefact was written by a format version this build cannot read.
    #[error(
        "unsupported model artefact format version {found}; this build reads version {supported}"
    )]
    WrongVersion {
        /// Version found in the header.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The artefact is shorter than its header says.
    #[error(
        "truncated model artefact: header declares {expected} payload bytes, only {found} present"
    )]
    Truncated {
        /// Declared length (header + payload).
        expected: u64,
        /// Available bytes.
        found: u64,
    },
    /// The payload does not match its recorded SHA-256 or does not parse.
    #[error("corrupt model artefact: {0}")]
    Corrupt(String),
    /// The artefact could not be serialized.
    #[error("cannot serialize model artefact: {0}")]
    Serialize(String),
}

/// Result alias of this crate.
pub type Result<T, E = MlError> = std::result::Result<T, E>;

impl MlError {
    pub(crate) fn params(param: &str, message: impl Into<String>) -> Self {
        MlError::Params {
            param: param.to_string(),
            message: message.into(),
        }
    }
}
