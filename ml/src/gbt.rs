//! The boosting loop: binary logistic loss → gradients/hessians → tree learner.

use rayon::prelude::*;

use crate::binning::BinnedMatrix;
use crate::error::{MlError, Result};
use crate::grower::{LevelGrower, TreeStart};
use crate::histogram::{LocalHistogramSource, Targets};
use crate::learner::{grow_local, AltMinInstances, GrowParams};
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

/// The logistic function: `P(1)` of a margin. The one definition of the
/// local trainer, the distributed kernel and prediction.
#[inline]
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Logistic-loss gradient and hessian of a row with `margin` and label `y`.
#[inline]
pub(crate) fn grad_hess(margin: f64, y: u8) -> (f32, f32) {
    let pr = sigmoid(margin);
    ((pr - y as f64) as f32, (pr * (1.0 - pr)).max(1e-16) as f32)
}

/// Log-loss of a row with `margin` and label `y` (probabilities clamped to `[1e-15, 1 - 1e-15]`).
#[inline]
pub(crate) fn row_log_loss(margin: f64, y: u8) -> f64 {
    let p = sigmoid(margin).clamp(1e-15, 1.0 - 1e-15);
    if y == 1 {
        -p.ln()
    } else {
        -(1.0 - p).ln()
    }
}

/// Whether `row` is in round `round`'s row subsample (every row when `rate >= 1`).
#[inline]
pub(crate) fn in_subsample(seed: u64, round: u64, rate: f64, row: u64) -> bool {
    rate >= 1.0 || unit(hash2(seed, round, row)) < rate
}

/// The boosting loop, shared by the local and the distributed trainer:
/// the base score, one tree per round (grown by a [`LevelGrower`] whose
/// histograms come from memory or from the executors), shrinkage, and early
/// stopping on the validation loss the caller measures after each round.
#[derive(Debug, Clone)]
pub(crate) struct Boosting {
    p: GbtParams,
    grow: GrowParams,
    n_features: usize,
    init_score: f64,
    trees: Vec<Tree>,
    validation: bool,
    best: (f64, usize),
    losses: Vec<f64>,
    stopped: bool,
}

impl Boosting {
    /// Starts boosting on `rows` training rows with `positives` of label 1
    /// over `n_features` features; `validation`: early stopping on a holdout.
    pub(crate) fn new(
        p: &GbtParams,
        n_features: usize,
        rows: u64,
        positives: u64,
        validation: bool,
    ) -> Result<Self> {
        if rows == 0 {
            return Err(MlError::Training("no training rows".into()));
        }
        let prior = (positives as f64 / rows as f64).clamp(1e-6, 1.0 - 1e-6);
        Ok(Self {
            p: p.clone(),
            grow: GrowParams::gbt(p, n_features),
            n_features,
            init_score: (prior / (1.0 - prior)).ln(),
            trees: Vec::with_capacity(p.max_iter),
            validation,
            best: (f64::INFINITY, 0),
            losses: Vec::new(),
            stopped: false,
        })
    }

    /// The base score (log-odds of the training prior).
    pub(crate) fn init_score(&self) -> f64 {
        self.init_score
    }

    /// The finished trees (leaf values shrunk).
    pub(crate) fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// The round to grow next, `None` when boosting is over (every round
    /// grown, or stopped early).
    pub(crate) fn next_round(&self) -> Option<usize> {
        (!self.stopped && self.trees.len() < self.p.max_iter).then_some(self.trees.len())
    }

    /// The grower of round `round`'s tree, from root `rows`.
    pub(crate) fn grower<R: Default + Send + Sync>(&self, round: usize, rows: R) -> LevelGrower<R> {
        let start = TreeStart {
            index: round as u64,
            seed: hash2(self.p.seed, 0x7ee, round as u64),
            rows,
        };
        LevelGrower::new(self.grow, self.n_features, vec![start])
    }

    /// Ends a round with its grown tree (values unscaled): shrinks it and
    /// returns it as added.
    pub(crate) fn add_tree(&mut self, mut tree: Tree) -> &Tree {
        for nd in &mut tree.nodes {
            nd.value *= self.p.step_size;
        }
        self.trees.push(tree);
        self.trees.last().expect("pushed above")
    }

    /// Ends a round with a tree already shrunk (a prefix replayed from a
    /// model boosted with the same parameters).
    pub(crate) fn add_shrunk_tree(&mut self, tree: Tree) -> &Tree {
        self.trees.push(tree);
        self.trees.last().expect("pushed above")
    }

    /// Records the validation loss after the last added tree; returns true
    /// when boosting stops early.
    pub(crate) fn record_validation(&mut self, loss: f64) -> bool {
        self.losses.push(loss);
        let done = self.trees.len();
        if loss < self.best.0 - 1e-12 {
            self.best = (loss, done);
        }
        if done - self.best.1 >= self.p.early_stopping_rounds {
            self.stopped = true;
        }
        self.stopped
    }

    /// Validation losses after each round so far.
    pub(crate) fn validation_losses(&self) -> &[f64] {
        &self.losses
    }

    /// The boosted model: with a validation holdout, the trees up to the
    /// best round.
    pub(crate) fn finish(self) -> Boosted {
        let mut trees = self.trees;
        let mut best_iteration = None;
        if self.validation {
            trees.truncate(self.best.1.max(1));
            best_iteration = Some(trees.len());
        }
        Boosted {
            init_score: self.init_score,
            trees,
            best_iteration,
        }
    }
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

/// Adds `tree`'s output to the score of each of `rows`, routing every row
/// through the tree (in parallel).
fn add_routed(tree: &Tree, binned: &BinnedMatrix, rows: &[u32], scores: &mut [f64]) {
    let deltas: Vec<f64> = rows
        .par_iter()
        .map(|&r| tree.predict_binned(binned, r as usize))
        .collect();
    for (&r, d) in rows.iter().zip(deltas) {
        scores[r as usize] += d;
    }
}

fn log_loss_rows(scores: &[f64], y: &[u8], rows: &[u32]) -> f64 {
    let s: f64 = rows
        .par_iter()
        .map(|&r| row_log_loss(scores[r as usize], y[r as usize]))
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
    alts: Option<&mut AltMinInstances>,
) -> Result<Boosted> {
    fit_gbt_from(p, binned, y, rows, &[], progress, alts)
}

/// [`fit_gbt`] whose first rounds are `prefix` (shrunk trees of a model
/// boosted on the same rows whose first `prefix.len()` rounds are the same
/// under `p`): they are replayed (scores, validation losses, progress)
/// instead of grown, and boosting goes on from there. The result is the model
/// [`fit_gbt`] grows; a grid search resumes a point that differs only in
/// `minInstancesPerNode` from its first differing round.
pub(crate) fn fit_gbt_from(
    p: &GbtParams,
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
    prefix: &[Tree],
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
    let pos = train.iter().filter(|&&r| y[r as usize] == 1).count() as u64;
    let mut boost = Boosting::new(
        p,
        binned.n_features(),
        train.len() as u64,
        pos,
        !valid.is_empty(),
    )?;
    let mut scores = vec![boost.init_score(); n];
    let mut grad = vec![0f32; n];
    let mut hess = vec![0f32; n];
    let source = LocalHistogramSource::new(binned);
    let scored: Vec<u32> = if valid.is_empty() {
        train.clone()
    } else {
        let mut s = [train.as_slice(), valid.as_slice()].concat();
        s.sort_unstable();
        s
    };
    while let Some(it) = boost.next_round() {
        if let Some(shrunk) = prefix.get(it) {
            let tree = boost.add_shrunk_tree(shrunk.clone());
            add_routed(tree, binned, &scored, &mut scores);
        } else {
            let gh: Vec<(f32, f32)> = train
                .par_iter()
                .map(|&r| grad_hess(scores[r as usize], y[r as usize]))
                .collect();
            for (&r, &(g, h)) in train.iter().zip(&gh) {
                grad[r as usize] = g;
                hess[r as usize] = h;
            }
            let tree_rows: Vec<u32> = if p.subsampling_rate < 1.0 {
                train
                    .iter()
                    .copied()
                    .filter(|&r| in_subsample(p.seed, it as u64, p.subsampling_rate, r as u64))
                    .collect()
            } else {
                train.clone()
            };
            let targets = Targets::GradHess {
                grad: &grad,
                hess: &hess,
            };
            if let Some(a) = alts.as_deref_mut() {
                a.tree_offset = it;
            }
            let (tree, leaves) = grow_local(
                &source,
                binned,
                boost.grower(it, tree_rows.clone()),
                &[targets],
                true,
                alts.as_deref_mut(),
            )?
            .pop()
            .ok_or_else(|| MlError::Internal("learner returned no tree".into()))?;
            let tree = boost.add_tree(tree);
            // The tree's own rows get their leaf's value; other scored rows
            // (validation holdout, rows left out of this round's subsample) are routed.
            for (node, leaf_rows) in &leaves {
                let v = tree.nodes[*node].value;
                for &r in leaf_rows {
                    scores[r as usize] += v;
                }
            }
            if tree_rows.len() < scored.len() {
                add_routed(
                    tree,
                    binned,
                    &sorted_difference(&scored, &tree_rows),
                    &mut scores,
                );
            }
        }
        let mut validation_loss = None;
        let mut stop = false;
        if !valid.is_empty() {
            let loss = log_loss_rows(&scores, y, &valid);
            validation_loss = Some(loss);
            stop = boost.record_validation(loss);
        }
        emit(
            progress,
            TrainEvent::TreeBuilt {
                done: it + 1,
                total: p.max_iter,
                validation_loss,
            },
        );
        if stop {
            break;
        }
    }
    let boosted = boost.finish();
    if let Some(best_iteration) = boosted.best_iteration {
        emit(progress, TrainEvent::EarlyStopped { best_iteration });
    }
    Ok(boosted)
}
