//! Model selection: stratified seeded splits, k-fold cross-validation and
//! grid search, parallel over (fit, fold) jobs, binning once for all of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::binning::{BinEdges, BinnedMatrix, DEFAULT_BIN_SAMPLE};
use crate::error::{MlError, Result};
use crate::learner::AltMinInstances;
use crate::matrix::FeatureMatrix;
use crate::metrics::{evaluate, Metric};
use crate::model::{check_labels, fit_binned, fit_binned_checked, refit_differing, TrainedModel};
use crate::params::{FeatureSubsetStrategy, ModelSpec};
use crate::progress::{emit, Progress, TrainEvent};
use crate::sampling::hash2;

/// Stream of the hash that orders each class's rows for every stratified
/// split: rows of a class are ranked by `(hash2(seed, FOLD_STREAM, row), row)`.
pub const FOLD_STREAM: u64 = 0x0059_7117;

/// Share of the rows a grid search without CV (`folds` < 2) validates on.
pub const HOLDOUT_FRACTION: f64 = 0.2;

/// Rows of each class ordered by a seeded hash (the basis of every stratified split).
fn shuffled_by_class(y: &[u8], seed: u64) -> [Vec<usize>; 2] {
    let mut out: [Vec<(u64, usize)>; 2] = [Vec::new(), Vec::new()];
    for (r, &c) in y.iter().enumerate() {
        out[(c > 0) as usize].push((hash2(seed, FOLD_STREAM, r as u64), r));
    }
    out.map(|mut v| {
        v.sort_unstable();
        v.into_iter().map(|(_, r)| r).collect()
    })
}

/// The validation blocks of a stratified split, per fold and class: ranges
/// of ranks in the class's hash order ([`FOLD_STREAM`]). With `folds` >= 2,
/// fold `f` of a class of `n` rows validates on ranks
/// `ceil(f·n/k)..ceil((f+1)·n/k)` (contiguous blocks, so the distributed
/// trainer finds a fold from two order statistics per class); otherwise
/// one fold validates on the first `round(n × test_fraction)` ranks.
pub fn fold_blocks(
    class_rows: [usize; 2],
    folds: usize,
    test_fraction: f64,
) -> Vec<[std::ops::Range<usize>; 2]> {
    if folds < 2 {
        return vec![class_rows
            .map(|n| 0..((n as f64 * test_fraction.clamp(0.0, 1.0)).round() as usize).min(n))];
    }
    let start = |n: usize, f: usize| (f * n).div_ceil(folds);
    (0..folds)
        .map(|f| class_rows.map(|n| start(n, f)..start(n, f + 1)))
        .collect()
}

/// Per class, how many of `y`'s labels are 0 and 1.
fn class_rows(y: &[u8]) -> [usize; 2] {
    let pos = y.iter().filter(|&&c| c > 0).count();
    [y.len() - pos, pos]
}

/// Stratified, seeded train/test split: returns (train rows, test rows), ascending.
pub fn split_train_test(y: &[u8], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut train = Vec::new();
    let mut test = Vec::new();
    let block = fold_blocks(class_rows(y), 1, test_fraction).swap_remove(0);
    for (class, out) in shuffled_by_class(y, seed).into_iter().zip(block) {
        test.extend_from_slice(&class[out.clone()]);
        train.extend_from_slice(&class[..out.start]);
        train.extend_from_slice(&class[out.end..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Stratified, seeded fold id (`0..k`) of every row: the fold whose
/// [`fold_blocks`] hold the row's rank in its class.
pub fn stratified_folds(y: &[u8], k: usize, seed: u64) -> Vec<usize> {
    let mut fold = vec![0; y.len()];
    let blocks = fold_blocks(class_rows(y), k.max(2), 0.0);
    for (c, class) in shuffled_by_class(y, seed).into_iter().enumerate() {
        for (f, b) in blocks.iter().enumerate() {
            for &r in &class[b[c].clone()] {
                fold[r] = f;
            }
        }
    }
    if k < 2 {
        fold.fill(0);
    }
    fold
}

/// Grid search configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSearchConfig {
    /// Number of CV folds; 0 or 1 = no CV (one stratified 80/20 holdout).
    pub folds: usize,
    /// Metric to select by.
    pub metric: Metric,
    /// Seed of fold assignment.
    pub seed: u64,
    /// camelCase parameter name → values to try (cartesian product).
    pub grid: BTreeMap<String, Vec<Value>>,
    /// Worker threads (default: all cores).
    #[serde(default)]
    pub parallelism: Option<usize>,
}

/// Cross-validated score of one grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GridPoint {
    /// The grid values of this point.
    pub params: BTreeMap<String, Value>,
    /// The full model spec.
    pub spec: ModelSpec,
    /// Mean score over folds.
    pub mean_score: f64,
    /// Standard deviation of the fold scores.
    pub std_score: f64,
    /// Score per fold.
    pub fold_scores: Vec<f64>,
}

/// Outcome of a grid search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GridSearchResult {
    /// Metric used.
    pub metric: Metric,
    /// Every grid point, in grid order.
    pub points: Vec<GridPoint>,
    /// Index of the best point.
    pub best_index: usize,
    /// Spec of the best point.
    pub best_spec: ModelSpec,
    /// The best spec refit on all rows.
    pub best_model: TrainedModel,
}

/// Expands the cartesian product of `grid` over `base` (keys in sorted order).
pub fn expand_grid(
    base: &ModelSpec,
    grid: &BTreeMap<String, Vec<Value>>,
) -> Result<Vec<(BTreeMap<String, Value>, ModelSpec)>> {
    let base_json = serde_json::to_value(base).map_err(|e| MlError::Internal(e.to_string()))?;
    let Value::Object(base_obj) = base_json else {
        return Err(MlError::Internal("model spec is not a JSON object".into()));
    };
    for (k, vals) in grid {
        if k == "type" || !base_obj.contains_key(k) {
            let mut known: Vec<&str> = base_obj
                .keys()
                .filter(|k| *k != "type")
                .map(String::as_str)
                .collect();
            known.sort_unstable();
            return Err(MlError::params(
                k,
                format!(
                    "not a parameter of {}; known: {}",
                    base.kind(),
                    known.join(", ")
                ),
            ));
        }
        if vals.is_empty() {
            return Err(MlError::params(k, "grid lists no values"));
        }
    }
    let mut points: Vec<BTreeMap<String, Value>> = vec![BTreeMap::new()];
    for (k, vals) in grid {
        points = points
            .into_iter()
            .flat_map(|p| {
                vals.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(k.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    points
        .into_iter()
        .map(|p| {
            let mut obj = base_obj.clone();
            for (k, v) in &p {
                obj.insert(k.clone(), v.clone());
            }
            let spec: ModelSpec = serde_json::from_value(Value::Object(obj)).map_err(|e| {
                let shown: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
                MlError::params(&shown.join(","), format!("invalid grid value: {e}"))
            })?;
            spec.validate()?;
            Ok((p, spec))
        })
        .collect()
}

/// One model fit serving one or more grid points (forests nest: a smaller
/// `numTrees`/`maxDepth` is a prefix/truncation of the largest; points that
/// differ only in `minInstancesPerNode` share the fit with the smallest
/// value when it is checked to grow the same model, see [`AltMinInstances`]).
/// A grid point served by a shared fit: (point index, (trees, depth) to keep
/// or `None` for the whole model, the point's `minInstancesPerNode`).
pub type Consumer = (usize, Option<(usize, usize)>, usize);

/// One fit of a grid search and the grid points it scores.
#[derive(Debug, Clone)]
pub struct Fit {
    /// What is fitted.
    pub spec: ModelSpec,
    /// The grid points this fit scores.
    pub consumers: Vec<Consumer>,
}

fn min_instances(spec: &ModelSpec) -> usize {
    match spec {
        ModelSpec::Gbt(p) => p.min_instances_per_node,
        ModelSpec::RandomForest(p) => p.min_instances_per_node,
    }
}

fn with_min_instances(spec: &ModelSpec, m: usize) -> ModelSpec {
    let mut s = spec.clone();
    match &mut s {
        ModelSpec::Gbt(p) => p.min_instances_per_node = m,
        ModelSpec::RandomForest(p) => p.min_instances_per_node = m,
    }
    s
}

/// The fits of a grid: forests that differ only in `numTrees`/`maxDepth`
/// share the largest; with `share_min_instances`, points that differ only
/// in `minInstancesPerNode` share the smallest (the local search checks and
/// refits where it differs; [`fit_models`]), otherwise each value is a fit.
pub fn plan_fits(
    points: &[(BTreeMap<String, Value>, ModelSpec)],
    share_min_instances: bool,
) -> Vec<Fit> {
    let mut fits: Vec<Fit> = Vec::new();
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (_, spec)) in points.iter().enumerate() {
        let m = min_instances(spec);
        let key_m = if share_min_instances { 0 } else { m };
        let key_spec = match with_min_instances(spec, key_m) {
            // A forest of one tree draws every feature under `auto`
            // (Spark's rule), so it cannot be a prefix of a larger one.
            ModelSpec::RandomForest(p) => ModelSpec::RandomForest(crate::params::RfParams {
                num_trees: usize::from(
                    p.num_trees == 1 && p.feature_subset_strategy == FeatureSubsetStrategy::Auto,
                ),
                max_depth: 0,
                ..p
            }),
            gbt => gbt,
        };
        let key = serde_json::to_string(&key_spec).unwrap_or_default();
        let fi = *groups.entry(key).or_insert_with(|| {
            fits.push(Fit {
                spec: spec.clone(),
                consumers: Vec::new(),
            });
            fits.len() - 1
        });
        let smallest = m.min(min_instances(&fits[fi].spec));
        fits[fi].spec = with_min_instances(&fits[fi].spec, smallest);
        let cut = match (&mut fits[fi].spec, spec) {
            (ModelSpec::RandomForest(g), ModelSpec::RandomForest(p)) => {
                g.num_trees = g.num_trees.max(p.num_trees);
                g.max_depth = g.max_depth.max(p.max_depth);
                Some((p.num_trees, p.max_depth))
            }
            _ => None,
        };
        fits[fi].consumers.push((i, cut, m));
    }
    fits
}

/// Fits `fit` on `rows`: the model of its smallest `minInstancesPerNode`,
/// then, per other value of its consumers, only what that value grows
/// differently ([`refit_differing`]): nothing when it agrees everywhere.
fn fit_models(
    fit: &Fit,
    edges: &BinEdges,
    names: &[String],
    binned: &BinnedMatrix,
    y: &[u8],
    rows: &[u32],
) -> Result<Vec<(usize, TrainedModel)>> {
    let base = min_instances(&fit.spec);
    let mut others: Vec<usize> = fit
        .consumers
        .iter()
        .map(|c| c.2)
        .filter(|&m| m != base)
        .collect();
    others.sort_unstable();
    others.dedup();
    let values = others.iter().map(|&m| m as f64).collect();
    let mut alts = match fit.spec {
        ModelSpec::Gbt(_) => AltMinInstances::new(values),
        ModelSpec::RandomForest(_) => AltMinInstances::per_tree(values),
    };
    let model = fit_binned_checked(
        &fit.spec,
        edges,
        names,
        binned,
        y,
        rows,
        None,
        Some(&mut alts),
    )?;
    let mut models = Vec::with_capacity(1 + others.len());
    for (&m, differing) in others.iter().zip(&alts.failed) {
        tracing::debug!(
            min_instances = m,
            trees = model.trees().len(),
            differing = differing.len(),
            first = differing.first().copied(),
            "grid fit shared"
        );
        if !differing.is_empty() {
            let spec = with_min_instances(&fit.spec, m);
            models.push((
                m,
                refit_differing(&spec, &model, differing, edges, binned, y, rows)?,
            ));
        }
    }
    models.insert(0, (base, model));
    Ok(models)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// Grid search with stratified k-fold CV: every (fit, fold) job runs in
/// parallel on the configured threads; the data are binned once.
pub fn grid_search(
    base: &ModelSpec,
    cfg: &GridSearchConfig,
    x: &FeatureMatrix,
    y: &[u8],
) -> Result<GridSearchResult> {
    grid_search_with_progress(base, cfg, x, y, None)
}

/// [`grid_search`] reporting progress events.
pub fn grid_search_with_progress(
    base: &ModelSpec,
    cfg: &GridSearchConfig,
    x: &FeatureMatrix,
    y: &[u8],
    progress: Progress<'_>,
) -> Result<GridSearchResult> {
    check_labels(x.n_rows(), y)?;
    let points = expand_grid(base, &cfg.grid)?;
    if cfg.parallelism == Some(0) {
        return Err(MlError::params("parallelism", "expected >= 1"));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.parallelism.unwrap_or(0))
        .build()
        .map_err(|e| MlError::Internal(format!("cannot start thread pool: {e}")))?;
    pool.install(|| run_grid(base, cfg, x, y, points, progress))
}

fn run_grid(
    base: &ModelSpec,
    cfg: &GridSearchConfig,
    x: &FeatureMatrix,
    y: &[u8],
    points: Vec<(BTreeMap<String, Value>, ModelSpec)>,
    progress: Progress<'_>,
) -> Result<GridSearchResult> {
    // Bin once with the widest bin count of the grid.
    let max_bins = points
        .iter()
        .map(|(_, s)| s.max_bins())
        .max()
        .unwrap_or(base.max_bins());
    let edges = BinEdges::fit(x, max_bins, DEFAULT_BIN_SAMPLE)?;
    let binned = edges.transform(x)?;
    let (folds, k): (Vec<usize>, usize) = if cfg.folds >= 2 {
        (stratified_folds(y, cfg.folds, cfg.seed), cfg.folds)
    } else {
        let (_, test) = split_train_test(y, HOLDOUT_FRACTION, cfg.seed);
        let mut f = vec![1usize; y.len()];
        for r in test {
            f[r] = 0;
        }
        (f, 1)
    };
    let fold_rows: Vec<(Vec<u32>, Vec<u32>)> = (0..k)
        .map(|f| {
            let (mut tr, mut va) = (Vec::new(), Vec::new());
            for (r, &fr) in folds.iter().enumerate() {
                if fr == f {
                    va.push(r as u32)
                } else {
                    tr.push(r as u32)
                }
            }
            (tr, va)
        })
        .collect();
    let fits = plan_fits(&points, true);
    let jobs: Vec<(usize, usize)> = (0..fits.len())
        .flat_map(|fi| (0..k).map(move |f| (fi, f)))
        .collect();
    let done = AtomicUsize::new(0);
    let total_jobs = jobs.len();
    tracing::debug!(
        points = points.len(),
        fits = fits.len(),
        folds = k,
        "grid search"
    );
    let scores: Vec<Vec<(usize, usize, f64)>> = jobs
        .par_iter()
        .with_max_len(1)
        .map(|&(fi, f)| {
            let fit = &fits[fi];
            let (tr, va) = &fold_rows[f];
            let models = fit_models(fit, &edges, x.names(), &binned, y, tr)?;
            let yv: Vec<u8> = va.iter().map(|&r| y[r as usize]).collect();
            let model_of = |m: usize| models.iter().position(|(mm, _)| *mm == m).unwrap_or(0);
            let mut out = Vec::with_capacity(fit.consumers.len());
            for (mi, (_, model)) in models.iter().enumerate() {
                let mine: Vec<_> = fit
                    .consumers
                    .iter()
                    .filter(|c| model_of(c.2) == mi)
                    .collect();
                let cuts: Vec<(usize, usize)> = mine.iter().filter_map(|c| c.1).collect();
                let mut cut_probas = if cuts.is_empty() {
                    Vec::new()
                } else {
                    model.predict_binned_rows_truncated(&binned, va, &cuts)
                }
                .into_iter();
                for &&(pi, cut, _) in &mine {
                    let proba = match cut {
                        Some(_) => cut_probas.next().unwrap_or_default(),
                        None => model.predict_binned_rows(&binned, va),
                    };
                    out.push((pi, f, evaluate(&yv, &proba, 0.5).get(cfg.metric)));
                }
            }
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            emit(
                progress,
                TrainEvent::FoldDone {
                    done: d,
                    total: total_jobs,
                },
            );
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let mut per_point: Vec<Vec<f64>> = vec![vec![f64::NAN; k]; points.len()];
    for (pi, f, s) in scores.into_iter().flatten() {
        per_point[pi][f] = s;
    }
    let (results, best_index) = score_points(points, per_point, cfg.metric, progress);
    let best_spec = results[best_index].spec.clone();
    let all: Vec<u32> = (0..x.n_rows() as u32).collect();
    let best_model = fit_binned(&best_spec, &edges, x.names(), &binned, y, &all, progress)?;
    Ok(GridSearchResult {
        metric: cfg.metric,
        points: results,
        best_index,
        best_spec,
        best_model,
    })
}

/// The grid points with their fold scores (`per_point[i][fold]`), mean and
/// standard deviation, and the index of the best point by `metric` (the
/// first of equals; points without a finite mean never win over one).
pub fn score_points(
    points: Vec<(BTreeMap<String, Value>, ModelSpec)>,
    per_point: Vec<Vec<f64>>,
    metric: Metric,
    progress: Progress<'_>,
) -> (Vec<GridPoint>, usize) {
    let n_points = points.len();
    let results: Vec<GridPoint> = points
        .into_iter()
        .zip(per_point)
        .enumerate()
        .map(|(i, ((params, spec), fold_scores))| {
            let (mean_score, std_score) = mean_std(&fold_scores);
            emit(
                progress,
                TrainEvent::GridPointDone {
                    index: i,
                    total: n_points,
                    mean_score,
                },
            );
            GridPoint {
                params,
                spec,
                mean_score,
                std_score,
                fold_scores,
            }
        })
        .collect();
    let better = |a: f64, b: f64| {
        if metric.higher_is_better() {
            a > b
        } else {
            a < b
        }
    };
    let mut best_index = 0;
    for (i, p) in results.iter().enumerate() {
        let b = results[best_index].mean_score;
        if p.mean_score.is_finite() && (!b.is_finite() || better(p.mean_score, b)) {
            best_index = i;
        }
    }
    (results, best_index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{GbtParams, RfParams};
    use serde_json::json;

    #[test]
    fn folds_are_stratified_and_seeded() {
        let y: Vec<u8> = (0..1000).map(|i| (i % 4 == 0) as u8).collect();
        let f = stratified_folds(&y, 10, 3);
        for k in 0..10 {
            let rows: Vec<usize> = (0..1000).filter(|&r| f[r] == k).collect();
            assert_eq!(rows.len(), 100);
            assert_eq!(rows.iter().filter(|&&r| y[r] == 1).count(), 25);
        }
        assert_eq!(f, stratified_folds(&y, 10, 3));
        assert_ne!(f, stratified_folds(&y, 10, 4));
        let (tr, te) = split_train_test(&y, 0.2, 1);
        assert_eq!(te.len(), 200);
        assert_eq!(tr.len() + te.len(), 1000);
        assert_eq!(te.iter().filter(|&&r| y[r] == 1).count(), 50);
    }

    #[test]
    fn truncated_predictions_in_one_pass_equal_truncated_models() {
        let (x, y) = crate::synthetic::generate(1500, 3);
        let edges = BinEdges::fit(&x, 255, DEFAULT_BIN_SAMPLE).unwrap();
        let binned = edges.transform(&x).unwrap();
        let rows: Vec<u32> = (0..1500).collect();
        let spec = ModelSpec::RandomForest(RfParams {
            num_trees: 6,
            max_depth: 4,
            ..Default::default()
        });
        let m = fit_binned(&spec, &edges, x.names(), &binned, &y, &rows[..1000], None).unwrap();
        let cuts = [(6, 4), (2, 1), (4, 0), (9, 3), (3, 4)];
        let got = m.predict_binned_rows_truncated(&binned, &rows[1000..], &cuts);
        for (&(t, d), p) in cuts.iter().zip(&got) {
            assert_eq!(
                p,
                &m.truncated(t, d)
                    .predict_binned_rows(&binned, &rows[1000..])
            );
        }
    }

    /// Every point's fold scores equal those of its own model fitted alone,
    /// whether its fit was shared (same model checked) or redone.
    #[test]
    fn shared_min_instances_fits_score_like_their_own_fits() {
        let (x, y) = crate::synthetic::generate(3000, 5);
        let folds = 3;
        for (base, grid) in [
            (
                ModelSpec::Gbt(GbtParams {
                    max_iter: 5,
                    max_depth: 4,
                    ..Default::default()
                }),
                vec![json!(1), json!(2), json!(40)],
            ),
            (
                ModelSpec::RandomForest(RfParams {
                    num_trees: 4,
                    max_depth: 6,
                    ..Default::default()
                }),
                vec![json!(1), json!(3), json!(60)],
            ),
        ] {
            let mut g = BTreeMap::new();
            g.insert("minInstancesPerNode".to_string(), grid);
            let cfg = GridSearchConfig {
                folds,
                metric: Metric::Auc,
                seed: 1,
                grid: g,
                parallelism: Some(2),
            };
            let r = grid_search(&base, &cfg, &x, &y).unwrap();
            let edges = BinEdges::fit(&x, 255, DEFAULT_BIN_SAMPLE).unwrap();
            let binned = edges.transform(&x).unwrap();
            let f = stratified_folds(&y, folds, 1);
            for p in &r.points {
                for (k, score) in p.fold_scores.iter().enumerate() {
                    let tr: Vec<u32> = (0..3000).filter(|&i| f[i as usize] != k).collect();
                    let va: Vec<u32> = (0..3000).filter(|&i| f[i as usize] == k).collect();
                    let m = fit_binned(&p.spec, &edges, x.names(), &binned, &y, &tr, None).unwrap();
                    let yv: Vec<u8> = va.iter().map(|&i| y[i as usize]).collect();
                    let own = evaluate(&yv, &m.predict_binned_rows(&binned, &va), 0.5).auc;
                    assert_eq!(*score, own, "{:?} fold {k}", p.params);
                }
            }
        }
    }

    #[test]
    fn an_alternative_min_instances_that_changes_a_split_is_detected() {
        let (x, y) = crate::synthetic::generate(2000, 6);
        let edges = BinEdges::fit(&x, 255, DEFAULT_BIN_SAMPLE).unwrap();
        let binned = edges.transform(&x).unwrap();
        let rows: Vec<u32> = (0..2000).collect();
        let spec = ModelSpec::Gbt(GbtParams {
            max_iter: 3,
            max_depth: 6,
            ..Default::default()
        });
        // 1 (the same value) always agrees; 500 forbids most splits of depth 6.
        let mut alts = AltMinInstances::new(vec![1.0, 500.0]);
        fit_binned_checked(
            &spec,
            &edges,
            x.names(),
            &binned,
            &y,
            &rows,
            None,
            Some(&mut alts),
        )
        .unwrap();
        assert!(alts.agrees(0));
        assert!(!alts.agrees(1));
    }

    /// What an alternative `minInstancesPerNode` grows differently is
    /// regrown (forest: those trees; GBT: from the first differing round),
    /// and the result is byte for byte the model fitted from scratch.
    #[test]
    fn models_resumed_from_the_differing_trees_equal_their_own_fits() {
        let (x, y) = crate::synthetic::generate(3000, 7);
        let edges = BinEdges::fit(&x, 255, DEFAULT_BIN_SAMPLE).unwrap();
        let binned = edges.transform(&x).unwrap();
        let rows: Vec<u32> = (0..2400).collect();
        let values = [2usize, 4, 8, 16, 32, 64, 128, 256];
        for spec in [
            ModelSpec::Gbt(GbtParams {
                max_iter: 20,
                max_depth: 3,
                step_size: 0.3,
                ..Default::default()
            }),
            ModelSpec::RandomForest(RfParams {
                num_trees: 12,
                max_depth: 4,
                ..Default::default()
            }),
        ] {
            let forest = matches!(spec, ModelSpec::RandomForest(_));
            let floats = values.iter().map(|&m| m as f64).collect();
            let mut alts = if forest {
                AltMinInstances::per_tree(floats)
            } else {
                AltMinInstances::new(floats)
            };
            let base = fit_binned_checked(
                &spec,
                &edges,
                x.names(),
                &binned,
                &y,
                &rows,
                None,
                Some(&mut alts),
            )
            .unwrap();
            let mut partial = 0;
            for (&m, differing) in values.iter().zip(&alts.failed) {
                let own_spec = with_min_instances(&spec, m);
                let own =
                    fit_binned(&own_spec, &edges, x.names(), &binned, &y, &rows, None).unwrap();
                if differing.is_empty() {
                    assert_eq!(own, base, "{m} agreed but grows another model");
                    continue;
                }
                assert_ne!(own, base, "{m}");
                let n = base.trees().len();
                partial += usize::from(if forest {
                    differing.len() < n
                } else {
                    differing[0] > 0
                });
                let resumed =
                    refit_differing(&own_spec, &base, differing, &edges, &binned, &y, &rows)
                        .unwrap();
                assert_eq!(
                    serde_json::to_string(&resumed).unwrap(),
                    serde_json::to_string(&own).unwrap(),
                    "minInstancesPerNode {m}, differing trees {differing:?}"
                );
            }
            assert!(partial > 0, "no value reused part of {spec:?}: {alts:?}");
        }
    }

    #[test]
    fn thesis_grids_expand() {
        let mut g = BTreeMap::new();
        g.insert("maxDepth".to_string(), vec![json!(1), json!(3), json!(5)]);
        g.insert(
            "stepSize".to_string(),
            vec![json!(0.05), json!(0.1), json!(0.2)],
        );
        g.insert(
            "minInstancesPerNode".to_string(),
            vec![json!(1), json!(2), json!(3)],
        );
        let pts = expand_grid(&ModelSpec::Gbt(GbtParams::default()), &g).unwrap();
        assert_eq!(pts.len(), 27);
        assert_eq!(plan_fits(&pts, true).len(), 9);
        let mut g = BTreeMap::new();
        g.insert("maxDepth".to_string(), vec![json!(1), json!(3), json!(5)]);
        g.insert(
            "numTrees".to_string(),
            vec![json!(15), json!(20), json!(25)],
        );
        g.insert(
            "minInstancesPerNode".to_string(),
            vec![json!(1), json!(2), json!(3)],
        );
        g.insert("bootstrap".to_string(), vec![json!(true), json!(false)]);
        g.insert(
            "impurity".to_string(),
            vec![json!("gini"), json!("entropy")],
        );
        let pts = expand_grid(&ModelSpec::RandomForest(RfParams::default()), &g).unwrap();
        assert_eq!(pts.len(), 108);
        // bootstrap x impurity; numTrees, maxDepth and minInstancesPerNode share fits.
        assert_eq!(plan_fits(&pts, true).len(), 4);
        let mut bad = BTreeMap::new();
        bad.insert("numTrees".to_string(), vec![json!(3)]);
        let err = expand_grid(&ModelSpec::Gbt(GbtParams::default()), &bad).unwrap_err();
        assert!(err.to_string().contains("`numTrees`"), "{err}");
        let mut bad = BTreeMap::new();
        bad.insert("impurity".to_string(), vec![json!("variance")]);
        assert!(expand_grid(&ModelSpec::RandomForest(RfParams::default()), &bad).is_err());
    }
}
