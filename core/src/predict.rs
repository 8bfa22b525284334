//! `sluice_predict`: batch inference as a DataFusion scalar function, so the
//! predict step is an ordinary plan that runs embedded or on Ballista
//! executors (which register the same function from the one list).
//!
//! `sluice_predict(artefact_url, f1, ..., fn) -> Float64` loads the model
//! artefact from the lake once per process (versions are immutable, so the
//! URL is a safe cache key) and scores whole Arrow batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{ArrayRef, Float64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use object_store::ObjectStoreExt;
use sluice_ml::shap::TreeExplainer;
use sluice_ml::ModelArtefact;

/// The function's SQL name.
pub const PREDICT_UDF: &str = "sluice_predict";

/// The `sluice_predict` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PredictFunc {
    signature: Signature,
}

impl Default for PredictFunc {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

/// The UDF, for registration.
pub fn predict_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(PredictFunc::default())
}

type Cache = Mutex<HashMap<String, Arc<ModelArtefact>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The artefact URL literal that is the first argument of the model UDFs
/// (`sluice_predict`, `sluice_explain`).
pub(crate) fn artefact_url_arg(udf: &str, arg: Option<ColumnarValue>) -> DfResult<String> {
    match arg {
        Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(u))))
        | Some(ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(u))))
        | Some(ColumnarValue::Scalar(ScalarValue::Utf8View(Some(u)))) => Ok(u),
        _ => exec_err!("{udf}: the first argument must be the artefact URL literal"),
    }
}

/// The remaining arguments of a model UDF call as one batch whose columns are
/// named after the artefact's features, checked against their count.
pub(crate) fn feature_batch(
    udf: &str,
    url: &str,
    art: &ModelArtefact,
    args: impl Iterator<Item = ColumnarValue>,
    rows: usize,
) -> DfResult<RecordBatch> {
    let cols: Vec<ArrayRef> = args
        .map(|c| c.into_array(rows))
        .collect::<DfResult<Vec<_>>>()?;
    if cols.len() != art.feature_names.len() {
        return exec_err!(
            "{udf}: model {url} expects {} features, got {}",
            art.feature_names.len(),
            cols.len()
        );
    }
    let fields: Vec<Field> = art
        .feature_names
        .iter()
        .zip(&cols)
        .map(|(name, c)| Field::new(name, c.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// Loads (once per process) the artefact at `url`.
pub fn load_cached(url: &str) -> DfResult<Arc<ModelArtefact>> {
    if let Some(a) = cache().lock().map_err(|_| poisoned())?.get(url) {
        return Ok(Arc::clone(a));
    }
    let owned = url.to_string();
    // Object stores are async; run the read on a private runtime so this works
    // from any execution thread.
    let bytes = std::thread::spawn(move || -> Result<bytes::Bytes, String> {
        let u = url::Url::parse(&owned).map_err(|e| e.to_string())?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        let (store, path) = object_store::parse_url_opts(&u, env).map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let r = store.get(&path).await.map_err(|e| e.to_string())?;
            r.bytes().await.map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| DataFusionError::Execution("model loader thread panicked".into()))?
    .map_err(|e| DataFusionError::Execution(format!("cannot read model artefact {url}: {e}")))?;
    let art = ModelArtefact::from_bytes(&bytes)
        .map_err(|e| DataFusionError::Execution(format!("model artefact {url}: {e}")))?;
    let art = Arc::new(art);
    cache()
        .lock()
        .map_err(|_| poisoned())?
        .insert(url.to_string(), Arc::clone(&art));
    Ok(art)
}

type ExplainerCache = Mutex<HashMap<String, Arc<TreeExplainer>>>;

fn explainer_cache() -> &'static ExplainerCache {
    static CACHE: OnceLock<ExplainerCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The artefact at `url` ([`load_cached`]) and its TreeSHAP explainer, whose
/// leaf tables are built once per process, not per batch.
pub fn load_explainer_cached(url: &str) -> DfResult<(Arc<ModelArtefact>, Arc<TreeExplainer>)> {
    let art = load_cached(url)?;
    if let Some(e) = explainer_cache().lock().map_err(|_| poisoned())?.get(url) {
        return Ok((art, Arc::clone(e)));
    }
    // Built outside the lock; a concurrent first build of the same model is merely redundant.
    let built = Arc::new(
        TreeExplainer::new(&art.model)
            .map_err(|e| DataFusionError::Execution(format!("model artefact {url}: {e}")))?,
    );
    let e = Arc::clone(
        explainer_cache()
            .lock()
            .map_err(|_| poisoned())?
            .entry(url.to_string())
            .or_insert(built),
    );
    Ok((art, e))
}

fn poisoned() -> DataFusionError {
    DataFusionError::Internal("model cache lock poisoned".into())
}

impl ScalarUDFImpl for PredictFunc {
    fn name(&self) -> &str {
        PREDICT_UDF
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let mut it = args.args.into_iter();
        let url = artefact_url_arg(PREDICT_UDF, it.next())?;
        let art = load_cached(&url)?;
        let batch = feature_batch(PREDICT_UDF, &url, &art, it, n)?;
        let proba: Float64Array = art
            .model
            .predict_proba_batch(&batch)
            .map_err(|e| DataFusionError::Execution(format!("{PREDICT_UDF}: {e}")))?;
        Ok(ColumnarValue::Array(Arc::new(proba)))
    }
}
