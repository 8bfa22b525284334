//! LightGBM's text model format (version `v4`), loadable by
//! `lightgbm.Booster(model_file=...)` and LightGBM's C API.
//!
//! Each Sluice tree becomes one LightGBM tree: split nodes are numbered
//! 0.. in Sluice's node order (the root first), leaves 0.. likewise, and a
//! child reference is a split index or `-(leaf index) - 1`. Every split is
//! numerical with missing type `NaN` (`decision_type` 8, plus 2 when missing
//! values go left), which LightGBM evaluates as Sluice does: `NaN` follows
//! the default direction, any other value goes left when `value <= threshold`.
//! Node counts are written as `leaf_count`/`internal_count` (rounded) and
//! `leaf_weight`/`internal_weight` (exact), so `shap.TreeExplainer` and
//! LightGBM's own `pred_contrib` see the covers Sluice trained with.

use std::fmt::Write;

use crate::error::{MlError, Result};
use crate::export::{check_trees, finite_threshold, trees_with_base_score};
use crate::model::{ModelKind, TrainedModel};
use crate::tree::Tree;

/// `decision_type` bit set when missing values go left.
const DEFAULT_LEFT: u8 = 2;
/// `decision_type` missing-type bits for "NaN is missing".
const MISSING_NAN: u8 = 2 << 2;

/// The model as LightGBM text.
pub fn to_text(model: &TrainedModel) -> Result<String> {
    let names = model.feature_names();
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == '='))
    {
        return Err(MlError::Export(format!(
            "feature name `{bad}` cannot be written to a LightGBM model (empty, whitespace or `=`)"
        )));
    }
    if names.is_empty() {
        return Err(MlError::Export("the model has no feature".into()));
    }
    let trees = trees_with_base_score(model);
    check_trees(model, &trees)?;
    let mut s = String::new();
    let objective = match model.kind() {
        ModelKind::Gbt => "binary sigmoid:1",
        ModelKind::RandomForest => "regression",
    };
    let infos: Vec<String> = model
        .bin_edges()
        .features
        .iter()
        .map(|f| match (f.upper_bounds.first(), f.upper_bounds.last()) {
            (Some(lo), Some(hi)) => format!("[{}:{}]", num(*lo), num(*hi)),
            _ => "none".into(),
        })
        .collect();
    let _ = writeln!(
        s,
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0"
    );
    let _ = writeln!(s, "max_feature_idx={}", names.len() - 1);
    let _ = writeln!(s, "objective={objective}");
    if model.kind() == ModelKind::RandomForest {
        let _ = writeln!(s, "average_output");
    }
    let _ = writeln!(s, "feature_names={}", names.join(" "));
    let _ = writeln!(s, "feature_infos={}", infos.join(" "));
    let blocks: Vec<String> = trees
        .iter()
        .enumerate()
        .map(|(i, t)| format!("Tree={i}\n{}\n", tree_text(t)))
        .collect();
    let sizes: Vec<String> = blocks.iter().map(|b| b.len().to_string()).collect();
    let _ = writeln!(s, "tree_sizes={}\n", sizes.join(" "));
    for b in &blocks {
        s.push_str(b);
    }
    s.push_str("end of trees\n\nfeature_importances:\n");
    let mut imp: Vec<_> = model
        .feature_importance()
        .into_iter()
        .filter(|f| f.split_count > 0)
        .collect();
    imp.sort_by_key(|b| std::cmp::Reverse(b.split_count));
    for f in imp {
        let _ = writeln!(s, "{}={}", f.name, f.split_count);
    }
    s.push_str("\npandas_categorical:null\n");
    Ok(s)
}

/// One tree's key=value block (without the `Tree=i` line).
fn tree_text(t: &Tree) -> String {
    // Index of each node among the splits or among the leaves.
    let mut index = vec![0i64; t.nodes.len()];
    let (mut n_split, mut n_leaf) = (0i64, 0i64);
    for (i, n) in t.nodes.iter().enumerate() {
        if n.is_leaf() {
            index[i] = -n_leaf - 1;
            n_leaf += 1;
        } else {
            index[i] = n_split;
            n_split += 1;
        }
    }
    let splits: Vec<_> = t.nodes.iter().filter(|n| !n.is_leaf()).collect();
    let leaves: Vec<_> = t.nodes.iter().filter(|n| n.is_leaf()).collect();
    let join = |v: Vec<String>| v.join(" ");
    let mut s = String::new();
    let _ = writeln!(s, "num_leaves={n_leaf}\nnum_cat=0");
    if !splits.is_empty() {
        let _ = writeln!(
            s,
            "split_feature={}",
            join(splits.iter().map(|n| n.feature.to_string()).collect())
        );
        let _ = writeln!(
            s,
            "split_gain={}",
            join(splits.iter().map(|n| num(n.gain)).collect())
        );
        let _ = writeln!(
            s,
            "threshold={}",
            join(
                splits
                    .iter()
                    .map(|n| num(finite_threshold(n.threshold)))
                    .collect()
            )
        );
        let _ = writeln!(
            s,
            "decision_type={}",
            join(
                splits
                    .iter()
                    .map(
                        |n| (MISSING_NAN | if n.missing_left { DEFAULT_LEFT } else { 0 })
                            .to_string()
                    )
                    .collect()
            )
        );
        let _ = writeln!(
            s,
            "left_child={}",
            join(
                splits
                    .iter()
                    .map(|n| index[n.left as usize].to_string())
                    .collect()
            )
        );
        let _ = writeln!(
            s,
            "right_child={}",
            join(
                splits
                    .iter()
                    .map(|n| index[n.right as usize].to_string())
                    .collect()
            )
        );
    }
    let _ = writeln!(
        s,
        "leaf_value={}",
        join(leaves.iter().map(|n| num(n.value)).collect())
    );
    let _ = writeln!(
        s,
        "leaf_weight={}",
        join(leaves.iter().map(|n| num(n.count)).collect())
    );
    let _ = writeln!(
        s,
        "leaf_count={}",
        join(
            leaves
                .iter()
                .map(|n| (n.count.round() as i64).to_string())
                .collect()
        )
    );
    if !splits.is_empty() {
        let _ = writeln!(
            s,
            "internal_value={}",
            join(splits.iter().map(|n| num(n.value)).collect())
        );
        let _ = writeln!(
            s,
            "internal_weight={}",
            join(splits.iter().map(|n| num(n.count)).collect())
        );
        let _ = writeln!(
            s,
            "internal_count={}",
            join(
                splits
                    .iter()
                    .map(|n| (n.count.round() as i64).to_string())
                    .collect()
            )
        );
    }
    s.push_str("is_linear=0\nshrinkage=1\n");
    s
}

/// A float in the shortest form that parses back to the same `f64`.
fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-4..1e15).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::train;
    use crate::params::{GbtParams, ModelSpec};
    use crate::FeatureMatrix;

    #[test]
    fn floats_round_trip() {
        for v in [
            0.0,
            -0.0,
            1.5,
            1e-300,
            -f64::MAX,
            0.1 + 0.2,
            123456789.123,
            7e20,
        ] {
            assert_eq!(num(v).parse::<f64>().unwrap(), v, "{}", num(v));
        }
    }

    #[test]
    fn header_and_child_encoding() {
        let x: Vec<f64> = (0..400)
            .map(|i| if i % 7 == 0 { f64::NAN } else { i as f64 })
            .collect();
        let y: Vec<u8> = (0..400).map(|i| (i >= 200) as u8).collect();
        let m = FeatureMatrix::new(vec!["x".into()], vec![x]).unwrap();
        let p = GbtParams {
            max_iter: 2,
            max_depth: 2,
            ..GbtParams::default()
        };
        let model = train(&ModelSpec::Gbt(p), &m, &y).unwrap();
        let text = to_text(&model).unwrap();
        assert!(text.starts_with("tree\nversion=v4\n"), "{text}");
        assert!(text.contains("objective=binary sigmoid:1\n"));
        assert!(text.contains("feature_names=x\n"));
        assert!(text.contains("Tree=0\nnum_leaves=") && text.contains("Tree=1\n"));
        // The first tree's root is split 0 and its children are splits or
        // encoded leaves (-1, -2, ...).
        let t0 = &model.trees()[0];
        let left: Vec<i64> = text.lines().find(|l| l.starts_with("left_child=")).unwrap()
            ["left_child=".len()..]
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(left.len(), t0.nodes.iter().filter(|n| !n.is_leaf()).count());
        assert!(left.iter().all(|&c| c != 0), "the root is nobody's child");
        // tree_sizes gives each `Tree=` block's byte length.
        let sizes: Vec<usize> = text.lines().find(|l| l.starts_with("tree_sizes=")).unwrap()
            ["tree_sizes=".len()..]
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        let start = text.find("Tree=0").unwrap();
        assert!(text[start + sizes[0]..].starts_with("Tree=1\n"));
    }

    #[test]
    fn rejects_feature_names_lightgbm_cannot_hold() {
        let m = FeatureMatrix::new(vec!["a b".into()], vec![(0..100).map(f64::from).collect()])
            .unwrap();
        let y: Vec<u8> = (0..100).map(|i| (i >= 50) as u8).collect();
        let model = train(&ModelSpec::Gbt(GbtParams::default()), &m, &y).unwrap();
        let err = to_text(&model).unwrap_err().to_string();
        assert!(err.contains("`a b`"), "{err}");
    }
}
