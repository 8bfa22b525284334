//! Key-range slices: running one large plan as several smaller ones, one
//! after another, so that its memory-bound operators (hash-join build sides,
//! sorts) hold one slice at a time.
//!
//! A slice is the plan with a filter `lo <= key < hi` on its input tables.
//! Slicing is exact when every row-combining operator groups rows by the key
//! (a join on `sample_id`, windows partitioned by `device_id`): each group
//! falls into one slice. Parquet row-group statistics skip the other ranges
//! of a table stored roughly in key order; any other table is read once per
//! slice, which costs scan time but never correctness.

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::Column;
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::logical_expr::{lit, Expr};
use datafusion::prelude::{DataFrame, SessionContext};

use crate::error::Result;

/// Share of the session's memory limit one slice may use.
const SLICE_SHARE: (u64, u64) = (2, 5);

/// In-memory bytes per row of `schema` (Arrow values, strings as views plus
/// some text), a deliberate over-estimate.
pub fn row_bytes(schema: &Schema) -> usize {
    schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => 24,
            DataType::Boolean => 1,
            t => t.primitive_width().unwrap_or(16),
        })
        .sum()
}

/// Slices needed for `bytes` of operator state to fit 40 % of the
/// session's memory limit; 1 when the session has no limit.
pub fn slices_for(ctx: &SessionContext, bytes: u64) -> usize {
    let MemoryLimit::Finite(limit) = ctx.runtime_env().memory_pool.memory_limit() else {
        return 1;
    };
    let budget = (limit as u64 * SLICE_SHARE.0 / SLICE_SHARE.1).max(1);
    bytes.div_ceil(budget).max(1) as usize
}

/// `n` half-open ranges `[lo, hi)` of equal width covering the Int64 `key`
/// of `df` (its min and max come from Parquet statistics when available).
/// The first range starts at `i64::MIN` and the last ends at `i64::MAX`, so
/// together they cover every value, nulls excepted.
pub async fn key_ranges(df: &DataFrame, key: &str, n: usize) -> Result<Vec<(i64, i64)>> {
    let k = Expr::Column(Column::from_name(key));
    let b = df
        .clone()
        .aggregate(vec![], vec![min(k.clone()), max(k)])?
        .collect()
        .await?;
    let bounds = b.iter().find(|b| b.num_rows() > 0).and_then(|b| {
        let lo = b.column(0).as_any().downcast_ref::<Int64Array>()?;
        let hi = b.column(1).as_any().downcast_ref::<Int64Array>()?;
        (lo.is_valid(0) && hi.is_valid(0)).then(|| (lo.value(0), hi.value(0)))
    });
    let Some((lo, hi)) = bounds else {
        return Ok(vec![(i64::MIN, i64::MAX)]);
    };
    let span = (hi as i128 - lo as i128 + 1).max(1);
    let n = (n.max(1) as i128).min(span);
    let cut = |i: i128| (lo as i128 + span * i / n) as i64;
    Ok((0..n)
        .map(|i| {
            let a = if i == 0 { i64::MIN } else { cut(i) };
            let z = if i == n - 1 { i64::MAX } else { cut(i + 1) };
            (a, z)
        })
        .collect())
}

/// `lo <= key < hi` (the bound at `i64::MAX` is open-ended).
pub fn range_filter(key: &str, (lo, hi): (i64, i64)) -> Expr {
    let k = Expr::Column(Column::from_name(key));
    let cond = k.clone().gt_eq(lit(lo));
    if hi == i64::MAX {
        cond
    } else {
        cond.and(k.lt(lit(hi)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ranges_cover_every_value_once() {
        let ctx = SessionContext::new();
        let df = ctx
            .sql("SELECT value AS k FROM generate_series(-7, 100)")
            .await
            .unwrap();
        let ranges = key_ranges(&df, "k", 4).await.unwrap();
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[0].0, i64::MIN);
        assert_eq!(ranges[3].1, i64::MAX);
        let mut total = 0;
        for r in &ranges {
            let n = df
                .clone()
                .filter(range_filter("k", *r))
                .unwrap()
                .count()
                .await
                .unwrap();
            assert!(n > 20, "{r:?}: {n} rows");
            total += n;
        }
        assert_eq!(total, 108);
        // Fewer distinct values than slices: one range per value at most.
        let one = ctx.sql("SELECT 5 AS k").await.unwrap();
        assert_eq!(
            key_ranges(&one, "k", 8).await.unwrap(),
            vec![(i64::MIN, i64::MAX)]
        );
    }

    #[test]
    fn no_memory_limit_means_one_slice() {
        let ctx = SessionContext::new();
        assert_eq!(slices_for(&ctx, u64::MAX / 2), 1);
    }
}
