//! Distributed training: the queries that fit a model where the data lives.
//!
//! [`train_distributed`] trains on a DataFrame of any session (embedded, or
//! a Ballista client whose queries run on the executors) and returns the
//! same [`TrainedModel`] as `sluice_ml::train`, while the driver only holds
//! the model:
//!
//! 1. **stats**: one aggregate → row count, positives, null labels;
//! 2. **bin edges**: one query returns the rows `sluice_row_hash` puts in
//!    the local fit's sample (`bin_sample::keep_bound`: about
//!    `DEFAULT_BIN_SAMPLE` rows, whatever the data size), so the edges are
//!    identical;
//! 3. **binned table**: `row_id`, `label` (`u8`) and `sluice_bin(f_j, ...)`
//!    per feature, written once (Parquet at [`DistributedOptions::binned_url`]
//!    for a cluster, cached in memory otherwise) and scanned by every pass;
//!    or, with [`DistributedOptions::bin_in_pass`], not written at all: the
//!    passes that scan bins compute them from the source as they read it
//!    (the executors keep them, so later passes read only label and row id);
//! 4. **holdout** (GBT with `validationFraction`): per class, the `n_out`-th
//!    smallest `sluice_row_hash` (`ORDER BY ... LIMIT`);
//! 5. **passes**: one `SELECT sluice_level_histograms(plan, label, row_id,
//!    b_0, ...) FROM binned` per tree level (all trees of a forest level in
//!    one pass), the plan a literal built by
//!    [`sluice_ml::distributed::trainer::DistributedTrainer`], which picks
//!    the splits between passes.
//!
//! Each aggregate returns its state as one row, and Ballista moves rows in
//! gRPC messages of at most 16 MiB: a level whose histograms exceed
//! [`MAX_STATE_VALUES`] is scanned once per group of nodes
//! (`LevelPlan::split`).
//!
//! Every pass is timed ([`PassTiming`]) and logged at `info`.

use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{
    cast, col, ident, in_list, lit, not, when, AggregateUDF, ExprFunctionExt, Partitioning,
    ScalarUDF,
};
use datafusion::prelude::{DataFrame, Expr, ParquetReadOptions, SessionContext};
use serde::Serialize;
use sluice_ml::binning::DEFAULT_BIN_SAMPLE;
use sluice_ml::distributed::bin::{bounds_literal, BinFunc};
use sluice_ml::distributed::bin_sample::{feature_bins, keep_bound, sample_rate, BIN_SAMPLE_SEED};
use sluice_ml::distributed::level::{
    Excluded, FitScope, LevelHistogramsFunc, LevelPlan, HOLDOUT_STREAM,
};
use sluice_ml::distributed::resident::{release_job, PassMode};
use sluice_ml::distributed::row_hash::RowHashFunc;
use sluice_ml::distributed::trainer::{DataStats, DistributedTrainer};
use sluice_ml::{BinEdges, ModelSpec, TrainedModel, FOLD_STREAM};
use tracing::{debug, info};

use crate::commit::{self, Manifest};
use crate::config::{ModelConfig, TrainStep};
use crate::context::RunContext;
use crate::error::{EngineError, Result};
use crate::outputs::ManifestOutput;
use crate::session::{EngineMode, EngineSettings, RetrySettings};
use crate::watchdog::{retry_lost, Retry};

/// Largest aggregate state (in `f64` values, 8 MiB) one query may carry.
/// An aggregate without a group key returns its state as one row, and
/// Ballista moves rows in gRPC messages of at most 16 MiB
/// (`ballista.grpc_client_max_message_size`): a tree level is split by
/// nodes to stay under it.
pub const MAX_STATE_VALUES: usize = 1 << 20;

/// Row id column of the binned table.
pub const ROW_ID: &str = "row_id";
/// Label column (`u8`, 0/1) of the binned table.
pub const LABEL: &str = "label";

/// Where the binned table lives.
#[derive(Debug, Clone, Default)]
pub struct DistributedOptions {
    /// A directory URL (or path) every executor can read, e.g. in the lake:
    /// the binned table is written there once as Parquet. `None` keeps it
    /// in the session's memory (embedded sessions only: a Ballista client
    /// would pull it to the driver).
    pub binned_url: Option<String>,
    /// Write no binned table: a pass that needs bins computes them from
    /// the source rows as it scans them (`binned_url` is then unused). The
    /// executors keep the bins of the batches they scanned, so after the
    /// first pass only label and row id are read; a pass that misses
    /// batches (an executor lost or restarted, the cache evicted, tasks
    /// placed elsewhere) reads and bins them from the source again. For a
    /// source that is cheap to scan again and scans the same rows in the
    /// same batches every time: a Parquet table, not a plan with a sort or
    /// a window (whose output is one partition, so one executor would hold
    /// every row).
    pub bin_in_pass: bool,
    /// Largest state per query, in `f64` values (default and cap:
    /// [`MAX_STATE_VALUES`]); smaller values split levels into more scans.
    pub max_state_values: Option<usize>,
    /// Attempts of each query lost with a cluster process (an executor or
    /// the scheduler died, or the job watchdog cancelled it): a pass is run
    /// again from the model as it stood after the last completed pass, so
    /// training resumes at the tree level it was on, not from scratch.
    pub retry: RetrySettings,
}

/// Time of one distributed pass.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PassTiming {
    /// Pass number (0-based).
    pub pass: usize,
    /// What it computed (`round 3 depth 2 (4 nodes)`, `trees 0..20 depth 1 (40 nodes)`).
    pub label: String,
    /// Histogram slots (nodes) built.
    pub nodes: usize,
    /// Scans of the binned table (1 unless the level's state exceeds
    /// [`MAX_STATE_VALUES`], or a resident scan missed and the pass ran
    /// again in full).
    pub queries: usize,
    /// `f64` values in each partial state (the per-partition network cost is 8× this).
    pub state_values: usize,
    /// Size of the plan literal(s) (JSON bytes).
    pub plan_bytes: usize,
    /// Whether the result came from a resident scan (labels and row ids
    /// only, the bins from the executors' copy of the job's batches).
    #[serde(default)]
    pub resident: bool,
    /// Rows of resident scans that found no copy on their executor (the
    /// pass then ran again in full).
    #[serde(default)]
    pub missed_rows: u64,
    /// Wall time of the query, seconds.
    pub seconds: f64,
}

/// Where the prepare step of a distributed fit spent its time, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PrepareTiming {
    /// Row count, positives and the null checks (one scan of label and row id).
    pub stats: f64,
    /// The distributed bin sample and the bin edges.
    pub bin_edges: f64,
    /// Binning every row and writing (or caching) the binned table.
    pub binned_table: f64,
    /// The GBT holdout thresholds (0 without a holdout).
    pub holdout: f64,
}

/// A distributed fit: the model and where the time went.
#[derive(Debug, Clone)]
pub struct DistributedFit {
    /// The trained model (the type `sluice_ml::train` returns).
    pub model: TrainedModel,
    /// Training rows.
    pub rows: u64,
    /// Seconds for stats, bin edges, the binned table and the holdout.
    pub prepare_seconds: f64,
    /// The same, step by step.
    pub prepare: PrepareTiming,
    /// One entry per pass.
    pub passes: Vec<PassTiming>,
    /// Queries run again after they were lost with a cluster process
    /// (`"<what>: <error>"`, in order).
    pub retries: Vec<String>,
    /// The grid search with cross-validation that chose the model's
    /// parameters on the executors (`crate::dsearch`), if any.
    pub search: Option<crate::dsearch::SearchOutcome>,
}

impl DistributedFit {
    /// The summary recorded in the train step's output.
    pub fn summary(&self) -> crate::outputs::DistributedSummary {
        let total: f64 = self.passes.iter().map(|p| p.seconds).sum();
        crate::outputs::DistributedSummary {
            rows: self.rows,
            prepare_seconds: self.prepare_seconds,
            prepare: self.prepare,
            passes: self.passes.len(),
            pass_seconds_total: total,
            pass_seconds_mean: total / self.passes.len().max(1) as f64,
            per_pass: self.passes.clone(),
            retries: self.retries.clone(),
            search: self.search.as_ref().map(|s| crate::outputs::SearchSummary {
                fits: s.fits,
                passes: s.passes,
                queries: s.queries,
                pass_seconds: s.pass_seconds,
                scoring_seconds: s.scoring_seconds,
            }),
        }
    }
}

fn udaf<F: datafusion::logical_expr::AggregateUDFImpl + 'static>(f: F) -> AggregateUDF {
    AggregateUDF::new_from_impl(f)
}

fn first_row(
    batches: &[arrow::record_batch::RecordBatch],
) -> Result<&arrow::record_batch::RecordBatch> {
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| EngineError::Internal("an aggregate query returned no row".into()))
}

fn int_at(b: &arrow::record_batch::RecordBatch, name: &str) -> Result<i64> {
    let c = b
        .column_by_name(name)
        .ok_or_else(|| EngineError::Internal(format!("no column `{name}`")))?;
    let c = arrow::compute::cast(c, &DataType::Int64)?;
    let c = c.as_primitive::<Int64Type>();
    Ok(if c.is_null(0) { 0 } else { c.value(0) })
}

fn list_at(b: &arrow::record_batch::RecordBatch, i: usize) -> Result<Vec<f64>> {
    let l = b.column(i).as_list::<i32>();
    if l.is_empty() || l.is_null(0) {
        return Ok(Vec::new());
    }
    let v = l.value(0);
    Ok(v.as_primitive::<Float64Type>().iter().flatten().collect())
}

/// The label as 0/1 (`u8`): any non-zero value is 1, as the local pipeline reads it.
fn label_expr(label: &str) -> Result<Expr> {
    Ok(when(
        cast(ident(label), DataType::Int64).not_eq(lit(0i64)),
        lit(1u8),
    )
    .otherwise(lit(0u8))?)
}

/// Trains `spec` on `df` where it lives: `feature_names` are numeric or
/// boolean columns (null/NaN = missing), `label` is 0/1 (non-zero = 1, null
/// is an error), `row_id` numbers the rows `0..n` (it seeds every random
/// decision; with the rows of `sluice_ml::train`'s matrix in row-id order
/// the model is the local trainer's).
pub async fn train_distributed(
    ctx: &SessionContext,
    df: DataFrame,
    feature_names: &[String],
    label: &str,
    row_id: &str,
    spec: &ModelSpec,
    opts: &DistributedOptions,
) -> Result<DistributedFit> {
    spec.validate()?;
    let mut p = prepare(ctx, df, feature_names, label, row_id, spec.max_bins(), opts).await?;
    let step = Instant::now();
    let holdout = p.holdout(spec, p.data, None, &opts.retry).await?;
    p.prepare.holdout = step.elapsed().as_secs_f64();
    let prepare_seconds = p.started.elapsed().as_secs_f64();
    info!(
        rows = p.data.rows,
        features = feature_names.len(),
        seconds = %crate::logfmt::secs(prepare_seconds),
        "distributed training: bin edges and binned table ready"
    );
    // Executors keep the rows' boosting margins between passes under this
    // id (released below in this process; executors drop them after a TTL).
    let job = uuid::Uuid::new_v4().as_u64_pair().0;
    let fit = p
        .fit(
            spec,
            p.data,
            holdout,
            FitScope::default(),
            job,
            &mut PassMode::default(),
            opts,
        )
        .await;
    release_job(job);
    let (model, passes) = fit?;
    Ok(DistributedFit {
        model,
        rows: p.data.rows,
        prepare_seconds,
        prepare: p.prepare,
        passes,
        retries: p.retries.iter().map(ToString::to_string).collect(),
        search: None,
    })
}

/// One fit of [`Prepared::fit_many`]: what to fit, the rows it trains on
/// (their count and positives), its GBT holdout thresholds and its scope.
pub(crate) type FitRequest = (ModelSpec, DataStats, Option<[Option<u64>; 2]>, FitScope);

/// A training table made ready on the executors: its stats, bin edges and
/// binned table (steps 1-3), which every fit of a job then scans.
pub(crate) struct Prepared {
    /// The binned table (`row_id`, `label`, the bin columns), planned in
    /// scan batches ([`in_scan_batches`]).
    pub binned: DataFrame,
    /// The bin columns' names, in feature order.
    pub bin_cols: Vec<String>,
    /// The features' names.
    pub names: Vec<String>,
    /// The bin edges.
    pub edges: BinEdges,
    /// Rows and positives of the whole table.
    pub data: DataStats,
    /// Where the time went so far.
    pub prepare: PrepareTiming,
    /// When preparing started.
    pub started: Instant,
    /// Queries run again after a lost cluster process.
    pub retries: Vec<Retry>,
    row_hash: ScalarUDF,
}

/// Steps 1-3 of a distributed fit: stats, bin edges (at most `max_bins`
/// bins per feature) and the binned table.
pub(crate) async fn prepare(
    ctx: &SessionContext,
    df: DataFrame,
    feature_names: &[String],
    label: &str,
    row_id: &str,
    max_bins: usize,
    opts: &DistributedOptions,
) -> Result<Prepared> {
    let t0 = Instant::now();
    if feature_names.is_empty() {
        return Err(EngineError::data("training data", "no feature columns"));
    }
    for name in feature_names
        .iter()
        .map(String::as_str)
        .chain([label, row_id])
    {
        if df.schema().field_with_unqualified_name(name).is_err() {
            return Err(EngineError::data(
                "training data",
                format!("no column `{name}`"),
            ));
        }
    }

    // 1. Stats.
    let mut prepare = PrepareTiming::default();
    let mut step = Instant::now();
    let mut lap = || {
        std::mem::replace(&mut step, Instant::now())
            .elapsed()
            .as_secs_f64()
    };
    let retry = &opts.retry;
    let mut retries = Vec::new();
    let lbl = cast(ident(label), DataType::Int64);
    let stats_plan = df.clone().aggregate(
        vec![],
        vec![
            count(lit(1i64)).alias("n"),
            sum(when(lbl.clone().not_eq(lit(0i64)), lit(1i64)).otherwise(lit(0i64))?).alias("pos"),
            sum(when(lbl.is_null(), lit(1i64)).otherwise(lit(0i64))?).alias("null_labels"),
            sum(when(ident(row_id).is_null(), lit(1i64)).otherwise(lit(0i64))?).alias("null_ids"),
        ],
    )?;
    let stats = retry_lost(retry, "stats", &mut retries, |_| {
        let p = stats_plan.clone();
        async move { Ok(p.collect().await?) }
    })
    .await?;
    let b = first_row(&stats)?;
    let (n, pos) = (int_at(b, "n")?, int_at(b, "pos")?);
    let (null_labels, null_ids) = (int_at(b, "null_labels")?, int_at(b, "null_ids")?);
    if null_labels > 0 {
        return Err(EngineError::data(
            format!("training data, column `{label}`"),
            format!("{null_labels} null labels; every training row needs a 0/1 label"),
        ));
    }
    if null_ids > 0 {
        return Err(EngineError::data(
            format!("training data, column `{row_id}`"),
            format!("{null_ids} null row ids"),
        ));
    }
    if n == 0 {
        return Err(EngineError::data("training data", "no training rows"));
    }
    let data = DataStats {
        rows: n as u64,
        positives: pos as u64,
    };
    prepare.stats = lap();

    // 2. Bin edges from the distributed sample: one query returns the
    // sample's rows (about DEFAULT_BIN_SAMPLE of them, whatever the data
    // size), chosen once per row by the hash the local fit tests.
    let rate = sample_rate(n as usize, DEFAULT_BIN_SAMPLE);
    let row_hash = ScalarUDF::new_from_impl(RowHashFunc::new());
    let sampled = match keep_bound(rate) {
        None => df.clone(),
        Some(bound) => df.clone().filter(
            row_hash
                .call(vec![
                    lit(BIN_SAMPLE_SEED),
                    lit(0u64),
                    cast(ident(row_id), DataType::Int64),
                ])
                .lt(lit(bound)),
        )?,
    };
    let sample_plan = sampled.select(
        feature_names
            .iter()
            .enumerate()
            .map(|(j, f)| cast(ident(f), DataType::Float64).alias(format!("s{j}")))
            .collect::<Vec<_>>(),
    )?;
    let sample = retry_lost(retry, "bin sample", &mut retries, |_| {
        let p = sample_plan.clone();
        async move { Ok(p.collect().await?) }
    })
    .await?;
    let features = (0..feature_names.len())
        .map(|j| {
            let values = sample
                .iter()
                .flat_map(|b| b.column(j).as_primitive::<Float64Type>().iter().flatten())
                .collect();
            feature_bins(values, max_bins)
        })
        .collect();
    let edges = BinEdges { features };
    prepare.bin_edges = lap();

    // 3. The binned table, written once.
    let bin = ScalarUDF::new_from_impl(BinFunc::new());
    let mut cols = vec![
        cast(ident(row_id), DataType::Int64).alias(ROW_ID),
        label_expr(label)?.alias(LABEL),
    ];
    let bin_cols: Vec<String> = (0..feature_names.len()).map(|j| format!("b{j}")).collect();
    for ((f, fb), name) in feature_names.iter().zip(&edges.features).zip(&bin_cols) {
        cols.push(
            bin.call(vec![
                cast(ident(f), DataType::Float64),
                lit(bounds_literal(fb)),
            ])
            .alias(name),
        );
    }
    let partitions = ctx.state().config().target_partitions().max(1);
    let binned_rows = df.select(cols)?;
    let binned_plan = binned_rows
        .clone()
        .repartition(Partitioning::RoundRobinBatch(partitions))?;
    let binned = match &opts.binned_url {
        _ if opts.bin_in_pass => binned_rows,
        Some(url) => {
            // A lost attempt may have left files: each attempt writes its
            // own directory, and only the one that finished is read.
            let dir = retry_lost(retry, "binned table", &mut retries, |attempt| {
                let p = binned_plan.clone();
                let dir = format!("{}/attempt-{attempt}/", url.trim_end_matches('/'));
                async move {
                    crate::commit::write_parquet_once(p, &dir, None).await?;
                    Ok(dir)
                }
            })
            .await?;
            ctx.read_parquet(dir.as_str(), ParquetReadOptions::default())
                .await?
        }
        None => binned_plan.cache().await?,
    };
    prepare.binned_table = lap();

    Ok(Prepared {
        binned: in_scan_batches(binned),
        bin_cols,
        names: feature_names.to_vec(),
        edges,
        data,
        prepare,
        started: t0,
        retries,
        row_hash,
    })
}

impl Prepared {
    /// Step 4: the GBT holdout thresholds of a fit on the rows `stats`
    /// counts (all rows, or all but `exclude`), `None` without a holdout.
    pub async fn holdout(
        &mut self,
        spec: &ModelSpec,
        stats: DataStats,
        exclude: Option<&Excluded>,
        retry: &RetrySettings,
    ) -> Result<Option<[Option<u64>; 2]>> {
        let Some(req) = DistributedTrainer::holdout_request(spec, stats) else {
            return Ok(None);
        };
        let mut th = [None, None];
        for c in 0..2u8 {
            let k = req.n_out[c as usize];
            if k == 0 {
                continue;
            }
            let mut rows = self.binned.clone().filter(col(LABEL).eq(lit(c)))?;
            if let Some(e) = exclude {
                rows = rows.filter(not(self.in_range(e)))?;
            }
            let plan = rows
                .select(vec![self
                    .row_hash
                    .call(vec![lit(req.seed), lit(HOLDOUT_STREAM), col(ROW_ID)])
                    .alias("h")])?
                .sort(vec![col("h").sort(true, false)])?
                .limit((k - 1) as usize, Some(1))?;
            let rows = retry_lost(retry, "holdout", &mut self.retries, |_| {
                let p = plan.clone();
                async move { Ok(p.collect().await?) }
            })
            .await?;
            let b = first_row(&rows)?;
            th[c as usize] = Some(b.column(0).as_primitive::<UInt64Type>().value(0));
        }
        Ok(Some(th))
    }

    /// Whether a row of the binned table is in `e`'s ranges (the rows a
    /// fit leaves out), as [`Excluded::excludes`] decides it.
    pub fn in_range(&self, e: &Excluded) -> Expr {
        let h = self
            .row_hash
            .call(vec![lit(e.seed), lit(FOLD_STREAM), col(ROW_ID)]);
        let r = col(ROW_ID);
        let at_least = |(lh, lr): (u64, i64)| {
            h.clone()
                .gt(lit(lh))
                .or(h.clone().eq(lit(lh)).and(r.clone().gt_eq(lit(lr))))
        };
        let at_most = |(uh, ur): (u64, i64)| {
            h.clone()
                .lt(lit(uh))
                .or(h.clone().eq(lit(uh)).and(r.clone().lt_eq(lit(ur))))
        };
        (0..2u8)
            .filter_map(|c| {
                e.range[c as usize]
                    .map(|[lo, hi]| col(LABEL).eq(lit(c)).and(at_least(lo)).and(at_most(hi)))
            })
            .reduce(Expr::or)
            .unwrap_or(lit(false))
    }

    /// Step 5: the level passes of fits of `job`, each a `spec`, the rows
    /// its `stats` count and holdout, and its `scope`, in lockstep
    /// ([`run_passes`]; `mode` says whether the executors already hold the
    /// job's batches).
    pub async fn fit_many(
        &mut self,
        fits: Vec<FitRequest>,
        job: u64,
        mode: &mut PassMode,
        opts: &DistributedOptions,
    ) -> Result<Vec<(TrainedModel, Vec<PassTiming>)>> {
        let mut trainers = Vec::with_capacity(fits.len());
        for (spec, stats, holdout, scope) in fits {
            let mut trainer = DistributedTrainer::new(
                &spec,
                self.names.clone(),
                self.edges.clone(),
                stats,
                holdout,
            )?;
            trainer.set_job(job);
            trainer.set_scope(scope);
            trainers.push(trainer);
        }
        let budget = opts
            .max_state_values
            .unwrap_or(MAX_STATE_VALUES)
            .clamp(1, MAX_STATE_VALUES);
        run_passes(
            &self.binned,
            &self.bin_cols,
            trainers,
            budget,
            mode,
            &opts.retry,
            &mut self.retries,
        )
        .await
    }

    /// One fit ([`Self::fit_many`] of one).
    #[allow(clippy::too_many_arguments)]
    pub async fn fit(
        &mut self,
        spec: &ModelSpec,
        stats: DataStats,
        holdout: Option<[Option<u64>; 2]>,
        scope: FitScope,
        job: u64,
        mode: &mut PassMode,
        opts: &DistributedOptions,
    ) -> Result<(TrainedModel, Vec<PassTiming>)> {
        self.fit_many(vec![(spec.clone(), stats, holdout, scope)], job, mode, opts)
            .await?
            .pop()
            .ok_or_else(|| EngineError::Internal("a fit returned no model".into()))
    }
}

/// Rows per batch of the passes' scans (DataFusion's default is 8,192).
/// The executors' kernels pay per batch and slot for their histogram
/// accumulators (zeroed, then added into the state: about as much work as
/// the rows of a deep level's slots in an 8,192-row batch) and per batch
/// for the resident lookup; larger batches amortize both.
const PASS_BATCH_ROWS: usize = 65_536;

/// `df` planned without round-robin repartitioning, in batches of
/// [`PASS_BATCH_ROWS`], so that the passes'
/// aggregates see each scanned file's batches as the reader yields them:
/// DataFusion's `RepartitionExec` coalesces the batches of all its inputs
/// in whatever order they arrive, so the same table would reach the
/// executors in batches of other rows from one pass to the next, and the
/// executors' copy of the job's batches ([`sluice_ml::distributed::resident`],
/// keyed by the rows of a batch) would keep missing.
fn in_scan_batches(df: DataFrame) -> DataFrame {
    let (state, plan) = df.into_parts();
    // The new state shares the session's catalogs; it must not install a
    // fresh default catalog over them.
    let mut config = state
        .config()
        .clone()
        .with_create_default_catalog_and_schema(false)
        .with_batch_size(state.config().batch_size().max(PASS_BATCH_ROWS));
    config
        .options_mut()
        .optimizer
        .enable_round_robin_repartition = false;
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    DataFrame::new(state, plan)
}

/// Runs every pass of `trainers` (fits of one job over the same binned
/// table) in lockstep: each round takes the next plan of every fit not
/// finished and scans them together, as few queries as the state budget
/// allows (each query's plans back to back, whole nodes per part when a
/// plan alone exceeds it). Resident scans once the job's executors hold
/// the batches (a round that misses batches runs again in full,
/// [`PassMode`]). Per fit: the model and its passes' timings (a round's
/// time and queries are shared by the fits in it).
async fn run_passes(
    binned: &DataFrame,
    bin_cols: &[String],
    mut trainers: Vec<DistributedTrainer>,
    budget: usize,
    mode: &mut PassMode,
    retry: &RetrySettings,
    retries: &mut Vec<Retry>,
) -> Result<Vec<(TrainedModel, Vec<PassTiming>)>> {
    let level = udaf(LevelHistogramsFunc::new());
    let mut passes: Vec<Vec<PassTiming>> = vec![Vec::new(); trainers.len()];
    let mut plans: Vec<Option<LevelPlan>> = Vec::with_capacity(trainers.len());
    for t in &mut trainers {
        plans.push(t.next_pass()?);
    }
    let mut round = 0usize;
    let single = trainers.len() == 1;
    while plans.iter().any(Option::is_some) {
        let t = Instant::now();
        let (mut queries, mut plan_bytes, mut missed_rows) = (0, 0, 0u64);
        let (sums, resident) = loop {
            // Every active fit's plan, split to fit the budget, packed into
            // queries in order.
            let mut parts: Vec<(usize, LevelPlan)> = Vec::new();
            let mut runs: Vec<Option<LevelPlan>> = vec![None; plans.len()];
            for (i, plan) in plans.iter().enumerate() {
                if let Some(plan) = plan {
                    let run = mode.plan(plan);
                    parts.extend(run.split(budget).into_iter().map(|p| (i, p)));
                    runs[i] = Some(run);
                }
            }
            let mut groups: Vec<Vec<usize>> = Vec::new();
            let mut size = 0;
            for (k, (_, p)) in parts.iter().enumerate() {
                let len = p.state_len();
                match groups.last_mut() {
                    Some(g) if size + len <= budget => g.push(k),
                    _ => {
                        groups.push(vec![k]);
                        size = 0;
                    }
                }
                size += len;
            }
            let resident = runs.iter().flatten().any(|r| r.resident);
            let mut results: Vec<Vec<f64>> = vec![Vec::new(); parts.len()];
            let mut missed = 0.0;
            for g in &groups {
                let group: Vec<LevelPlan> = g.iter().map(|&k| parts[k].1.clone()).collect();
                let literal = if group.len() == 1 {
                    group[0].to_literal()
                } else {
                    LevelPlan::many_to_literal(&group)
                };
                plan_bytes += literal.try_as_str().flatten().map_or(0, str::len);
                let mut args = vec![lit(literal), col(LABEL), col(ROW_ID)];
                if !resident {
                    args.extend(bin_cols.iter().map(|c| col(c.as_str())));
                }
                let query = binned
                    .clone()
                    .aggregate(vec![], vec![level.call(args).alias("h")])?;
                // A round is a pure function of the binned table and the
                // plans: a lost query runs again from the same models (the
                // last completed level), not from scratch.
                let what = match trainers.len() {
                    1 => format!("pass {round} ({})", trainers[0].pass_label()),
                    n => format!("pass {round} of {n} fits"),
                };
                let res = retry_lost(retry, &what, retries, |_| {
                    let q = query.clone();
                    async move { Ok(q.collect().await?) }
                })
                .await?;
                let mut value = list_at(first_row(&res)?, 0)?;
                // The query's plans' states, back to back.
                for &k in g.iter().rev() {
                    let at = value
                        .len()
                        .checked_sub(parts[k].1.state_len())
                        .ok_or_else(|| {
                            EngineError::Internal("a level pass returned too few values".into())
                        })?;
                    let (values, m) = parts[k].1.take_missed(value.split_off(at))?;
                    missed += m;
                    results[k] = values;
                }
            }
            queries += groups.len();
            missed_rows += missed as u64;
            let record = runs.iter().flatten().next().map(|r| mode.record(r, missed));
            if record != Some(true) {
                let mut sums: Vec<Option<Vec<f64>>> = vec![None; plans.len()];
                for (i, run) in runs.iter().enumerate() {
                    if let Some(run) = run {
                        let mine: Vec<usize> =
                            (0..parts.len()).filter(|&k| parts[k].0 == i).collect();
                        let ps: Vec<LevelPlan> = mine.iter().map(|&k| parts[k].1.clone()).collect();
                        let rs: Vec<Vec<f64>> = mine
                            .iter()
                            .map(|&k| std::mem::take(&mut results[k]))
                            .collect();
                        sums[i] = Some(run.join(&ps, &rs)?);
                    }
                }
                break (sums, resident);
            }
            debug!(
                pass = round,
                missed_rows = missed as u64,
                "resident pass missed batches: running it in full"
            );
        };
        let seconds = t.elapsed().as_secs_f64();
        for (i, sum) in sums.into_iter().enumerate() {
            let (Some(sum), Some(plan)) = (sum, plans[i].take()) else {
                continue;
            };
            let trainer = &mut trainers[i];
            trainer.absorb(&sum)?;
            let timing = PassTiming {
                pass: passes[i].len(),
                label: trainer.pass_label().to_string(),
                nodes: plan.slots.len(),
                queries,
                state_values: plan.result_len(),
                plan_bytes,
                resident,
                missed_rows,
                seconds,
            };
            if single {
                info!(
                    pass = timing.pass,
                    what = %timing.label,
                    seconds = %crate::logfmt::secs(timing.seconds),
                    state_values = timing.state_values,
                    resident = timing.resident,
                    "distributed training pass"
                );
            }
            passes[i].push(timing);
            plans[i] = trainer.next_pass()?;
        }
        if !single {
            info!(
                pass = round,
                fits = plans.iter().flatten().count(),
                queries,
                seconds = %crate::logfmt::secs(seconds),
                resident,
                "distributed training pass of several fits"
            );
        }
        round += 1;
    }
    trainers
        .into_iter()
        .zip(passes)
        .map(|(t, p)| Ok((t.finish()?, p)))
        .collect()
}

/// Whether `device` is held out for evaluation (the pipeline's split by
/// device: a hash of the device id and the seed, so a device's samples are
/// never on both sides).
pub fn is_test_device(device: i64, test_fraction: f64, seed: u64) -> bool {
    sluice_ml::sampling::holds_out_key(device, test_fraction, seed)
}

/// The held-out device ids of a features output, as literals for an `IN`
/// list (a few thousand at most): one `DISTINCT` query, then
/// [`is_test_device`] on the driver.
async fn held_out_devices(
    features: &DataFrame,
    test_fraction: f64,
    seed: u64,
) -> Result<Vec<Expr>> {
    let devices = features
        .clone()
        .select(vec![col("device_id")])?
        .distinct()?
        .collect()
        .await?;
    let mut test = Vec::new();
    for b in &devices {
        let d = arrow::compute::cast(b.column(0), &DataType::Int64)?;
        let d = d.as_primitive::<Int64Type>();
        for v in d.iter().flatten() {
            if is_test_device(v, test_fraction, seed) {
                test.push(lit(v));
            }
        }
    }
    Ok(test)
}

/// The held-out rows of a features output (the devices [`is_test_device`]
/// puts in the test split), filtered where the query runs (on the
/// executors on a cluster), so evaluating a model never loads the whole
/// table into the driver.
pub async fn held_out_rows(
    features: DataFrame,
    test_fraction: f64,
    seed: u64,
) -> Result<DataFrame> {
    let test = held_out_devices(&features, test_fraction, seed).await?;
    Ok(if test.is_empty() {
        features.filter(lit(false))?
    } else {
        features.filter(in_list(col("device_id"), test, false))?
    })
}

/// The training rows of a features output for a distributed fit: devices
/// of the training split only (the held-out devices' ids, a few thousand at
/// most, travel as an `IN` list), with row ids `0..n` in `sample_id` order,
/// the order of the local trainer's matrix, so both train the same model.
pub async fn pipeline_training_rows(
    features: DataFrame,
    test_fraction: f64,
    seed: u64,
    row_id: &str,
) -> Result<DataFrame> {
    let test = held_out_devices(&features, test_fraction, seed).await?;
    let df = if test.is_empty() {
        features
    } else {
        features.filter(in_list(col("device_id"), test, true))?
    };
    let rn = row_number()
        .order_by(vec![col("sample_id").sort(true, false)])
        .build()?
        .alias("__sluice_rn");
    let df = df.window(vec![rn])?;
    let df = df.with_column(
        row_id,
        cast(col("__sluice_rn"), DataType::Int64) - lit(1i64),
    )?;
    Ok(df.drop_columns(&["__sluice_rn"])?)
}

/// Whether a pipeline model trains on the executors: the engine is a
/// Ballista cluster and `train.distributed` is on (the default); a model
/// with a grid search or cross-validation ([`crate::dsearch`]) only once
/// the features table has `train.search_min_rows` rows (`rows`).
pub fn trains_on_cluster(
    engine: &EngineSettings,
    step: &TrainStep,
    model: &ModelConfig,
    rows: Option<u64>,
) -> bool {
    engine.mode == EngineMode::Ballista
        && step.distributed
        && (model.grid.is_empty() && model.cv.is_none()
            || rows.unwrap_or(u64::MAX) >= step.search_min_rows)
}

/// Label column of the features output.
const PIPELINE_LABEL: &str = "indoor";
/// Row id column added for the fit.
const PIPELINE_ROW_ID: &str = "__sluice_row_id";

/// Trains one pipeline model on the executors: the committed features
/// output, minus the held-out devices, binned once into a scratch directory
/// under the model's output (`<dir>/_binned-<uuid>/`, deleted afterwards).
pub(crate) async fn train_pipeline_model(
    rc: &RunContext,
    features: &Manifest,
    step: &TrainStep,
    model: &ModelConfig,
    dir: &str,
) -> Result<DistributedFit> {
    let names = features
        .output::<crate::outputs::FeaturesOutput>()?
        .feature_names;
    let df = commit::read_parquet(&rc.ctx, &rc.lake, features).await?;
    let df = pipeline_training_rows(df, step.test_fraction, step.seed, PIPELINE_ROW_ID).await?;
    let scratch = format!("{dir}/_binned-{}/", uuid::Uuid::new_v4().simple());
    let opts = DistributedOptions {
        binned_url: Some(rc.lake.table_url(&scratch)),
        retry: rc.cfg.config.engine.retry.clone(),
        ..DistributedOptions::default()
    };
    info!(model = %model.name, "training on the executors");
    let spec = model.spec.to_spec();
    let fit = if model.grid.is_empty() && model.cv.is_none() {
        train_distributed(
            &rc.ctx,
            df,
            &names,
            PIPELINE_LABEL,
            PIPELINE_ROW_ID,
            &spec,
            &opts,
        )
        .await
    } else {
        crate::dsearch::grid_search_distributed(
            &rc.ctx,
            df,
            &names,
            PIPELINE_LABEL,
            PIPELINE_ROW_ID,
            &spec,
            &model.search_config(step.seed),
            &opts,
            &model.name,
        )
        .await
    };
    if let Err(e) = rc.lake.delete_prefix(&scratch).await {
        tracing::warn!(error = %e, dir = %scratch, "could not delete the binned scratch table");
    }
    fit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_searches_go_to_the_cluster_from_search_min_rows() {
        let step: TrainStep = serde_yaml::from_str(
            "models:\n  - {name: plain, type: gbt}\n  - {name: grid, type: gbt, grid: {maxDepth: [2, 3]}}\n  - {name: cv, type: gbt, cv: {folds: 3}}\n",
        )
        .unwrap();
        assert_eq!(step.search_min_rows, 5_000_000);
        let cluster = EngineSettings {
            mode: EngineMode::Ballista,
            ..EngineSettings::default()
        };
        let on = |step: &TrainStep, engine: &EngineSettings, rows: u64| -> Vec<bool> {
            step.models
                .iter()
                .map(|m| trains_on_cluster(engine, step, m, Some(rows)))
                .collect()
        };
        assert_eq!(on(&step, &cluster, 1_000), [true, false, false]);
        assert_eq!(on(&step, &cluster, 5_000_000), [true, true, true]);
        assert_eq!(on(&step, &EngineSettings::default(), 5_000_000), [false; 3]);
        let always = TrainStep {
            search_min_rows: 0,
            ..step.clone()
        };
        assert_eq!(on(&always, &cluster, 1_000), [true, true, true]);
        let off = TrainStep {
            distributed: false,
            ..step
        };
        assert_eq!(on(&off, &cluster, 5_000_000), [false; 3]);
    }

    #[test]
    fn device_split_is_a_fraction() {
        let test = (0..10_000).filter(|&d| is_test_device(d, 0.25, 7)).count();
        assert!((2_300..2_700).contains(&test), "{test}");
        assert!(!is_test_device(5, 0.0, 7));
    }
}
