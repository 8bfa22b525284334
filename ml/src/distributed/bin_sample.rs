//! `sluice_bin_sample(value, row_id, rate)`: the row sample that
//! [`crate::BinEdges::fit`] draws, as a mergeable aggregate.
//!
//! A row is kept when `unit(hash2(0x5eed, 0, row_id)) < rate`, exactly the
//! test the local fit applies to row `row_id` (its 0-based position in the
//! training matrix), so the union of the partitions' samples is the local
//! fit's sample and [`feature_bins`] gives the same edges as
//! [`crate::BinEdges::fit`] bit for bit. The state is the list of kept
//! non-missing values; partial states merge by concatenation; the state is
//! bounded by the sample size (`rate × rows`), not by the data size.

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::datatypes::{DataType, FieldRef, Float64Type, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature};

use super::common::{f64_list, f64_list_state, f64_list_type, for_each_f64_list, function_struct};

use crate::binning::FeatureBins;
use crate::sampling::{hash2, unit};

/// Seed of the binning sample (the one [`crate::BinEdges::fit`] uses).
pub const BIN_SAMPLE_SEED: u64 = 0x5eed;

/// Whether row `row_id` is in the binning sample at `rate` (`>= 1` keeps all).
#[inline]
pub fn keep_row(row_id: u64, rate: f64) -> bool {
    rate >= 1.0 || unit(hash2(BIN_SAMPLE_SEED, 0, row_id)) < rate
}

/// The same test as a bound on `sluice_row_hash(BIN_SAMPLE_SEED, 0,
/// row_id)`: row `r` is kept at `rate` exactly when its hash is below the
/// bound (`None`: `rate >= 1` keeps every row). A query filters the sample
/// rows with it once per row, so `sluice_bin_sample` (at rate 1) sees only
/// them instead of hashing every row once per feature.
pub fn keep_bound(rate: f64) -> Option<u64> {
    // unit(h) < rate  <=>  (h >> 11) < rate * 2^53 (exact: h >> 11 < 2^53)
    //                 <=>  (h >> 11) < ceil(rate * 2^53)  <=>  h < that << 11.
    (rate < 1.0).then(|| ((rate.max(0.0) * (1u64 << 53) as f64).ceil() as u64) << 11)
}

/// The sampling rate [`crate::BinEdges::fit`] uses for `n_rows` rows and a
/// sample of `sample_rows`.
pub fn sample_rate(n_rows: usize, sample_rows: usize) -> f64 {
    if n_rows > sample_rows {
        sample_rows as f64 / n_rows as f64
    } else {
        1.0
    }
}

/// Bin edges from a merged sample (the driver's last step).
pub fn feature_bins(values: Vec<f64>, max_bins: usize) -> FeatureBins {
    FeatureBins::from_values(values, max_bins)
}

function_struct!(
    /// The `sluice_bin_sample` aggregate; arguments are coerced to (Float64, Int64, Float64).
    BinSampleFunc
);

impl AggregateUDFImpl for BinSampleFunc {
    fn name(&self) -> &str {
        "sluice_bin_sample"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return exec_err!(
                "sluice_bin_sample expects (value, row_id, rate), got {} arguments",
                arg_types.len()
            );
        }
        Ok(vec![DataType::Float64, DataType::Int64, DataType::Float64])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(f64_list_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(f64_list_state(args.name, "sample"))
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<BinSampleAccumulator>::default())
    }
}

/// Accumulates the kept values of one group.
#[derive(Debug, Default)]
pub struct BinSampleAccumulator {
    values: Vec<f64>,
}

/// The kernel: appends the kept, non-missing values of a batch to `out`.
pub fn sample_batch(
    values: &Float64Array,
    row_ids: &arrow::array::Int64Array,
    rates: &Float64Array,
    out: &mut Vec<f64>,
) {
    for i in 0..values.len() {
        if values.is_null(i) || row_ids.is_null(i) || rates.is_null(i) {
            continue;
        }
        let v = values.value(i);
        if v.is_nan() {
            continue;
        }
        if keep_row(row_ids.value(i) as u64, rates.value(i)) {
            out.push(v);
        }
    }
}

impl Accumulator for BinSampleAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values.len() != 3 {
            return exec_err!(
                "sluice_bin_sample expects 3 arguments, got {}",
                values.len()
            );
        }
        sample_batch(
            values[0].as_primitive::<Float64Type>(),
            values[1].as_primitive::<Int64Type>(),
            values[2].as_primitive::<Float64Type>(),
            &mut self.values,
        );
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for_each_f64_list(&states[0], |part| {
            self.values.extend(part.iter().flatten());
            Ok(())
        })
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![f64_list(&self.values)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(f64_list(&self.values))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn keeps_exactly_the_local_fit_sample() {
        let rate = 0.3;
        let vals = Float64Array::from((0..1000).map(|i| i as f64).collect::<Vec<_>>());
        let ids = Int64Array::from((0..1000).collect::<Vec<i64>>());
        let rates = Float64Array::from(vec![rate; 1000]);
        let mut out = Vec::new();
        sample_batch(&vals, &ids, &rates, &mut out);
        let expected: Vec<f64> = (0..1000u64)
            .filter(|&r| unit(hash2(0x5eed, 0, r)) < rate)
            .map(|r| r as f64)
            .collect();
        assert_eq!(out, expected);
        assert!(out.len() > 200 && out.len() < 400, "{}", out.len());
    }

    #[test]
    fn the_hash_bound_keeps_the_same_rows() {
        for rate in [
            0.0,
            1e-9,
            0.01,
            0.037,
            0.3,
            0.5,
            0.999_999,
            1.0 - f64::EPSILON,
        ] {
            let bound = keep_bound(rate).unwrap();
            for r in 0..20_000u64 {
                let h = hash2(BIN_SAMPLE_SEED, 0, r);
                assert_eq!(h < bound, keep_row(r, rate), "rate {rate} row {r}");
            }
        }
        // Boundary hashes: the last kept and the first dropped.
        let rate = 0.25;
        let bound = keep_bound(rate).unwrap();
        assert!(unit(bound - 1) < rate && unit(bound) >= rate);
        assert_eq!(keep_bound(1.0), None);
    }

    #[test]
    fn merged_partials_equal_one_pass_and_nulls_nans_are_skipped() {
        let vals = Float64Array::from(vec![Some(1.0), None, Some(f64::NAN), Some(4.0), Some(5.0)]);
        let ids = Int64Array::from(vec![0, 1, 2, 3, 4]);
        let rates = Float64Array::from(vec![1.0; 5]);
        let mut a = BinSampleAccumulator::default();
        a.update_batch(&[
            Arc::new(vals.slice(0, 2)) as ArrayRef,
            Arc::new(ids.slice(0, 2)) as ArrayRef,
            Arc::new(rates.slice(0, 2)) as ArrayRef,
        ])
        .unwrap();
        let mut b = BinSampleAccumulator::default();
        b.update_batch(&[
            Arc::new(vals.slice(2, 3)) as ArrayRef,
            Arc::new(ids.slice(2, 3)) as ArrayRef,
            Arc::new(rates.slice(2, 3)) as ArrayRef,
        ])
        .unwrap();
        let sb = b.state().unwrap()[0].to_array().unwrap();
        a.merge_batch(&[sb]).unwrap();
        assert_eq!(a.values, vec![1.0, 4.0, 5.0]);
    }
}
