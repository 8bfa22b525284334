//! What a run is while it runs: its options, the context every step reads
//! (lake, session, config, run id), where outputs go, and what each step's
//! invocation came to. Below the pipeline driver and the steps, so the
//! distributed-training driver and the report builder depend on it, not on
//! the pipeline that calls them.

use serde::{Deserialize, Serialize};
use tracing::info;

use datafusion::prelude::SessionContext;

use crate::commit::{self, Manifest};
use crate::config::{LoadedConfig, StepName};
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::outputs::{RunSummary, StepStatus};
use crate::session::EngineSettings;

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

impl From<crate::watchdog::Retry> for StepRetry {
    fn from(r: crate::watchdog::Retry) -> Self {
        StepRetry {
            attempt: r.attempt,
            error: r.error,
            backoff_seconds: r.backoff_seconds,
        }
    }
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
    /// Peak resident memory of this process (the driver) when the run
    /// finished, MiB (`VmHWM`; `None` off Linux). A process that ran
    /// several runs (`--partition` ranges) reports its peak so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<u64>,
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
    /// The steps this invocation runs (`--steps`, `--from`).
    pub selected: Vec<crate::config::StepName>,
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
        match self.cfg.config.partition_filters() {
            p if !p.is_empty() && p.iter().all(|f| f.is_single()) => {
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
