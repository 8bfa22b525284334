//! `sluice_histogram(grad, hess, bin_0, ..., bin_{F-1})`: the gradient,
//! hessian and row-count sums per (feature, bin) of the rows of a group.
//!
//! Used with `GROUP BY node` (or `(tree, node)` for a forest) over the binned
//! table, it returns one partial [`Histogram`] per node and partition; the
//! partial states are dense `F × 256 × 3` vectors of `f64` that merge by
//! addition, so network traffic per level is nodes × features × 256 × 3
//! floats per partition, independent of the number of rows.
//! [`to_histogram`] turns the result into the ML core's [`Histogram`].

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, UInt8Array};
use arrow::datatypes::{DataType, FieldRef, Float64Type, UInt8Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature};

use super::common::{dense_sums_state, f64_list_state, f64_list_type, function_struct};

use crate::error::{MlError, Result as MlResult};
use crate::histogram::{BinStats, Histogram};

/// Bin slots per feature in the state (every `u8` bin).
pub const SLOTS: usize = 256;

function_struct!(
    /// The `sluice_histogram` aggregate; `grad`/`hess` are coerced to Float64, bins to UInt8.
    HistogramFunc
);

impl AggregateUDFImpl for HistogramFunc {
    fn name(&self) -> &str {
        "sluice_histogram"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 3 {
            return exec_err!(
                "sluice_histogram expects (grad, hess, bin_0, ...), got {} arguments",
                arg_types.len()
            );
        }
        let mut t = vec![DataType::Float64, DataType::Float64];
        t.extend(std::iter::repeat_n(DataType::UInt8, arg_types.len() - 2));
        Ok(t)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(f64_list_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(f64_list_state(args.name, "sums"))
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let n_features = acc_args.exprs.len().saturating_sub(2);
        Ok(Box::new(HistogramAccumulator::new(n_features)))
    }
}

/// Dense sums of one group: index `(feature * 256 + bin) * 3 + {0: grad, 1: hess, 2: count}`.
#[derive(Debug)]
pub struct HistogramAccumulator {
    sums: Vec<f64>,
}

impl HistogramAccumulator {
    /// An all-zero accumulator for `n_features` features.
    pub fn new(n_features: usize) -> Self {
        Self {
            sums: vec![0.0; n_features * SLOTS * 3],
        }
    }

    /// The dense sums.
    pub fn sums(&self) -> &[f64] {
        &self.sums
    }
}

/// The kernel: adds a batch's rows to `sums`. A row with a null gradient or
/// hessian is skipped; a null bin counts as missing (bin 0).
pub fn accumulate(
    sums: &mut [f64],
    grad: &Float64Array,
    hess: &Float64Array,
    bins: &[&UInt8Array],
) {
    for (j, col) in bins.iter().enumerate() {
        let base = j * SLOTS * 3;
        for i in 0..grad.len() {
            if grad.is_null(i) || hess.is_null(i) {
                continue;
            }
            let b = if col.is_null(i) {
                0
            } else {
                col.value(i) as usize
            };
            let k = base + b * 3;
            sums[k] += grad.value(i);
            sums[k + 1] += hess.value(i);
            sums[k + 2] += 1.0;
        }
    }
}

impl Accumulator for HistogramAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let nf = values.len().saturating_sub(2);
        if nf * SLOTS * 3 != self.sums.len() {
            return exec_err!(
                "sluice_histogram: {} bin columns, expected {}",
                nf,
                self.sums.len() / (SLOTS * 3)
            );
        }
        let bins: Vec<&UInt8Array> = values[2..]
            .iter()
            .map(|a| a.as_primitive::<UInt8Type>())
            .collect();
        accumulate(
            &mut self.sums,
            values[0].as_primitive::<Float64Type>(),
            values[1].as_primitive::<Float64Type>(),
            &bins,
        );
        Ok(())
    }

    dense_sums_state!("sluice_histogram");
}

/// Turns the dense result of `sluice_histogram` into a [`Histogram`] with
/// `n_bins[j]` bins for feature `j` (missing bin included). Fails when a
/// row fell in a bin the layout does not have (the binned table and the bin
/// edges disagree).
pub fn to_histogram(sums: &[f64], n_bins: &[u16]) -> MlResult<Histogram> {
    if sums.len() != n_bins.len() * SLOTS * 3 {
        return Err(MlError::Internal(format!(
            "histogram of {} values does not fit {} features",
            sums.len(),
            n_bins.len()
        )));
    }
    let mut h = Histogram::zeros(n_bins);
    for (j, &nb) in n_bins.iter().enumerate() {
        let base = j * SLOTS * 3;
        let out = h.feature_mut(j);
        for (b, c) in sums[base..base + SLOTS * 3].chunks_exact(3).enumerate() {
            let s = BinStats {
                grad: c[0],
                hess: c[1],
                count: c[2],
            };
            if let Some(o) = out.get_mut(b) {
                *o = s;
            } else if s.count != 0.0 {
                return Err(MlError::Internal(format!(
                    "feature {j}: {} rows in bin {b}, but the feature has {nb} bins",
                    s.count
                )));
            }
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn hand_checked_sums_and_merge() {
        let g = Float64Array::from(vec![Some(1.0), Some(2.0), None, Some(4.0)]);
        let h = Float64Array::from(vec![1.0, 1.0, 1.0, 0.5]);
        let b0 = UInt8Array::from(vec![Some(1), Some(2), Some(1), None]);
        let b1 = UInt8Array::from(vec![1, 1, 1, 2]);
        let mut a = HistogramAccumulator::new(2);
        a.update_batch(&[
            Arc::new(g.slice(0, 2)) as ArrayRef,
            Arc::new(h.slice(0, 2)) as ArrayRef,
            Arc::new(b0.slice(0, 2)) as ArrayRef,
            Arc::new(b1.slice(0, 2)) as ArrayRef,
        ])
        .unwrap();
        let mut b = HistogramAccumulator::new(2);
        b.update_batch(&[
            Arc::new(g.slice(2, 2)) as ArrayRef,
            Arc::new(h.slice(2, 2)) as ArrayRef,
            Arc::new(b0.slice(2, 2)) as ArrayRef,
            Arc::new(b1.slice(2, 2)) as ArrayRef,
        ])
        .unwrap();
        let state = b.state().unwrap()[0].to_array().unwrap();
        a.merge_batch(&[state]).unwrap();
        let hist = to_histogram(a.sums(), &[3, 3]).unwrap();
        let f0 = hist.feature(0);
        assert_eq!(
            f0[0],
            BinStats {
                grad: 4.0,
                hess: 0.5,
                count: 1.0
            }
        );
        assert_eq!(
            f0[1],
            BinStats {
                grad: 1.0,
                hess: 1.0,
                count: 1.0
            }
        );
        assert_eq!(
            f0[2],
            BinStats {
                grad: 2.0,
                hess: 1.0,
                count: 1.0
            }
        );
        let f1 = hist.feature(1);
        assert_eq!(
            f1[1],
            BinStats {
                grad: 3.0,
                hess: 2.0,
                count: 2.0
            }
        );
        assert_eq!(
            f1[2],
            BinStats {
                grad: 4.0,
                hess: 0.5,
                count: 1.0
            }
        );
    }

    #[test]
    fn out_of_layout_bin_is_an_error() {
        let mut sums = vec![0.0; SLOTS * 3];
        sums[5 * 3 + 2] = 1.0;
        let e = to_histogram(&sums, &[3]).unwrap_err().to_string();
        assert!(e.contains("bin 5"), "{e}");
    }
}
