//! Exact TreeSHAP (Lundberg, Erion & Lee 2018, Algorithm 2): per-row
//! feature contributions of a tree ensemble, path-dependent on the
//! training covers (each node's training row count).
//!
//! For a GBT the contributions are in log-odds (raw score) units:
//! `expected_value + Σ contributions = initScore + Σ trees`, the value
//! before the sigmoid. For a forest they are in probability units and
//! averaged over the trees: `expected_value + Σ contributions = P(1)`.
//! These are the values `shap.TreeExplainer` gives for the exported
//! LightGBM model (for the forest, divided by the number of trees, since
//! shap sums LightGBM trees even with `average_output`).

use rayon::prelude::*;

use crate::error::{MlError, Result};
use crate::model::{ModelKind, TrainedModel};
use crate::tree::Tree;

#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: i64,
    zero_fraction: f64,
    one_fraction: f64,
    pweight: f64,
}

fn extend_path(p: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: i64) {
    p[depth] = PathElement {
        feature,
        zero_fraction: zero,
        one_fraction: one,
        pweight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let d1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        p[i + 1].pweight += one * p[i].pweight * (i + 1) as f64 / d1;
        p[i].pweight = zero * p[i].pweight * (depth - i) as f64 / d1;
    }
}

fn unwind_path(p: &mut [PathElement], depth: usize, index: usize) {
    let one = p[index].one_fraction;
    let zero = p[index].zero_fraction;
    let mut next_one = p[depth].pweight;
    let d1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = p[i].pweight;
            p[i].pweight = next_one * d1 / ((i + 1) as f64 * one);
            next_one = tmp - p[i].pweight * zero * (depth - i) as f64 / d1;
        } else {
            p[i].pweight = p[i].pweight * d1 / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        p[i].feature = p[i + 1].feature;
        p[i].zero_fraction = p[i + 1].zero_fraction;
        p[i].one_fraction = p[i + 1].one_fraction;
    }
}

fn unwound_path_sum(p: &[PathElement], depth: usize, index: usize) -> f64 {
    let one = p[index].one_fraction;
    let zero = p[index].zero_fraction;
    let mut next_one = p[depth].pweight;
    let d1 = (depth + 1) as f64;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = next_one * d1 / ((i + 1) as f64 * one);
            total += tmp;
            next_one = p[i].pweight - tmp * zero * ((depth - i) as f64 / d1);
        } else if zero != 0.0 {
            total += (p[i].pweight / zero) / ((depth - i) as f64 / d1);
        }
    }
    total
}

/// One tree's explainer state: reusable path buffer.
struct TreeShap<'a> {
    tree: &'a Tree,
    scale: f64,
}

impl TreeShap<'_> {
    #[allow(clippy::too_many_arguments)]
    fn recurse(
        &self,
        row: &[f64],
        phi: &mut [f64],
        buf: &mut [PathElement],
        parent_off: usize,
        node: usize,
        mut depth: usize,
        parent_zero: f64,
        parent_one: f64,
        parent_feature: i64,
    ) {
        let off = parent_off + depth + 1;
        buf.copy_within(parent_off..parent_off + depth + 1, off);
        extend_path(
            &mut buf[off..],
            depth,
            parent_zero,
            parent_one,
            parent_feature,
        );
        let n = &self.tree.nodes[node];
        if n.is_leaf() {
            let p = &buf[off..];
            for i in 1..=depth {
                let w = unwound_path_sum(p, depth, i);
                let el = p[i];
                phi[el.feature as usize] +=
                    w * (el.one_fraction - el.zero_fraction) * n.value * self.scale;
            }
            return;
        }
        let v = row[n.feature as usize];
        let goes_left = v <= n.threshold || (n.missing_left && v.is_nan());
        let (hot, cold) = if goes_left {
            (n.left as usize, n.right as usize)
        } else {
            (n.right as usize, n.left as usize)
        };
        let w = n.count;
        let hot_zero = self.tree.nodes[hot].count / w;
        let cold_zero = self.tree.nodes[cold].count / w;
        let (mut in_zero, mut in_one) = (1.0, 1.0);
        let feature = n.feature as i64;
        if let Some(k) = (0..=depth).find(|&k| buf[off + k].feature == feature) {
            in_zero = buf[off + k].zero_fraction;
            in_one = buf[off + k].one_fraction;
            unwind_path(&mut buf[off..], depth, k);
            depth -= 1;
        }
        self.recurse(
            row,
            phi,
            buf,
            off,
            hot,
            depth + 1,
            hot_zero * in_zero,
            in_one,
            feature,
        );
        self.recurse(
            row,
            phi,
            buf,
            off,
            cold,
            depth + 1,
            cold_zero * in_zero,
            0.0,
            feature,
        );
    }

    /// Cover-weighted mean leaf value (the tree's expected output).
    fn expected(&self, node: usize) -> f64 {
        let n = &self.tree.nodes[node];
        if n.is_leaf() {
            return n.value;
        }
        let (l, r) = (
            &self.tree.nodes[n.left as usize],
            &self.tree.nodes[n.right as usize],
        );
        let c = l.count + r.count;
        if c <= 0.0 {
            return n.value;
        }
        (l.count * self.expected(n.left as usize) + r.count * self.expected(n.right as usize)) / c
    }
}

/// Exact SHAP values of a tree ensemble.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The model's expected output (log-odds for a GBT, P(1) for a forest).
    pub expected_value: f64,
    /// Row-major contributions: `values[r * n_features + j]`.
    pub values: Vec<f64>,
    /// Features per row.
    pub n_features: usize,
}

impl Explanation {
    /// Contributions of row `r`, in model feature order.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.values[r * self.n_features..(r + 1) * self.n_features]
    }

    /// The `k` largest contributions of row `r` by absolute value, as
    /// (feature index, contribution), largest first (ties: lower index).
    pub fn top_k(&self, r: usize, k: usize) -> Vec<(usize, f64)> {
        let mut v: Vec<(usize, f64)> = self.row(r).iter().copied().enumerate().collect();
        v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }
}

fn check_covers(model: &TrainedModel) -> Result<()> {
    for (ti, t) in model.trees().iter().enumerate() {
        for (i, n) in t.nodes.iter().enumerate() {
            if !n.is_leaf() && (n.count.is_nan() || n.count <= 0.0) {
                return Err(MlError::Data(format!(
                    "tree {ti} node {i} has no training cover: TreeSHAP needs node counts"
                )));
            }
        }
    }
    Ok(())
}

impl TrainedModel {
    /// Exact TreeSHAP contributions for raw columns in model feature order
    /// (`NaN` = missing); see the module docs for the units.
    pub fn shap_values(&self, cols: &[&[f64]], n_rows: usize) -> Result<Explanation> {
        let nf = self.feature_names().len();
        if cols.len() != nf || cols.iter().any(|c| c.len() != n_rows) {
            return Err(MlError::Data(format!(
                "{} columns given for {nf} features of {n_rows} rows",
                cols.len()
            )));
        }
        check_covers(self)?;
        let scale = match self.kind() {
            ModelKind::Gbt => 1.0,
            ModelKind::RandomForest => 1.0 / self.trees().len().max(1) as f64,
        };
        let explainers: Vec<TreeShap<'_>> = self
            .trees()
            .iter()
            .map(|tree| TreeShap { tree, scale })
            .collect();
        let mut expected_value: f64 = explainers.iter().map(|e| e.expected(0) * scale).sum();
        if self.kind() == ModelKind::Gbt {
            expected_value += self.init_score();
        }
        let max_depth = self.trees().iter().map(Tree::depth).max().unwrap_or(0);
        let buf_len = (max_depth + 2) * (max_depth + 3) / 2 + 1;
        let mut values = vec![0.0; n_rows * nf];
        values.par_chunks_mut(nf.max(1)).enumerate().for_each_init(
            || (vec![PathElement::default(); buf_len], vec![0.0; nf]),
            |(buf, row), (r, phi)| {
                for (j, c) in cols.iter().enumerate() {
                    row[j] = c[r];
                }
                for e in &explainers {
                    if e.tree.nodes.len() > 1 {
                        e.recurse(row, phi, buf, 0, 0, 0, 1.0, 1.0, -1);
                    }
                }
            },
        );
        Ok(Explanation {
            expected_value,
            values,
            n_features: nf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::train;
    use crate::params::{GbtParams, ModelSpec, RfParams};
    use crate::FeatureMatrix;

    fn data() -> (FeatureMatrix, Vec<u8>) {
        let n = 600;
        let a: Vec<f64> = (0..n)
            .map(|i| {
                if i % 11 == 0 {
                    f64::NAN
                } else {
                    (i % 37) as f64
                }
            })
            .collect();
        let b: Vec<f64> = (0..n).map(|i| ((i * 7) % 23) as f64).collect();
        let c: Vec<f64> = (0..n).map(|i| ((i * 13) % 5) as f64).collect();
        let y: Vec<u8> = (0..n)
            .map(|i| ((a[i].is_nan() || a[i] > 18.0) ^ (b[i] > 15.0 && c[i] > 2.0)) as u8)
            .collect();
        (
            FeatureMatrix::new(vec!["a".into(), "b".into(), "c".into()], vec![a, b, c]).unwrap(),
            y,
        )
    }

    /// Brute-force Shapley values of one tree with path-dependent
    /// expectations (the definition TreeSHAP computes exactly).
    fn brute_force(tree: &Tree, row: &[f64], nf: usize) -> Vec<f64> {
        fn cond(tree: &Tree, row: &[f64], set: u32, node: usize) -> f64 {
            let n = &tree.nodes[node];
            if n.is_leaf() {
                return n.value;
            }
            if set & (1 << n.feature) != 0 {
                let v = row[n.feature as usize];
                let left = v <= n.threshold || (n.missing_left && v.is_nan());
                cond(tree, row, set, if left { n.left } else { n.right } as usize)
            } else {
                let (l, r) = (&tree.nodes[n.left as usize], &tree.nodes[n.right as usize]);
                (l.count * cond(tree, row, set, n.left as usize)
                    + r.count * cond(tree, row, set, n.right as usize))
                    / n.count
            }
        }
        let fact = |k: usize| (1..=k).product::<usize>() as f64;
        (0..nf)
            .map(|j| {
                let mut phi = 0.0;
                for s in 0u32..(1 << nf) {
                    if s & (1 << j) != 0 {
                        continue;
                    }
                    let k = s.count_ones() as usize;
                    let w = fact(k) * fact(nf - k - 1) / fact(nf);
                    phi += w * (cond(tree, row, s | (1 << j), 0) - cond(tree, row, s, 0));
                }
                phi
            })
            .collect()
    }

    #[test]
    fn equals_brute_force_shapley_values_and_sums_to_the_prediction() {
        let (x, y) = data();
        for spec in [
            ModelSpec::Gbt(GbtParams {
                max_iter: 5,
                max_depth: 4,
                ..GbtParams::default()
            }),
            ModelSpec::RandomForest(RfParams {
                num_trees: 4,
                max_depth: 4,
                ..RfParams::default()
            }),
        ] {
            let model = train(&spec, &x, &y).unwrap();
            let cols = x.column_slices();
            let e = model.shap_values(&cols, x.n_rows()).unwrap();
            let proba = model.predict_proba(&x).unwrap();
            let scale = if model.kind() == ModelKind::Gbt {
                1.0
            } else {
                1.0 / model.trees().len() as f64
            };
            for r in [0usize, 11, 57, 300, 599] {
                let row: Vec<f64> = cols.iter().map(|c| c[r]).collect();
                let mut want = vec![0.0; 3];
                for t in model.trees() {
                    for (w, b) in want.iter_mut().zip(brute_force(t, &row, 3)) {
                        *w += b * scale;
                    }
                }
                for (g, w) in e.row(r).iter().zip(&want) {
                    assert!((g - w).abs() < 1e-12, "row {r}: {g} vs {w}");
                }
                let total = e.expected_value + e.row(r).iter().sum::<f64>();
                let out = match model.kind() {
                    ModelKind::Gbt => (proba[r] / (1.0 - proba[r])).ln(),
                    ModelKind::RandomForest => proba[r],
                };
                assert!((total - out).abs() < 1e-9, "row {r}: {total} vs {out}");
            }
            let top = e.top_k(11, 2);
            assert_eq!(top.len(), 2);
            assert!(top[0].1.abs() >= top[1].1.abs());
        }
    }
}
