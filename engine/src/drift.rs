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
    compare, profile_udaf, state_of_result, DriftProfile, DriftReport, DriftThresholds,
    ProfileSpec, ProfileTap,
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
    let state = profile_state(frames, &reference.spec(), profile_args(art, proba)).await?;
    report(reference, &state, thresholds).map(Some)
}

/// The values a profile of `art`'s inputs counts: its features, then `proba`.
pub fn profile_args(art: &ModelArtefact, proba: Expr) -> Vec<Expr> {
    let mut args: Vec<Expr> = art
        .feature_names
        .iter()
        .map(|n| col(format!("\"{n}\"")))
        .collect();
    args.push(proba);
    args
}

/// `proba` routed through a [`ProfileTap`] of `art`'s reference profile,
/// for an in-process plan that profiles the rows it predicts
/// ([`ProfileTap`]); `None` when the artefact has no reference profile.
pub fn tapped(art: &ModelArtefact, proba: &Expr) -> Option<(Arc<ProfileTap>, Expr)> {
    let reference = art.drift_reference.as_ref()?;
    let tap = ProfileTap::new(reference.spec());
    let expr = Arc::new(tap.udf()).call(profile_args(art, proba.clone()));
    Some((tap, expr))
}

/// Compares the state of a [`ProfileTap`] that saw the run's rows with the
/// artefact's reference (as [`check`] does with its own aggregate pass).
pub fn check_state(
    art: &ModelArtefact,
    state: &[f64],
    thresholds: &DriftThresholds,
) -> Result<Option<DriftReport>> {
    let Some(reference) = &art.drift_reference else {
        return Ok(None);
    };
    thresholds.validate()?;
    report(reference, state, thresholds).map(Some)
}

fn report(
    reference: &DriftProfile,
    state: &[f64],
    thresholds: &DriftThresholds,
) -> Result<DriftReport> {
    let current = reference.with_state(state)?;
    let report = compare(reference, &current, thresholds)?;
    info!(
        drifted = report.drifted,
        top_feature = report.features.first().map(|f| f.name.as_str()),
        top_psi = report.features.first().map(|f| f.psi),
        prediction_psi = report.prediction.psi,
        "drift check"
    );
    Ok(report)
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

    /// The tap in a plan that writes its rows (several partitions, nulls,
    /// a projection that uses the tapped value twice) profiles exactly
    /// what the aggregate pass does, and counts each row once.
    #[tokio::test]
    async fn the_tap_profiles_the_written_rows_like_the_aggregate() {
        let spec = ProfileSpec {
            columns: vec![vec![-1.0, 0.0, 2.5], vec![0.25, 0.5, 0.75]],
        };
        let ctx = SessionContext::new();
        let mut batches = Vec::new();
        for part in 0..3 {
            let x: Float64Array = (0..1000)
                .map(|i| (i % 7 != 0).then_some(((i * 13 + part * 5) % 50) as f64 / 10.0 - 1.5))
                .collect();
            let p: Float64Array = (0..1000)
                .map(|i| Some(((i * 31 + part) % 100) as f64 / 100.0))
                .collect();
            let (x, p): (ArrayRef, ArrayRef) = (Arc::new(x), Arc::new(p));
            batches.push(vec![
                RecordBatch::try_from_iter([("x", x), ("p", p)]).unwrap()
            ]);
        }
        let schema = batches[0][0].schema();
        let table = Arc::new(datafusion::datasource::MemTable::try_new(schema, batches).unwrap());
        let frame = || ctx.read_table(Arc::clone(&table) as _).unwrap();
        let expected = profile_state(vec![frame()], &spec, vec![col("x"), col("p")])
            .await
            .unwrap();

        let tap = ProfileTap::new(spec.clone());
        let tapped = Arc::new(tap.udf()).call(vec![col("x"), col("p")]);
        let out = frame()
            .select(vec![col("x"), tapped.alias("q")])
            .unwrap()
            .select(vec![
                col("q"),
                datafusion::logical_expr::when(col("q").gt_eq(lit(0.5)), lit(1))
                    .otherwise(lit(0))
                    .unwrap()
                    .alias("hit"),
            ])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows: usize = out.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 3000);
        assert_eq!(tap.rows(), 3000);
        assert_eq!(
            tap.state(2999),
            None,
            "a row count that differs gives no state"
        );
        assert_eq!(tap.state(3000).unwrap(), expected);
    }
}
