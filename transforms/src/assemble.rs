//! The `VectorAssembler` hand-off to the ML crate.

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::error::TransformError;

/// The feature columns of `batch`, in `feature_names` order, as Float64 arrays.
///
/// Columns already of type Float64 are shared (no copy); others are cast once
/// per column (booleans become 0/1). No per-row allocation.
pub fn assemble(
    batch: &RecordBatch,
    feature_names: &[String],
) -> Result<Vec<ArrayRef>, TransformError> {
    feature_names
        .iter()
        .map(|name| {
            let Some(col) = batch.column_by_name(name) else {
                let available: Vec<String> = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                return Err(TransformError::Data {
                    column: name.clone(),
                    message: format!(
                        "missing from the batch; available columns: [{}]",
                        available.join(", ")
                    ),
                });
            };
            let dt = col.data_type();
            if *dt == DataType::Float64 {
                return Ok(ArrayRef::clone(col));
            }
            if !(dt.is_numeric() || *dt == DataType::Boolean) {
                return Err(TransformError::Data {
                    column: name.clone(),
                    message: format!("has type {dt}, expected a numeric or boolean type"),
                });
            }
            cast(col, &DataType::Float64).map_err(|e| TransformError::Data {
                column: name.clone(),
                message: format!("cannot cast {dt} to Float64: {e}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, BooleanArray, Float64Array, Int32Array, StringArray};
    use arrow::datatypes::Float64Type;
    use std::sync::Arc;

    #[test]
    fn casts_and_shares() {
        let f: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), None]));
        let batch = RecordBatch::try_from_iter(vec![
            ("f", Arc::clone(&f)),
            ("i", Arc::new(Int32Array::from(vec![3, -1])) as ArrayRef),
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef,
            ),
            ("s", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
        ])
        .unwrap();
        let names: Vec<String> = ["b", "f", "i"].iter().map(|s| s.to_string()).collect();
        let out = assemble(&batch, &names).unwrap();
        assert_eq!(
            out[0].as_primitive::<Float64Type>().values().to_vec(),
            vec![1.0, 0.0]
        );
        assert!(
            Arc::ptr_eq(&out[1], &f),
            "Float64 column must be shared, not copied"
        );
        assert!(out[1].is_null(1));
        assert_eq!(
            out[2].as_primitive::<Float64Type>().values().to_vec(),
            vec![3.0, -1.0]
        );

        let err = assemble(&batch, &["nope".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains("available columns: [f, i, b, s]"),
            "{err}"
        );
        let err = assemble(&batch, &["s".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`s`") && err.contains("Utf8"), "{err}");
    }
}
