//! The inference-side drift check: one aggregate pass of
//! `sluice_drift_profile` over the predict step's feature frames (embedded
//! or on Ballista, like the predictions themselves), compared with the
//! reference profile stored in the model artefact (`sluice_ml::drift`).
//! The result is written as `drift.json` in the run directory.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::logical_expr::{col, lit, AggregateUDF};
use datafusion::prelude::{DataFrame, Expr};
use sluice_ml::drift::{
    compare, profile_udaf, state_of_result, DriftReport, DriftThresholds, ProfileSpec,
};
use sluice_ml::ModelArtefact;
use tracing::info;

use crate::error::{EngineError, Result};
use crate::lake::Lake;

/// File name of the drift result in the run directory.
pub const DRIFT_FILE: &str = "drift.json";

/// Profiles `frames` (the model's features plus `proba`, the predicted
/// probability expression) in one aggregate pass per frame and compares
/// the merged profile with the artefact's reference. `None` when the
/// artefact has no reference profile (a model trained before drift
/// monitoring existed).
pub async fn check(
    art: &ModelArtefact,
    frames: Vec<DataFrame>,
    proba: Expr,
    thresholds: &DriftThresholds,
) -> Result<Option<DriftReport>> {
    let Some(reference) = &art.drift_reference else {
        info!("the model has no drift reference profile: drift check skipped");
        return Ok(None);
    };
    thresholds.validate()?;
    let spec = reference.spec();
    let mut args: Vec<Expr> = art
        .feature_names
        .iter()
        .map(|n| col(format!("\"{n}\"")))
        .collect();
    args.push(proba);
    let state = profile_state(frames, &spec, args).await?;
    let current = reference.with_state(&state)?;
    let report = compare(reference, &current, thresholds)?;
    info!(
        drifted = report.drifted,
        top_feature = report.features.first().map(|f| f.name.as_str()),
        top_psi = report.features.first().map(|f| f.psi),
        prediction_psi = report.prediction.psi,
        "drift check"
    );
    Ok(Some(report))
}

/// The dense state of `spec` over `values` (one expression per column of
/// `spec`) in `frames`: one `sluice_drift_profile` aggregate per frame (on
/// the executors on a cluster), the partial states merged on the driver.
/// Counts are sums of ones and min/max are exact, so the state equals
/// [`sluice_ml::drift::ProfileSpec::accumulate`] over the same rows.
pub async fn profile_state(
    frames: Vec<DataFrame>,
    spec: &ProfileSpec,
    values: Vec<Expr>,
) -> Result<Vec<f64>> {
    let udaf: Arc<AggregateUDF> = Arc::new(profile_udaf());
    let mut args: Vec<Expr> = vec![lit(spec.literal())];
    args.extend(values);
    let agg = udaf.call(args).alias("profile");
    let mut state = spec.empty_state();
    for df in frames {
        let batches = df.aggregate(vec![], vec![agg.clone()])?.collect().await?;
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            let part = state_of_result(b.column(0))?;
            if part.len() != state.len() {
                return Err(EngineError::Internal(format!(
                    "drift profile of {} values, expected {}",
                    part.len(),
                    state.len()
                )));
            }
            spec.merge(&mut state, &part);
        }
    }
    Ok(state)
}

/// Writes `report` as `<run_dir>/drift.json`.
pub async fn write(lake: &Lake, run_dir: &str, report: &DriftReport) -> Result<()> {
    let body = serde_json::to_vec_pretty(report)
        .map_err(|e| EngineError::Internal(format!("drift report to JSON: {e}")))?;
    lake.put(&format!("{run_dir}/{DRIFT_FILE}"), Bytes::from(body))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Float64Array};
    use arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;
    use sluice_ml::drift::ProfileSpec;

    /// One input batch whose rows times the spec's JSON length exceed
    /// Arrow's 32-bit string offsets (the 38M-row inference's batches did):
    /// the profile is still computed, and equals the direct one.
    #[tokio::test]
    async fn a_large_spec_over_a_large_batch_profiles_exactly() {
        let bounds: Vec<f64> = (0..200_000)
            .map(|i| i as f64 * 0.5 + 0.123_456_789)
            .collect();
        let spec = ProfileSpec {
            columns: vec![bounds],
        };
        assert!(spec.to_json().len() * 2_000 > i32::MAX as usize);
        let values: Vec<f64> = (0..2_000).map(|i| (i * 37 % 100_001) as f64).collect();
        let column: ArrayRef = std::sync::Arc::new(Float64Array::from(values.clone()));
        let batch = RecordBatch::try_from_iter([("v", column)]).unwrap();
        let df = SessionContext::new().read_batch(batch).unwrap();
        let state = profile_state(vec![df], &spec, vec![col("v")])
            .await
            .unwrap();
        let mut expected = spec.empty_state();
        spec.accumulate(&mut expected, &[&values]);
        assert_eq!(state, expected);
    }
}
