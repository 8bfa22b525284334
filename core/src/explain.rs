//! `sluice_explain(artefact_url, k, f1, ..., fn)`: per-row TreeSHAP
//! explanations as a DataFusion scalar function (so the predict step
//! writes them beside each prediction, embedded or on Ballista): the `k`
//! features with the largest absolute contribution, as a list of
//! `{feature, contribution}` structs, largest first. Contributions are in
//! log-odds for a GBT and in probability for a forest
//! (`sluice_ml::shap`).

use std::sync::Arc;

use arrow::array::{Float64Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::predict::{artefact_url_arg, feature_batch, load_explainer_cached};

/// The function's SQL name.
pub const EXPLAIN_UDF: &str = "sluice_explain";
/// Name of the output column the predict step writes.
pub const EXPLANATION_COLUMN: &str = "explanation";

/// The struct fields of one explanation entry.
pub fn entry_fields() -> Fields {
    Fields::from(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("contribution", DataType::Float64, false),
    ])
}

/// `List(Struct{feature, contribution})`.
pub fn explanation_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(entry_fields()),
        true,
    )))
}

/// The `sluice_explain` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExplainFunc {
    signature: Signature,
}

impl Default for ExplainFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

/// The UDF, for registration.
pub fn explain_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(ExplainFunc::default())
}

impl ScalarUDFImpl for ExplainFunc {
    fn name(&self) -> &str {
        EXPLAIN_UDF
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(explanation_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let mut it = args.args.into_iter();
        let url = artefact_url_arg(EXPLAIN_UDF, it.next())?;
        let k = match it.next() {
            Some(ColumnarValue::Scalar(s)) => match s {
                ScalarValue::Int64(Some(k)) if k > 0 => k as usize,
                ScalarValue::Int32(Some(k)) if k > 0 => k as usize,
                ScalarValue::UInt64(Some(k)) if k > 0 => k as usize,
                other => {
                    return exec_err!(
                    "{EXPLAIN_UDF}: argument 2 (k) must be a positive integer literal, got {other}"
                )
                }
            },
            _ => return exec_err!("{EXPLAIN_UDF}: argument 2 (k) must be a literal"),
        };
        let (art, explainer) = load_explainer_cached(&url)?;
        let batch = feature_batch(EXPLAIN_UDF, &url, &art, it, n)?;
        let owned = sluice_ml::matrix::FeatureMatrix::from_batches(&[batch], &art.feature_names)
            .map_err(|e| DataFusionError::Execution(format!("{EXPLAIN_UDF}: {e}")))?;
        let top = explainer
            .top_k(&owned.column_slices(), n, k)
            .map_err(|e| DataFusionError::Execution(format!("{EXPLAIN_UDF}: {e}")))?;
        let mut b = ListBuilder::new(StructBuilder::new(
            entry_fields(),
            vec![
                Box::new(StringBuilder::new()),
                Box::new(Float64Builder::new()),
            ],
        ));
        for r in 0..n {
            let sb = b.values();
            for &(j, v) in top.row(r) {
                sb.field_builder::<StringBuilder>(0)
                    .ok_or_else(|| DataFusionError::Internal("feature builder".into()))?
                    .append_value(&art.feature_names[j]);
                sb.field_builder::<Float64Builder>(1)
                    .ok_or_else(|| DataFusionError::Internal("contribution builder".into()))?
                    .append_value(v);
                sb.append(true);
            }
            b.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}
