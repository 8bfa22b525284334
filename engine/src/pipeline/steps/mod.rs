//! The step implementations, one module per step. Each reads its inputs
//! from committed outputs and commits its own; none holds state between
//! invocations. This module runs a step (or skips it when its committed
//! output matches), and builds the run's summary and report.

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
use crate::ingest::DeferredJoin;
use crate::outputs::{
    self, ClassCounts, CvOutput, DeployOutput, EvalCurves, EvaluateOutput, FeaturesOutput,
    IngestOutput, ManifestOutput, ModelEvaluation, ModelProvenance, ModelRef, PredictOutput,
    RunSummary, Scoring, StepOutput, StepStatus, TrainOutput,
};
use crate::{progress, registry};

mod deploy;
mod evaluate;
mod features;
mod ingest;
mod predict;
mod train;

use deploy::*;
use evaluate::*;
use features::*;
use ingest::*;
use predict::*;
use train::*;

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
