//! Exact TreeSHAP: per-row feature contributions of a tree ensemble,
//! path-dependent on the training covers (each node's training row count).
//!
//! For a GBT the contributions are in log-odds (raw score) units:
//! `expected_value + Σ contributions = initScore + Σ trees`, the value
//! before the sigmoid. For a forest they are in probability units and
//! averaged over the trees: `expected_value + Σ contributions = P(1)`.
//! These are the values `shap.TreeExplainer` gives for the exported
//! LightGBM model (for the forest, divided by the number of trees, since
//! shap sums LightGBM trees even with `average_output`).
//!
//! ## Exact algorithms
//! A [`TreeExplainer`] (built once per model, reused for every batch)
//! explains each tree with one of three exact algorithms.
//!
//! **Tables** (in the spirit of "Fast TreeSHAP v2", Yang 2021), for shallow
//! trees. For a leaf with value `v` let `F` be the distinct features on its
//! root→leaf path (`d = |F|`), `z_f` the product of the cover ratios
//! (child / parent) of the path's splits on `f`, and `o_f` 1 when the row
//! goes the path's way at every split on `f`, else 0; `A = {f ∈ F : o_f = 1}`.
//! The leaf's part of the conditional expectation `E[f(x) | x_S]` is
//! `v Π_{f∈F} (f ∈ S ? o_f : z_f)`, so its Shapley value for `i ∈ F` is
//! `φ_i = v (o_i − z_i) Σ_{S ⊆ A∖{i}} c(|S|) Π_{j ∈ F∖{i}∖S} z_j`,
//! `c(s) = s! (d−s−1)! / d!`. With `Q(A) = Σ_{S ⊆ A} c(|S|) Π_{j ∈ F∖S} z_j`
//! (all `2^d` subsets, computed once per leaf) that is `φ_i = −v Q(A)` for
//! `i ∉ A` and `φ_i = v (1 − z_i) / z_i · Q(A∖{i})` for `i ∈ A`. Per row and
//! tree, a top-down pass over the split nodes gives each node's `A` as a
//! bit mask (a bit per path feature, numbered in order of first split on
//! the path). Then either
//! * *group tables* (the fast default): the tree is cut into subtrees of at
//!   most 3 splits, and each subtree's table holds, for every mask `A`
//!   above it and every outcome of its own splits, the summed
//!   contributions of its leaves to each feature involved: a subtree costs
//!   its splits plus one read and add per feature (`2^(d + splits) ·
//!   features` entries per subtree); or
//! * *leaf tables* (compact, `2^d` entries per leaf): each leaf reads
//!   `Q(A)` once plus `Q(A∖{i})` per `i ∈ A`; the `−v Q(A)` terms are summed
//!   bottom-up and added once per topmost split on each feature.
//!
//! Within the table budget, leaf tables come first (smallest first) and
//! are then upgraded to group tables (smallest increase first).
//!
//! **Path extension** (Lundberg, Erion & Lee 2018, Algorithm 2) explains
//! the trees whose tables do not fit the budget (deep forests) or that have
//! a zero cover ratio on a path (`z_i = 0`).

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

/// Sort key of a contribution by absolute value: the bits of `|v|`, whose
/// integer order is `f64::total_cmp`'s order of `|v|`.
#[inline(always)]
fn abs_key(v: f64) -> u64 {
    v.to_bits() & !(1 << 63)
}

/// Up to this `k`, [`Explanation::top_k`] keeps a sorted insertion buffer.
const TOP_K_INSERT: usize = 16;

impl Explanation {
    /// Contributions of row `r`, in model feature order.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.values[r * self.n_features..(r + 1) * self.n_features]
    }

    /// The `k` largest contributions of row `r` by absolute value, as
    /// (feature index, contribution), largest first (ties: lower index).
    pub fn top_k(&self, r: usize, k: usize) -> Vec<(usize, f64)> {
        let row = self.row(r);
        let mut top = vec![(0, 0.0); k.min(row.len())];
        top_k_into(row, &mut top);
        top
    }
}

/// The `k` largest contributions of each row ([`TreeExplainer::top_k`]).
#[derive(Debug, Clone)]
pub struct TopContributions {
    /// The model's expected output (log-odds for a GBT, P(1) for a forest).
    pub expected_value: f64,
    /// Entries per row: `min(k, features)`.
    pub per_row: usize,
    /// Row-major (feature index, contribution), per row largest absolute
    /// contribution first (ties: lower index).
    pub entries: Vec<(usize, f64)>,
}

impl TopContributions {
    /// The entries of row `r`.
    pub fn row(&self, r: usize) -> &[(usize, f64)] {
        &self.entries[r * self.per_row..(r + 1) * self.per_row]
    }
}

/// Fills `top` (`k = top.len() <= row.len()` entries) with the `k` largest
/// values of `row` by absolute value as (index, value), largest first, ties
/// by lower index.
fn top_k_into(row: &[f64], top: &mut [(usize, f64)]) {
    let k = top.len();
    if k == 0 {
        return;
    }
    if k <= TOP_K_INSERT {
        // One pass in index order keeping the best k sorted: an equal key
        // never displaces an earlier (lower) index, so most values fail a
        // single integer comparison.
        let (mut len, mut last) = (0, 0u64);
        for (j, &v) in row.iter().enumerate() {
            let key = abs_key(v);
            if len == k {
                if key <= last {
                    continue;
                }
            } else {
                len += 1;
            }
            let mut p = len - 1;
            while p > 0 && abs_key(top[p - 1].1) < key {
                top[p] = top[p - 1];
                p -= 1;
            }
            top[p] = (j, v);
            if len == k {
                last = abs_key(top[k - 1].1);
            }
        }
        return;
    }
    let rank =
        |a: &(usize, f64), b: &(usize, f64)| abs_key(b.1).cmp(&abs_key(a.1)).then(a.0.cmp(&b.0));
    let mut v: Vec<(usize, f64)> = row.iter().copied().enumerate().collect();
    if k < v.len() {
        v.select_nth_unstable_by(k - 1, rank);
    }
    v[..k].sort_unstable_by(rank);
    top.copy_from_slice(&v[..k]);
}

fn check_covers(trees: &[Tree]) -> Result<()> {
    for (ti, t) in trees.iter().enumerate() {
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

fn check_columns(cols: &[&[f64]], nf: usize, n_rows: usize) -> Result<()> {
    if cols.len() != nf || cols.iter().any(|c| c.len() != n_rows) {
        return Err(MlError::Data(format!(
            "{} columns given for {nf} features of {n_rows} rows",
            cols.len()
        )));
    }
    Ok(())
}

/// Default budget of [`TreeExplainer::new`] in table entries (`f64`): 2^22, 32 MiB.
pub const DEFAULT_TABLE_BUDGET: usize = 1 << 22;

/// Split nodes a group table covers at most (3: a node and its two
/// children); see [`Terminals::Groups`].
const GROUP_SPLITS: usize = 3;

/// Most index bits of a table (path features, plus a group's splits).
const MAX_TABLE_BITS: usize = 30;

/// Rows explained together (their contributions stay in cache across trees).
const SHAP_BLOCK: usize = 64;

/// Whether a split sends `x` (`NaN` = missing) left, without branches.
#[inline(always)]
fn goes_left(x: f64, threshold: f64, missing_left: bool) -> bool {
    (x <= threshold) | (missing_left & x.is_nan())
}

/// Split nodes in the subtree of each node.
fn subtree_splits(tree: &Tree) -> Vec<usize> {
    fn walk(t: &Tree, node: usize, out: &mut [usize]) -> usize {
        let n = &t.nodes[node];
        let s = if n.is_leaf() {
            0
        } else {
            1 + walk(t, n.left as usize, out) + walk(t, n.right as usize, out)
        };
        out[node] = s;
        s
    }
    let mut out = vec![0; tree.nodes.len()];
    walk(tree, 0, &mut out);
    out
}

/// The split nodes of the subtree of `node`, depth-first (node, left, right).
fn preorder_splits(tree: &Tree, node: usize, out: &mut Vec<usize>) {
    let n = &tree.nodes[node];
    if !n.is_leaf() {
        out.push(node);
        preorder_splits(tree, n.left as usize, out);
        preorder_splits(tree, n.right as usize, out);
    }
}

/// Table entries of `tree` explained with leaf tables (`group = None`: `Σ`
/// over leaves of `2^d`) or group tables of at most `group` splits (`Σ`
/// over groups of `2^(d + splits) · slots`); `usize::MAX` when an index
/// would exceed [`MAX_TABLE_BITS`].
fn plan_entries(tree: &Tree, group: Option<usize>) -> usize {
    fn walk(
        t: &Tree,
        below: &[usize],
        k: usize,
        grouped: bool,
        node: usize,
        path: &mut Vec<u32>,
    ) -> usize {
        let n = &t.nodes[node];
        if below[node] <= k {
            let mut splits = Vec::new();
            preorder_splits(t, node, &mut splits);
            let mut feats = path.clone();
            for &s in &splits {
                if !feats.contains(&t.nodes[s].feature) {
                    feats.push(t.nodes[s].feature);
                }
            }
            let ns = if grouped { splits.len() } else { 0 };
            let bits = path.len() + ns;
            if bits > MAX_TABLE_BITS {
                return usize::MAX;
            }
            return if grouped {
                (1usize << bits).saturating_mul(feats.len())
            } else {
                1 << bits
            };
        }
        let new = !path.contains(&n.feature);
        if new {
            path.push(n.feature);
        }
        let s = walk(t, below, k, grouped, n.left as usize, path).saturating_add(walk(
            t,
            below,
            k,
            grouped,
            n.right as usize,
            path,
        ));
        if new {
            path.pop();
        }
        s
    }
    if tree.nodes.len() <= 1 {
        return 0;
    }
    let below = subtree_splits(tree);
    walk(
        tree,
        &below,
        group.unwrap_or(0),
        group.is_some(),
        0,
        &mut Vec::new(),
    )
}

/// A split node above the terminals (leaves or groups) of a [`TreePlan`].
/// Upper splits are "states" `0..n` (parents first), terminals `n..`.
#[derive(Debug, Clone, Copy)]
struct PlanNode {
    threshold: f64,
    feature: u32,
    missing_left: bool,
    /// Mask bit of the node's feature in the states below (its slot on the path).
    bit: u32,
    /// `bit` when this is the path's first split on the feature, else 0.
    new_bit: u32,
    /// Left and right child states.
    left: u32,
    right: u32,
}

/// A leaf with its own table ([`Terminals::Leaves`]).
#[derive(Debug, Clone, Copy)]
struct PlanLeaf {
    /// Start of the leaf's table: entry `A` is `scale · v · Q(A)` (0 for
    /// `A = F`, which is only ever cancelled).
    table: u32,
    /// Start of the leaf's path features and `(1 − z) / z` in slot (mask bit) order.
    slots: u32,
}

/// A subtree of at most [`GROUP_SPLITS`] splits with one table ([`Terminals::Groups`]).
#[derive(Debug, Clone, Copy)]
struct Group {
    /// Its splits in [`Terminals::Groups::splits`], depth-first.
    splits: u32,
    n_splits: u32,
    /// Its features in [`Terminals::Groups::slot_feature`]: the path
    /// features above it (mask bit order), then its own new ones.
    slots: u32,
    n_slots: u32,
    /// Index bits: path features above it plus `n_splits`.
    bits: u32,
    /// Start of its table, slot-major: entry `slot · 2^bits + ((A <<
    /// n_splits) | decisions)` holds the summed contributions of its leaves
    /// to the slot's feature.
    table: u32,
}

/// A split inside a [`Group`].
#[derive(Debug, Clone, Copy)]
struct GroupSplit {
    threshold: f64,
    feature: u32,
    missing_left: bool,
}

/// What lies below the upper splits of a [`TreePlan`].
#[derive(Debug, Clone)]
enum Terminals {
    /// One `Q` table per leaf (`2^d` entries): a leaf costs one read plus
    /// two per feature of `A` (compact; for deep trees).
    Leaves {
        leaves: Vec<PlanLeaf>,
        table: Vec<f64>,
        slot_feature: Vec<u32>,
        /// `(1 − z) / z` of each slot.
        slot_coef: Vec<f64>,
        /// (upper state, feature) of the topmost splits on each feature (no
        /// ancestor splits on it): where the leaves' `−v Q(A)` terms are added.
        tops: Vec<(u32, u32)>,
    },
    /// Subtrees of a few splits whose tables hold the summed contributions
    /// of their leaves for every path mask `A` above the subtree and every
    /// outcome of its splits: a group costs one read and one add per
    /// feature (fast; `2^(d + splits) · slots` entries per group).
    Groups {
        groups: Vec<Group>,
        splits: Vec<GroupSplit>,
        table: Vec<f64>,
        slot_feature: Vec<u32>,
    },
}

/// One tree's tables (see the module docs).
#[derive(Debug, Clone)]
struct TreePlan {
    upper: Vec<PlanNode>,
    terminals: Terminals,
}

/// `Q(A)` for every `A ⊆ F` of a leaf with cover ratios `z` (one per path
/// feature), times `vs`, with `Q(F) = 0`, and `(1 − z) / z` per feature;
/// `None` when a ratio is not positive and finite.
fn leaf_table(z: &[f64], vs: f64) -> Option<(Vec<f64>, Vec<f64>)> {
    let d = z.len();
    let mut coef = Vec::with_capacity(d);
    for &z in z {
        let c = (1.0 - z) / z;
        if !(z > 0.0 && c.is_finite()) {
            return None;
        }
        coef.push(c);
    }
    // c(s) = s! (d−s−1)! / d! = 1 / (d · C(d−1, s)).
    let mut c = Vec::with_capacity(d);
    let mut binom = 1.0;
    for s in 0..d {
        if s > 0 {
            binom = binom * (d - s) as f64 / s as f64;
        }
        c.push(1.0 / (d as f64 * binom));
    }
    let full = (1usize << d) - 1;
    // prod[S] = Π_{j ∈ S} z_j.
    let mut prod = vec![1.0; full + 1];
    for s in 1..=full {
        prod[s] = prod[s & (s - 1)] * z[s.trailing_zeros() as usize];
    }
    // w(S) = c(|S|) Π_{j ∈ F∖S} z_j, then Q = the subset sums of w.
    let mut q: Vec<f64> = (0..=full)
        .map(|s| {
            if s == full {
                0.0
            } else {
                c[s.count_ones() as usize] * prod[full ^ s]
            }
        })
        .collect();
    for bit in 0..d {
        let b = 1usize << bit;
        for s in 0..full {
            if s & b != 0 {
                q[s] += q[s ^ b];
            }
        }
    }
    q[full] = 0.0;
    for x in &mut q {
        *x *= vs;
    }
    Some((q, coef))
}

/// A leaf below a group root, for building the group's table.
struct GroupLeaf {
    /// Path splits below the group root: (position among the group's
    /// splits, goes left, mask bit, new bit).
    steps: Vec<(usize, bool, u32, u32)>,
    /// Group slot of each of the leaf's slots.
    to_group: Vec<usize>,
    q: Vec<f64>,
    coef: Vec<f64>,
}

/// Depth-first construction of a [`TreePlan`].
struct Builder<'a> {
    tree: &'a Tree,
    scale: f64,
    /// Splits a group covers at most; `None`: leaf tables.
    group: Option<usize>,
    below: Vec<usize>,
    state: Vec<u32>,
    upper: Vec<PlanNode>,
    terminals: Terminals,
    /// (feature, z) of each slot on the current path.
    path: Vec<(u32, f64)>,
}

impl TreePlan {
    /// The plan of `tree` (two or more nodes), or `None` when a cover ratio
    /// on a path is zero or not finite (the `i ∈ A` formula divides by it),
    /// or a table index would exceed [`MAX_TABLE_BITS`].
    fn build(tree: &Tree, scale: f64, group: Option<usize>) -> Option<TreePlan> {
        let below = subtree_splits(tree);
        let k = group.unwrap_or(0);
        // Breadth-first: upper splits (parents first), then the terminals in order.
        let (mut upper, mut terms) = (Vec::new(), Vec::new());
        let mut queue = std::collections::VecDeque::from([0usize]);
        while let Some(i) = queue.pop_front() {
            if upper.len() + terms.len() >= tree.nodes.len() {
                return None; // not a tree
            }
            if below[i] <= k {
                terms.push(i);
            } else {
                upper.push(i);
                queue.push_back(tree.nodes[i].left as usize);
                queue.push_back(tree.nodes[i].right as usize);
            }
        }
        let mut state = vec![u32::MAX; tree.nodes.len()];
        for (s, &i) in upper.iter().chain(&terms).enumerate() {
            state[i] = s as u32;
        }
        let terminals = if group.is_some() {
            Terminals::Groups {
                groups: Vec::with_capacity(terms.len()),
                splits: Vec::new(),
                table: Vec::new(),
                slot_feature: Vec::new(),
            }
        } else {
            Terminals::Leaves {
                leaves: Vec::with_capacity(terms.len()),
                table: Vec::new(),
                slot_feature: Vec::new(),
                slot_coef: Vec::new(),
                tops: Vec::new(),
            }
        };
        let mut b = Builder {
            tree,
            scale,
            group,
            below,
            state,
            upper: vec![
                PlanNode {
                    threshold: 0.0,
                    feature: 0,
                    missing_left: false,
                    bit: 0,
                    new_bit: 0,
                    left: 0,
                    right: 0,
                };
                upper.len()
            ],
            terminals,
            path: Vec::new(),
        };
        // Terminals are built in depth-first order; reorder them to their states.
        let mut built = Vec::with_capacity(terms.len());
        b.walk(0, &mut built)?;
        let n_upper = b.upper.len();
        let mut order: Vec<usize> = (0..built.len()).collect();
        order.sort_by_key(|&j| built[j]);
        match &mut b.terminals {
            Terminals::Leaves { leaves, .. } => {
                *leaves = order.iter().map(|&j| leaves[j]).collect();
            }
            Terminals::Groups { groups, .. } => {
                *groups = order.iter().map(|&j| groups[j]).collect();
            }
        }
        debug_assert!(built.iter().all(|&s| s as usize >= n_upper));
        Some(TreePlan {
            upper: b.upper,
            terminals: b.terminals,
        })
    }

    fn states(&self) -> usize {
        self.upper.len()
            + match &self.terminals {
                Terminals::Leaves { leaves, .. } => leaves.len(),
                Terminals::Groups { groups, .. } => groups.len(),
            }
    }

    fn entries(&self) -> usize {
        match &self.terminals {
            Terminals::Leaves { table, .. } | Terminals::Groups { table, .. } => table.len(),
        }
    }

    /// Adds the contributions of a tree with [`Terminals::Groups`] for the
    /// `n` rows of a block to `phi_t`: both `cols_t` and `phi_t` are
    /// feature-major ([`SHAP_BLOCK`] values per feature), `mask` holds
    /// [`SHAP_BLOCK`] entries per state, `idx` is scratch. Rows are the inner
    /// loop: their steps are independent, so they overlap in the CPU.
    fn add_block_groups(
        &self,
        cols_t: &[f64],
        phi_t: &mut [f64],
        n: usize,
        mask: &mut [u32],
        idx: &mut [usize],
    ) {
        let Terminals::Groups {
            groups,
            splits,
            table,
            slot_feature,
        } = &self.terminals
        else {
            return;
        };
        let b = SHAP_BLOCK;
        let idx = &mut idx[..n];
        mask[..n].fill(0);
        for (k, node) in self.upper.iter().enumerate() {
            let x = &cols_t[node.feature as usize * b..][..n];
            // Children have larger states than their parent.
            let (done, below) = mask.split_at_mut((k + 1) * b);
            let src = &done[k * b..k * b + n];
            let (l, r) = (node.left as usize - (k + 1), node.right as usize - (k + 1));
            let (ml, mr) = if l < r {
                let (lo, hi) = below.split_at_mut(r * b);
                (&mut lo[l * b..l * b + n], &mut hi[..n])
            } else {
                let (lo, hi) = below.split_at_mut(l * b);
                (&mut hi[..n], &mut lo[r * b..r * b + n])
            };
            for (((&x, &a), ml), mr) in x.iter().zip(src).zip(ml).zip(mr) {
                let left = goes_left(x, node.threshold, node.missing_left);
                let agree = a | node.new_bit;
                let disagree = a & !node.bit;
                *ml = if left { agree } else { disagree };
                *mr = if left { disagree } else { agree };
            }
        }
        let n_upper = self.upper.len();
        for (g, grp) in groups.iter().enumerate() {
            for (i, &a) in idx.iter_mut().zip(&mask[(n_upper + g) * b..][..n]) {
                *i = a as usize;
            }
            let s0 = grp.splits as usize;
            for sp in &splits[s0..s0 + grp.n_splits as usize] {
                let x = &cols_t[sp.feature as usize * b..][..n];
                for (i, &x) in idx.iter_mut().zip(x) {
                    *i = (*i << 1) | goes_left(x, sp.threshold, sp.missing_left) as usize;
                }
            }
            let ns = grp.n_slots as usize;
            let n_idx = 1usize << grp.bits;
            let f0 = grp.slots as usize;
            let gtable = &table[grp.table as usize..][..ns * n_idx];
            for (&f, col) in slot_feature[f0..f0 + ns]
                .iter()
                .zip(gtable.chunks_exact(n_idx))
            {
                for (out, &i) in phi_t[f as usize * b..][..n].iter_mut().zip(&*idx) {
                    // `i < n_idx` already; the mask lets the compiler drop the bounds check.
                    *out += col[i & (n_idx - 1)];
                }
            }
        }
    }

    /// Adds the contributions of a tree with [`Terminals::Leaves`] for
    /// `row` to `phi`; `mask` and `sums` hold one entry per state.
    fn add_row_leaves(&self, row: &[f64], phi: &mut [f64], mask: &mut [u32], sums: &mut [f64]) {
        let Terminals::Leaves {
            leaves,
            table,
            slot_feature,
            slot_coef,
            tops,
        } = &self.terminals
        else {
            return;
        };
        let n_upper = self.upper.len();
        // Top-down: each state's path-feature mask A (the row agrees with the
        // path at every split on the feature so far).
        mask[0] = 0;
        for (k, n) in self.upper.iter().enumerate() {
            let left = goes_left(row[n.feature as usize], n.threshold, n.missing_left);
            let a = mask[k];
            let agree = a | n.new_bit;
            let disagree = a & !n.bit;
            let (l, r) = if left {
                (agree, disagree)
            } else {
                (disagree, agree)
            };
            mask[n.left as usize] = l;
            mask[n.right as usize] = r;
        }
        // −v Q(A) goes to every path feature (through the bottom-up sums);
        // features of A get v Q(A) + v (1 − z)/z Q(A∖{i}) on top.
        for (j, leaf) in leaves.iter().enumerate() {
            let a = mask[n_upper + j];
            let t = leaf.table as usize;
            let qa = table[t + a as usize];
            sums[n_upper + j] = qa;
            let mut bits = a;
            while bits != 0 {
                let s = bits.trailing_zeros();
                bits &= bits - 1;
                let slot = leaf.slots as usize + s as usize;
                phi[slot_feature[slot] as usize] +=
                    qa + slot_coef[slot] * table[t + (a ^ (1 << s)) as usize];
            }
        }
        for (k, n) in self.upper.iter().enumerate().rev() {
            sums[k] = sums[n.left as usize] + sums[n.right as usize];
        }
        for &(k, f) in tops {
            phi[f as usize] -= sums[k as usize];
        }
    }
}

impl Builder<'_> {
    /// Walks the upper splits from `node`, building the terminals below;
    /// `built` gets each terminal's state in build order.
    fn walk(&mut self, node: usize, built: &mut Vec<u32>) -> Option<()> {
        let n = &self.tree.nodes[node];
        let st = self.state[node];
        if self.below[node] <= self.group.unwrap_or(0) {
            built.push(st);
            return match self.group {
                None => self.leaf(n.value),
                Some(_) => self.group(node),
            };
        }
        let found = self.path.iter().position(|p| p.0 == n.feature);
        let slot = found.unwrap_or(self.path.len());
        if slot >= MAX_TABLE_BITS {
            return None;
        }
        let bit = 1u32 << slot;
        self.upper[st as usize] = PlanNode {
            threshold: n.threshold,
            feature: n.feature,
            missing_left: n.missing_left,
            bit,
            new_bit: if found.is_none() { bit } else { 0 },
            left: self.state[n.left as usize],
            right: self.state[n.right as usize],
        };
        if found.is_none() {
            if let Terminals::Leaves { tops, .. } = &mut self.terminals {
                tops.push((st, n.feature));
            }
            self.path.push((n.feature, 1.0));
        }
        let before = self.path[slot].1;
        for child in [n.left, n.right] {
            self.path[slot].1 = before * (self.tree.nodes[child as usize].count / n.count);
            self.walk(child as usize, built)?;
        }
        if found.is_none() {
            self.path.pop();
        } else {
            self.path[slot].1 = before;
        }
        Some(())
    }

    /// Builds the table of a leaf with value `v` under the current path.
    fn leaf(&mut self, v: f64) -> Option<()> {
        let Terminals::Leaves {
            leaves,
            table,
            slot_feature,
            slot_coef,
            ..
        } = &mut self.terminals
        else {
            return None;
        };
        let z: Vec<f64> = self.path.iter().map(|p| p.1).collect();
        let (q, coef) = leaf_table(&z, v * self.scale)?;
        leaves.push(PlanLeaf {
            table: u32::try_from(table.len()).ok()?,
            slots: u32::try_from(slot_feature.len()).ok()?,
        });
        slot_feature.extend(self.path.iter().map(|p| p.0));
        slot_coef.extend(coef);
        table.extend(q);
        Some(())
    }

    /// Builds the group table of the subtree of `root` under the current path.
    fn group(&mut self, root: usize) -> Option<()> {
        let tree = self.tree;
        let mut splits = Vec::new();
        preorder_splits(tree, root, &mut splits);
        let ns = splits.len();
        let bits = self.path.len() + ns;
        if bits > MAX_TABLE_BITS {
            return None;
        }
        let mut feats: Vec<u32> = self.path.iter().map(|p| p.0).collect();
        for &s in &splits {
            if !feats.contains(&tree.nodes[s].feature) {
                feats.push(tree.nodes[s].feature);
            }
        }
        // The leaves below the root, with their paths from it.
        let mut leaves = Vec::new();
        let mut path = self.path.clone();
        self.group_leaves(
            root,
            &splits,
            &feats,
            &mut path,
            &mut Vec::new(),
            &mut leaves,
        )?;
        let n_slots = feats.len();
        let n_idx = 1usize << bits;
        // Slot-major: entry (slot, index) at `slot · 2^bits + index`.
        let mut rows = vec![0.0; n_idx * n_slots];
        let mut row = vec![0.0; n_slots];
        for idx in 0..n_idx {
            row.fill(0.0);
            for leaf in &leaves {
                let mut a = (idx >> ns) as u32;
                for &(k, left, bit, new_bit) in &leaf.steps {
                    let decided_left = (idx >> (ns - 1 - k)) & 1 == 1;
                    a = if decided_left == left {
                        a | new_bit
                    } else {
                        a & !bit
                    };
                }
                for (s, &g) in leaf.to_group.iter().enumerate() {
                    row[g] += if a & (1 << s) != 0 {
                        leaf.coef[s] * leaf.q[(a ^ (1 << s)) as usize]
                    } else {
                        -leaf.q[a as usize]
                    };
                }
            }
            for (s, &v) in row.iter().enumerate() {
                rows[s * n_idx + idx] = v;
            }
        }
        let Terminals::Groups {
            groups,
            splits: all_splits,
            table,
            slot_feature,
        } = &mut self.terminals
        else {
            return None;
        };
        groups.push(Group {
            splits: u32::try_from(all_splits.len()).ok()?,
            n_splits: ns as u32,
            slots: u32::try_from(slot_feature.len()).ok()?,
            n_slots: n_slots as u32,
            bits: bits as u32,
            table: u32::try_from(table.len()).ok()?,
        });
        all_splits.extend(splits.iter().map(|&s| {
            let n = &tree.nodes[s];
            GroupSplit {
                threshold: n.threshold,
                feature: n.feature,
                missing_left: n.missing_left,
            }
        }));
        slot_feature.extend(feats);
        table.extend(rows);
        Some(())
    }

    /// Collects the leaves below `node` (in a group whose splits are
    /// `splits` and features `feats`); `path` is the leaf-local (feature,
    /// z) list, `steps` the splits taken so far.
    fn group_leaves(
        &self,
        node: usize,
        splits: &[usize],
        feats: &[u32],
        path: &mut Vec<(u32, f64)>,
        steps: &mut Vec<(usize, bool, u32, u32)>,
        out: &mut Vec<GroupLeaf>,
    ) -> Option<()> {
        let n = &self.tree.nodes[node];
        if n.is_leaf() {
            let z: Vec<f64> = path.iter().map(|p| p.1).collect();
            let (q, coef) = leaf_table(&z, n.value * self.scale)?;
            out.push(GroupLeaf {
                steps: steps.clone(),
                to_group: path
                    .iter()
                    .map(|p| feats.iter().position(|&f| f == p.0))
                    .collect::<Option<Vec<usize>>>()?,
                q,
                coef,
            });
            return Some(());
        }
        let k = splits.iter().position(|&s| s == node)?;
        let found = path.iter().position(|p| p.0 == n.feature);
        let slot = found.unwrap_or(path.len());
        let bit = 1u32 << slot;
        let new_bit = if found.is_none() { bit } else { 0 };
        if found.is_none() {
            path.push((n.feature, 1.0));
        }
        let before = path[slot].1;
        for (child, left) in [(n.left, true), (n.right, false)] {
            path[slot].1 = before * (self.tree.nodes[child as usize].count / n.count);
            steps.push((k, left, bit, new_bit));
            self.group_leaves(child as usize, splits, feats, path, steps, out)?;
            steps.pop();
        }
        if found.is_none() {
            path.pop();
        } else {
            path[slot].1 = before;
        }
        Some(())
    }
}

/// Per-thread buffers of [`TreeExplainer::shap_values`] for one block of rows.
struct BlockScratch {
    /// The rows, row-major (for leaf tables and the path algorithm).
    rows: Vec<f64>,
    /// Their contributions, row-major.
    phi: Vec<f64>,
    /// The rows, feature-major (for group tables).
    cols_t: Vec<f64>,
    /// Group-table contributions, feature-major.
    phi_t: Vec<f64>,
    mask: Vec<u32>,
    idx: Vec<usize>,
    sums: Vec<f64>,
    buf: Vec<PathElement>,
}

/// How a [`TreeExplainer`] explains one tree.
#[derive(Debug, Clone)]
enum TreeAlgo {
    Table(TreePlan),
    Path(Tree),
}

/// Exact TreeSHAP for one model, with its tables precomputed: build it once
/// (per model) and call [`TreeExplainer::shap_values`] for every batch.
///
/// Within the table budget, every tree gets leaf tables (smallest first),
/// then trees are upgraded to the faster, larger group tables (smallest
/// increase first); trees left out use the path-extension algorithm (see
/// the module docs). All are exact.
#[derive(Debug, Clone)]
pub struct TreeExplainer {
    n_features: usize,
    expected_value: f64,
    /// Per-tree output scale (1 for a GBT, 1 / trees for a forest).
    scale: f64,
    trees: Vec<TreeAlgo>,
}

impl TreeExplainer {
    /// The explainer of `model` with the [`DEFAULT_TABLE_BUDGET`].
    pub fn new(model: &TrainedModel) -> Result<Self> {
        Self::with_budget(model, DEFAULT_TABLE_BUDGET)
    }

    /// The explainer of `model` whose tables hold at most `max_entries`
    /// `f64` in total (0: every tree uses the path-extension algorithm).
    pub fn with_budget(model: &TrainedModel, max_entries: usize) -> Result<Self> {
        let init = match model.kind() {
            ModelKind::Gbt => model.init_score(),
            ModelKind::RandomForest => 0.0,
        };
        Self::from_trees(
            model.kind(),
            model.feature_names().len(),
            init,
            model.trees(),
            max_entries,
            GROUP_SPLITS,
        )
    }

    fn from_trees(
        kind: ModelKind,
        n_features: usize,
        init_score: f64,
        trees: &[Tree],
        max_entries: usize,
        group_splits: usize,
    ) -> Result<Self> {
        check_covers(trees)?;
        if let Some(n) = trees
            .iter()
            .flat_map(|t| &t.nodes)
            .find(|n| !n.is_leaf() && n.feature as usize >= n_features)
        {
            return Err(MlError::Data(format!(
                "split on feature {} of a model with {n_features} features",
                n.feature
            )));
        }
        let scale = match kind {
            ModelKind::Gbt => 1.0,
            ModelKind::RandomForest => 1.0 / trees.len().max(1) as f64,
        };
        let expected_value = init_score
            + trees
                .iter()
                .map(|tree| TreeShap { tree, scale }.expected(0) * scale)
                .sum::<f64>();
        // 0: path algorithm, 1: leaf tables, 2: group tables.
        let mut level = vec![0u8; trees.len()];
        let mut used = 0usize;
        let take = |cost: usize, used: &mut usize| match used.checked_add(cost) {
            Some(u) if u <= max_entries => {
                *used = u;
                true
            }
            _ => false,
        };
        let leaf_sizes: Vec<usize> = trees.iter().map(|t| plan_entries(t, None)).collect();
        let mut order: Vec<usize> = (0..trees.len()).collect();
        order.sort_by_key(|&i| leaf_sizes[i]);
        for &i in &order {
            if !take(leaf_sizes[i], &mut used) {
                break;
            }
            level[i] = 1;
        }
        let extra: Vec<usize> = trees
            .iter()
            .zip(&leaf_sizes)
            .map(|(t, &l)| plan_entries(t, Some(group_splits)).saturating_sub(l))
            .collect();
        order.retain(|&i| level[i] == 1);
        order.sort_by_key(|&i| extra[i]);
        for &i in &order {
            if !take(extra[i], &mut used) {
                break;
            }
            level[i] = 2;
        }
        let algos = trees
            .iter()
            .zip(level)
            .filter(|(t, _)| t.nodes.len() > 1)
            .map(|(t, level)| {
                let plan = match level {
                    2 => TreePlan::build(t, scale, Some(group_splits))
                        .or_else(|| TreePlan::build(t, scale, None)),
                    1 => TreePlan::build(t, scale, None),
                    _ => None,
                };
                plan.map_or_else(|| TreeAlgo::Path(t.clone()), TreeAlgo::Table)
            })
            .collect();
        Ok(Self {
            n_features,
            expected_value,
            scale,
            trees: algos,
        })
    }

    /// The model's expected output (see [`Explanation::expected_value`]).
    pub fn expected_value(&self) -> f64 {
        self.expected_value
    }

    /// Trees explained with tables: (leaf tables, group tables).
    pub fn table_trees(&self) -> (usize, usize) {
        let mut n = (0, 0);
        for t in &self.trees {
            if let TreeAlgo::Table(p) = t {
                match p.terminals {
                    Terminals::Leaves { .. } => n.0 += 1,
                    Terminals::Groups { .. } => n.1 += 1,
                }
            }
        }
        n
    }

    /// Trees explained with the path-extension algorithm (single-leaf
    /// trees, which contribute nothing, are not counted).
    pub fn path_trees(&self) -> usize {
        self.trees
            .iter()
            .filter(|t| matches!(t, TreeAlgo::Path(_)))
            .count()
    }

    /// Table entries (`f64`) held.
    pub fn table_entries(&self) -> usize {
        self.trees
            .iter()
            .map(|t| match t {
                TreeAlgo::Table(p) => p.entries(),
                TreeAlgo::Path(_) => 0,
            })
            .sum()
    }

    /// Exact TreeSHAP contributions for raw columns in model feature order
    /// (`NaN` = missing); see the module docs for the units.
    pub fn shap_values(&self, cols: &[&[f64]], n_rows: usize) -> Result<Explanation> {
        let nf = self.n_features;
        check_columns(cols, nf, n_rows)?;
        let mut values = vec![0.0; n_rows * nf];
        self.for_each_block(cols, n_rows, &mut values, nf, |phi, out| {
            out.copy_from_slice(phi)
        });
        Ok(Explanation {
            expected_value: self.expected_value,
            values,
            n_features: nf,
        })
    }

    /// The `k` largest contributions of each row by absolute value, exactly
    /// [`Explanation::top_k`] of [`TreeExplainer::shap_values`], without
    /// materializing every contribution.
    pub fn top_k(&self, cols: &[&[f64]], n_rows: usize, k: usize) -> Result<TopContributions> {
        let nf = self.n_features;
        check_columns(cols, nf, n_rows)?;
        let per_row = k.min(nf);
        let mut entries = vec![(0usize, 0.0f64); n_rows * per_row];
        if per_row > 0 {
            self.for_each_block(cols, n_rows, &mut entries, per_row, |phi, out| {
                for (row, top) in phi.chunks_exact(nf).zip(out.chunks_exact_mut(per_row)) {
                    top_k_into(row, top);
                }
            });
        }
        Ok(TopContributions {
            expected_value: self.expected_value,
            per_row,
            entries,
        })
    }

    /// Computes the contributions of blocks of [`SHAP_BLOCK`] rows (in
    /// parallel) and hands each block's (row-major) to `emit` with the
    /// block's part of `out` (`per_row` items a row).
    fn for_each_block<T: Send>(
        &self,
        cols: &[&[f64]],
        n_rows: usize,
        out: &mut [T],
        per_row: usize,
        emit: impl Fn(&[f64], &mut [T]) + Sync,
    ) {
        let nf = self.n_features;
        if nf == 0 || per_row == 0 || n_rows == 0 {
            return;
        }
        let states = self
            .trees
            .iter()
            .map(|t| match t {
                TreeAlgo::Table(p) => p.states(),
                TreeAlgo::Path(_) => 0,
            })
            .max()
            .unwrap_or(0);
        let max_depth = self
            .trees
            .iter()
            .map(|t| match t {
                TreeAlgo::Table(_) => 0,
                TreeAlgo::Path(t) => t.depth(),
            })
            .max()
            .unwrap_or(0);
        let buf_len = (max_depth + 2) * (max_depth + 3) / 2 + 1;
        let grouped = self.table_trees().1 > 0;
        let row_major = self.trees.len() > self.table_trees().1;
        let bsz = SHAP_BLOCK;
        out.par_chunks_mut(bsz * per_row).enumerate().for_each_init(
            || BlockScratch {
                rows: vec![0.0; if row_major { bsz * nf } else { 0 }],
                phi: vec![0.0; bsz * nf],
                cols_t: vec![0.0; if grouped { bsz * nf } else { 0 }],
                phi_t: vec![0.0; if grouped { bsz * nf } else { 0 }],
                mask: vec![0; states * bsz],
                idx: vec![0; bsz],
                sums: vec![0.0; states],
                buf: vec![PathElement::default(); buf_len],
            },
            |w, (bi, out)| {
                let start = bi * bsz;
                let n = out.len() / per_row;
                for (j, c) in cols.iter().enumerate() {
                    let c = &c[start..start + n];
                    if grouped {
                        w.cols_t[j * bsz..j * bsz + n].copy_from_slice(c);
                    }
                    if row_major {
                        for (k, &v) in c.iter().enumerate() {
                            w.rows[k * nf + j] = v;
                        }
                    }
                }
                let phi = &mut w.phi[..n * nf];
                phi.fill(0.0);
                w.phi_t.fill(0.0);
                let rows = &w.rows[..if row_major { n * nf } else { 0 }];
                for t in &self.trees {
                    match t {
                        TreeAlgo::Table(p) if matches!(p.terminals, Terminals::Groups { .. }) => {
                            p.add_block_groups(&w.cols_t, &mut w.phi_t, n, &mut w.mask, &mut w.idx)
                        }
                        TreeAlgo::Table(p) => {
                            for (row, phi) in rows.chunks_exact(nf).zip(phi.chunks_exact_mut(nf)) {
                                p.add_row_leaves(row, phi, &mut w.mask, &mut w.sums);
                            }
                        }
                        TreeAlgo::Path(tree) => {
                            let e = TreeShap {
                                tree,
                                scale: self.scale,
                            };
                            for (row, phi) in rows.chunks_exact(nf).zip(phi.chunks_exact_mut(nf)) {
                                e.recurse(row, phi, &mut w.buf, 0, 0, 0, 1.0, 1.0, -1);
                            }
                        }
                    }
                }
                if grouped {
                    for (k, phi) in phi.chunks_exact_mut(nf).enumerate() {
                        for (j, v) in phi.iter_mut().enumerate() {
                            *v += w.phi_t[j * bsz + k];
                        }
                    }
                }
                emit(phi, out);
            },
        );
    }
}

impl TrainedModel {
    /// Exact TreeSHAP contributions for raw columns in model feature order
    /// (`NaN` = missing); see the module docs for the units. Builds a
    /// [`TreeExplainer`] per call: keep one to explain many batches.
    pub fn shap_values(&self, cols: &[&[f64]], n_rows: usize) -> Result<Explanation> {
        check_columns(cols, self.feature_names().len(), n_rows)?;
        TreeExplainer::new(self)?.shap_values(cols, n_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::train;
    use crate::params::{GbtParams, ModelSpec, RfParams};
    use crate::sampling::{hash2, unit};
    use crate::tree::Node;
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

    /// Brute-force contributions of the whole model for one row.
    fn brute_force_model(model: &TrainedModel, row: &[f64]) -> Vec<f64> {
        let nf = row.len();
        let scale = if model.kind() == ModelKind::Gbt {
            1.0
        } else {
            1.0 / model.trees().len() as f64
        };
        let mut want = vec![0.0; nf];
        for t in model.trees() {
            for (w, b) in want.iter_mut().zip(brute_force(t, row, nf)) {
                *w += b * scale;
            }
        }
        want
    }

    /// The raw score: log-odds for a GBT, P(1) for a forest.
    fn raw_score(model: &TrainedModel, cols: &[&[f64]], r: usize) -> f64 {
        let sum: f64 = model.trees().iter().map(|t| t.predict_row(cols, r)).sum();
        match model.kind() {
            ModelKind::Gbt => model.init_score() + sum,
            ModelKind::RandomForest => sum / model.trees().len() as f64,
        }
    }

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        let scale = want.iter().fold(1e-3f64, |m, w| m.max(w.abs()));
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12 * scale,
                "{what}, feature {j}: {g} vs {w}"
            );
        }
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

    /// A random dataset of `nf` small-range features (so trees split a
    /// feature several times on one path), some with missing values.
    fn random_data(seed: u64, n: usize, nf: usize) -> (FeatureMatrix, Vec<u8>) {
        let u = |r: usize, c: usize| unit(hash2(seed, r as u64, c as u64));
        let levels: Vec<usize> = (0..nf)
            .map(|j| 3 + (u(0, 1000 + j) * 40.0) as usize)
            .collect();
        let missing: Vec<f64> = (0..nf)
            .map(|j| {
                if j % 2 == 0 {
                    0.15 * u(1, 1000 + j)
                } else {
                    0.0
                }
            })
            .collect();
        let cols: Vec<Vec<f64>> = (0..nf)
            .map(|j| {
                (0..n)
                    .map(|r| {
                        if u(r, 2 * j) < missing[j] {
                            f64::NAN
                        } else {
                            (u(r, 2 * j + 1) * levels[j] as f64).floor()
                        }
                    })
                    .collect()
            })
            .collect();
        let y = (0..n)
            .map(|r| {
                let v = |j: usize| {
                    let x = cols[j % nf][r];
                    if x.is_nan() {
                        0.7
                    } else {
                        x / levels[j % nf] as f64
                    }
                };
                // Non-monotone in feature 0, interactions, label noise.
                let logit = 6.0 * (v(0) - 0.5).abs() - 1.5 + 2.0 * v(1) * v(2) - v(3);
                (u(r, 9999) < 1.0 / (1.0 + (-3.0 * logit).exp())) as u8
            })
            .collect();
        let names = (0..nf).map(|j| format!("f{j}")).collect();
        (FeatureMatrix::new(names, cols).unwrap(), y)
    }

    /// True when some root→leaf path of the model splits twice on one feature.
    fn repeats_a_feature(model: &TrainedModel) -> bool {
        fn walk(t: &Tree, node: usize, path: &mut Vec<u32>) -> bool {
            let n = &t.nodes[node];
            if n.is_leaf() {
                return false;
            }
            if path.contains(&n.feature) {
                return true;
            }
            path.push(n.feature);
            let r = walk(t, n.left as usize, path) || walk(t, n.right as usize, path);
            path.pop();
            r
        }
        model
            .trees()
            .iter()
            .any(|t| t.nodes.len() > 1 && walk(t, 0, &mut Vec::new()))
    }

    /// The explainer of `model` with every tree on tables of one kind
    /// (`None`: leaf tables, `Some(k)`: groups of at most `k` splits).
    fn explainer_with(model: &TrainedModel, group: Option<usize>) -> TreeExplainer {
        let path = TreeExplainer::with_budget(model, 0).unwrap();
        let trees = model
            .trees()
            .iter()
            .filter(|t| t.nodes.len() > 1)
            .map(|t| TreeAlgo::Table(TreePlan::build(t, path.scale, group).unwrap()))
            .collect();
        TreeExplainer { trees, ..path }
    }

    /// Checks every kind of table against the path algorithm (budget 0),
    /// the raw score, and on `rows` of `x` the brute force.
    fn check_model(model: &TrainedModel, x: &FeatureMatrix, rows: &[usize]) {
        let cols = x.column_slices();
        let n = x.n_rows();
        let default = TreeExplainer::new(model).unwrap();
        assert_eq!(
            default.path_trees(),
            0,
            "every tree fits the default budget"
        );
        let path = TreeExplainer::with_budget(model, 0).unwrap();
        assert_eq!(path.table_trees(), (0, 0));
        let ep = path.shap_values(&cols, n).unwrap();
        for (what, e) in [
            ("default", default),
            ("leaves", explainer_with(model, None)),
            ("groups of 0", explainer_with(model, Some(0))),
            ("groups of 1", explainer_with(model, Some(1))),
            ("groups of 3", explainer_with(model, Some(3))),
            ("groups of 7", explainer_with(model, Some(7))),
        ] {
            let ef = e.shap_values(&cols, n).unwrap();
            assert_eq!(ef.expected_value, ep.expected_value);
            for k in [0, 1, 3, 40] {
                let top = e.top_k(&cols, n, k).unwrap();
                assert_eq!(top.expected_value, ef.expected_value);
                for r in 0..n {
                    assert_eq!(top.row(r), &ef.top_k(r, k)[..], "{what}: row {r}, k {k}");
                }
            }
            for r in 0..n {
                assert_close(ef.row(r), ep.row(r), &format!("{what}: row {r} vs path"));
                let total = ef.expected_value + ef.row(r).iter().sum::<f64>();
                let raw = raw_score(model, &cols, r);
                assert!(
                    (total - raw).abs() < 1e-9,
                    "{what}: row {r}: {total} vs {raw}"
                );
            }
            for &r in rows {
                let row: Vec<f64> = cols.iter().map(|c| c[r]).collect();
                assert_close(
                    ef.row(r),
                    &brute_force_model(model, &row),
                    &format!("{what}: row {r} vs brute force"),
                );
            }
        }
    }

    #[test]
    fn tables_equal_brute_force_and_path_algorithm() {
        let (x, y) = random_data(7, 800, 4);
        let nan_rows: Vec<usize> = (0..x.n_rows())
            .filter(|&r| x.column(0)[r].is_nan())
            .take(4)
            .collect();
        assert!(!nan_rows.is_empty());
        let mut rows = vec![0, 1, 2, 399, 799];
        rows.extend(nan_rows);
        for spec in [
            ModelSpec::Gbt(GbtParams {
                max_iter: 8,
                max_depth: 6,
                ..GbtParams::default()
            }),
            ModelSpec::RandomForest(RfParams {
                num_trees: 6,
                max_depth: 6,
                feature_subset_strategy: crate::params::FeatureSubsetStrategy::All,
                ..RfParams::default()
            }),
        ] {
            let model = train(&spec, &x, &y).unwrap();
            assert!(repeats_a_feature(&model), "{spec:?}");
            assert!(model.trees().iter().any(|t| t.depth() == 6), "{spec:?}");
            assert!(model
                .trees()
                .iter()
                .flat_map(|t| &t.nodes)
                .any(|n| !n.is_leaf() && n.missing_left));
            check_model(&model, &x, &rows);
        }
    }

    #[test]
    fn tables_are_exact_on_random_models() {
        for seed in 0..12u64 {
            let nf = 2 + (seed % 5) as usize;
            let (x, y) = random_data(100 + seed, 300 + 50 * seed as usize, nf);
            let depth = 1 + (seed % 6) as usize;
            let spec = if seed % 2 == 0 {
                ModelSpec::Gbt(GbtParams {
                    max_iter: 3 + seed as usize % 4,
                    max_depth: depth,
                    step_size: 0.3,
                    seed,
                    ..GbtParams::default()
                })
            } else {
                ModelSpec::RandomForest(RfParams {
                    num_trees: 3 + seed as usize % 3,
                    max_depth: depth,
                    seed,
                    ..RfParams::default()
                })
            };
            let model = train(&spec, &x, &y).unwrap();
            let rows: Vec<usize> = (0..6)
                .map(|k| (hash2(seed, 77, k) % x.n_rows() as u64) as usize)
                .collect();
            check_model(&model, &x, &rows);
        }
    }

    #[test]
    fn budget_picks_tables_then_falls_back_to_the_path_algorithm() {
        let (x, y) = random_data(3, 600, 5);
        let model = train(
            &ModelSpec::RandomForest(RfParams {
                num_trees: 5,
                max_depth: 6,
                ..RfParams::default()
            }),
            &x,
            &y,
        )
        .unwrap();
        let cols = x.column_slices();
        let leaf: Vec<usize> = model
            .trees()
            .iter()
            .map(|t| plan_entries(t, None))
            .collect();
        let group: Vec<usize> = model
            .trees()
            .iter()
            .map(|t| plan_entries(t, Some(GROUP_SPLITS)))
            .collect();
        let all = TreeExplainer::with_budget(&model, usize::MAX).unwrap();
        assert_eq!((all.table_trees(), all.path_trees()), ((0, 5), 0));
        assert_eq!(all.table_entries(), group.iter().sum::<usize>());
        let leaves = explainer_with(&model, None);
        assert_eq!(leaves.table_entries(), leaf.iter().sum::<usize>());
        // Room for the two smallest leaf tables only.
        let mut sorted = leaf.clone();
        sorted.sort();
        let some = TreeExplainer::with_budget(&model, sorted[0] + sorted[1]).unwrap();
        let (l, g) = some.table_trees();
        assert_eq!((l + g, some.path_trees()), (2, 3));
        assert!(some.table_entries() <= sorted[0] + sorted[1]);
        // Every leaf table and one group upgrade.
        let min_extra = (0..5).map(|i| group[i] - leaf[i]).min().unwrap();
        let mixed =
            TreeExplainer::with_budget(&model, leaf.iter().sum::<usize>() + min_extra).unwrap();
        let (l, g) = mixed.table_trees();
        assert!(g >= 1 && l + g == 5, "{l} {g}");
        let none = TreeExplainer::with_budget(&model, sorted[0] - 1).unwrap();
        assert_eq!((none.table_trees(), none.path_trees()), ((0, 0), 5));
        let want = all.shap_values(&cols, x.n_rows()).unwrap();
        for e in [&leaves, &some, &mixed, &none] {
            let got = e.shap_values(&cols, x.n_rows()).unwrap();
            assert_eq!(got.expected_value, want.expected_value);
            for r in 0..x.n_rows() {
                assert_close(got.row(r), want.row(r), &format!("row {r}"));
            }
        }
        let got = none.shap_values(&cols, x.n_rows()).unwrap();
        for r in [0usize, 10, 333] {
            let row: Vec<f64> = cols.iter().map(|c| c[r]).collect();
            assert_close(got.row(r), &brute_force_model(&model, &row), "brute force");
        }
    }

    fn split(feature: u32, threshold: f64, left: u32, count: f64) -> Node {
        Node {
            feature,
            threshold,
            threshold_bin: 1,
            missing_left: feature == 1,
            left,
            right: left + 1,
            value: 0.0,
            gain: 1.0,
            count,
        }
    }

    #[test]
    fn zero_cover_child_uses_the_path_algorithm() {
        // Node 2's left child has no training rows (z = 0 on that path).
        let zero = Tree {
            nodes: vec![
                split(0, 0.5, 1, 10.0),
                split(1, 1.5, 3, 4.0),
                split(0, 2.5, 5, 6.0),
                Node::leaf(1.0, 3.0),
                Node::leaf(-2.0, 1.0),
                Node::leaf(5.0, 0.0),
                Node::leaf(0.5, 6.0),
            ],
        };
        // The same shape with covers, splitting feature 0 twice on a path.
        let mut fine = zero.clone();
        fine.nodes[5].count = 2.0;
        fine.nodes[6].count = 4.0;
        let trees = vec![zero, fine];
        let e = TreeExplainer::from_trees(ModelKind::Gbt, 2, 0.25, &trees, usize::MAX, 3).unwrap();
        assert_eq!((e.table_trees(), e.path_trees()), ((0, 1), 1));
        for group in [None, Some(0), Some(1), Some(3)] {
            assert!(TreePlan::build(&trees[0], 1.0, group).is_none());
        }
        let a = [0.0, 1.0, 2.0, 3.0, f64::NAN, 0.5];
        let b = [1.0, 2.0, f64::NAN, 1.5, 0.0, f64::NAN];
        let cols: Vec<&[f64]> = vec![&a, &b];
        let got = e.shap_values(&cols, a.len()).unwrap();
        for r in 0..a.len() {
            let row = [a[r], b[r]];
            let mut want = [0.0; 2];
            for t in &trees {
                for (w, v) in want.iter_mut().zip(brute_force(t, &row, 2)) {
                    *w += v;
                }
            }
            assert_close(got.row(r), &want, &format!("row {r}"));
        }
        let path = TreeExplainer::from_trees(ModelKind::Gbt, 2, 0.25, &trees, 0, 3).unwrap();
        assert_eq!(path.shap_values(&cols, a.len()).unwrap().values.len(), 12);
        // Too few columns, a split on a missing feature, no cover: errors.
        assert!(e.shap_values(&cols[..1], a.len()).is_err());
        assert!(TreeExplainer::from_trees(ModelKind::Gbt, 1, 0.0, &trees, 0, 3).is_err());
        let mut bad = trees.clone();
        bad[1].nodes[2].count = 0.0;
        assert!(TreeExplainer::from_trees(ModelKind::Gbt, 2, 0.0, &bad, 0, 3).is_err());
    }

    #[test]
    fn top_k_matches_a_full_sort() {
        let vals = [0.5, -0.5, 0.0, -0.0, 2.0, -2.0, 1e-9, f64::NAN, 0.5, 3.0];
        for seed in 0..50u64 {
            let nf = 1 + (seed % 40) as usize;
            let values: Vec<f64> = (0..2 * nf)
                .map(|i| vals[(hash2(seed, i as u64, 0) % vals.len() as u64) as usize])
                .collect();
            let e = Explanation {
                expected_value: 0.0,
                values,
                n_features: nf,
            };
            for r in 0..2 {
                let mut want: Vec<(usize, f64)> = e.row(r).iter().copied().enumerate().collect();
                want.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
                for k in [0, 1, 2, 3, 5, 16, 17, 25, 60] {
                    let got = e.top_k(r, k);
                    let w = &want[..k.min(nf)];
                    assert_eq!(got.len(), w.len());
                    for (g, w) in got.iter().zip(w) {
                        assert_eq!(g.0, w.0, "seed {seed} k {k}");
                        assert_eq!(g.1.to_bits(), w.1.to_bits());
                    }
                }
            }
        }
    }
}
