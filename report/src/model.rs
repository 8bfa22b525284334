//! The plain-data shape of a run report.
//!
//! The pipeline fills a [`RunReport`] from the steps' typed outputs
//! ([`crate::facts`]); nothing here depends on DataFusion, so the report
//! can be written (and read back from `report.json`) by any tool. Floating-point fields that may be
//! undefined (an AUC on a single-class split, a log-loss without
//! probabilities) are `Option<f64>`; a NaN or infinite value is written to
//! JSON as `null` and read back as `None` (or NaN for plain `f64` fields).

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::facts::StepStatus;
use crate::facts::{ClassCounts, EvalCurves, ModelProvenance};

/// Everything shown in `report.html` and written to `report.json` for one
/// pipeline run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunReport {
    /// Pipeline name from the config.
    pub pipeline: String,
    /// `training` or `inference`.
    pub kind: String,
    /// Unique id of this run (the directory name under `runs/<pipeline>/`).
    pub run_id: String,
    /// Path of the config file the run was started from.
    pub config_path: String,
    /// Lake URL; credentials in it are redacted when the report is rendered.
    pub lake_url: String,
    /// Engine mode, e.g. `embedded` or `ballista df://scheduler:50050`.
    pub engine: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// End time (RFC 3339).
    pub finished_at: String,
    /// Every step of the pipeline in execution order, skipped ones included.
    pub steps: Vec<StepReport>,
    /// The competing models (empty for an inference run).
    pub models: Vec<ModelReport>,
    /// The model deployed by a training run, or used by an inference run.
    pub deployed: Option<DeployedModel>,
    /// Inference predictions scored against truth labels, when present.
    pub scoring: Option<MetricSet>,
    /// Warnings collected during the run, shown prominently.
    pub warnings: Vec<String>,
    /// The step that failed and its error, for a failed run.
    pub failure: Option<Failure>,
    /// Training data: sizes and class balance of the train/test split.
    pub data: Option<DataReport>,
    /// Inference: the model used, where the predictions went, their distribution.
    pub inference: Option<InferenceReport>,
    /// Inference predictions against truth labels: confusion, ROC and curves.
    pub truth: Option<TruthReport>,
    /// The inference input's drift check, when it ran.
    pub drift: Option<crate::DriftSection>,
}

/// Why a run stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Failure {
    /// The failing step.
    pub step: String,
    /// Its error message.
    pub error: String,
}

/// The training table as the models saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataReport {
    /// Rows of the ingested table.
    pub ingested_rows: Option<u64>,
    /// Rows routed to `rejected/` by ingest.
    pub rejected_rows: Option<u64>,
    /// Feature columns.
    pub features: usize,
    /// Training rows per class (held-out devices excluded).
    pub train: Option<ClassCounts>,
    /// Held-out rows per class.
    pub test: Option<ClassCounts>,
}

/// What an inference run produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InferenceReport {
    /// The registry version used and the training run it came from.
    pub model: ModelProvenance,
    /// Full URL of the predictions directory (credentials redacted).
    pub predictions: String,
    /// Prediction rows.
    pub rows: u64,
    /// Rows predicted indoor at the threshold.
    pub predicted_indoor: u64,
    /// Decision threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub threshold: f64,
    /// Predicted probabilities in equal-width bins over `[0, 1]`.
    pub probability_histogram: Vec<u64>,
}

/// Predictions scored against truth labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TruthReport {
    /// Confusion matrix at the decision threshold.
    pub confusion: Confusion,
    /// ROC curve against truth.
    pub roc: Vec<(f64, f64)>,
    /// PR curve, calibration and histograms against truth.
    pub curves: EvalCurves,
}

/// One pipeline step: status, wall-clock time and row counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepReport {
    /// Step name (`ingest`, `features`, `train`, ...).
    pub name: String,
    /// Whether the step ran, was skipped or failed.
    pub status: StepStatus,
    /// Wall-clock seconds spent in the step.
    #[serde(deserialize_with = "f64_or_nan")]
    pub seconds: f64,
    /// Rows read, when the step reads a table.
    pub rows_in: Option<u64>,
    /// Rows written, when the step writes a table.
    pub rows_out: Option<u64>,
    /// Where the step wrote its output in the lake.
    pub output: Option<String>,
}

/// Evaluation metrics of a binary classifier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricSet {
    /// Number of rows the metrics were computed on.
    pub samples: Option<u64>,
    /// Fraction of correct predictions.
    pub accuracy: Option<f64>,
    /// Support-weighted precision over both classes.
    pub weighted_precision: Option<f64>,
    /// Support-weighted recall over both classes.
    pub weighted_recall: Option<f64>,
    /// Support-weighted F1 over both classes.
    pub f1: Option<f64>,
    /// Area under the ROC curve.
    pub auc: Option<f64>,
    /// Area under the precision-recall curve.
    pub pr_auc: Option<f64>,
    /// Mean binary cross-entropy of the predicted probabilities.
    pub log_loss: Option<f64>,
}

impl MetricSet {
    /// `(label, value, higher_is_better)` for every metric, in display order.
    pub fn entries(&self) -> [(&'static str, Option<f64>, bool); 7] {
        [
            ("accuracy", self.accuracy, true),
            ("weighted precision", self.weighted_precision, true),
            ("weighted recall", self.weighted_recall, true),
            ("F1", self.f1, true),
            ("AUC", self.auc, true),
            ("PR AUC", self.pr_auc, true),
            ("log-loss", self.log_loss, false),
        ]
    }
}

/// A 2×2 confusion matrix; the positive class is `1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Confusion {
    /// Actual 0, predicted 0.
    pub tn: u64,
    /// Actual 0, predicted 1.
    pub fp: u64,
    /// Actual 1, predicted 0.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Actual 1, predicted 1.
    pub tp: u64,
}

impl Confusion {
    /// Total number of predictions counted.
    pub fn total(&self) -> u64 {
        self.tn + self.fp + self.fn_ + self.tp
    }
}

/// Importance of one feature in a tree model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Importance {
    /// Feature name.
    pub name: String,
    /// Total loss reduction of all splits on the feature.
    #[serde(deserialize_with = "f64_or_nan")]
    pub gain: f64,
    /// Number of splits on the feature.
    pub splits: u64,
}

/// One point of a hyper-parameter grid with its cross-validated score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GridPoint {
    /// The parameters, normally a JSON object `{"max_depth": 6, ...}`.
    pub params: serde_json::Value,
    /// Mean score over the folds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean: f64,
    /// Standard deviation of the score over the folds.
    #[serde(deserialize_with = "f64_or_nan")]
    pub std: f64,
    /// Score of each fold.
    pub fold_scores: Vec<f64>,
}

/// One trained model and how it scored on the held-out split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelReport {
    /// Display name, e.g. `gbt`.
    pub name: String,
    /// Model family, e.g. `gradient boosted trees`.
    pub kind: String,
    /// Held-out metrics.
    pub metrics: MetricSet,
    /// ROC curve as `(false positive rate, true positive rate)` points.
    pub roc: Vec<(f64, f64)>,
    /// Held-out confusion matrix at the decision threshold.
    pub confusion: Confusion,
    /// Per-feature importance (any order; the report sorts by gain).
    pub feature_importance: Vec<Importance>,
    /// Grid-search results (empty when no grid was configured).
    pub grid: Vec<GridPoint>,
    /// The parameters finally used (the grid's best point, or the fixed ones).
    pub best_params: serde_json::Value,
    /// Name of the grid-search score, e.g. `auc` (shown in the grid table).
    pub grid_metric: String,
    /// Wall-clock seconds spent training (grid search included).
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_seconds: f64,
    /// Every parameter of the fitted model (the best grid point's).
    pub params: serde_json::Value,
    /// Training rows.
    pub train_rows: Option<u64>,
    /// Trees in the model.
    pub trees: Option<usize>,
    /// PR curve, calibration, score histogram and learning curve (held-out).
    pub curves: EvalCurves,
}

/// The model a training run deployed, or an inference run used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeployedModel {
    /// Registry name.
    pub name: String,
    /// Registry version.
    pub version: String,
    /// Which model was deployed (a [`ModelReport::name`]).
    pub model: String,
    /// The metric the choice was made on.
    pub metric: String,
    /// The winning value of that metric.
    #[serde(deserialize_with = "f64_or_nan")]
    pub value: f64,
}

/// Reads a number, or `null` (how serde_json writes NaN) as NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}
