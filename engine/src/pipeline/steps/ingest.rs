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
            crate::ingest::inference_input_with(&rc.ctx, &rc.lake, &checks).await?
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

pub(super) fn inference_options(s: &IngestStep) -> crate::ingest::InferenceOptions {
    crate::ingest::InferenceOptions {
        join_slices: s.join_slices,
        partitions: s.partitions.clone(),
        value_checks: s.value_checks,
        now: Some(chrono::Utc::now()),
    }
}
