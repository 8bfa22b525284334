//! The split rules of the one level-wise tree learner shared by GBT and
//! random forests, local and distributed, and its local driver (histograms
//! from in-memory rows).
//!
//! The growing itself is [`crate::grower::LevelGrower`]'s: trees grow one
//! depth level at a time. For every level the learner asks a
//! [`HistogramSource`] for the histograms of the nodes it needs, in a single
//! call covering every tree being grown (all trees of a forest advance
//! together, so a distributed source scans the data once per level). When all
//! features are considered it builds only the smaller child and obtains the
//! sibling by subtraction from the parent.
//!
//! With a random feature subset per node (forests), a node whose drawn
//! features are all constant over its rows keeps drawing, in its draw order,
//! until one varies (scikit-learn's rule; Spark's would make it a leaf): the
//! extra features are filled in the next histogram request, so the
//! distributed trainer does the same in its next pass ([`more_features`],
//! [`extend_node`]).

use rayon::prelude::*;

use crate::binning::BinnedMatrix;
use crate::error::Result;
use crate::grower::{LevelGrower, TreeStart};
use crate::histogram::{BinStats, Histogram, HistogramSource, NodeRequest, Targets};
use crate::params::{GbtParams, Impurity, RfParams};
use crate::sampling::hash2;
use crate::tree::Tree;

/// How splits are scored and leaves valued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Criterion {
    /// Second-order (Newton) gain with L2 `lambda`; leaf = `-G / (H + lambda)`.
    Newton {
        /// L2 regularisation of leaf values.
        lambda: f64,
        /// Minimum hessian sum per child.
        min_hess: f64,
    },
    /// Impurity decrease on weighted class counts (`grad` = positives, `hess` = weight); leaf = P(1).
    Impurity(Impurity),
}

impl Criterion {
    /// Leaf value of a node with these sums.
    pub fn leaf_value(&self, s: &BinStats) -> f64 {
        match *self {
            Criterion::Newton { lambda, .. } => {
                let d = s.hess + lambda;
                if d > 0.0 {
                    -s.grad / d
                } else {
                    0.0
                }
            }
            Criterion::Impurity(_) => {
                if s.hess > 0.0 {
                    s.grad / s.hess
                } else {
                    0.0
                }
            }
        }
    }

    fn impurity(imp: Impurity, s: &BinStats) -> f64 {
        if s.hess <= 0.0 {
            return 0.0;
        }
        let p = (s.grad / s.hess).clamp(0.0, 1.0);
        match imp {
            Impurity::Gini => 2.0 * p * (1.0 - p),
            Impurity::Entropy => {
                let h = |q: f64| if q > 0.0 { -q * q.log2() } else { 0.0 };
                h(p) + h(1.0 - p)
            }
        }
    }

    /// Gain of splitting `total` into `l` and `r` (`parent_term` = precomputed term of `total`).
    #[inline]
    fn gain(&self, l: &BinStats, r: &BinStats, total: &BinStats, parent_term: f64) -> f64 {
        match *self {
            Criterion::Newton { lambda, .. } => {
                0.5 * (l.grad * l.grad / (l.hess + lambda) + r.grad * r.grad / (r.hess + lambda)
                    - parent_term)
            }
            Criterion::Impurity(imp) => {
                let w = total.hess;
                parent_term
                    - (l.hess / w) * Self::impurity(imp, l)
                    - (r.hess / w) * Self::impurity(imp, r)
            }
        }
    }

    fn parent_term(&self, total: &BinStats) -> f64 {
        match *self {
            Criterion::Newton { lambda, .. } => total.grad * total.grad / (total.hess + lambda),
            Criterion::Impurity(imp) => Self::impurity(imp, total),
        }
    }
}

/// Growth limits shared by all trees grown together.
#[derive(Debug, Clone, Copy)]
pub struct GrowParams {
    /// Maximum depth (0 = root leaf only).
    pub max_depth: usize,
    /// Minimum rows in each child.
    pub min_instances: f64,
    /// Minimum split gain.
    pub min_info_gain: f64,
    /// Split criterion.
    pub criterion: Criterion,
    /// Features considered per node (== number of features for all).
    pub n_sub_features: usize,
}

impl GrowParams {
    /// The growth limits of a GBT on `n_features` features.
    pub fn gbt(p: &GbtParams, n_features: usize) -> Self {
        Self {
            max_depth: p.max_depth,
            min_instances: p.min_instances_per_node as f64,
            min_info_gain: p.min_info_gain,
            criterion: Criterion::Newton {
                lambda: p.reg_lambda,
                min_hess: p.min_hessian_per_node,
            },
            n_sub_features: p
                .feature_subset_strategy
                .n_features(n_features, false, p.max_iter),
        }
    }

    /// The growth limits of a random forest on `n_features` features.
    pub fn forest(p: &RfParams, n_features: usize) -> Self {
        Self {
            max_depth: p.max_depth,
            min_instances: p.min_instances_per_node as f64,
            min_info_gain: p.min_info_gain,
            criterion: Criterion::Impurity(p.impurity),
            n_sub_features: p
                .feature_subset_strategy
                .n_features(n_features, true, p.num_trees),
        }
    }
}

/// Other `minInstancesPerNode` values checked while trees grow (grid
/// search shares one fit between grid points that differ only there).
/// A value agrees with a tree while every decision of that tree (split or
/// leaf, split feature, bin, missing side, extra features drawn) is the
/// same under it; the trees it agrees with are exactly the ones it grows
/// (the same splits give the same rows, gradients and histograms).
///
/// `failed[i]` lists, ascending, the ensemble indices of the trees that
/// `min_instances[i]` would grow differently. Boosting checks a value until
/// its first failing round (every later round depends on it); a forest's
/// trees are independent, so [`Self::per_tree`] checks every tree and only
/// the failed ones need regrowing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AltMinInstances {
    /// The alternative values.
    pub min_instances: Vec<f64>,
    /// Per value, the trees it would grow differently (ascending).
    pub failed: Vec<Vec<usize>>,
    /// Keep checking a value's later trees after one failed (forests).
    per_tree: bool,
    /// Ensemble index of the batch's tree 0 (set by the trainer).
    pub(crate) tree_offset: usize,
}

impl AltMinInstances {
    /// Checks `values` over a boosting sequence: each until its first
    /// failing tree.
    pub fn new(values: Vec<f64>) -> Self {
        let failed = vec![Vec::new(); values.len()];
        Self {
            min_instances: values,
            failed,
            per_tree: false,
            tree_offset: 0,
        }
    }

    /// Checks `values` on every tree of a forest.
    pub fn per_tree(values: Vec<f64>) -> Self {
        Self {
            per_tree: true,
            ..Self::new(values)
        }
    }

    /// Whether value `i` grows the whole ensemble as checked.
    pub fn agrees(&self, i: usize) -> bool {
        self.failed[i].is_empty()
    }

    pub(crate) fn any_agree(&self) -> bool {
        self.per_tree || self.failed.iter().any(Vec::is_empty)
    }

    /// Marks the values under which node `node` of the batch's tree `tree`
    /// would decide differently.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check(
        &mut self,
        tree: usize,
        node: (&Histogram, &[usize], &BinStats, usize),
        split: &Option<Split>,
        more: &Option<Vec<usize>>,
        p: &GrowParams,
        n_features: usize,
        seed: u64,
        heap_id: u64,
    ) {
        let (hist, features, totals, depth) = node;
        let same = |a: &Option<Split>, b: &Option<Split>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                (a.feature, a.bin, a.missing_left) == (b.feature, b.bin, b.missing_left)
            }
            _ => false,
        };
        let t = self.tree_offset + tree;
        for (m, failed) in self.min_instances.iter().zip(self.failed.iter_mut()) {
            let skip = if self.per_tree {
                failed.binary_search(&t).is_ok()
            } else {
                !failed.is_empty()
            };
            if skip {
                continue;
            }
            let q = GrowParams {
                min_instances: *m,
                ..*p
            };
            let s = best_split_of(hist, features, totals, depth, &q);
            let agree = same(&s, split)
                && (s.is_some()
                    || more_features(hist, features, totals, depth, &q, n_features, seed, heap_id)
                        == *more);
            if !agree {
                let at = failed.partition_point(|&f| f < t);
                failed.insert(at, t);
            }
        }
    }
}

/// One tree to grow: its targets, its root rows (ascending, weight > 0) and its seed.
#[derive(Debug, Clone)]
pub struct TreeJob<'a> {
    /// Per-row targets.
    pub targets: Targets<'a>,
    /// Rows at the root.
    pub rows: Vec<u32>,
    /// Seed of per-node feature sampling.
    pub seed: u64,
}

/// A chosen split (public for the distributed trainer, which grows trees
/// from histograms without row ids).
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// Split feature.
    pub feature: usize,
    /// Rows with `bin <= bin` go left (bin 0 = missing follows `missing_left`).
    pub bin: u8,
    /// Where missing values go.
    pub missing_left: bool,
    /// Gain of the split.
    pub gain: f64,
    /// Sums of the left child.
    pub left: BinStats,
    /// Sums of the right child.
    pub right: BinStats,
}

/// The features node `heap_id` of the tree seeded `seed` considers: all
/// when `k >= n_features`, else `k` of them picked by a hash (ascending).
pub fn node_features(n_features: usize, k: usize, seed: u64, heap_id: u64) -> Vec<usize> {
    if k >= n_features {
        return (0..n_features).collect();
    }
    let mut keyed: Vec<(u64, usize)> = (0..n_features)
        .map(|j| (hash2(seed, heap_id, j as u64), j))
        .collect();
    keyed.select_nth_unstable(k - 1);
    let mut f: Vec<usize> = keyed[..k].iter().map(|&(_, j)| j).collect();
    f.sort_unstable();
    f
}

/// Every feature in the order node `heap_id` of the tree seeded `seed`
/// draws them: ascending `hash2(seed, heap_id, j)`. Its first `k` are
/// [`node_features`]`(n_features, k, seed, heap_id)` (as a set).
pub fn feature_order(n_features: usize, seed: u64, heap_id: u64) -> Vec<usize> {
    let mut keyed: Vec<(u64, usize)> = (0..n_features)
        .map(|j| (hash2(seed, heap_id, j as u64), j))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, j)| j).collect()
}

/// Whether feature `j` has rows in more than one bin of `hist` (the missing bin counts).
fn varies(hist: &Histogram, j: usize) -> bool {
    hist.feature(j)
        .iter()
        .filter(|s| s.count > 0.0)
        .take(2)
        .count()
        > 1
}

/// The next features to fill for a node that found no split when every one
/// of its candidate `features` is constant over its rows: the next
/// `p.n_sub_features` of its [`feature_order`] (`None`: the node is a leaf,
/// because it cannot split, is pure, has a varying candidate, or every
/// feature was tried). The one rule of the local and the distributed learner.
#[allow(clippy::too_many_arguments)]
pub fn more_features(
    hist: &Histogram,
    features: &[usize],
    totals: &BinStats,
    depth: usize,
    p: &GrowParams,
    n_features: usize,
    seed: u64,
    heap_id: u64,
) -> Option<Vec<usize>> {
    if p.n_sub_features >= n_features
        || features.len() >= n_features
        || depth >= p.max_depth
        || totals.count < 2.0 * p.min_instances
    {
        return None;
    }
    if matches!(p.criterion, Criterion::Impurity(_)) && p.criterion.parent_term(totals) <= 0.0 {
        return None;
    }
    if features.iter().any(|&j| varies(hist, j)) {
        return None;
    }
    let order = feature_order(n_features, seed, heap_id);
    let from = features.len();
    Some(order[from..(from + p.n_sub_features).min(n_features)].to_vec())
}

/// Adds the histograms of the extra features `more` (filled in `extra`,
/// from [`more_features`]) to a node: its candidates grow by `more` up to
/// and including the first feature that varies.
pub fn extend_node(
    hist: &mut Histogram,
    features: &mut Vec<usize>,
    extra: &Histogram,
    more: &[usize],
) -> Result<()> {
    hist.merge(extra)?;
    for &j in more {
        features.push(j);
        if varies(hist, j) {
            break;
        }
    }
    Ok(())
}

/// The node totals: the sums over every bin of feature `j`.
pub fn sum_feature(h: &Histogram, j: usize) -> BinStats {
    let mut t = BinStats::default();
    for s in h.feature(j) {
        t.add(s);
    }
    t
}

/// `a` beats `b` by more than floating-point noise: near-ties keep the
/// earlier candidate (lower feature, lower bin), so results do not depend on
/// the summation order of the rows (row order, partitioning, merging).
#[inline]
fn clearly_better(a: f64, b: f64) -> bool {
    a > b + 1e-9 * b.abs().max(1e-12)
}

fn best_split_feature(
    bins: &[BinStats],
    j: usize,
    total: &BinStats,
    p: &GrowParams,
    parent_term: f64,
) -> Option<Split> {
    let miss = bins[0];
    let n = bins.len();
    let has_missing = miss.count > 0.0;
    let min_hess = match p.criterion {
        Criterion::Newton { min_hess, .. } => min_hess,
        Criterion::Impurity(_) => 0.0,
    };
    let valid = |l: &BinStats, r: &BinStats| {
        l.count >= p.min_instances
            && r.count >= p.min_instances
            && l.hess >= min_hess
            && r.hess >= min_hess
            && l.hess > 0.0
            && r.hess > 0.0
    };
    let mut best: Option<Split> = None;
    let mut consider = |l: BinStats, t: usize, missing_left: bool| {
        let r = total.minus(&l);
        if !valid(&l, &r) {
            return;
        }
        let gain = p.criterion.gain(&l, &r, total, parent_term);
        if gain > 1e-12
            && gain >= p.min_info_gain
            && best.is_none_or(|b| clearly_better(gain, b.gain))
        {
            best = Some(Split {
                feature: j,
                bin: t as u8,
                missing_left,
                gain,
                left: l,
                right: r,
            });
        }
    };
    let mut acc = BinStats::default();
    for (t, b) in bins.iter().enumerate().skip(1) {
        if b.count == 0.0 {
            continue;
        }
        acc.add(b);
        if t == n - 1 {
            // All values left, missing right.
            if has_missing {
                consider(acc, t, false);
            }
            break;
        }
        if has_missing {
            consider(acc, t, false);
            let mut with_missing = acc;
            with_missing.add(&miss);
            consider(with_missing, t, true);
        } else {
            // No missing values seen here: send future missing values to the larger side.
            let right_count = total.count - acc.count;
            consider(acc, t, acc.count >= right_count);
        }
    }
    best
}

/// The best split of a node at `depth` with histogram `hist`, sums `totals`
/// and candidate `features` (`None`: the node stays a leaf). The one split
/// rule of the local and the distributed learner.
pub fn best_split_of(
    hist: &Histogram,
    features: &[usize],
    totals: &BinStats,
    depth: usize,
    p: &GrowParams,
) -> Option<Split> {
    if depth >= p.max_depth || totals.count < 2.0 * p.min_instances {
        return None;
    }
    let parent_term = p.criterion.parent_term(totals);
    let pick = |a: Option<Split>, b: Option<Split>| match (a, b) {
        (Some(a), Some(b)) => Some(if b.feature < a.feature {
            if clearly_better(a.gain, b.gain) {
                a
            } else {
                b
            }
        } else if clearly_better(b.gain, a.gain) {
            b
        } else {
            a
        }),
        (a, None) => a,
        (None, b) => b,
    };
    features
        .par_iter()
        .with_min_len(8)
        .map(|&j| best_split_feature(hist.feature(j), j, totals, p, parent_term))
        .reduce(|| None, pick)
}

/// Rows per task when partitioning one node's rows in parallel.
const PARTITION_CHUNK: usize = 1 << 16;

/// Splits a node's ascending `rows` into (left, right) rows, both ascending.
/// Branch-free (a split is a coin flip for the branch predictor) and
/// parallel over chunks for large nodes.
fn partition_rows(rows: &[u32], col: &[u8], s: &Split) -> (Vec<u32>, Vec<u32>) {
    let mut goes_left = [false; 256];
    for (b, g) in goes_left.iter_mut().enumerate() {
        *g = if b == 0 {
            s.missing_left
        } else {
            b <= s.bin as usize
        };
    }
    let part = |rows: &[u32]| {
        let mut left = vec![0u32; rows.len()];
        let mut right = vec![0u32; rows.len()];
        let (mut nl, mut nr) = (0usize, 0usize);
        for &r in rows {
            let l = goes_left[col[r as usize] as usize];
            left[nl] = r;
            right[nr] = r;
            nl += l as usize;
            nr += !l as usize;
        }
        left.truncate(nl);
        right.truncate(nr);
        (left, right)
    };
    if rows.len() <= 2 * PARTITION_CHUNK {
        return part(rows);
    }
    let parts: Vec<(Vec<u32>, Vec<u32>)> = rows.par_chunks(PARTITION_CHUNK).map(part).collect();
    let n_left: usize = parts.iter().map(|p| p.0.len()).sum();
    let mut left = Vec::with_capacity(n_left);
    let mut right = Vec::with_capacity(rows.len() - n_left);
    for (l, r) in parts {
        left.extend_from_slice(&l);
        right.extend_from_slice(&r);
    }
    (left, right)
}

/// Grows one tree per job, all trees level by level with one histogram
/// request per level. Leaves hold `criterion.leaf_value` (unscaled).
pub fn grow_trees(
    source: &dyn HistogramSource,
    binned: &BinnedMatrix,
    p: &GrowParams,
    jobs: &[TreeJob<'_>],
) -> Result<Vec<Tree>> {
    grow_trees_checked(source, binned, p, jobs, None)
}

/// [`grow_trees`] that also checks alternative `min_instances` values.
pub(crate) fn grow_trees_checked(
    source: &dyn HistogramSource,
    binned: &BinnedMatrix,
    p: &GrowParams,
    jobs: &[TreeJob<'_>],
    alts: Option<&mut AltMinInstances>,
) -> Result<Vec<Tree>> {
    Ok(grow(source, binned, p, jobs, false, alts)?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}

/// The rows of each leaf of a grown tree: (node index, ascending rows).
pub(crate) type LeafRows = Vec<(usize, Vec<u32>)>;

fn grow(
    source: &dyn HistogramSource,
    binned: &BinnedMatrix,
    p: &GrowParams,
    jobs: &[TreeJob<'_>],
    keep_leaf_rows: bool,
    alts: Option<&mut AltMinInstances>,
) -> Result<Vec<(Tree, LeafRows)>> {
    let starts = jobs
        .iter()
        .enumerate()
        .map(|(t, j)| TreeStart {
            index: t as u64,
            seed: j.seed,
            rows: j.rows.clone(),
        })
        .collect();
    let grower = LevelGrower::new(*p, binned.n_features(), starts);
    let targets: Vec<Targets<'_>> = jobs.iter().map(|j| j.targets).collect();
    grow_local(source, binned, grower, &targets, keep_leaf_rows, alts)
}

/// Runs `grower` to the end with histograms from `source` (the rows of
/// each node, `targets[tree]` per tree) and the rows partitioned in
/// memory: the local trainer. Returns every tree with its leaves' rows
/// (when `keep_leaf_rows`).
pub(crate) fn grow_local(
    source: &dyn HistogramSource,
    binned: &BinnedMatrix,
    mut grower: LevelGrower<Vec<u32>>,
    targets: &[Targets<'_>],
    keep_leaf_rows: bool,
    mut alts: Option<&mut AltMinInstances>,
) -> Result<Vec<(Tree, LeafRows)>> {
    let mut leaves: Vec<LeafRows> = targets.iter().map(|_| Vec::new()).collect();
    let partition = |rows: &Vec<u32>, s: &Split| partition_rows(rows, binned.column(s.feature), s);
    while !grower.is_done() {
        let requests: Vec<NodeRequest<'_>> = grower
            .requests()
            .map(|a| NodeRequest {
                rows: a.rows,
                features: a.features,
                targets: targets[a.tree],
            })
            .collect();
        let hists = source.build(&requests)?;
        for leaf in grower.absorb(hists, partition, alts.as_deref_mut())? {
            if keep_leaf_rows {
                leaves[leaf.tree].push((leaf.node, leaf.rows));
            }
        }
    }
    Ok(grower.into_trees().into_iter().zip(leaves).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::LocalHistogramSource;

    #[test]
    fn single_split_found_exactly_with_newton_leaves() {
        // x = 1,2,3,4 (bins 1..4); y = 0,0,1,1; p0 = 0.5 => g = p - y, h = 0.25.
        let b = BinnedMatrix::from_columns(vec![vec![1, 2, 3, 4]], vec![5]).unwrap();
        let grad = [0.5f32, 0.5, -0.5, -0.5];
        let hess = [0.25f32; 4];
        let p = GrowParams {
            max_depth: 1,
            min_instances: 1.0,
            min_info_gain: 0.0,
            criterion: Criterion::Newton {
                lambda: 1.0,
                min_hess: 0.0,
            },
            n_sub_features: 1,
        };
        let job = TreeJob {
            targets: Targets::GradHess {
                grad: &grad,
                hess: &hess,
            },
            rows: vec![0, 1, 2, 3],
            seed: 0,
        };
        let src = LocalHistogramSource::new(&b);
        let t = &grow_trees(&src, &b, &p, &[job]).unwrap()[0];
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.nodes[0].threshold_bin, 2);
        // Newton step: -G/(H+lambda) = -(1.0)/(0.5+1) and +1/(1.5).
        assert!((t.nodes[1].value - (-1.0 / 1.5)).abs() < 1e-12);
        assert!((t.nodes[2].value - (1.0 / 1.5)).abs() < 1e-12);
        // gain = 0.5 * (1/1.5 + 1/1.5 - 0/2)
        assert!((t.nodes[0].gain - 0.5 * (2.0 / 1.5)).abs() < 1e-12);
    }

    /// Grows one single-feature Gini tree on labels `y` (all rows, weight 1).
    fn gini_tree(
        bins: Vec<u8>,
        n_bins: u16,
        y: &[u8],
        max_depth: usize,
        min_instances: f64,
    ) -> Tree {
        let b = BinnedMatrix::from_columns(vec![bins], vec![n_bins]).unwrap();
        let p = GrowParams {
            max_depth,
            min_instances,
            min_info_gain: 0.0,
            criterion: Criterion::Impurity(Impurity::Gini),
            n_sub_features: 1,
        };
        let job = TreeJob {
            targets: Targets::Labels { y, weights: None },
            rows: (0..y.len() as u32).collect(),
            seed: 0,
        };
        let src = LocalHistogramSource::new(&b);
        grow_trees(&src, &b, &p, &[job]).unwrap().remove(0)
    }

    #[test]
    fn missing_values_learn_their_direction() {
        // Missing rows are positive like the high values: they must go right.
        let t = gini_tree(vec![1, 1, 2, 2, 0, 0], 3, &[0, 0, 1, 1, 1, 1], 1, 1.0);
        assert!(!t.nodes[0].missing_left);
        assert_eq!(t.nodes[0].threshold_bin, 1);
        assert_eq!(t.nodes[1].value, 0.0);
        assert_eq!(t.nodes[2].value, 1.0);
        // Gini gain: parent 2*(2/3)(1/3) = 4/9; children pure.
        assert!((t.nodes[0].gain - 4.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn min_instances_blocks_small_children() {
        let t = gini_tree(vec![1, 2, 2, 2], 3, &[1, 0, 0, 0], 3, 2.0);
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.nodes[0].value, 0.25);
    }
}
