//! `haversine_m(lat1, lon1, lat2, lon2)`: great-circle distance in metres.
//!
//! Vectorized over Arrow `Float64` arrays and null-safe: a row is null when any
//! of its four inputs is null. Earth radius 6371 km (the data contract).

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, Float64Array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Mean earth radius in metres used by every distance feature.
pub const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// The `haversine_m` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HaversineFunc {
    signature: Signature,
}

impl Default for HaversineFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl HaversineFunc {
    /// Creates the function; arguments are coerced to Float64.
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(4, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for HaversineFunc {
    fn name(&self) -> &str {
        "haversine_m"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != 4 {
            return exec_err!(
                "haversine_m expects 4 arguments (lat1, lon1, lat2, lon2), got {}",
                args.args.len()
            );
        }
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut typed = Vec::with_capacity(4);
        for (i, a) in arrays.iter().enumerate() {
            match a.data_type() {
                DataType::Float64 => typed.push(a.as_primitive::<Float64Type>()),
                other => {
                    return exec_err!(
                        "haversine_m argument {} must be Float64, got {other}",
                        i + 1
                    )
                }
            }
        }
        let out = haversine_m_kernel(typed[0], typed[1], typed[2], typed[3]);
        if all_scalar {
            let scalar = datafusion::common::ScalarValue::try_from_array(&out, 0)?;
            return Ok(ColumnarValue::Scalar(scalar));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Haversine distance in metres between two points given in degrees.
#[inline]
pub fn haversine_m_scalar(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let phi1 = lat1.to_radians();
    let phi2 = lat2.to_radians();
    let s_dphi = ((phi2 - phi1) * 0.5).sin();
    let s_dlambda = ((lon2 - lon1).to_radians() * 0.5).sin();
    let a = s_dphi * s_dphi + phi1.cos() * phi2.cos() * s_dlambda * s_dlambda;
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// The array kernel behind `haversine_m`: element-wise distance in metres.
///
/// Computes every slot branch-free and attaches the union of the four input
/// null buffers, so the result is null exactly where any input is null.
///
/// # Panics
/// If the four arrays do not have the same length.
pub fn haversine_m_kernel(
    lat1: &Float64Array,
    lon1: &Float64Array,
    lat2: &Float64Array,
    lon2: &Float64Array,
) -> Float64Array {
    let n = lat1.len();
    assert!(
        lon1.len() == n && lat2.len() == n && lon2.len() == n,
        "haversine_m_kernel: arrays of different lengths"
    );
    let (a, b, c, d) = (
        &lat1.values()[..n],
        &lon1.values()[..n],
        &lat2.values()[..n],
        &lon2.values()[..n],
    );
    let values: Vec<f64> = a
        .iter()
        .zip(b)
        .zip(c)
        .zip(d)
        .map(|(((&la1, &lo1), &la2), &lo2)| haversine_m_scalar(la1, lo1, la2, lo2))
        .collect();
    let nulls = NullBuffer::union(
        NullBuffer::union(lat1.nulls(), lon1.nulls()).as_ref(),
        NullBuffer::union(lat2.nulls(), lon2.nulls()).as_ref(),
    );
    Float64Array::new(values.into(), nulls)
}

/// The shared `haversine_m` UDF instance.
pub fn haversine_m_udf() -> Arc<ScalarUDF> {
    static UDF: OnceLock<Arc<ScalarUDF>> = OnceLock::new();
    Arc::clone(UDF.get_or_init(|| Arc::new(ScalarUDF::new_from_impl(HaversineFunc::new()))))
}

/// Expression builder: `haversine_m(lat1, lon1, lat2, lon2)`.
pub fn haversine_m(lat1: Expr, lon1: Expr, lat2: Expr, lon2: Expr) -> Expr {
    haversine_m_udf().call(vec![lat1, lon1, lat2, lon2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        // One degree of latitude = R * pi / 180.
        let one_deg = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        assert!((haversine_m_scalar(0.0, 0.0, 1.0, 0.0) - one_deg).abs() < 1e-6);
        // One degree of longitude on the equator is the same.
        assert!((haversine_m_scalar(0.0, 0.0, 0.0, 1.0) - one_deg).abs() < 1e-6);
        assert_eq!(haversine_m_scalar(52.5, 13.4, 52.5, 13.4), 0.0);
        // Antipodes: half the circumference.
        let half = EARTH_RADIUS_M * std::f64::consts::PI;
        assert!((haversine_m_scalar(0.0, 0.0, 0.0, 180.0) - half).abs() < 1e-6);
        // Berlin (52.5200, 13.4050) -> Munich (48.1351, 11.5820): ~504 km.
        let d = haversine_m_scalar(52.52, 13.405, 48.1351, 11.582);
        assert!((d - 504_000.0).abs() < 2_000.0, "{d}");
    }

    #[test]
    fn kernel_is_null_safe() {
        let lat1 = Float64Array::from(vec![Some(0.0), None, Some(0.0), Some(0.0)]);
        let lon1 = Float64Array::from(vec![Some(0.0), Some(0.0), None, Some(0.0)]);
        let lat2 = Float64Array::from(vec![Some(1.0), Some(1.0), Some(1.0), Some(0.0)]);
        let lon2 = Float64Array::from(vec![Some(0.0), Some(0.0), Some(0.0), None]);
        let out = haversine_m_kernel(&lat1, &lon1, &lat2, &lon2);
        assert_eq!(out.len(), 4);
        assert!(out.is_valid(0));
        assert!(out.is_null(1) && out.is_null(2) && out.is_null(3));
        assert!((out.value(0) - 111_194.926_644_558_7).abs() < 1e-3);
    }

    #[test]
    fn kernel_on_empty_arrays() {
        let e = Float64Array::from(Vec::<f64>::new());
        assert_eq!(haversine_m_kernel(&e, &e, &e, &e).len(), 0);
    }
}
