//! The evaluate step: every trained model scored on the held-out split and
//! the best one picked.

use super::*;

pub(super) async fn evaluate<'a>(
    rc: &'a RunContext,
    s: &EvaluateStep,
    feats: Manifest,
    models: Vec<(String, Manifest)>,
) -> Result<(Commit<'a>, EvaluateOutput)> {
    // The held-out rows stream through the driver in `sample_id` order,
    // one batch at a time (filtered and sorted on the executors on a
    // cluster); only labels and probabilities are kept.
    let mut scored = Vec::with_capacity(models.len());
    for (name, man) in &models {
        let art = load_trained(rc, man).await?;
        let curve = sluice_ml::curves::LearningCurve::new(&art.model, LEARNING_CURVE_POINTS);
        scored.push((name, art, Vec::<f64>::new(), curve));
    }
    let df = held_out_rows(rc, &feats).await?;
    let mut stream = df
        .sort(vec![col("sample_id").sort(true, false)])?
        .execute_stream()
        .await?;
    let mut y: Vec<u8> = Vec::new();
    while let Some(b) = futures::TryStreamExt::try_next(&mut stream).await? {
        let labels = labels_of(&b)?;
        for (_, art, proba, curve) in &mut scored {
            proba.extend(art.model.predict_proba_batch(&b)?.values().iter().copied());
            curve.add_batch(&b, &labels)?;
        }
        y.extend(labels);
    }
    let mut results = BTreeMap::new();
    let mut best: Option<(String, f64)> = None;
    for (name, _, proba, curve) in scored {
        let metrics = sluice_ml::evaluate(&y, &proba, s.threshold);
        let score = metrics.get(s.metric);
        info!(
            model = %name,
            metric = %crate::logfmt::metric_name(s.metric),
            score = %crate::logfmt::num(score),
            accuracy = %crate::logfmt::num(metrics.accuracy),
            auc = %crate::logfmt::num(metrics.auc),
            "evaluated"
        );
        if best
            .as_ref()
            .map(|(_, b)| better(s.metric, score, *b))
            .unwrap_or(true)
        {
            best = Some((name.clone(), score));
        }
        let mut curves = label_curves(&y, &proba, &metrics);
        curves.learning_curve = curve.finish();
        results.insert(name.clone(), ModelEvaluation { metrics, curves });
    }
    let (best_name, best_score) =
        best.ok_or_else(|| EngineError::Internal("no model to evaluate".into()))?;
    let mut c = Commit::begin(&rc.lake, &rc.step_dir(StepName::Evaluate));
    let out = EvaluateOutput {
        metric: s.metric,
        threshold: s.threshold,
        test_rows: y.len() as u64,
        test_balance: ClassCounts::of(&y),
        models: results,
        best: best_name,
        best_score,
    };
    let body = serde_json::to_vec_pretty(&out)
        .map_err(|e| EngineError::Internal(format!("evaluation metrics: {e}")))?;
    c.put("metrics.json", Bytes::from(body)).await?;
    Ok((c, out))
}

/// Whether `score` beats `best` on `metric` (a NaN never does).
pub(super) fn better(metric: Metric, score: f64, best: f64) -> bool {
    if best.is_nan() {
        return !score.is_nan();
    }
    if metric.higher_is_better() {
        score > best
    } else {
        score < best
    }
}

/// PR curve, calibration and score histograms of probabilities against
/// labels (`metrics` computed from the same).
pub(super) fn label_curves(y: &[u8], proba: &[f64], metrics: &sluice_ml::Metrics) -> EvalCurves {
    use sluice_ml::curves::{calibration, histogram, pr_curve};
    let class = |c: u8| {
        histogram(
            y.iter()
                .zip(proba)
                .filter(move |(t, _)| **t == c)
                .map(|(_, p)| *p),
            HISTOGRAM_BINS,
        )
    };
    EvalCurves {
        pr: pr_curve(metrics),
        calibration: calibration(y, proba, 10),
        histogram: outputs::ScoreHistogram {
            indoor: class(1),
            outdoor: class(0),
            all: histogram(proba.iter().copied(), HISTOGRAM_BINS),
        },
        learning_curve: Vec::new(),
    }
}

/// Points of the held-out learning curve.
const LEARNING_CURVE_POINTS: usize = 25;

/// Bins of the probability histograms.
pub(super) const HISTOGRAM_BINS: usize = 20;
