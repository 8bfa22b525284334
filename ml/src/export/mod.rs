//! Model export to open formats: LightGBM's text model format and ONNX
//! (`ai.onnx.ml` tree ensembles).
//!
//! Both exports hold the trees only: the input is the model's feature vector
//! in [`TrainedModel::feature_names`] order (`NaN` = missing), exactly what
//! Sluice's own predict step scores after the feature chain. Missing values
//! follow each split's learned direction in every format.
//!
//! | Sluice | LightGBM text | ONNX |
//! |---|---|---|
//! | GBT: `sigmoid(initScore + Σ trees)` | `objective=binary sigmoid:1`, the base score folded into the first tree's leaves | `TreeEnsembleClassifier`, `post_transform: LOGISTIC`, the base score folded into the first tree |
//! | forest: mean of the trees' P(class 1) | `objective=regression` + `average_output` (the prediction is the mean of leaf values) | `TreeEnsembleClassifier`, `post_transform: NONE`, leaf weights divided by the number of trees |
//!
//! Adding a format: a module that turns a [`TrainedModel`] into bytes, a
//! variant of [`ExportFormat`], and a test that loads the file with the
//! format's reference runtime (`tests/export/`).

use std::fmt;
use std::str::FromStr;

use crate::error::{MlError, Result};
use crate::model::{ModelKind, TrainedModel};
use crate::tree::{Node, Tree};

pub mod lightgbm;
pub mod onnx;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// LightGBM's text model format (`lightgbm.Booster(model_file=...)`).
    LightGbm,
    /// ONNX with the `ai.onnx.ml` `TreeEnsembleClassifier` operator.
    Onnx,
}

impl ExportFormat {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [ExportFormat; 2] = [ExportFormat::LightGbm, ExportFormat::Onnx];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::LightGbm => "lightgbm",
            ExportFormat::Onnx => "onnx",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ExportFormat {
    type Err = MlError;

    fn from_str(s: &str) -> Result<Self> {
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                MlError::Export(format!(
                    "unknown export format `{s}`, expected one of: lightgbm, onnx"
                ))
            })
    }
}

/// Serializes `model` in `format`.
pub fn export(model: &TrainedModel, format: ExportFormat) -> Result<Vec<u8>> {
    match format {
        ExportFormat::LightGbm => Ok(lightgbm::to_text(model)?.into_bytes()),
        ExportFormat::Onnx => onnx::to_bytes(model),
    }
}

/// The model's trees with the GBT base score added to every node value of
/// the first tree (so the ensemble is a plain sum of trees), or a single
/// leaf holding the base score when the model has no tree. Forest trees are
/// returned unchanged.
pub(crate) fn trees_with_base_score(model: &TrainedModel) -> Vec<Tree> {
    let mut trees = model.trees().to_vec();
    if model.kind() == ModelKind::Gbt {
        match trees.first_mut() {
            Some(t) => t
                .nodes
                .iter_mut()
                .for_each(|n| n.value += model.init_score()),
            None => trees.push(Tree {
                nodes: vec![Node::leaf(model.init_score(), 0.0)],
            }),
        }
    }
    trees
}

/// Checks the tree structure the exporters rely on: children after their
/// parent, in range, and split features known.
pub(crate) fn check_trees(model: &TrainedModel, trees: &[Tree]) -> Result<()> {
    let n_features = model.feature_names().len();
    for (ti, t) in trees.iter().enumerate() {
        if t.nodes.is_empty() {
            return Err(MlError::Internal(format!("tree {ti} has no node")));
        }
        for (i, n) in t.nodes.iter().enumerate() {
            if n.is_leaf() {
                continue;
            }
            let (l, r) = (n.left as usize, n.right as usize);
            if l <= i || r <= i || l >= t.nodes.len() || r >= t.nodes.len() {
                return Err(MlError::Internal(format!(
                    "tree {ti} node {i}: children {l}/{r} out of order or range"
                )));
            }
            if n.feature as usize >= n_features {
                return Err(MlError::Internal(format!(
                    "tree {ti} node {i}: split on feature {} of {n_features}",
                    n.feature
                )));
            }
        }
    }
    Ok(())
}

/// A split threshold both runtimes can hold: `±inf` become `±f64::MAX`
/// (every finite value compares the same way; only an infinite feature
/// value itself could route differently).
pub(crate) fn finite_threshold(t: f64) -> f64 {
    if t == f64::INFINITY {
        f64::MAX
    } else if t == f64::NEG_INFINITY {
        -f64::MAX
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_parse_back() {
        for f in ExportFormat::ALL {
            assert_eq!(f.name().parse::<ExportFormat>().unwrap(), f);
        }
        let err = "pmml".parse::<ExportFormat>().unwrap_err().to_string();
        assert!(err.contains("pmml") && err.contains("lightgbm"), "{err}");
    }

    #[test]
    fn infinite_thresholds_become_finite() {
        assert_eq!(finite_threshold(f64::INFINITY), f64::MAX);
        assert_eq!(finite_threshold(f64::NEG_INFINITY), -f64::MAX);
        assert_eq!(finite_threshold(1.5), 1.5);
    }
}
