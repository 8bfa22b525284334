//! The predict step: the deployed model over the features, predictions
//! committed to the lake, their distribution, drift and scoring.

use super::*;
use crate::session::EngineMode;

/// Where this run's predictions go ([`RunContext::predictions_dir`]).
pub(super) fn predictions_dir(rc: &RunContext) -> String {
    rc.predictions_dir()
}

pub(super) async fn predict(
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
    // In process, the plan that writes the predictions also profiles them
    // for the drift check (no second pass over the features).
    let tap = match rc.cfg.config.engine.mode {
        EngineMode::Embedded => crate::drift::tapped(&art, &proba),
        EngineMode::Ballista => None,
    };
    let written = tap.as_ref().map_or(&proba, |(_, tapped)| tapped);
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
            written.clone().alias("indoor_probability"),
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
    let (_, ingest) = rc.upstream(StepName::Ingest, None).await?;
    let ingest: IngestOutput = ingest.output()?;
    let rows = c.write_parquet_parts(outs).await?;
    check_deferred_rows(rc, &ingest, rows).await?;
    c.promote_files().await?;
    let tapped_state = tap.and_then(|(t, _)| {
        let state = t.state(rows);
        if state.is_none() {
            tracing::warn!(
                tapped = t.rows(),
                written = rows,
                "the drift tap did not see each written row once: profiling in a second pass"
            );
        }
        state
    });
    let drift = match tapped_state {
        Some(state) => crate::drift::check_state(&art, &state, &s.drift)?,
        None => {
            crate::drift::check(&art, feature_frames(rc, &feats).await?, proba, &s.drift).await?
        }
    };
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
pub(super) async fn prediction_histogram(
    rc: &RunContext,
    c: &Commit<'_>,
) -> Result<(Vec<u64>, u64)> {
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
pub(super) async fn score_against_truth(
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
