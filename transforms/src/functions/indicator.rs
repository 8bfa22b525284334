//! `indicator_f64(x, lo, hi)`: 1.0 where `lo <= x < hi`, else 0.0 (also for a
//! null `x`); the one-hot columns.
//!
//! A `OneHotEncoder` slot `k` is `indicator_f64(idx, k, k + 1)` and the
//! unknown slot `1.0 - indicator_f64(idx, 0, n)`. Both spellings in plain
//! expressions are slow in DataFusion 55 / arrow 59: `CASE idx WHEN k THEN 1.0
//! ELSE 0.0 END` costs about 14 ns a row and `CAST((idx = k) IS TRUE AS
//! DOUBLE)` about 20 ns (arrow casts booleans to numbers row by row), against
//! about 1 ns here, times one column per category (45 in the default chain).

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, Float64Array};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The `indicator_f64` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IndicatorFunc {
    signature: Signature,
}

impl Default for IndicatorFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl IndicatorFunc {
    /// Creates the function; arguments are coerced to Int64, `lo` and `hi`
    /// must be literals.
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(3, vec![DataType::Int64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for IndicatorFunc {
    fn name(&self) -> &str {
        "indicator_f64"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [x, lo, hi] = args.args.as_slice() else {
            return exec_err!(
                "indicator_f64 expects 3 arguments (x, lo, hi), got {}",
                args.args.len()
            );
        };
        let bound = |v: &ColumnarValue, what: &str| match v {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(b))) => Ok(*b),
            other => exec_err!(
                "indicator_f64: `{what}` must be a non-null integer literal, got {:?}",
                other.data_type()
            ),
        };
        let (lo, hi) = (bound(lo, "lo")?, bound(hi, "hi")?);
        let is_scalar = matches!(x, ColumnarValue::Scalar(_));
        let arr = x.to_array(args.number_rows.max(1))?;
        let Some(a) = arr.as_primitive_opt::<Int64Type>() else {
            return exec_err!("indicator_f64: x must be Int64, got {}", arr.data_type());
        };
        let out = indicator_f64_kernel(a, lo, hi);
        if is_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The array kernel behind `indicator_f64`: 1.0 where `x` is valid and
/// `lo <= x < hi`, else 0.0. The result has no nulls.
pub fn indicator_f64_kernel(x: &arrow::array::Int64Array, lo: i64, hi: i64) -> Float64Array {
    let hit = |v: i64| f64::from(u8::from(lo <= v && v < hi));
    let values: Vec<f64> = match x.nulls().filter(|n| n.null_count() > 0) {
        None => x.values().iter().map(|&v| hit(v)).collect(),
        Some(nulls) => x
            .values()
            .iter()
            .zip(nulls.iter())
            .map(|(&v, valid)| if valid { hit(v) } else { 0.0 })
            .collect(),
    };
    Float64Array::new(values.into(), None)
}

/// The shared `indicator_f64` UDF instance.
pub fn indicator_f64_udf() -> Arc<ScalarUDF> {
    static UDF: OnceLock<Arc<ScalarUDF>> = OnceLock::new();
    Arc::clone(UDF.get_or_init(|| Arc::new(ScalarUDF::new_from_impl(IndicatorFunc::new()))))
}

/// Expression builder: `indicator_f64(x, lo, hi)`.
pub fn indicator_f64(x: Expr, lo: i64, hi: i64) -> Expr {
    use datafusion::prelude::lit;
    indicator_f64_udf().call(vec![x, lit(lo), lit(hi)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn half_open_range_and_nulls() {
        let x = Int64Array::from(vec![
            Some(-1),
            Some(0),
            Some(1),
            Some(2),
            None,
            Some(i64::MAX),
        ]);
        let out = indicator_f64_kernel(&x, 0, 2);
        assert!(out.nulls().is_none());
        assert_eq!(out.values().as_ref(), &[0.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        let one = indicator_f64_kernel(&x, 1, 2);
        assert_eq!(one.values().as_ref(), &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn sliced_and_empty() {
        let x = Int64Array::from(vec![None, Some(3), None, Some(4)]);
        let out = indicator_f64_kernel(&x.slice(1, 3), 3, 4);
        assert_eq!(out.values().as_ref(), &[1.0, 0.0, 0.0]);
        let e = Int64Array::from(Vec::<i64>::new());
        assert_eq!(indicator_f64_kernel(&e, 0, 1).len(), 0);
        assert_eq!(indicator_f64_kernel(&x, 5, 5).values().as_ref(), &[0.0; 4]);
    }
}
