//! # sluice-ml: the ML core of Sluice
//!
//! Owns binning, mergeable histograms, the histogram tree learner, gradient
//! boosting (binary logistic loss) and random forests, model selection (grid
//! search with stratified k-fold CV), metrics, the model artefact format and
//! vectorized prediction over Arrow. It does no I/O and parses no config: it
//! gets structs and bytes.
//!
//! ```
//! use sluice_ml::{evaluate, train, FeatureMatrix, GbtParams, ModelSpec};
//! let x: Vec<f64> = (0..200).map(|i| i as f64).collect();
//! let y: Vec<u8> = (0..200).map(|i| (i >= 100) as u8).collect();
//! let m = FeatureMatrix::new(vec!["x".into()], vec![x]).unwrap();
//! let model = train(&ModelSpec::Gbt(GbtParams::default()), &m, &y).unwrap();
//! let p = model.predict_proba(&m).unwrap();
//! assert_eq!(evaluate(&y, &p, 0.5).accuracy, 1.0);
//! ```
//!
//! ## Adding a model family
//! Add a params struct (camelCase serde, Spark names) and a `ModelSpec`
//! variant in [`params`], a fitting loop that turns the rows into per-row
//! [`Targets`] and calls [`learner::grow_trees`] (see `gbt.rs`, `forest.rs`),
//! and a [`ModelKind`] with its output transform in `model.rs`.
//!
//! ## Distributed training
//! The learner only talks to a [`HistogramSource`]; [`Histogram`] and
//! [`BinEdges`] are plain serializable structs whose partial states merge by
//! addition, so a DataFusion UDAF (in `distributed/`, owned separately) can
//! compute them on executors.

pub mod artefact;
pub mod binning;
pub mod curves;
pub mod distributed;
pub mod drift;
pub mod error;
pub mod export;
mod forest;
mod gbt;
pub mod grower;
pub mod histogram;
pub mod learner;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod params;
pub mod progress;
pub mod sampling;
pub mod selection;
pub mod shap;
pub mod synthetic;
pub mod tree;

pub use artefact::{ModelArtefact, FORMAT_VERSION};
pub use binning::{BinEdges, BinnedMatrix, FeatureBins};
pub use error::{ArtefactError, MlError};
pub use export::{export, ExportFormat};
pub use histogram::{
    BinStats, Histogram, HistogramSource, LocalHistogramSource, NodeRequest, Targets,
};
pub use matrix::FeatureMatrix;
pub use metrics::{evaluate, ConfusionMatrix, Metric, Metrics};
pub use model::{train, train_with_progress, FeatureImportance, ModelKind, TrainedModel};
pub use params::{FeatureSubsetStrategy, GbtParams, Impurity, ModelSpec, RfParams};
pub use progress::{Progress, TrainEvent};
pub use selection::{
    expand_grid, fold_blocks, grid_search, grid_search_with_progress, plan_fits, score_points,
    split_train_test, stratified_folds, Fit, GridPoint, GridSearchConfig, GridSearchResult,
    FOLD_STREAM, HOLDOUT_FRACTION,
};
pub use tree::{FlatTree, Node, RowBlock, RowLayout, Tree};
