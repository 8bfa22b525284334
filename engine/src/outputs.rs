//! Typed step outputs: what each step commits, as one struct per step.
//!
//! A step serializes its output struct into its manifest (`extra` in
//! `_manifest.json`) and every reader (the next steps, `sluice run`'s
//! summary, the run report, the CLI) reads it back as that type with
//! [`Manifest::output`]. A manifest that does not hold the expected type is
//! an error naming the manifest, never a silently defaulted value.
//!
//! To record one more fact: add a field to the step's struct here, with
//! `#[serde(default)]` when older manifests lack it, set it where the step
//! builds its output (`pipeline/steps.rs`) and read it where it is shown
//! (`report_build.rs`, `cli/`). To add a step's output: a struct with an
//! `impl StepOutput` naming the step.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
pub use sluice_ml::curves::CalibrationBin;
use sluice_ml::{FeatureImportance, Metric, Metrics, ModelKind, ModelSpec};

pub use sluice_report::facts::{
    ClassCounts, EvalCurves, ModelProvenance, ScoreHistogram, StepStatus,
};

use crate::commit::Manifest;
use crate::config::StepName;
use crate::error::{EngineError, Result};

/// A step output type: serialized into the manifest the step commits.
pub trait StepOutput: Serialize + DeserializeOwned {
    /// The step that writes it.
    const STEP: StepName;
}

/// Reading a committed manifest's step output as its type (the manifest
/// itself is the lake's: it knows nothing of steps).
pub trait ManifestOutput {
    /// This manifest's step output read as `T`; an error naming the
    /// manifest when it holds something else (another step's output, an
    /// older incompatible format).
    fn output<T: StepOutput>(&self) -> Result<T>;
}

impl ManifestOutput for Manifest {
    fn output<T: StepOutput>(&self) -> Result<T> {
        T::deserialize(&self.extra).map_err(|e| EngineError::Data {
            location: format!(
                "runs/{}/{}, manifest of `{}`",
                self.pipeline, self.run_id, self.kind
            ),
            message: format!(
                "the committed `{}` output cannot be read by this build: {e}; rerun the step",
                T::STEP
            ),
        })
    }
}

/// Serializes a step output for [`crate::commit::Commit::finish`].
pub fn to_manifest<T: StepOutput>(out: &T) -> Result<serde_json::Value> {
    serde_json::to_value(out).map_err(|e| {
        EngineError::Internal(format!("serializing the `{}` step output: {e}", T::STEP))
    })
}

/// `ingest`: the unified table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestOutput {
    /// Rows written.
    pub rows: u64,
    /// Rows routed to `rejected/` (`reject_bad_rows: true`), if enabled.
    #[serde(default)]
    pub rejected_rows: Option<u64>,
    /// Number of join slices the inference join ran as (when more than one).
    #[serde(default)]
    pub join_slices: Option<usize>,
    /// Inference, `materialize` not `true`: the join was checked but not
    /// written; the next steps run it inside their own plans, in these
    /// `device_id` slices. `rows` is then the row count of `samples`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<crate::ingest::DeferredJoin>,
}

impl StepOutput for IngestOutput {
    const STEP: StepName = StepName::Ingest;
}

/// A registry model version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Registry name.
    pub name: String,
    /// Version, e.g. `v0003`.
    pub version: String,
}

/// `features`: the feature table (or only its fitted state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeaturesOutput {
    /// Rows of the feature table.
    pub rows: u64,
    /// Feature columns, in model order.
    pub feature_names: Vec<String>,
    /// Inference: the model whose fitted state was applied.
    #[serde(default)]
    pub model: Option<ModelRef>,
    /// Whether the table was written (`false`: predict computes it).
    pub materialized: bool,
    /// `device_id` range slices the chain ran as.
    pub slices: usize,
}

impl StepOutput for FeaturesOutput {
    const STEP: StepName = StepName::Features;
}

/// Serializes NaN (an undefined score) as `null` and reads `null` back as NaN.
pub mod nan_null {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a finite number, or `null`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Reads a number, or `null` as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// One grid point's cross-validated score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvPoint {
    /// The grid values of this point (Spark parameter names).
    pub params: BTreeMap<String, serde_json::Value>,
    /// Mean score over the folds.
    #[serde(with = "nan_null")]
    pub mean: f64,
    /// Standard deviation of the fold scores.
    #[serde(with = "nan_null")]
    pub std: f64,
    /// Score of each fold.
    #[serde(default)]
    pub fold_scores: Vec<f64>,
}

/// A grid search with cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvOutput {
    /// The metric the points were scored by.
    pub metric: Metric,
    /// Number of folds (0: one holdout split).
    pub folds: usize,
    /// Every grid point, in grid order.
    pub points: Vec<CvPoint>,
    /// Index of the best point in `points`.
    pub best_index: usize,
}

impl CvOutput {
    /// The summary of a grid search's points.
    pub fn of(
        metric: Metric,
        folds: usize,
        points: &[sluice_ml::GridPoint],
        best_index: usize,
    ) -> Self {
        CvOutput {
            metric,
            folds,
            points: points
                .iter()
                .map(|p| CvPoint {
                    params: p.params.clone(),
                    mean: p.mean_score,
                    std: p.std_score,
                    fold_scores: p.fold_scores.clone(),
                })
                .collect(),
            best_index,
        }
    }

    /// The best point.
    pub fn best(&self) -> Option<&CvPoint> {
        self.points.get(self.best_index)
    }
}

/// Where a distributed fit spent its time (`engine.mode: ballista`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributedSummary {
    /// Training rows.
    pub rows: u64,
    /// Seconds for stats, bin edges, the binned table and the holdout.
    pub prepare_seconds: f64,
    /// The same, step by step.
    #[serde(default)]
    pub prepare: crate::dtrain::PrepareTiming,
    /// Aggregate passes over the binned table.
    pub passes: usize,
    /// Seconds in all passes.
    pub pass_seconds_total: f64,
    /// Mean seconds per pass.
    pub pass_seconds_mean: f64,
    /// One entry per pass.
    pub per_pass: Vec<crate::dtrain::PassTiming>,
    /// Queries run again after they were lost with a cluster process
    /// (`"<what>: <error>"`, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<String>,
    /// The grid search on the executors that chose the parameters (`passes`
    /// and `per_pass` are then the final refit's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSummary>,
}

/// What a grid search with cross-validation on the executors cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SearchSummary {
    /// Distributed fits for the fold scores (grid points × folds, forests
    /// sharing their largest fit).
    pub fits: usize,
    /// Rounds of level passes of those fits (each round scans the next
    /// level of every fit still growing).
    pub passes: usize,
    /// Queries of those rounds.
    #[serde(default)]
    pub queries: usize,
    /// Seconds in those rounds.
    pub pass_seconds: f64,
    /// Seconds scoring the folds' rows on the executors.
    pub scoring_seconds: f64,
}

/// `train/<model>`: one trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutput {
    /// The model's name in the config (`gbt`, `rf`, ...).
    pub model: String,
    /// Model family.
    pub kind: ModelKind,
    /// The parameters of the fitted model (the best grid point's, with a grid).
    pub params: ModelSpec,
    /// Training rows.
    pub train_rows: u64,
    /// Training rows per class (recorded for models trained on the driver).
    #[serde(default)]
    pub class_balance: Option<ClassCounts>,
    /// Wall-clock seconds (grid search included).
    pub seconds: f64,
    /// Grid search and cross-validation, when configured.
    #[serde(default)]
    pub cv: Option<CvOutput>,
    /// Per-feature split gain and split count.
    pub importance: Vec<FeatureImportance>,
    /// Trees in the model.
    #[serde(default)]
    pub trees: usize,
    /// Set when the model trained on the executors.
    #[serde(default)]
    pub distributed: Option<DistributedSummary>,
}

impl StepOutput for TrainOutput {
    const STEP: StepName = StepName::Train;
}

/// One model's evaluation on the held-out split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvaluation {
    /// Every metric, the confusion matrix and the ROC curve.
    pub metrics: Metrics,
    /// PR curve, calibration, score histogram, learning curve.
    #[serde(default)]
    pub curves: EvalCurves,
}

/// `evaluate`: every trained model scored on the held-out split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateOutput {
    /// The metric that picks the best model.
    pub metric: Metric,
    /// Decision threshold on the indoor probability.
    pub threshold: f64,
    /// Held-out rows.
    pub test_rows: u64,
    /// Held-out rows per class.
    #[serde(default)]
    pub test_balance: ClassCounts,
    /// Per model (config name).
    pub models: BTreeMap<String, ModelEvaluation>,
    /// The best model's name.
    pub best: String,
    /// The best model's value of `metric`.
    #[serde(with = "nan_null")]
    pub best_score: f64,
}

impl StepOutput for EvaluateOutput {
    const STEP: StepName = StepName::Evaluate;
}

/// `deploy`: the published registry version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployOutput {
    /// Registry name.
    pub name: String,
    /// The new version.
    pub version: String,
    /// Which trained model it is (config name).
    pub model: String,
    /// The metric the model was chosen on.
    pub metric: Metric,
    /// Its value on the held-out split.
    #[serde(with = "nan_null")]
    pub value: f64,
}

impl StepOutput for DeployOutput {
    const STEP: StepName = StepName::Deploy;
}

/// Predictions scored against `truth/labels/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    /// Predictions that had a truth label.
    pub rows: u64,
    /// Metrics, confusion matrix and ROC against truth.
    pub metrics: Metrics,
    /// PR curve, calibration and histograms against truth.
    #[serde(default)]
    pub curves: EvalCurves,
}

/// `predict`: the predictions table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictOutput {
    /// Prediction rows (one per input sample).
    pub rows: u64,
    /// Lake-relative directory of the predictions (`predictions/run=<id>`).
    pub predictions: String,
    /// The model used.
    pub model: ModelProvenance,
    /// Decision threshold applied.
    pub threshold: f64,
    /// Rows predicted indoor.
    #[serde(default)]
    pub predicted_indoor: u64,
    /// Predicted probabilities in 20 equal-width bins.
    #[serde(default)]
    pub probability_histogram: Vec<u64>,
    /// Scored against truth labels, when the lake has them.
    #[serde(default)]
    pub scoring: Option<Scoring>,
    /// The input's drift check against the model's reference profile, when
    /// the model has one (also written as the run's `drift.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<sluice_ml::drift::DriftReport>,
}

impl StepOutput for PredictOutput {
    const STEP: StepName = StepName::Predict;
}

/// The facts `sluice run` prints at the end, from the typed outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The evaluation of a training run.
    #[serde(default)]
    pub evaluation: Option<EvaluateOutput>,
    /// The version a training run deployed.
    #[serde(default)]
    pub deployed: Option<DeployOutput>,
    /// The predictions of an inference run.
    #[serde(default)]
    pub predictions: Option<PredictOutput>,
    /// Full URL of the predictions directory.
    #[serde(default)]
    pub predictions_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: serde_json::Value) -> Manifest {
        Manifest {
            format: crate::commit::MANIFEST_FORMAT.into(),
            kind: "step:deploy".into(),
            pipeline: "p".into(),
            run_id: "r1".into(),
            params: serde_json::json!({}),
            params_fingerprint: String::new(),
            inputs: vec![],
            files: vec![],
            rows: None,
            schema: None,
            started_at: String::new(),
            finished_at: String::new(),
            seconds: 0.0,
            extra,
        }
    }

    #[test]
    fn outputs_round_trip_through_the_manifest() {
        let d = DeployOutput {
            name: "io".into(),
            version: "v0001".into(),
            model: "gbt".into(),
            metric: Metric::Auc,
            value: 0.97,
        };
        let m = manifest(to_manifest(&d).unwrap());
        assert_eq!(m.output::<DeployOutput>().unwrap(), d);
    }

    #[test]
    fn a_manifest_of_another_step_is_an_error_naming_it() {
        let m = manifest(serde_json::json!({"rows": 3}));
        let e = m.output::<DeployOutput>().unwrap_err().to_string();
        assert!(
            e.contains("runs/p/r1") && e.contains("step:deploy") && e.contains("`deploy`"),
            "{e}"
        );
    }

    #[test]
    fn status_names() {
        assert_eq!(
            serde_json::to_string(&StepStatus::NotSelected).unwrap(),
            "\"not_selected\""
        );
        assert_eq!(StepStatus::Skipped.to_string(), "skipped");
    }
}
