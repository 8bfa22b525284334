//! Hyperparameters, named and defaulted as Spark MLlib's where Spark has them.

use serde::{Deserialize, Serialize};

use crate::binning::MAX_VALUE_BINS;
use crate::error::{MlError, Result};

/// How many features each tree node considers (Spark's `featureSubsetStrategy`).
///
/// Serialized as Spark's strings: `auto`, `all`, `sqrt`, `log2`, `onethird`, a
/// fraction in `(0, 1]` such as `"0.5"`, or a count such as `"7"`.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FeatureSubsetStrategy {
    /// `all` for GBT and single trees, `sqrt` for forests (Spark's rule for classification).
    Auto,
    /// Every feature.
    All,
    /// `ceil(sqrt(n))` features.
    Sqrt,
    /// `ceil(log2(n))` features.
    Log2,
    /// `ceil(n / 3)` features.
    OneThird,
    /// `ceil(fraction * n)` features.
    Fraction(f64),
    /// A fixed number of features.
    Count(usize),
}

impl FeatureSubsetStrategy {
    /// The number of features a node considers out of `n`, for a model with `n_trees` trees
    /// (`forest` = random forest, where `auto` means `sqrt`).
    pub fn n_features(&self, n: usize, forest: bool, n_trees: usize) -> usize {
        let nf = n as f64;
        let k = match *self {
            FeatureSubsetStrategy::Auto if forest && n_trees > 1 => nf.sqrt().ceil(),
            FeatureSubsetStrategy::Auto | FeatureSubsetStrategy::All => nf,
            FeatureSubsetStrategy::Sqrt => nf.sqrt().ceil(),
            FeatureSubsetStrategy::Log2 => nf.log2().ceil().max(1.0),
            FeatureSubsetStrategy::OneThird => (nf / 3.0).ceil(),
            FeatureSubsetStrategy::Fraction(f) => (f * nf).ceil(),
            FeatureSubsetStrategy::Count(c) => c as f64,
        };
        (k as usize).clamp(1, n.max(1))
    }
}

impl TryFrom<String> for FeatureSubsetStrategy {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "all" => Self::All,
            "sqrt" => Self::Sqrt,
            "log2" => Self::Log2,
            "onethird" => Self::OneThird,
            other => {
                if let Ok(c) = other.parse::<usize>() {
                    if c == 0 {
                        return Err("featureSubsetStrategy count must be >= 1".into());
                    }
                    Self::Count(c)
                } else if let Ok(f) = other.parse::<f64>() {
                    if !(f > 0.0 && f <= 1.0) {
                        return Err(format!("featureSubsetStrategy fraction {f} not in (0, 1]"));
                    }
                    Self::Fraction(f)
                } else {
                    return Err(format!(
                        "unknown featureSubsetStrategy `{s}`, expected auto, all, sqrt, log2, onethird, a fraction in (0,1] or a count"
                    ));
                }
            }
        })
    }
}

impl From<FeatureSubsetStrategy> for String {
    fn from(s: FeatureSubsetStrategy) -> String {
        match s {
            FeatureSubsetStrategy::Auto => "auto".into(),
            FeatureSubsetStrategy::All => "all".into(),
            FeatureSubsetStrategy::Sqrt => "sqrt".into(),
            FeatureSubsetStrategy::Log2 => "log2".into(),
            FeatureSubsetStrategy::OneThird => "onethird".into(),
            FeatureSubsetStrategy::Fraction(f) => format!("{f}"),
            FeatureSubsetStrategy::Count(c) => format!("{c}"),
        }
    }
}

/// Node impurity of random-forest trees (Spark's `impurity`).
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impurity {
    /// Gini impurity `2 p (1 - p)`.
    Gini,
    /// Entropy in bits.
    Entropy,
}

/// Gradient-boosted trees with binary logistic loss.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GbtParams {
    /// Number of boosting rounds (trees). Spark default 20.
    pub max_iter: usize,
    /// Maximum tree depth (0 = a single leaf). Spark default 5.
    pub max_depth: usize,
    /// Learning rate (shrinkage of each tree). Spark default 0.1.
    pub step_size: f64,
    /// Minimum rows in each child of a split. Spark default 1.
    pub min_instances_per_node: usize,
    /// Minimum gain of a split. Spark default 0.
    pub min_info_gain: f64,
    /// Fraction of rows sampled (without replacement) per tree. Spark default 1.
    pub subsampling_rate: f64,
    /// Features considered per node. Spark default `all` for GBT.
    pub feature_subset_strategy: FeatureSubsetStrategy,
    /// L2 regularisation of leaf values (`lambda`; Spark has none). Default 0.
    pub reg_lambda: f64,
    /// Minimum hessian sum in each child (as LightGBM's `min_sum_hessian_in_leaf`). Default 1e-3.
    pub min_hessian_per_node: f64,
    /// Maximum value bins per feature (2..=255). Default 255.
    pub max_bins: usize,
    /// Fraction of training rows held out (stratified) for early stopping; `None` = no early stopping.
    pub validation_fraction: Option<f64>,
    /// Stop after this many rounds without validation log-loss improvement. Default 10.
    pub early_stopping_rounds: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for GbtParams {
    fn default() -> Self {
        Self {
            max_iter: 20,
            max_depth: 5,
            step_size: 0.1,
            min_instances_per_node: 1,
            min_info_gain: 0.0,
            subsampling_rate: 1.0,
            feature_subset_strategy: FeatureSubsetStrategy::All,
            reg_lambda: 0.0,
            min_hessian_per_node: 1e-3,
            max_bins: MAX_VALUE_BINS,
            validation_fraction: None,
            early_stopping_rounds: 10,
            seed: 42,
        }
    }
}

/// Random forest of classification trees.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RfParams {
    /// Number of trees. Spark default 20.
    pub num_trees: usize,
    /// Maximum tree depth. Spark default 5.
    pub max_depth: usize,
    /// Minimum (weighted) rows in each child of a split. Spark default 1.
    pub min_instances_per_node: usize,
    /// Minimum impurity decrease of a split. Spark default 0.
    pub min_info_gain: f64,
    /// Bootstrap rows per tree with Poisson(1) weights. Spark default true.
    pub bootstrap: bool,
    /// Node impurity. Spark default gini.
    pub impurity: Impurity,
    /// Features considered per node. Spark default `auto` (= sqrt for forests).
    pub feature_subset_strategy: FeatureSubsetStrategy,
    /// Fraction of rows sampled per tree. Spark default 1.
    pub subsampling_rate: f64,
    /// Maximum value bins per feature (2..=255). Default 255.
    pub max_bins: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for RfParams {
    fn default() -> Self {
        Self {
            num_trees: 20,
            max_depth: 5,
            min_instances_per_node: 1,
            min_info_gain: 0.0,
            bootstrap: true,
            impurity: Impurity::Gini,
            feature_subset_strategy: FeatureSubsetStrategy::Auto,
            subsampling_rate: 1.0,
            max_bins: MAX_VALUE_BINS,
            seed: 42,
        }
    }
}

/// A model to train: its family and hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ModelSpec {
    /// Gradient-boosted trees.
    #[serde(rename = "gbt")]
    Gbt(GbtParams),
    /// Random forest.
    #[serde(rename = "random_forest")]
    RandomForest(RfParams),
}

/// Largest supported tree depth.
pub const MAX_DEPTH: usize = 30;

/// Fails with a parameter error naming `param` unless `ok`.
fn require(param: &str, ok: bool, got: impl std::fmt::Display, expected: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(MlError::params(
            param,
            format!("got {got}, expected {expected}"),
        ))
    }
}

/// Checks of the tree parameters both families share.
fn validate_tree_params(
    max_depth: usize,
    min_instances_per_node: usize,
    min_info_gain: f64,
    subsampling_rate: f64,
    max_bins: usize,
) -> Result<()> {
    require(
        "maxDepth",
        max_depth <= MAX_DEPTH,
        max_depth,
        &format!("0..={MAX_DEPTH}"),
    )?;
    require(
        "minInstancesPerNode",
        min_instances_per_node >= 1,
        min_instances_per_node,
        ">= 1",
    )?;
    require("minInfoGain", min_info_gain >= 0.0, min_info_gain, ">= 0")?;
    require(
        "subsamplingRate",
        subsampling_rate > 0.0 && subsampling_rate <= 1.0,
        subsampling_rate,
        "(0, 1]",
    )?;
    require(
        "maxBins",
        (2..=MAX_VALUE_BINS).contains(&max_bins),
        max_bins,
        &format!("2..={MAX_VALUE_BINS}"),
    )
}

/// [`validate_tree_params`] of a params struct (both families use the same field names).
macro_rules! check_tree_params {
    ($p:expr) => {
        validate_tree_params(
            $p.max_depth,
            $p.min_instances_per_node,
            $p.min_info_gain,
            $p.subsampling_rate,
            $p.max_bins,
        )
    };
}

impl GbtParams {
    /// Checks every value range; the error names the parameter.
    pub fn validate(&self) -> Result<()> {
        require("maxIter", self.max_iter >= 1, self.max_iter, ">= 1")?;
        check_tree_params!(self)?;
        require(
            "stepSize",
            self.step_size > 0.0 && self.step_size <= 1.0,
            self.step_size,
            "(0, 1]",
        )?;
        require("regLambda", self.reg_lambda >= 0.0, self.reg_lambda, ">= 0")?;
        require(
            "minHessianPerNode",
            self.min_hessian_per_node >= 0.0,
            self.min_hessian_per_node,
            ">= 0",
        )?;
        if let Some(f) = self.validation_fraction {
            require(
                "validationFraction",
                f > 0.0 && f < 1.0,
                f,
                "(0, 1) or null",
            )?;
        }
        require(
            "earlyStoppingRounds",
            self.early_stopping_rounds >= 1,
            self.early_stopping_rounds,
            ">= 1",
        )
    }
}

impl RfParams {
    /// Checks every value range; the error names the parameter.
    pub fn validate(&self) -> Result<()> {
        require("numTrees", self.num_trees >= 1, self.num_trees, ">= 1")?;
        check_tree_params!(self)
    }
}

impl ModelSpec {
    /// Validates the hyperparameters.
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelSpec::Gbt(p) => p.validate(),
            ModelSpec::RandomForest(p) => p.validate(),
        }
    }

    /// `max_bins` of either family.
    pub fn max_bins(&self) -> usize {
        match self {
            ModelSpec::Gbt(p) => p.max_bins,
            ModelSpec::RandomForest(p) => p.max_bins,
        }
    }

    /// Short family name (`gbt` / `random_forest`).
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Gbt(_) => "gbt",
            ModelSpec::RandomForest(_) => "random_forest",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_defaults_and_camel_case() {
        let spec: ModelSpec =
            serde_json::from_str(r#"{"type":"gbt","maxDepth":3,"stepSize":0.2}"#).unwrap();
        let ModelSpec::Gbt(p) = spec else { panic!() };
        assert_eq!(
            (
                p.max_iter,
                p.max_depth,
                p.step_size,
                p.min_instances_per_node
            ),
            (20, 3, 0.2, 1)
        );
        let spec: ModelSpec = serde_json::from_str(
            r#"{"type":"random_forest","impurity":"entropy","featureSubsetStrategy":"onethird"}"#,
        )
        .unwrap();
        let ModelSpec::RandomForest(p) = spec else {
            panic!()
        };
        assert_eq!(p.impurity, Impurity::Entropy);
        assert_eq!(p.feature_subset_strategy.n_features(40, true, 20), 14);
        assert_eq!(FeatureSubsetStrategy::Auto.n_features(40, true, 20), 7);
        assert_eq!(FeatureSubsetStrategy::Auto.n_features(40, false, 20), 40);
        assert!(serde_json::from_str::<ModelSpec>(r#"{"type":"gbt","maxDepht":3}"#).is_err());
        let err = GbtParams {
            step_size: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("stepSize"));
    }
}
