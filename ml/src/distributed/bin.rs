//! `sluice_bin(value, upper_bounds)`: a raw value's bin under
//! [`FeatureBins::bin`] (0 = missing or null, `1..=n` otherwise), with the
//! feature's upper bounds passed as a literal list. Writes the binned
//! training table on the executors once; every tree, fold and grid point
//! then scans `u8` columns.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, UInt8Array};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature};

use super::common::{f64_list, f64_list_type, function_struct};
use crate::binning::FeatureBins;

function_struct!(
    /// The `sluice_bin` scalar function.
    BinFunc
);

/// The kernel: bins of `values` under `bins` (null → 0).
pub fn bin_array(values: &Float64Array, bins: &FeatureBins) -> UInt8Array {
    // Over the raw values (a null slot holds some value), then nulls to 0:
    // no per-value `Option` and no validity buffer to build.
    let mut out: Vec<u8> = values.values().iter().map(|&v| bins.bin(v)).collect();
    if let Some(nulls) = values.nulls() {
        for i in (0..out.len()).filter(|&i| nulls.is_null(i)) {
            out[i] = 0;
        }
    }
    UInt8Array::from(out)
}

/// The literal list argument of `sluice_bin` for these edges.
pub fn bounds_literal(bins: &FeatureBins) -> ScalarValue {
    f64_list(&bins.upper_bounds)
}

impl ScalarUDFImpl for BinFunc {
    fn name(&self) -> &str {
        "sluice_bin"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return exec_err!(
                "sluice_bin expects (value, upper_bounds), got {} arguments",
                arg_types.len()
            );
        }
        Ok(vec![DataType::Float64, f64_list_type()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bounds = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::List(l)) if l.len() == 1 && !l.is_null(0) => {
                let v = l.value(0);
                v.as_primitive::<Float64Type>()
                    .iter()
                    .flatten()
                    .collect::<Vec<f64>>()
            }
            _ => {
                return exec_err!(
                    "sluice_bin: upper_bounds must be a non-null literal list of Float64"
                )
            }
        };
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return exec_err!("sluice_bin: upper_bounds must be strictly ascending");
        }
        let bins = FeatureBins {
            upper_bounds: bounds,
        };
        match &args.args[0] {
            ColumnarValue::Scalar(s) => {
                let v = match s {
                    ScalarValue::Float64(v) => *v,
                    other => {
                        return exec_err!(
                            "sluice_bin: value must be Float64, got {}",
                            other.data_type()
                        )
                    }
                };
                Ok(ColumnarValue::Scalar(ScalarValue::UInt8(Some(
                    v.map_or(0, |v| bins.bin(v)),
                ))))
            }
            ColumnarValue::Array(a) => {
                if a.data_type() != &DataType::Float64 {
                    return exec_err!("sluice_bin: value must be Float64, got {}", a.data_type());
                }
                Ok(ColumnarValue::Array(Arc::new(bin_array(
                    a.as_primitive::<Float64Type>(),
                    &bins,
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_match_feature_bins() {
        let fb = FeatureBins {
            upper_bounds: vec![1.5, 2.5],
        };
        let v = Float64Array::from(vec![
            Some(1.0),
            Some(2.0),
            Some(3.0),
            None,
            Some(f64::NAN),
            Some(1.5),
        ]);
        let out = bin_array(&v, &fb);
        assert_eq!(out.values().to_vec(), vec![1, 2, 3, 0, 0, 1]);
    }
}
