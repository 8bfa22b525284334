//! Training entry points and the trained model with vectorized prediction.

use arrow::array::{Array, Float64Array};
use arrow::record_batch::RecordBatch;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::binning::{BinEdges, BinnedMatrix, DEFAULT_BIN_SAMPLE};
use crate::error::{MlError, Result};
use crate::forest::{fit_forest, grow_forest_trees};
use crate::gbt::{fit_gbt, fit_gbt_from, sigmoid};
use crate::learner::AltMinInstances;
use crate::matrix::{column_as_f64, FeatureMatrix};
use crate::params::ModelSpec;
use crate::progress::Progress;
use crate::tree::{FlatTree, RowBlock, RowLayout, Tree, FLAT_BLOCK, ROW_BLOCK};

/// Model family of a [`TrainedModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Gradient-boosted trees: `P(1) = sigmoid(initScore + sum of trees)`.
    Gbt,
    /// Random forest: `P(1) = mean of the trees' leaf class-1 fractions`.
    RandomForest,
}

/// A trained tree ensemble: trees, feature names and the bin edges it was trained with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainedModel {
    kind: ModelKind,
    feature_names: Vec<String>,
    bin_edges: BinEdges,
    init_score: f64,
    trees: Vec<Tree>,
    best_iteration: Option<usize>,
}

/// Importance of one feature summed over all trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureImportance {
    /// Feature name.
    pub name: String,
    /// Total split gain.
    pub gain: f64,
    /// Total gain as a share of the sum over all features (0 when no split).
    pub gain_share: f64,
    /// Number of splits on the feature.
    pub split_count: usize,
}

/// Checks labels are 0/1 and match the matrix length.
pub(crate) fn check_labels(x_rows: usize, y: &[u8]) -> Result<()> {
    if y.len() != x_rows {
        return Err(MlError::Data(format!(
            "{} labels for {} feature rows",
            y.len(),
            x_rows
        )));
    }
    if let Some(r) = y.iter().position(|&v| v > 1) {
        return Err(MlError::Data(format!(
            "label at row {r} is {}, expected 0 or 1",
            y[r]
        )));
    }
    if x_rows == 0 {
        return Err(MlError::Data("no training rows".into()));
    }
    Ok(())
}

/// Trains a model on all rows of `x` with 0/1 labels `y`.
pub fn train(spec: &ModelSpec, x: &FeatureMatrix, y: &[u8]) -> Result<TrainedModel> {
    train_with_progress(spec, x, y, None)
}

/// [`train`] reporting progress events to `progress`.
pub fn train_with_progress(
    spec: &ModelSpec,
    x: &FeatureMatrix,
    y: &[u8],
    progress: Progress<'_>,
) -> Result<TrainedModel> {
    spec.validate()?;
    check_labels(x.n_rows(), y)?;
    let edges = BinEdges::fit(x, spec.max_bins(), DEFAULT_BIN_SAMPLE)?;
    let binned = edges.transform(x)?;
    let rows: Vec<u32> = (0..x.n_rows() as u32).collect();
    fit_binned(spec, &edges, x.names(), &binned, y, &rows, progress)
}

/// Trains on `rows` of an already binned matrix (shared by folds and grid points).
pub(crate) fn fit_binned(
    spec: &ModelSpec,
    edges: &BinEdges,
    names: &[String],
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
    progress: Progress<'_>,
) -> Result<TrainedModel> {
    fit_binned_checked(spec, edges, names, binned, y, rows, progress, None)
}

/// [`fit_binned`] that also checks which alternative `minInstancesPerNode`
/// values would grow the same model ([`AltMinInstances`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_binned_checked(
    spec: &ModelSpec,
    edges: &BinEdges,
    names: &[String],
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
    progress: Progress<'_>,
    alts: Option<&mut AltMinInstances>,
) -> Result<TrainedModel> {
    spec.validate()?;
    let (kind, init_score, trees, best_iteration) = match spec {
        ModelSpec::Gbt(p) => {
            let b = fit_gbt(p, binned, y, rows, progress, alts)?;
            (ModelKind::Gbt, b.init_score, b.trees, b.best_iteration)
        }
        ModelSpec::RandomForest(p) => (
            ModelKind::RandomForest,
            0.0,
            fit_forest(p, binned, y, rows, progress, alts)?,
            None,
        ),
    };
    model_from_trees(
        kind,
        names.to_vec(),
        edges.clone(),
        init_score,
        trees,
        best_iteration,
    )
}

/// The model `spec` grows on `rows`, given `base`: the model of the same
/// spec but another `minInstancesPerNode`, fitted on the same rows, and
/// `differing`, the trees that value grows differently (ascending, from
/// [`AltMinInstances::failed`]). A forest regrows only those trees; boosting
/// replays `base`'s rounds before the first of them and goes on from there.
/// Equal to [`fit_binned`] of `spec` (tested).
#[allow(clippy::too_many_arguments)]
pub(crate) fn refit_differing(
    spec: &ModelSpec,
    base: &TrainedModel,
    differing: &[usize],
    edges: &BinEdges,
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
) -> Result<TrainedModel> {
    spec.validate()?;
    let (init_score, trees, best_iteration) = match spec {
        ModelSpec::Gbt(p) => {
            let first = differing.first().copied().unwrap_or(usize::MAX);
            let prefix = &base.trees[..first.min(base.trees.len())];
            let b = fit_gbt_from(p, binned, y, rows, prefix, None, None)?;
            (b.init_score, b.trees, b.best_iteration)
        }
        ModelSpec::RandomForest(p) => {
            let regrown = grow_forest_trees(p, binned, y, rows, differing, None, None)?;
            let mut trees = base.trees.clone();
            for (&t, tree) in differing.iter().zip(regrown) {
                let slot = trees.get_mut(t).ok_or_else(|| {
                    MlError::Internal(format!("tree {t} of a forest of {}", base.trees.len()))
                })?;
                *slot = tree;
            }
            (0.0, trees, None)
        }
    };
    model_from_trees(
        base.kind,
        base.feature_names.clone(),
        edges.clone(),
        init_score,
        trees,
        best_iteration,
    )
}

/// Assembles a model from trees grown elsewhere (the distributed trainer,
/// [`crate::distributed::trainer`]): fills every split's raw threshold from
/// the bin edges, as [`train`] does.
pub fn model_from_trees(
    kind: ModelKind,
    feature_names: Vec<String>,
    bin_edges: BinEdges,
    init_score: f64,
    mut trees: Vec<Tree>,
    best_iteration: Option<usize>,
) -> Result<TrainedModel> {
    if bin_edges.features.len() != feature_names.len() {
        return Err(MlError::Internal(format!(
            "{} bin edges for {} features",
            bin_edges.features.len(),
            feature_names.len()
        )));
    }
    for t in &mut trees {
        for n in &mut t.nodes {
            if !n.is_leaf() {
                let f = bin_edges.features.get(n.feature as usize).ok_or_else(|| {
                    MlError::Internal(format!("split on feature {} out of range", n.feature))
                })?;
                n.threshold = f.threshold(n.threshold_bin);
            }
        }
    }
    Ok(TrainedModel {
        kind,
        feature_names,
        bin_edges,
        init_score,
        trees,
        best_iteration,
    })
}

/// Rows per parallel prediction task.
const PREDICT_BLOCK: usize = 8 * FLAT_BLOCK;

impl TrainedModel {
    /// Model family.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Feature names, in the order the trees index them.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The trees.
    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// Bin edges the model was trained with.
    pub fn bin_edges(&self) -> &BinEdges {
        &self.bin_edges
    }

    /// GBT base score (log-odds of the training prior); 0 for forests.
    pub fn init_score(&self) -> f64 {
        self.init_score
    }

    /// Trees kept by early stopping, if it was on.
    pub fn best_iteration(&self) -> Option<usize> {
        self.best_iteration
    }

    /// The same model with at most `n_trees` trees, each cut at `max_depth`.
    /// A forest grown level-wise with per-node hashed feature sampling is
    /// exactly the forest a smaller grid point would have grown.
    pub fn truncated(&self, n_trees: usize, max_depth: usize) -> TrainedModel {
        TrainedModel {
            trees: self
                .trees
                .iter()
                .take(n_trees)
                .map(|t| t.truncated(max_depth))
                .collect(),
            ..self.clone()
        }
    }

    fn finish(&self, raw: f64) -> f64 {
        self.finish_n(raw, self.trees.len())
    }

    /// P(class 1) from the summed tree outputs `raw` of `n_trees` trees.
    fn finish_n(&self, raw: f64, n_trees: usize) -> f64 {
        match self.kind {
            ModelKind::Gbt => sigmoid(self.init_score + raw),
            ModelKind::RandomForest => raw / n_trees.max(1) as f64,
        }
    }

    /// P(class 1) for raw columns given in model feature order.
    pub fn predict_columns(&self, cols: &[&[f64]], n_rows: usize) -> Result<Vec<f64>> {
        if cols.len() != self.feature_names.len() {
            return Err(MlError::Data(format!(
                "{} columns given, the model has {} features",
                cols.len(),
                self.feature_names.len()
            )));
        }
        if let Some((j, c)) = cols.iter().enumerate().find(|(_, c)| c.len() != n_rows) {
            return Err(MlError::Data(format!(
                "column `{}` has {} rows, expected {n_rows}",
                self.feature_names[j],
                c.len()
            )));
        }
        // Row blocks hold only the (feature, missing direction) copies the splits read.
        let layout = RowLayout::of_trees(cols.len(), &self.trees);
        let flat: Vec<FlatTree> = self
            .trees
            .iter()
            .map(|t| FlatTree::with_layout(t, &layout))
            .collect();
        let by_rows = layout.width() > 0 && flat.iter().all(FlatTree::rows_exact);
        let mut out = vec![0.0; n_rows];
        out.par_chunks_mut(PREDICT_BLOCK)
            .enumerate()
            .for_each(|(bi, chunk)| {
                let start = bi * PREDICT_BLOCK;
                if by_rows {
                    let mut block = RowBlock::new(&layout);
                    for (k, sub) in chunk.chunks_mut(ROW_BLOCK).enumerate() {
                        block.load(cols, start + k * ROW_BLOCK, sub.len());
                        for t in &flat {
                            t.add_block_rows(&block, sub);
                        }
                    }
                } else {
                    for (k, sub) in chunk.chunks_mut(FLAT_BLOCK).enumerate() {
                        for t in &flat {
                            t.add_block(cols, start + k * FLAT_BLOCK, sub);
                        }
                    }
                }
                for v in chunk.iter_mut() {
                    *v = self.finish(*v);
                }
            });
        Ok(out)
    }

    /// P(class 1) per row; columns are looked up by feature name.
    pub fn predict_proba(&self, x: &FeatureMatrix) -> Result<Vec<f64>> {
        let cols = self
            .feature_names
            .iter()
            .map(|name| {
                x.names()
                    .iter()
                    .position(|n| n == name)
                    .map(|j| x.column(j))
                    .ok_or_else(|| {
                        MlError::Data(format!(
                            "feature `{name}` of the model is missing from the input matrix"
                        ))
                    })
            })
            .collect::<Result<Vec<&[f64]>>>()?;
        self.predict_columns(&cols, x.n_rows())
    }

    /// P(class 1) for each row of an Arrow batch; columns are looked up by
    /// feature name and may be any numeric or boolean type (nulls = missing).
    pub fn predict_proba_batch(&self, batch: &RecordBatch) -> Result<Float64Array> {
        let arrays = self
            .feature_names
            .iter()
            .map(|name| column_as_f64(batch, name))
            .collect::<Result<Vec<Float64Array>>>()?;
        // Null-free Float64 columns are used in place; others are copied with NaN for null.
        let owned: Vec<Option<Vec<f64>>> = arrays
            .iter()
            .map(|a| {
                (a.null_count() > 0).then(|| a.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            })
            .collect();
        let cols: Vec<&[f64]> = arrays
            .iter()
            .zip(&owned)
            .map(|(a, o)| o.as_deref().unwrap_or(&a.values()[..]))
            .collect();
        Ok(Float64Array::from(
            self.predict_columns(&cols, batch.num_rows())?,
        ))
    }

    /// P(class 1) for `rows` of a matrix binned with this model's edges.
    pub(crate) fn predict_binned_rows(&self, binned: &BinnedMatrix, rows: &[u32]) -> Vec<f64> {
        rows.par_iter()
            .with_min_len(1024)
            .map(|&r| {
                self.finish(
                    self.trees
                        .iter()
                        .map(|t| t.predict_binned(binned, r as usize))
                        .sum(),
                )
            })
            .collect()
    }

    /// For each `(n_trees, max_depth)` of `cuts`, exactly
    /// `self.truncated(n_trees, max_depth).predict_binned_rows(binned, rows)`,
    /// routing each row through each tree once for all cuts (grid search
    /// scores many truncations of one forest on the same validation rows).
    pub(crate) fn predict_binned_rows_truncated(
        &self,
        binned: &BinnedMatrix,
        rows: &[u32],
        cuts: &[(usize, usize)],
    ) -> Vec<Vec<f64>> {
        let n_trees = cuts
            .iter()
            .map(|c| c.0)
            .max()
            .unwrap_or(0)
            .min(self.trees.len());
        let depths = cuts.iter().map(|c| c.1).max().unwrap_or(0) + 1;
        let per_row: Vec<Vec<f64>> = rows
            .par_iter()
            .with_min_len(256)
            .map_init(
                || vec![0.0; n_trees * depths],
                |path, &r| {
                    for (t, out) in self.trees[..n_trees].iter().zip(path.chunks_mut(depths)) {
                        t.path_values_binned(binned, r as usize, out);
                    }
                    cuts.iter()
                        .map(|&(nt, d)| {
                            let nt = nt.min(n_trees);
                            let raw: f64 = path.chunks(depths).take(nt).map(|p| p[d]).sum();
                            self.finish_n(raw, nt)
                        })
                        .collect()
                },
            )
            .collect();
        (0..cuts.len())
            .map(|c| per_row.iter().map(|p| p[c]).collect())
            .collect()
    }

    /// Total split gain and split count per feature, in feature order.
    pub fn feature_importance(&self) -> Vec<FeatureImportance> {
        let mut gain = vec![0.0; self.feature_names.len()];
        let mut count = vec![0usize; self.feature_names.len()];
        for t in &self.trees {
            for n in t.nodes.iter().filter(|n| !n.is_leaf()) {
                gain[n.feature as usize] += n.gain;
                count[n.feature as usize] += 1;
            }
        }
        let total: f64 = gain.iter().sum();
        self.feature_names
            .iter()
            .enumerate()
            .map(|(j, name)| FeatureImportance {
                name: name.clone(),
                gain: gain[j],
                gain_share: if total > 0.0 { gain[j] / total } else { 0.0 },
                split_count: count[j],
            })
            .collect()
    }
}
