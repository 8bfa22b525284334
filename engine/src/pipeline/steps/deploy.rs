//! The deploy step: the best model published to the registry, with the
//! drift reference profile it will be checked against.

use super::*;

pub(super) async fn deploy<'a>(
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
///
/// The feature counts are two `sluice_drift_profile` aggregates over the
/// features output (fine bins, then the coarsened ones), run on the
/// executors on a cluster; the predictions of the held-out rows are counted
/// as they stream through the driver. Counts are exact, so the profile is
/// [`sluice_ml::drift::reference_profile`]'s over the same rows.
pub(super) async fn attach_drift_reference(rc: &RunContext, art: &mut ModelArtefact) -> Result<()> {
    use sluice_ml::drift::{fine_spec, reference_of_state, reference_spec, ProfileSpec};
    if train_step_config(rc).is_none() {
        return Ok(());
    }
    let (_, feats) = rc.upstream(StepName::Features, None).await?;
    let values: Vec<Expr> = art
        .feature_names
        .iter()
        .map(datafusion::logical_expr::ident)
        .collect();
    let all = commit::read_parquet(&rc.ctx, &rc.lake, &feats).await?;
    let fine = fine_spec(&art.model);
    let fine_state = crate::drift::profile_state(vec![all.clone()], &fine, values.clone()).await?;
    let spec = reference_spec(&fine, &fine_state);
    let (features, prediction) = spec.columns.split_at(spec.columns.len() - 1);
    let features = ProfileSpec {
        columns: features.to_vec(),
    };
    let prediction = ProfileSpec {
        columns: prediction.to_vec(),
    };
    let mut state = crate::drift::profile_state(vec![all], &features, values).await?;
    let mut predicted = prediction.empty_state();
    let mut stream = held_out_rows(rc, &feats).await?.execute_stream().await?;
    while let Some(b) = futures::TryStreamExt::try_next(&mut stream).await? {
        let proba = art.model.predict_proba_batch(&b)?;
        prediction.accumulate(&mut predicted, &[&proba.values()[..]]);
    }
    state.extend(predicted);
    art.drift_reference = Some(reference_of_state(&art.model, &spec, &state)?);
    Ok(())
}
