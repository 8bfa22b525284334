//! The one check a run makes before it touches data, shared by `sluice run`
//! (and its `--dry-run`) and `sluice validate`: everything a run would
//! reject is rejected here first, from the config and the lake's metadata
//! (the run list, the model registry), never by reading a table.
//!
//! To check one more thing: add it to [`check`] (or, for a rule that needs
//! only the config file, to [`crate::config::validate`], which `check` runs
//! through [`crate::config::load`]). Return a [`EngineError::Config`] that
//! names the key or flag at fault.

use serde::Serialize;

use super::{list_runs, selected, RunOptions};
use crate::config::{LoadedConfig, PipelineKind, StepConfig, StepName};
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::session::{self, EngineMode, EngineSettings};

/// Model fits one model costs: grid points × folds, plus the refit of the
/// best point on all training rows.
#[derive(Debug, Clone, Serialize)]
pub struct ModelFits {
    /// Model name.
    pub model: String,
    /// Grid points (1 without a grid).
    pub grid_points: usize,
    /// Cross-validation folds (1: one holdout split, 0: no selection).
    pub folds: usize,
    /// Fits in total.
    pub fits: usize,
}

/// What a run of this config with these options would do.
#[derive(Debug, Clone, Serialize)]
pub struct RunPlan {
    /// Pipeline name.
    pub pipeline: String,
    /// Config file.
    pub config: String,
    /// The lake (credentials redacted).
    pub lake: String,
    /// `embedded` or `ballista <scheduler>`.
    pub engine: String,
    /// Memory limit, when set.
    pub memory_limit: Option<String>,
    /// Every configured step and whether this invocation runs it.
    pub steps: Vec<(StepName, bool)>,
    /// Per selected model: the fits the train step would make.
    pub models: Vec<ModelFits>,
    /// Inference: the registry version predict would use.
    pub model_version: Option<String>,
    /// The run id it would resume or continue, if any.
    pub run_id: Option<String>,
}

impl RunPlan {
    /// Fits over all models.
    pub fn total_fits(&self) -> usize {
        self.models.iter().map(|m| m.fits).sum()
    }
}

/// The engine settings a run uses (`--scheduler` overrides the file).
pub fn engine_of(cfg: &LoadedConfig, opts: &RunOptions) -> EngineSettings {
    opts.engine
        .clone()
        .unwrap_or_else(|| cfg.config.engine.clone())
}

/// The lake location a run uses (`--lake` overrides the file).
pub fn lake_of(cfg: &LoadedConfig, opts: &RunOptions) -> String {
    opts.lake.clone().unwrap_or_else(|| cfg.config.lake.clone())
}

/// Checks engine settings the way a session would build them.
pub fn check_engine(engine: &EngineSettings, origin: &str) -> Result<()> {
    let at = |e: EngineError| match e {
        EngineError::Config { location, message } => {
            EngineError::config(format!("{origin}: {location}"), message)
        }
        other => other,
    };
    if let Some(limit) = &engine.memory_limit {
        session::parse_bytes(limit).map_err(at)?;
    }
    session::session_config(engine).map_err(at)?;
    if engine.mode == EngineMode::Ballista && engine.scheduler.is_none() {
        return Err(EngineError::config(
            format!("{origin}: engine.scheduler"),
            "required when engine.mode is `ballista` (e.g. df://localhost:50050)",
        ));
    }
    Ok(())
}

/// Everything a run checks before reading data; returns what it would do.
pub async fn check(cfg: &LoadedConfig, opts: &RunOptions) -> Result<RunPlan> {
    let plan = check_offline(cfg, opts)?;
    check_lake(cfg, opts, plan).await
}

/// The checks that need no lake: config, engine settings, `--steps`,
/// `--from`, `--model`. [`check`] adds the lake's.
pub fn check_offline(cfg: &LoadedConfig, opts: &RunOptions) -> Result<RunPlan> {
    let engine = engine_of(cfg, opts);
    check_engine(&engine, &cfg.path)?;
    let sel = selected(cfg, opts)?;
    let runs = |name: StepName| {
        cfg.config
            .steps
            .iter()
            .zip(&sel)
            .any(|(s, on)| *on && s.name() == name)
    };
    let mut models = Vec::new();
    for step in &cfg.config.steps {
        let StepConfig::Train(t) = step else { continue };
        if let Some(wanted) = &opts.models {
            for w in wanted {
                if !t.models.iter().any(|m| &m.name == w) {
                    return Err(EngineError::config(
                        "--model",
                        format!(
                            "no model `{w}` in {}; its models are {}",
                            cfg.path,
                            t.models
                                .iter()
                                .map(|m| m.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        if !runs(StepName::Train) {
            continue;
        }
        for m in &t.models {
            if opts.models.as_ref().is_some_and(|w| !w.contains(&m.name)) {
                continue;
            }
            let grid_points: usize = m.grid.values().map(Vec::len).product();
            let folds = match (&m.cv, m.grid.is_empty()) {
                (Some(cv), _) if cv.folds >= 2 => cv.folds,
                (None, true) => 0,
                _ => 1,
            };
            let fits = if folds == 0 {
                1
            } else {
                grid_points * folds + 1
            };
            models.push(ModelFits {
                model: m.name.clone(),
                grid_points,
                folds,
                fits,
            });
        }
    }
    Ok(RunPlan {
        pipeline: cfg.config.name.clone(),
        config: cfg.path.clone(),
        lake: lake_of(cfg, opts),
        engine: match (&engine.mode, &engine.scheduler) {
            (EngineMode::Ballista, Some(url)) => format!("ballista {url}"),
            (mode, _) => mode.to_string(),
        },
        memory_limit: engine.memory_limit.clone(),
        steps: cfg
            .config
            .steps
            .iter()
            .zip(sel)
            .map(|(s, on)| (s.name(), on))
            .collect(),
        models,
        model_version: None,
        run_id: opts.resume.clone().or_else(|| opts.run_id.clone()),
    })
}

/// The checks against the lake: it exists, `--resume` names a run of it,
/// an inference pipeline's model is registered.
async fn check_lake(cfg: &LoadedConfig, opts: &RunOptions, mut plan: RunPlan) -> Result<RunPlan> {
    let runs = |name: StepName| plan.steps.iter().any(|(s, on)| *on && *s == name);
    let lake = Lake::open_existing(&lake_of(cfg, opts))?;
    if let Some(r) = &opts.resume {
        let known = list_runs(&lake, &cfg.config.name).await?;
        if !known.contains(r) {
            return Err(EngineError::config(
                "--resume",
                format!(
                    "run `{r}` of pipeline `{}` not found in {}; known runs: {}",
                    cfg.config.name,
                    crate::lake::redact(lake.url()),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    let mut model_version = None;
    if cfg.config.kind == PipelineKind::Inference
        && (runs(StepName::Features) || runs(StepName::Predict))
    {
        let p = cfg.predict_step()?;
        let v = crate::registry::resolve(&lake, &p.model_name, &p.version)
            .await
            .map_err(|e| {
                EngineError::config(
                    format!("{}: predict.model_name", cfg.path),
                    format!(
                        "{e}; to deploy one: `sluice run config/training.yaml`; deployed models: `sluice models list --lake {}`",
                        crate::lake::redact(lake.url())
                    ),
                )
            })?;
        model_version = Some(format!("{}/{}", v.name, v.version));
    }
    plan.lake = crate::lake::redact(lake.url());
    plan.model_version = model_version;
    Ok(plan)
}
