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

pub mod days;
pub mod plan;
mod steps;

use std::time::Instant;

use tracing::{info, warn};

use crate::commit;
use crate::config::{LoadedConfig, PipelineKind, StepConfig, StepName};
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::logfmt;
use crate::outputs::StepStatus;
use crate::session::{self, EngineSettings};

pub use crate::context::{
    list_runs, new_run_id, predictions_dir, RunContext, RunMarker, RunOptions, RunOutcome,
    StepOutcome, StepRetry, RUN_MARKER,
};
pub use plan::{check, RunPlan};
pub use steps::{predict_udf, PREDICT_UDF};

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
                    StepName::list(&names)
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
    let sel = selected(cfg, opts)?;
    let rc = RunContext {
        lake,
        ctx,
        cfg: effective,
        run_id,
        models: opts.models.clone(),
        selected: cfg
            .config
            .steps
            .iter()
            .zip(&sel)
            .filter(|(_, run_it)| **run_it)
            .map(|(s, _)| s.name())
            .collect(),
    };
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
        let mut lost = Vec::new();
        // Only a cluster loses work with a process; embedded runs fail once.
        let retry = match engine.mode {
            session::EngineMode::Ballista => engine.retry.clone(),
            session::EngineMode::Embedded => session::RetrySettings::once(),
        };
        // A retry resumes: outputs this step already committed (a trained
        // model) are kept.
        let result =
            crate::watchdog::retry_lost(&retry, &format!("step {name}"), &mut lost, |attempt| {
                steps::run_step(&rc, step, resuming || attempt > 1)
            })
            .await
            .map_err(|e| match e {
                EngineError::Step { .. } => e,
                e => {
                    let tried = if lost.is_empty() {
                        String::new()
                    } else {
                        format!(" (attempt {} of {})", lost.len() + 1, retry.attempts)
                    };
                    EngineError::Step {
                        step: name.to_string(),
                        message: format!(
                            "{}{tried}",
                            explain_cluster_failure(&engine, &rc.run_id, e.to_string())
                        ),
                    }
                }
            });
        let retries: Vec<StepRetry> = lost.into_iter().map(StepRetry::from).collect();
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
    let peak_rss_mib = crate::memory::peak_rss_mib();
    info!(pipeline = %cfg.config.name, run_id = %rc.run_id, seconds = %logfmt::secs(started.elapsed().as_secs_f64()), peak_rss_mib, "run finished");
    Ok(RunOutcome {
        pipeline: cfg.config.name.clone(),
        run_id: rc.run_id.clone(),
        lake: crate::lake::redact(rc.lake.url()),
        steps: outcomes,
        report_html,
        summary,
        peak_rss_mib,
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
