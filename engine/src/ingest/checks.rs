//! Value checks of the raw tables: the physical bounds the contract
//! declares per column (`min`/`max` in `storage/schema/unified_v1.json`) and
//! timestamps not in the future beyond a tolerance.
//!
//! The checks run per raw table before the join. What happens to violating
//! rows is configured by `ingest.value_checks` (default `fail`, see
//! [`ValueChecks`]):
//! * `fail`: each checked column goes through `sluice_value_bounds`
//!   ([`bounds_projection`], a pass-through projection on the table's scan
//!   inside the join's own plan: no extra pass, the join's plan keeps its
//!   shape); the first violating row fails the query, and
//!   [`first_violation`] then names the file, column, `sample_id` and value
//!   (the step commits nothing);
//! * `reject`: the pass that already reads each table's key to prove it
//!   unique also sums the violating rows (one more aggregate); the violating
//!   raw rows go to the step's `rejected/` output ([`rejected_rows`]: table,
//!   key, the violated columns and their values), counted in the manifest;
//!   their samples are left out of the join (one filter on the `samples`
//!   scan) and the other samples are predicted;
//! * `off`: no check.

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Column, ScalarValue};
use datafusion::functions::string::expr_fn::concat_ws;
use datafusion::logical_expr::{case, cast, lit, Expr};
use datafusion::prelude::{DataFrame, SessionContext};
use serde::{Deserialize, Serialize};

use super::raw::{scan_raw_table, RawFile};
use super::PartitionFilter;
use crate::error::{EngineError, Result};
use crate::lake::Lake;
use crate::schema::{future_tolerance_seconds, RawTable, ValueCheck};

/// What ingestion does with rows outside the contract's value bounds.
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ValueChecks {
    /// Fail the step, naming file, column, row and value (default: the
    /// check is a pass-through projection inside the join's own pass,
    /// measured in docs/PERFORMANCE.md).
    #[default]
    Fail,
    /// Route the rows to the step's `rejected/` output and go on.
    Reject,
    /// No value checks.
    Off,
}

/// Column name of the rejected output: the raw table.
pub const REJECT_TABLE_COLUMN: &str = "_table";
/// Column name of the rejected output: the violated columns.
pub const REJECT_COLUMNS_COLUMN: &str = "_bad_columns";
/// Column name of the rejected output: `column=value` of the violations.
pub const REJECT_VALUES_COLUMN: &str = "_values";

fn qcol(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// The latest allowed timestamp (µs since the epoch): now plus the
/// contract's tolerance.
fn latest_allowed_us(now: chrono::DateTime<chrono::Utc>) -> i64 {
    now.timestamp_micros() + future_tolerance_seconds() as i64 * 1_000_000
}

/// True where the value of `check`'s column breaks it (null never does).
pub fn violation(check: &ValueCheck, now: chrono::DateTime<chrono::Utc>) -> Expr {
    let c = qcol(check.column());
    match check {
        ValueCheck::Range { min, max, .. } => {
            // NaN sorts above every number, so `<= max` excludes it.
            let v = cast(c.clone(), DataType::Float64);
            c.is_not_null()
                .and(!(v.clone().gt_eq(lit(*min)).and(v.lt_eq(lit(*max)))))
        }
        ValueCheck::NotInFuture { .. } => {
            c.clone()
                .is_not_null()
                .and(c.gt(lit(ScalarValue::TimestampMicrosecond(
                    Some(latest_allowed_us(now)),
                    Some(crate::schema::TIMESTAMP_TZ.into()),
                ))))
        }
    }
}

/// The bound of `check` as `[min, max]` over f64 values (timestamps as µs
/// since the epoch) and how it reads in a message.
fn bound(check: &ValueCheck, now: chrono::DateTime<chrono::Utc>) -> (f64, f64, String) {
    match check {
        ValueCheck::Range { min, max, .. } => (*min, *max, format!("must lie in [{min}, {max}]")),
        ValueCheck::NotInFuture { .. } => (
            f64::MIN,
            latest_allowed_us(now) as f64,
            format!(
                "must not lie more than {}s after the run's start ({})",
                future_tolerance_seconds(),
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
    }
}

/// `df` (a scan of `table` in the contract's schema) with every checked
/// column passed through `sluice_value_bounds`: same columns, same rows,
/// the query fails at the first value outside the bounds.
pub fn bounds_projection(
    table: &RawTable,
    df: DataFrame,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DataFrame> {
    if table.checks.is_empty() {
        return Ok(df);
    }
    let select: Vec<Expr> = df
        .schema()
        .fields()
        .iter()
        .map(
            |f| match table.checks.iter().find(|c| c.column() == f.name()) {
                Some(check) => {
                    let (min, max, rule) = bound(check, now);
                    super::bounds::value_bounds(&super::bounds::BoundsSpec {
                        table: table.name.clone(),
                        key: table.key.clone(),
                        column: f.name().clone(),
                        min,
                        max,
                        rule,
                    })
                }
                None => qcol(f.name()),
            },
        )
        .collect();
    Ok(df.select(select)?)
}

/// True where a row of `table` breaks any of its checks; `None` for a table
/// without checks.
pub fn any_violation(table: &RawTable, now: chrono::DateTime<chrono::Utc>) -> Option<Expr> {
    table
        .checks
        .iter()
        .map(|c| violation(c, now))
        .reduce(Expr::or)
}

/// `column=value` (comma-separated) of the checks a row breaks, and the
/// names of those columns.
fn describe(table: &RawTable, now: chrono::DateTime<chrono::Utc>) -> Result<(Expr, Expr)> {
    let mut names = Vec::new();
    let mut values = Vec::new();
    for c in &table.checks {
        let name = c.column();
        names.push(case(violation(c, now)).when(lit(true), lit(name)).end()?);
        values.push(
            case(violation(c, now))
                .when(
                    lit(true),
                    concat_ws(
                        lit(""),
                        vec![lit(format!("{name}=")), cast(qcol(name), DataType::Utf8)],
                    ),
                )
                .end()?,
        );
    }
    Ok((concat_ws(lit(","), names), concat_ws(lit(", "), values)))
}

/// The rejected raw rows of one table: `_table`, the key, `_bad_columns`,
/// `_values`; `None` for a table without checks.
pub fn rejected_rows(
    table: &RawTable,
    df: DataFrame,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<DataFrame>> {
    let Some(bad) = any_violation(table, now) else {
        return Ok(None);
    };
    let (names, values) = describe(table, now)?;
    Ok(Some(df.filter(bad)?.select(vec![
        lit(table.name.as_str()).alias(REJECT_TABLE_COLUMN),
        cast(qcol(&table.key), DataType::Int64).alias("sample_id"),
        names.alias(REJECT_COLUMNS_COLUMN),
        values.alias(REJECT_VALUES_COLUMN),
    ])?))
}

/// The first raw row breaking a check, as a data error naming the file,
/// column, key and value; `None` when every row passes.
pub async fn first_violation(
    ctx: &SessionContext,
    lake: &Lake,
    tables: &[RawTable],
    partitions: &[PartitionFilter],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<EngineError>> {
    for table in tables {
        let Some(bad) = any_violation(table, now) else {
            continue;
        };
        let scan = scan_raw_table(ctx, lake, table, partitions).await?;
        let total = scan.df.clone().filter(bad.clone())?.count().await? as u64;
        if total == 0 {
            continue;
        }
        for f in &scan.files {
            let one = scan_raw_table_file(ctx, lake, table, f).await?;
            let (names, values) = describe(table, now)?;
            let hit = one
                .filter(bad.clone())?
                .select(vec![cast(qcol(&table.key), DataType::Int64), names, values])?
                .limit(0, Some(1))?
                .collect()
                .await?;
            let Some(b) = hit.iter().find(|b| b.num_rows() > 0) else {
                continue;
            };
            let key = b.column(0).as_primitive::<Int64Type>().value(0);
            let text = |i: usize| -> String {
                arrow::compute::cast(b.column(i), &DataType::Utf8)
                    .ok()
                    .map(|a| a.as_string::<i32>().value(0).to_string())
                    .unwrap_or_default()
            };
            let columns = text(1);
            let bounds: Vec<String> = table
                .checks
                .iter()
                .filter(|c| columns.split(',').any(|n| n == c.column()))
                .map(|c| match c {
                    ValueCheck::Range { column, min, max } => {
                        format!("`{column}` must lie in [{min}, {max}]")
                    }
                    ValueCheck::NotInFuture { column } => format!(
                        "`{column}` must not lie more than {}s after the run's start ({})",
                        future_tolerance_seconds(),
                        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                })
                .collect();
            return Ok(Some(EngineError::data(
                f.rel.clone(),
                format!(
                    "{} = {key}: {} ({}); {total} row(s) of raw/{} break the contract's value bounds; set `value_checks: reject` on the ingest step to route them to the rejected output instead",
                    table.key,
                    text(2),
                    bounds.join("; "),
                    table.name
                ),
            )));
        }
    }
    Ok(None)
}

/// One file of a table, scanned with the contract's schema.
async fn scan_raw_table_file(
    ctx: &SessionContext,
    lake: &Lake,
    table: &RawTable,
    f: &RawFile,
) -> Result<DataFrame> {
    let urls = vec![lake.table_url(&f.rel)];
    let schema = super::raw::scan_schema(ctx, table);
    Ok(ctx
        .read_parquet(
            urls,
            datafusion::prelude::ParquetReadOptions::default().schema(&schema),
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[tokio::test]
    async fn bounds_exclude_nan_infinity_and_outliers_but_not_nulls() {
        let ctx = SessionContext::new();
        let values = Float64Array::from(vec![
            Some(45.0),
            None,
            Some(123.0),
            Some(-999.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(-90.0),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "latitude",
                DataType::Float64,
                true,
            )])),
            vec![Arc::new(values)],
        )
        .unwrap();
        let check = ValueCheck::Range {
            column: "latitude".into(),
            min: -90.0,
            max: 90.0,
        };
        let kept = ctx
            .read_batch(batch)
            .unwrap()
            .filter(!violation(&check, chrono::Utc::now()))
            .unwrap()
            .collect()
            .await
            .unwrap();
        let kept: Vec<Option<f64>> = kept
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(kept, vec![Some(45.0), None, Some(-90.0)]);
    }
}
