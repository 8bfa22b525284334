//! The features step: the transform chain fitted (training) or the deployed
//! model's fitted chain applied (inference), and the helpers that read a
//! features output back (as plans, or its fitted state).

use super::*;

pub(super) async fn inference_model(rc: &RunContext) -> Result<registry::ModelVersion> {
    let p = rc.cfg.predict_step()?;
    registry::resolve(&rc.lake, &p.model_name, &p.version).await
}

pub(super) async fn load_artefact(
    rc: &RunContext,
    v: &registry::ModelVersion,
) -> Result<ModelArtefact> {
    let bytes = registry::load_artefact(&rc.lake, v).await?;
    ModelArtefact::from_bytes(&bytes).map_err(|e| {
        EngineError::data(
            rc.lake.table_url(&v.artefact_path()),
            format!(
                "model `{}` version {} cannot be loaded: {e}; publish it again (sluice run <training config> --steps deploy) or pin another version",
                v.name, v.version
            ),
        )
    })
}

pub(super) async fn features<'a>(
    rc: &'a RunContext,
    s: &FeaturesStep,
    ingest: Manifest,
    model: Option<registry::ModelVersion>,
) -> Result<(Commit<'a>, FeaturesOutput)> {
    let ingest_out: IngestOutput = ingest.output()?;
    let input = ingest_input(rc, &ingest).await?;
    let (fitted, model_ref): (FittedPipeline, Option<ModelRef>) = match model {
        None => {
            let IngestInput::Table(df) = &input else {
                return Err(EngineError::Internal(
                    "the training table was not written by the ingest step".into(),
                ));
            };
            let pipeline = match &s.transforms {
                TransformsConfig::Named(n) if n == "default" => FeaturePipeline::default_contract(),
                TransformsConfig::Named(other) => {
                    return Err(EngineError::config(
                        format!("{}: features.transforms", rc.cfg.path),
                        format!("unknown chain `{other}`; use `default` or a list of transforms"),
                    ))
                }
                TransformsConfig::List(list) => FeaturePipeline {
                    steps: list.clone(),
                },
            };
            info!("fitting the feature chain");
            let f = pipeline.fit(df.clone()).await?;
            (f, None)
        }
        Some(v) => {
            let art = load_artefact(rc, &v).await?;
            let f: FittedPipeline =
                serde_json::from_value(art.transform_state.clone()).map_err(|e| {
                    EngineError::data(
                        rc.lake.table_url(&v.artefact_path()),
                        format!(
                            "the model's fitted feature state cannot be read by this build: {e}"
                        ),
                    )
                })?;
            (
                f,
                Some(ModelRef {
                    name: v.name.clone(),
                    version: v.version.clone(),
                }),
            )
        }
    };
    let mut c = Commit::begin(&rc.lake, &rc.step_dir(StepName::Features)).with_progress(
        progress::task("features", progress::Unit::Rows, ingest.rows),
    );
    let state = serde_json::to_value(&fitted)
        .map_err(|e| EngineError::Internal(format!("fitted state serialization: {e}")))?;
    let state_bytes = serde_json::to_vec_pretty(&state)
        .map_err(|e| EngineError::Internal(format!("fitted state serialization: {e}")))?;
    c.put("transform_state.json", Bytes::from(state_bytes))
        .await?;
    let parts = feature_parts(rc, &fitted, input, ingest.rows.unwrap_or(0), s.slices).await?;
    let n_parts = parts.len();
    let rows = if s.materialize {
        let rows = c.write_parquet_parts(parts).await?;
        check_deferred_rows(rc, &ingest_out, rows).await?;
        rows
    } else {
        // The chain maps rows one to one; the plan was built (and every
        // column checked) above, the predict step runs it.
        info!("features not materialized: predict computes them from the ingest output");
        ingest.rows.unwrap_or(0)
    };
    Ok((
        c,
        FeaturesOutput {
            rows,
            feature_names: fitted.feature_names(),
            model: model_ref,
            materialized: s.materialize,
            slices: n_parts,
        },
    ))
}

/// The ingest output as plans: the written table, or the deferred join's
/// `device_id` slices.
pub(super) enum IngestInput {
    Table(DataFrame),
    Slices(Vec<DataFrame>),
}

pub(super) async fn ingest_input(rc: &RunContext, ingest: &Manifest) -> Result<IngestInput> {
    let out: IngestOutput = ingest.output()?;
    Ok(match &out.deferred {
        Some(d) => {
            IngestInput::Slices(crate::ingest::deferred_join_parts(&rc.ctx, &rc.lake, d).await?)
        }
        None => IngestInput::Table(commit::read_parquet(&rc.ctx, &rc.lake, ingest).await?),
    })
}

/// After a plan over a deferred join wrote `rows`: as many as `samples`
/// has, or the error naming the samples the inner join with `devices`
/// dropped ([`crate::ingest::check_joined_rows`]).
pub(super) async fn check_deferred_rows(
    rc: &RunContext,
    ingest: &IngestOutput,
    rows: u64,
) -> Result<()> {
    match &ingest.deferred {
        Some(d) => {
            crate::ingest::check_joined_rows(&rc.ctx, &rc.lake, &d.options(), ingest.rows, rows)
                .await
        }
        None => Ok(()),
    }
}

/// Slices of the feature chain over `rows` rows of `schema`: enough for
/// the memory limit ([`crate::slices::slices_for`]) and at most
/// [`FEATURE_SLICE_ROWS`] rows each.
pub(super) fn feature_slice_count(
    rc: &RunContext,
    schema: &arrow::datatypes::Schema,
    rows: u64,
) -> usize {
    let row = crate::slices::row_bytes(schema) as u64;
    crate::slices::slices_for(&rc.ctx, rows * row).max(rows.div_ceil(FEATURE_SLICE_ROWS) as usize)
}

/// Most rows per feature slice: the lag/lead window operator buffers each
/// of its input partitions whole, so a slice bounds its memory even without
/// a memory limit. 2M rows (4M before): at 38M samples the peak RSS went
/// from 4.9 to 3.5 GiB and the run got faster (docs/PERFORMANCE.md).
pub(super) const FEATURE_SLICE_ROWS: u64 = 2_000_000;

/// The fitted chain over the ingest output, as `device_id` range slices
/// (one plan each, run one after another) when the table has more than
/// [`FEATURE_SLICE_ROWS`] rows or sorting it for the lag/lead windows would
/// not fit the memory limit, and the chain's windows all partition by
/// `device_id` ([`crate::slices`]). `df` is the ingest output, `rows` its
/// row count.
pub(super) async fn feature_parts(
    rc: &RunContext,
    fitted: &FittedPipeline,
    input: IngestInput,
    rows: u64,
    slices: Option<usize>,
) -> Result<Vec<DataFrame>> {
    const KEY: &str = "device_id";
    let df = match input {
        IngestInput::Table(df) => df,
        IngestInput::Slices(parts) if fitted.sliceable_by(KEY) => {
            return parts
                .into_iter()
                .map(|p| Ok(fitted.transform(p)?))
                .collect()
        }
        // A chain that needs the whole table gets the slices' union.
        IngestInput::Slices(parts) => {
            let mut parts = parts.into_iter();
            let first = parts
                .next()
                .ok_or_else(|| EngineError::Internal("a deferred join without slices".into()))?;
            parts.try_fold(first, |acc, p| acc.union(p))?
        }
    };
    let sliceable = fitted.sliceable_by(KEY) && df.schema().has_column_with_unqualified_name(KEY);
    let n = match slices {
        _ if !sliceable => 1,
        Some(n) => n,
        None => feature_slice_count(rc, df.schema().as_arrow(), rows),
    };
    if n <= 1 {
        return Ok(vec![fitted.transform(df)?]);
    }
    info!(
        slices = n,
        "feature chain split into device_id ranges to fit the memory limit"
    );
    let mut parts = Vec::with_capacity(n);
    for range in crate::slices::key_ranges(&df, KEY, n).await? {
        let slice = df.clone().filter(crate::slices::range_filter(KEY, range))?;
        parts.push(fitted.transform(slice)?);
    }
    Ok(parts)
}

/// The feature table of a features output, as plans to run one after
/// another: read from the lake, or (when the step did not materialize it)
/// the fitted chain applied to the ingest output, inside the caller's plan.
pub(super) async fn feature_frames(rc: &RunContext, feats: &Manifest) -> Result<Vec<DataFrame>> {
    let out: FeaturesOutput = feats.output()?;
    if out.materialized {
        return Ok(vec![commit::read_parquet(&rc.ctx, &rc.lake, feats).await?]);
    }
    let (_, ingest) = rc.upstream(StepName::Ingest, None).await?;
    let state = fitted_state(rc, feats).await?;
    let fitted: FittedPipeline = serde_json::from_value(state).map_err(|e| {
        EngineError::Internal(format!("features output: fitted state unreadable: {e}"))
    })?;
    let slices = Some(out.slices);
    let input = ingest_input(rc, &ingest).await?;
    feature_parts(rc, &fitted, input, ingest.rows.unwrap_or(0), slices).await
}

/// The fitted state stored in a features output.
pub(super) async fn fitted_state(rc: &RunContext, feats: &Manifest) -> Result<serde_json::Value> {
    let f = feats
        .files
        .iter()
        .find(|f| f.path.ends_with("transform_state.json"))
        .ok_or_else(|| {
            EngineError::Internal("features output has no transform_state.json".into())
        })?;
    let b = rc.lake.get(&f.path).await?;
    serde_json::from_slice(&b)
        .map_err(|e| EngineError::data(rc.lake.table_url(&f.path), e.to_string()))
}
