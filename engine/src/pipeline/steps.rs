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
use crate::registry;

pub use crate::predict::{predict_udf, PREDICT_UDF};

/// Runs one step unless (when resuming) its committed output matches.
pub(super) async fn run_step(
    rc: &RunContext,
    step: &StepConfig,
    resuming: bool,
) -> Result<(&'static str, Vec<Manifest>)> {
    let params = serde_json::to_value(step).unwrap_or_default();
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
                        return Ok(("skipped", vec![m]));
                    }
                }
            }
            let m = predict(rc, s, &params, feats, inputs).await?;
            Ok(("ran", vec![m]))
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
async fn single<'a, F, Fut>(
    rc: &'a RunContext,
    step: StepName,
    params: &serde_json::Value,
    inputs: Vec<InputRef>,
    resuming: bool,
    body: F,
) -> Result<(&'static str, Vec<Manifest>)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(Commit<'a>, serde_json::Value)>>,
{
    let dir = rc.step_dir(step);
    if resuming {
        if let Some(m) = commit::read_manifest(&rc.lake, &dir).await? {
            if m.matches(&commit::fingerprint_json(params), &inputs) {
                info!(step = %step, "committed output matches parameters and inputs: skipped");
                return Ok(("skipped", vec![m]));
            }
        }
    }
    let (c, extra) = body().await?;
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
    Ok(("ran", vec![m]))
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

async fn ingest<'a>(rc: &'a RunContext, s: &IngestStep) -> Result<(Commit<'a>, serde_json::Value)> {
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
    let mut extra = json!({});
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
        extra["rejected_rows"] = json!(n);
    }
    let mut c = Commit::begin(&rc.lake, &dir);
    let pb = crate::progress::spinner("ingest");
    let n_parts = parts.len();
    let rows = match c.write_parquet_parts(parts).await {
        Ok(rows) => rows,
        Err(e) => {
            return Err(crate::ingest::name_bounds_error(&rc.ctx, &rc.lake, &checks, e).await)
        }
    };
    pb.finish_and_clear();
    if let Some(expected) = expected_rows {
        // Not committed: the attempt stays invisible when this fails.
        crate::ingest::check_joined_rows(&rc.ctx, &rc.lake, &checks, expected, rows).await?;
    }
    extra["rows"] = json!(rows);
    if n_parts > 1 {
        extra["join_slices"] = json!(n_parts);
    }
    Ok((c, extra))
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
) -> Result<(Commit<'a>, serde_json::Value)> {
    let df = commit::read_parquet(&rc.ctx, &rc.lake, &ingest).await?;
    let (fitted, model_ref): (FittedPipeline, serde_json::Value) = match model {
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
            let pb = crate::progress::spinner("fitting features");
            let f = pipeline.fit(df.clone()).await?;
            pb.finish_and_clear();
            (f, serde_json::Value::Null)
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
            (f, json!({"name": v.name, "version": v.version}))
        }
    };
    let mut c = Commit::begin(&rc.lake, &rc.step_dir(StepName::Features));
    let state = serde_json::to_value(&fitted)
        .map_err(|e| EngineError::Internal(format!("fitted state serialization: {e}")))?;
    c.put(
        "transform_state.json",
        Bytes::from(serde_json::to_vec_pretty(&state).unwrap_or_default()),
    )
    .await?;
    let parts = feature_parts(rc, &fitted, df, ingest.rows.unwrap_or(0), s.slices).await?;
    let n_parts = parts.len();
    let rows = if s.materialize {
        let pb = crate::progress::spinner("features");
        let rows = c.write_parquet_parts(parts).await?;
        pb.finish_and_clear();
        rows
    } else {
        // The chain maps rows one to one; the plan was built (and every
        // column checked) above, the predict step runs it.
        info!("features not materialized: predict computes them from the ingest output");
        ingest.rows.unwrap_or(0)
    };
    Ok((
        c,
        json!({"rows": rows, "feature_names": fitted.feature_names(), "model": model_ref, "materialized": s.materialize, "slices": n_parts}),
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
    if feats.extra["materialized"].as_bool() != Some(false) {
        return Ok(vec![commit::read_parquet(&rc.ctx, &rc.lake, feats).await?]);
    }
    let (_, ingest) = rc.upstream(StepName::Ingest, None).await?;
    let state = fitted_state(rc, feats).await?;
    let fitted: FittedPipeline = serde_json::from_value(state).map_err(|e| {
        EngineError::Internal(format!("features output: fitted state unreadable: {e}"))
    })?;
    let slices = feats.extra["slices"].as_u64().map(|n| n as usize);
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
    let names: Vec<String> =
        serde_json::from_value(feats.extra["feature_names"].clone()).map_err(|e| {
            EngineError::Internal(format!("features manifest lacks feature_names: {e}"))
        })?;
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
) -> Result<(&'static str, Vec<Manifest>)> {
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
        return Ok(("skipped", done));
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
    let fit_one = |m: &ModelConfig| -> Result<(TrainedModel, serde_json::Value, f64)> {
        let t = std::time::Instant::now();
        let spec = m.spec.to_spec();
        let (model, cv) = if m.grid.is_empty() && m.cv.is_none() {
            (sluice_ml::train(&spec, &x, &y)?, serde_json::Value::Null)
        } else {
            let cfg = sluice_ml::GridSearchConfig {
                folds: m.cv.as_ref().map(|c| c.folds).unwrap_or(0),
                metric: m.cv.as_ref().map(|c| c.metric).unwrap_or(Metric::Auc),
                seed: s.seed,
                grid: m.grid.clone(),
                parallelism: m.cv.as_ref().and_then(|c| c.parallelism),
            };
            let r = sluice_ml::grid_search(&spec, &cfg, &x, &y)?;
            let points: Vec<serde_json::Value> = r
                .points
                .iter()
                .map(|p| json!({"params": p.params, "mean": p.mean_score, "std": p.std_score}))
                .collect();
            let best = r
                .points
                .get(r.best_index)
                .map(|p| json!(p.params))
                .unwrap_or_default();
            (
                r.best_model,
                json!({"points": points, "best_params": best, "best_spec": r.best_spec, "metric": cfg.metric}),
            )
        };
        Ok((model, cv, t.elapsed().as_secs_f64()))
    };
    let local: Vec<&ModelConfig> = todo
        .iter()
        .zip(&on_cluster)
        .filter(|(_, c)| c.is_none())
        .map(|((m, _, _), _)| *m)
        .collect();
    let mut local_results: Vec<Result<(TrainedModel, serde_json::Value, f64)>> =
        if s.parallel && local.len() > 1 {
            use rayon::prelude::*;
            local.par_iter().map(|m| fit_one(m)).collect::<Vec<_>>()
        } else {
            local.iter().map(|m| fit_one(m)).collect::<Vec<_>>()
        }
        .into_iter()
        .rev()
        .collect();
    for ((m, p, dir), cluster_fit) in todo.into_iter().zip(on_cluster) {
        let (res, train_rows, distributed) = match cluster_fit {
            Some((fit, secs)) => (
                Ok((fit.model.clone(), serde_json::Value::Null, secs)),
                fit.rows as usize,
                fit.summary(),
            ),
            None => (
                local_results
                    .pop()
                    .unwrap_or_else(|| Err(EngineError::Internal("missing local fit".into()))),
                x.n_rows(),
                serde_json::Value::Null,
            ),
        };
        let (model, cv, secs) = res?;
        let mut art = ModelArtefact::new(
            m.name.clone(),
            model,
            m.spec.to_spec(),
            commit::now_rfc3339(),
        );
        art.transform_state = state.clone();
        art.extra.insert("cv".into(), cv.clone());
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
                json!({"model": m.name, "train_rows": train_rows, "seconds": secs, "cv": cv,
                       "importance": art.model.feature_importance(), "distributed": distributed}),
            )
            .await?;
        info!(model = %m.name, seconds = secs, "model trained");
        done.push(man);
    }
    Ok(("ran", done))
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
) -> Result<(Commit<'a>, serde_json::Value)> {
    let t = train_step_config(rc).expect("checked by trained_models");
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
        info!(model = %name, metric = ?s.metric, score, accuracy = metrics.accuracy, auc = metrics.auc, "evaluated");
        if best.as_ref().map(|(_, b)| score > *b).unwrap_or(true) {
            best = Some((name.clone(), score));
        }
        results.insert(
            name.clone(),
            serde_json::to_value(&metrics).unwrap_or_default(),
        );
    }
    let (best_name, best_score) =
        best.ok_or_else(|| EngineError::Internal("no model to evaluate".into()))?;
    let mut c = Commit::begin(&rc.lake, &rc.step_dir(StepName::Evaluate));
    let body = json!({"metric": s.metric, "threshold": s.threshold, "test_rows": x.n_rows(), "models": results, "best": best_name, "best_score": best_score});
    c.put(
        "metrics.json",
        Bytes::from(serde_json::to_vec_pretty(&body).unwrap_or_default()),
    )
    .await?;
    Ok((c, body))
}

async fn deploy<'a>(
    rc: &'a RunContext,
    s: &crate::config::DeployStep,
    eval: Manifest,
) -> Result<(Commit<'a>, serde_json::Value)> {
    let best = eval.extra["best"].as_str().unwrap_or_default().to_string();
    let score = eval.extra["best_score"].as_f64().unwrap_or(f64::NAN);
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
    let metrics: sluice_ml::Metrics =
        serde_json::from_value(eval.extra["models"][&best].clone())
            .map_err(|e| EngineError::Internal(format!("evaluate metrics unreadable: {e}")))?;
    art.metrics = Some(metrics);
    art.extra
        .insert("threshold".into(), eval.extra["threshold"].clone());
    art.extra.insert("pipeline".into(), json!(rc.pipeline()));
    art.extra.insert("run_id".into(), json!(rc.run_id));
    attach_drift_reference(rc, &mut art).await?;
    let v = registry::publish(
        &rc.lake,
        registry::Publish {
            name: &s.model_name,
            artefact: Bytes::from(art.to_bytes()?),
            transform_state: &art.transform_state,
            metrics: &eval.extra["models"][&best],
            pipeline: rc.pipeline(),
            run_id: &rc.run_id,
            params: json!({"model": best}),
            inputs: vec![
                input(&format!("train/{best}"), &man),
                input("evaluate", &eval),
            ],
        },
    )
    .await?;
    info!(model = %best, name = %v.name, version = %v.version, "deployed");
    let mut c = Commit::begin(&rc.lake, &rc.step_dir(StepName::Deploy));
    let body = json!({"name": v.name, "version": v.version, "model": best, "metric": eval.extra["metric"], "value": score});
    c.put(
        "deployed.json",
        Bytes::from(serde_json::to_vec_pretty(&body).unwrap_or_default()),
    )
    .await?;
    Ok((c, body))
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

/// `predictions/run=<run_id>`, or for a run restricted to single partition
/// values (`--partition date=2026-11-28`) the same partitions as the raw
/// tables, `predictions/date=2026-11-28`: a rerun of that day commits a new
/// manifest there, replacing the day's predictions atomically.
fn predictions_dir(rc: &RunContext) -> String {
    let partitions = rc.cfg.config.steps.iter().find_map(|s| match s {
        StepConfig::Ingest(i) if !i.partitions.is_empty() => Some(&i.partitions),
        _ => None,
    });
    match partitions {
        Some(p) if p.iter().all(|f| f.is_single()) => {
            let parts: Vec<String> = p.iter().map(|f| f.to_string()).collect();
            format!("predictions/{}", parts.join("/"))
        }
        _ => format!("predictions/run={}", rc.run_id),
    }
}

async fn predict(
    rc: &RunContext,
    s: &PredictStep,
    params: &serde_json::Value,
    feats: Manifest,
    inputs: Vec<InputRef>,
) -> Result<Manifest> {
    // The model version the features were computed with (never a newer one).
    let version = feats.extra["model"]["version"].as_str().map(str::to_string);
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
    let mut c = Commit::begin(&rc.lake, &dir);
    let pb = crate::progress::spinner("predict");
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
    pb.finish_and_clear();
    c.promote_files().await?;
    let mut extra = json!({"rows": rows, "model": {"name": v.name, "version": v.version}, "threshold": threshold});
    let drift =
        crate::drift::check(&art, feature_frames(rc, &feats).await?, proba, &s.drift).await?;
    if let Some(d) = &drift {
        crate::drift::write(
            &rc.lake,
            &format!("runs/{}/{}", rc.pipeline(), rc.run_id),
            d,
        )
        .await?;
        extra["drift"] = serde_json::to_value(d).unwrap_or_default();
    }
    if rows != feats.rows.unwrap_or(rows) {
        return Err(EngineError::Internal(format!(
            "predicted {rows} rows for {} input rows",
            feats.rows.unwrap_or(0)
        )));
    }
    if let Some(score) = score_against_truth(rc, &c, threshold).await? {
        info!(
            accuracy = score["accuracy"].as_f64(),
            auc = score["auc"].as_f64(),
            "scored against truth labels"
        );
        extra["scoring"] = score;
    }
    c.finish(
        "predictions",
        rc.pipeline(),
        &rc.run_id,
        params.clone(),
        inputs,
        extra,
    )
    .await
}

/// Accuracy/AUC of the just-written predictions against `truth/labels/`, when present.
async fn score_against_truth(
    rc: &RunContext,
    c: &Commit<'_>,
    threshold: f64,
) -> Result<Option<serde_json::Value>> {
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
    let m = sluice_ml::evaluate(&y, &p, threshold);
    Ok(Some(
        json!({"rows": y.len(), "accuracy": m.accuracy, "auc": m.auc, "metrics": m}),
    ))
}

/// Facts worth printing at the end of a run.
pub(super) async fn summary(rc: &RunContext, outcomes: &[StepOutcome]) -> serde_json::Value {
    let mut s = json!({"run_id": rc.run_id});
    for o in outcomes {
        for m in &o.manifests {
            match o.step {
                StepName::Evaluate => {
                    s["best_model"] = m.extra["best"].clone();
                    s["evaluation"] = m.extra["models"].clone();
                }
                StepName::Deploy => s["deployed"] = m.extra.clone(),
                StepName::Predict => {
                    s["predictions"] = json!(rc.lake.table_url(&predictions_dir(rc)));
                    s["predicted_rows"] = m.extra["rows"].clone();
                    s["scoring"] = m.extra["scoring"].clone();
                }
                _ => {}
            }
        }
    }
    s
}

/// Writes `report.html` and `report.json` for the run; returns the HTML path.
pub(super) async fn write_report(
    rc: &RunContext,
    outcomes: &[StepOutcome],
    started_at: &str,
    summary: &serde_json::Value,
) -> Result<String> {
    let report = crate::report_build::build(rc, outcomes, started_at, summary);
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
