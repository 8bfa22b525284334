//! Inference input: the seven raw tables joined as one DataFusion plan.

use arrow::array::Array;
use arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{cast, col, lit, Expr, JoinType};
use datafusion::prelude::{DataFrame, SessionContext};

use super::checks::{
    any_violation, bounds_projection, first_violation, rejected_rows, ValueChecks,
};
use super::partition::PartitionFilter;
use super::raw::{scan_raw_table, RawTableScan};
use super::{IngestDiagnostics, IngestOutput};
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::schema::{raw_table, raw_tables, unified_schema, validate_schema, JoinKind, RawTable};
use serde::{Deserialize, Serialize};

/// Keys reported per table when duplicates are found.
const DUPLICATES_SHOWN: usize = 5;

fn qcol(table: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(table), name))
}

/// The column as the contract type (Parquet strings are read as
/// `Utf8View`; the unified table uses `Utf8`), named `name`.
fn exact(e: Expr, ty: &DataType, name: &str) -> Expr {
    match ty {
        DataType::Utf8 => cast(e, DataType::Utf8).alias(name),
        _ => e.alias(name),
    }
}

/// Builds the unified inference table from `raw/<table>/` of the lake.
///
/// Checks, in order: every table directory exists and holds Parquet files
/// (a missing one is named); every file matches the contract by meaning
/// ([`super::raw`]: names, coercible types, no nulls where the contract
/// requires values; the file is named); `samples` has rows; no key is
/// duplicated in any table (`sample_id` in the per-sample tables,
/// `device_id` in `devices`, `cell_key` in `cells`): duplicates are
/// reported with the table and a few keys instead of silently multiplying
/// rows. The result is one plan: `samples` inner-joined with `devices` and
/// left-joined with the others, projected to the unified column order and
/// validated. [`IngestDiagnostics::expected_rows`] holds the row count of
/// `samples`, which the join must keep (see [`check_joined_rows`]).
pub async fn inference_input(ctx: &SessionContext, lake: &Lake) -> Result<IngestOutput> {
    inference_input_sliced(ctx, lake, None).await
}

/// [`inference_input`] with the join split into key-range slices
/// ([`IngestOutput::slices`]) so the hash tables of one slice fit the
/// session's memory limit: `join_slices` gives the count, `None` derives it
/// from the tables' row counts and the memory pool's limit (one slice when
/// the session has no limit). Each slice filters every table joined on
/// `sample_id` to one key range, so a slice's build sides hold only that
/// range; Parquet row-group statistics skip the rest of a table stored in
/// key order.
pub async fn inference_input_sliced(
    ctx: &SessionContext,
    lake: &Lake,
    join_slices: Option<usize>,
) -> Result<IngestOutput> {
    inference_input_with(
        ctx,
        lake,
        &InferenceOptions {
            join_slices,
            ..Default::default()
        },
    )
    .await
}

/// Options of [`inference_input_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InferenceOptions {
    /// See [`inference_input_sliced`].
    pub join_slices: Option<usize>,
    /// Hive partition filters applied to every table partitioned by their
    /// key, before any file is opened.
    pub partitions: Vec<PartitionFilter>,
    /// What to do with rows outside the contract's value bounds.
    pub value_checks: ValueChecks,
    /// The run's start, the reference of the "not in the future" checks
    /// (default: now). Pass the same value to [`check_joined_rows`].
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// The caller does not write the join ([`DeferredJoin`]): the value
    /// checks of `fail` run in the key check's pass instead of the join's,
    /// and every sample's device is checked, so the errors a written join
    /// would give come from here.
    pub deferred: bool,
}

impl InferenceOptions {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.now.unwrap_or_else(chrono::Utc::now)
    }
}

/// [`inference_input_sliced`] with partition filters.
pub async fn inference_input_with(
    ctx: &SessionContext,
    lake: &Lake,
    opts: &InferenceOptions,
) -> Result<IngestOutput> {
    lake.register(ctx);
    let now = opts.now();
    let mut frames = Vec::new();
    let mut partition_keys: Vec<String> = Vec::new();
    let mut diagnostics = IngestDiagnostics::default();
    for table in raw_tables() {
        let scan = read_raw_table(ctx, lake, table, &opts.partitions).await?;
        diagnostics.sources.push(format!("raw/{}/", table.name));
        diagnostics.files_read += scan.files.len();
        diagnostics.files_pruned += scan.pruned;
        if table.join == JoinKind::Base {
            if scan.rows == 0 {
                return Err(EngineError::data(
                    format!("raw/{}", table.name),
                    format!(
                        "the table has no rows ({} file(s){}, all empty): there is nothing to predict; an empty input is an error, not an empty result",
                        scan.files.len(),
                        if opts.partitions.is_empty() {
                            String::new()
                        } else {
                            format!(" in partition {}", partitions_text(&opts.partitions))
                        }
                    ),
                ));
            }
            diagnostics.expected_rows = Some(scan.rows);
        }
        if table.join == JoinKind::Inner && scan.rows == 0 {
            return Err(EngineError::data(
                format!("raw/{}", table.name),
                format!(
                    "the table has no rows: every sample would be dropped by the inner join on `{}`",
                    table.key
                ),
            ));
        }
        for f in &scan.files {
            for (k, _) in &f.partition {
                if !partition_keys.contains(k) {
                    partition_keys.push(k.clone());
                }
            }
        }
        frames.push((table, scan.df));
    }
    if let Some(f) = opts
        .partitions
        .iter()
        .find(|f| !partition_keys.contains(&f.key))
    {
        return Err(EngineError::data(
            "raw/",
            format!(
                "the partition filter {f} names key `{}`, but no raw table is partitioned by it (partition keys found: {}); expected directories like raw/samples/{}=<value>/",
                f.key,
                if partition_keys.is_empty() {
                    "none".to_string()
                } else {
                    partition_keys.join(", ")
                },
                f.key
            ),
        ));
    }
    tracing::info!(
        files = diagnostics.files_read,
        pruned = diagnostics.files_pruned,
        "raw tables checked"
    );

    // One pass per table proves its key unique and, for `reject`, counts
    // the rows outside the contract's bounds.
    let values_in_key_pass = opts.value_checks == ValueChecks::Reject
        || (opts.deferred && opts.value_checks == ValueChecks::Fail);
    let checks_now = values_in_key_pass.then_some(now);
    let (violations, unordered) = check_unique_keys(&frames, checks_now).await?;
    let violations: u64 = violations.iter().sum();
    diagnostics.unordered_tables = unordered;
    if opts.deferred {
        if opts.value_checks == ValueChecks::Fail && violations > 0 {
            return Err(
                first_violation(ctx, lake, raw_tables(), &opts.partitions, now)
                    .await?
                    .unwrap_or_else(|| {
                        EngineError::Internal(format!(
                            "{violations} raw row(s) break the value bounds, but none was found again"
                        ))
                    }),
            );
        }
        if let Some(e) = orphans(ctx, lake, &opts.partitions).await? {
            return Err(e);
        }
    } else if opts.value_checks == ValueChecks::Fail {
        // Checked inside the join's own pass; see `name_bounds_error`.
        for (table, df) in frames.iter_mut() {
            *df = bounds_projection(table, df.clone(), now)?;
        }
    }
    let rejected = if opts.value_checks == ValueChecks::Reject {
        let r = rejected_union(&frames, now)?;
        diagnostics.rejected_rows = violations;
        if violations > 0 {
            tracing::warn!(
                rows = violations,
                "raw rows outside the contract's value bounds go to the rejected output"
            );
            let dropped = leave_out_rejected_samples(ctx, &mut frames, r.clone()).await?;
            diagnostics.expected_rows =
                diagnostics.expected_rows.map(|n| n.saturating_sub(dropped));
        }
        Some(r)
    } else {
        None
    };

    let (base_table, base) = frames
        .first()
        .ok_or_else(|| EngineError::Internal("the schema file lists no tables".into()))?;
    let base_key = base_table.key.as_str();
    let n_slices = match opts.join_slices {
        Some(n) => n.max(1),
        None => auto_slices(ctx, &frames, base_key).await?,
    };
    let df = join_frames(frames.clone(), &[])?;
    let mut slices = Vec::new();
    if n_slices > 1 {
        for range in crate::slices::key_ranges(base, base_key, n_slices).await? {
            slices.push(join_frames(frames.clone(), &[(base_key, range)])?);
        }
        tracing::info!(
            slices = slices.len(),
            "seven-table join split into sample_id ranges to fit the memory limit"
        );
    }
    Ok(IngestOutput {
        df,
        slices,
        rejected,
        diagnostics,
    })
}

/// One slice of a deferred inference join ([`DeferredJoin`]): the samples
/// of a `device_id` range, and the span of their `sample_id`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSlice {
    /// `[first, end)` of `device_id` (`i64::MIN` / `i64::MAX`: open ends).
    pub devices: (i64, i64),
    /// Smallest and largest `sample_id` of the slice's samples: the
    /// per-sample tables are read in this range only (a superset of the
    /// rows the slice joins, so the filter never changes the result).
    pub sample_ids: (i64, i64),
}

/// The seven-table join left as a plan for the next step instead of being
/// written: what is needed to build it again, in `device_id` slices
/// ([`deferred_join_parts`]). The ingest step has already checked every
/// table (files, schema, unique keys, value bounds, every sample's device:
/// [`InferenceOptions::deferred`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeferredJoin {
    /// The Hive partition filters of the ingest step.
    pub partitions: Vec<PartitionFilter>,
    /// The slices, in `device_id` order; together they hold every sample.
    pub slices: Vec<DeviceSlice>,
}

impl DeferredJoin {
    /// The options that read the same raw tables as the ingest step.
    pub fn options(&self) -> InferenceOptions {
        InferenceOptions {
            partitions: self.partitions.clone(),
            deferred: true,
            ..Default::default()
        }
    }

    /// How many times the slices read the per-sample tables, in total: the
    /// sum of the slices' `sample_id` spans over the span of all samples.
    /// 1.0 when the sample ids are grouped by device (each slice reads its
    /// own key range, pruned by Parquet statistics); up to the number of
    /// slices when they are not.
    pub fn reads(&self) -> f64 {
        let (Some(lo), Some(hi)) = (
            self.slices.iter().map(|s| s.sample_ids.0).min(),
            self.slices.iter().map(|s| s.sample_ids.1).max(),
        ) else {
            return 0.0;
        };
        let span = |(a, b): (i64, i64)| (b as f64 - a as f64 + 1.0).max(1.0);
        self.slices.iter().map(|s| span(s.sample_ids)).sum::<f64>() / span((lo, hi))
    }
}

/// `device_id` slices of the samples of `opts`, as many as
/// `slices_for_rows` gives for their row count (equal-width device ranges;
/// empty ones left out), with the `sample_id` span of each, from
/// one aggregate over the two key columns of `samples`.
pub async fn device_slices(
    ctx: &SessionContext,
    lake: &Lake,
    opts: &InferenceOptions,
    slices_for_rows: impl FnOnce(u64) -> usize,
) -> Result<Vec<DeviceSlice>> {
    const DEVICE: &str = "device_id";
    lake.register(ctx);
    let base = raw_tables()
        .iter()
        .find(|t| t.join == JoinKind::Base)
        .ok_or_else(|| EngineError::Internal("the schema file has no base table".into()))?;
    let samples = read_raw_table(ctx, lake, base, &opts.partitions).await?.df;
    let n = slices_for_rows(samples.clone().count().await? as u64);
    let ranges = crate::slices::key_ranges(&samples, DEVICE, n).await?;
    // The slice's index: how many slice starts the device id has passed.
    let index = ranges
        .iter()
        .skip(1)
        .map(|(start, _)| cast(qcol_bare(DEVICE).gt_eq(lit(*start)), DataType::Int64))
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| lit(0i64));
    let key = qcol_bare(&base.key);
    let batches = samples
        .aggregate(
            vec![index.alias("slice")],
            vec![
                datafusion::functions_aggregate::expr_fn::min(key.clone()).alias("lo"),
                datafusion::functions_aggregate::expr_fn::max(key).alias("hi"),
            ],
        )?
        .collect()
        .await?;
    let mut spans = vec![None; ranges.len()];
    for b in &batches {
        let col64 = |i: usize| -> Result<arrow::array::ArrayRef> {
            Ok(arrow::compute::cast(b.column(i), &DataType::Int64)?)
        };
        let (slice, lo, hi) = (col64(0)?, col64(1)?, col64(2)?);
        let as_i64 = |a: &arrow::array::ArrayRef| {
            a.as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .cloned()
                .ok_or_else(|| EngineError::Internal("slice bounds are not integers".into()))
        };
        let (slice, lo, hi) = (as_i64(&slice)?, as_i64(&lo)?, as_i64(&hi)?);
        for r in 0..b.num_rows() {
            if slice.is_valid(r) && lo.is_valid(r) && hi.is_valid(r) {
                spans[slice.value(r) as usize] = Some((lo.value(r), hi.value(r)));
            }
        }
    }
    Ok(ranges
        .into_iter()
        .zip(spans)
        .filter_map(|(devices, span)| {
            span.map(|sample_ids| DeviceSlice {
                devices,
                sample_ids,
            })
        })
        .collect())
}

/// The join of a [`DeferredJoin`], one plan per slice, in the unified
/// column order: `samples` and `devices` restricted to the slice's devices,
/// the per-sample tables to its `sample_id` span. The slices together are
/// exactly the unified table. The tables are scanned as the ingest step
/// did, without its checks (it ran them).
pub async fn deferred_join_parts(
    ctx: &SessionContext,
    lake: &Lake,
    d: &DeferredJoin,
) -> Result<Vec<DataFrame>> {
    lake.register(ctx);
    let mut frames = Vec::new();
    for table in raw_tables() {
        frames.push((
            table,
            read_raw_table(ctx, lake, table, &d.partitions).await?.df,
        ));
    }
    let base_key = frames
        .first()
        .map(|(t, _)| t.key.clone())
        .ok_or_else(|| EngineError::Internal("the schema file lists no tables".into()))?;
    d.slices
        .iter()
        .map(|s| {
            let (lo, hi) = s.sample_ids;
            let ids = (lo, hi.saturating_add(1));
            join_frames(
                frames.clone(),
                &[("device_id", s.devices), (base_key.as_str(), ids)],
            )
        })
        .collect()
}

/// An error of writing the unified table, with a value outside the
/// contract's bounds (`value_checks: fail`) replaced by the error of
/// [`first_violation`], which names the file, `sample_id`, column, value
/// and how many rows of the table break the bounds. Other errors are
/// returned unchanged.
pub async fn name_bounds_error(
    ctx: &SessionContext,
    lake: &Lake,
    opts: &InferenceOptions,
    e: EngineError,
) -> EngineError {
    if opts.value_checks != ValueChecks::Fail
        || !e.to_string().contains(super::bounds::BOUNDS_MARKER)
    {
        return e;
    }
    match first_violation(ctx, lake, raw_tables(), &opts.partitions, opts.now()).await {
        Ok(Some(named)) => named,
        _ => e,
    }
}

/// Rejected `sample_id`s up to this many are left out of `samples` by an
/// `IN` list on its scan; more by an anti join.
const REJECTED_IN_LIST_MAX: usize = 10_000;

/// Leaves the samples with a rejected raw row (in any table) out of the base
/// table, so the join holds only samples whose every row passed; returns how
/// many samples were left out. The join's plan keeps its shape: one filter
/// on the `samples` scan.
async fn leave_out_rejected_samples(
    ctx: &SessionContext,
    frames: &mut [(&RawTable, DataFrame)],
    rejected: DataFrame,
) -> Result<u64> {
    let Some((base_table, base)) = frames.first_mut() else {
        return Ok(0);
    };
    let key = base_table.key.clone();
    let ids = rejected
        .aggregate(vec![col("sample_id")], vec![])?
        .collect()
        .await?;
    let n: usize = ids.iter().map(|b| b.num_rows()).sum();
    if n == 0 {
        return Ok(0);
    }
    *base = if n <= REJECTED_IN_LIST_MAX {
        let list: Vec<Expr> = ids
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|a| a.iter().flatten().map(lit).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        base.clone().filter(qcol_bare(&key).in_list(list, true))?
    } else {
        let ids = ctx
            .read_batches(ids)?
            .select(vec![col("sample_id").alias("_rejected_key")])?;
        base.clone().join_on(
            ids,
            JoinType::LeftAnti,
            [qcol_bare(&key).eq(col("_rejected_key"))],
        )?
    };
    Ok(n as u64)
}

/// The rejected raw rows of every checked table, as one plan.
fn rejected_union(
    frames: &[(&RawTable, DataFrame)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DataFrame> {
    let mut out: Option<DataFrame> = None;
    for (table, df) in frames {
        if let Some(r) = rejected_rows(table, df.clone(), now)? {
            out = Some(match out {
                None => r,
                Some(acc) => acc.union(r)?,
            });
        }
    }
    out.ok_or_else(|| EngineError::Internal("the schema file declares no value checks".into()))
}

fn partitions_text(p: &[PartitionFilter]) -> String {
    p.iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// After the join was written: `rows` must equal the row count of
/// `samples`. Fewer rows mean samples whose `device_id` is not in `devices`
/// (the inner join drops them); they are named with a few of the ids.
pub async fn check_joined_rows(
    ctx: &SessionContext,
    lake: &Lake,
    opts: &InferenceOptions,
    expected: u64,
    rows: u64,
) -> Result<()> {
    if rows == expected {
        return Ok(());
    }
    Err(orphans(ctx, lake, &opts.partitions)
        .await?
        .unwrap_or_else(|| {
            EngineError::Internal(format!(
                "the joined table has {rows} rows where raw/samples has {expected}, and no orphan key explains it"
            ))
        }))
}

/// The error naming the samples whose `device_id` is not in `devices`
/// (the inner join would drop them), with a few of the ids; `None` when
/// every sample has its device.
async fn orphans(
    ctx: &SessionContext,
    lake: &Lake,
    partitions: &[PartitionFilter],
) -> Result<Option<EngineError>> {
    let tables = raw_tables();
    let (Some(base), Some(inner)) = (
        tables.iter().find(|t| t.join == JoinKind::Base),
        tables.iter().find(|t| t.join == JoinKind::Inner),
    ) else {
        return Err(EngineError::Internal(
            "the schema file has no base or inner table".into(),
        ));
    };
    let key = inner.key.as_str();
    let samples = read_raw_table(ctx, lake, base, partitions).await?.df;
    let expected = samples.clone().count().await? as u64;
    let dims = read_raw_table(ctx, lake, inner, partitions)
        .await?
        .df
        .select(vec![qcol_bare(key).alias("dim_key")])?;
    let orphans = samples
        .join_on(
            dims,
            JoinType::LeftAnti,
            [qcol_bare(key).eq(col("dim_key"))],
        )?
        .aggregate(
            vec![qcol_bare(key).alias("key")],
            vec![count(lit(1)).alias("n")],
        )?
        .sort(vec![col("key").sort(true, true)])?
        .collect()
        .await?;
    let mut shown = Vec::new();
    let mut dropped = 0u64;
    for b in &orphans {
        let k = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let n = arrow::compute::cast(b.column(1), &DataType::Int64)?;
        let k = k.as_any().downcast_ref::<arrow::array::StringArray>();
        let n = n.as_any().downcast_ref::<arrow::array::Int64Array>();
        if let (Some(k), Some(n)) = (k, n) {
            for r in 0..b.num_rows() {
                dropped += n.value(r) as u64;
                if shown.len() < DUPLICATES_SHOWN {
                    shown.push(format!("{} ({} samples)", k.value(r), n.value(r)));
                }
            }
        }
    }
    if dropped == 0 {
        return Ok(None);
    }
    Ok(Some(EngineError::data(
        format!("raw/{}", base.name),
        format!(
            "{dropped} of {expected} samples have a `{key}` that is not in raw/{}: {}; every sample must have its device (add the devices or remove the samples)",
            inner.name,
            shown.join(", ")
        ),
    )))
}

fn qcol_bare(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// Slices needed so the build sides of the tables joined on `base_key`
/// (values plus about 32 bytes of hash entry per row) fit the memory limit
/// ([`crate::slices::slices_for`]).
async fn auto_slices(
    ctx: &SessionContext,
    frames: &[(&RawTable, DataFrame)],
    base_key: &str,
) -> Result<usize> {
    let mut bytes = 0u64;
    for (table, df) in frames.iter().skip(1) {
        if table.key != base_key {
            continue; // dimension tables (devices, cells) are small
        }
        let rows = df.clone().count().await? as u64;
        bytes += rows * (crate::slices::row_bytes(df.schema().as_arrow()) + 32) as u64;
    }
    Ok(crate::slices::slices_for(ctx, bytes))
}

/// The join of the checked tables, optionally restricted to one key range
/// of the base key (applied to every table joined on it), projected to the
/// unified column order and validated.
fn join_frames(
    frames: Vec<(&RawTable, DataFrame)>,
    slice: &[(&str, (i64, i64))],
) -> Result<DataFrame> {
    // Each range filters every table that has its column. Strings become
    // the contract's `Utf8` before the joins: a hash join that builds on
    // the output of another keeps every data buffer of a string view
    // column it takes from, so a chain of left joins would multiply them
    // at each level (docs/PERFORMANCE.md, the 38M section, item 9).
    let restrict = |table: &RawTable, mut df: DataFrame| -> Result<DataFrame> {
        for (column, range) in slice {
            if table.schema.field_with_name(column).is_ok() {
                df = df.filter(crate::slices::range_filter(column, *range))?;
            }
        }
        let exact_types = table
            .schema
            .fields()
            .iter()
            .map(|f| exact(qcol_bare(f.name()), f.data_type(), f.name()))
            .collect::<Vec<_>>();
        Ok(df.select(exact_types)?)
    };
    let mut frames = frames.into_iter();
    let (base_table, base) = frames
        .next()
        .ok_or_else(|| EngineError::Internal("the schema file lists no tables".into()))?;
    let base_name = base_table.name.as_str();
    let mut df = restrict(base_table, base)?.alias(base_name)?;
    let mut select: Vec<Expr> = base_table
        .schema
        .fields()
        .iter()
        .map(|f| qcol(base_name, f.name()))
        .collect();
    for (table, frame) in frames {
        let join = match table.join {
            JoinKind::Inner => JoinType::Inner,
            JoinKind::Left => JoinType::Left,
            JoinKind::Base => {
                return Err(EngineError::Internal(format!(
                    "table `{}` is a second base table in the schema file",
                    table.name
                )))
            }
        };
        let on = qcol(base_name, &table.key).eq(qcol(&table.name, &table.key));
        df = df.join_on(restrict(table, frame)?.alias(&table.name)?, join, [on])?;
        select.extend(
            table
                .schema
                .fields()
                .iter()
                .filter(|f| f.name() != &table.key)
                .map(|f| qcol(&table.name, f.name())),
        );
    }
    let df = df.select(select)?;
    validate_schema(
        df.schema().as_arrow(),
        &unified_schema(),
        "unified inference input",
    )?;
    Ok(df)
}

/// Reads one raw table after checking its files (see [`super::raw`]).
async fn read_raw_table(
    ctx: &SessionContext,
    lake: &Lake,
    table: &RawTable,
    partitions: &[PartitionFilter],
) -> Result<RawTableScan> {
    let scan = scan_raw_table(ctx, lake, table, partitions).await?;
    validate_schema(
        scan.df.schema().as_arrow(),
        &table.schema,
        &format!("raw/{}", table.name),
    )?;
    Ok(scan)
}

/// One raw table of the contract (`raw/<name>/`), its directory and schema
/// checked, as a DataFrame (the single-table scan the join benchmark uses as
/// its baseline, and a way to validate one delivery).
pub async fn raw_table_input(
    ctx: &SessionContext,
    lake: &Lake,
    name: &str,
) -> Result<IngestOutput> {
    lake.register(ctx);
    let table = raw_table(name)?;
    let scan = read_raw_table(ctx, lake, table, &[]).await?;
    Ok(IngestOutput {
        df: scan.df,
        slices: Vec::new(),
        rejected: None,
        diagnostics: IngestDiagnostics {
            sources: vec![format!("raw/{name}/")],
            files_read: scan.files.len(),
            ..Default::default()
        },
    })
}

/// Per table: a table stored in key order is proven duplicate-free by one
/// streaming pass ([`super::keys_proven_unique_counting`]); any other table
/// gets one aggregate over its key (a single Int64 group column, the fast
/// path of DataFusion's hash aggregate) reporting `(table, key, rows)` for
/// keys seen more than once. With `checks_now`, the same streaming pass
/// counts the rows breaking the table's value checks (relative to that
/// time). A clean lake returns the violation count per table and the
/// tables not stored in key order.
async fn check_unique_keys(
    frames: &[(&RawTable, DataFrame)],
    checks_now: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(Vec<u64>, Vec<String>)> {
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    let mut violations = Vec::new();
    let mut unordered = Vec::new();
    for (table, df) in frames {
        let t0 = std::time::Instant::now();
        let bad = checks_now.and_then(|now| any_violation(table, now));
        let (unique, n_bad) = super::keys_proven_unique_counting(df, &table.key, bad).await?;
        violations.push(n_bad);
        if unique {
            tracing::debug!(table = %table.name, seconds = %crate::logfmt::secs(t0.elapsed().as_secs_f64()), "keys unique by storage order");
            continue;
        }
        tracing::debug!(table = %table.name, seconds = %crate::logfmt::secs(t0.elapsed().as_secs_f64()), "keys not proven unique by order: GROUP BY check");
        unordered.push(table.name.clone());
        let dups = df
            .clone()
            .aggregate(
                vec![Expr::Column(Column::from_name(&table.key)).alias("key")],
                vec![count(lit(1)).alias("n")],
            )?
            .filter(col("n").gt(lit(1i64)))?
            .sort(vec![col("key").sort(true, true)])?
            .limit(0, Some(DUPLICATES_SHOWN))?
            .collect()
            .await?;
        let mut keys_found = Vec::new();
        for batch in &dups {
            let keys = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let keys = keys
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .ok_or_else(|| EngineError::Internal("keys are not castable to text".into()))?;
            let counts = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
            let counts = counts
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .ok_or_else(|| EngineError::Internal("counts are not integers".into()))?;
            for r in 0..batch.num_rows() {
                keys_found.push(format!("{} ({} rows)", keys.value(r), counts.value(r)));
            }
        }
        if !keys_found.is_empty() {
            found.push((table.name.clone(), keys_found));
        }
    }
    let Some((table, keys)) = found.first() else {
        return Ok((violations, unordered));
    };
    let key_name = frames
        .iter()
        .find(|(t, _)| t.name == *table)
        .map(|(t, _)| t.key.as_str())
        .unwrap_or("key");
    let others: Vec<&str> = found.iter().skip(1).map(|(t, _)| t.as_str()).collect();
    Err(EngineError::data(
        format!("raw/{table}"),
        format!(
            "duplicate {key_name}: expected one row per {key_name}, found several for {key_name} {}{}; joining would multiply samples, fix the table",
            keys.join(", "),
            if others.is_empty() {
                String::new()
            } else {
                format!(" (tables {} have duplicates too)", others.join(", "))
            }
        ),
    ))
}
