//! Pipelines: run the configured steps in order, each reading its inputs
//! from the lake and committing its outputs atomically, so any step can be
//! rerun alone (`--steps`, `--from`) and a killed run resumes (`--resume`).
//!
//! ```text
//! <lake>/runs/<pipeline>/<run_id>/<step>/_manifest.json
//! ```
//! To add a step: a [`crate::config::StepConfig`] variant, a function in
//! `steps.rs` that reads its inputs through [`RunContext::upstream`] and
//! commits with [`crate::commit::Commit`], and an arm in [`run_step`].

pub mod plan;
mod steps;

use std::time::Instant;

use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::commit::{self, Manifest};
use crate::config::{LoadedConfig, PipelineKind, StepConfig, StepName};
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::logfmt;
use crate::outputs::{RunSummary, StepStatus};
use crate::session::{self, EngineSettings};

pub use plan::{check, RunPlan};
pub use steps::{predict_udf, PREDICT_UDF};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only these steps (others' outputs are taken from this run or the
    /// latest run that committed them).
    pub steps: Option<Vec<StepName>>,
    /// Run from this step to the end.
    pub from: Option<StepName>,
    /// Resume this run: skip steps whose committed manifest matches.
    pub resume: Option<String>,
    /// Use this run id (e.g. Airflow's) instead of a fresh one; steps whose
    /// manifest matches are skipped, as with `resume`.
    pub run_id: Option<String>,
    /// Train only these models (`--model`).
    pub models: Option<Vec<String>>,
    /// Override the engine settings (`--scheduler`).
    pub engine: Option<EngineSettings>,
    /// Override the lake location (`--lake`).
    pub lake: Option<String>,
}

/// What happened to one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepOutcome {
    /// The step.
    pub step: StepName,
    /// Ran, skipped (manifest matched), not selected or failed.
    pub status: StepStatus,
    /// Seconds spent in this invocation.
    pub seconds: f64,
    /// Lake-relative output directory (predict: `predictions/run=<id>`).
    pub output: String,
    /// Committed manifests (one per output directory; train has one per model).
    pub manifests: Vec<Manifest>,
    /// Attempts this invocation made (1 unless the step was retried after
    /// its cluster job was lost, `engine.retry`).
    #[serde(default = "one")]
    pub attempts: u32,
    /// The failed attempts before the one that counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<StepRetry>,
}

fn one() -> u32 {
    1
}

/// A failed attempt of a step that was run again (`engine.retry`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRetry {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// Its error.
    pub error: String,
    /// Seconds waited before the next attempt.
    pub backoff_seconds: f64,
}

/// The result of `sluice run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    /// Pipeline name.
    pub pipeline: String,
    /// Run id.
    pub run_id: String,
    /// Lake URL (redacted).
    pub lake: String,
    /// Per-step outcomes, in order.
    pub steps: Vec<StepOutcome>,
    /// Lake-relative path of the HTML report.
    pub report_html: String,
    /// Facts worth printing (deployed version, metrics, prediction path).
    pub summary: RunSummary,
}

/// Everything a step needs.
pub struct RunContext {
    /// The lake.
    pub lake: Lake,
    /// The DataFusion session (embedded or Ballista).
    pub ctx: SessionContext,
    /// The config.
    pub cfg: LoadedConfig,
    /// This run's id.
    pub run_id: String,
    /// `--model` filter.
    pub models: Option<Vec<String>>,
}

impl RunContext {
    /// Pipeline name.
    pub fn pipeline(&self) -> &str {
        &self.cfg.config.name
    }

    /// Lake-relative directory of a step output in this run.
    pub fn step_dir(&self, step: StepName) -> String {
        format!("runs/{}/{}/{}", self.pipeline(), self.run_id, step)
    }

    /// Where a step's output goes: its step directory, except predict,
    /// which commits straight into `predictions/run=<run_id>`.
    pub fn output_dir(&self, step: StepName) -> String {
        match step {
            StepName::Predict => self.predictions_dir(),
            other => self.step_dir(other),
        }
    }

    /// `predictions/run=<run_id>`, or for a run restricted to single
    /// partition values (`--partition date=2026-11-28`) the same partitions
    /// as the raw tables, `predictions/date=2026-11-28`: a rerun of that day
    /// commits a new manifest there, replacing the day's predictions
    /// atomically.
    pub fn predictions_dir(&self) -> String {
        let partitions = self.cfg.config.steps.iter().find_map(|s| match s {
            StepConfig::Ingest(i) if !i.partitions.is_empty() => Some(&i.partitions),
            _ => None,
        });
        match partitions {
            Some(p) if p.iter().all(|f| f.is_single()) => {
                let parts: Vec<String> = p.iter().map(|f| f.to_string()).collect();
                format!("predictions/{}", parts.join("/"))
            }
            _ => predictions_dir(&self.run_id),
        }
    }

    /// The committed output of `step` (optionally a sub-directory such as a
    /// model name): this run's if committed, else the latest run's.
    pub async fn upstream(&self, step: StepName, sub: Option<&str>) -> Result<(String, Manifest)> {
        let suffix = match sub {
            Some(s) => format!("{step}/{s}"),
            None => step.to_string(),
        };
        let own = format!("runs/{}/{}/{}", self.pipeline(), self.run_id, suffix);
        if commit::read_manifest(&self.lake, &own).await?.is_some() {
            let m = commit::open_committed(&self.lake, &own, commit::Verify::Size).await?;
            return Ok((own, m));
        }
        let mut runs = list_runs(&self.lake, self.pipeline()).await?;
        runs.reverse();
        for run in runs {
            let dir = format!("runs/{}/{}/{}", self.pipeline(), run, suffix);
            if commit::read_manifest(&self.lake, &dir).await?.is_some() {
                info!(step = %step, from_run = %run, "using committed output of an earlier run");
                let m = commit::open_committed(&self.lake, &dir, commit::Verify::Size).await?;
                return Ok((dir, m));
            }
        }
        Err(EngineError::Step {
            step: step.to_string(),
            message: format!(
                "no committed output of `{suffix}` in run {} or any earlier run of `{}`: run that step first",
                self.run_id,
                self.pipeline()
            ),
        })
    }
}

/// Run ids of a pipeline, oldest first (ids start with a UTC timestamp).
pub async fn list_runs(lake: &Lake, pipeline: &str) -> Result<Vec<String>> {
    let prefix = format!("runs/{pipeline}/");
    let mut ids = std::collections::BTreeSet::new();
    for meta in lake.list(&prefix).await? {
        let rel = lake.relative(&meta.location);
        if let Some(rest) = rel.strip_prefix(&prefix) {
            if let Some((id, _)) = rest.split_once('/') {
                ids.insert(id.to_string());
            }
        }
    }
    Ok(ids.into_iter().collect())
}

/// A lost connection to the Ballista scheduler surfaces as a transport error
/// ("h2 protocol error", "broken pipe", "connection refused"); say what it
/// means and how to continue. Other errors pass unchanged.
fn explain_cluster_failure(engine: &EngineSettings, run_id: &str, message: String) -> String {
    const LOST: [&str; 6] = [
        "h2 protocol error",
        "broken pipe",
        "connection refused",
        "transport error",
        "connection reset",
        "stream closed",
    ];
    let lower = message.to_ascii_lowercase();
    if let (Some(url), Some(name)) = (
        &engine.scheduler,
        crate::watchdog::unknown_function(&message),
    ) {
        return format!(
            "the Ballista cluster at {url} does not know the function `{name}`: its scheduler \
             and executors run another Sluice version than this client; deploy the same \
             version everywhere (the image tag, or rebuild sluice-scheduler and sluice-executor)"
        );
    }
    match &engine.scheduler {
        Some(url) if LOST.iter().any(|p| lower.contains(p)) => format!(
            "lost the Ballista scheduler at {url} ({message}); committed steps are kept: \
             restart the scheduler and rerun with `--resume {run_id}`"
        ),
        Some(url) if crate::watchdog::is_cluster_loss(&message) => format!(
            "{message}; the Ballista cluster at {url} lost this step's work; committed steps \
             are kept: check the cluster (`sluice cluster status`, the executor pods) and rerun \
             with `--resume {run_id}`"
        ),
        _ => message,
    }
}

/// Lake-relative directory of a run's predictions (the data contract).
pub fn predictions_dir(run_id: &str) -> String {
    format!("predictions/run={run_id}")
}

/// Written when a run starts (`runs/<pipeline>/<run_id>/_run.json`), so the
/// run can be resumed even if it was killed before its first commit.
pub const RUN_MARKER: &str = "_run.json";

/// The content of [`RUN_MARKER`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMarker {
    /// Pipeline name.
    pub pipeline: String,
    /// Run id.
    pub run_id: String,
    /// When the run was last started or resumed (RFC 3339).
    pub last_started_at: String,
    /// The config file it was started from.
    pub config: String,
}

/// A fresh run id: UTC timestamp plus a random suffix.
pub fn new_run_id() -> String {
    let ts = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("{ts}-{}", &r[..6])
}

/// Which configured steps this invocation runs.
fn selected(cfg: &LoadedConfig, opts: &RunOptions) -> Result<Vec<bool>> {
    let names: Vec<StepName> = cfg.config.steps.iter().map(StepConfig::name).collect();
    for s in opts.steps.iter().flatten().chain(opts.from.iter()) {
        if !names.contains(s) {
            return Err(EngineError::config(
                "--steps/--from",
                format!(
                    "step `{s}` is not in {}; its steps are {}",
                    cfg.path,
                    names
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let from_pos = opts
        .from
        .map(|f| names.iter().position(|n| *n == f).unwrap_or(0))
        .unwrap_or(0);
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, n)| i >= from_pos && opts.steps.as_ref().map(|s| s.contains(n)).unwrap_or(true))
        .collect())
}

/// Runs a pipeline config.
pub async fn run(cfg: &LoadedConfig, opts: &RunOptions) -> Result<RunOutcome> {
    let started = Instant::now();
    let started_at = commit::now_rfc3339();
    // Everything a run would reject, rejected before any data is read.
    check(cfg, opts).await?;
    let lake = Lake::open_existing(&plan::lake_of(cfg, opts))?;
    let engine = plan::engine_of(cfg, opts);
    let ctx = session::connect(&engine, Some(&lake)).await?;
    lake.register(&ctx);
    let resuming = opts.resume.is_some() || opts.run_id.is_some();
    let run_id = opts
        .resume
        .clone()
        .or_else(|| opts.run_id.clone())
        .unwrap_or_else(new_run_id);
    // The run exists from its first moment (not only from its first commit),
    // so a run killed before any step committed can still be resumed.
    let marker = format!("runs/{}/{run_id}/{RUN_MARKER}", cfg.config.name);
    // Written on every start (a plain PUT: the first request of a run, so a
    // wrong key or a missing permission is reported precisely).
    let body = RunMarker {
        pipeline: cfg.config.name.clone(),
        run_id: run_id.clone(),
        last_started_at: started_at.clone(),
        config: cfg.path.clone(),
    };
    let body = serde_json::to_vec_pretty(&body)
        .map_err(|e| EngineError::Internal(format!("run marker: {e}")))?;
    lake.put(&marker, bytes::Bytes::from(body)).await?;
    info!(pipeline = %cfg.config.name, run_id = %run_id, lake = %crate::lake::redact(lake.url()), engine = %engine.mode, "run started");
    let mut effective = cfg.clone();
    // Steps see the engine this run uses (`--scheduler` overrides the file).
    effective.config.engine = engine.clone();
    let rc = RunContext {
        lake,
        ctx,
        cfg: effective,
        run_id,
        models: opts.models.clone(),
    };
    let sel = selected(cfg, opts)?;
    let mut outcomes = Vec::new();
    for (step, run_it) in cfg.config.steps.iter().zip(sel) {
        let name = step.name();
        if !run_it {
            outcomes.push(StepOutcome {
                step: name,
                status: StepStatus::NotSelected,
                seconds: 0.0,
                output: rc.output_dir(name),
                manifests: vec![],
                attempts: 0,
                retries: vec![],
            });
            continue;
        }
        let t = Instant::now();
        info!(step = %name, "step started");
        let mut retries = Vec::new();
        let result = loop {
            let attempt = retries.len() as u32 + 1;
            // A retry resumes: outputs this step already committed (a
            // trained model) are kept.
            match steps::run_step(&rc, step, resuming || attempt > 1).await {
                Ok(done) => break Ok(done),
                Err(e) => {
                    let message = e.to_string();
                    let retry = engine.mode == session::EngineMode::Ballista
                        && attempt < engine.retry.attempts
                        && crate::watchdog::is_cluster_loss(&message);
                    if !retry {
                        if let EngineError::Step { .. } = e {
                            break Err(e);
                        }
                        let tried = if attempt > 1 {
                            format!(" (attempt {attempt} of {})", engine.retry.attempts)
                        } else {
                            String::new()
                        };
                        break Err(EngineError::Step {
                            step: name.to_string(),
                            message: format!(
                                "{}{tried}",
                                explain_cluster_failure(&engine, &rc.run_id, message)
                            ),
                        });
                    }
                    let wait = engine.retry.backoff(attempt + 1);
                    warn!(step = %name, attempt, of = engine.retry.attempts, backoff_seconds = %logfmt::secs(wait.as_secs_f64()), error = %message,
                        "the step's cluster job was lost with a cluster process; running the step again");
                    retries.push(StepRetry {
                        attempt,
                        error: message,
                        backoff_seconds: wait.as_secs_f64(),
                    });
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let secs = t.elapsed().as_secs_f64();
        let (status, manifests) = match result {
            Ok(r) => r,
            Err(e) => {
                outcomes.push(StepOutcome {
                    step: name,
                    status: StepStatus::Failed,
                    seconds: secs,
                    output: rc.output_dir(name),
                    manifests: vec![],
                    attempts: retries.len() as u32 + 1,
                    retries,
                });
                let failure = crate::report::Failure {
                    step: name.to_string(),
                    error: e.to_string(),
                };
                match steps::write_report(&rc, &outcomes, &started_at, Some(&failure)).await {
                    Ok(path) => warn!(
                        step = %name,
                        report = %rc.lake.table_url(&path),
                        "run failed; the report names the failing step"
                    ),
                    Err(re) => warn!(error = %re, "could not write the report of the failed run"),
                }
                return Err(e);
            }
        };
        let rows = manifests.first().and_then(|m| m.rows);
        info!(step = %name, status = %status, seconds = %logfmt::secs(secs), attempts = retries.len() + 1, rows = %logfmt::count(rows), "step finished");
        outcomes.push(StepOutcome {
            step: name,
            status,
            seconds: secs,
            output: rc.output_dir(name),
            manifests,
            attempts: retries.len() as u32 + 1,
            retries,
        });
    }
    let summary = steps::summary(&rc, &outcomes)?;
    let report_html = steps::write_report(&rc, &outcomes, &started_at, None)
        .await
        .unwrap_or_else(|e| {
            warn!(error = %e, "could not write the run report");
            String::new()
        });
    info!(pipeline = %cfg.config.name, run_id = %rc.run_id, seconds = %logfmt::secs(started.elapsed().as_secs_f64()), "run finished");
    Ok(RunOutcome {
        pipeline: cfg.config.name.clone(),
        run_id: rc.run_id.clone(),
        lake: crate::lake::redact(rc.lake.url()),
        steps: outcomes,
        report_html,
        summary,
    })
}

/// Whether a config is a training pipeline.
pub fn is_training(cfg: &LoadedConfig) -> bool {
    cfg.config.kind == PipelineKind::Training
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_scheduler_is_explained_with_the_resume_command() {
        let ballista = EngineSettings {
            scheduler: Some("df://127.0.0.1:50050".into()),
            ..EngineSettings::default()
        };
        let raw = "Execution error: h2 protocol error: error reading a body from connection";
        let msg = explain_cluster_failure(&ballista, "r1", raw.into());
        assert!(
            msg.contains("df://127.0.0.1:50050")
                && msg.contains("--resume r1")
                && msg.contains(raw)
        );
        // Other errors, and the embedded engine, pass unchanged.
        assert_eq!(
            explain_cluster_failure(&ballista, "r1", "bad column".into()),
            "bad column"
        );
        assert_eq!(
            explain_cluster_failure(&EngineSettings::default(), "r1", raw.into()),
            raw
        );
        let stale = "Could not parse plan: NotImplemented(\\\"LogicalExtensionCodec is not provided for scalar function signal_level\\\")";
        let msg = explain_cluster_failure(&ballista, "r1", stale.into());
        assert!(
            msg.contains("`signal_level`") && msg.contains("same version"),
            "{msg}"
        );
        let stale_window = "Plan(\\\"DataFusion error: NotImplemented(\\\\\\\"LogicalExtensionCodec is not provided for window function sluice_shift\\\\\\\")\\\")";
        let msg = explain_cluster_failure(&ballista, "r1", stale_window.into());
        assert!(msg.contains("`sluice_shift`"), "{msg}");
    }
}
