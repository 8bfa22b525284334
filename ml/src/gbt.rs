//! The boosting loop: binary logistic loss → gradients/hessians → tree learner.

use rayon::prelude::*;

use crate::binning::BinnedMatrix;
use crate::error::{MlError, Result};
use crate::histogram::{LocalHistogramSource, Targets};
use crate::learner::{grow_trees_with_leaf_rows, AltMinInstances, Criterion, GrowParams, TreeJob};
use crate::params::GbtParams;
use crate::progress::{emit, Progress, TrainEvent};
use crate::sampling::{hash2, unit};
use crate::tree::Tree;

/// Output of boosting: `P(1) = sigmoid(init_score + sum of tree outputs)`.
#[derive(Debug, Clone)]
pub(crate) struct Boosted {
    pub init_score: f64,
    pub trees: Vec<Tree>,
    pub best_iteration: Option<usize>,
}

#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Stratified split of `rows` into (kept, held out) by a hash of the row id.
pub(crate) fn holdout(rows: &[u32], y: &[u8], fraction: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut keep = Vec::new();
    let mut out = Vec::new();
    for class in [0u8, 1] {
        let mut members: Vec<(u64, u32)> = rows
            .iter()
            .filter(|&&r| y[r as usize] == class)
            .map(|&r| (hash2(seed, 0xfeed, r as u64), r))
            .collect();
        members.sort_unstable();
        let n_out = (members.len() as f64 * fraction).round() as usize;
        out.extend(members[..n_out].iter().map(|&(_, r)| r));
        keep.extend(members[n_out..].iter().map(|&(_, r)| r));
    }
    keep.sort_unstable();
    out.sort_unstable();
    (keep, out)
}

/// The elements of ascending `all` that are not in its ascending subset `sub`.
fn sorted_difference(all: &[u32], sub: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(all.len() - sub.len());
    let mut k = 0;
    for &r in all {
        if sub.get(k) == Some(&r) {
            k += 1;
        } else {
            out.push(r);
        }
    }
    out
}

fn log_loss_rows(scores: &[f64], y: &[u8], rows: &[u32]) -> f64 {
    let s: f64 = rows
        .par_iter()
        .map(|&r| {
            let p = sigmoid(scores[r as usize]).clamp(1e-15, 1.0 - 1e-15);
            if y[r as usize] == 1 {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    s / rows.len().max(1) as f64
}

/// Boosts on `rows` of `binned`, checking `alts` (see [`AltMinInstances`]).
pub(crate) fn fit_gbt(
    p: &GbtParams,
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
    progress: Progress<'_>,
    mut alts: Option<&mut AltMinInstances>,
) -> Result<Boosted> {
    let (train, valid) = match p.validation_fraction {
        Some(f) => holdout(rows, y, f, p.seed),
        None => (rows.to_vec(), Vec::new()),
    };
    if train.is_empty() {
        return Err(MlError::Training("no training rows".into()));
    }
    let n = binned.n_rows();
    let pos = train.iter().filter(|&&r| y[r as usize] == 1).count() as f64;
    let prior = (pos / train.len() as f64).clamp(1e-6, 1.0 - 1e-6);
    let init_score = (prior / (1.0 - prior)).ln();
    let mut scores = vec![init_score; n];
    let mut grad = vec![0f32; n];
    let mut hess = vec![0f32; n];
    let gp = GrowParams {
        max_depth: p.max_depth,
        min_instances: p.min_instances_per_node as f64,
        min_info_gain: p.min_info_gain,
        criterion: Criterion::Newton {
            lambda: p.reg_lambda,
            min_hess: p.min_hessian_per_node,
        },
        n_sub_features: p.feature_subset_strategy.n_features(
            binned.n_features(),
            false,
            p.max_iter,
        ),
    };
    let source = LocalHistogramSource::new(binned);
    let mut trees = Vec::with_capacity(p.max_iter);
    let mut best = (f64::INFINITY, 0usize);
    let mut best_iteration = None;
    let scored: Vec<u32> = if valid.is_empty() {
        train.clone()
    } else {
        let mut s = [train.as_slice(), valid.as_slice()].concat();
        s.sort_unstable();
        s
    };
    for it in 0..p.max_iter {
        let gh: Vec<(f32, f32)> = train
            .par_iter()
            .map(|&r| {
                let pr = sigmoid(scores[r as usize]);
                (
                    (pr - y[r as usize] as f64) as f32,
                    (pr * (1.0 - pr)).max(1e-16) as f32,
                )
            })
            .collect();
        for (&r, &(g, h)) in train.iter().zip(&gh) {
            grad[r as usize] = g;
            hess[r as usize] = h;
        }
        let tree_rows: Vec<u32> = if p.subsampling_rate < 1.0 {
            train
                .iter()
                .copied()
                .filter(|&r| unit(hash2(p.seed, it as u64, r as u64)) < p.subsampling_rate)
                .collect()
        } else {
            train.clone()
        };
        let job = TreeJob {
            targets: Targets::GradHess {
                grad: &grad,
                hess: &hess,
            },
            rows: tree_rows,
            seed: hash2(p.seed, 0x7ee, it as u64),
        };
        let (mut tree, leaves) = grow_trees_with_leaf_rows(
            &source,
            binned,
            &gp,
            std::slice::from_ref(&job),
            alts.as_deref_mut(),
        )?
        .pop()
        .ok_or_else(|| MlError::Internal("learner returned no tree".into()))?;
        for nd in &mut tree.nodes {
            nd.value *= p.step_size;
        }
        // The tree's own rows get their leaf's value; other scored rows
        // (validation holdout, rows left out of this round's subsample) are routed.
        for (node, leaf_rows) in &leaves {
            let v = tree.nodes[*node].value;
            for &r in leaf_rows {
                scores[r as usize] += v;
            }
        }
        if job.rows.len() < scored.len() {
            let others = sorted_difference(&scored, &job.rows);
            let deltas: Vec<f64> = others
                .par_iter()
                .map(|&r| tree.predict_binned(binned, r as usize))
                .collect();
            for (&r, d) in others.iter().zip(deltas) {
                scores[r as usize] += d;
            }
        }
        trees.push(tree);
        let mut validation_loss = None;
        if !valid.is_empty() {
            let loss = log_loss_rows(&scores, y, &valid);
            validation_loss = Some(loss);
            if loss < best.0 - 1e-12 {
                best = (loss, it + 1);
            }
        }
        emit(
            progress,
            TrainEvent::TreeBuilt {
                done: it + 1,
                total: p.max_iter,
                validation_loss,
            },
        );
        if !valid.is_empty() && it + 1 - best.1 >= p.early_stopping_rounds {
            break;
        }
    }
    if !valid.is_empty() {
        trees.truncate(best.1.max(1));
        best_iteration = Some(trees.len());
        emit(
            progress,
            TrainEvent::EarlyStopped {
                best_iteration: trees.len(),
            },
        );
    }
    Ok(Boosted {
        init_score,
        trees,
        best_iteration,
    })
}
