//! Grid search with k-fold cross-validation on the executors: the same
//! search as `sluice_ml::grid_search`, with every fit a distributed fit.
//!
//! 1. The training table is prepared once ([`crate::dtrain::prepare`]):
//!    stats, bin edges at the grid's widest bin count, the binned table.
//! 2. **Folds without a fold column.** The local search ranks each class's
//!    rows by `(hash2(seed, FOLD_STREAM, row), row)` and gives fold `f` a
//!    contiguous block of ranks ([`sluice_ml::fold_blocks`]), so a fold is
//!    an inclusive range of that key per class: two order statistics per
//!    class and fold, found by one ranking query per class. A fit leaves
//!    its fold out by that range ([`Excluded`], in every level plan), so
//!    all folds and grid points scan the same binned table and share the
//!    executors' resident bins (one job); each fit keeps its margins and
//!    weights apart under its fit id.
//! 3. Each (fold, fit) trains like the local search's fit on the same rows
//!    (forests of one grid point that differ only in `numTrees`/`maxDepth`
//!    share the largest fit and are scored truncated), then its fold's rows
//!    are scored on the executors (`sluice_score_binned`, the local scoring
//!    on bins) and only the scores of those rows come back to the driver
//!    for the exact metric.
//! 4. The best point (by mean fold score) is refit on all rows.
//!
//! So the fold scores, the chosen point and the model are the local
//! search's (up to the summation order of the histogram sums). What is not
//! shared: the local search grows points that differ only in
//! `minInstancesPerNode` from one fit and refits where they differ; here
//! each value is its own fit.

use std::time::Instant;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, UInt64Type, UInt8Type};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{col, in_list, lit, ExprFunctionExt, ScalarUDF};
use datafusion::prelude::{DataFrame, SessionContext};
use serde::{Deserialize, Serialize};
use sluice_ml::distributed::level::{Excluded, FitScope};
use sluice_ml::distributed::resident::{release_job, PassMode};
use sluice_ml::distributed::score::{ScoreBinnedFunc, ScoredModel};
use sluice_ml::distributed::trainer::DataStats;
use sluice_ml::{
    evaluate, expand_grid, fold_blocks, plan_fits, score_points, GridPoint, GridSearchConfig,
    Metric, ModelSpec, FOLD_STREAM, HOLDOUT_FRACTION,
};
use tracing::info;

use crate::dtrain::{prepare, DistributedFit, DistributedOptions, Prepared, LABEL, ROW_ID};
use crate::error::{EngineError, Result};
use crate::progress;
use crate::watchdog::retry_lost;

/// What a grid search on the executors chose, and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchOutcome {
    /// The metric points were ranked by.
    pub metric: Metric,
    /// Cross-validation folds (1: one stratified holdout of
    /// [`HOLDOUT_FRACTION`]).
    pub folds: usize,
    /// Every grid point with its fold scores, in grid order.
    pub points: Vec<GridPoint>,
    /// Index of the best point.
    pub best_index: usize,
    /// Distributed fits run for the fold scores (the final refit not counted).
    pub fits: usize,
    /// Rounds of level passes those fits took: each round scans the binned
    /// table for the next level of every fit still growing.
    pub passes: usize,
    /// Queries of those rounds (a round whose fits' states exceed one
    /// query's budget scans in several).
    pub queries: usize,
    /// Seconds in those rounds.
    pub pass_seconds: f64,
    /// Seconds scoring the folds' rows.
    pub scoring_seconds: f64,
}

/// Per fold, the rows it leaves out of training: the `(hash, row)` range of
/// each class's block of ranks (one ranking query per class).
async fn fold_ranges(
    p: &mut Prepared,
    seed: u64,
    blocks: &[[std::ops::Range<usize>; 2]],
    opts: &DistributedOptions,
) -> Result<Vec<Excluded>> {
    let mut out = vec![
        Excluded {
            seed,
            range: [None, None],
        };
        blocks.len()
    ];
    let row_hash = ScalarUDF::new_from_impl(sluice_ml::distributed::row_hash::RowHashFunc::new());
    for c in 0..2usize {
        let mut ranks: Vec<u64> = blocks
            .iter()
            .filter(|b| !b[c].is_empty())
            .flat_map(|b| [b[c].start as u64, b[c].end as u64 - 1])
            .collect();
        if ranks.is_empty() {
            continue;
        }
        ranks.sort_unstable();
        ranks.dedup();
        let rn = row_number()
            .order_by(vec![
                col("h").sort(true, false),
                col(ROW_ID).sort(true, false),
            ])
            .build()?
            .alias("rn");
        let plan = p
            .binned
            .clone()
            .filter(col(LABEL).eq(lit(c as u8)))?
            .select(vec![
                row_hash
                    .call(vec![lit(seed), lit(FOLD_STREAM), col(ROW_ID)])
                    .alias("h"),
                col(ROW_ID),
            ])?
            .window(vec![rn])?
            .filter(in_list(
                col("rn"),
                ranks.iter().map(|&r| lit(r + 1)).collect(),
                false,
            ))?
            .select(vec![col("rn"), col("h"), col(ROW_ID)])?;
        let batches = retry_lost(&opts.retry, "fold bounds", &mut p.retries, |_| {
            let q = plan.clone();
            async move { Ok(q.collect().await?) }
        })
        .await?;
        let mut at = std::collections::HashMap::new();
        for b in &batches {
            let rn = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::UInt64)?;
            let rn = rn.as_primitive::<UInt64Type>();
            let h = b.column(1).as_primitive::<UInt64Type>();
            let r = b.column(2).as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                at.insert(rn.value(i) - 1, (h.value(i), r.value(i)));
            }
        }
        let key = |rank: usize| {
            at.get(&(rank as u64)).copied().ok_or_else(|| {
                EngineError::Internal(format!("fold bounds: no row of class {c} at rank {rank}"))
            })
        };
        for (f, b) in blocks.iter().enumerate() {
            if !b[c].is_empty() {
                out[f].range[c] = Some([key(b[c].start)?, key(b[c].end - 1)?]);
            }
        }
    }
    Ok(out)
}

/// Fits trained in the same rounds: each keeps its margins (8 bytes per
/// row) and a round's gradients (8 more) on the executors, so at most
/// 256 MiB of them per job, between 1 and 64 fits.
fn concurrent_fits(rows: u64) -> usize {
    ((256u64 << 20) / (rows.max(1) * 16)).clamp(1, 64) as usize
}

/// Scores the rows `e` leaves out under each (model, cut): per model, the
/// metric of those rows' probabilities against their labels.
async fn score_fold(
    p: &mut Prepared,
    e: &Excluded,
    models: &[ScoredModel],
    metric: Metric,
    opts: &DistributedOptions,
) -> Result<Vec<f64>> {
    let score = ScalarUDF::new_from_impl(ScoreBinnedFunc::new());
    let mut cols = vec![col(LABEL)];
    for (i, m) in models.iter().enumerate() {
        let mut args = vec![lit(m.to_literal()?)];
        args.extend(p.bin_cols.iter().map(|c| col(c.as_str())));
        cols.push(score.call(args).alias(format!("p{i}")));
    }
    let plan = p.binned.clone().filter(p.in_range(e))?.select(cols)?;
    let batches = retry_lost(&opts.retry, "fold scores", &mut p.retries, |_| {
        let q = plan.clone();
        async move { Ok(q.collect().await?) }
    })
    .await?;
    let mut y = Vec::new();
    let mut probas = vec![Vec::new(); models.len()];
    for b in &batches {
        y.extend(b.column(0).as_primitive::<UInt8Type>().values().iter());
        for (i, out) in probas.iter_mut().enumerate() {
            out.extend(
                b.column(i + 1)
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter(),
            );
        }
    }
    Ok(probas
        .iter()
        .map(|pr| evaluate(&y, pr, 0.5).get(metric))
        .collect())
}

/// Grid search with cross-validation of `base` over `cfg.grid` on `df`
/// where it lives (columns as for [`crate::dtrain::train_distributed`]),
/// and the best point refit on every row. `name` labels the progress bar.
#[allow(clippy::too_many_arguments)]
pub async fn grid_search_distributed(
    ctx: &SessionContext,
    df: DataFrame,
    feature_names: &[String],
    label: &str,
    row_id: &str,
    base: &ModelSpec,
    cfg: &GridSearchConfig,
    opts: &DistributedOptions,
    name: &str,
) -> Result<DistributedFit> {
    let points = expand_grid(base, &cfg.grid)?;
    let max_bins = points
        .iter()
        .map(|(_, s)| s.max_bins())
        .max()
        .unwrap_or(base.max_bins());
    let mut p = prepare(ctx, df, feature_names, label, row_id, max_bins, opts).await?;
    let data = p.data;
    let class_rows = [
        (data.rows - data.positives) as usize,
        data.positives as usize,
    ];
    let blocks = fold_blocks(class_rows, cfg.folds, HOLDOUT_FRACTION);
    let step = Instant::now();
    let ranges = fold_ranges(&mut p, cfg.seed, &blocks, opts).await?;
    let fold_seconds = step.elapsed().as_secs_f64();
    let fits = plan_fits(&points, false);
    let k = blocks.len();
    let prepare_seconds = p.started.elapsed().as_secs_f64();
    info!(
        rows = data.rows,
        points = points.len(),
        fits = fits.len(),
        folds = k,
        seconds = %crate::logfmt::secs(prepare_seconds),
        fold_bounds_seconds = %crate::logfmt::secs(fold_seconds),
        "distributed grid search: binned table and folds ready"
    );
    let task = progress::task(
        format!("train {name}"),
        progress::Unit::Fits,
        Some((fits.len() * k) as u64 + 1),
    );
    let job = uuid::Uuid::new_v4().as_u64_pair().0;
    let mut mode = PassMode::default();
    let mut per_point = vec![vec![f64::NAN; k]; points.len()];
    // Every (fold, fit), with its fit id (1, 2, ...; the refit is the next).
    let jobs: Vec<(usize, usize)> = (0..k)
        .flat_map(|f| (0..fits.len()).map(move |fi| (f, fi)))
        .collect();
    let at_once = concurrent_fits(data.rows);
    let (mut rounds, mut queries, mut pass_seconds, mut scoring_seconds) = (0, 0, 0.0, 0.0);
    let searched: Result<()> = async {
        for (batch_no, batch) in jobs.chunks(at_once).enumerate() {
            let mut specs = Vec::with_capacity(batch.len());
            for (i, &(f, fi)) in batch.iter().enumerate() {
                let b = &blocks[f];
                let stats = DataStats {
                    rows: data.rows - (b[0].len() + b[1].len()) as u64,
                    positives: data.positives - b[1].len() as u64,
                };
                let spec = &fits[fi].spec;
                let holdout = p
                    .holdout(spec, stats, Some(&ranges[f]), &opts.retry)
                    .await?;
                let scope = FitScope {
                    fit: (batch_no * at_once + i + 1) as u64,
                    exclude: Some(ranges[f]),
                };
                specs.push((spec.clone(), stats, holdout, scope));
            }
            let models = p.fit_many(specs, job, &mut mode, opts).await?;
            // The longest fit took part in every round of the batch.
            if let Some(longest) = models.iter().map(|(_, t)| t).max_by_key(|t| t.len()) {
                rounds += longest.len();
                queries += longest.iter().map(|t| t.queries).sum::<usize>();
                pass_seconds += longest.iter().map(|t| t.seconds).sum::<f64>();
            }
            // One scoring query per fold of the batch, every point of its fits.
            let t = Instant::now();
            for f in 0..k {
                let mine: Vec<(usize, &sluice_ml::TrainedModel)> = batch
                    .iter()
                    .zip(&models)
                    .filter(|((jf, _), _)| *jf == f)
                    .map(|(&(_, fi), (m, _))| (fi, m))
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let mut scored = Vec::new();
                let mut dest = Vec::new();
                for (fi, model) in mine {
                    for &(pi, cut, _) in &fits[fi].consumers {
                        scored.push(ScoredModel {
                            model: model.clone(),
                            cut,
                        });
                        dest.push(pi);
                    }
                }
                let scores = score_fold(&mut p, &ranges[f], &scored, cfg.metric, opts).await?;
                for (pi, s) in dest.into_iter().zip(scores) {
                    per_point[pi][f] = s;
                }
            }
            scoring_seconds += t.elapsed().as_secs_f64();
            task.inc(batch.len() as u64);
        }
        Ok(())
    }
    .await;
    if let Err(e) = searched {
        release_job(job);
        return Err(e);
    }
    let searched_fits = jobs.len();
    let (results, best_index) = score_points(points, per_point, cfg.metric, None);
    let best = &results[best_index];
    info!(
        best = best_index,
        mean = %crate::logfmt::num(best.mean_score),
        fits = searched_fits,
        rounds,
        queries,
        "distributed grid search: refitting the best point on all rows"
    );
    let best_spec = best.spec.clone();
    let holdout = p.holdout(&best_spec, data, None, &opts.retry).await;
    let refit = match holdout {
        Ok(holdout) => {
            let scope = FitScope {
                fit: searched_fits as u64 + 1,
                exclude: None,
            };
            p.fit(&best_spec, data, holdout, scope, job, &mut mode, opts)
                .await
        }
        Err(e) => Err(e),
    };
    release_job(job);
    let (model, final_passes) = refit?;
    task.inc(1);
    task.finish();
    Ok(DistributedFit {
        model,
        rows: data.rows,
        prepare_seconds,
        prepare: p.prepare,
        passes: final_passes,
        retries: p.retries.iter().map(ToString::to_string).collect(),
        search: Some(SearchOutcome {
            metric: cfg.metric,
            folds: cfg.folds,
            points: results,
            best_index,
            fits: searched_fits,
            passes: rounds,
            queries,
            pass_seconds,
            scoring_seconds,
        }),
    })
}
