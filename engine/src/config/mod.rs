//! Pipeline configuration: the YAML schema (unknown keys rejected), `${VAR}`
//! substitution from the environment, and validation with errors that name
//! the file, line and column.
//!
//! Each key is declared once below, with its default and its doc;
//! `docs/CONFIG.md` embeds the reference generated from these declarations
//! ([`reference`], `sluice config docs`).

mod env;
mod locate;
pub mod reference;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::session::{EngineMode, EngineSettings};

pub use env::substitute_env;
pub use locate::locate_key;
use locate::{at_key_line, key_path, refine_location, secret_hint};
pub use validate::{validate, validate_grid};

/// The kind of pipeline: which inputs it reads and which steps it may run.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineKind {
    /// CSV union → features (fit) → train → evaluate → deploy.
    Training,
    /// Seven-table join → features (deployed state) → predict.
    Inference,
}

/// A whole pipeline config file.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Pipeline name; run outputs go to `<lake>/runs/<name>/<run_id>/`.
    pub name: String,
    /// `training` or `inference`.
    pub kind: PipelineKind,
    /// Lake location: a path (`./lake`), `file://`,
    /// `abfss://<container>@<account>.dfs.core.windows.net/<path>`, `az://`,
    /// `s3://` or `gs://` (credentials from the environment, docs/LAKE.md;
    /// `--lake` or `SLUICE_LAKE` override it).
    pub lake: String,
    /// Where plans run (default: embedded).
    #[serde(default)]
    pub engine: EngineSettings,
    /// The steps, in order: a training pipeline runs ingest, features,
    /// train, evaluate, deploy; an inference pipeline ingest, features,
    /// predict.
    pub steps: Vec<StepConfig>,
}

/// One step and its parameters, tagged by `step:`.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum StepConfig {
    /// Read and validate the input (CSV union or seven-table join).
    Ingest(IngestStep),
    /// Feature engineering (fit on training data, or apply the deployed state).
    Features(FeaturesStep),
    /// Train the configured models (with grid search and CV if configured).
    Train(TrainStep),
    /// Evaluate the trained models on the held-out split.
    Evaluate(EvaluateStep),
    /// Publish the best model into the registry.
    Deploy(DeployStep),
    /// Predict with a registered model and write predictions.
    Predict(PredictStep),
}

/// The stable names of steps (CLI `--steps`, `--from`, lake directories).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    /// See [`StepConfig::Ingest`].
    Ingest,
    /// See [`StepConfig::Features`].
    Features,
    /// See [`StepConfig::Train`].
    Train,
    /// See [`StepConfig::Evaluate`].
    Evaluate,
    /// See [`StepConfig::Deploy`].
    Deploy,
    /// See [`StepConfig::Predict`].
    Predict,
}

impl StepName {
    /// The name as written in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Ingest => "ingest",
            StepName::Features => "features",
            StepName::Train => "train",
            StepName::Evaluate => "evaluate",
            StepName::Deploy => "deploy",
            StepName::Predict => "predict",
        }
    }

    /// Names joined by `", "`, for error messages that list steps.
    pub fn list(names: &[StepName]) -> String {
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parses a step name, listing the valid ones on error.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "ingest" => StepName::Ingest,
            "features" => StepName::Features,
            "train" => StepName::Train,
            "evaluate" => StepName::Evaluate,
            "deploy" => StepName::Deploy,
            "predict" => StepName::Predict,
            other => {
                return Err(EngineError::config(
                    "--steps",
                    format!("unknown step `{other}`; expected one of ingest, features, train, evaluate, deploy, predict"),
                ))
            }
        })
    }
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StepConfig {
    /// This step's name.
    pub fn name(&self) -> StepName {
        match self {
            StepConfig::Ingest(_) => StepName::Ingest,
            StepConfig::Features(_) => StepName::Features,
            StepConfig::Train(_) => StepName::Train,
            StepConfig::Evaluate(_) => StepName::Evaluate,
            StepConfig::Deploy(_) => StepName::Deploy,
            StepConfig::Predict(_) => StepName::Predict,
        }
    }
}

fn default_csv_glob() -> String {
    "training/*.csv".into()
}

/// `step: ingest`.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(title = "IngestStep")]
pub struct IngestStep {
    /// Training input: glob of the labelled CSV files, relative to the lake.
    #[serde(default = "default_csv_glob")]
    pub csv_glob: String,
    /// Route unparsable CSV rows to `rejected/` (counted) instead of failing.
    #[serde(default)]
    pub reject_bad_rows: bool,
    /// Inference input: run the seven-table join as this many `sample_id`
    /// range slices, one after another. Default: as many as needed for the
    /// join's hash tables to fit 40 % of `engine.memory_limit` (one without
    /// a limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_slices: Option<usize>,
    /// Inference input: Hive partition filters (`date=2026-11-28` or
    /// `date=2026-11-01..2026-11-07`, inclusive) applied to every raw table
    /// partitioned by the key, before any file is opened. `sluice run
    /// --partition` sets them from the command line. Predictions of a run
    /// with one single-value filter per key go to
    /// `predictions/<key>=<value>/`, replaced atomically by a rerun; `sluice
    /// run` runs a range once per value found in `raw/samples/`, in order
    /// (docs/DATA.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<crate::ingest::PartitionFilter>,
    /// Inference input: rows outside the contract's value bounds (latitude,
    /// longitude, accuracy, speed, signal levels, timestamps in the future):
    /// `fail` names file, column, `sample_id` and value; `reject` routes
    /// them to `ingest/rejected/` (counted) and predicts the other samples;
    /// `off` skips the check. Default `fail`: the check is a pass-through
    /// projection on each raw table's scan inside the join's own pass.
    #[serde(default, skip_serializing_if = "is_default_checks")]
    pub value_checks: crate::ingest::ValueChecks,
    /// Inference input: write the unified table to the lake (`true`), or
    /// check the raw tables and leave the join to the next steps' plans
    /// (`false`): `features` and `predict` then run the join, the feature
    /// chain and the model as one plan per `device_id` slice, and no
    /// unified table is written and read back. Default: `false` when the
    /// run also runs the features step, the samples' ids are grouped by
    /// device (each slice then reads only its own key range of the
    /// per-sample tables) and `value_checks` is not `reject`; `true`
    /// otherwise. Training always writes its table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub materialize: Option<bool>,
}

fn is_default_checks(v: &crate::ingest::ValueChecks) -> bool {
    *v == crate::ingest::ValueChecks::default()
}

/// The feature chain: `default` (the reference chain) or an explicit list.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TransformsConfig {
    /// The word `default`.
    Named(String),
    /// An explicit list of transforms (`- name: LagCalculator  params: {...}`).
    List(Vec<sluice_transforms::TransformSpec>),
}

impl Default for TransformsConfig {
    fn default() -> Self {
        TransformsConfig::Named("default".into())
    }
}

/// `step: features`.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(title = "FeaturesStep")]
pub struct FeaturesStep {
    /// The transform chain (training only; inference applies the deployed
    /// model's fitted chain).
    #[serde(default)]
    pub transforms: TransformsConfig,
    /// Write the feature table to the lake (default). `false` commits only
    /// the fitted state and a manifest; the next step (`predict`) then
    /// computes the features from the ingest output inside its own plan,
    /// which saves writing and reading one Float64 column per feature.
    /// Training needs the table (train and evaluate read it), so `false` is
    /// refused there.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub materialize: bool,
    /// Run the chain as this many `device_id` range slices, one after
    /// another (each sorts only its slice for the lag/lead windows).
    /// Default: as many as needed for the table to fit 40 % of
    /// `engine.memory_limit` (one without a limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slices: Option<usize>,
}

impl Default for FeaturesStep {
    fn default() -> Self {
        Self {
            transforms: TransformsConfig::default(),
            materialize: true,
            slices: None,
        }
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_test_fraction() -> f64 {
    0.2
}
fn default_seed() -> u64 {
    42
}

/// Cross-validation settings of one model.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvConfig {
    /// Number of folds (stratified, seeded).
    pub folds: usize,
    /// Metric to select the best grid point: `auc`, `accuracy` or `f1`.
    #[serde(default = "default_metric")]
    pub metric: sluice_ml::Metric,
    /// Grid points trained at once (default: all cores).
    #[serde(default)]
    pub parallelism: Option<usize>,
}

fn default_metric() -> sluice_ml::Metric {
    sluice_ml::Metric::Auc
}

/// One model to train.
///
/// Read through [`RawModelConfig`] so unknown keys are rejected (serde's
/// `deny_unknown_fields` does not work across a flattened enum) and `params`
/// may be left out (Spark's defaults).
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawModelConfig", into = "RawModelConfig")]
pub struct ModelConfig {
    /// A name unique in the pipeline (`gbt`, `rf`, ...).
    pub name: String,
    /// `gbt` or `random_forest`, with Spark-named parameters under `params`.
    pub spec: ModelSpecConfig,
    /// Parameter grid: Spark parameter name → list of values.
    pub grid: BTreeMap<String, Vec<serde_json::Value>>,
    /// K-fold cross-validation for the grid search.
    pub cv: Option<CvConfig>,
}

impl ModelConfig {
    /// The grid search of this model's grid and cross-validation, folds
    /// seeded by `seed` (the train step's).
    pub fn search_config(&self, seed: u64) -> sluice_ml::GridSearchConfig {
        sluice_ml::GridSearchConfig {
            folds: self.cv.as_ref().map(|c| c.folds).unwrap_or(0),
            metric: self
                .cv
                .as_ref()
                .map(|c| c.metric)
                .unwrap_or(sluice_ml::Metric::Auc),
            seed,
            grid: self.grid.clone(),
            parallelism: self.cv.as_ref().and_then(|c| c.parallelism),
        }
    }
}

/// A model entry as written in YAML.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelConfig {
    /// A name unique in the pipeline.
    pub name: String,
    /// `gbt` or `random_forest`.
    #[serde(rename = "type")]
    pub model_type: String,
    /// Spark-named parameters; missing ones take Spark's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "reference::model_params_schema")]
    pub params: Option<serde_json::Value>,
    /// Parameter grid.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grid: BTreeMap<String, Vec<serde_json::Value>>,
    /// Cross-validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<CvConfig>,
}

impl TryFrom<RawModelConfig> for ModelConfig {
    type Error = String;

    fn try_from(r: RawModelConfig) -> std::result::Result<Self, String> {
        let params = r.params.unwrap_or_else(|| serde_json::json!({}));
        // The error starts with the key path inside the model entry
        // (`params.numTrees: ...`), which `parse` joins to the step's path.
        fn typed<T: serde::de::DeserializeOwned>(
            params: serde_json::Value,
            name: &str,
        ) -> std::result::Result<T, String> {
            serde_path_to_error::deserialize(params).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    format!("params: {inner} (model `{name}`)")
                } else {
                    format!("params.{path}: {inner} (model `{name}`)")
                }
            })
        }
        let spec = match r.model_type.as_str() {
            "gbt" => ModelSpecConfig::Gbt(typed(params, &r.name)?),
            "random_forest" => ModelSpecConfig::RandomForest(typed(params, &r.name)?),
            other => {
                return Err(format!(
                    "type: unknown model type `{other}`; expected `gbt` or `random_forest` (model `{}`)",
                    r.name
                ))
            }
        };
        Ok(ModelConfig {
            name: r.name,
            spec,
            grid: r.grid,
            cv: r.cv,
        })
    }
}

impl From<ModelConfig> for RawModelConfig {
    fn from(m: ModelConfig) -> Self {
        // Parameter structs of plain numbers and strings always serialize.
        let (model_type, params) = match &m.spec {
            ModelSpecConfig::Gbt(p) => ("gbt", serde_json::to_value(p).ok()),
            ModelSpecConfig::RandomForest(p) => ("random_forest", serde_json::to_value(p).ok()),
        };
        RawModelConfig {
            name: m.name,
            model_type: model_type.to_string(),
            params,
            grid: m.grid,
            cv: m.cv,
        }
    }
}

/// The model type and its base parameters.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "params", rename_all = "snake_case")]
pub enum ModelSpecConfig {
    /// Gradient-boosted trees.
    Gbt(sluice_ml::GbtParams),
    /// Random forest.
    RandomForest(sluice_ml::RfParams),
}

impl ModelSpecConfig {
    /// The ML crate's model spec.
    pub fn to_spec(&self) -> sluice_ml::ModelSpec {
        match self {
            ModelSpecConfig::Gbt(p) => sluice_ml::ModelSpec::Gbt(p.clone()),
            ModelSpecConfig::RandomForest(p) => sluice_ml::ModelSpec::RandomForest(p.clone()),
        }
    }
}

/// `step: train`.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(title = "TrainStep")]
pub struct TrainStep {
    /// Fraction of rows held out for evaluation (stratified).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Seed for the split, folds and models.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Train the models in parallel (default true).
    #[serde(default = "default_true")]
    pub parallel: bool,
    /// With `engine.mode: ballista`, train the models on the executors
    /// (histograms as aggregates where the data lives; the driver only picks
    /// splits); models with `grid`/`cv` too once the features table has
    /// `search_min_rows` rows. Default true; `false` trains every model on
    /// the driver. Embedded engines always train on the driver.
    #[serde(default = "default_true")]
    pub distributed: bool,
    /// With `distributed`, the features table's row count from which a
    /// model with `grid`/`cv` searches on the executors (default
    /// 5,000,000: about 1.6 GB of features at 40 columns, where the driver's
    /// matrix starts to weigh); below it the driver's search, which shares
    /// more work across folds and grid points, is faster. `0`: always on
    /// the executors.
    #[serde(default = "default_search_min_rows")]
    pub search_min_rows: u64,
    /// The competing models.
    pub models: Vec<ModelConfig>,
}

fn default_true() -> bool {
    true
}
fn default_search_min_rows() -> u64 {
    5_000_000
}
fn default_threshold() -> f64 {
    0.5
}

/// `step: evaluate`.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(title = "EvaluateStep")]
pub struct EvaluateStep {
    /// Metric that picks the best model.
    #[serde(default = "default_metric")]
    pub metric: sluice_ml::Metric,
    /// Decision threshold on the indoor probability.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

/// `step: deploy`.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(title = "DeployStep")]
pub struct DeployStep {
    /// Registry name: the model goes to `<lake>/models/<model_name>/<version>/`.
    pub model_name: String,
    /// Only deploy when the best model's selection metric reaches this value.
    #[serde(default)]
    pub min_metric: Option<f64>,
}

/// `step: predict`.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[schemars(title = "PredictStep")]
pub struct PredictStep {
    /// Registry name of the model.
    pub model_name: String,
    /// `latest` (default) or a pinned version such as `v0003`.
    #[serde(default = "default_latest")]
    pub version: String,
    /// Decision threshold (default: the one stored with the model).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Drift check against the model's reference profile: a feature (or the
    /// predicted probability) whose PSI reaches `psi_warn` is reported as
    /// `warn`, `psi_fail` marks the run as drifted (`drift.json`; exit code
    /// 3 with `exit_on_drift: true`). Default `{psi_warn: 0.1, psi_fail: 0.25}`.
    #[serde(default)]
    pub drift: sluice_ml::drift::DriftThresholds,
    /// Write the `k` largest exact TreeSHAP contributions of each prediction
    /// beside it (column `explanation`: a list of `{feature, contribution}`,
    /// log-odds for GBT, probability for forests). Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<usize>,
}

fn default_latest() -> String {
    "latest".into()
}

/// A loaded config: the parsed value, its file and the raw text (with the
/// `${VAR}` references, never the substituted secrets).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed, validated config.
    pub config: PipelineConfig,
    /// Where it came from.
    pub path: String,
    /// The text as written (safe to record: secrets are `${VAR}` references).
    pub raw: String,
}

impl PipelineConfig {
    /// The `ingest` step, if the pipeline has one.
    pub fn ingest(&self) -> Option<&IngestStep> {
        self.steps.iter().find_map(|s| match s {
            StepConfig::Ingest(i) => Some(i),
            _ => None,
        })
    }

    /// The `ingest` step, to change (`--partition` replaces its filters).
    pub fn ingest_mut(&mut self) -> Option<&mut IngestStep> {
        self.steps.iter_mut().find_map(|s| match s {
            StepConfig::Ingest(i) => Some(i),
            _ => None,
        })
    }

    /// The ingest step's partition filters (empty without any).
    pub fn partition_filters(&self) -> &[crate::ingest::PartitionFilter] {
        self.ingest().map_or(&[], |i| i.partitions.as_slice())
    }

    /// The `train` step, if the pipeline has one.
    pub fn train(&self) -> Option<&TrainStep> {
        self.steps.iter().find_map(|s| match s {
            StepConfig::Train(t) => Some(t),
            _ => None,
        })
    }
}

impl LoadedConfig {
    /// The `predict` step of an inference pipeline; an error naming the file
    /// without one.
    pub fn predict_step(&self) -> Result<&PredictStep> {
        self.config
            .steps
            .iter()
            .find_map(|s| match s {
                StepConfig::Predict(p) => Some(p),
                _ => None,
            })
            .ok_or_else(|| {
                EngineError::config(
                    &self.path,
                    "an inference pipeline needs a `predict` step naming the model (model_name)",
                )
            })
    }
}

/// Reads, substitutes and validates a config file.
pub fn load(path: &Path) -> Result<LoadedConfig> {
    let raw = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    parse(&raw, &path.display().to_string())
}

/// Parses config text (`origin` names it in errors).
pub fn parse(raw: &str, origin: &str) -> Result<LoadedConfig> {
    let text = substitute_env(raw, origin)?;
    let config: PipelineConfig = serde_yaml::from_str(&text).map_err(|e| {
        let loc = match e.location() {
            Some(l) => {
                let (line, col, key) = refine_location(&text, &e.to_string(), l.line(), l.column());
                // serde_yaml appends " at line L column C": the location is ours now.
                let full = e.to_string();
                let bare = full
                    .rsplit_once(" at line ")
                    .map_or(full.as_str(), |(m, _)| m);
                let msg = match (key_path(&text), key) {
                    (Some((path, inner)), _) => format!("key `{path}`: {inner}"),
                    (None, Some(k)) if !bare.contains(&format!("`{k}`")) => {
                        format!("key `{k}`: {bare}")
                    }
                    _ => bare.to_string(),
                };
                let msg = format!("{msg}{}", secret_hint(&msg));
                return EngineError::config(format!("{origin}:{line}:{col}"), msg);
            }
            None => origin.to_string(),
        };
        EngineError::config(loc, e.to_string())
    })?;
    validate(&config, origin).map_err(|e| at_key_line(e, &text, origin))?;
    Ok(LoadedConfig {
        config,
        path: origin.to_string(),
        raw: raw.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed config written back as YAML parses to the same models (the
    /// typed `ModelConfig` → `RawModelConfig` conversion keeps every
    /// parameter, grid and CV setting).
    #[test]
    fn models_survive_a_yaml_round_trip() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/training.yaml");
        let cfg = load(&path).unwrap().config;
        let text = serde_yaml::to_string(&cfg).unwrap();
        let back = parse(&text, "round trip").unwrap().config;
        let models = |c: &PipelineConfig| format!("{:?}", c.train().unwrap().models);
        assert_eq!(models(&cfg), models(&back));
        let first = &back.train().unwrap().models[0];
        assert!(!first.grid.is_empty(), "the grid was lost: {text}");
    }
}
