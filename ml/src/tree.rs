//! A trained decision tree and its prediction over raw or binned columns.

use serde::{Deserialize, Serialize};

use crate::binning::BinnedMatrix;

/// One node of a tree. A node is a leaf when `left == 0` (the root is never a child).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Split feature (index into the model's feature names).
    pub feature: u32,
    /// Raw split threshold: `value <= threshold` goes left.
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
            let b = binned.column(n.feature as usize)[r];
            let go_left = if b == 0 {
                n.missing_left
            } else {
                b <= n.threshold_bin
            };
            i = if go_left { n.left } else { n.right } as usize;
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
    pub fn truncated(&self, max_depth: usize) -> Tree {
        let mut nodes = Vec::new();
        fn copy(t: &Tree, i: usize, depth: usize, max_depth: usize, out: &mut Vec<Node>) -> u32 {
            let idx = out.len();
            let n = &t.nodes[i];
            if n.is_leaf() || depth >= max_depth {
                out.push(Node::leaf(n.value, n.count));
                return idx as u32;
            }
            out.push(n.clone());
            let l = copy(t, n.left as usize, depth + 1, max_depth, out);
            let r = copy(t, n.right as usize, depth + 1, max_depth, out);
            out[idx].left = l;
            out[idx].right = r;
            idx as u32
        }
        copy(self, 0, 0, max_depth, &mut nodes);
        Tree { nodes }
    }
}

/// A prediction-only layout of a [`Tree`]: breadth-first, right child =
/// left child + 1, leaves loop onto themselves. Every row then takes exactly
/// `depth` branch-free steps, and a block of rows advances level by level, so
/// the steps of different rows overlap in the CPU instead of waiting on each
/// other's loads.
#[derive(Debug, Clone)]
pub struct FlatTree {
    feature: Vec<u32>,
    threshold: Vec<f64>,
    missing_left: Vec<bool>,
    left: Vec<u32>,
    value: Vec<f64>,
    depth: usize,
}

/// Rows advanced together by [`FlatTree::add_block`].
pub const FLAT_BLOCK: usize = 256;

impl FlatTree {
    /// Converts a tree.
    pub fn new(tree: &Tree) -> Self {
        let mut f = FlatTree {
            feature: Vec::new(),
            threshold: Vec::new(),
            missing_left: Vec::new(),
            left: Vec::new(),
            value: Vec::new(),
            depth: tree.depth(),
        };
        // Breadth-first: (source node) in the order they are placed.
        let mut order = vec![0usize];
        let mut k = 0;
        while k < order.len() {
            let n = &tree.nodes[order[k]];
            let me = k as u32;
            f.value.push(n.value);
            if n.is_leaf() {
                f.feature.push(0);
                f.threshold.push(f64::INFINITY);
                f.missing_left.push(true);
                f.left.push(me);
            } else {
                f.feature.push(n.feature);
                f.threshold.push(n.threshold);
                f.missing_left.push(n.missing_left);
                f.left.push(order.len() as u32);
                order.push(n.left as usize);
                order.push(n.right as usize);
            }
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
                let node = *i as usize;
                let v = cols[self.feature[node] as usize][start + r];
                let go_left = (v <= self.threshold[node]) | (self.missing_left[node] & v.is_nan());
                *i = self.left[node] + (!go_left) as u32;
            }
        }
        for (o, &i) in out[..n].iter_mut().zip(&idx[..n]) {
            *o += self.value[i as usize];
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
}
