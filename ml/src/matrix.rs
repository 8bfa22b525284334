//! The column-major numeric feature matrix the learners consume.

use std::sync::Arc;

use arrow::array::{Array, Float64Array};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::error::{MlError, Result};

/// Column-major feature matrix: `f64` values with `NaN` meaning missing, plus
/// stable feature names (the model looks columns up by these names).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    names: Vec<String>,
    columns: Vec<Arc<Vec<f64>>>,
    n_rows: usize,
}

impl FeatureMatrix {
    /// Builds a matrix from named columns of equal length.
    pub fn new(names: Vec<String>, columns: Vec<Vec<f64>>) -> Result<Self> {
        if names.len() != columns.len() {
            return Err(MlError::Data(format!(
                "{} feature names but {} columns",
                names.len(),
                columns.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            if !seen.insert(n.as_str()) {
                return Err(MlError::Data(format!("duplicate feature name `{n}`")));
            }
        }
        let n_rows = columns.first().map_or(0, Vec::len);
        for (n, c) in names.iter().zip(&columns) {
            if c.len() != n_rows {
                return Err(MlError::Data(format!(
                    "column `{n}` has {} rows, expected {n_rows} (the length of `{}`)",
                    c.len(),
                    names[0]
                )));
            }
        }
        Ok(Self {
            names,
            columns: columns.into_iter().map(Arc::new).collect(),
            n_rows,
        })
    }

    /// Builds a matrix from Arrow record batches: the named columns, each
    /// numeric (`Float64`/`Float32`/`Int*`/`UInt*`/`Boolean`); nulls become missing.
    pub fn from_batches(batches: &[RecordBatch], feature_names: &[String]) -> Result<Self> {
        let mut columns: Vec<Vec<f64>> = vec![Vec::new(); feature_names.len()];
        for batch in batches {
            for (name, out) in feature_names.iter().zip(columns.iter_mut()) {
                let col = column_as_f64(batch, name)?;
                out.extend(col.iter().map(|v| v.unwrap_or(f64::NAN)));
            }
        }
        Self::new(feature_names.to_vec(), columns)
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of features (columns).
    pub fn n_features(&self) -> usize {
        self.columns.len()
    }

    /// Feature names, in column order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The values of column `j` (`NaN` = missing).
    pub fn column(&self, j: usize) -> &[f64] {
        &self.columns[j]
    }

    /// All columns as slices.
    pub fn column_slices(&self) -> Vec<&[f64]> {
        self.columns.iter().map(|c| c.as_slice()).collect()
    }

    /// A new matrix holding the given rows in the given order (train/test splits).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn select_rows(&self, idx: &[usize]) -> Self {
        let columns = self
            .columns
            .iter()
            .map(|c| Arc::new(idx.iter().map(|&i| c[i]).collect::<Vec<f64>>()))
            .collect();
        Self {
            names: self.names.clone(),
            columns,
            n_rows: idx.len(),
        }
    }
}

/// Reads column `name` of `batch` as `Float64` (casting numeric and boolean types).
pub(crate) fn column_as_f64(batch: &RecordBatch, name: &str) -> Result<Float64Array> {
    let idx = batch.schema().index_of(name).map_err(|_| {
        let available: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        MlError::Data(format!(
            "feature column `{name}` not found; available columns: {}",
            available.join(", ")
        ))
    })?;
    let col = batch.column(idx);
    match col.data_type() {
        DataType::Float64 => Ok(col
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| MlError::Internal(format!("column `{name}` is not a Float64Array")))?
            .clone()),
        DataType::Float32
        | DataType::Float16
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Boolean => {
            let cast =
                arrow::compute::cast(col, &DataType::Float64).map_err(|source| MlError::Arrow {
                    column: name.to_string(),
                    source,
                })?;
            Ok(cast
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| MlError::Internal(format!("cast of `{name}` is not Float64")))?
                .clone())
        }
        other => Err(MlError::Data(format!(
            "feature column `{name}` has type {other}, expected a numeric or boolean type"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn from_batches_casts_and_maps_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Boolean, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(BooleanArray::from(vec![true, false])),
                Arc::new(StringArray::from(vec!["x", "y"])),
            ],
        )
        .unwrap();
        let m =
            FeatureMatrix::from_batches(&[batch.clone(), batch.clone()], &["b".into(), "a".into()])
                .unwrap();
        assert_eq!(m.n_rows(), 4);
        assert_eq!(m.column(0), &[1.0, 0.0, 1.0, 0.0]);
        assert_eq!(m.column(1)[0], 1.0);
        assert!(m.column(1)[1].is_nan());
        let err =
            FeatureMatrix::from_batches(std::slice::from_ref(&batch), &["s".into()]).unwrap_err();
        assert!(err.to_string().contains("`s` has type Utf8"), "{err}");
        let err = FeatureMatrix::from_batches(&[batch], &["zz".into()]).unwrap_err();
        assert!(err.to_string().contains("`zz` not found"), "{err}");
    }

    #[test]
    fn new_rejects_ragged_and_duplicates() {
        assert!(FeatureMatrix::new(vec!["a".into(), "b".into()], vec![vec![1.0], vec![]]).is_err());
        assert!(
            FeatureMatrix::new(vec!["a".into(), "a".into()], vec![vec![1.0], vec![2.0]]).is_err()
        );
        let m = FeatureMatrix::new(vec!["a".into()], vec![vec![1.0, 2.0, 3.0]]).unwrap();
        assert_eq!(m.select_rows(&[2, 0]).column(0), &[3.0, 1.0]);
    }
}
