//! The ingest step: the labelled CSVs (training) or the seven-table join
//! (inference) committed as the unified table.

use super::*;

pub(super) async fn ingest<'a>(
    rc: &'a RunContext,
    s: &IngestStep,
) -> Result<(Commit<'a>, IngestOutput)> {
    let dir = rc.step_dir(StepName::Ingest);
    let checks = inference_options(s);
    let out = match rc.cfg.config.kind {
        PipelineKind::Training => {
            let opts = crate::ingest::IngestOptions {
                csv_glob: s.csv_glob.clone(),
                reject_bad_rows: s.reject_bad_rows,
            };
            crate::ingest::training_input(&rc.ctx, &rc.lake, &opts).await?
        }
        PipelineKind::Inference => {
            let deferred = deferred_join(rc, s, &checks).await?;
            let checks = crate::ingest::InferenceOptions {
                deferred: deferred.is_some(),
                ..checks.clone()
            };
            let out = crate::ingest::inference_input_with(&rc.ctx, &rc.lake, &checks).await?;
            let rows = out.diagnostics.expected_rows.unwrap_or(0);
            // Tables the slices filter by `sample_id` range.
            let unordered: Vec<&str> = out
                .diagnostics
                .unordered_tables
                .iter()
                .filter(|t| crate::schema::raw_table(t).is_ok_and(|t| t.key == "sample_id"))
                .map(String::as_str)
                .collect();
            let deferred = match deferred {
                // Each of several slices would read all of a per-sample
                // table stored out of key order: one written join reads it
                // once. The checks
                // already ran (the writer's pass repeats the value checks).
                Some(d)
                    if s.materialize.is_none() && d.slices.len() > 1 && !unordered.is_empty() =>
                {
                    info!(
                        tables = %unordered.join(", "),
                        "raw tables not stored in key order: the join is written"
                    );
                    None
                }
                d => d,
            };
            if let Some(d) = deferred {
                info!(
                    rows,
                    slices = d.slices.len(),
                    "raw tables checked; the join is not written: features and predict run it in their plans, one device_id slice at a time"
                );
                let output = IngestOutput {
                    rows,
                    deferred: Some(d),
                    ..Default::default()
                };
                let mut c = Commit::begin(&rc.lake, &dir);
                c.set_rows(rows, Some(&crate::schema::unified_schema()));
                return Ok((c, output));
            }
            out
        }
    };
    let expected_rows = out.diagnostics.expected_rows;
    let parts = out.parts();
    let mut output = IngestOutput::default();
    if let Some(rej) = out.rejected {
        let mut rc2 = Commit::begin(&rc.lake, &format!("{dir}/rejected"));
        let n = rc2.write_parquet(rej).await?;
        rc2.finish(
            "rejected",
            rc.pipeline(),
            &rc.run_id,
            json!({}),
            vec![],
            json!({}),
        )
        .await?;
        if n > 0 {
            tracing::warn!(rows = n, output = %format!("{dir}/rejected"), "rows with unparsable or out-of-bounds values were routed to the rejected output");
        }
        output.rejected_rows = Some(n);
    }
    let mut c = Commit::begin(&rc.lake, &dir).with_progress(progress::task(
        "ingest",
        progress::Unit::Rows,
        None,
    ));
    let n_parts = parts.len();
    let rows = match c.write_parquet_parts(parts).await {
        Ok(rows) => rows,
        Err(e) => {
            return Err(crate::ingest::name_bounds_error(&rc.ctx, &rc.lake, &checks, e).await)
        }
    };
    if let Some(expected) = expected_rows {
        // Not committed: the attempt stays invisible when this fails.
        crate::ingest::check_joined_rows(&rc.ctx, &rc.lake, &checks, expected, rows).await?;
    }
    output.rows = rows;
    if n_parts > 1 {
        output.join_slices = Some(n_parts);
    }
    Ok((c, output))
}

/// Most times the slices of a deferred join may read the per-sample tables
/// ([`DeferredJoin::reads`]) for `materialize` unset to defer it: above,
/// writing the join once and slicing the written table costs less.
const DEFERRED_READS_MAX: f64 = 2.0;

/// The join left to the next steps' plans, unless `materialize: true`,
/// `value_checks: reject` (the rejected samples are left out of a written
/// table), or, with `materialize` unset, this run does not run the
/// features step (`--steps ingest`: the table is the result) or the
/// samples' ids are not grouped by device, so each slice would read most
/// of every per-sample table. The slices are the features step's: its
/// `slices` when set, otherwise as many as [`feature_slice_count`] gives
/// for the unified table's rows.
async fn deferred_join(
    rc: &RunContext,
    s: &IngestStep,
    checks: &crate::ingest::InferenceOptions,
) -> Result<Option<DeferredJoin>> {
    if s.materialize == Some(true) || checks.value_checks == crate::ingest::ValueChecks::Reject {
        return Ok(None);
    }
    if s.materialize.is_none() && !rc.selected.contains(&StepName::Features) {
        // `--steps ingest` alone: the table is what the user asked for.
        return Ok(None);
    }
    let configured = rc.cfg.config.steps.iter().find_map(|step| match step {
        StepConfig::Features(f) => f.slices,
        _ => None,
    });
    let n = |rows| {
        configured
            .unwrap_or_else(|| feature_slice_count(rc, &crate::schema::unified_schema(), rows))
    };
    let d = DeferredJoin {
        partitions: checks.partitions.clone(),
        slices: crate::ingest::device_slices(&rc.ctx, &rc.lake, checks, n).await?,
    };
    let reads = d.reads();
    if s.materialize.is_none() && reads > DEFERRED_READS_MAX {
        info!(
            reads = %crate::logfmt::num(reads),
            "the samples' ids are not grouped by device (device_id slices would read the per-sample tables this many times): the join is written"
        );
        return Ok(None);
    }
    Ok(Some(d))
}

pub(super) fn inference_options(s: &IngestStep) -> crate::ingest::InferenceOptions {
    crate::ingest::InferenceOptions {
        join_slices: s.join_slices,
        partitions: s.partitions.clone(),
        value_checks: s.value_checks,
        now: Some(chrono::Utc::now()),
        deferred: false,
    }
}
