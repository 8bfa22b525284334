//! Pipeline configuration: the YAML schema (unknown keys rejected), `${VAR}`
//! substitution from the environment, and validation with errors that name
//! the file, line and column.
//!
//! Each key is declared once below, with its default and its doc; `docs/CONFIG.md`
//! is the reference built from these declarations.

mod env;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::session::{EngineMode, EngineSettings};

pub use env::substitute_env;

/// The kind of pipeline: which inputs it reads and which steps it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineKind {
    /// CSV union → features (fit) → train → evaluate → deploy.
    Training,
    /// Seven-table join → features (deployed state) → predict.
    Inference,
}

/// A whole pipeline config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Pipeline name; run outputs go to `<lake>/runs/<name>/<run_id>/`.
    pub name: String,
    /// `training` or `inference`.
    pub kind: PipelineKind,
    /// Lake location: a path, `file://`, `abfss://`, `az://`, `s3://` or `gs://`.
    pub lake: String,
    /// Where plans run (default: embedded).
    #[serde(default)]
    pub engine: EngineSettings,
    /// The steps, in order.
    pub steps: Vec<StepConfig>,
}

/// One step and its parameters, tagged by `step:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// run` runs a range once per value found (`pipeline::days`).
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
}

fn is_default_checks(v: &crate::ingest::ValueChecks) -> bool {
    *v == crate::ingest::ValueChecks::default()
}

/// The feature chain: `default` (the reference chain) or an explicit list.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// A model entry as written in YAML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelConfig {
    /// A name unique in the pipeline.
    pub name: String,
    /// `gbt` or `random_forest`.
    #[serde(rename = "type")]
    pub model_type: String,
    /// Spark-named parameters; missing ones take Spark's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
        let v = serde_json::to_value(&m.spec).unwrap_or_default();
        RawModelConfig {
            name: m.name,
            model_type: v["type"].as_str().unwrap_or_default().to_string(),
            params: v.get("params").cloned(),
            grid: m.grid,
            cv: m.cv,
        }
    }
}

/// The model type and its base parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// With `engine.mode: ballista`, train models without `grid`/`cv` on the
    /// executors (histograms as aggregates where the data lives; the driver
    /// only picks splits). Default true; `false` trains every model on the
    /// driver. Embedded engines always train on the driver.
    #[serde(default = "default_true")]
    pub distributed: bool,
    /// The competing models.
    pub models: Vec<ModelConfig>,
}

fn default_true() -> bool {
    true
}
fn default_threshold() -> f64 {
    0.5
}

/// `step: evaluate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateStep {
    /// Metric that picks the best model.
    #[serde(default = "default_metric")]
    pub metric: sluice_ml::Metric,
    /// Decision threshold on the indoor probability.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

/// `step: deploy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployStep {
    /// Registry name: the model goes to `<lake>/models/<model_name>/<version>/`.
    pub model_name: String,
    /// Only deploy when the best model's selection metric reaches this value.
    #[serde(default)]
    pub min_metric: Option<f64>,
}

/// `step: predict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// The key path of a deserialization error (`steps[2].models[1].params.numTrees`)
/// and the message without location, or `None` when the text is not YAML
/// or the path says nothing more than the top level.
///
/// serde buffers internally tagged enums (the steps), which hides the path
/// below `steps[i]`; the step is then deserialized again as its own struct
/// (chosen by its `step:` tag) to find the rest of the path. Model entries
/// put the path inside the entry at the start of their message
/// (`params.numTrees: ...`), which is joined here too.
fn key_path(text: &str) -> Option<(String, String)> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let e = serde_path_to_error::deserialize::<_, PipelineConfig>(value.clone()).err()?;
    let mut path = e.path().to_string();
    let mut message = strip_location(&e.into_inner().to_string());
    if let Some(i) = step_index(&path) {
        let step = value.get("steps")?.get(i)?.clone();
        let mut map = step.as_mapping()?.clone();
        let tag = map.remove("step")?;
        let inner = serde_yaml::Value::Mapping(map);
        fn sub<T: serde::de::DeserializeOwned>(v: serde_yaml::Value) -> Option<(String, String)> {
            let e = serde_path_to_error::deserialize::<_, T>(v).err()?;
            Some((
                e.path().to_string(),
                strip_location(&e.into_inner().to_string()),
            ))
        }
        let found = match tag.as_str()? {
            "ingest" => sub::<IngestStep>(inner),
            "features" => sub::<FeaturesStep>(inner),
            "train" => sub::<TrainStep>(inner),
            "evaluate" => sub::<EvaluateStep>(inner),
            "deploy" => sub::<DeployStep>(inner),
            "predict" => sub::<PredictStep>(inner),
            _ => None,
        };
        if let Some((p, m)) = found {
            if p != "." {
                path = format!("steps[{i}].{p}");
            }
            message = m;
        }
    }
    // `params.numTrees: invalid value ...` from a model entry.
    if let Some((head, rest)) = message.split_once(": ") {
        if (head.starts_with("params") || head == "type") && !head.contains(' ') {
            path = format!("{path}.{head}");
            message = rest.to_string();
        }
    }
    (path != "." && !path.is_empty()).then_some((path, message))
}

/// For an unknown key that looks like a credential: where credentials go
/// instead. (The value is never echoed: serde names only the key.)
fn secret_hint(message: &str) -> &'static str {
    let Some(key) = message
        .split("unknown field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    else {
        return "";
    };
    let k = key.to_ascii_lowercase();
    let secret = ["key", "secret", "token", "password", "sas", "credential"]
        .iter()
        .any(|w| k.contains(w));
    if secret {
        "; credentials never go in the config file: set them in the environment (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, AWS_SECRET_ACCESS_KEY, ... or workload identity; see docs/LAKE.md) and reference non-secret values as ${VAR}"
    } else {
        ""
    }
}

/// `Some(i)` for the path `steps[i]` (and below).
fn step_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("steps[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// A serde_yaml message without its " at line L column C" suffix.
fn strip_location(m: &str) -> String {
    m.rsplit_once(" at line ")
        .map_or(m, |(head, _)| head)
        .to_string()
}

/// A validation error located as `<origin>: <key path>` pointed at the
/// key's line instead: `<origin>:<line>:<column>: <key path>`.
fn at_key_line(e: EngineError, text: &str, origin: &str) -> EngineError {
    match e {
        EngineError::Config { location, message } => {
            let key = location
                .strip_prefix(origin)
                .and_then(|r| r.strip_prefix(": "))
                .map(str::to_string);
            match key.as_deref().and_then(|k| Some((k, locate_key(text, k)?))) {
                Some((k, (line, col))) => {
                    EngineError::config(format!("{origin}:{line}:{col}: {k}"), message)
                }
                None => EngineError::Config { location, message },
            }
        }
        other => other,
    }
}

/// The 1-based line and column of a key path such as
/// `steps[2].models[0].cv.folds` in YAML text (block mappings and
/// sequences, and keys inside a one-line flow mapping `{folds: 10}`).
/// `None` when the path cannot be followed.
pub fn locate_key(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_of = |l: &str| {
        let t = l.trim_start();
        let (t, dash) = match t.strip_prefix("- ") {
            Some(rest) => (rest, 2),
            None => (t, 0),
        };
        let k = t.split_once(':')?.0.trim();
        (!k.is_empty() && !k.starts_with('#')).then(|| (k.to_string(), indent(l) + dash))
    };
    // Segments: `steps[2]` is `steps` then index 2.
    let mut segs: Vec<Result<String, usize>> = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            segs.push(Ok(rest[..i].to_string()));
            rest = &rest[i..];
            while let Some(r) = rest.strip_prefix('[') {
                let (n, tail) = r.split_once(']')?;
                segs.push(Err(n.parse().ok()?));
                rest = tail;
            }
        } else {
            segs.push(Ok(rest.to_string()));
        }
    }
    // (line index, column of its key, indentation that encloses the block)
    let mut pos: Option<(usize, usize)> = None;
    let mut start = 0usize;
    let mut parent: Option<usize> = None;
    for seg in segs {
        match seg {
            Ok(name) => {
                // A key inside a one-line flow mapping of the current line.
                if let Some((li, _)) = pos {
                    let l = lines[li];
                    if let Some(brace) = l.find('{') {
                        if let Some(off) = l[brace..].find(&format!("{name}:")) {
                            return Some((li + 1, brace + off + 1));
                        }
                    }
                }
                let mut found = None;
                for (i, l) in lines.iter().enumerate().skip(start) {
                    if l.trim().is_empty() || l.trim_start().starts_with('#') {
                        continue;
                    }
                    let Some((k, col)) = key_of(l) else { continue };
                    if parent.is_some_and(|p| col <= p) && i > start {
                        break;
                    }
                    if k == name && parent.is_none_or(|p| col > p) {
                        found = Some((i, col));
                        break;
                    }
                }
                let (i, col) = found?;
                pos = Some((i, col + 1));
                parent = Some(col);
                start = i + 1;
            }
            Err(index) => {
                let mut n = 0usize;
                let mut item_indent = None;
                let mut found = None;
                for (i, l) in lines.iter().enumerate().skip(start) {
                    let t = l.trim_start();
                    if t.is_empty() || t.starts_with('#') {
                        continue;
                    }
                    let ind = indent(l);
                    if parent.is_some_and(|p| ind < p)
                        || (parent == Some(ind) && !t.starts_with("- "))
                    {
                        break;
                    }
                    if t.starts_with("- ") && item_indent.is_none_or(|w| w == ind) {
                        item_indent = Some(ind);
                        if n == index {
                            found = Some((i, ind));
                            break;
                        }
                        n += 1;
                    }
                }
                let (i, ind) = found?;
                pos = Some((i, ind + 1));
                parent = Some(ind);
                start = i;
            }
        }
    }
    pos.map(|(i, c)| (i + 1, c))
}

/// serde_yaml places errors inside internally tagged enums (our steps) at
/// the start of the mapping, without the key. Point at the key instead:
/// for "unknown field `k`" the first line from the reported one holding
/// `k:`; for "invalid type: string \"v\"" (or a number, a boolean) the
/// first line holding `<key>: v`. Returns the line, the column and the key.
fn refine_location(
    text: &str,
    message: &str,
    line: usize,
    col: usize,
) -> (usize, usize, Option<String>) {
    let lines = || text.lines().enumerate().skip(line.saturating_sub(1));
    let entry = |l: &str| {
        let trimmed = l.trim_start().trim_start_matches("- ");
        let indent = l.len() - trimmed.len() + 1;
        trimmed
            .split_once(':')
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string(), indent))
    };
    if message.contains("unknown field") {
        if let Some(key) = message.split('`').nth(1) {
            for (i, l) in lines() {
                if let Some((k, _, c)) = entry(l) {
                    if k == key {
                        return (i + 1, c, Some(k));
                    }
                }
            }
        }
    } else if let Some(value) = message
        .split("unknown variant `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    {
        for (i, l) in lines() {
            if let Some((k, v, c)) = entry(l) {
                if v.trim_matches(|c| c == '"' || c == '\'') == value {
                    return (i + 1, c, Some(k));
                }
            }
        }
    } else if let Some(rest) = message.split("invalid type: ").nth(1) {
        // `string "lots"`, `integer `5``, `floating point `1.5``, `boolean `true``
        let value = rest
            .split('"')
            .nth(1)
            .or_else(|| rest.split('`').nth(1))
            .map(str::to_string);
        if let Some(value) = value {
            for (i, l) in lines() {
                if let Some((k, v, c)) = entry(l) {
                    if v.trim_matches(|c| c == '"' || c == '\'') == value {
                        return (i + 1, c, Some(k));
                    }
                }
            }
        }
    }
    (line, col, None)
}

/// Checks what serde cannot: step order and uniqueness, names, ranges.
pub fn validate(cfg: &PipelineConfig, origin: &str) -> Result<()> {
    let err = |key: &str, msg: String| EngineError::config(format!("{origin}: {key}"), msg);
    if cfg.name.trim().is_empty() || cfg.name.contains('/') {
        return Err(err("name", "must be a non-empty name without `/`".into()));
    }
    // The engine settings as a session would build them.
    if let Some(limit) = &cfg.engine.memory_limit {
        crate::session::parse_bytes(limit).map_err(|e| match e {
            EngineError::Config { message, .. } => err("engine.memory_limit", message),
            other => other,
        })?;
    }
    crate::session::session_config(&cfg.engine).map_err(|e| match e {
        EngineError::Config { location, message } => err(&location, message),
        other => other,
    })?;
    if cfg.engine.mode == EngineMode::Ballista && cfg.engine.scheduler.is_none() {
        return Err(err(
            "engine.scheduler",
            "required when engine.mode is `ballista` (e.g. df://localhost:50050)".into(),
        ));
    }
    cfg.engine.retry.validate().map_err(|e| match e {
        EngineError::Config { location, message } => err(&location, message),
        other => other,
    })?;
    if cfg.engine.watchdog_seconds == Some(0) {
        return Err(err(
            "engine.watchdog_seconds",
            "must be at least 1 (seconds without progress before a cluster job is cancelled)"
                .into(),
        ));
    }
    let allowed: &[StepName] = match cfg.kind {
        PipelineKind::Training => &[
            StepName::Ingest,
            StepName::Features,
            StepName::Train,
            StepName::Evaluate,
            StepName::Deploy,
        ],
        PipelineKind::Inference => &[StepName::Ingest, StepName::Features, StepName::Predict],
    };
    let mut last: Option<usize> = None;
    for (i, s) in cfg.steps.iter().enumerate() {
        let pos = allowed.iter().position(|a| *a == s.name()).ok_or_else(|| {
            err(
                &format!("steps[{i}]"),
                format!(
                    "step `{}` does not belong in a {:?} pipeline; allowed: {}",
                    s.name(),
                    cfg.kind,
                    allowed
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        if let Some(l) = last {
            if pos <= l {
                return Err(err(
                    &format!("steps[{i}]"),
                    format!(
                        "step `{}` is out of order or repeated; order is {}",
                        s.name(),
                        allowed
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                ));
            }
        }
        last = Some(pos);
        match s {
            StepConfig::Train(t) => {
                if !(0.0..0.9).contains(&t.test_fraction) {
                    return Err(err(
                        &format!("steps[{i}].test_fraction"),
                        format!("{} is outside [0, 0.9)", t.test_fraction),
                    ));
                }
                if t.models.is_empty() {
                    return Err(err(
                        &format!("steps[{i}].models"),
                        "at least one model is required".into(),
                    ));
                }
                let mut names = std::collections::BTreeSet::new();
                for (j, m) in t.models.iter().enumerate() {
                    if !names.insert(m.name.clone()) {
                        return Err(err(
                            &format!("steps[{i}].models[{j}].name"),
                            format!("duplicate model name `{}`", m.name),
                        ));
                    }
                    if let Some(cv) = &m.cv {
                        if cv.folds == 1 || cv.folds > 100 {
                            return Err(err(
                                &format!("steps[{i}].models[{j}].cv.folds"),
                                format!("{} folds: use 0 (no CV) or 2..=100", cv.folds),
                            ));
                        }
                    }
                    if let Err(e) = m.spec.to_spec().validate() {
                        return Err(match e {
                            sluice_ml::MlError::Params { param, message } => {
                                err(&format!("steps[{i}].models[{j}].params.{param}"), message)
                            }
                            other => {
                                err(&format!("steps[{i}].models[{j}].params"), other.to_string())
                            }
                        });
                    }
                    validate_grid(&m.spec, &m.grid)
                        .map_err(|msg| err(&format!("steps[{i}].models[{j}].grid"), msg))?;
                }
            }
            StepConfig::Predict(p) => {
                if let Err(e) = p.drift.validate() {
                    return Err(err(&format!("steps[{i}].drift"), e.to_string()));
                }
                if p.explain == Some(0) {
                    return Err(err(
                        &format!("steps[{i}].explain"),
                        "expected the number of top contributions to write (1 or more), found 0"
                            .into(),
                    ));
                }
            }
            StepConfig::Features(f) if !f.materialize && cfg.kind == PipelineKind::Training => {
                return Err(err(
                    &format!("steps[{i}].materialize"),
                    "`false` is for inference pipelines only: train and evaluate read the feature table from the lake".into(),
                ));
            }
            StepConfig::Evaluate(e) if !(0.0..=1.0).contains(&e.threshold) => {
                return Err(err(
                    &format!("steps[{i}].threshold"),
                    format!("{} is outside [0, 1]", e.threshold),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks every grid key names a parameter of the model type and every value
/// has that parameter's type, by applying each value to the base parameters.
pub fn validate_grid(
    spec: &ModelSpecConfig,
    grid: &BTreeMap<String, Vec<serde_json::Value>>,
) -> std::result::Result<(), String> {
    let base = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    let params = base
        .get("params")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    for (key, values) in grid {
        if !params.contains_key(key) {
            let mut known: Vec<&String> = params.keys().collect();
            known.sort();
            return Err(format!(
                "unknown parameter `{key}`; known parameters: {}",
                known
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if values.is_empty() {
            return Err(format!("`{key}` has an empty list of values"));
        }
        for v in values {
            let mut candidate = base.clone();
            candidate["params"][key] = v.clone();
            let spec = serde_json::from_value::<ModelSpecConfig>(candidate)
                .map_err(|e| format!("value {v} for `{key}` is invalid: {e}"))?;
            spec.to_spec()
                .validate()
                .map_err(|e| format!("value {v} for `{key}` is invalid: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod locate_tests {
    use super::*;

    const YAML: &str = "name: x\nkind: training\nlake: /tmp/x\nengine:\n  memory_limit: 2GiB\nsteps:\n  - step: ingest\n  - step: train\n    test_fraction: 0.95\n    models:\n      - name: g\n        type: gbt\n        cv: {folds: 1, metric: auc}\n";

    #[test]
    fn keys_are_found_on_their_line() {
        assert_eq!(locate_key(YAML, "name"), Some((1, 1)));
        assert_eq!(locate_key(YAML, "engine.memory_limit"), Some((5, 3)));
        assert_eq!(locate_key(YAML, "steps[1]"), Some((8, 3)));
        assert_eq!(locate_key(YAML, "steps[1].test_fraction"), Some((9, 5)));
        assert_eq!(locate_key(YAML, "steps[1].models[0].name"), Some((11, 9)));
        assert_eq!(
            locate_key(YAML, "steps[1].models[0].cv.folds"),
            Some((13, 14))
        );
        assert_eq!(locate_key(YAML, "steps[5].x"), None);
    }

    #[test]
    fn validation_errors_point_at_the_key() {
        let e = parse(YAML, "c.yaml").unwrap_err().to_string();
        assert!(e.contains("c.yaml:9:5: steps[1].test_fraction"), "{e}");
        let banana = YAML.replace("2GiB", "banana");
        let e = parse(&banana, "c.yaml").unwrap_err().to_string();
        assert!(
            e.contains("c.yaml:5:3: engine.memory_limit") && e.contains("banana"),
            "{e}"
        );
    }
}
