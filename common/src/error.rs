//! The engine's error type: one enum, variants by phase, messages that name
//! the file, table, column, key or URL at fault.

use std::path::PathBuf;

/// Result alias used across the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine, grouped by phase.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A configuration file or value is invalid.
    #[error("config error in {location}: {message}")]
    Config {
        /// File (and line/column or key) at fault.
        location: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The lake location or one of its objects cannot be used.
    #[error("lake error at {url}: {message}")]
    Lake {
        /// The URL or path at fault (never carries a secret).
        url: String,
        /// What failed and what to check.
        message: String,
    },
    /// Input data does not match the contract.
    #[error("data error in {location}: {message}")]
    Data {
        /// Table, file, line or column at fault.
        location: String,
        /// What was found and what was expected.
        message: String,
    },
    /// Planning a query failed (bad column, bad type, ...).
    #[error("plan error: {0}")]
    Plan(String),
    /// A pipeline step failed.
    #[error("step `{step}` failed: {message}")]
    Step {
        /// The step name.
        step: String,
        /// Why.
        message: String,
    },
    /// Feature transforms failed.
    #[error(transparent)]
    Transform(#[from] sluice_transforms::TransformError),
    /// Model training, evaluation or artefact handling failed.
    #[error(transparent)]
    Ml(#[from] sluice_ml::MlError),
    /// DataFusion reported an error while planning or executing.
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// An Arrow kernel failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Local file I/O failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A Ballista cluster (scheduler or executor process) cannot be reached,
    /// started or stopped.
    #[error("cluster error at {endpoint}: {message}")]
    Cluster {
        /// The host:port, process or state file at fault.
        endpoint: String,
        /// What failed and what to check.
        message: String,
    },
    /// A bug: an invariant the engine relies on did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Shorthand for a [`EngineError::Data`] error.
    pub fn data(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Data {
            location: location.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a [`EngineError::Config`] error.
    pub fn config(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            location: location.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a [`EngineError::Lake`] error.
    pub fn lake(url: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Lake {
            url: url.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a [`EngineError::Cluster`] error.
    pub fn cluster(endpoint: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Cluster {
            endpoint: endpoint.into(),
            message: message.into(),
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<EngineError> for datafusion::error::DataFusionError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::DataFusion(inner) => inner,
            other => datafusion::error::DataFusionError::External(Box::new(other)),
        }
    }
}
