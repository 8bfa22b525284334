//! Random forest: bootstrap weights per (row, tree) from a hash, trees grown
//! level-synchronously in batches that share one histogram request per level.

use crate::binning::BinnedMatrix;
use crate::error::Result;
use crate::histogram::{LocalHistogramSource, Targets};
use crate::learner::{grow_trees_checked, AltMinInstances, GrowParams, TreeJob};
use crate::params::RfParams;
use crate::progress::{emit, Progress, TrainEvent};
use crate::sampling::{hash2, row_weight};
use crate::tree::Tree;

/// Histogram memory budget of one level of one batch of trees (local source).
const LEVEL_HIST_BUDGET: usize = 64 << 20;

/// Grows `p.num_trees` trees on `rows` of `binned`; leaf values are
/// P(class 1). Checks `alts` (see [`AltMinInstances`]) on every tree.
pub(crate) fn fit_forest(
    p: &RfParams,
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
    progress: Progress<'_>,
    alts: Option<&mut AltMinInstances>,
) -> Result<Vec<Tree>> {
    let all: Vec<usize> = (0..p.num_trees).collect();
    grow_forest_trees(p, binned, y, rows, &all, progress, alts)
}

/// Grows the trees of ensemble indices `trees` (ascending) of the forest
/// `p` on `rows`: each tree exactly as [`fit_forest`] grows it (its
/// bootstrap weights and feature draws depend on its index only), so a
/// grid search regrows only the trees an alternative
/// `minInstancesPerNode` changes. `alts` is checked with the batch's first
/// index as offset, so it needs `trees` contiguous.
pub(crate) fn grow_forest_trees(
    p: &RfParams,
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
    trees: &[usize],
    progress: Progress<'_>,
    mut alts: Option<&mut AltMinInstances>,
) -> Result<Vec<Tree>> {
    let nf = binned.n_features();
    let gp = GrowParams::forest(p, nf);
    let weighted = p.bootstrap || p.subsampling_rate < 1.0;
    let hist_bytes = binned.n_bins().iter().map(|&b| b as usize).sum::<usize>() * 24;
    let widest_level = 1usize << p.max_depth.saturating_sub(1).min(20);
    let batch =
        (LEVEL_HIST_BUDGET / (hist_bytes * widest_level).max(1)).clamp(1, trees.len().max(1));
    let source = LocalHistogramSource::new(binned);
    let mut out = Vec::with_capacity(trees.len());
    for chunk in trees.chunks(batch) {
        let weights: Vec<Option<Vec<u8>>> = chunk
            .iter()
            .map(|&t| {
                weighted.then(|| {
                    let mut w = vec![0u8; binned.n_rows()];
                    for &r in rows {
                        w[r as usize] =
                            row_weight(p.seed, t as u64, r as u64, p.bootstrap, p.subsampling_rate);
                    }
                    w
                })
            })
            .collect();
        let jobs: Vec<TreeJob<'_>> = chunk
            .iter()
            .zip(&weights)
            .map(|(&t, w)| TreeJob {
                targets: Targets::Labels {
                    y,
                    weights: w.as_deref(),
                },
                rows: match w {
                    Some(w) => rows
                        .iter()
                        .copied()
                        .filter(|&r| w[r as usize] > 0)
                        .collect(),
                    None => rows.to_vec(),
                },
                seed: hash2(p.seed, 0xf0e5, t as u64),
            })
            .collect();
        if let Some(a) = alts.as_deref_mut() {
            a.tree_offset = chunk[0];
        }
        out.extend(grow_trees_checked(
            &source,
            binned,
            &gp,
            &jobs,
            alts.as_deref_mut(),
        )?);
        emit(
            progress,
            TrainEvent::TreesBuilt {
                done: out.len(),
                total: trees.len(),
            },
        );
    }
    Ok(out)
}
