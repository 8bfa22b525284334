//! `sluice_row_hash(seed, stream, row_id)`: the ML core's deterministic
//! per-row hash [`crate::sampling::hash2`] as a scalar function (`UInt64`).
//!
//! Lets a query reproduce the trainer's random row decisions on the
//! executors. The distributed GBT finds its early-stopping holdout with it:
//! per class, the `n_out`-th smallest `sluice_row_hash(seed, 65261, row_id)`
//! (`ORDER BY ... LIMIT`) is the threshold of the rows the local trainer's
//! stratified holdout picks.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, UInt64Array};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature};

use super::common::function_struct;
use crate::sampling::hash2;

function_struct!(
    /// The `sluice_row_hash` scalar function; arguments are coerced to (UInt64, UInt64, Int64).
    RowHashFunc
);

/// The kernel: `hash2(seed, stream, row)` per row id (null stays null).
pub fn row_hash_array(seed: u64, stream: u64, rows: &Int64Array) -> UInt64Array {
    rows.iter()
        .map(|r| r.map(|r| hash2(seed, stream, r as u64)))
        .collect()
}

fn scalar_u64(v: &ColumnarValue, what: &str) -> Result<u64> {
    match v {
        ColumnarValue::Scalar(ScalarValue::UInt64(Some(s))) => Ok(*s),
        ColumnarValue::Array(a) if !a.is_empty() && a.null_count() == 0 => {
            let a = a.as_primitive::<UInt64Type>();
            let s = a.value(0);
            if a.values().iter().any(|&x| x != s) {
                return exec_err!("sluice_row_hash: {what} must be constant");
            }
            Ok(s)
        }
        _ => exec_err!("sluice_row_hash: {what} must be a non-null UInt64"),
    }
}

impl ScalarUDFImpl for RowHashFunc {
    fn name(&self) -> &str {
        "sluice_row_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return exec_err!(
                "sluice_row_hash expects (seed, stream, row_id), got {} arguments",
                arg_types.len()
            );
        }
        Ok(vec![DataType::UInt64, DataType::UInt64, DataType::Int64])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let seed = scalar_u64(&args.args[0], "seed")?;
        let stream = scalar_u64(&args.args[1], "stream")?;
        match &args.args[2] {
            ColumnarValue::Scalar(ScalarValue::Int64(r)) => Ok(ColumnarValue::Scalar(
                ScalarValue::UInt64(r.map(|r| hash2(seed, stream, r as u64))),
            )),
            ColumnarValue::Array(a) if a.data_type() == &DataType::Int64 => {
                Ok(ColumnarValue::Array(Arc::new(row_hash_array(
                    seed,
                    stream,
                    a.as_primitive::<Int64Type>(),
                ))))
            }
            other => exec_err!(
                "sluice_row_hash: row_id must be Int64, got {}",
                other.data_type()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_hash2() {
        let rows = Int64Array::from(vec![Some(0), None, Some(7)]);
        let out = row_hash_array(42, 0xfeed, &rows);
        assert_eq!(out.value(0), hash2(42, 0xfeed, 0));
        assert!(out.is_null(1));
        assert_eq!(out.value(2), hash2(42, 0xfeed, 7));
    }
}
