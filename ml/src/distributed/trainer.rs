//! The driver side of distributed training: the one grower
//! ([`crate::grower::LevelGrower`]) and the one boosting loop of the local
//! trainer, with histograms computed elsewhere and no row ids.
//!
//! The driver holds only the model. [`DistributedTrainer`] hands out one
//! [`LevelPlan`] per pass (the engine runs it as `sluice_level_histograms`
//! over the binned table on the executors, see [`super::level`]) and takes
//! back the merged result; between passes it picks splits with the learner's
//! own rule ([`crate::learner::best_split_of`]), builds the smaller child's
//! histogram and subtracts for the sibling when every feature is a
//! candidate, and updates the model. Per pass:
//!
//! * **GBT**: one pass per depth level of the current round's tree (its
//!   root pass also sums the validation log-loss of the previous round when
//!   early stopping is on, plus one last evaluation pass after the final
//!   round);
//! * **random forest**: one pass per depth level for *all* trees (every
//!   tree's open nodes are slots of the same pass).
//!
//! Every random decision (bootstrap weights, subsamples, holdout, feature
//! subsets) is the local trainer's hash of the row id or node, so a model
//! trained here equals [`crate::train`]'s on the same rows with row ids
//! `0..n` in the same order, up to the summation order of the histogram sums
//! (split ties within 1e-9 relative keep the lower feature/bin on both
//! sides, so the structure is the same and leaf values agree to ~1e-12).
//!
//! ```
//! use sluice_ml::distributed::level::LevelHistogramsAccumulator;
//! use sluice_ml::distributed::trainer::{DataStats, DistributedTrainer};
//! use sluice_ml::{BinEdges, FeatureMatrix, ModelSpec, RfParams};
//! let x: Vec<f64> = (0..200).map(|i| i as f64).collect();
//! let y: Vec<u8> = (0..200).map(|i| (i >= 100) as u8).collect();
//! let m = FeatureMatrix::new(vec!["x".into()], vec![x]).unwrap();
//! let spec = ModelSpec::RandomForest(RfParams { num_trees: 3, ..Default::default() });
//! let edges = BinEdges::fit(&m, 255, 200_000).unwrap();
//! let binned = edges.transform(&m).unwrap();
//! let stats = DataStats { rows: 200, positives: 100 };
//! let mut t = DistributedTrainer::new(&spec, vec!["x".into()], edges, stats, None).unwrap();
//! while let Some(plan) = t.next_pass().unwrap() {
//!     // What one executor partition computes (here: all rows in one partition).
//!     let mut acc = LevelHistogramsAccumulator::new(plan);
//!     acc.update_rows(&y, &(0..200).collect::<Vec<i64>>(), Some(&[binned.column(0)]));
//!     t.absorb(acc.sums()).unwrap();
//! }
//! let model = t.finish().unwrap();
//! assert_eq!(model.trees().len(), 3);
//! ```

use crate::binning::{BinEdges, DEFAULT_BIN_SAMPLE};
use crate::error::{MlError, Result};
use crate::gbt::Boosting;
use crate::grower::{LevelGrower, TreeStart};
use crate::histogram::Histogram;
use crate::learner::GrowParams;
use crate::matrix::FeatureMatrix;
use crate::model::{model_from_trees, ModelKind, TrainedModel};
use crate::params::{GbtParams, ModelSpec, RfParams};
use crate::sampling::hash2;

use super::level::{
    CompactTree, FitScope, GrowingTree, Holdout, LevelHistogramsAccumulator, LevelPlan,
    PlanTargets, HOLDOUT_STREAM,
};
use super::resident::PassMode;

/// Row and positive-label counts of the training table (one aggregate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataStats {
    /// Training rows.
    pub rows: u64,
    /// Rows with label 1.
    pub positives: u64,
}

/// What the engine must look up before a GBT with early stopping can start:
/// per class, the `n_out[c]`-th smallest `hash2(seed, 0xfeed, row_id)`
/// (the holdout threshold), `None` when `n_out[c] == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldoutRequest {
    /// The model seed.
    pub seed: u64,
    /// Rows held out per class (label 0, label 1).
    pub n_out: [u64; 2],
}

/// The trees being grown (with their slot maps) and the slots of the next
/// pass, from the grower's requests; trees without a requested node are
/// left out.
fn request(grower: &LevelGrower<()>) -> (Vec<GrowingTree>, Vec<Vec<u32>>) {
    let grown = grower.trees();
    let mut slots = Vec::new();
    let mut maps: Vec<Option<Vec<i32>>> = vec![None; grown.len()];
    for a in grower.requests() {
        let map = maps[a.tree].get_or_insert_with(|| vec![-1; grown[a.tree].nodes.len().max(1)]);
        map[a.node] = slots.len() as i32;
        // The plan wants each slot's features ascending; a node drawing
        // more features lists them in draw order (the histogram is laid out
        // by feature, so the order does not change the result).
        let mut f: Vec<u32> = a.features.iter().map(|&j| j as u32).collect();
        f.sort_unstable();
        slots.push(f);
    }
    let trees = maps
        .into_iter()
        .enumerate()
        .filter_map(|(t, m)| {
            m.map(|slot| GrowingTree {
                index: grower.tree_index(t),
                shape: CompactTree::from_tree(&grown[t], false),
                slot,
            })
        })
        .collect();
    (trees, slots)
}

/// Takes a pass's histograms: rows live on the executors, nothing to partition here.
fn absorb(grower: &mut LevelGrower<()>, hists: Vec<Histogram>) -> Result<()> {
    grower.absorb(hists, |_, _| ((), ()), None)?;
    Ok(())
}

/// Boosting state between passes.
#[derive(Debug)]
struct GbtRun {
    p: GbtParams,
    boost: Boosting,
    holdout: Option<Holdout>,
    grower: Option<LevelGrower<()>>,
    final_eval: bool,
    stopped: bool,
}

#[derive(Debug)]
enum Run {
    Gbt(Box<GbtRun>),
    Forest {
        p: RfParams,
        grower: Box<LevelGrower<()>>,
    },
}

/// Drives one distributed fit: hands out a [`LevelPlan`] per pass, takes
/// back the merged `sluice_level_histograms` result, and finally returns the
/// [`TrainedModel`] (same type, artefact and predict path as [`crate::train`]).
#[derive(Debug)]
pub struct DistributedTrainer {
    names: Vec<String>,
    edges: BinEdges,
    n_bins: Vec<u16>,
    run: Run,
    last: Option<LevelPlan>,
    label: String,
    job: Option<u64>,
    scope: FitScope,
}

impl DistributedTrainer {
    /// The holdout thresholds a GBT with `validationFraction` needs before
    /// [`Self::new`] (`None` for other models). The local trainer holds out,
    /// per class, the `round(n_c × fraction)` rows with the smallest hashes.
    pub fn holdout_request(spec: &ModelSpec, stats: DataStats) -> Option<HoldoutRequest> {
        let ModelSpec::Gbt(p) = spec else { return None };
        let f = p.validation_fraction?;
        let n = [stats.rows.saturating_sub(stats.positives), stats.positives];
        Some(HoldoutRequest {
            seed: p.seed,
            n_out: n.map(|c| (c as f64 * f).round() as u64),
        })
    }

    /// Starts a fit of `spec` on a table with these stats and bin edges;
    /// `holdout` = the thresholds answering [`Self::holdout_request`].
    pub fn new(
        spec: &ModelSpec,
        names: Vec<String>,
        edges: BinEdges,
        stats: DataStats,
        holdout: Option<[Option<u64>; 2]>,
    ) -> Result<Self> {
        spec.validate()?;
        if stats.rows == 0 {
            return Err(MlError::Data("no training rows".into()));
        }
        if stats.positives > stats.rows {
            return Err(MlError::Internal("more positives than rows".into()));
        }
        if edges.features.len() != names.len() {
            return Err(MlError::Data(format!(
                "{} bin edges for {} features",
                edges.features.len(),
                names.len()
            )));
        }
        let n_bins: Vec<u16> = edges
            .features
            .iter()
            .map(|f| (f.n_value_bins() + 1) as u16)
            .collect();
        let nf = n_bins.len();
        let run = match spec {
            ModelSpec::Gbt(p) => {
                let req = Self::holdout_request(spec, stats);
                let (holdout, n_out) = match (req, holdout) {
                    (Some(r), Some(th)) if r.n_out != [0, 0] => (
                        Some(Holdout {
                            seed: p.seed,
                            threshold: th,
                        }),
                        r.n_out,
                    ),
                    (Some(r), None) if r.n_out != [0, 0] => {
                        return Err(MlError::Internal(
                            "validationFraction needs the holdout thresholds".into(),
                        ))
                    }
                    _ => (None, [0, 0]),
                };
                let boost = Boosting::new(
                    p,
                    nf,
                    stats.rows - n_out[0] - n_out[1],
                    stats.positives - n_out[1],
                    holdout.is_some(),
                )?;
                Run::Gbt(Box::new(GbtRun {
                    p: p.clone(),
                    boost,
                    holdout,
                    grower: None,
                    final_eval: false,
                    stopped: false,
                }))
            }
            ModelSpec::RandomForest(p) => {
                let trees = (0..p.num_trees as u64)
                    .map(|t| TreeStart {
                        index: t,
                        seed: hash2(p.seed, 0xf0e5, t),
                        rows: (),
                    })
                    .collect();
                Run::Forest {
                    p: p.clone(),
                    grower: Box::new(LevelGrower::new(GrowParams::forest(p, nf), nf, trees)),
                }
            }
        };
        Ok(Self {
            names,
            edges,
            n_bins,
            run,
            last: None,
            label: String::new(),
            job: None,
            scope: FitScope::default(),
        })
    }

    /// The plan of the next pass, or `None` when the model is complete.
    pub fn next_pass(&mut self) -> Result<Option<LevelPlan>> {
        if self.last.is_some() {
            return Err(MlError::Internal(
                "next_pass called before the previous pass was absorbed".into(),
            ));
        }
        let n_bins = self.n_bins.clone();
        let plan = match &mut self.run {
            Run::Forest { p, grower } => {
                if grower.is_done() {
                    return Ok(None);
                }
                let (trees, slots) = request(grower);
                self.label = format!(
                    "trees 0..{} depth {} ({} nodes)",
                    p.num_trees,
                    grower.depth(),
                    slots.len()
                );
                LevelPlan {
                    n_bins,
                    targets: PlanTargets::Forest {
                        seed: p.seed,
                        bootstrap: p.bootstrap,
                        subsampling_rate: p.subsampling_rate,
                    },
                    trees,
                    slots,
                    eval: false,
                    job: self.job,
                    resident: false,
                    scope: self.scope,
                }
            }
            Run::Gbt(g) => {
                if g.stopped {
                    return Ok(None);
                }
                let mut eval = false;
                if g.grower.is_none() {
                    let Some(round) = g.boost.next_round() else {
                        if g.holdout.is_some() && !g.final_eval {
                            g.final_eval = true;
                            self.label =
                                format!("validation loss after round {}", g.boost.trees().len());
                            let plan = LevelPlan {
                                n_bins,
                                targets: gbt_targets(g),
                                trees: Vec::new(),
                                slots: Vec::new(),
                                eval: true,
                                job: self.job,
                                resident: false,
                                scope: self.scope,
                            };
                            self.last = Some(plan.clone());
                            return Ok(Some(plan));
                        }
                        g.stopped = true;
                        return Ok(None);
                    };
                    g.grower = Some(g.boost.grower(round, ()));
                    eval = g.holdout.is_some() && round > 0;
                }
                let grower = g.grower.as_ref().expect("set above");
                let (trees, slots) = request(grower);
                self.label = format!(
                    "round {} depth {} ({} nodes{})",
                    g.boost.trees().len(),
                    grower.depth(),
                    slots.len(),
                    if eval { ", validation loss" } else { "" }
                );
                LevelPlan {
                    n_bins,
                    targets: gbt_targets(g),
                    trees,
                    slots,
                    eval,
                    job: self.job,
                    resident: false,
                    scope: self.scope,
                }
            }
        };
        self.last = Some(plan.clone());
        Ok(Some(plan))
    }

    /// Names the fit `job` in its plans: executors then keep the rows'
    /// boosting margins between passes ([`super::resident`]; release them
    /// with [`super::resident::release_job`]). The model does not change.
    pub fn set_job(&mut self, job: u64) {
        self.job = Some(job);
    }

    /// Makes this fit one of several sharing a job's resident bins (`fit`
    /// keeps its margins and weights apart) and leaves out the rows of
    /// `exclude` (its validation fold): the model is the local trainer's on
    /// the remaining rows, with their row ids. `stats` must count those rows.
    pub fn set_scope(&mut self, scope: FitScope) {
        self.scope = scope;
    }

    /// A short description of the last plan (for logs and timings).
    pub fn pass_label(&self) -> &str {
        &self.label
    }

    /// Takes the merged result of the last plan's pass.
    pub fn absorb(&mut self, sums: &[f64]) -> Result<()> {
        let plan = self
            .last
            .take()
            .ok_or_else(|| MlError::Internal("absorb without a pass".into()))?;
        let (hists, eval) = plan.decode(sums)?;
        match &mut self.run {
            Run::Forest { grower, .. } => absorb(grower, hists),
            Run::Gbt(g) => {
                if let Some((loss, n)) = eval {
                    if g.boost.record_validation(loss / n.max(1.0)) {
                        // Stopped: this pass's histograms are not needed.
                        g.stopped = true;
                        g.grower = None;
                        return Ok(());
                    }
                }
                if plan.slots.is_empty() && plan.trees.is_empty() {
                    return Ok(()); // the final evaluation pass
                }
                let grower = g
                    .grower
                    .as_mut()
                    .ok_or_else(|| MlError::Internal("no tree being grown".into()))?;
                absorb(grower, hists)?;
                if grower.is_done() {
                    let tree = g
                        .grower
                        .take()
                        .and_then(|gr| gr.into_trees().pop())
                        .ok_or_else(|| MlError::Internal("learner returned no tree".into()))?;
                    g.boost.add_tree(tree);
                }
                Ok(())
            }
        }
    }

    /// Validation log-loss after each round (GBT with early stopping).
    pub fn validation_losses(&self) -> &[f64] {
        match &self.run {
            Run::Gbt(g) => g.boost.validation_losses(),
            Run::Forest { .. } => &[],
        }
    }

    /// The trained model, once [`Self::next_pass`] returned `None`.
    pub fn finish(self) -> Result<TrainedModel> {
        match self.run {
            Run::Forest { grower, .. } => {
                if !grower.is_done() {
                    return Err(MlError::Internal("forest not finished".into()));
                }
                model_from_trees(
                    ModelKind::RandomForest,
                    self.names,
                    self.edges,
                    0.0,
                    grower.into_trees(),
                    None,
                )
            }
            Run::Gbt(g) => {
                if !g.stopped {
                    return Err(MlError::Internal("boosting not finished".into()));
                }
                let b = g.boost.finish();
                model_from_trees(
                    ModelKind::Gbt,
                    self.names,
                    self.edges,
                    b.init_score,
                    b.trees,
                    b.best_iteration,
                )
            }
        }
    }
}

/// The distributed trainer without a cluster: fits `spec` on `x` / `y`
/// (row ids `0..n`) with every pass computed by `parts` contiguous row
/// partitions in this process, merged by addition as the executors'
/// partial states are. A reference for tests and examples; `job` names the
/// fit for executor-resident bins and margins ([`super::resident`]: after
/// the first pass, passes are resident, and run again in full when they
/// miss) and
/// `before_pass(k)` runs before pass `k` (0-based).
pub fn fit_partitioned(
    spec: &ModelSpec,
    x: &FeatureMatrix,
    y: &[u8],
    parts: usize,
    job: Option<u64>,
    mut before_pass: impl FnMut(usize),
) -> Result<TrainedModel> {
    let edges = BinEdges::fit(x, spec.max_bins(), DEFAULT_BIN_SAMPLE)?;
    let binned = edges.transform(x)?;
    let stats = DataStats {
        rows: y.len() as u64,
        positives: y.iter().map(|&v| v as u64).sum(),
    };
    let ids: Vec<i64> = (0..y.len() as i64).collect();
    let holdout = DistributedTrainer::holdout_request(spec, stats).map(|r| {
        let mut th = [None, None];
        for c in 0..2u8 {
            let mut h: Vec<u64> = (0..y.len())
                .filter(|&i| y[i] == c)
                .map(|i| hash2(r.seed, HOLDOUT_STREAM, i as u64))
                .collect();
            h.sort_unstable();
            let k = r.n_out[c as usize] as usize;
            th[c as usize] = (k > 0).then(|| h[k - 1]);
        }
        th
    });
    let mut t = DistributedTrainer::new(spec, x.names().to_vec(), edges, stats, holdout)?;
    if let Some(job) = job {
        t.set_job(job);
    }
    let chunk = y.len().div_ceil(parts.max(1)).max(1);
    let mut mode = PassMode::default();
    let mut pass = 0;
    while let Some(plan) = t.next_pass()? {
        before_pass(pass);
        pass += 1;
        let total = loop {
            let p = mode.plan(&plan);
            let mut total = vec![0.0; p.state_len()];
            for start in (0..y.len()).step_by(chunk) {
                let end = (start + chunk).min(y.len());
                let mut acc = LevelHistogramsAccumulator::new(p.clone());
                let cols: Vec<&[u8]> = (0..x.n_features())
                    .map(|j| &binned.column(j)[start..end])
                    .collect();
                let scanned = (!p.resident).then_some(cols.as_slice());
                acc.update_rows(&y[start..end], &ids[start..end], scanned);
                for (a, b) in total.iter_mut().zip(acc.sums()) {
                    *a += b;
                }
            }
            let (total, missed) = p.take_missed(total)?;
            if !mode.record(&p, missed) {
                break total;
            }
        };
        t.absorb(&total)?;
    }
    t.finish()
}

fn gbt_targets(g: &GbtRun) -> PlanTargets {
    PlanTargets::Gbt {
        init_score: g.boost.init_score(),
        trees: g
            .boost
            .trees()
            .iter()
            .map(|t| CompactTree::from_tree(t, true))
            .collect(),
        seed: g.p.seed,
        round: g.boost.trees().len() as u64,
        subsampling_rate: g.p.subsampling_rate,
        holdout: g.holdout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::FeatureSubsetStrategy;
    use crate::{train, Impurity};

    /// A noisy two-class problem with a missing-heavy and a discrete feature.
    fn data(n: usize) -> (FeatureMatrix, Vec<u8>) {
        let u = |r: usize, k: u64| crate::sampling::unit(hash2(9, k, r as u64));
        let mut cols: Vec<Vec<f64>> = (0..5).map(|_| Vec::with_capacity(n)).collect();
        let mut y = Vec::with_capacity(n);
        for r in 0..n {
            let a = u(r, 1) * 4.0 - 2.0;
            let b = u(r, 2);
            let c = if u(r, 3) < 0.2 {
                f64::NAN
            } else {
                u(r, 4) * 10.0
            };
            let d = (u(r, 5) * 6.0).floor();
            let e = u(r, 6);
            let z = a
                + 2.0 * (b - 0.5)
                + if c.is_nan() { 1.0 } else { c / 10.0 - 0.5 }
                + 0.3 * (d - 2.5)
                + (u(r, 7) - 0.5) * 1.5;
            for (j, v) in [a, b, c, d, e].into_iter().enumerate() {
                cols[j].push(v);
            }
            y.push((z > 0.0) as u8);
        }
        let names = (0..5).map(|j| format!("f{j}")).collect();
        (FeatureMatrix::new(names, cols).unwrap(), y)
    }

    /// Runs every pass over `parts` row partitions merged by addition.
    fn fit(spec: &ModelSpec, x: &FeatureMatrix, y: &[u8], parts: usize) -> TrainedModel {
        fit_partitioned(spec, x, y, parts, None, |_| {}).unwrap()
    }

    fn assert_same(a: &TrainedModel, b: &TrainedModel) {
        assert_eq!(a.trees().len(), b.trees().len(), "tree count");
        assert_eq!(a.best_iteration(), b.best_iteration());
        assert!((a.init_score() - b.init_score()).abs() < 1e-12);
        for (ti, (ta, tb)) in a.trees().iter().zip(b.trees()).enumerate() {
            assert_eq!(ta.nodes.len(), tb.nodes.len(), "tree {ti} size");
            for (ni, (x, z)) in ta.nodes.iter().zip(&tb.nodes).enumerate() {
                let what = format!("tree {ti} node {ni}: {x:?} vs {z:?}");
                assert_eq!(
                    (x.feature, x.threshold_bin, x.missing_left, x.left, x.right),
                    (z.feature, z.threshold_bin, z.missing_left, z.left, z.right),
                    "{what}"
                );
                assert!(
                    x.threshold == z.threshold || (x.is_leaf() && z.is_leaf()),
                    "{what}"
                );
                assert_eq!(x.count, z.count, "{what}");
                let close = |p: f64, q: f64| (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1e-3);
                assert!(close(x.value, z.value) && close(x.gain, z.gain), "{what}");
            }
        }
    }

    #[test]
    fn gbt_equals_the_local_trainer() {
        let (x, y) = data(6_000);
        for p in [
            GbtParams {
                max_iter: 6,
                max_depth: 4,
                ..Default::default()
            },
            GbtParams {
                max_iter: 40,
                max_depth: 3,
                step_size: 0.5,
                subsampling_rate: 0.7,
                validation_fraction: Some(0.2),
                early_stopping_rounds: 3,
                min_instances_per_node: 20,
                reg_lambda: 1.0,
                max_bins: 32,
                ..Default::default()
            },
        ] {
            let spec = ModelSpec::Gbt(p);
            let local = train(&spec, &x, &y).unwrap();
            for parts in [1, 3] {
                assert_same(&fit(&spec, &x, &y, parts), &local);
            }
        }
    }

    #[test]
    fn forest_equals_the_local_trainer() {
        let (x, y) = data(5_000);
        for p in [
            RfParams {
                num_trees: 7,
                max_depth: 5,
                ..Default::default()
            },
            RfParams {
                num_trees: 4,
                max_depth: 4,
                impurity: Impurity::Entropy,
                feature_subset_strategy: FeatureSubsetStrategy::All,
                subsampling_rate: 0.8,
                min_instances_per_node: 5,
                ..Default::default()
            },
            RfParams {
                num_trees: 3,
                max_depth: 3,
                bootstrap: false,
                ..Default::default()
            },
        ] {
            let spec = ModelSpec::RandomForest(p);
            let local = train(&spec, &x, &y).unwrap();
            for parts in [1, 4] {
                assert_same(&fit(&spec, &x, &y, parts), &local);
            }
        }
    }

    /// `x` plus `extra` constant columns (with `near`, every other one has
    /// one row in 500 that differs).
    fn with_constant_columns(x: &FeatureMatrix, extra: usize, near: bool) -> FeatureMatrix {
        let mut names = x.names().to_vec();
        let mut cols: Vec<Vec<f64>> = (0..x.n_features()).map(|j| x.column(j).to_vec()).collect();
        for k in 0..extra {
            names.push(format!("const{k}"));
            cols.push(
                (0..x.n_rows())
                    .map(|r| (near && k % 2 == 1 && r % 500 == k) as u8 as f64)
                    .collect(),
            );
        }
        FeatureMatrix::new(names, cols).unwrap()
    }

    #[test]
    fn forest_draws_more_features_when_the_drawn_ones_are_constant() {
        // One informative feature among 25: a node draws ceil(sqrt(25)) = 5,
        // usually all constant, and must go on drawing until it finds one
        // that varies (scikit-learn's rule) instead of becoming a leaf.
        let n = 2_000;
        let a: Vec<f64> = (0..n).map(|r| (r % 100) as f64).collect();
        let y: Vec<u8> = a.iter().map(|&v| (v >= 50.0) as u8).collect();
        let a = FeatureMatrix::new(vec!["a".into()], vec![a]).unwrap();
        let x = with_constant_columns(&a, 24, false);
        let spec = ModelSpec::RandomForest(RfParams {
            num_trees: 8,
            max_depth: 2,
            bootstrap: false,
            ..Default::default()
        });
        let local = train(&spec, &x, &y).unwrap();
        for t in local.trees() {
            assert_eq!(t.nodes[0].feature, 0, "every root splits on `a`: {t:?}");
            assert_eq!(t.nodes[0].threshold, 49.5);
        }
        let p = local.predict_proba(&x).unwrap();
        assert!(p.iter().zip(&y).all(|(&p, &y)| (p > 0.5) == (y == 1)));
        for parts in [1, 3] {
            assert_same(&fit(&spec, &x, &y, parts), &local);
        }
    }

    #[test]
    fn forest_with_constant_columns_equals_the_local_trainer() {
        let (x, y) = data(4_000);
        let x = with_constant_columns(&x, 20, true);
        let spec = ModelSpec::RandomForest(RfParams {
            num_trees: 6,
            max_depth: 6,
            ..Default::default()
        });
        let local = train(&spec, &x, &y).unwrap();
        for parts in [1, 4] {
            assert_same(&fit(&spec, &x, &y, parts), &local);
        }
    }

    #[test]
    fn depth_zero_and_tiny_validation() {
        let (x, y) = data(50);
        let spec = ModelSpec::Gbt(GbtParams {
            max_iter: 3,
            max_depth: 0,
            validation_fraction: Some(0.001),
            ..Default::default()
        });
        assert_same(&fit(&spec, &x, &y, 2), &train(&spec, &x, &y).unwrap());
    }
}
