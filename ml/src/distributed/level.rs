//! `sluice_level_histograms(plan, label, row_id, bin_0, ..., bin_{F-1})`:
//! every histogram one tree level needs, in one aggregate over the binned
//! training table.
//!
//! The driver ([`super::trainer`]) describes the level in a [`LevelPlan`]
//! and passes it, serialized, as the first argument: a `Dictionary(Int32,
//! Utf8)` literal, so it travels inside the serialized plan to Ballista
//! executors (no custom plan node or codec) and is materialized once per
//! batch, not once per row. Each executor, for each row of its partitions:
//!
//! 1. routes the row through every tree being grown (splits on bins, as the
//!    local learner partitions row ids) to the node it sits in; a row in a
//!    node whose histogram is not requested (a finished leaf, the larger
//!    sibling obtained by subtraction) is skipped for that tree. In a job,
//!    the executor keeps each row's node per tree from the last pass
//!    ([`super::resident`]) and moves it down only the levels added since;
//! 2. computes the row's target from the plan: for boosting, the margin of
//!    the finished trees plus the base score → logistic gradient/hessian
//!    (rows of the validation holdout and rows outside the round's
//!    subsample are skipped); for a forest, the Poisson bootstrap weight of
//!    (row, tree);
//! 3. adds gradient, hessian and count to the node's histogram slot, only
//!    for the node's sampled features, with the local learner's fill
//!    kernels.
//!
//! The state is one dense `Float64` list: the slots back to back (each the
//! node's features × their bins × 3), plus the validation log-loss sum and
//! row count when the plan asks for it; partial states merge by addition.
//! So a level costs one scan and moves `slots × features × bins × 3`
//! floats per partition, whatever the row count. Random decisions are the
//! same hashes of the row id as in the local trainer, so the trees are the
//! local trainer's trees (up to the summation order of `f64` sums).

use arrow::array::{Array, ArrayRef, AsArray, UInt8Array};
use arrow::datatypes::{DataType, FieldRef, Int64Type, UInt8Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature};
use datafusion::physical_expr::expressions::Literal;
use serde::{Deserialize, Serialize};

use super::common::{dense_sums_state, f64_list_state, f64_list_type, function_struct};
use super::resident::{with_batch, Kept, RoundTargets, Sampling};
use crate::error::{MlError, Result as MlResult};
use crate::gbt::{grad_hess, in_subsample, row_log_loss};
use crate::histogram::{fill_node, FlatBins};
use crate::histogram::{BinStats, Histogram};
use crate::sampling::{hash2, row_weight};
use crate::tree::Tree;

/// Stream of the GBT validation holdout hash (`hash2(seed, HOLDOUT_STREAM, row)`),
/// as in the local trainer.
pub const HOLDOUT_STREAM: u64 = 0xfeed;

/// A tree in a compact, column-wise form: node `i` is a leaf when `left[i] == 0`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompactTree {
    /// Split feature per node.
    pub feature: Vec<u32>,
    /// Split bin per node ("bin <= t" goes left; bin 0 = missing).
    pub bin: Vec<u8>,
    /// Where missing values (bin 0) go, per node.
    pub missing_left: Vec<bool>,
    /// Left child per node (0 = leaf).
    pub left: Vec<u32>,
    /// Right child per node.
    pub right: Vec<u32>,
    /// Leaf values (only for finished trees that score rows; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value: Vec<f64>,
}

impl CompactTree {
    /// The routing part of a tree (and its values when `with_values`).
    pub fn from_tree(t: &Tree, with_values: bool) -> Self {
        let mut c = CompactTree::default();
        for n in &t.nodes {
            c.feature.push(n.feature);
            c.bin.push(n.threshold_bin);
            c.missing_left.push(n.missing_left);
            c.left.push(n.left);
            c.right.push(n.right);
            if with_values {
                c.value.push(n.value);
            }
        }
        c
    }

    /// The node row `i` of the bin columns ends in (0 for an empty tree).
    #[inline]
    pub fn leaf_of(&self, bins: &[&[u8]], i: usize) -> usize {
        self.leaf_from(bins, i, 0)
    }

    /// The node row `i` ends in, starting at node `n` (an ancestor of that
    /// leaf, or the leaf itself).
    #[inline]
    pub fn leaf_from(&self, bins: &[&[u8]], i: usize, mut n: usize) -> usize {
        while n < self.left.len() && self.left[n] != 0 {
            let b = bins[self.feature[n] as usize][i];
            let go_left = if b == 0 {
                self.missing_left[n]
            } else {
                b <= self.bin[n]
            };
            n = if go_left { self.left[n] } else { self.right[n] } as usize;
        }
        n
    }

    /// Whether this tree grew from `old` by splitting some of its leaves:
    /// every node `old` had split is split the same way here, so a row's
    /// leaf in `old` is an ancestor of (or is) its leaf here.
    pub fn grown_from(&self, old: &CompactTree) -> bool {
        self.left.len() >= old.left.len()
            && (0..old.left.len()).all(|i| {
                old.left[i] == 0
                    || (i < self.left.len()
                        && self.left[i] == old.left[i]
                        && self.right[i] == old.right[i]
                        && self.feature[i] == old.feature[i]
                        && self.bin[i] == old.bin[i]
                        && self.missing_left[i] == old.missing_left[i])
            })
    }

    fn check(&self, n_features: usize) -> MlResult<()> {
        let n = self.left.len();
        let ok = self.feature.len() == n
            && self.bin.len() == n
            && self.missing_left.len() == n
            && self.right.len() == n
            && (self.value.is_empty() || self.value.len() == n);
        if !ok {
            return Err(MlError::Internal("level plan: ragged tree arrays".into()));
        }
        for i in 0..n {
            if self.left[i] != 0 {
                // Children always come after their parent: no cycles.
                if self.left[i] as usize <= i
                    || self.right[i] as usize <= i
                    || self.left[i] as usize >= n
                    || self.right[i] as usize >= n
                    || self.feature[i] as usize >= n_features
                {
                    return Err(MlError::Internal(format!(
                        "level plan: node {i} has invalid children or feature"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A tree being grown: its current shape and, per node, the histogram slot
/// requested for it (`-1`: none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrowingTree {
    /// Index of the tree in the ensemble: the forest's bootstrap stream.
    pub index: u64,
    /// The tree so far (leaves are the current nodes).
    pub shape: CompactTree,
    /// Slot per node index (at least one entry: node 0 of an empty tree).
    pub slot: Vec<i32>,
}

/// How rows get their gradient and hessian.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanTargets {
    /// Boosting with logistic loss: margin = `init_score` + the finished
    /// trees' (already shrunk) leaf values, in order.
    Gbt {
        /// Base score (log-odds of the training prior).
        init_score: f64,
        /// The finished trees, with values.
        trees: Vec<CompactTree>,
        /// The model seed.
        seed: u64,
        /// The round being grown (the subsample stream).
        round: u64,
        /// Row subsample rate of the round (`>= 1`: every training row).
        subsampling_rate: f64,
        /// The validation holdout, when early stopping is on.
        holdout: Option<Holdout>,
    },
    /// Random forest: `grad` = weight × label, `hess` = weight.
    Forest {
        /// The model seed.
        seed: u64,
        /// Poisson(1) bootstrap weights.
        bootstrap: bool,
        /// Row subsample rate.
        subsampling_rate: f64,
    },
}

/// Rows held out for early stopping: row `r` with label `c` is held out
/// when `hash2(seed, 0xfeed, r) <= threshold[c]` (the `n_out` smallest
/// hashes of the class, as the local stratified holdout picks them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Holdout {
    /// The model seed.
    pub seed: u64,
    /// Largest held-out hash per class (`None`: nothing held out).
    pub threshold: [Option<u64>; 2],
}

impl Holdout {
    /// Whether row `row` with label `y` is held out.
    #[inline]
    pub fn holds_out(&self, row: u64, y: u8) -> bool {
        match self.threshold[y.min(1) as usize] {
            Some(t) => hash2(self.seed, HOLDOUT_STREAM, row) <= t,
            None => false,
        }
    }
}

/// Rows a fit leaves out: per class, the rows whose
/// `(hash2(seed, FOLD_STREAM, row), row)` lies in an inclusive range, i.e.
/// one block of ranks of the class's hash order (a cross-validation fold
/// of [`crate::selection::fold_blocks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// The split seed.
    pub seed: u64,
    /// Per class, the first and last `(hash, row)` left out (`None`: none).
    pub range: [Option<[(u64, i64); 2]>; 2],
}

impl Excluded {
    /// Whether row `row` with label `y` (0/1) is left out.
    #[inline]
    pub fn excludes(&self, row: i64, y: u8) -> bool {
        self.range[y.min(1) as usize].is_some_and(|[lo, hi]| {
            let k = (
                hash2(self.seed, crate::selection::FOLD_STREAM, row as u64),
                row,
            );
            lo <= k && k <= hi
        })
    }
}

/// Which fit of a job a plan belongs to, when several fits (the folds and
/// grid points of a search) share one job's executor-resident bins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitScope {
    /// The fit's id: executors keep its margins and sample weights apart
    /// from the other fits of the job.
    #[serde(default)]
    pub fit: u64,
    /// Rows this fit does not train on (its validation fold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Excluded>,
}

/// What a boosting round does with a row.
enum RoundRow {
    /// Held out to measure the validation loss.
    HeldOut,
    /// Not in the round's subsample.
    Skipped,
    /// Trained on, with this gradient and hessian.
    Train(f32, f32),
}

impl PlanTargets {
    /// What a boosting round does with row `row_id` (label `label`, 0/1;
    /// larger counts as 1) at margin `margin`; a forest trains on no row
    /// this way.
    fn round_row(&self, row_id: i64, label: u8, margin: f64) -> RoundRow {
        let PlanTargets::Gbt {
            seed,
            round,
            subsampling_rate,
            holdout,
            ..
        } = self
        else {
            return RoundRow::Skipped;
        };
        let (r, y) = (row_id as u64, label.min(1));
        if holdout.is_some_and(|h| h.holds_out(r, y)) {
            RoundRow::HeldOut
        } else if !in_subsample(*seed, *round, *subsampling_rate, r) {
            RoundRow::Skipped
        } else {
            let (g, h) = grad_hess(margin, y);
            RoundRow::Train(g, h)
        }
    }
}

/// A decoded pass result: one histogram per slot, and the validation
/// (log-loss sum, rows) when the plan asked for it.
pub type Decoded = (Vec<Histogram>, Option<(f64, f64)>);

/// Everything the executors need for one distributed pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelPlan {
    /// Bins per feature, missing bin included (the histogram layout).
    pub n_bins: Vec<u16>,
    /// Targets of the rows.
    pub targets: PlanTargets,
    /// The trees being grown in this pass.
    pub trees: Vec<GrowingTree>,
    /// Per slot: the features whose histograms are wanted, ascending.
    pub slots: Vec<Vec<u32>>,
    /// Also sum the validation log-loss of the current margins (boosting
    /// with a holdout): two more values, loss sum and row count.
    pub eval: bool,
    /// The training job: executors keep the job's row margins between
    /// passes under this id ([`super::resident`]); `None`: recompute them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
    /// A resident pass: the query passes no bin columns, the executors take
    /// each batch's bins from their copy of the job's batches
    /// ([`super::resident`]) and count the rows of batches they do not have
    /// in one more value after the result ([`Self::state_len`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resident: bool,
    /// The fit within the job, and the rows it leaves out.
    #[serde(default)]
    pub scope: FitScope,
}

impl LevelPlan {
    /// The plan as the literal argument of `sluice_level_histograms`.
    pub fn to_literal(&self) -> ScalarValue {
        let json = serde_json::to_string(self).unwrap_or_default();
        ScalarValue::Dictionary(
            Box::new(DataType::Int32),
            Box::new(ScalarValue::Utf8(Some(json))),
        )
    }

    /// Parses and checks a serialized plan.
    pub fn parse(json: &str) -> MlResult<Self> {
        let p: LevelPlan = serde_json::from_str(json)
            .map_err(|e| MlError::Internal(format!("level plan does not parse: {e}")))?;
        p.check()?;
        Ok(p)
    }

    /// Several fits' plans as the one literal of a query that scans them
    /// together (a JSON array; [`Self::parse_many`]).
    pub fn many_to_literal(plans: &[LevelPlan]) -> ScalarValue {
        let json = serde_json::to_string(plans).unwrap_or_default();
        ScalarValue::Dictionary(
            Box::new(DataType::Int32),
            Box::new(ScalarValue::Utf8(Some(json))),
        )
    }

    /// Parses one plan or an array of plans; the plans of one query must
    /// agree on the features and on whether the pass is resident.
    pub fn parse_many(json: &str) -> MlResult<Vec<Self>> {
        if !json.trim_start().starts_with('[') {
            return Ok(vec![Self::parse(json)?]);
        }
        let plans: Vec<LevelPlan> = serde_json::from_str(json)
            .map_err(|e| MlError::Internal(format!("level plans do not parse: {e}")))?;
        let Some(first) = plans.first() else {
            return Err(MlError::Internal("level plans: none".into()));
        };
        for p in &plans {
            p.check()?;
            if p.n_bins != first.n_bins || p.resident != first.resident {
                return Err(MlError::Internal(
                    "level plans of one query differ in features or residency".into(),
                ));
            }
        }
        Ok(plans)
    }

    fn check(&self) -> MlResult<()> {
        let nf = self.n_bins.len();
        for s in &self.slots {
            if s.iter().any(|&j| j as usize >= nf) || s.windows(2).any(|w| w[0] >= w[1]) {
                return Err(MlError::Internal(
                    "level plan: slot features out of range or unsorted".into(),
                ));
            }
        }
        if self.n_bins.iter().any(|&b| b as usize > 256) {
            return Err(MlError::Internal("level plan: more than 256 bins".into()));
        }
        for t in &self.trees {
            t.shape.check(nf)?;
            if t.slot.len() < t.shape.left.len().max(1)
                || t.slot.iter().any(|&s| s >= self.slots.len() as i32)
            {
                return Err(MlError::Internal("level plan: bad slot map".into()));
            }
        }
        if let PlanTargets::Gbt { trees, .. } = &self.targets {
            for t in trees {
                t.check(nf)?;
                if t.value.len() != t.left.len() {
                    return Err(MlError::Internal(
                        "level plan: a finished tree has no values".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Start of each slot in the result, and the total length.
    pub fn layout(&self) -> (Vec<usize>, usize) {
        let mut starts = Vec::with_capacity(self.slots.len());
        let mut at = 0usize;
        for s in &self.slots {
            starts.push(at);
            at += s
                .iter()
                .map(|&j| self.n_bins[j as usize] as usize * 3)
                .sum::<usize>();
        }
        if self.eval {
            at += 2;
        }
        (starts, at)
    }

    /// Length of the result.
    pub fn result_len(&self) -> usize {
        self.layout().1
    }

    /// Length of the aggregate's state and value: the result, plus the
    /// missed rows of a resident pass.
    pub fn state_len(&self) -> usize {
        self.result_len() + usize::from(self.resident)
    }

    /// Splits the aggregate's value into the result and the rows a
    /// resident pass missed (0 for a full pass).
    pub fn take_missed(&self, mut value: Vec<f64>) -> MlResult<(Vec<f64>, f64)> {
        if value.len() != self.state_len() {
            return Err(MlError::Internal(format!(
                "level pass returned {} values, expected {}",
                value.len(),
                self.state_len()
            )));
        }
        let missed = if self.resident {
            value.pop().unwrap_or(0.0)
        } else {
            0.0
        };
        Ok((value, missed))
    }

    /// Splits the plan into plans whose states have at most `max_values`
    /// values each (whole slots, at least one per part; the validation sums
    /// go with the first part), for transports that bound a message (Ballista's
    /// gRPC limit: an aggregate state is one row). [`Self::join`] reassembles
    /// the parts' results into this plan's result.
    pub fn split(&self, max_values: usize) -> Vec<LevelPlan> {
        if self.result_len() <= max_values || self.slots.len() <= 1 {
            return vec![self.clone()];
        }
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        let mut size = 0;
        for (s, feats) in self.slots.iter().enumerate() {
            let v: usize = feats
                .iter()
                .map(|&j| self.n_bins[j as usize] as usize * 3)
                .sum();
            if s > start && size + v > max_values {
                groups.push(start..s);
                start = s;
                size = 0;
            }
            size += v;
        }
        groups.push(start..self.slots.len());
        groups
            .iter()
            .enumerate()
            .map(|(gi, g)| LevelPlan {
                n_bins: self.n_bins.clone(),
                targets: self.targets.clone(),
                trees: self
                    .trees
                    .iter()
                    .filter(|t| t.slot.iter().any(|&s| s >= 0 && g.contains(&(s as usize))))
                    .map(|t| GrowingTree {
                        index: t.index,
                        shape: t.shape.clone(),
                        slot: t
                            .slot
                            .iter()
                            .map(|&s| {
                                if s >= 0 && g.contains(&(s as usize)) {
                                    s - g.start as i32
                                } else {
                                    -1
                                }
                            })
                            .collect(),
                    })
                    .collect(),
                slots: self.slots[g.clone()].to_vec(),
                eval: self.eval && gi == 0,
                job: self.job,
                resident: self.resident,
                scope: self.scope,
            })
            .collect()
    }

    /// This plan's result from the results of its [`Self::split`] parts.
    pub fn join(&self, parts: &[LevelPlan], results: &[Vec<f64>]) -> MlResult<Vec<f64>> {
        let len = self.result_len();
        let mut out = Vec::with_capacity(len);
        let mut eval: Option<&[f64]> = None;
        if parts.len() != results.len() {
            return Err(MlError::Internal("split plan: results missing".into()));
        }
        for (p, r) in parts.iter().zip(results) {
            if r.len() != p.result_len() {
                return Err(MlError::Internal(format!(
                    "split plan: a part returned {} values, expected {}",
                    r.len(),
                    p.result_len()
                )));
            }
            if p.eval {
                out.extend_from_slice(&r[..r.len() - 2]);
                eval = Some(&r[r.len() - 2..]);
            } else {
                out.extend_from_slice(r);
            }
        }
        if self.eval {
            out.extend_from_slice(
                eval.ok_or_else(|| MlError::Internal("split plan: no validation part".into()))?,
            );
        }
        if out.len() != len {
            return Err(MlError::Internal(format!(
                "split plan: {} values joined, expected {len}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Splits a result into one [`Histogram`] per slot (unrequested features
    /// stay zero) and the validation (loss sum, rows) when `eval`.
    pub fn decode(&self, sums: &[f64]) -> MlResult<Decoded> {
        let (starts, len) = self.layout();
        if sums.len() != len {
            return Err(MlError::Internal(format!(
                "level result has {} values, the plan expects {len}",
                sums.len()
            )));
        }
        let mut out = Vec::with_capacity(self.slots.len());
        for (s, feats) in self.slots.iter().enumerate() {
            let mut h = Histogram::zeros(&self.n_bins);
            let mut at = starts[s];
            for &j in feats {
                let nb = self.n_bins[j as usize] as usize;
                for (b, cell) in h.feature_mut(j as usize).iter_mut().enumerate().take(nb) {
                    let k = at + b * 3;
                    *cell = BinStats {
                        grad: sums[k],
                        hess: sums[k + 1],
                        count: sums[k + 2],
                    };
                }
                at += nb * 3;
            }
            out.push(h);
        }
        let eval = self.eval.then(|| (sums[len - 2], sums[len - 1]));
        Ok((out, eval))
    }
}

/// Per-slot scratch of a batch: its rows and their targets.
#[derive(Debug)]
struct Scratch {
    rows: Vec<Vec<u32>>,
    grad: Vec<Vec<f32>>,
    hess: Vec<Vec<f32>>,
}

/// A parsed plan with its precomputed layout: the per-batch kernel.
#[derive(Debug)]
pub struct LevelKernel {
    plan: LevelPlan,
    /// Per slot, per requested feature: (feature, offset in the state).
    cells: Vec<Vec<(usize, usize)>>,
    /// Length of the result (the validation sums are its last two values).
    result_len: usize,
    scratch: Scratch,
}

impl LevelKernel {
    /// Prepares the kernel of a plan.
    pub fn new(plan: LevelPlan) -> Self {
        let (starts, result_len) = plan.layout();
        let cells = plan
            .slots
            .iter()
            .zip(&starts)
            .map(|(feats, &start)| {
                let mut at = start;
                feats
                    .iter()
                    .map(|&j| {
                        let c = (j as usize, at);
                        at += plan.n_bins[j as usize] as usize * 3;
                        c
                    })
                    .collect()
            })
            .collect();
        let n = plan.slots.len();
        Self {
            plan,
            cells,
            result_len,
            scratch: Scratch {
                rows: vec![Vec::new(); n],
                grad: vec![Vec::new(); n],
                hess: vec![Vec::new(); n],
            },
        }
    }

    /// Length of the state ([`LevelPlan::state_len`]).
    pub fn len(&self) -> usize {
        self.plan.state_len()
    }

    /// Whether the state is empty (a plan with nothing to compute).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the rows of one batch to `sums` (length [`Self::len`]): labels
    /// (0/1; larger values count as 1), row ids, which rows to use (`None`:
    /// all; rows with a null label or row id are not), and the bin columns
    /// (`None` in a resident pass: this executor's copy, or the batch is
    /// counted as missed in the last value).
    pub fn accumulate(
        &mut self,
        sums: &mut [f64],
        label: &[u8],
        row_id: &[i64],
        use_row: Option<&[bool]>,
        bins: Option<&[&[u8]]>,
    ) {
        // A boosting round's gradients (and which rows it trains on) are
        // the same at every level: drawn once per round and batch, except
        // in a pass that also measures the holdout's loss.
        let round_of = |i: usize, m: f64| match self.plan.targets.round_row(row_id[i], label[i], m)
        {
            RoundRow::Train(g, h) => (g, h),
            RoundRow::HeldOut | RoundRow::Skipped => (f32::NAN, f32::NAN),
        };
        let boosting = match &self.plan.targets {
            PlanTargets::Gbt {
                init_score,
                trees,
                seed,
                round,
                subsampling_rate,
                holdout,
            } => {
                let h = holdout.as_ref();
                let key = [
                    trees.len() as u64,
                    *round,
                    subsampling_rate.to_bits(),
                    h.map_or(0, |h| h.seed),
                    h.and_then(|h| h.threshold[0]).unwrap_or(0),
                    h.and_then(|h| h.threshold[1]).unwrap_or(0),
                ]
                .iter()
                .fold(*seed, |k, &v| hash2(k, v, 0x6772_6164));
                let targets = (!self.plan.eval).then_some(RoundTargets { key, of: &round_of });
                Some((*init_score, trees.as_slice(), targets))
            }
            PlanTargets::Forest { .. } => None,
        };
        // A weighted forest draws each row's weight per tree once per
        // batch (kept between passes), not once per pass.
        let tree_ids: Vec<u64> = self.plan.trees.iter().map(|t| t.index).collect();
        let draw = match &self.plan.targets {
            PlanTargets::Forest {
                seed,
                bootstrap,
                subsampling_rate,
            } if *bootstrap || *subsampling_rate < 1.0 => {
                let (seed, bootstrap, rate) = (*seed, *bootstrap, *subsampling_rate);
                Some((
                    hash2(seed, bootstrap as u64, rate.to_bits()),
                    move |t: u64, r: u64| row_weight(seed, t, r, bootstrap, rate),
                ))
            }
            _ => None,
        };
        let sampling = draw.as_ref().map(|(params, draw)| Sampling {
            params: *params,
            trees: &tree_ids,
            draw,
        });
        let (plan, cells, scratch, result_len) =
            (&self.plan, &self.cells, &mut self.scratch, self.result_len);
        let exclude = plan.scope.exclude;
        let done = with_batch(
            plan.job,
            plan.scope.fit,
            row_id,
            bins,
            boosting,
            sampling,
            |bins, kept| {
                let valid = |i: usize| {
                    use_row.is_none_or(|u| u[i])
                        && !exclude.is_some_and(|e| e.excludes(row_id[i], label[i]))
                };
                let (loss, held) = route(plan, scratch, label, row_id, valid, bins, kept);
                if plan.eval {
                    sums[result_len - 2] += loss;
                    sums[result_len - 1] += held;
                }
                fill(plan, cells, scratch, sums, bins);
            },
        );
        if done.is_none() {
            sums[result_len] += label.len() as f64;
        }
    }
}

/// Routes the rows of a batch to the slots of the nodes they sit in, with
/// their targets; returns the validation (log-loss sum, rows) of boosting.
fn route(
    plan: &LevelPlan,
    scratch: &mut Scratch,
    label: &[u8],
    row_id: &[i64],
    valid: impl Fn(usize) -> bool,
    bins: &[&[u8]],
    Kept {
        margins,
        weights,
        grads,
        nodes,
    }: Kept,
) -> (f64, f64) {
    let Scratch { rows, grad, hess } = scratch;
    // Each row's node per tree: kept from the last pass of a job's batch
    // (advanced by the levels added since), else routed from the root.
    let shapes: Vec<(u64, &CompactTree)> = plan.trees.iter().map(|t| (t.index, &t.shape)).collect();
    let cached = nodes.and_then(|c| c.leaves(&shapes, bins, label.len()));
    let leaf = |k: usize, t: &GrowingTree, i: usize| match &cached {
        Some(c) => c[k][i] as usize,
        None => t.shape.leaf_of(bins, i),
    };
    for v in rows.iter_mut() {
        v.clear();
    }
    for v in grad.iter_mut() {
        v.clear();
    }
    for v in hess.iter_mut() {
        v.clear();
    }
    let mut loss = 0.0f64;
    let mut held = 0.0f64;
    match &plan.targets {
        PlanTargets::Gbt { .. } => {
            // The round's gradients are drawn once per batch (`grads`),
            // except in a pass that also sums the holdout's loss; the
            // margins are in the local trainer's order: init, then tree by
            // tree (kept in the executor between passes of a job).
            let margin = margins.unwrap_or_default();
            for i in 0..margin.len() {
                if !valid(i) {
                    continue;
                }
                let (g, h) = match grads {
                    Some((g, _)) if g[i].is_nan() => continue,
                    Some((g, h)) => (g[i], h[i]),
                    None => match plan.targets.round_row(row_id[i], label[i], margin[i]) {
                        RoundRow::Train(g, h) => (g, h),
                        RoundRow::Skipped => continue,
                        RoundRow::HeldOut => {
                            if plan.eval {
                                loss += row_log_loss(margin[i], label[i].min(1));
                                held += 1.0;
                            }
                            continue;
                        }
                    },
                };
                for (k, t) in plan.trees.iter().enumerate() {
                    let s = t.slot[leaf(k, t, i)];
                    if s >= 0 {
                        let s = s as usize;
                        rows[s].push(i as u32);
                        grad[s].push(g);
                        hess[s].push(h);
                    }
                }
            }
        }
        PlanTargets::Forest { .. } => {
            for i in 0..label.len() {
                if !valid(i) {
                    continue;
                }
                let y = label[i].min(1) as f32;
                for (k, t) in plan.trees.iter().enumerate() {
                    let s = t.slot[leaf(k, t, i)];
                    if s < 0 {
                        continue;
                    }
                    // `weights` is set for a weighted forest (in plan order).
                    let w = weights.map_or(1, |w| w[k][i]);
                    if w == 0 {
                        continue;
                    }
                    let s = s as usize;
                    rows[s].push(i as u32);
                    grad[s].push(w as f32 * y);
                    hess[s].push(w as f32);
                }
            }
        }
    }
    (loss, held)
}

/// Adds the routed rows to their slots' histograms with the local
/// learner's fill kernels ([`crate::histogram::fill_node`]: features by
/// four sharing each row's loads, few-bin features with four accumulators),
/// straight into the slots' cells of the state.
fn fill(
    plan: &LevelPlan,
    cells: &[Vec<(usize, usize)>],
    scratch: &Scratch,
    sums: &mut [f64],
    bins: &[&[u8]],
) {
    for (s, cells) in cells.iter().enumerate() {
        let rows = &scratch.rows[s];
        if rows.is_empty() {
            continue;
        }
        // The slot's cells are back to back at ascending offsets.
        let mut outs = Vec::with_capacity(cells.len());
        let mut rest: &mut [f64] = &mut *sums;
        let mut base = 0;
        for &(j, at) in cells {
            let len = plan.n_bins[j] as usize * 3;
            let (cell, tail) = std::mem::take(&mut rest)[at - base..].split_at_mut(len);
            outs.push((bins[j], FlatBins(cell)));
            rest = tail;
            base = at + len;
        }
        fill_node(outs, rows, &scratch.grad[s], &scratch.hess[s]);
    }
}

function_struct!(
    /// The `sluice_level_histograms` aggregate: (plan literal, label → UInt8,
    /// row_id → Int64, bins → UInt8).
    LevelHistogramsFunc
);

/// The plans from the first argument's literal: one plan (a JSON object)
/// or the plans of several fits scanned in one query (a JSON array,
/// [`LevelPlan::many_to_literal`]).
fn plans_of(args: &AccumulatorArgs) -> Result<Vec<LevelPlan>> {
    let Some(lit) = args.exprs.first().and_then(|e| e.downcast_ref::<Literal>()) else {
        return exec_err!("sluice_level_histograms: the plan (argument 1) must be a literal");
    };
    let Some(Some(json)) = lit.value().try_as_str() else {
        return exec_err!(
            "sluice_level_histograms: the plan (argument 1) must be a non-null string"
        );
    };
    LevelPlan::parse_many(json)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
}

impl AggregateUDFImpl for LevelHistogramsFunc {
    fn name(&self) -> &str {
        "sluice_level_histograms"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 3 {
            return exec_err!(
                "sluice_level_histograms expects (plan, label, row_id, bin_0, ...), or (plan, label, row_id) in a resident pass, got {} arguments",
                arg_types.len()
            );
        }
        let plan = match &arg_types[0] {
            t @ (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => t.clone(),
            t @ DataType::Dictionary(_, v)
                if matches!(
                    **v,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                t.clone()
            }
            other => {
                return exec_err!(
                    "sluice_level_histograms: the plan must be a string literal, got {other}"
                )
            }
        };
        let mut t = vec![plan, DataType::UInt8, DataType::Int64];
        t.extend(std::iter::repeat_n(DataType::UInt8, arg_types.len() - 3));
        Ok(t)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(f64_list_type())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(f64_list_state(args.name, "sums"))
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let plans = plans_of(&acc_args)?;
        let nf = acc_args.exprs.len().saturating_sub(3);
        let expected = if plans[0].resident {
            0
        } else {
            plans[0].n_bins.len()
        };
        if nf != expected {
            return exec_err!(
                "sluice_level_histograms: {nf} bin columns, the {} plan has {} features",
                if plans[0].resident {
                    "resident"
                } else {
                    "full"
                },
                plans[0].n_bins.len()
            );
        }
        Ok(Box::new(LevelHistogramsAccumulator::new_many(plans)))
    }
}

/// Accumulates one pass: the kernels of its plans (one per fit) and their
/// dense sums, back to back.
#[derive(Debug)]
pub struct LevelHistogramsAccumulator {
    kernels: Vec<LevelKernel>,
    /// Whether the query passes no bin columns (the plans agree).
    resident: bool,
    n_features: usize,
    sums: Vec<f64>,
}

impl LevelHistogramsAccumulator {
    /// An all-zero accumulator for `plan`.
    pub fn new(plan: LevelPlan) -> Self {
        Self::new_many(vec![plan])
    }

    /// An all-zero accumulator for several fits' plans over the same binned
    /// table, all full or all resident ([`LevelPlan::parse_many`] checks).
    pub fn new_many(plans: Vec<LevelPlan>) -> Self {
        let (resident, n_features) = plans
            .first()
            .map_or((false, 0), |p| (p.resident, p.n_bins.len()));
        let kernels: Vec<LevelKernel> = plans.into_iter().map(LevelKernel::new).collect();
        let sums = vec![0.0; kernels.iter().map(LevelKernel::len).sum()];
        Self {
            kernels,
            resident,
            n_features,
            sums,
        }
    }

    /// Runs every kernel on its part of the sums.
    fn accumulate(
        &mut self,
        label: &[u8],
        row_id: &[i64],
        use_row: Option<&[bool]>,
        bins: Option<&[&[u8]]>,
    ) {
        let mut rest = &mut self.sums[..];
        for k in &mut self.kernels {
            let (mine, after) = rest.split_at_mut(k.len());
            k.accumulate(mine, label, row_id, use_row, bins);
            rest = after;
        }
    }

    /// The dense sums.
    pub fn sums(&self) -> &[f64] {
        &self.sums
    }

    /// Adds rows given as slices (labels, row ids, one bin column per
    /// feature, or `None` in a resident pass): what `update_batch` does
    /// with Arrow arrays.
    pub fn update_rows(&mut self, label: &[u8], row_id: &[i64], bins: Option<&[&[u8]]>) {
        self.accumulate(label, row_id, None, bins);
    }
}

/// The values of a bin column, with nulls read as the missing bin 0.
fn bin_values(a: &UInt8Array) -> std::borrow::Cow<'_, [u8]> {
    if a.null_count() == 0 {
        std::borrow::Cow::Borrowed(&a.values()[..])
    } else {
        std::borrow::Cow::Owned(a.iter().map(|v| v.unwrap_or(0)).collect())
    }
}

impl Accumulator for LevelHistogramsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let nf = if self.resident { 0 } else { self.n_features };
        if values.len() != nf + 3 {
            return exec_err!(
                "sluice_level_histograms: {} arguments, expected {}",
                values.len(),
                nf + 3
            );
        }
        let label = values[1].as_primitive::<UInt8Type>();
        let row_id = values[2].as_primitive::<Int64Type>();
        let mask: Option<Vec<bool>> =
            (label.null_count() > 0 || row_id.null_count() > 0).then(|| {
                (0..label.len())
                    .map(|i| label.is_valid(i) && row_id.is_valid(i))
                    .collect()
            });
        let cols: Vec<std::borrow::Cow<'_, [u8]>> = values[3..]
            .iter()
            .map(|a| bin_values(a.as_primitive::<UInt8Type>()))
            .collect();
        let bins: Vec<&[u8]> = cols.iter().map(|c| c.as_ref()).collect();
        let resident = self.resident;
        self.accumulate(
            label.values(),
            row_id.values(),
            mask.as_deref(),
            (!resident).then_some(bins.as_slice()),
        );
        Ok(())
    }

    dense_sums_state!("sluice_level_histograms");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::gbt::sigmoid;
    use crate::tree::Node;
    use arrow::array::Int64Array;

    fn stump() -> Tree {
        Tree {
            nodes: vec![
                Node {
                    feature: 0,
                    threshold: 0.0,
                    threshold_bin: 1,
                    missing_left: false,
                    left: 1,
                    right: 2,
                    value: 0.0,
                    gain: 1.0,
                    count: 4.0,
                },
                Node::leaf(-0.5, 2.0),
                Node::leaf(0.5, 2.0),
            ],
        }
    }

    #[test]
    fn routes_rows_and_sums_forest_targets_by_hand() {
        // Feature 0 bins: 1, 2, 0 (missing → right), 1; labels 1, 0, 1, 0.
        let plan = LevelPlan {
            n_bins: vec![3, 2],
            targets: PlanTargets::Forest {
                seed: 1,
                bootstrap: false,
                subsampling_rate: 1.0,
            },
            trees: vec![GrowingTree {
                index: 0,
                shape: CompactTree::from_tree(&stump(), false),
                slot: vec![-1, 0, 1],
            }],
            slots: vec![vec![1], vec![0, 1]],
            eval: false,
            job: None,
            resident: false,
            scope: Default::default(),
        };
        let json = match plan.to_literal() {
            ScalarValue::Dictionary(_, v) => v.try_as_str().flatten().unwrap().to_string(),
            _ => unreachable!(),
        };
        let plan = LevelPlan::parse(&json).unwrap();
        let mut acc = LevelHistogramsAccumulator::new(plan.clone());
        let label = UInt8Array::from(vec![1, 0, 1, 0]);
        let ids = Int64Array::from(vec![0, 1, 2, 3]);
        let b0 = UInt8Array::from(vec![1, 2, 0, 1]);
        let b1 = UInt8Array::from(vec![1, 1, 0, 1]);
        acc.update_batch(&[
            Arc::new(arrow::array::StringArray::from(vec!["x"; 4])) as ArrayRef,
            Arc::new(label) as ArrayRef,
            Arc::new(ids) as ArrayRef,
            Arc::new(b0) as ArrayRef,
            Arc::new(b1) as ArrayRef,
        ])
        .unwrap();
        let (h, eval) = plan.decode(acc.sums()).unwrap();
        assert!(eval.is_none());
        // Slot 0 = left leaf: rows 0 and 3 (bin 1), feature 1 only.
        assert_eq!(h[0].feature(0)[1], BinStats::default());
        assert_eq!(
            h[0].feature(1)[1],
            BinStats {
                grad: 1.0,
                hess: 2.0,
                count: 2.0
            }
        );
        // Slot 1 = right leaf: rows 1 (bin 2) and 2 (missing).
        assert_eq!(
            h[1].feature(0),
            &[
                BinStats {
                    grad: 1.0,
                    hess: 1.0,
                    count: 1.0
                },
                BinStats::default(),
                BinStats {
                    grad: 0.0,
                    hess: 1.0,
                    count: 1.0
                },
            ]
        );
    }

    #[test]
    fn gbt_margins_holdout_and_merge() {
        let plan = LevelPlan {
            n_bins: vec![3],
            targets: PlanTargets::Gbt {
                init_score: 0.0,
                trees: vec![CompactTree::from_tree(&stump(), true)],
                seed: 3,
                round: 1,
                subsampling_rate: 1.0,
                holdout: Some(Holdout {
                    seed: 3,
                    threshold: [None, Some(u64::MAX)],
                }),
            },
            trees: vec![GrowingTree {
                index: 1,
                shape: CompactTree::default(),
                slot: vec![0],
            }],
            slots: vec![vec![0]],
            eval: true,
            job: None,
            resident: false,
            scope: Default::default(),
        };
        let batch = |ids: Vec<i64>, y: Vec<u8>, b: Vec<u8>| -> Vec<ArrayRef> {
            let n = ids.len();
            vec![
                Arc::new(arrow::array::StringArray::from(vec!["x"; n])),
                Arc::new(UInt8Array::from(y)),
                Arc::new(Int64Array::from(ids)),
                Arc::new(UInt8Array::from(b)),
            ]
        };
        let mut a = LevelHistogramsAccumulator::new(plan.clone());
        a.update_batch(&batch(vec![0, 1], vec![0, 1], vec![1, 2]))
            .unwrap();
        let mut b = LevelHistogramsAccumulator::new(plan.clone());
        b.update_batch(&batch(vec![2], vec![0], vec![2])).unwrap();
        let st = b.state().unwrap()[0].to_array().unwrap();
        a.merge_batch(&[st]).unwrap();
        let (h, eval) = plan.decode(a.sums()).unwrap();
        // Row 1 (label 1) is held out: loss -ln(sigmoid(0.5)).
        let (loss, n) = eval.unwrap();
        assert_eq!(n, 1.0);
        assert!((loss - (-(sigmoid(0.5)).ln())).abs() < 1e-15);
        // Rows 0 (margin -0.5, bin 1) and 2 (margin 0.5, bin 2), label 0: g = p.
        let f = h[0].feature(0);
        assert_eq!(f[1].grad, sigmoid(-0.5) as f32 as f64);
        assert_eq!(f[2].grad, sigmoid(0.5) as f32 as f64);
        assert_eq!(f[1].count + f[2].count, 2.0);
    }

    #[test]
    fn split_parts_join_to_the_whole_result() {
        let bins: Vec<Vec<u8>> = vec![
            (0..40).map(|i| (i % 3) as u8).collect(),
            (0..40).map(|i| (i % 2 + 1) as u8).collect(),
        ];
        let cols: Vec<&[u8]> = bins.iter().map(|c| c.as_slice()).collect();
        let y: Vec<u8> = (0..40).map(|i| (i % 5 == 0) as u8).collect();
        let ids: Vec<i64> = (0..40).collect();
        let shape = CompactTree::from_tree(&stump(), false);
        let plan = LevelPlan {
            n_bins: vec![3, 3],
            targets: PlanTargets::Gbt {
                init_score: 0.1,
                trees: vec![CompactTree::from_tree(&stump(), true)],
                seed: 5,
                round: 1,
                subsampling_rate: 1.0,
                holdout: Some(Holdout {
                    seed: 5,
                    threshold: [Some(u64::MAX / 4), Some(u64::MAX / 4)],
                }),
            },
            trees: vec![
                GrowingTree {
                    index: 0,
                    shape: shape.clone(),
                    slot: vec![-1, 0, 1],
                },
                GrowingTree {
                    index: 1,
                    shape,
                    slot: vec![-1, 2, -1],
                },
            ],
            slots: vec![vec![0, 1], vec![1], vec![0]],
            eval: true,
            job: None,
            resident: false,
            scope: Default::default(),
        };
        let run = |p: &LevelPlan| {
            let mut a = LevelHistogramsAccumulator::new(p.clone());
            a.update_rows(&y, &ids, Some(&cols));
            a.sums().to_vec()
        };
        let whole = run(&plan);
        let parts = plan.split(10);
        assert_eq!(parts.len(), 3);
        assert!(parts[0].eval && !parts[1].eval);
        assert_eq!(
            parts[2].trees.len(),
            1,
            "trees without a slot in the part are left out"
        );
        let results: Vec<Vec<f64>> = parts.iter().map(run).collect();
        assert_eq!(plan.join(&parts, &results).unwrap(), whole);
        assert_eq!(plan.split(1 << 20), vec![plan.clone()]);
    }

    #[test]
    fn malformed_plans_are_rejected() {
        let mut plan = LevelPlan {
            n_bins: vec![3],
            targets: PlanTargets::Forest {
                seed: 1,
                bootstrap: true,
                subsampling_rate: 1.0,
            },
            trees: vec![],
            slots: vec![vec![1]],
            eval: false,
            job: None,
            resident: false,
            scope: Default::default(),
        };
        assert!(plan.check().is_err());
        plan.slots = vec![vec![0]];
        plan.trees.push(GrowingTree {
            index: 0,
            shape: CompactTree::from_tree(&stump(), false),
            slot: vec![0],
        });
        assert!(plan.check().is_err(), "slot map shorter than the tree");
        assert!(LevelPlan::parse("{").is_err());
    }
}
