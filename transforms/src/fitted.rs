//! Feature pipelines: the estimator ([`FeaturePipeline`]) and its fitted,
//! serializable model ([`FittedPipeline`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::DFSchema;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::{count, max, median};
use datafusion::logical_expr::{cast, EmptyRelation, LogicalPlan};
use datafusion::prelude::{ident, lit, DataFrame, SessionContext};
use serde::{Deserialize, Serialize};

use crate::error::TransformError;
use crate::plan::{
    apply_steps, assembler_features, check_params, one_hot_group_name, one_hot_names,
    placeholder_state, require, Kind, PlanCtx,
};
use crate::spec::{MedianImputerParams, OneHotEncoderParams, StringIndexerParams, TransformSpec};

/// Version of the [`FittedPipeline`] serialization format.
pub const FITTED_FORMAT_VERSION: u32 = 1;

/// Largest number of one-hot slots fitted from a plain integer column.
pub const MAX_ONE_HOT_SLOTS: i64 = 4096;

/// The labels of one indexed string column, index `i` = `labels[i]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IndexedColumn {
    /// Input column name.
    pub column: String,
    /// Labels by descending training frequency, ties alphabetical.
    pub labels: Vec<String>,
}

/// A fitted one-hot group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OneHotGroup {
    /// Input index column.
    pub input: String,
    /// Group name (what a `VectorAssembler` lists).
    pub group: String,
    /// Output columns: one per index `0..n`, then the unknown slot.
    pub columns: Vec<String>,
}

/// What a step learned in `fit`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FittedState {
    /// The step learns nothing.
    Stateless,
    /// `MedianImputer`: the value replacing nulls, per column.
    Medians {
        /// `(column, median)` in the spec's column order.
        values: Vec<(String, f64)>,
    },
    /// `StringIndexer`: labels per column.
    Labels {
        /// One entry per configured column.
        columns: Vec<IndexedColumn>,
    },
    /// `OneHotEncoder`: output columns per input.
    OneHot {
        /// One group per configured column.
        groups: Vec<OneHotGroup>,
    },
}

/// A spec with its fitted state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FittedStep {
    /// The configured transform.
    pub spec: TransformSpec,
    /// What it learned.
    pub state: FittedState,
}

/// The labels a `StringIndexer` among `prior` assigned to produce `index_column`.
pub(crate) fn indexer_labels(prior: &[FittedStep], index_column: &str) -> Option<Vec<String>> {
    prior.iter().rev().find_map(|s| match (&s.spec, &s.state) {
        (TransformSpec::StringIndexer(p), FittedState::Labels { columns }) => columns
            .iter()
            .find(|ic| format!("{}{}", ic.column, p.suffix) == index_column)
            .map(|ic| ic.labels.clone()),
        _ => None,
    })
}

/// A feature pipeline: an ordered list of transforms (the estimator).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeaturePipeline {
    /// The transforms in order of application.
    pub steps: Vec<TransformSpec>,
}

/// The reference feature chain for the data contract, as YAML (the same list
/// [`FeaturePipeline::default_contract`] returns), for configs to copy.
pub const DEFAULT_CONTRACT_YAML: &str = include_str!("default_contract.yaml");

fn fit_err(transform: &str, column: &str) -> impl FnOnce(DataFusionError) -> TransformError {
    let (transform, column) = (transform.to_string(), column.to_string());
    move |source| TransformError::Fit {
        transform,
        column,
        source,
    }
}

impl FeaturePipeline {
    /// The reference chain for the data contract (Table 7 of the thesis).
    pub fn default_contract() -> Self {
        Self::from_yaml(DEFAULT_CONTRACT_YAML).expect("the bundled default contract YAML is valid")
    }

    /// Parses a pipeline from YAML: either `{steps: [...]}` or the bare list.
    ///
    /// The document's top-level shape picks the form, so the error reported is
    /// the one of that form (an unknown key inside a bare list names the key,
    /// not "expected struct FeaturePipeline").
    pub fn from_yaml(text: &str) -> Result<Self, TransformError> {
        let err =
            |e: serde_yaml::Error| TransformError::Serde(format!("feature pipeline YAML: {e}"));
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(err)?;
        if doc.is_sequence() {
            // Re-parse the text (not `doc`) so errors keep their line and column.
            serde_yaml::from_str::<Vec<TransformSpec>>(text)
                .map(|steps| FeaturePipeline { steps })
                .map_err(err)
        } else {
            serde_yaml::from_str::<FeaturePipeline>(text).map_err(err)
        }
    }

    /// Checks every step's parameters (no data needed).
    pub fn check(&self) -> Result<(), TransformError> {
        self.steps.iter().try_for_each(check_params)
    }

    /// Fits the pipeline on training data.
    ///
    /// The whole chain is first planned against `df`'s schema (so a bad column
    /// fails before any data is read); then each fitted step runs aggregate
    /// queries over the output of the steps before it: one `median` query for a
    /// `MedianImputer`, one `GROUP BY` count per `StringIndexer` column, and a
    /// `max` query per `OneHotEncoder` input not produced by a `StringIndexer`.
    pub async fn fit(&self, df: DataFrame) -> Result<FittedPipeline, TransformError> {
        self.check()?;
        let mut dry: Vec<FittedStep> = Vec::with_capacity(self.steps.len());
        for spec in &self.steps {
            let state = placeholder_state(spec, &dry);
            dry.push(FittedStep {
                spec: spec.clone(),
                state,
            });
        }
        apply_steps(df.clone(), &dry, &mut PlanCtx::default())?;

        let mut fitted: Vec<FittedStep> = Vec::with_capacity(self.steps.len());
        for spec in &self.steps {
            let state = if spec.is_fitted() {
                let current = apply_steps(df.clone(), &fitted, &mut PlanCtx::default())?;
                match spec {
                    TransformSpec::MedianImputer(p) => fit_medians(current, p).await?,
                    TransformSpec::StringIndexer(p) => fit_labels(current, p).await?,
                    TransformSpec::OneHotEncoder(p) => fit_one_hot(current, p, &fitted).await?,
                    _ => FittedState::Stateless,
                }
            } else {
                FittedState::Stateless
            };
            fitted.push(FittedStep {
                spec: spec.clone(),
                state,
            });
        }
        Ok(FittedPipeline {
            format_version: FITTED_FORMAT_VERSION,
            steps: fitted,
        })
    }
}

async fn fit_medians(
    df: DataFrame,
    p: &MedianImputerParams,
) -> Result<FittedState, TransformError> {
    const NAME: &str = "MedianImputer";
    for c in &p.columns {
        require(df.schema(), NAME, c, Kind::Numeric)?;
    }
    let aggs = p
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| median(cast(ident(c), DataType::Float64)).alias(format!("__median_{i}")))
        .collect();
    let all = p.columns.join(", ");
    let batches = df
        .aggregate(vec![], aggs)
        .map_err(fit_err(NAME, &all))?
        .collect()
        .await
        .map_err(fit_err(NAME, &all))?;
    let mut values = Vec::with_capacity(p.columns.len());
    for (i, c) in p.columns.iter().enumerate() {
        let m = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| {
                let a = b.column(i).as_primitive_opt::<Float64Type>()?;
                a.is_valid(0).then(|| a.value(0))
            })
            .unwrap_or(p.fallback);
        values.push((c.clone(), m));
    }
    Ok(FittedState::Medians { values })
}

async fn fit_labels(df: DataFrame, p: &StringIndexerParams) -> Result<FittedState, TransformError> {
    const NAME: &str = "StringIndexer";
    let mut columns = Vec::with_capacity(p.columns.len());
    for c in &p.columns {
        require(df.schema(), NAME, c, Kind::Text)?;
        let batches = df
            .clone()
            .aggregate(
                vec![cast(ident(c), DataType::Utf8).alias("__label")],
                vec![count(lit(1i64)).alias("__n")],
            )
            .map_err(fit_err(NAME, c))?
            .collect()
            .await
            .map_err(fit_err(NAME, c))?;
        let mut counts: Vec<(i64, String)> = Vec::new();
        for b in &batches {
            let labels = b.column(0).as_string::<i32>();
            let ns = b.column(1).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                if labels.is_valid(r) {
                    counts.push((ns.value(r), labels.value(r).to_string()));
                }
            }
        }
        counts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        columns.push(IndexedColumn {
            column: c.clone(),
            labels: counts.into_iter().map(|(_, l)| l).collect(),
        });
    }
    Ok(FittedState::Labels { columns })
}

async fn fit_one_hot(
    df: DataFrame,
    p: &OneHotEncoderParams,
    prior: &[FittedStep],
) -> Result<FittedState, TransformError> {
    const NAME: &str = "OneHotEncoder";
    let mut groups = Vec::with_capacity(p.columns.len());
    for c in &p.columns {
        require(df.schema(), NAME, c, Kind::Integer)?;
        let group = one_hot_group_name(c, &p.suffix);
        let labels = match indexer_labels(prior, c) {
            Some(labels) => labels,
            None => {
                let batches = df
                    .clone()
                    .aggregate(
                        vec![],
                        vec![max(cast(ident(c), DataType::Int64)).alias("__max")],
                    )
                    .map_err(fit_err(NAME, c))?
                    .collect()
                    .await
                    .map_err(fit_err(NAME, c))?;
                let max_value = batches
                    .iter()
                    .find(|b| b.num_rows() > 0)
                    .and_then(|b| {
                        let a = b.column(0).as_primitive::<Int64Type>();
                        a.is_valid(0).then(|| a.value(0))
                    })
                    .unwrap_or(-1);
                let n = max_value.saturating_add(1).max(0);
                if n > MAX_ONE_HOT_SLOTS {
                    return Err(TransformError::Config {
                        transform: NAME.into(),
                        message: format!(
                            "column `{c}` has maximum index {max_value}; at most {MAX_ONE_HOT_SLOTS} one-hot slots are supported"
                        ),
                    });
                }
                (0..n).map(|k| k.to_string()).collect()
            }
        };
        groups.push(OneHotGroup {
            input: c.clone(),
            columns: one_hot_names(&group, &labels),
            group,
        });
    }
    Ok(FittedState::OneHot { groups })
}

/// A fitted feature pipeline (the model): specs plus learned state.
///
/// Serializable (JSON) so it can be saved inside the model artefact and
/// applied unchanged at inference time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FittedPipeline {
    /// [`FITTED_FORMAT_VERSION`] at the time of fitting.
    pub format_version: u32,
    /// The steps with their fitted state.
    pub steps: Vec<FittedStep>,
}

impl FittedPipeline {
    /// Builds the feature plan over `df`. Reads no data.
    ///
    /// With a `VectorAssembler` the output is its passthrough columns
    /// (`sample_id`, `device_id`, `ts`), the label (`indoor`) when present in
    /// the input, and the Float64 feature columns in [`Self::feature_names`]
    /// order; without one, every column.
    pub fn transform(&self, df: DataFrame) -> Result<DataFrame, TransformError> {
        if self.format_version != FITTED_FORMAT_VERSION {
            return Err(TransformError::State {
                transform: "FittedPipeline".into(),
                message: format!(
                    "format_version {} is not supported (expected {FITTED_FORMAT_VERSION})",
                    self.format_version
                ),
            });
        }
        apply_steps(df, &self.steps, &mut PlanCtx::default())
    }

    /// Whether the chain can run on disjoint slices of `column`'s values
    /// and give the same rows as on the whole table: true when every
    /// row-order-dependent step (`LagCalculator`, `LeadCalculator`)
    /// partitions by `column`; every other transform maps each row on its
    /// own, with state fixed at fit time.
    pub fn sliceable_by(&self, column: &str) -> bool {
        self.steps.iter().all(|s| match &s.spec {
            TransformSpec::LagCalculator(p) | TransformSpec::LeadCalculator(p) => {
                p.partition_by == column
            }
            _ => true,
        })
    }

    /// The feature columns of the last `VectorAssembler`, in output order
    /// (empty without one).
    pub fn feature_names(&self) -> Vec<String> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut features = Vec::new();
        for step in &self.steps {
            match (&step.spec, &step.state) {
                (TransformSpec::OneHotEncoder(_), FittedState::OneHot { groups: g }) => {
                    for group in g {
                        groups.insert(group.group.clone(), group.columns.clone());
                    }
                }
                (TransformSpec::VectorAssembler(p), _) => {
                    features = assembler_features(p, &groups);
                }
                _ => {}
            }
        }
        features
    }

    /// Plans the pipeline against `schema` (no data) and reports the first
    /// misconfigured column.
    pub fn validate(&self, schema: &DFSchema) -> Result<(), TransformError> {
        let ctx = SessionContext::new();
        let plan = LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(schema.clone()),
        });
        self.transform(DataFrame::new(ctx.state(), plan))
            .map(|_| ())
    }

    /// Serializes to pretty JSON.
    pub fn to_json(&self) -> Result<String, TransformError> {
        serde_json::to_string_pretty(self).map_err(|e| TransformError::Serde(e.to_string()))
    }

    /// Deserializes from JSON written by [`Self::to_json`].
    pub fn from_json(text: &str) -> Result<Self, TransformError> {
        serde_json::from_str(text)
            .map_err(|e| TransformError::Serde(format!("fitted pipeline JSON: {e}")))
    }
}
