//! `sluice_shift(x, k) OVER (PARTITION BY .. ORDER BY ..)`: the value `k`
//! rows before (`k > 0`, like `lag(x, k)`) or `-k` rows after (`k < 0`, like
//! `lead(x, -k)`) in the window partition; null past either end.
//!
//! DataFusion 55 evaluates its own `lag`/`lead` in the bounded window
//! operator one row at a time through `ScalarValue` (about 150 ns a row and
//! expression). This function shifts the whole partition's array at once
//! (`evaluate_all`: one slice and one concatenation), about 1 ns a row. It
//! declares no bounded execution, so DataFusion plans it with the window
//! operator that buffers its input partition: callers keep partitions small
//! (the engine runs large tables as `device_id` range slices).

use std::sync::{Arc, OnceLock};

use arrow::array::{new_null_array, Array, ArrayRef, AsArray};
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};

/// The function's SQL name.
pub const SHIFT_UDWF: &str = "sluice_shift";

/// The `sluice_shift` window function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ShiftFunc {
    signature: Signature,
}

impl Default for ShiftFunc {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The shared UDWF instance.
pub fn shift_udwf() -> Arc<WindowUDF> {
    static UDWF: OnceLock<Arc<WindowUDF>> = OnceLock::new();
    Arc::clone(UDWF.get_or_init(|| Arc::new(WindowUDF::new_from_impl(ShiftFunc::default()))))
}

impl WindowUDFImpl for ShiftFunc {
    fn name(&self) -> &str {
        SHIFT_UDWF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(ShiftEvaluator))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let Some(input) = field_args.get_input_field(0) else {
            return exec_err!("{SHIFT_UDWF} expects (value, offset)");
        };
        Ok(Arc::new(Field::new(
            field_args.name(),
            input.data_type().clone(),
            true,
        )))
    }
}

/// Shifts one whole partition.
#[derive(Debug)]
struct ShiftEvaluator;

/// `values` shifted by `k` rows (see the module docs), nulls filling in.
pub fn shift_array(values: &ArrayRef, k: i64) -> Result<ArrayRef> {
    let n = values.len();
    let s = (k.unsigned_abs() as usize).min(n);
    if s == 0 {
        return Ok(Arc::clone(values));
    }
    let nulls = new_null_array(values.data_type(), s);
    let kept = if k > 0 {
        values.slice(0, n - s)
    } else {
        values.slice(s, n - s)
    };
    let parts: [&dyn Array; 2] = if k > 0 {
        [nulls.as_ref(), kept.as_ref()]
    } else {
        [kept.as_ref(), nulls.as_ref()]
    };
    Ok(concat(&parts)?)
}

impl PartitionEvaluator for ShiftEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let [x, k] = values else {
            return exec_err!("{SHIFT_UDWF} expects (value, offset)");
        };
        if num_rows == 0 {
            return Ok(Arc::clone(x));
        }
        let k = cast(k, &DataType::Int64)?;
        let k = k.as_primitive::<Int64Type>();
        if k.is_null(0) {
            return exec_err!("{SHIFT_UDWF}: the offset must not be null");
        }
        shift_array(x, k.value(0))
    }

    fn supports_bounded_execution(&self) -> bool {
        false
    }

    fn uses_window_frame(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn ints(v: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    #[test]
    fn shifts_like_lag_and_lead() {
        let x = ints(&[Some(1), None, Some(3), Some(4)]);
        assert_eq!(
            shift_array(&x, 1).unwrap().as_ref(),
            ints(&[None, Some(1), None, Some(3)]).as_ref()
        );
        assert_eq!(
            shift_array(&x, -2).unwrap().as_ref(),
            ints(&[Some(3), Some(4), None, None]).as_ref()
        );
        assert_eq!(
            shift_array(&x, 9).unwrap().as_ref(),
            ints(&[None, None, None, None]).as_ref()
        );
        assert_eq!(shift_array(&x, 0).unwrap().as_ref(), x.as_ref());
    }
}
