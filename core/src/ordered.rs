//! `sluice_keys_ordered(key)`: proves a key column unique without a hash
//! table when the table is stored in key order.
//!
//! Each partial accumulator sees one scan partition's rows in stream order
//! and cuts them into strictly increasing runs, keeping each run's first and
//! last key; a run goes on across a batch boundary only when the keys are
//! consecutive (`last + 1`), so a table whose files are each sorted gives
//! about one run per file or per batch, whatever order the files are read in
//! and however they are spread over partitions. The final merge sorts all
//! runs and checks that no two overlap. The result is `true` only when the
//! runs are disjoint, which proves that no key occurs twice; `false` means
//! "not proven" (an unsorted table, more than 100,000 runs, a null key, or a
//! real duplicate), and the caller falls back to a `GROUP BY key` that names
//! the duplicates. Cost: one pass over one `Int64` column; the state is the
//! list of runs.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// The function's SQL name.
pub const KEYS_ORDERED_UDAF: &str = "sluice_keys_ordered";

/// The `sluice_keys_ordered` aggregate (one `Int64` argument, `Boolean` result).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KeysOrderedFunc {
    signature: Signature,
}

impl Default for KeysOrderedFunc {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

/// The UDAF, for registration.
pub fn keys_ordered_udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(KeysOrderedFunc::default())
}

/// The item field of the state's list of run bounds.
fn bound_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Int64, true))
}

impl AggregateUDFImpl for KeysOrderedFunc {
    fn name(&self) -> &str {
        KEYS_ORDERED_UDAF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "ordered"),
                DataType::Boolean,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "intervals"),
                DataType::List(bound_field()),
                true,
            )),
        ])
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(KeysOrderedAccumulator::default()))
    }
}

/// Most runs kept before giving up (a table whose files are each sorted
/// has one run per file, or fewer).
const MAX_RUNS: usize = 100_000;

/// Strictly increasing runs of keys, `[first, last]` each: the runs of one
/// partition (while updating) or of all partitions (while merging).
#[derive(Debug)]
pub struct KeysOrderedAccumulator {
    /// `false` once a null key was seen or there were too many runs.
    ordered: bool,
    /// Closed runs (and runs merged from other partitions).
    runs: Vec<(i64, i64)>,
    /// The run being extended by this accumulator's updates.
    current: Option<(i64, i64)>,
}

impl Default for KeysOrderedAccumulator {
    fn default() -> Self {
        Self {
            ordered: true,
            runs: Vec::new(),
            current: None,
        }
    }
}

impl KeysOrderedAccumulator {
    fn intervals(&self) -> Vec<(i64, i64)> {
        let mut v = self.runs.clone();
        v.extend(self.current);
        v
    }

    fn close_run(&mut self, next: i64) {
        if let Some(run) = self.current.replace((next, next)) {
            self.runs.push(run);
            if self.runs.len() > MAX_RUNS {
                self.ordered = false;
                self.runs = Vec::new();
                self.current = None;
            }
        }
    }
}

/// Splits one batch of `keys` into strictly increasing runs. The batch
/// continues the current run only when its first key directly follows the
/// run's last (`last + 1`): batches of one partition may come from files far
/// apart in key space (files are spread over partitions in any order), and a
/// run must not span a gap that another partition's keys may fill.
fn extend_runs(acc: &mut KeysOrderedAccumulator, keys: &[i64]) {
    let mut i = 0;
    while i < keys.len() && acc.ordered {
        let continues = |c: (i64, i64)| {
            if i == 0 {
                c.1.checked_add(1) == Some(keys[0])
            } else {
                keys[i] > c.1
            }
        };
        let (first, mut last) = match acc.current {
            Some(c) if continues(c) => c,
            _ => {
                acc.close_run(keys[i]);
                if !acc.ordered {
                    return;
                }
                let k = keys[i];
                i += 1;
                (k, k)
            }
        };
        // Extend the run as far as the keys keep increasing.
        while i < keys.len() && keys[i] > last {
            last = keys[i];
            i += 1;
        }
        acc.current = Some((first, last));
    }
}

impl Accumulator for KeysOrderedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(col) = values.first() else {
            return exec_err!("{KEYS_ORDERED_UDAF}: expects one argument");
        };
        let keys = col.as_primitive::<Int64Type>();
        if keys.is_empty() || !self.ordered {
            return Ok(());
        }
        if keys.null_count() > 0 {
            // A null key cannot be proven unique here; the GROUP BY check
            // (and the schema's non-null key rule) deal with it.
            self.ordered = false;
            return Ok(());
        }
        extend_runs(self, keys.values());
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [ordered, intervals] = states else {
            return exec_err!("{KEYS_ORDERED_UDAF}: expects two state columns");
        };
        let ordered = ordered.as_boolean();
        let intervals = intervals.as_list::<i32>();
        for r in 0..ordered.len() {
            if !ordered.is_valid(r) || !ordered.value(r) {
                self.ordered = false;
            }
            if self.ordered && intervals.is_valid(r) {
                let bounds = intervals.value(r);
                let bounds = bounds.as_primitive::<Int64Type>();
                for pair in bounds.values().chunks_exact(2) {
                    self.runs.push((pair[0], pair[1]));
                }
            }
        }
        if !self.ordered {
            self.runs = Vec::new();
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let flat: Vec<i64> = self.intervals().iter().flat_map(|&(a, b)| [a, b]).collect();
        let values = Int64Array::from(flat);
        let list = ListArray::new(
            bound_field(),
            OffsetBuffer::from_lengths([values.len()]),
            Arc::new(values),
            None,
        );
        Ok(vec![
            ScalarValue::Boolean(Some(self.ordered)),
            ScalarValue::List(Arc::new(list)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if !self.ordered {
            return Ok(ScalarValue::Boolean(Some(false)));
        }
        let mut v = self.intervals();
        v.sort_unstable();
        let disjoint = v.windows(2).all(|w| w[0].1 < w[1].0);
        Ok(ScalarValue::Boolean(Some(disjoint)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.runs.capacity() * 16
    }
}

/// Whether the `key` column of `df` is proven unique by its storage order
/// (see the module docs); `false` means "not proven".
pub async fn keys_proven_unique(df: &datafusion::prelude::DataFrame, key: &str) -> Result<bool> {
    Ok(keys_proven_unique_counting(df, key, None).await?.0)
}

/// [`keys_proven_unique`], and in the same pass the number of rows where
/// `count_where` is true (0 without it): the inference ingest counts the
/// rows breaking the contract's value bounds this way, without a second
/// scan of the table.
pub async fn keys_proven_unique_counting(
    df: &datafusion::prelude::DataFrame,
    key: &str,
    count_where: Option<datafusion::logical_expr::Expr>,
) -> Result<(bool, u64)> {
    use datafusion::functions_aggregate::expr_fn::sum;
    use datafusion::logical_expr::{cast, Expr};
    let f = keys_ordered_udaf().call(vec![Expr::Column(datafusion::common::Column::from_name(
        key,
    ))]);
    let mut aggs = vec![f.alias("ok")];
    if let Some(e) = count_where {
        aggs.push(sum(cast(e, DataType::Int64)).alias("n"));
    }
    let batches = df.clone().aggregate(vec![], aggs)?.collect().await?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok((true, 0));
    };
    let a: &BooleanArray = b.column(0).as_boolean();
    let n = if b.num_columns() > 1 {
        let c = b.column(1).as_primitive::<Int64Type>();
        if c.is_valid(0) {
            c.value(0).max(0) as u64
        } else {
            0
        }
    } else {
        0
    };
    Ok((a.is_valid(0) && a.value(0), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// A table of `sample_id` with one partition per slice.
    async fn proven(parts: &[&[i64]]) -> bool {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "sample_id",
            DataType::Int64,
            false,
        )]));
        let partitions: Vec<Vec<RecordBatch>> = parts
            .iter()
            .map(|p| {
                // Two batches per partition so the carry-over between
                // batches is exercised.
                let mid = p.len() / 2;
                [&p[..mid], &p[mid..]]
                    .iter()
                    .map(|s| {
                        RecordBatch::try_new(
                            Arc::clone(&schema),
                            vec![Arc::new(Int64Array::from(s.to_vec()))],
                        )
                        .unwrap()
                    })
                    .collect()
            })
            .collect();
        let ctx = SessionContext::new();
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(Arc::clone(&schema), partitions).unwrap()),
        )
        .unwrap();
        let df = ctx.table("t").await.unwrap();
        keys_proven_unique(&df, "sample_id").await.unwrap()
    }

    #[tokio::test]
    async fn ordered_disjoint_partitions_are_proven_unique() {
        assert!(proven(&[&[1, 2, 5, 9], &[10, 11, 20]]).await);
        assert!(
            proven(&[&[20, 21, 22, 1, 2, 3], &[10, 11]]).await,
            "sorted files read in any order"
        );
        assert!(
            proven(&[&[1, 2, 7, 8], &[4, 5]]).await,
            "a partition's batches straddle another partition's keys"
        );
        assert!(
            proven(&[&[10, 11, 20], &[1, 2, 5, 9]]).await,
            "partition order is free"
        );
        assert!(proven(&[&[], &[3]]).await);
    }

    #[tokio::test]
    async fn duplicates_and_disorder_are_not_proven() {
        assert!(!proven(&[&[1, 2, 2, 3]]).await, "duplicate inside a batch");
        assert!(
            !proven(&[&[1, 2, 3, 3, 4, 5]]).await,
            "duplicate across batches"
        );
        assert!(
            !proven(&[&[1, 2, 9], &[9, 10]]).await,
            "touching intervals share a key"
        );
        assert!(
            !proven(&[&[1, 5, 9], &[3, 5]]).await,
            "a key in two partitions"
        );
        assert!(
            proven(&[&[1, 5, 9], &[3, 4]]).await,
            "interleaved but distinct"
        );
        assert!(!proven(&[&[3, 2, 1, 1]]).await, "descending with a repeat");
        assert!(!proven(&[&[4, 5, 6, 5]]).await, "a later run overlaps");
    }

    #[test]
    fn runs_split_at_every_non_increase() {
        let mut acc = KeysOrderedAccumulator::default();
        extend_runs(&mut acc, &[5, 6, 7, 1, 2]);
        extend_runs(&mut acc, &[3, 10, 10, 11]);
        assert_eq!(acc.intervals(), vec![(5, 7), (1, 10), (10, 11)]);
        let mut gap = KeysOrderedAccumulator::default();
        extend_runs(&mut gap, &[1, 2]);
        extend_runs(&mut gap, &[8, 9]);
        assert_eq!(
            gap.intervals(),
            vec![(1, 2), (8, 9)],
            "a gap between batches ends the run"
        );
    }
}
