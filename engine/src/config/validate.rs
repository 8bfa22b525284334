//! What serde cannot check: step order and uniqueness, names, ranges, and
//! every grid value applied to the model's parameters.

use super::*;

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
                    StepName::list(allowed)
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
            StepConfig::Ingest(s)
                if s.materialize == Some(false) && cfg.kind == PipelineKind::Training =>
            {
                return Err(err(
                    &format!("steps[{i}].materialize"),
                    "`false` is for inference pipelines only: the features step fits its chain on the written training table".into(),
                ));
            }
            StepConfig::Ingest(s)
                if s.materialize == Some(false)
                    && s.value_checks == crate::ingest::ValueChecks::Reject =>
            {
                return Err(err(
                    &format!("steps[{i}].materialize"),
                    "`false` cannot be combined with `value_checks: reject` (the rejected samples are left out of a written table); use `fail` or `off`, or leave `materialize` unset".into(),
                ));
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
