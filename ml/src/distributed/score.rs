//! `sluice_score_binned(model, bin_0, ..., bin_{F-1})`: P(class 1) of rows
//! of the binned training table under a model whose bin edges binned it,
//! computed as the local grid search scores its validation folds
//! (`TrainedModel::predict_binned_rows`), so a cross-validation fold scored
//! on the executors has the local scores bit for bit. The model travels as
//! a JSON literal ([`ScoredModel`]); each process parses a literal once.

use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{Array, AsArray, Float64Array};
use arrow::datatypes::{DataType, UInt8Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl};
use serde::{Deserialize, Serialize};

use super::common::function_struct;
use crate::binning::BinnedMatrix;
use crate::model::TrainedModel;

function_struct!(
    /// The `sluice_score_binned` scalar function.
    ScoreBinnedFunc
);

/// The model argument: a model and the truncation it is scored at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredModel {
    /// The model (its bin edges binned the table).
    pub model: TrainedModel,
    /// Score the first `n_trees` trees cut at `max_depth`
    /// (`TrainedModel::truncated`), as a grid point sharing a larger forest.
    pub cut: Option<(usize, usize)>,
}

impl ScoredModel {
    /// The literal argument of `sluice_score_binned`.
    pub fn to_literal(&self) -> crate::error::Result<ScalarValue> {
        let json = serde_json::to_string(self)
            .map_err(|e| crate::error::MlError::Internal(format!("model literal: {e}")))?;
        Ok(ScalarValue::Utf8(Some(json)))
    }
}

/// Models parsed from literals, most recent last (a query scores a few
/// grid points at once).
type Parsed = Vec<(u64, Arc<TrainedModel>)>;
static PARSED: LazyLock<Mutex<Parsed>> = LazyLock::new(|| Mutex::new(Vec::new()));
const PARSED_KEPT: usize = 16;

fn parsed(json: &str) -> Result<Arc<TrainedModel>> {
    let key = xxhash_rust::xxh3::xxh3_64(json.as_bytes());
    let mut cache = PARSED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
        let hit = cache.remove(i);
        let model = hit.1.clone();
        cache.push(hit);
        return Ok(model);
    }
    let s: ScoredModel = match serde_json::from_str(json) {
        Ok(s) => s,
        Err(e) => return exec_err!("sluice_score_binned: the model does not parse: {e}"),
    };
    let model = Arc::new(match s.cut {
        Some((trees, depth)) => s.model.truncated(trees, depth),
        None => s.model,
    });
    if cache.len() >= PARSED_KEPT {
        cache.remove(0);
    }
    cache.push((key, model.clone()));
    Ok(model)
}

impl ScalarUDFImpl for ScoreBinnedFunc {
    fn name(&self) -> &str {
        "sluice_score_binned"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 2 {
            return exec_err!(
                "sluice_score_binned expects (model, bin_0, ...), got {} arguments",
                arg_types.len()
            );
        }
        let mut t = vec![DataType::Utf8];
        t.extend(std::iter::repeat_n(DataType::UInt8, arg_types.len() - 1));
        Ok(t)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let model = match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(json))) => parsed(json)?,
            _ => return exec_err!("sluice_score_binned: the model must be a non-null literal"),
        };
        let edges = &model.bin_edges().features;
        if args.args.len() - 1 != edges.len() {
            return exec_err!(
                "sluice_score_binned: {} bin columns for a model of {} features",
                args.args.len() - 1,
                edges.len()
            );
        }
        let n = args.number_rows;
        let columns = args.args[1..]
            .iter()
            .map(|a| {
                let a = a.to_array(n)?;
                let a = a.as_primitive::<UInt8Type>();
                Ok(if a.null_count() == 0 {
                    a.values().to_vec()
                } else {
                    a.iter().map(|v| v.unwrap_or(0)).collect()
                })
            })
            .collect::<Result<Vec<Vec<u8>>>>()?;
        let n_bins = edges
            .iter()
            .map(|f| (f.n_value_bins() + 1) as u16)
            .collect();
        let binned = BinnedMatrix::from_columns(columns, n_bins)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let rows: Vec<u32> = (0..n as u32).collect();
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(
            model.predict_binned_rows(&binned, &rows),
        ))))
    }
}
