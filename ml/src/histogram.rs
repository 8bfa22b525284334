//! Mergeable gradient histograms and the `HistogramSource` abstraction.
//!
//! A [`Histogram`] holds, for one tree node, the sums of gradient, hessian and
//! row count per (feature, bin). It is a plain serializable struct: partial
//! histograms of row partitions merge by addition ([`Histogram::merge`]), and
//! a sibling's histogram is its parent's minus its own ([`Histogram::subtract`]).
//! The tree learner only asks a [`HistogramSource`] for the histograms of a set
//! of nodes; [`LocalHistogramSource`] computes them with rayon on this machine,
//! a distributed source (DataFusion UDAF on executors) returns the same structs.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::binning::BinnedMatrix;
use crate::error::{MlError, Result};

/// Sums over the rows of one (node, feature, bin) cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BinStats {
    /// Sum of gradients (GBT) or of weighted positive labels (random forest).
    pub grad: f64,
    /// Sum of hessians (GBT) or of row weights (random forest).
    pub hess: f64,
    /// Number of rows.
    pub count: f64,
}

impl BinStats {
    /// Component-wise sum.
    #[inline]
    pub fn add(&mut self, o: &BinStats) {
        self.grad += o.grad;
        self.hess += o.hess;
        self.count += o.count;
    }

    /// Component-wise difference `self - o`.
    #[inline]
    pub fn minus(&self, o: &BinStats) -> BinStats {
        BinStats {
            grad: self.grad - o.grad,
            hess: self.hess - o.hess,
            count: self.count - o.count,
        }
    }
}

/// Histogram of one node: [`BinStats`] per (feature, bin), features laid out
/// back to back (`offsets[j]..offsets[j+1]` are feature `j`'s bins, bin 0 = missing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    offsets: Vec<u32>,
    bins: Vec<BinStats>,
}

impl Histogram {
    /// An all-zero histogram for features with `n_bins[j]` bins each (missing bin included).
    pub fn zeros(n_bins: &[u16]) -> Self {
        let mut offsets = Vec::with_capacity(n_bins.len() + 1);
        let mut acc = 0u32;
        offsets.push(0);
        for &nb in n_bins {
            acc += nb as u32;
            offsets.push(acc);
        }
        Self {
            offsets,
            bins: vec![BinStats::default(); acc as usize],
        }
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The bins of feature `j`.
    pub fn feature(&self, j: usize) -> &[BinStats] {
        &self.bins[self.offsets[j] as usize..self.offsets[j + 1] as usize]
    }

    /// Mutable bins of feature `j`.
    pub fn feature_mut(&mut self, j: usize) -> &mut [BinStats] {
        &mut self.bins[self.offsets[j] as usize..self.offsets[j + 1] as usize]
    }

    /// Mutable per-feature slices, for filling features in parallel.
    pub fn features_mut(&mut self) -> Vec<&mut [BinStats]> {
        let mut out = Vec::with_capacity(self.n_features());
        let mut rest: &mut [BinStats] = &mut self.bins;
        for w in self.offsets.windows(2) {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut((w[1] - w[0]) as usize);
            out.push(head);
            rest = tail;
        }
        out
    }

    /// Adds another partial histogram of the same layout (partial states of
    /// row partitions combine by addition).
    pub fn merge(&mut self, other: &Histogram) -> Result<()> {
        if self.offsets != other.offsets {
            return Err(MlError::Internal(format!(
                "cannot merge histograms of different layouts ({} vs {} features, {} vs {} bins)",
                self.n_features(),
                other.n_features(),
                self.bins.len(),
                other.bins.len()
            )));
        }
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            a.add(b);
        }
        Ok(())
    }

    /// `parent - child`: the histogram of the child's sibling.
    pub fn subtract(parent: &Histogram, child: &Histogram) -> Result<Histogram> {
        if parent.offsets != child.offsets {
            return Err(MlError::Internal(
                "cannot subtract histograms of different layouts".into(),
            ));
        }
        Ok(Histogram {
            offsets: parent.offsets.clone(),
            bins: parent
                .bins
                .iter()
                .zip(&child.bins)
                .map(|(p, c)| p.minus(c))
                .collect(),
        })
    }

    /// Accumulates the rows `rows` (with per-row `grad`/`hess` aligned to
    /// `rows`) of `binned` into the given features of this histogram.
    pub fn accumulate(
        &mut self,
        binned: &BinnedMatrix,
        rows: &[u32],
        grad: &[f32],
        hess: &[f32],
        features: &[usize],
    ) {
        let mut slices = self.features_mut();
        for &j in features {
            fill_feature(&mut slices[j], binned.column(j), rows, grad, hess);
        }
    }
}

/// Where the fill kernels add a feature's sums: a histogram's bins, or the
/// flat `[grad, hess, count]`-per-bin state of a distributed level pass
/// ([`FlatBins`]).
pub(crate) trait BinSums {
    /// Bins of the feature.
    fn n_bins(&self) -> usize;
    /// Adds `(grad, hess, count)` to bin `b`, in that order.
    fn add(&mut self, b: usize, s: &[f64; 3]);
}

impl BinSums for &mut [BinStats] {
    #[inline]
    fn n_bins(&self) -> usize {
        self.len()
    }
    #[inline]
    fn add(&mut self, b: usize, s: &[f64; 3]) {
        let o = &mut self[b];
        o.grad += s[0];
        o.hess += s[1];
        o.count += s[2];
    }
}

/// One feature's bins in a flat `f64` state: `grad, hess, count` per bin.
pub(crate) struct FlatBins<'a>(pub &'a mut [f64]);

impl BinSums for FlatBins<'_> {
    #[inline]
    fn n_bins(&self) -> usize {
        self.0.len() / 3
    }
    #[inline]
    fn add(&mut self, b: usize, s: &[f64; 3]) {
        let o = &mut self.0[b * 3..b * 3 + 3];
        o[0] += s[0];
        o[1] += s[1];
        o[2] += s[2];
    }
}

/// Adds the rows' stats into one feature's bins. The hot loop of training.
///
/// Accumulates in fixed 256-entry arrays (indexing by `u8` needs no bounds
/// check). A feature with few bins (one-hot, flags, hour of day) sends
/// consecutive rows to the same bin, and each addition then waits for the
/// previous one to the same slot; such features alternate rows between four
/// copies of the accumulator, summed at the end.
#[inline]
fn fill_feature<O: BinSums>(out: &mut O, col: &[u8], rows: &[u32], grad: &[f32], hess: &[f32]) {
    if out.n_bins() <= FEW_BINS && rows.len() >= 4 * 256 {
        fill_feature_split(out, col, rows, grad, hess);
        return;
    }
    let mut acc = [[0f64; 3]; 256];
    for ((&r, &g), &h) in rows.iter().zip(grad).zip(hess) {
        let s = &mut acc[col[r as usize] as usize];
        s[0] += g as f64;
        s[1] += h as f64;
        s[2] += 1.0;
    }
    for (b, a) in acc.iter().enumerate().take(out.n_bins()) {
        out.add(b, a);
    }
}

/// One, two or four features' histograms (`(bin column, output)` each)
/// filled by one task.
enum FillTask<'a, O> {
    One((&'a [u8], O)),
    Two((&'a [u8], O), (&'a [u8], O)),
    Four([(&'a [u8], O); 4]),
}

impl<O: BinSums> FillTask<'_, O> {
    fn run(self, rows: &[u32], grad: &[f32], hess: &[f32]) {
        match self {
            FillTask::One((col, mut out)) => fill_feature(&mut out, col, rows, grad, hess),
            FillTask::Two((ca, a), (cb, b)) => fill_group([a, b], [ca, cb], rows, grad, hess),
            FillTask::Four(four) => {
                let cols = [four[0].0, four[1].0, four[2].0, four[3].0];
                fill_group(four.map(|(_, o)| o), cols, rows, grad, hess)
            }
        }
    }
}

/// The fill tasks of one node's features: few-bin features alone (four
/// accumulators), the others by four, then in pairs, sharing each row's
/// index and target loads. Every feature's sums are added in row order,
/// whatever its task.
fn fill_tasks<'a, O: BinSums>(cells: Vec<(&'a [u8], O)>) -> Vec<FillTask<'a, O>> {
    let (few, mut many): (Vec<_>, Vec<_>) = cells
        .into_iter()
        .partition(|(_, out)| out.n_bins() <= FEW_BINS);
    let mut tasks: Vec<FillTask<'_, O>> = few.into_iter().map(FillTask::One).collect();
    while many.len() >= 4 {
        let g: Vec<_> = many.drain(many.len() - 4..).collect();
        if let Ok(g) = <[_; 4]>::try_from(g) {
            tasks.push(FillTask::Four(g));
        }
    }
    while let Some(a) = many.pop() {
        tasks.push(match many.pop() {
            Some(b) => FillTask::Two(a, b),
            None => FillTask::One(a),
        });
    }
    tasks
}

/// Fills one node's features (`(bin column, output)` each) in this thread
/// with the local learner's kernels: the distributed level pass, already
/// one task per partition.
pub(crate) fn fill_node<O: BinSums>(
    cells: Vec<(&[u8], O)>,
    rows: &[u32],
    grad: &[f32],
    hess: &[f32],
) {
    for t in fill_tasks(cells) {
        t.run(rows, grad, hess);
    }
}

/// [`fill_feature`] of `N` features in one pass over the rows.
fn fill_group<O: BinSums, const N: usize>(
    mut out: [O; N],
    cols: [&[u8]; N],
    rows: &[u32],
    grad: &[f32],
    hess: &[f32],
) {
    let mut acc = [[[0f64; 3]; 256]; N];
    for ((&r, &g), &h) in rows.iter().zip(grad).zip(hess) {
        let (g, h) = (g as f64, h as f64);
        for (a, col) in acc.iter_mut().zip(cols) {
            let s = &mut a[col[r as usize] as usize];
            s[0] += g;
            s[1] += h;
            s[2] += 1.0;
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        for (b, a) in a.iter().enumerate().take(o.n_bins()) {
            o.add(b, a);
        }
    }
}

/// Features with at most this many bins (missing bin included) use four accumulators.
const FEW_BINS: usize = 32;

fn fill_feature_split<O: BinSums>(
    out: &mut O,
    col: &[u8],
    rows: &[u32],
    grad: &[f32],
    hess: &[f32],
) {
    let mut acc = [[[0f64; 3]; 256]; 4];
    let n4 = rows.len() / 4 * 4;
    for ((r4, g4), h4) in rows[..n4]
        .chunks_exact(4)
        .zip(grad[..n4].chunks_exact(4))
        .zip(hess[..n4].chunks_exact(4))
    {
        for k in 0..4 {
            let s = &mut acc[k][col[r4[k] as usize] as usize];
            s[0] += g4[k] as f64;
            s[1] += h4[k] as f64;
            s[2] += 1.0;
        }
    }
    for ((&r, &g), &h) in rows[n4..].iter().zip(&grad[n4..]).zip(&hess[n4..]) {
        let s = &mut acc[0][col[r as usize] as usize];
        s[0] += g as f64;
        s[1] += h as f64;
        s[2] += 1.0;
    }
    for b in 0..out.n_bins().min(256) {
        for a in &acc {
            out.add(b, &a[b]);
        }
    }
}

/// Per-row training targets of one tree.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// Gradient and hessian per row (indexed by row id), for boosting.
    GradHess {
        /// Gradients.
        grad: &'a [f32],
        /// Hessians.
        hess: &'a [f32],
    },
    /// 0/1 labels with optional integer row weights (bootstrap counts), for
    /// forests: a bin's `grad` is the weighted positive count, `hess` the weight.
    Labels {
        /// Labels.
        y: &'a [u8],
        /// Row weights (`None` = all 1).
        weights: Option<&'a [u8]>,
    },
}

impl Targets<'_> {
    /// Gathers the targets of `rows` into contiguous arrays ("ordered gradients").
    pub fn gather(&self, rows: &[u32]) -> (Vec<f32>, Vec<f32>) {
        match *self {
            Targets::GradHess { grad, hess } => (
                rows.iter().map(|&r| grad[r as usize]).collect(),
                rows.iter().map(|&r| hess[r as usize]).collect(),
            ),
            Targets::Labels { y, weights } => {
                let w = |r: u32| weights.map_or(1.0, |w| w[r as usize] as f32);
                (
                    rows.iter().map(|&r| w(r) * y[r as usize] as f32).collect(),
                    rows.iter().map(|&r| w(r)).collect(),
                )
            }
        }
    }
}

/// What the learner asks for: the histogram of one node.
#[derive(Debug, Clone, Copy)]
pub struct NodeRequest<'a> {
    /// The node's rows (ascending row ids).
    pub rows: &'a [u32],
    /// The features to fill (others stay zero).
    pub features: &'a [usize],
    /// The tree's per-row targets.
    pub targets: Targets<'a>,
}

/// Anything that can compute node histograms: locally with rayon, or
/// distributed as an aggregate over partitioned data.
pub trait HistogramSource: Sync {
    /// Bins per feature, including the missing bin 0 (the histogram layout).
    fn n_bins(&self) -> &[u16];
    /// The histograms of all requested nodes (typically all nodes of one
    /// depth level of one or many trees, so a distributed source scans once per level).
    fn build(&self, requests: &[NodeRequest<'_>]) -> Result<Vec<Histogram>>;
}

/// Histograms from an in-memory [`BinnedMatrix`], parallel with rayon over
/// (node, feature) cells, or over row chunks merged by addition when a node
/// has few features to fill.
#[derive(Debug, Clone, Copy)]
pub struct LocalHistogramSource<'a> {
    binned: &'a BinnedMatrix,
}

/// Row chunk of the partial-histogram path.
const ROW_CHUNK: usize = 1 << 15;

impl<'a> LocalHistogramSource<'a> {
    /// A source over `binned`.
    pub fn new(binned: &'a BinnedMatrix) -> Self {
        Self { binned }
    }

    fn build_one(&self, req: &NodeRequest<'_>) -> Histogram {
        let (g, h) = req.targets.gather(req.rows);
        let threads = rayon::current_num_threads();
        if req.features.len() < 2 * threads && req.rows.len() > 2 * ROW_CHUNK {
            // Few features, many rows: partial histograms of row chunks, merged by addition.
            return req
                .rows
                .par_chunks(ROW_CHUNK)
                .zip(g.par_chunks(ROW_CHUNK).zip(h.par_chunks(ROW_CHUNK)))
                .map(|(rows, (g, h))| {
                    let mut part = Histogram::zeros(self.binned.n_bins());
                    part.accumulate(self.binned, rows, g, h, req.features);
                    part
                })
                .reduce_with(|mut a, b| {
                    for (x, y) in a.bins.iter_mut().zip(&b.bins) {
                        x.add(y);
                    }
                    a
                })
                .unwrap_or_else(|| Histogram::zeros(self.binned.n_bins()));
        }
        let mut hist = Histogram::zeros(self.binned.n_bins());
        let mut wanted = vec![false; self.binned.n_features()];
        for &j in req.features {
            wanted[j] = true;
        }
        let cells: Vec<_> = hist
            .features_mut()
            .into_iter()
            .enumerate()
            .filter(|(j, _)| wanted[*j])
            .map(|(j, out)| (self.binned.column(j), out))
            .collect();
        fill_tasks(cells)
            .into_par_iter()
            .with_min_len(if req.rows.len() < 4096 { 64 } else { 1 })
            .for_each(|t| t.run(req.rows, &g, &h));
        hist
    }
}

impl HistogramSource for LocalHistogramSource<'_> {
    fn n_bins(&self) -> &[u16] {
        self.binned.n_bins()
    }

    fn build(&self, requests: &[NodeRequest<'_>]) -> Result<Vec<Histogram>> {
        let n = self.binned.n_rows();
        for req in requests {
            if let Some(&r) = req.rows.iter().find(|&&r| r as usize >= n) {
                return Err(MlError::Internal(format!(
                    "row {r} out of range (n_rows {n})"
                )));
            }
            if let Some(&j) = req
                .features
                .iter()
                .find(|&&j| j >= self.binned.n_features())
            {
                return Err(MlError::Internal(format!("feature {j} out of range")));
            }
        }
        Ok(requests.par_iter().map(|r| self.build_one(r)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> BinnedMatrix {
        BinnedMatrix::from_columns(
            vec![vec![0, 1, 2, 1, 2, 2], vec![1, 1, 1, 2, 2, 0]],
            vec![3, 3],
        )
        .unwrap()
    }

    #[test]
    fn hand_checked_histogram() {
        let b = small();
        let grad = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let hess = [1.0f32; 6];
        let src = LocalHistogramSource::new(&b);
        let rows: Vec<u32> = (0..6).collect();
        let h = &src
            .build(&[NodeRequest {
                rows: &rows,
                features: &[0, 1],
                targets: Targets::GradHess {
                    grad: &grad,
                    hess: &hess,
                },
            }])
            .unwrap()[0];
        let f0: Vec<f64> = h.feature(0).iter().map(|s| s.grad).collect();
        assert_eq!(f0, vec![1.0, 6.0, 14.0]);
        let c1: Vec<f64> = h.feature(1).iter().map(|s| s.count).collect();
        assert_eq!(c1, vec![1.0, 3.0, 2.0]);
    }

    #[test]
    fn labels_targets_weight_rows() {
        let t = Targets::Labels {
            y: &[1, 0, 1],
            weights: Some(&[2, 1, 0]),
        };
        let (g, h) = t.gather(&[0, 1, 2]);
        assert_eq!(g, vec![2.0, 0.0, 0.0]);
        assert_eq!(h, vec![2.0, 1.0, 0.0]);
    }
}
