//! The train step: every configured model fitted on the training split (on
//! the driver, with grid search and cross-validation, or on the executors).

use super::*;

/// Labelled rows of the features output: matrix, labels, device ids.
pub(super) struct Labelled {
    pub(super) x: FeatureMatrix,
    pub(super) y: Vec<u8>,
    pub(super) device: Vec<i64>,
}

pub(super) async fn load_labelled(rc: &RunContext, feats: &Manifest) -> Result<Labelled> {
    let names = feats.output::<FeaturesOutput>()?.feature_names;
    let df = commit::read_parquet(&rc.ctx, &rc.lake, feats).await?;
    let df = df.sort(vec![col("sample_id").sort(true, false)])?;
    let batches = df.collect().await?;
    let x = FeatureMatrix::from_batches(&batches, &names)?;
    let mut y = Vec::with_capacity(x.n_rows());
    let mut device = Vec::with_capacity(x.n_rows());
    for b in &batches {
        y.extend(labels_of(b)?);
        let d = b
            .column_by_name("device_id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| EngineError::data("features output", "no Int64 `device_id` column"))?;
        device.extend(d.values().iter().copied());
    }
    Ok(Labelled { x, y, device })
}

/// The `indoor` labels (0/1) of a batch of the features output.
pub(super) fn labels_of(b: &arrow::array::RecordBatch) -> Result<Vec<u8>> {
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
    Ok(label.values().iter().map(|v| (*v != 0) as u8).collect())
}

/// The held-out rows of the features output (the devices
/// [`split_by_device`] puts in the test split), filtered where the query
/// runs: on a cluster the executors filter, and the driver reads the result
/// as a stream, one batch at a time, so evaluating and deploying a model
/// need no driver memory proportional to the table (issue 18).
pub(super) async fn held_out_rows(rc: &RunContext, feats: &Manifest) -> Result<DataFrame> {
    let t = train_step_config(rc).ok_or_else(|| {
        EngineError::config(&rc.cfg.path, "evaluate needs a train step in the pipeline")
    })?;
    let df = commit::read_parquet(&rc.ctx, &rc.lake, feats).await?;
    crate::dtrain::held_out_rows(df, t.test_fraction, t.seed).await
}

/// Held-out split by device (hash of device id and seed), so a device's
/// neighbouring samples never sit on both sides of the split.
pub(super) fn split_by_device(
    device: &[i64],
    test_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
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

pub(super) fn pick<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| v[i]).collect()
}

pub(super) fn train_step_config(rc: &RunContext) -> Option<TrainStep> {
    rc.cfg.config.train().cloned()
}

pub(super) async fn train(
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
    // With `engine.mode: ballista`, models train on the executors
    // (`crate::dtrain`, docs/DISTRIBUTED.md), those with a grid search once
    // the table has `search_min_rows` rows (`crate::dsearch`); the rest on
    // the driver.
    let mut on_cluster = Vec::with_capacity(todo.len());
    for (m, _, dir) in &todo {
        on_cluster.push(
            if crate::dtrain::trains_on_cluster(&rc.cfg.config.engine, s, m, feats.rows) {
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
            let cfg = m.search_config(s.seed);
            let r = grid_search_reported(&m.name, &spec, &cfg, &x, &y)?;
            let cv = CvOutput::of(cfg.metric, cfg.folds, &r.points, r.best_index);
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
                    cv: fit
                        .search
                        .as_ref()
                        .map(|r| CvOutput::of(r.metric, r.folds, &r.points, r.best_index)),
                    params: fit
                        .search
                        .as_ref()
                        .map_or_else(|| m.spec.to_spec(), |r| r.points[r.best_index].spec.clone()),
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
pub(super) fn grid_search_reported(
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
pub(super) struct LocalFit {
    pub(super) model: TrainedModel,
    pub(super) cv: Option<CvOutput>,
    /// The parameters of `model` (the best grid point's, with a grid).
    pub(super) params: sluice_ml::ModelSpec,
    pub(super) seconds: f64,
}

/// All trained models of this run's configured train step.
pub(super) async fn trained_models(rc: &RunContext) -> Result<Vec<(String, Manifest)>> {
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

pub(super) async fn load_trained(rc: &RunContext, man: &Manifest) -> Result<ModelArtefact> {
    let f = man
        .files
        .iter()
        .find(|f| f.path.ends_with(crate::registry::ARTEFACT_FILE))
        .ok_or_else(|| EngineError::Internal("train output has no model file".into()))?;
    Ok(ModelArtefact::from_bytes(&rc.lake.get(&f.path).await?)?)
}
