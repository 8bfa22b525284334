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
/// P(class 1). Checks `alts` (see [`AltMinInstances`]).
pub(crate) fn fit_forest(
    p: &RfParams,
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
    progress: Progress<'_>,
    mut alts: Option<&mut AltMinInstances>,
) -> Result<Vec<Tree>> {
    let nf = binned.n_features();
    let gp = GrowParams::forest(p, nf);
    let weighted = p.bootstrap || p.subsampling_rate < 1.0;
    let hist_bytes = binned.n_bins().iter().map(|&b| b as usize).sum::<usize>() * 24;
    let widest_level = 1usize << p.max_depth.saturating_sub(1).min(20);
    let batch = (LEVEL_HIST_BUDGET / (hist_bytes * widest_level).max(1)).clamp(1, p.num_trees);
    let source = LocalHistogramSource::new(binned);
    let mut trees = Vec::with_capacity(p.num_trees);
    for start in (0..p.num_trees).step_by(batch) {
        let end = (start + batch).min(p.num_trees);
        let weights: Vec<Option<Vec<u8>>> = (start..end)
            .map(|t| {
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
        let jobs: Vec<TreeJob<'_>> = (start..end)
            .zip(&weights)
            .map(|(t, w)| TreeJob {
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
        trees.extend(grow_trees_checked(
            &source,
            binned,
            &gp,
            &jobs,
            alts.as_deref_mut(),
        )?);
        emit(
            progress,
            TrainEvent::TreesBuilt {
                done: end,
                total: p.num_trees,
            },
        );
    }
    Ok(trees)
}
