//! The step implementations. Each reads its inputs from committed outputs
//! and commits its own; none holds state between invocations.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use datafusion::logical_expr::{col, lit, ScalarUDF};
use datafusion::prelude::{DataFrame, Expr};
use serde_json::json;
use sluice_ml::{FeatureMatrix, Metric, ModelArtefact, TrainedModel};
use sluice_transforms::{FeaturePipeline, FittedPipeline};
use tracing::info;

use super::{RunContext, StepOutcome};
use crate::commit::{self, Commit, InputRef, Manifest};
use crate::config::{
    EvaluateStep, FeaturesStep, IngestStep, ModelConfig, PipelineKind, PredictStep, StepConfig,
    StepName, TrainStep, TransformsConfig,
};
use crate::error::{EngineError, Result};
use crate::outputs::{
    self, ClassCounts, CvOutput, CvPoint, DeployOutput, EvalCurves, EvaluateOutput, FeaturesOutput,
    IngestOutput, ManifestOutput, ModelEvaluation, ModelProvenance, ModelRef, PredictOutput,
    RunSummary, Scoring, StepOutput, StepStatus, TrainOutput,
};
use crate::{progress, registry};

pub use crate::predict::{predict_udf, PREDICT_UDF};

/// Runs one step unless (when resuming) its committed output matches.
pub(super) async fn run_step(
    rc: &RunContext,
    step: &StepConfig,
    resuming: bool,
) -> Result<(StepStatus, Vec<Manifest>)> {
    let params = serde_json::to_value(step)
        .map_err(|e| EngineError::Internal(format!("step parameters: {e}")))?;
    match step {
        StepConfig::Ingest(s) => {
            let inputs = raw_inputs(rc).await?;
            single(rc, StepName::Ingest, &params, inputs, resuming, || {
                ingest(rc, s)
            })
            .await
        }
        StepConfig::Features(s) => {
            let (_, up) = rc.upstream(StepName::Ingest, None).await?;
            let mut inputs = vec![input("ingest", &up)];
            let model = if rc.cfg.config.kind == PipelineKind::Inference {
                let m = inference_model(rc).await?;
                inputs.push(InputRef {
                    name: format!("model:{}/{}", m.name, m.version),
                    fingerprint: m.manifest.fingerprint(),
                });
                Some(m)
            } else {
                None
            };
            single(rc, StepName::Features, &params, inputs, resuming, || {
                features(rc, s, up.clone(), model.clone())
            })
            .await
        }
        StepConfig::Train(s) => train(rc, s, &params, resuming).await,
        StepConfig::Evaluate(s) => {
            let (_, feats) = rc.upstream(StepName::Features, None).await?;
            let models = trained_models(rc).await?;
            let mut inputs = vec![input("features", &feats)];
            inputs.extend(models.iter().map(|(n, m)| input(&format!("train/{n}"), m)));
            single(rc, StepName::Evaluate, &params, inputs, resuming, || {
                evaluate(rc, s, feats.clone(), models.clone())
            })
            .await
        }
        StepConfig::Deploy(s) => {
            let (_, eval) = rc.upstream(StepName::Evaluate, None).await?;
            let inputs = vec![input("evaluate", &eval)];
            single(rc, StepName::Deploy, &params, inputs, resuming, || {
                deploy(rc, s, eval.clone())
            })
            .await
        }
        StepConfig::Predict(s) => {
            let (_, feats) = rc.upstream(StepName::Features, None).await?;
            let inputs = vec![input("features", &feats)];
            let dir = predictions_dir(rc);
            if resuming {
                if let Some(m) = commit::read_manifest(&rc.lake, &dir).await? {
                    if m.matches(&commit::fingerprint_json(&params), &inputs) {
                        return Ok((StepStatus::Skipped, vec![m]));
                    }
                }
            }
            let m = predict(rc, s, &params, feats, inputs).await?;
            Ok((StepStatus::Ran, vec![m]))
        }
    }
}

fn input(name: &str, m: &Manifest) -> InputRef {
    InputRef {
        name: name.to_string(),
        fingerprint: m.fingerprint(),
    }
}

/// Skip-or-run for steps with one output directory.
async fn single<'a, F, Fut, T>(
    rc: &'a RunContext,
    step: StepName,
    params: &serde_json::Value,
    inputs: Vec<InputRef>,
    resuming: bool,
    body: F,
) -> Result<(StepStatus, Vec<Manifest>)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(Commit<'a>, T)>>,
    T: StepOutput,
{
    let dir = rc.step_dir(step);
    if resuming {
        if let Some(m) = commit::read_manifest(&rc.lake, &dir).await? {
            if m.matches(&commit::fingerprint_json(params), &inputs) {
                info!(step = %step, "committed output matches parameters and inputs: skipped");
                return Ok((StepStatus::Skipped, vec![m]));
            }
        }
    }
    let (c, out) = body().await?;
    let extra = outputs::to_manifest(&out)?;
    let m = c
        .finish(
            &format!("step:{step}"),
            rc.pipeline(),
            &rc.run_id,
            params.clone(),
            inputs,
            extra,
        )
        .await?;
    Ok((StepStatus::Ran, vec![m]))
}

/// Fingerprint of the raw inputs (listing: path, size, modification time).
async fn raw_inputs(rc: &RunContext) -> Result<Vec<InputRef>> {
    let prefix = match rc.cfg.config.kind {
        PipelineKind::Training => "training/",
        PipelineKind::Inference => "raw/",
    };
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut n = 0usize;
    for meta in rc.lake.list(prefix).await? {
        h.update(meta.location.as_ref().as_bytes());
        h.update(&meta.size.to_le_bytes());
        h.update(meta.last_modified.to_rfc3339().as_bytes());
        n += 1;
    }
    if n == 0 {
        return Err(EngineError::data(
            rc.lake.table_url(prefix),
            "no input files here: generate a lake with `sluice datagen` or check the lake URL",
        ));
    }
    Ok(vec![InputRef {
        name: prefix.trim_end_matches('/').to_string(),
        fingerprint: format!("{:016x}", h.digest()),
    }])
}

async fn ingest<'a>(rc: &'a RunContext, s: &IngestStep) -> Result<(Commit<'a>, IngestOutput)> {
    let dir = rc.step_dir(StepName::Ingest);
    let checks = inference_options(s);
    let out = match rc.cfg.config.kind {
        PipelineKind::Training => {
            let opts = crate::ingest::IngestOptions {
                csv_glob: s.csv_glob.clone(),
                reject_bad_rows: s.reject_bad_rows,
            };
            crate::ingest::training_input(&rc.ctx, &rc.lake, &opts).await?
        }
        PipelineKind::Inference => {
            crate::ingest::inference_input_with(&rc.ctx, &rc.lake, &checks).await?
        }
    };
    let expected_rows = out.diagnostics.expected_rows;
    let parts = out.parts();
    let mut output = IngestOutput::default();
    if let Some(rej) = out.rejected {
        let mut rc2 = Commit::begin(&rc.lake, &format!("{dir}/rejected"));
        let n = rc2.write_parquet(rej).await?;
        rc2.finish(
            "rejected",
            rc.pipeline(),
            &rc.run_id,
            json!({}),
            vec![],
            json!({}),
        )
        .await?;
        if n > 0 {
            tracing::warn!(rows = n, output = %format!("{dir}/rejected"), "rows with unparsable or out-of-bounds values were routed to the rejected output");
        }
        output.rejected_rows = Some(n);
    }
    let mut c = Commit::begin(&rc.lake, &dir).with_progress(progress::task(
        "ingest",
        progress::Unit::Rows,
        None,
    ));
    let n_parts = parts.len();
    let rows = match c.write_parquet_parts(parts).await {
        Ok(rows) => rows,
        Err(e) => {
            return Err(crate::ingest::name_bounds_error(&rc.ctx, &rc.lake, &checks, e).await)
        }
    };
    if let Some(expected) = expected_rows {
        // Not committed: the attempt stays invisible when this fails.
        crate::ingest::check_joined_rows(&rc.ctx, &rc.lake, &checks, expected, rows).await?;
    }
    output.rows = rows;
    if n_parts > 1 {
        output.join_slices = Some(n_parts);
    }
    Ok((c, output))
}

fn inference_options(s: &IngestStep) -> crate::ingest::InferenceOptions {
    crate::ingest::InferenceOptions {
        join_slices: s.join_slices,
        partitions: s.partitions.clone(),
        value_checks: s.value_checks,
        now: Some(chrono::Utc::now()),
    }
}

async fn inference_model(rc: &RunContext) -> Result<registry::ModelVersion> {
    let p = rc
        .cfg
        .config
        .steps
        .iter()
        .find_map(|s| match s {
            StepConfig::Predict(p) => Some(p.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            EngineError::config(
                &rc.cfg.path,
                "an inference pipeline needs a `predict` step naming the model (model_name)",
            )
        })?;
    registry::resolve(&rc.lake, &p.model_name, &p.version).await
}

async fn load_artefact(rc: &RunContext, v: &registry::ModelVersion) -> Result<ModelArtefact> {
    let bytes = registry::load_artefact(&rc.lake, v).await?;
    ModelArtefact::from_bytes(&bytes).map_err(|e| {
        EngineError::data(
            rc.lake.table_url(&v.artefact_path()),
            format!(
                "model `{}` version {} cannot be loaded: {e}; publish it again (sluice run <training config> --steps deploy) or pin another version",
                v.name, v.version
            ),
        )
    })
}

async fn features<'a>(
    rc: &'a RunContext,
    s: &FeaturesStep,
    ingest: Manifest,
    model: Option<registry::ModelVersion>,
) -> Result<(Commit<'a>, FeaturesOutput)> {
    let df = commit::read_parquet(&rc.ctx, &rc.lake, &ingest).await?;
    let (fitted, model_ref): (FittedPipeline, Option<ModelRef>) = match model {
        None => {
            let pipeline = match &s.transforms {
                TransformsConfig::Named(n) if n == "default" => FeaturePipeline::default_contract(),
                TransformsConfig::Named(other) => {
                    return Err(EngineError::config(
                        format!("{}: features.transforms", rc.cfg.path),
                        format!("unknown chain `{other}`; use `default` or a list of transforms"),
                    ))
                }
                TransformsConfig::List(list) => FeaturePipeline {
                    steps: list.clone(),
                },
            };
            info!("fitting the feature chain");
            let f = pipeline.fit(df.clone()).await?;
            (f, None)
        }
        Some(v) => {
            let art = load_artefact(rc, &v).await?;
            let f: FittedPipeline =
                serde_json::from_value(art.transform_state.clone()).map_err(|e| {
                    EngineError::data(
                        rc.lake.table_url(&v.artefact_path()),
                        format!(
                            "the model's fitted feature state cannot be read by this build: {e}"
                        ),
                    )
                })?;
            (
                f,
                Some(ModelRef {
                    name: v.name.clone(),
                    version: v.version.clone(),
                }),
            )
        }
    };
    let mut c = Commit::begin(&rc.lake, &rc.step_dir(StepName::Features)).with_progress(
        progress::task("features", progress::Unit::Rows, ingest.rows),
    );
    let state = serde_json::to_value(&fitted)
        .map_err(|e| EngineError::Internal(format!("fitted state serialization: {e}")))?;
    let state_bytes = serde_json::to_vec_pretty(&state)
        .map_err(|e| EngineError::Internal(format!("fitted state serialization: {e}")))?;
    c.put("transform_state.json", Bytes::from(state_bytes))
        .await?;
    let parts = feature_parts(rc, &fitted, df, ingest.rows.unwrap_or(0), s.slices).await?;
    let n_parts = parts.len();
    let rows = if s.materialize {
        c.write_parquet_parts(parts).await?
    } else {
        // The chain maps rows one to one; the plan was built (and every
        // column checked) above, the predict step runs it.
        info!("features not materialized: predict computes them from the ingest output");
        ingest.rows.unwrap_or(0)
    };
    Ok((
        c,
        FeaturesOutput {
            rows,
            feature_names: fitted.feature_names(),
            model: model_ref,
            materialized: s.materialize,
            slices: n_parts,
        },
    ))
}

/// Most rows per feature slice: the lag/lead window operator buffers each
/// of its input partitions whole, so a slice bounds its memory even without
/// a memory limit.
const FEATURE_SLICE_ROWS: u64 = 4_000_000;

/// The fitted chain over the ingest output, as `device_id` range slices
/// (one plan each, run one after another) when the table has more than
/// [`FEATURE_SLICE_ROWS`] rows or sorting it for the lag/lead windows would
/// not fit the memory limit, and the chain's windows all partition by
/// `device_id` ([`crate::slices`]). `df` is the ingest output, `rows` its
/// row count.
async fn feature_parts(
    rc: &RunContext,
    fitted: &FittedPipeline,
    df: DataFrame,
    rows: u64,
    slices: Option<usize>,
) -> Result<Vec<DataFrame>> {
    const KEY: &str = "device_id";
    let sliceable = fitted.sliceable_by(KEY) && df.schema().has_column_with_unqualified_name(KEY);
    let n = match slices {
        _ if !sliceable => 1,
        Some(n) => n,
        None => {
            let row = crate::slices::row_bytes(df.schema().as_arrow()) as u64;
            crate::slices::slices_for(&rc.ctx, rows * row)
                .max(rows.div_ceil(FEATURE_SLICE_ROWS) as usize)
        }
    };
    if n <= 1 {
        return Ok(vec![fitted.transform(df)?]);
    }
    info!(
        slices = n,
        "feature chain split into device_id ranges to fit the memory limit"
    );
    let mut parts = Vec::with_capacity(n);
    for range in crate::slices::key_ranges(&df, KEY, n).await? {
        let slice = df.clone().filter(crate::slices::range_filter(KEY, range))?;
        parts.push(fitted.transform(slice)?);
    }
    Ok(parts)
}

/// The feature table of a features output, as plans to run one after
/// another: read from the lake, or (when the step did not materialize it)
/// the fitted chain applied to the ingest output, inside the caller's plan.
async fn feature_frames(rc: &RunContext, feats: &Manifest) -> Result<Vec<DataFrame>> {
    let out: FeaturesOutput = feats.output()?;
    if out.materialized {
        return Ok(vec![commit::read_parquet(&rc.ctx, &rc.lake, feats).await?]);
    }
    let (_, ingest) = rc.upstream(StepName::Ingest, None).await?;
    let state = fitted_state(rc, feats).await?;
    let fitted: FittedPipeline = serde_json::from_value(state).map_err(|e| {
        EngineError::Internal(format!("features output: fitted state unreadable: {e}"))
    })?;
    let slices = Some(out.slices);
    let df = commit::read_parquet(&rc.ctx, &rc.lake, &ingest).await?;
    feature_parts(rc, &fitted, df, ingest.rows.unwrap_or(0), slices).await
}

/// The fitted state stored in a features output.
async fn fitted_state(rc: &RunContext, feats: &Manifest) -> Result<serde_json::Value> {
    let f = feats
        .files
        .iter()
        .find(|f| f.path.ends_with("transform_state.json"))
        .ok_or_else(|| {
            EngineError::Internal("features output has no transform_state.json".into())
        })?;
    let b = rc.lake.get(&f.path).await?;
    serde_json::from_slice(&b)
        .map_err(|e| EngineError::data(rc.lake.table_url(&f.path), e.to_string()))
}

/// Labelled rows of the features output: matrix, labels, device ids.
struct Labelled {
    x: FeatureMatrix,
    y: Vec<u8>,
    device: Vec<i64>,
}

async fn load_labelled(rc: &RunContext, feats: &Manifest) -> Result<Labelled> {
    let names = feats.output::<FeaturesOutput>()?.feature_names;
    let df = commit::read_parquet(&rc.ctx, &rc.lake, feats).await?;
    let df = df.sort(vec![col("sample_id").sort(true, false)])?;
    let batches = df.collect().await?;
    let x = FeatureMatrix::from_batches(&batches, &names)?;
    let mut y = Vec::with_capacity(x.n_rows());
    let mut device = Vec::with_capacity(x.n_rows());
    for b in &batches {
        let label = b.column_by_name("indoor").ok_or_else(|| {
            EngineError::data(
                "features output",
                "no `indoor` label column: is this a training pipeline?",
            )
        })?;
        let label = arrow::compute::cast(label, &arrow::datatypes::DataType::Int64)?;
        let label = label.as_primitive::<Int64Type>();
        if label.null_count() > 0 {
            return Err(EngineError::data(
                "training data, column `indoor`",
                "null labels found; every labelled row needs indoor 0 or 1",
            ));
        }
        y.extend(label.values().iter().map(|v| (*v != 0) as u8));
        let d = b
            .column_by_name("device_id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| EngineError::data("features output", "no Int64 `device_id` column"))?;
        device.extend(d.values().iter().copied());
    }
    Ok(Labelled { x, y, device })
}

/// Held-out split by device (hash of device id and seed), so a device's
/// neighbouring samples never sit on both sides of the split.
fn split_by_device(device: &[i64], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (i, d) in device.iter().enumerate() {
        if crate::dtrain::is_test_device(*d, test_fraction, seed) {
            test.push(i)
        } else {
            train.push(i)
        }
    }
    (train, test)
}

fn pick<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| v[i]).collect()
}

fn train_step_config(rc: &RunContext) -> Option<TrainStep> {
    rc.cfg.config.steps.iter().find_map(|s| match s {
        StepConfig::Train(t) => Some(t.clone()),
        _ => None,
    })
}

async fn train(
    rc: &RunContext,
    s: &TrainStep,
    params: &serde_json::Value,
    resuming: bool,
) -> Result<(StepStatus, Vec<Manifest>)> {
    let (_, feats) = rc.upstream(StepName::Features, None).await?;
    let inputs = vec![input("features", &feats)];
    let models: Vec<&ModelConfig> = s
        .models
        .iter()
        .filter(|m| {
            rc.models
                .as_ref()
                .map(|f| f.contains(&m.name))
                .unwrap_or(true)
        })
        .collect();
    if models.is_empty() {
        return Err(EngineError::config(
            "--model",
            format!(
                "no configured model matches; models are {}",
                s.models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    // Per-model params: the shared split settings plus the model's own config.
    let mut todo = Vec::new();
    let mut done = Vec::new();
    for m in &models {
        let p = json!({"test_fraction": s.test_fraction, "seed": s.seed, "model": m});
        let dir = format!("{}/{}", rc.step_dir(StepName::Train), m.name);
        if resuming {
            if let Some(man) = commit::read_manifest(&rc.lake, &dir).await? {
                if man.matches(&commit::fingerprint_json(&p), &inputs) {
                    info!(model = %m.name, "trained model already committed: skipped");
                    done.push(man);
                    continue;
                }
            }
        }
        todo.push((*m, p, dir));
    }
    let _ = params;
    if todo.is_empty() {
        return Ok((StepStatus::Skipped, done));
    }
    let state = fitted_state(rc, &feats).await?;
    // With `engine.mode: ballista`, models without a grid train on the
    // executors (`crate::dtrain`, docs/DISTRIBUTED.md); the rest on the driver.
    let mut on_cluster = Vec::with_capacity(todo.len());
    for (m, _, dir) in &todo {
        on_cluster.push(
            if crate::dtrain::trains_on_cluster(&rc.cfg.config.engine, s, m) {
                let t = std::time::Instant::now();
                let fit = crate::dtrain::train_pipeline_model(rc, &feats, s, m, dir).await?;
                Some((fit, t.elapsed().as_secs_f64()))
            } else {
                None
            },
        );
    }
    let data = if on_cluster.iter().any(Option::is_none) {
        load_labelled(rc, &feats).await?
    } else {
        Labelled {
            x: FeatureMatrix::new(Vec::new(), Vec::new())?,
            y: Vec::new(),
            device: Vec::new(),
        }
    };
    let (train_idx, _) = split_by_device(&data.device, s.test_fraction, s.seed);
    let x = data.x.select_rows(&train_idx);
    let y = pick(&data.y, &train_idx);
    info!(
        rows = x.n_rows(),
        features = x.names().len(),
        models = todo.len(),
        "training"
    );
    let balance = ClassCounts::of(&y);
    let fit_one = |m: &ModelConfig| -> Result<LocalFit> {
        let t = std::time::Instant::now();
        let spec = m.spec.to_spec();
        let (model, cv, params) = if m.grid.is_empty() && m.cv.is_none() {
            let task = progress::task(format!("train {}", m.name), progress::Unit::Fits, Some(1));
            let model = sluice_ml::train(&spec, &x, &y)?;
            task.inc(1);
            task.finish();
            (model, None, spec)
        } else {
            let cfg = sluice_ml::GridSearchConfig {
                folds: m.cv.as_ref().map(|c| c.folds).unwrap_or(0),
                metric: m.cv.as_ref().map(|c| c.metric).unwrap_or(Metric::Auc),
                seed: s.seed,
                grid: m.grid.clone(),
                parallelism: m.cv.as_ref().and_then(|c| c.parallelism),
            };
            let r = grid_search_reported(&m.name, &spec, &cfg, &x, &y)?;
            let cv = CvOutput {
                metric: cfg.metric,
                folds: cfg.folds,
                points: r
                    .points
                    .iter()
                    .map(|p| CvPoint {
                        params: p.params.clone(),
                        mean: p.mean_score,
                        std: p.std_score,
                        fold_scores: p.fold_scores.clone(),
                    })
                    .collect(),
                best_index: r.best_index,
            };
            (r.best_model, Some(cv), r.best_spec)
        };
        Ok(LocalFit {
            model,
            cv,
            params,
            seconds: t.elapsed().as_secs_f64(),
        })
    };
    let local: Vec<&ModelConfig> = todo
        .iter()
        .zip(&on_cluster)
        .filter(|(_, c)| c.is_none())
        .map(|((m, _, _), _)| *m)
        .collect();
    let mut local_results: Vec<Result<LocalFit>> = if s.parallel && local.len() > 1 {
        use rayon::prelude::*;
        local.par_iter().map(|m| fit_one(m)).collect::<Vec<_>>()
    } else {
        local.iter().map(|m| fit_one(m)).collect::<Vec<_>>()
    }
    .into_iter()
    .rev()
    .collect();
    for ((m, p, dir), cluster_fit) in todo.into_iter().zip(on_cluster) {
        let (res, train_rows, distributed, class_balance) = match cluster_fit {
            Some((fit, secs)) => (
                Ok(LocalFit {
                    model: fit.model.clone(),
                    cv: None,
                    params: m.spec.to_spec(),
                    seconds: secs,
                }),
                fit.rows,
                Some(fit.summary()),
                None,
            ),
            None => (
                local_results
                    .pop()
                    .unwrap_or_else(|| Err(EngineError::Internal("missing local fit".into()))),
                x.n_rows() as u64,
                None,
                Some(balance),
            ),
        };
        let fit = res?;
        let secs = fit.seconds;
        let output = TrainOutput {
            model: m.name.clone(),
            kind: fit.model.kind(),
            params: fit.params.clone(),
            train_rows,
            class_balance,
            seconds: secs,
            cv: fit.cv.clone(),
            importance: fit.model.feature_importance(),
            trees: fit.model.trees().len(),
            distributed,
        };
        let mut art = ModelArtefact::new(
            m.name.clone(),
            fit.model,
            m.spec.to_spec(),
            commit::now_rfc3339(),
        );
        art.transform_state = state.clone();
        art.extra.insert(
            "cv".into(),
            serde_json::to_value(&fit.cv)
                .map_err(|e| EngineError::Internal(format!("grid search summary: {e}")))?,
        );
        let mut c = Commit::begin(&rc.lake, &dir);
        c.put(crate::registry::ARTEFACT_FILE, Bytes::from(art.to_bytes()?))
            .await?;
        let man = c
            .finish(
                &format!("step:train/{}", m.name),
                rc.pipeline(),
                &rc.run_id,
                p,
                inputs.clone(),
                outputs::to_manifest(&output)?,
            )
            .await?;
        info!(model = %m.name, seconds = %format_args!("{secs:.1}"), "model trained");
        done.push(man);
    }
    Ok((StepStatus::Ran, done))
}

/// [`sluice_ml::grid_search`] reporting fits done, the total and the best
/// cross-validated score so far to a progress task `train <model>`.
fn grid_search_reported(
    model: &str,
    spec: &sluice_ml::ModelSpec,
    cfg: &sluice_ml::GridSearchConfig,
    x: &FeatureMatrix,
    y: &[u8],
) -> Result<sluice_ml::GridSearchResult> {
    let task = progress::task(format!("train {model}"), progress::Unit::Fits, None);
    let metric = crate::logfmt::metric_name(cfg.metric);
    let higher = cfg.metric.higher_is_better();
    let best = std::sync::Mutex::new(None::<f64>);
    let total = std::sync::atomic::AtomicUsize::new(0);
    let on_event = |e: sluice_ml::TrainEvent| match e {
        sluice_ml::TrainEvent::FoldDone { done, total: t } => {
            // The fits of the grid plus the final refit on all rows.
            if total.swap(t, std::sync::atomic::Ordering::Relaxed) != t {
                task.set_total(t as u64 + 1);
            }
            task.set(done as u64);
        }
        sluice_ml::TrainEvent::GridPointDone {
            index,
            total: points,
            mean_score,
        } => {
            if let Ok(mut b) = best.lock() {
                let better = match *b {
                    None => mean_score.is_finite(),
                    Some(old) => mean_score.is_finite() && (mean_score > old) == higher,
                };
                if better {
                    *b = Some(mean_score);
                    task.set_best(&metric, mean_score);
                }
            }
            tracing::debug!(model, point = index + 1, points, score = %crate::logfmt::num(mean_score), "grid point scored");
        }
        _ => {}
    };
    let r = sluice_ml::grid_search_with_progress(spec, cfg, x, y, Some(&on_event))?;
    let t = total.load(std::sync::atomic::Ordering::Relaxed) as u64;
    task.set(t + 1);
    task.finish();
    if let Some(p) = r.points.get(r.best_index) {
        info!(
            model,
            points = r.points.len(),
            metric = %metric,
            best = %crate::logfmt::num(p.mean_score),
            "grid search finished"
        );
    }
    Ok(r)
}

/// A model fitted on the driver.
struct LocalFit {
    model: TrainedModel,
    cv: Option<CvOutput>,
    /// The parameters of `model` (the best grid point's, with a grid).
    params: sluice_ml::ModelSpec,
    seconds: f64,
}

/// All trained models of this run's configured train step.
async fn trained_models(rc: &RunContext) -> Result<Vec<(String, Manifest)>> {
    let t = train_step_config(rc).ok_or_else(|| {
        EngineError::config(&rc.cfg.path, "evaluate needs a train step in the pipeline")
    })?;
    let mut out = Vec::new();
    for m in &t.models {
        let (_, man) = rc.upstream(StepName::Train, Some(&m.name)).await?;
        out.push((m.name.clone(), man));
    }
    Ok(out)
}

async fn load_trained(rc: &RunContext, man: &Manifest) -> Result<ModelArtefact> {
    let f = man
        .files
        .iter()
        .find(|f| f.path.ends_with(crate::registry::ARTEFACT_FILE))
        .ok_or_else(|| EngineError::Internal("train output has no model file".into()))?;
    Ok(ModelArtefact::from_bytes(&rc.lake.get(&f.path).await?)?)
}

async fn evaluate<'a>(
    rc: &'a RunContext,
    s: &EvaluateStep,
    feats: Manifest,
    models: Vec<(String, Manifest)>,
) -> Result<(Commit<'a>, EvaluateOutput)> {
    let t = train_step_config(rc).ok_or_else(|| {
        EngineError::config(&rc.cfg.path, "evaluate needs a train step in the pipeline")
    })?;
    let data = load_labelled(rc, &feats).await?;
    let (_, test_idx) = split_by_device(&data.device, t.test_fraction, t.seed);
    let x = data.x.select_rows(&test_idx);
    let y = pick(&data.y, &test_idx);
    let mut results = BTreeMap::new();
    let mut best: Option<(String, f64)> = None;
    for (name, man) in &models {
        let art = load_trained(rc, man).await?;
        let proba = art.model.predict_proba(&x)?;
        let metrics = sluice_ml::evaluate(&y, &proba, s.threshold);
        let score = metrics.get(s.metric);
        info!(
            model = %name,
            metric = %crate::logfmt::metric_name(s.metric),
            score = %crate::logfmt::num(score),
            accuracy = %crate::logfmt::num(metrics.accuracy),
            auc = %crate::logfmt::num(metrics.auc),
            "evaluated"
        );
        if best
            .as_ref()
            .map(|(_, b)| better(s.metric, score, *b))
            .unwrap_or(true)
        {
            best = Some((name.clone(), score));
        }
        let mut curves = label_curves(&y, &proba, &metrics);
        curves.learning_curve = sluice_ml::curves::learning_curve(&art.model, &x, &y, 25)?;
        results.insert(name.clone(), ModelEvaluation { metrics, curves });
    }
    let (best_name, best_score) =
        best.ok_or_else(|| EngineError::Internal("no model to evaluate".into()))?;
    let mut c = Commit::begin(&rc.lake, &rc.step_dir(StepName::Evaluate));
    let out = EvaluateOutput {
        metric: s.metric,
        threshold: s.threshold,
        test_rows: x.n_rows() as u64,
        test_balance: ClassCounts::of(&y),
        models: results,
        best: best_name,
        best_score,
    };
    let body = serde_json::to_vec_pretty(&out)
        .map_err(|e| EngineError::Internal(format!("evaluation metrics: {e}")))?;
    c.put("metrics.json", Bytes::from(body)).await?;
    Ok((c, out))
}

/// Whether `score` beats `best` on `metric` (a NaN never does).
fn better(metric: Metric, score: f64, best: f64) -> bool {
    if best.is_nan() {
        return !score.is_nan();
    }
    if metric.higher_is_better() {
        score > best
    } else {
        score < best
    }
}

/// PR curve, calibration and score histograms of probabilities against
/// labels (`metrics` computed from the same).
fn label_curves(y: &[u8], proba: &[f64], metrics: &sluice_ml::Metrics) -> EvalCurves {
    use sluice_ml::curves::{calibration, histogram, pr_curve};
    let class = |c: u8| {
        histogram(
            y.iter()
                .zip(proba)
                .filter(move |(t, _)| **t == c)
                .map(|(_, p)| *p),
            HISTOGRAM_BINS,
        )
    };
    EvalCurves {
        pr: pr_curve(metrics),
        calibration: calibration(y, proba, 10),
        histogram: outputs::ScoreHistogram {
            indoor: class(1),
            outdoor: class(0),
            all: histogram(proba.iter().copied(), HISTOGRAM_BINS),
        },
        learning_curve: Vec::new(),
    }
}

/// Bins of the probability histograms.
const HISTOGRAM_BINS: usize = 20;

async fn deploy<'a>(
    rc: &'a RunContext,
    s: &crate::config::DeployStep,
    eval: Manifest,
) -> Result<(Commit<'a>, DeployOutput)> {
    let ev: EvaluateOutput = eval.output()?;
    let best = ev.best.clone();
    let score = ev.best_score;
    if let Some(min) = s.min_metric {
        // A NaN score (metric not computed) does not pass either.
        if score.is_nan() || score < min {
            return Err(EngineError::Step {
                step: "deploy".into(),
                message: format!(
                    "best model `{best}` scores {score:.4}, below min_metric {min}: not deployed"
                ),
            });
        }
    }
    let (_, man) = rc.upstream(StepName::Train, Some(&best)).await?;
    let mut art = load_trained(rc, &man).await?;
    let metrics = ev
        .models
        .get(&best)
        .map(|m| m.metrics.clone())
        .ok_or_else(|| EngineError::Step {
            step: "deploy".into(),
            message: format!("the evaluate output has no metrics for the best model `{best}`"),
        })?;
    let metrics_json = serde_json::to_value(&metrics)
        .map_err(|e| EngineError::Internal(format!("metrics serialization: {e}")))?;
    art.metrics = Some(metrics);
    art.extra.insert("threshold".into(), json!(ev.threshold));
    art.extra.insert("pipeline".into(), json!(rc.pipeline()));
    art.extra.insert("run_id".into(), json!(rc.run_id));
    attach_drift_reference(rc, &mut art).await?;
    let v = registry::publish(
        &rc.lake,
        registry::Publish {
            name: &s.model_name,
            artefact: Bytes::from(art.to_bytes()?),
            transform_state: &art.transform_state,
            metrics: &metrics_json,
            pipeline: rc.pipeline(),
            run_id: &rc.run_id,
            params: serde_json::to_value(registry::VersionParams {
                model: best.clone(),
            })
            .map_err(|e| EngineError::Internal(format!("version parameters: {e}")))?,
            inputs: vec![
                input(&format!("train/{best}"), &man),
                input("evaluate", &eval),
            ],
        },
    )
    .await?;
    info!(model = %best, name = %v.name, version = %v.version, "deployed");
    let mut c = Commit::begin(&rc.lake, &rc.step_dir(StepName::Deploy));
    let out = DeployOutput {
        name: v.name.clone(),
        version: v.version.clone(),
        model: best,
        metric: ev.metric,
        value: score,
    };
    let body = serde_json::to_vec_pretty(&out)
        .map_err(|e| EngineError::Internal(format!("deploy record: {e}")))?;
    c.put("deployed.json", Bytes::from(body)).await?;
    Ok((c, out))
}

/// The reference of inference drift checks: the model's features over all
/// labelled rows (devices are the sampling unit, so every device counts)
/// and its predictions over the held-out rows (the evaluate step's split;
/// on training rows they would be more confident than on new data).
async fn attach_drift_reference(rc: &RunContext, art: &mut ModelArtefact) -> Result<()> {
    let Some(t) = train_step_config(rc) else {
        return Ok(());
    };
    let (_, feats) = rc.upstream(StepName::Features, None).await?;
    let data = load_labelled(rc, &feats).await?;
    let (_, test_idx) = split_by_device(&data.device, t.test_fraction, t.seed);
    let proba = art.model.predict_proba(&data.x.select_rows(&test_idx))?;
    let x = &data.x;
    let cols = art
        .feature_names
        .iter()
        .map(|n| {
            x.names()
                .iter()
                .position(|m| m == n)
                .map(|j| x.column(j))
                .ok_or_else(|| EngineError::Internal(format!("feature `{n}` not in the table")))
        })
        .collect::<Result<Vec<&[f64]>>>()?;
    art.drift_reference = Some(sluice_ml::drift::reference_profile(
        &art.model, &cols, &proba,
    )?);
    Ok(())
}

/// Where this run's predictions go ([`RunContext::predictions_dir`]).
fn predictions_dir(rc: &RunContext) -> String {
    rc.predictions_dir()
}

async fn predict(
    rc: &RunContext,
    s: &PredictStep,
    params: &serde_json::Value,
    feats: Manifest,
    inputs: Vec<InputRef>,
) -> Result<Manifest> {
    // The model version the features were computed with (never a newer one).
    let feats_out: FeaturesOutput = feats.output()?;
    let version = feats_out.model.as_ref().map(|m| m.version.clone());
    let v = registry::resolve(
        &rc.lake,
        &s.model_name,
        version.as_deref().unwrap_or(&s.version),
    )
    .await?;
    let art = load_artefact(rc, &v).await?;
    let threshold = s
        .threshold
        .or_else(|| art.extra.get("threshold").and_then(|t| t.as_f64()))
        .unwrap_or(0.5);
    let udf: Arc<ScalarUDF> = Arc::new(predict_udf());
    let mut args: Vec<Expr> = vec![lit(rc.lake.table_url(&v.artefact_path()))];
    args.extend(art.feature_names.iter().map(|n| col(format!("\"{n}\""))));
    let explain = match s.explain {
        Some(0) => {
            return Err(EngineError::config(
                "predict.explain",
                "expected the number of top contributions to write (1 or more), found 0",
            ))
        }
        Some(k) => {
            let mut e = vec![
                lit(rc.lake.table_url(&v.artefact_path())),
                lit(k.min(art.feature_names.len()) as i64),
            ];
            e.extend(art.feature_names.iter().map(|n| col(format!("\"{n}\""))));
            Some(
                Arc::new(crate::explain::explain_udf())
                    .call(e)
                    .alias(crate::explain::EXPLANATION_COLUMN),
            )
        }
        None => None,
    };
    let proba = udf.call(args);
    let dir = predictions_dir(rc);
    let mut c = Commit::begin(&rc.lake, &dir).with_progress(progress::task(
        "predict",
        progress::Unit::Rows,
        feats.rows,
    ));
    let mut outs = Vec::new();
    for df in feature_frames(rc, &feats).await? {
        let mut first = vec![
            col("sample_id"),
            col("device_id"),
            col("ts"),
            proba.clone().alias("indoor_probability"),
        ];
        first.extend(explain.clone());
        let out = df.select(first)?;
        let mut cols = vec![
            col("sample_id"),
            col("device_id"),
            col("ts"),
            col("indoor_probability"),
            datafusion::logical_expr::when(
                col("indoor_probability").gt_eq(lit(threshold)),
                lit(1i32),
            )
            .otherwise(lit(0i32))?
            .alias("indoor"),
            lit(format!("{}/{}", v.name, v.version)).alias("model_version"),
        ];
        if explain.is_some() {
            cols.push(col(crate::explain::EXPLANATION_COLUMN));
        }
        let out = out.select(cols)?;
        outs.push(out);
    }
    let rows = c.write_parquet_parts(outs).await?;
    c.promote_files().await?;
    let drift =
        crate::drift::check(&art, feature_frames(rc, &feats).await?, proba, &s.drift).await?;
    if let Some(d) = &drift {
        crate::drift::write(
            &rc.lake,
            &format!("runs/{}/{}", rc.pipeline(), rc.run_id),
            d,
        )
        .await?;
    }
    if rows != feats.rows.unwrap_or(rows) {
        return Err(EngineError::Internal(format!(
            "predicted {rows} rows for {} input rows",
            feats.rows.unwrap_or(0)
        )));
    }
    let (probability_histogram, predicted_indoor) = prediction_histogram(rc, &c).await?;
    let scoring = score_against_truth(rc, &c, threshold).await?;
    if let Some(sc) = &scoring {
        info!(
            rows = sc.rows,
            accuracy = %crate::logfmt::num(sc.metrics.accuracy),
            auc = %crate::logfmt::num(sc.metrics.auc),
            "scored against truth labels"
        );
    }
    let out = PredictOutput {
        rows,
        predictions: dir.clone(),
        model: ModelProvenance {
            name: v.name.clone(),
            version: v.version.clone(),
            model: art.name.clone(),
            kind: Some(art.model.kind()),
            pipeline: Some(v.manifest.pipeline.clone()),
            run_id: Some(v.manifest.run_id.clone()),
            committed_at: v.manifest.finished_at.clone(),
            metrics: art.metrics.clone(),
        },
        threshold,
        predicted_indoor,
        probability_histogram,
        scoring,
        drift,
    };
    c.finish(
        "predictions",
        rc.pipeline(),
        &rc.run_id,
        params.clone(),
        inputs,
        outputs::to_manifest(&out)?,
    )
    .await
}

/// Predicted probabilities of the just-written predictions in
/// [`HISTOGRAM_BINS`] bins, and the rows predicted indoor (one aggregate
/// query over the `indoor_probability` and `indoor` columns).
async fn prediction_histogram(rc: &RunContext, c: &Commit<'_>) -> Result<(Vec<u64>, u64)> {
    use datafusion::functions_aggregate::expr_fn::{count, sum};
    let bins = HISTOGRAM_BINS as i64;
    let raw = datafusion::logical_expr::cast(
        col("indoor_probability") * lit(HISTOGRAM_BINS as f64),
        arrow::datatypes::DataType::Int64,
    );
    let bin = datafusion::logical_expr::when(raw.clone().gt_eq(lit(bins)), lit(bins - 1))
        .when(raw.clone().lt(lit(0i64)), lit(0i64))
        .otherwise(raw)?;
    let batches = rc
        .ctx
        .read_parquet(c.file_urls(), Default::default())
        .await?
        .aggregate(
            vec![bin.alias("bin")],
            vec![
                count(lit(1i64)).alias("n"),
                sum(datafusion::logical_expr::cast(
                    col("indoor"),
                    arrow::datatypes::DataType::Int64,
                ))
                .alias("indoor"),
            ],
        )?
        .collect()
        .await?;
    let mut hist = vec![0u64; HISTOGRAM_BINS];
    let mut indoor = 0u64;
    for b in &batches {
        let as_i64 = |name: &str| -> Result<arrow::array::ArrayRef> {
            let c = b.column_by_name(name).ok_or_else(|| {
                EngineError::Internal(format!("prediction histogram: no column `{name}`"))
            })?;
            Ok(arrow::compute::cast(c, &arrow::datatypes::DataType::Int64)?)
        };
        let (bin, n, ind) = (as_i64("bin")?, as_i64("n")?, as_i64("indoor")?);
        let (bin, n, ind) = (
            bin.as_primitive::<Int64Type>(),
            n.as_primitive::<Int64Type>(),
            ind.as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            if bin.is_valid(i) {
                hist[bin.value(i).clamp(0, bins - 1) as usize] += n.value(i) as u64;
            }
            if ind.is_valid(i) {
                indoor += ind.value(i) as u64;
            }
        }
    }
    Ok((hist, indoor))
}

/// Metrics and curves of the just-written predictions against
/// `truth/labels/`, when present.
async fn score_against_truth(
    rc: &RunContext,
    c: &Commit<'_>,
    threshold: f64,
) -> Result<Option<Scoring>> {
    if rc.lake.list("truth/labels/").await?.is_empty() {
        return Ok(None);
    }
    let preds = rc
        .ctx
        .read_parquet(c.file_urls(), Default::default())
        .await?
        .select(vec![
            col("sample_id").alias("p_id"),
            col("indoor_probability"),
        ])?;
    let truth = rc
        .ctx
        .read_parquet(rc.lake.table_url("truth/labels/"), Default::default())
        .await?;
    let joined = preds
        .join(
            truth,
            datafusion::common::JoinType::Inner,
            &["p_id"],
            &["sample_id"],
            None,
        )?
        .select(vec![col("indoor_probability"), col("indoor")])?;
    let batches = joined.collect().await?;
    let mut y = Vec::new();
    let mut p = Vec::new();
    for b in &batches {
        let pr = b.column(0).as_primitive::<arrow::datatypes::Float64Type>();
        let t = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Int64)?;
        let t = t.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            p.push(pr.value(i));
            y.push((t.value(i) != 0) as u8);
        }
    }
    if y.is_empty() {
        return Ok(None);
    }
    let metrics = sluice_ml::evaluate(&y, &p, threshold);
    let curves = label_curves(&y, &p, &metrics);
    Ok(Some(Scoring {
        rows: y.len() as u64,
        metrics,
        curves,
    }))
}

/// Facts worth printing at the end of a run, from the steps' typed outputs.
pub(super) fn summary(rc: &RunContext, outcomes: &[StepOutcome]) -> Result<RunSummary> {
    let mut s = RunSummary::default();
    for o in outcomes {
        for m in &o.manifests {
            match o.step {
                StepName::Evaluate => s.evaluation = Some(m.output()?),
                StepName::Deploy => s.deployed = Some(m.output()?),
                StepName::Predict => {
                    let p: PredictOutput = m.output()?;
                    s.predictions_url = Some(rc.lake.table_url(&p.predictions));
                    s.predictions = Some(p);
                }
                _ => {}
            }
        }
    }
    Ok(s)
}

/// Writes `report.html` and `report.json` for the run; returns the HTML path.
pub(super) async fn write_report(
    rc: &RunContext,
    outcomes: &[StepOutcome],
    started_at: &str,
    failure: Option<&crate::report::Failure>,
) -> Result<String> {
    let report = crate::report_build::build(rc, outcomes, started_at, failure)?;
    let dir = format!("runs/{}/{}", rc.pipeline(), rc.run_id);
    let html = crate::report::render_html(&report)?;
    let js = crate::report::render_json(&report)?;
    rc.lake
        .put(&format!("{dir}/report.json"), Bytes::from(js))
        .await?;
    rc.lake
        .put(&format!("{dir}/report.html"), Bytes::from(html))
        .await?;
    Ok(format!("{dir}/report.html"))
}
