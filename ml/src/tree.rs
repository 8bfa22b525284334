//! A trained decision tree and its prediction over raw or binned columns.

use serde::{Deserialize, Serialize};

use crate::binning::BinnedMatrix;

/// One node of a tree. A node is a leaf when `left == 0` (the root is never a child).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Split feature (index into the model's feature names).
    pub feature: u32,
    /// Raw split threshold: `value <= threshold` goes left. `+inf` (the
    /// split "every value left, missing right") is written as `"inf"`.
    #[serde(with = "threshold_json")]
    pub threshold: f64,
    /// The same split on bins: `bin <= thresholdBin` goes left (bin 0 = missing excluded).
    pub threshold_bin: u8,
    /// Where missing values go (learned during training).
    pub missing_left: bool,
    /// Left child index (0 for a leaf).
    pub left: u32,
    /// Right child index (0 for a leaf).
    pub right: u32,
    /// Output of the node were it a leaf (GBT: shrunken Newton step; forest: P(class 1)).
    pub value: f64,
    /// Gain of this node's split (0 for a leaf).
    pub gain: f64,
    /// Training rows that reached the node.
    pub count: f64,
}

/// JSON has no infinity (`serde_json` writes `null` and cannot read it back
/// as `f64`): thresholds are numbers when finite, else `"inf"` / `"-inf"` / `"nan"`.
mod threshold_json {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("nan")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    struct Threshold;

    impl Visitor<'_> for Threshold {
        type Value = f64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number or one of \"inf\", \"-inf\", \"nan\"")
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            match v {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(Threshold)
    }
}

impl Node {
    /// A leaf with the given value.
    pub fn leaf(value: f64, count: f64) -> Self {
        Self {
            feature: 0,
            threshold: 0.0,
            threshold_bin: 0,
            missing_left: false,
            left: 0,
            right: 0,
            value,
            gain: 0.0,
            count,
        }
    }

    /// The child that row `r` of binned columns goes to (a split node's).
    #[inline]
    fn child_binned(&self, binned: &BinnedMatrix, r: usize) -> usize {
        let b = binned.column(self.feature as usize)[r];
        let go_left = if b == 0 {
            self.missing_left
        } else {
            b <= self.threshold_bin
        };
        (if go_left { self.left } else { self.right }) as usize
    }

    /// True when the node has no children.
    #[inline]
    pub fn is_leaf(&self) -> bool {
        self.left == 0
    }
}

/// A binary decision tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Nodes; children always have larger indices than their parent.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The leaf value for row `r` of raw columns (`NaN` = missing).
    #[inline]
    pub fn predict_row(&self, cols: &[&[f64]], r: usize) -> f64 {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.is_leaf() {
                return n.value;
            }
            let v = cols[n.feature as usize][r];
            let go_left = v <= n.threshold || (n.missing_left && v.is_nan());
            i = if go_left { n.left } else { n.right } as usize;
        }
    }

    /// The leaf value for row `r` of binned columns.
    #[inline]
    pub fn predict_binned(&self, binned: &BinnedMatrix, r: usize) -> f64 {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.is_leaf() {
                return n.value;
            }
            i = n.child_binned(binned, r);
        }
    }

    /// The values row `r` of binned columns reaches at each depth:
    /// `out[d]` is what the tree cut at depth `d` ([`Tree::truncated`])
    /// predicts for the row (the leaf's value once the path ends).
    pub fn path_values_binned(&self, binned: &BinnedMatrix, r: usize, out: &mut [f64]) {
        let mut i = 0usize;
        for o in out.iter_mut() {
            let n = &self.nodes[i];
            *o = n.value;
            if !n.is_leaf() {
                i = n.child_binned(binned, r);
            }
        }
    }

    /// Adds `scale * leaf value` of rows `start..start+out.len()` to `out`.
    pub fn add_to(&self, cols: &[&[f64]], start: usize, out: &mut [f64], scale: f64) {
        for (k, o) in out.iter_mut().enumerate() {
            *o += scale * self.predict_row(cols, start + k);
        }
    }

    /// Depth of the tree (0 for a single leaf).
    pub fn depth(&self) -> usize {
        fn d(t: &Tree, i: usize) -> usize {
            let n = &t.nodes[i];
            if n.is_leaf() {
                0
            } else {
                1 + d(t, n.left as usize).max(d(t, n.right as usize))
            }
        }
        d(self, 0)
    }

    /// The tree cut at `max_depth`: deeper nodes removed, nodes at that depth become leaves.
    ///
    /// Nodes are numbered breadth-first with siblings adjacent, the order the
    /// learner creates them in, so the cut tree is node-for-node the tree the
    /// learner grows with `max_depth` directly.
    pub fn truncated(&self, max_depth: usize) -> Tree {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        // (source node, depth), in output order.
        let mut queue = std::collections::VecDeque::from([(0usize, 0usize)]);
        while let Some((i, depth)) = queue.pop_front() {
            let n = &self.nodes[i];
            if n.is_leaf() || depth >= max_depth {
                nodes.push(Node::leaf(n.value, n.count));
                continue;
            }
            // Queued nodes are output before this node's children.
            let left = (nodes.len() + queue.len() + 1) as u32;
            nodes.push(Node {
                left,
                right: left + 1,
                ..n.clone()
            });
            queue.push_back((n.left as usize, depth + 1));
            queue.push_back((n.right as usize, depth + 1));
        }
        Tree { nodes }
    }
}

/// A prediction-only layout of a [`Tree`]: breadth-first, right child =
/// left child + 1, leaves loop onto themselves. Every row then takes exactly
/// `depth` branch-free steps, and a block of rows advances level by level, so
/// the steps of different rows overlap in the CPU instead of waiting on each
/// other's loads.
///
/// [`FlatTree::add_block_rows`] reads rows from a [`RowBlock`], where a
/// feature is stored with missing as `+inf` for splits that send missing
/// right and as `-inf` for splits that send it left ([`RowLayout`]), so a
/// step is a single `v <= threshold` comparison.
#[derive(Debug, Clone)]
pub struct FlatTree {
    nodes: Vec<FlatNode>,
    /// The same nodes for [`RowBlock`]s: `feature` indexes the doubled row.
    row_nodes: Vec<FlatNode>,
    /// False when a threshold is `f64::MAX` or NaN, which the row layout cannot tell apart.
    rows_exact: bool,
    value: Vec<f64>,
    depth: usize,
}

/// One node of a [`FlatTree`] in 16 bytes (one load for a step).
#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// `value <= threshold` goes left (`+inf` on leaves).
    threshold: f64,
    /// Split feature; the top bit set when missing values go left.
    feature: u32,
    /// Left child (the right child is `left + 1`); a leaf points to itself.
    left: u32,
}

/// The `missing_left` bit of [`FlatNode::feature`].
const MISSING_LEFT: u32 = 1 << 31;

/// Rows advanced together by [`FlatTree::add_block`].
pub const FLAT_BLOCK: usize = 256;

impl FlatTree {
    /// Converts a tree, for row blocks of [`RowLayout::full`].
    pub fn new(tree: &Tree) -> Self {
        Self::build(tree, |j, missing_left| 2 * j + missing_left as u32)
    }

    /// Converts a tree, for row blocks of `layout` (which must hold every
    /// (feature, missing direction) of the tree's splits).
    pub fn with_layout(tree: &Tree, layout: &RowLayout) -> Self {
        Self::build(tree, |j, missing_left| layout.slot(j, missing_left))
    }

    fn build(tree: &Tree, slot: impl Fn(u32, bool) -> u32) -> Self {
        let mut f = FlatTree {
            nodes: Vec::with_capacity(tree.nodes.len()),
            row_nodes: Vec::with_capacity(tree.nodes.len()),
            rows_exact: true,
            value: Vec::with_capacity(tree.nodes.len()),
            depth: tree.depth(),
        };
        // Breadth-first: (source node) in the order they are placed.
        let mut order = vec![0usize];
        let mut k = 0;
        while k < order.len() {
            let n = &tree.nodes[order[k]];
            f.value.push(n.value);
            if n.is_leaf() {
                f.row_nodes.push(FlatNode {
                    threshold: f64::INFINITY,
                    feature: 0,
                    left: k as u32,
                });
            } else {
                // In a row block +inf values are stored as f64::MAX, missing as +-inf.
                f.rows_exact &= n.threshold != f64::MAX && !n.threshold.is_nan();
                f.row_nodes.push(FlatNode {
                    threshold: if n.threshold == f64::INFINITY {
                        f64::MAX
                    } else {
                        n.threshold
                    },
                    feature: slot(n.feature, n.missing_left),
                    left: order.len() as u32,
                });
            }
            f.nodes.push(if n.is_leaf() {
                FlatNode {
                    threshold: f64::INFINITY,
                    feature: MISSING_LEFT,
                    left: k as u32,
                }
            } else {
                let node = FlatNode {
                    threshold: n.threshold,
                    feature: n.feature | if n.missing_left { MISSING_LEFT } else { 0 },
                    left: order.len() as u32,
                };
                order.push(n.left as usize);
                order.push(n.right as usize);
                node
            });
            k += 1;
        }
        f
    }

    /// Adds the leaf values of rows `start..start + out.len()` (at most
    /// [`FLAT_BLOCK`] rows) to `out`.
    pub fn add_block(&self, cols: &[&[f64]], start: usize, out: &mut [f64]) {
        let n = out.len().min(FLAT_BLOCK);
        let mut idx = [0u32; FLAT_BLOCK];
        for _ in 0..self.depth {
            for (r, i) in idx[..n].iter_mut().enumerate() {
                let node = self.nodes[*i as usize];
                let v = cols[(node.feature & !MISSING_LEFT) as usize][start + r];
                let go_left =
                    (v <= node.threshold) | ((node.feature & MISSING_LEFT != 0) & v.is_nan());
                *i = node.left + (!go_left) as u32;
            }
        }
        for (o, &i) in out[..n].iter_mut().zip(&idx[..n]) {
            *o += self.value[i as usize];
        }
    }

    /// Whether [`FlatTree::add_block_rows`] gives exactly [`FlatTree::add_block`]'s result.
    pub fn rows_exact(&self) -> bool {
        self.rows_exact
    }

    /// Adds the leaf values of the rows of `block` to `out` (`out.len()` = its rows).
    pub fn add_block_rows(&self, block: &RowBlock, out: &mut [f64]) {
        let n = out.len().min(ROW_BLOCK);
        let width = block.width;
        let mut idx = [0u32; ROW_BLOCK];
        for _ in 0..self.depth {
            for (row, i) in block.values.chunks_exact(width).zip(idx[..n].iter_mut()) {
                let node = self.row_nodes[*i as usize];
                let go_left = row[node.feature as usize] <= node.threshold;
                *i = node.left + (!go_left) as u32;
            }
        }
        for (o, &i) in out[..n].iter_mut().zip(&idx[..n]) {
            *o += self.value[i as usize];
        }
    }
}

/// Rows of a [`RowBlock`].
pub const ROW_BLOCK: usize = 16;

/// The values a [`RowBlock`] holds per row: slots of (feature, missing
/// direction). A slot for missing-right splits stores missing as `+inf`, one
/// for missing-left splits as `-inf`; `+inf` itself is stored as `f64::MAX`.
#[derive(Debug, Clone, PartialEq)]
pub struct RowLayout {
    slots: Vec<(u32, bool)>,
    /// Per feature, the slot of each missing direction (`u32::MAX` = none).
    index: Vec<[u32; 2]>,
}

impl RowLayout {
    /// Both copies of every feature: feature `j` at slots `2j` and `2j + 1`.
    pub fn full(n_features: usize) -> Self {
        Self::from_slots(
            n_features,
            (0..n_features as u32).flat_map(|j| [(j, false), (j, true)]),
        )
    }

    /// Only the copies the splits of `trees` read.
    pub fn of_trees(n_features: usize, trees: &[Tree]) -> Self {
        let mut used: Vec<(u32, bool)> = trees
            .iter()
            .flat_map(|t| t.nodes.iter().filter(|n| !n.is_leaf()))
            .map(|n| (n.feature, n.missing_left))
            .collect();
        used.sort_unstable();
        used.dedup();
        Self::from_slots(n_features, used)
    }

    fn from_slots(n_features: usize, slots: impl IntoIterator<Item = (u32, bool)>) -> Self {
        let slots: Vec<(u32, bool)> = slots.into_iter().collect();
        let mut index = vec![[u32::MAX; 2]; n_features];
        for (s, &(j, ml)) in slots.iter().enumerate() {
            if let Some(ix) = index.get_mut(j as usize) {
                ix[ml as usize] = s as u32;
            }
        }
        Self { slots, index }
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.slots.len()
    }

    /// The slot of (feature `j`, missing direction); `u32::MAX` when absent.
    pub fn slot(&self, j: u32, missing_left: bool) -> u32 {
        self.index
            .get(j as usize)
            .map_or(u32::MAX, |ix| ix[missing_left as usize])
    }
}

/// Up to [`ROW_BLOCK`] rows copied row-major for [`FlatTree::add_block_rows`],
/// one value per slot of a [`RowLayout`].
#[derive(Debug, Clone)]
pub struct RowBlock {
    values: Vec<f64>,
    slots: Vec<(u32, bool)>,
    width: usize,
}

impl RowBlock {
    /// An empty block of `layout`.
    pub fn new(layout: &RowLayout) -> Self {
        Self {
            values: vec![0.0; ROW_BLOCK * layout.width()],
            slots: layout.slots.clone(),
            width: layout.width(),
        }
    }

    /// Loads rows `start..start + n` (`n <= ROW_BLOCK`) of `cols`.
    pub fn load(&mut self, cols: &[&[f64]], start: usize, n: usize) {
        let n = n.min(ROW_BLOCK);
        for (s, &(j, missing_left)) in self.slots.iter().enumerate() {
            let missing = if missing_left {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
            for (k, &v) in cols[j as usize][start..start + n].iter().enumerate() {
                self.values[k * self.width + s] = if v.is_nan() {
                    missing
                } else if v == f64::INFINITY {
                    f64::MAX
                } else {
                    v
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump() -> Tree {
        Tree {
            nodes: vec![
                Node {
                    feature: 0,
                    threshold: 1.5,
                    threshold_bin: 1,
                    missing_left: true,
                    left: 1,
                    right: 2,
                    value: 0.5,
                    gain: 1.0,
                    count: 4.0,
                },
                Node::leaf(-1.0, 2.0),
                Node::leaf(2.0, 2.0),
            ],
        }
    }

    #[test]
    fn raw_and_binned_agree() {
        let t = stump();
        let col = [1.0, 2.0, f64::NAN, 1.5];
        let cols: Vec<&[f64]> = vec![&col];
        let preds: Vec<f64> = (0..4).map(|r| t.predict_row(&cols, r)).collect();
        assert_eq!(preds, vec![-1.0, 2.0, -1.0, -1.0]);
        let b = BinnedMatrix::from_columns(vec![vec![1, 2, 0, 1]], vec![3]).unwrap();
        let pb: Vec<f64> = (0..4).map(|r| t.predict_binned(&b, r)).collect();
        assert_eq!(preds, pb);
        assert_eq!(t.depth(), 1);
        assert_eq!(t.truncated(0).nodes, vec![Node::leaf(0.5, 4.0)]);
        let flat = FlatTree::new(&t);
        let mut out = vec![0.0; 4];
        flat.add_block(&cols, 0, &mut out);
        assert_eq!(out, preds);
    }

    fn split(feature: u32, threshold: f64, left: u32) -> Node {
        Node {
            feature,
            threshold,
            threshold_bin: 1,
            missing_left: false,
            left,
            right: left + 1,
            value: 0.0,
            gain: 1.0,
            count: 4.0,
        }
    }

    #[test]
    fn truncation_keeps_the_learners_breadth_first_order() {
        // Depth 3, nodes numbered as the learner creates them (level by level, siblings adjacent).
        let t = Tree {
            nodes: vec![
                split(0, 0.0, 1),
                split(1, 1.0, 3),
                split(1, 2.0, 5),
                split(0, 3.0, 7),
                Node::leaf(0.4, 1.0),
                Node::leaf(0.5, 1.0),
                Node::leaf(0.6, 1.0),
                Node::leaf(0.7, 1.0),
                Node::leaf(0.8, 1.0),
            ],
        };
        assert_eq!(t.truncated(3), t);
        assert_eq!(t.truncated(9), t);
        let cut = t.truncated(2);
        assert_eq!(cut.nodes.len(), 7);
        assert_eq!(cut.nodes[..3], t.nodes[..3]);
        assert_eq!(cut.nodes[3], Node::leaf(0.0, 4.0));
        assert_eq!(cut.nodes[4..], t.nodes[4..7]);
        assert_eq!(cut.depth(), 2);
    }

    #[test]
    fn infinite_thresholds_survive_json() {
        let mut t = stump();
        t.nodes[0].threshold = f64::INFINITY;
        let s = serde_json::to_string(&t).unwrap();
        assert!(s.contains(r#""threshold":"inf""#), "{s}");
        let back: Tree = serde_json::from_str(&s).unwrap();
        assert_eq!(back, t);
        let back: Tree = serde_json::from_str(&serde_json::to_string(&stump()).unwrap()).unwrap();
        assert_eq!(back, stump());
    }

    #[test]
    fn row_blocks_route_missing_and_infinite_values_like_columns() {
        // Root: every value left, missing right (threshold +inf); children
        // split with missing left and missing right.
        let mut root = split(0, f64::INFINITY, 1);
        root.missing_left = false;
        let mut l = split(1, 0.5, 3);
        l.missing_left = true;
        let mut r = split(1, -1.0, 5);
        r.missing_left = false;
        let mut nodes = vec![root, l, r];
        nodes.extend((0..4).map(|k| Node::leaf(k as f64 + 1.0, 1.0)));
        let t = Tree { nodes };
        let vals = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.5,
            0.7,
            -1.0,
            -3.0,
        ];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for &x in &vals {
            for &y in &vals {
                a.push(x);
                b.push(y);
            }
        }
        let cols: Vec<&[f64]> = vec![&a, &b];
        let column_wise = FlatTree::new(&t);
        for layout in [
            RowLayout::full(2),
            RowLayout::of_trees(2, std::slice::from_ref(&t)),
        ] {
            let flat = FlatTree::with_layout(&t, &layout);
            assert!(flat.rows_exact());
            let mut block = RowBlock::new(&layout);
            for start in (0..a.len()).step_by(ROW_BLOCK) {
                let n = ROW_BLOCK.min(a.len() - start);
                let mut by_cols = vec![0.0; n];
                column_wise.add_block(&cols, start, &mut by_cols);
                block.load(&cols, start, n);
                let mut by_rows = vec![0.0; n];
                flat.add_block_rows(&block, &mut by_rows);
                assert_eq!(by_rows, by_cols);
                for (k, v) in by_cols.iter().enumerate() {
                    assert_eq!(*v, t.predict_row(&cols, start + k));
                }
            }
        }
    }
}
