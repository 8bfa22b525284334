//! `sluice_value_bounds(spec, key, value)`: the contract's value check of
//! one raw column as a pass-through projection inside the scan.
//!
//! Returns `value` unchanged; the first row whose value lies outside
//! `[min, max]` (NaN and infinities included; nulls never break it) fails
//! the query with an execution error naming the table, the key and value
//! and the bound, marked with [`BOUNDS_MARKER`] so the caller can replace
//! it with the error of the engine's `ingest::checks::first_violation`, which also
//! names the file. A projection keeps the join's plan (and its row
//! estimates) as without checks, and costs one comparison per value of a
//! batch already in memory: no extra pass over the table.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, TimeUnit};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    lit, ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use serde::{Deserialize, Serialize};

/// The function's SQL name.
pub const VALUE_BOUNDS_UDF: &str = "sluice_value_bounds";

/// Part of every error of the function: the contract's value bounds broke.
pub const BOUNDS_MARKER: &str = "breaks the contract's value bounds";

/// What one call checks (the function's first argument, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundsSpec {
    /// Raw table, for the message.
    pub table: String,
    /// Key column name, for the message.
    pub key: String,
    /// The checked column.
    pub column: String,
    /// Lowest allowed value (timestamps: µs since the epoch).
    pub min: f64,
    /// Highest allowed value (timestamps: µs since the epoch).
    pub max: f64,
    /// How the bound reads in the message (`must lie in [-90, 90]`).
    pub rule: String,
}

/// The `sluice_value_bounds` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ValueBoundsFunc {
    signature: Signature,
}

impl Default for ValueBoundsFunc {
    fn default() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

/// The UDF, for registration.
pub fn value_bounds_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ValueBoundsFunc::default())
}

/// `sluice_value_bounds(spec, key, value) AS <column>`.
pub fn value_bounds(spec: &BoundsSpec) -> Expr {
    let col = |n: &str| Expr::Column(datafusion::common::Column::from_name(n));
    Arc::new(value_bounds_udf())
        .call(vec![
            lit(serde_json::to_string(spec).unwrap_or_default()),
            col(&spec.key),
            col(&spec.column),
        ])
        .alias(&spec.column)
}

/// The first row of `value` outside `spec`'s bounds: (row, value as text).
fn first_break(spec: &BoundsSpec, value: &dyn Array) -> DfResult<Option<(usize, String)>> {
    let (values, ts) = match value.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => (
            arrow::compute::cast(
                &arrow::compute::cast(value, &DataType::Int64)?,
                &DataType::Float64,
            )?,
            true,
        ),
        _ => (arrow::compute::cast(value, &DataType::Float64)?, false),
    };
    let v = values.as_primitive::<Float64Type>();
    for i in 0..v.len() {
        if v.is_null(i) {
            continue;
        }
        let x = v.value(i);
        if !(x >= spec.min && x <= spec.max) {
            let shown = if ts {
                chrono::DateTime::from_timestamp_micros(x as i64)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .unwrap_or_else(|| x.to_string())
            } else {
                format!("{x:?}")
            };
            return Ok(Some((i, shown)));
        }
    }
    Ok(None)
}

impl ScalarUDFImpl for ValueBoundsFunc {
    fn name(&self) -> &str {
        VALUE_BOUNDS_UDF
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types.get(2) {
            Some(t) => Ok(t.clone()),
            None => exec_err!("{VALUE_BOUNDS_UDF} takes (spec, key, value)"),
        }
    }
    /// The checked column's type and nullability (a not-null contract
    /// column stays not null).
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        match args.arg_fields.get(2) {
            Some(f) => Ok(Arc::new(Field::new(
                self.name(),
                f.data_type().clone(),
                f.is_nullable(),
            ))),
            None => exec_err!("{VALUE_BOUNDS_UDF} takes (spec, key, value)"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let [spec, key, value]: [ColumnarValue; 3] = match args.args.try_into() {
            Ok(a) => a,
            Err(_) => return exec_err!("{VALUE_BOUNDS_UDF} takes (spec, key, value)"),
        };
        let spec: BoundsSpec = match &spec {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(s)))
            | ColumnarValue::Scalar(ScalarValue::Utf8View(Some(s)))
            | ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(s))) => serde_json::from_str(s)
                .map_err(|e| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "{VALUE_BOUNDS_UDF}: bad spec: {e}"
                    ))
                })?,
            _ => return exec_err!("{VALUE_BOUNDS_UDF}: the spec must be a text literal"),
        };
        let array = value.to_array(n)?;
        if let Some((row, shown)) = first_break(&spec, array.as_ref())? {
            let key = key.to_array(n)?;
            let key = arrow::compute::cast(&key, &DataType::Int64)?;
            let k = key.as_primitive::<Int64Type>();
            let k = if k.is_valid(row) {
                k.value(row).to_string()
            } else {
                "null".to_string()
            };
            return exec_err!(
                "raw/{}: {} = {k}: {}={shown} (`{}` {}): the row {BOUNDS_MARKER}",
                spec.table,
                spec.key,
                spec.column,
                spec.column,
                spec.rule
            );
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    #[test]
    fn nan_infinity_and_outliers_break_nulls_do_not() {
        let spec = BoundsSpec {
            table: "locations".into(),
            key: "sample_id".into(),
            column: "latitude".into(),
            min: -90.0,
            max: 90.0,
            rule: "must lie in [-90, 90]".into(),
        };
        let at = |v: Vec<Option<f64>>| {
            first_break(&spec, &Float64Array::from(v))
                .unwrap()
                .map(|(i, _)| i)
        };
        assert_eq!(at(vec![Some(45.0), None, Some(-90.0), Some(90.0)]), None);
        assert_eq!(at(vec![Some(45.0), None, Some(123.0)]), Some(2));
        assert_eq!(at(vec![Some(f64::NAN)]), Some(0));
        assert_eq!(at(vec![None, Some(f64::NEG_INFINITY)]), Some(1));
    }
}
