//! Inference input: the seven raw tables joined as one DataFusion plan.

use arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{cast, col, lit, Expr, JoinType};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};

use super::{IngestDiagnostics, IngestOutput};
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::schema::{raw_table, raw_tables, unified_schema, validate_schema, JoinKind, RawTable};

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
/// (a missing one is named); every table's schema matches the contract
/// (names, types, nullability; the table is named); no key is duplicated in
/// any table (`sample_id` in the per-sample tables, `device_id` in
/// `devices`, `cell_key` in `cells`): duplicates are reported with the table
/// and a few keys instead of silently multiplying rows. The result is one
/// plan: `samples` inner-joined with `devices` and left-joined with the
/// others, projected to the unified column order and validated.
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
    lake.register(ctx);
    let mut frames = Vec::new();
    let mut diagnostics = IngestDiagnostics::default();
    for table in raw_tables() {
        let df = read_raw_table(ctx, lake, table).await?;
        diagnostics.sources.push(format!("raw/{}/", table.name));
        frames.push((table, df));
    }

    check_unique_keys(&frames).await?;

    let (base_table, base) = frames
        .first()
        .ok_or_else(|| EngineError::Internal("the schema file lists no tables".into()))?;
    let base_key = base_table.key.as_str();
    let n_slices = match join_slices {
        Some(n) => n.max(1),
        None => auto_slices(ctx, &frames, base_key).await?,
    };
    let df = join_frames(frames.clone(), None)?;
    let mut slices = Vec::new();
    if n_slices > 1 {
        for range in crate::slices::key_ranges(base, base_key, n_slices).await? {
            slices.push(join_frames(frames.clone(), Some((base_key, range)))?);
        }
        tracing::info!(
            slices = slices.len(),
            "seven-table join split into sample_id ranges to fit the memory limit"
        );
    }
    Ok(IngestOutput {
        df,
        slices,
        rejected: None,
        diagnostics,
    })
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
    slice: Option<(&str, (i64, i64))>,
) -> Result<DataFrame> {
    let restrict = |table: &RawTable, df: DataFrame| -> Result<DataFrame> {
        match slice {
            Some((key, range)) if table.key == key => {
                Ok(df.filter(crate::slices::range_filter(key, range))?)
            }
            _ => Ok(df),
        }
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
        .map(|f| exact(qcol(base_name, f.name()), f.data_type(), f.name()))
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
                .map(|f| exact(qcol(&table.name, f.name()), f.data_type(), f.name())),
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

/// Reads one raw table after checking that its directory holds Parquet
/// files and that its schema matches the contract.
async fn read_raw_table(ctx: &SessionContext, lake: &Lake, table: &RawTable) -> Result<DataFrame> {
    let rel = format!("raw/{}/", table.name);
    let has_parquet = lake
        .list(&rel)
        .await?
        .iter()
        .any(|m| m.location.as_ref().ends_with(".parquet"));
    if !has_parquet {
        return Err(EngineError::data(
            format!("raw/{}", table.name),
            format!(
                "table directory {} is missing or holds no .parquet file; expected the `{}` table of the data contract there",
                lake.table_url(&rel),
                table.name
            ),
        ));
    }
    let df = ctx
        .read_parquet(lake.table_url(&rel), ParquetReadOptions::default())
        .await?;
    validate_schema(
        df.schema().as_arrow(),
        &table.schema,
        &format!("raw/{}", table.name),
    )?;
    Ok(df)
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
    let df = read_raw_table(ctx, lake, table).await?;
    Ok(IngestOutput {
        df,
        slices: Vec::new(),
        rejected: None,
        diagnostics: IngestDiagnostics {
            sources: vec![format!("raw/{name}/")],
            ..Default::default()
        },
    })
}

/// Per table: a table stored in key order is proven duplicate-free by one
/// streaming pass ([`super::keys_proven_unique`]); any other table gets one
/// aggregate over its key (a single Int64 group column, the fast path of
/// DataFusion's hash aggregate) reporting `(table, key, rows)` for keys seen
/// more than once. A clean lake returns nothing.
async fn check_unique_keys(frames: &[(&RawTable, DataFrame)]) -> Result<()> {
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    for (table, df) in frames {
        let t0 = std::time::Instant::now();
        if super::keys_proven_unique(df, &table.key).await? {
            tracing::debug!(table = %table.name, seconds = t0.elapsed().as_secs_f64(), "keys unique by storage order");
            continue;
        }
        tracing::debug!(table = %table.name, seconds = t0.elapsed().as_secs_f64(), "keys not proven unique by order: GROUP BY check");
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
        return Ok(());
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
