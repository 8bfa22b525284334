//! The one level-wise tree grower, resumable between histogram requests.
//!
//! A [`LevelGrower`] grows a set of trees one depth level at a time. It
//! never computes a histogram itself: it says which nodes it needs
//! ([`LevelGrower::requests`]) and takes them back
//! ([`LevelGrower::absorb`]), then picks every open node's split with the
//! learner's rules ([`crate::learner::best_split_of`],
//! [`crate::learner::more_features`]) and plans the next level. When every
//! feature is a candidate only the smaller child is requested; its sibling
//! is the parent's histogram minus it. As in LightGBM's data-parallel
//! learner, the two trainers differ only in where histograms come from:
//!
//! * the local trainer ([`crate::learner::grow_trees`]) keeps each node's
//!   row ids beside it (`R = Vec<u32>`) and builds histograms from memory;
//! * the distributed trainer ([`crate::distributed::trainer`]) keeps
//!   nothing per node (`R = ()`): the executors route their rows through
//!   the trees in one aggregate pass per level.

use rayon::prelude::*;

use crate::error::{MlError, Result};
use crate::histogram::{BinStats, Histogram};
use crate::learner::{
    best_split_of, extend_node, more_features, node_features, sum_feature, AltMinInstances,
    GrowParams, Split,
};
use crate::tree::{Node, Tree};

/// Where a node is: its tree, its index there, its heap id (root 1,
/// children `2i`, `2i + 1`: the feature-sampling key) and its depth.
#[derive(Debug, Clone, Copy)]
struct Place {
    tree: usize,
    node: usize,
    heap_id: u64,
    depth: usize,
}

/// A node whose histogram is known: split candidates for the next step.
#[derive(Debug)]
struct Open<R> {
    at: Place,
    rows: R,
    features: Vec<usize>,
    hist: Histogram,
    totals: BinStats,
}

/// A node whose histogram the next request provides (or subtraction, when
/// `subtract` = (parent in `open`, sibling in `pending`)).
#[derive(Debug)]
struct Pending<R> {
    at: Place,
    rows: R,
    /// The features to fill (an extended node: the extra ones).
    features: Vec<usize>,
    totals: BinStats,
    subtract: Option<(usize, usize)>,
    /// An open node drawing more features: its histogram and candidates so far.
    extends: Option<(Histogram, Vec<usize>)>,
}

/// One node whose histogram the grower asks for.
#[derive(Debug)]
pub struct NodeAsk<'a, R> {
    /// Position of the node's tree in [`LevelGrower::new`]'s list.
    pub tree: usize,
    /// Index of the node in its tree.
    pub node: usize,
    /// The features whose histograms are wanted, ascending.
    pub features: &'a [usize],
    /// The node's rows (what the caller attached).
    pub rows: &'a R,
}

/// A node that became a leaf, with its rows (for boosting's score update).
#[derive(Debug)]
pub struct FinishedLeaf<R> {
    /// Position of the node's tree in [`LevelGrower::new`]'s list.
    pub tree: usize,
    /// Index of the leaf in its tree.
    pub node: usize,
    /// The leaf's rows.
    pub rows: R,
}

/// One tree to start: its index in the ensemble, its feature-sampling seed
/// and its root rows.
#[derive(Debug, Clone)]
pub struct TreeStart<R> {
    /// Index of the tree in the ensemble (the forest's bootstrap stream).
    pub index: u64,
    /// Seed of per-node feature sampling.
    pub seed: u64,
    /// The root's rows.
    pub rows: R,
}

/// Grows a set of trees level by level from histograms supplied per
/// request; `R` is what the caller keeps per node (row ids, or nothing).
#[derive(Debug)]
pub struct LevelGrower<R> {
    p: GrowParams,
    nf: usize,
    all_features: bool,
    seeds: Vec<u64>,
    index: Vec<u64>,
    trees: Vec<Tree>,
    open: Vec<Open<R>>,
    pending: Vec<Pending<R>>,
    roots_done: bool,
    depth: usize,
}

impl<R: Default + Send + Sync> LevelGrower<R> {
    /// Starts `trees` over `n_features` features; the first request is
    /// every root.
    pub fn new(p: GrowParams, n_features: usize, trees: Vec<TreeStart<R>>) -> Self {
        let nf = n_features;
        let seeds: Vec<u64> = trees.iter().map(|t| t.seed).collect();
        let index: Vec<u64> = trees.iter().map(|t| t.index).collect();
        let n = trees.len();
        let pending = trees
            .into_iter()
            .enumerate()
            .map(|(t, s)| Pending {
                at: Place {
                    tree: t,
                    node: 0,
                    heap_id: 1,
                    depth: 0,
                },
                rows: s.rows,
                features: node_features(nf, p.n_sub_features, s.seed, 1),
                totals: BinStats::default(),
                subtract: None,
                extends: None,
            })
            .collect();
        Self {
            all_features: p.n_sub_features >= nf,
            p,
            nf,
            seeds,
            index,
            trees: vec![Tree { nodes: Vec::new() }; n],
            open: Vec::new(),
            pending,
            roots_done: false,
            depth: 0,
        }
    }

    /// True when every tree is finished.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Depth of the nodes the next request is for.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The trees so far (leaf values unscaled, thresholds not yet filled).
    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// Ensemble index of tree `t` (as given to [`Self::new`]).
    pub fn tree_index(&self, t: usize) -> u64 {
        self.index[t]
    }

    /// The nodes whose histograms [`Self::absorb`] takes next, in order.
    pub fn requests(&self) -> impl Iterator<Item = NodeAsk<'_, R>> {
        self.pending
            .iter()
            .filter(|c| c.subtract.is_none())
            .map(|c| NodeAsk {
                tree: c.at.tree,
                node: c.at.node,
                features: &c.features,
                rows: &c.rows,
            })
    }

    /// Takes the histograms of [`Self::requests`] (in that order), picks
    /// the splits of every open node (`partition` splits a node's rows
    /// under a split into left and right) and plans the next request.
    /// Returns the nodes that became leaves, with their rows; checks
    /// `alts` (see [`AltMinInstances`]).
    pub fn absorb<F>(
        &mut self,
        hists: Vec<Histogram>,
        partition: F,
        alts: Option<&mut AltMinInstances>,
    ) -> Result<Vec<FinishedLeaf<R>>>
    where
        F: Fn(&R, &Split) -> (R, R) + Sync,
    {
        let wanted = self.requests().count();
        if hists.len() != wanted {
            return Err(MlError::Internal(format!(
                "{} histograms for {wanted} requested nodes",
                hists.len()
            )));
        }
        let mut it = hists.into_iter();
        let mut got: Vec<Option<Histogram>> = self
            .pending
            .iter()
            .map(|c| {
                if c.subtract.is_none() {
                    it.next()
                } else {
                    None
                }
            })
            .collect();
        let pending = std::mem::take(&mut self.pending);
        let mut open = Vec::with_capacity(pending.len());
        if !self.roots_done {
            self.roots_done = true;
            for (c, h) in pending.into_iter().zip(got) {
                let hist = h.ok_or_else(|| MlError::Internal("root histogram missing".into()))?;
                let totals = c
                    .features
                    .first()
                    .map(|&j| sum_feature(&hist, j))
                    .unwrap_or_default();
                self.trees[c.at.tree].nodes.push(Node::leaf(
                    self.p.criterion.leaf_value(&totals),
                    totals.count,
                ));
                open.push(Open {
                    at: c.at,
                    rows: c.rows,
                    features: c.features,
                    hist,
                    totals,
                });
            }
        } else {
            for ci in 0..pending.len() {
                if let Some((oi, sib)) = pending[ci].subtract {
                    let sib_hist = got[sib]
                        .as_ref()
                        .ok_or_else(|| MlError::Internal("sibling histogram missing".into()))?;
                    got[ci] = Some(Histogram::subtract(&self.open[oi].hist, sib_hist)?);
                }
            }
            for (c, h) in pending.into_iter().zip(got) {
                let Some(h) = h else { continue };
                let (hist, features) = match c.extends {
                    Some((mut hist, mut features)) => {
                        extend_node(&mut hist, &mut features, &h, &c.features)?;
                        (hist, features)
                    }
                    None => (h, c.features),
                };
                open.push(Open {
                    at: c.at,
                    rows: c.rows,
                    features,
                    hist,
                    totals: c.totals,
                });
            }
        }
        self.open = open;
        Ok(self.split_open(partition, alts))
    }

    /// One step of the learner: splits of the open nodes, children, and
    /// which children need a histogram.
    fn split_open<F>(
        &mut self,
        partition: F,
        alts: Option<&mut AltMinInstances>,
    ) -> Vec<FinishedLeaf<R>>
    where
        F: Fn(&R, &Split) -> (R, R) + Sync,
    {
        let nf = self.nf;
        let p = self.p;
        let seeds = &self.seeds;
        let splits: Vec<Option<Split>> = self
            .open
            .par_iter()
            .map(|o| best_split_of(&o.hist, &o.features, &o.totals, o.at.depth, &p))
            .collect();
        // Nodes without a split whose candidates were all constant draw more features.
        let more: Vec<Option<Vec<usize>>> = self
            .open
            .iter()
            .zip(&splits)
            .map(|(o, s)| {
                s.is_none()
                    .then(|| {
                        more_features(
                            &o.hist,
                            &o.features,
                            &o.totals,
                            o.at.depth,
                            &p,
                            nf,
                            seeds[o.at.tree],
                            o.at.heap_id,
                        )
                    })
                    .flatten()
            })
            .collect();
        if let Some(a) = alts.filter(|a| a.any_agree()) {
            for ((o, s), m) in self.open.iter().zip(&splits).zip(&more) {
                let node = (&o.hist, o.features.as_slice(), &o.totals, o.at.depth);
                a.check(
                    o.at.tree,
                    node,
                    s,
                    m,
                    &p,
                    nf,
                    seeds[o.at.tree],
                    o.at.heap_id,
                );
            }
        }
        let mut leaves = Vec::new();
        for ((o, s), m) in self.open.iter_mut().zip(&splits).zip(&more) {
            if s.is_none() && m.is_none() {
                leaves.push(FinishedLeaf {
                    tree: o.at.tree,
                    node: o.at.node,
                    rows: std::mem::take(&mut o.rows),
                });
            }
        }
        let parts: Vec<Option<(R, R)>> = self
            .open
            .par_iter()
            .zip(&splits)
            .map(|(o, s)| s.as_ref().map(|s| partition(&o.rows, s)))
            .collect();
        let mut children = Vec::new();
        for (oi, (((o, s), part), m)) in self
            .open
            .iter_mut()
            .zip(&splits)
            .zip(parts)
            .zip(more)
            .enumerate()
        {
            if let Some(m) = m {
                children.push(Pending {
                    at: o.at,
                    rows: std::mem::take(&mut o.rows),
                    features: m,
                    totals: o.totals,
                    subtract: None,
                    extends: Some((
                        std::mem::replace(&mut o.hist, Histogram::zeros(&[])),
                        std::mem::take(&mut o.features),
                    )),
                });
                continue;
            }
            let (Some(s), Some((lrows, rrows))) = (s, part) else {
                continue;
            };
            let tree = &mut self.trees[o.at.tree];
            let li = tree.nodes.len();
            tree.nodes
                .push(Node::leaf(p.criterion.leaf_value(&s.left), s.left.count));
            tree.nodes
                .push(Node::leaf(p.criterion.leaf_value(&s.right), s.right.count));
            let n = &mut tree.nodes[o.at.node];
            n.feature = s.feature as u32;
            n.threshold_bin = s.bin;
            n.threshold = f64::NAN; // filled from the bin edges by the caller
            n.missing_left = s.missing_left;
            n.left = li as u32;
            n.right = li as u32 + 1;
            n.gain = s.gain;
            if o.at.depth + 1 >= p.max_depth {
                // Children will be leaves: no histogram needed.
                leaves.push(FinishedLeaf {
                    tree: o.at.tree,
                    node: li,
                    rows: lrows,
                });
                leaves.push(FinishedLeaf {
                    tree: o.at.tree,
                    node: li + 1,
                    rows: rrows,
                });
                continue;
            }
            let seed = seeds[o.at.tree];
            let mk = |heap_id: u64, rows: R, totals: BinStats| Pending {
                at: Place {
                    tree: o.at.tree,
                    node: if heap_id.is_multiple_of(2) {
                        li
                    } else {
                        li + 1
                    },
                    heap_id,
                    depth: o.at.depth + 1,
                },
                rows,
                features: node_features(nf, p.n_sub_features, seed, heap_id),
                totals,
                subtract: None,
                extends: None,
            };
            let mut l = mk(o.at.heap_id.wrapping_mul(2), lrows, s.left);
            let mut r = mk(o.at.heap_id.wrapping_mul(2).wrapping_add(1), rrows, s.right);
            let base = children.len();
            if self.all_features {
                // The smaller child by rows (`count` is the node's row count).
                if s.left.count <= s.right.count {
                    r.subtract = Some((oi, base));
                } else {
                    l.subtract = Some((oi, base + 1));
                }
            }
            children.push(l);
            children.push(r);
        }
        self.depth = children
            .iter()
            .map(|c| c.at.depth)
            .max()
            .unwrap_or(self.depth);
        self.pending = children;
        if self.pending.is_empty() {
            self.open.clear();
        }
        leaves
    }

    /// The grown trees (leaf values unscaled, thresholds not yet filled).
    pub fn into_trees(self) -> Vec<Tree> {
        self.trees
    }
}
