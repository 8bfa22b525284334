//! Distributed training (`sluice_engine::dtrain`) against the local trainer
//! and across engines, with real processes for the cluster:
//!
//! * embedded session: `train_distributed` grows the same trees as
//!   `sluice_ml::train` on the same rows (GBT with and without subsampling
//!   and early stopping, forests with bootstrap, feature sampling or
//!   subtraction);
//! * a scheduler and 2 executors on 127.0.0.1: the same model as the
//!   embedded distributed fit; per-pass times are printed;
//! * a training pipeline with `engine.mode: ballista` trains its models on
//!   the executors and commits the same trees as the embedded pipeline.
//!
//! "Same trees": identical structure (split feature, bin, raw threshold,
//! missing direction, children) and row counts; leaf values and gains
//! within 1e-9 relative, because histogram sums are `f64` sums of the same
//! `f32` targets added in another order (partitions, merges); split ties
//! within 1e-9 relative keep the lower feature/bin on both sides.
//!
//! The cluster tests need the binaries: `cargo build --release -p
//! sluice-scheduler -p sluice-executor` (or `SLUICE_BIN_DIR`).

use sluice_testkit as common;

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use sluice_cluster::local::{ClusterOptions, LocalCluster};
use sluice_engine::dtrain::{train_distributed, DistributedFit, DistributedOptions};
use sluice_engine::lake::Lake;
use sluice_engine::outputs::{ManifestOutput, TrainOutput};
use sluice_engine::session::{connect, EngineMode, EngineSettings};
use sluice_ml::sampling::{hash2, unit};
use sluice_ml::{
    FeatureMatrix, FeatureSubsetStrategy, GbtParams, Impurity, ModelSpec, RfParams, TrainedModel,
};

const N: usize = 20_000;
const F: usize = 6;

/// `row_id`, `y` and six features: `f2` 20 % null, `f3` discrete (6 values),
/// `f5` pure noise; the label is a noisy function of the others.
fn table() -> RecordBatch {
    let u = |r: usize, k: u64| unit(hash2(11, k, r as u64));
    let mut cols: Vec<Vec<Option<f64>>> = (0..F).map(|_| Vec::with_capacity(N)).collect();
    let mut y = Vec::with_capacity(N);
    for r in 0..N {
        let a = u(r, 1) * 4.0 - 2.0;
        let b = u(r, 2);
        let c = (u(r, 3) >= 0.2).then(|| u(r, 4) * 10.0);
        let d = (u(r, 5) * 6.0).floor();
        let e = (u(r, 6) * 100.0).round() / 10.0;
        let z = a + 2.0 * (b - 0.5) + c.map_or(1.0, |c| c / 10.0 - 0.5) + 0.3 * (d - 2.5) - 0.1 * e
            + (u(r, 7) - 0.5) * 2.0;
        for (j, v) in [Some(a), Some(b), c, Some(d), Some(e), Some(u(r, 8))]
            .into_iter()
            .enumerate()
        {
            cols[j].push(v);
        }
        y.push((z > -0.4) as i64);
    }
    let mut fields = vec![
        Field::new("row_id", DataType::Int64, false),
        Field::new("y", DataType::Int64, false),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from((0..N as i64).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(y)),
    ];
    for (j, c) in cols.into_iter().enumerate() {
        fields.push(Field::new(format!("f{j}"), DataType::Float64, true));
        arrays.push(Arc::new(Float64Array::from(c)));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn names() -> Vec<String> {
    (0..F).map(|j| format!("f{j}")).collect()
}

fn local_data(b: &RecordBatch) -> (FeatureMatrix, Vec<u8>) {
    let x = FeatureMatrix::from_batches(std::slice::from_ref(b), &names()).unwrap();
    let y = b
        .column_by_name("y")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .iter()
        .map(|&v| v as u8)
        .collect();
    (x, y)
}

fn specs() -> Vec<(&'static str, ModelSpec)> {
    vec![
        (
            "gbt",
            ModelSpec::Gbt(GbtParams {
                max_iter: 8,
                max_depth: 4,
                ..Default::default()
            }),
        ),
        (
            "gbt-subsample-early-stopping",
            ModelSpec::Gbt(GbtParams {
                max_iter: 40,
                max_depth: 3,
                step_size: 0.5,
                subsampling_rate: 0.8,
                validation_fraction: Some(0.2),
                early_stopping_rounds: 3,
                min_instances_per_node: 10,
                max_bins: 64,
                ..Default::default()
            }),
        ),
        (
            "rf",
            ModelSpec::RandomForest(RfParams {
                num_trees: 10,
                max_depth: 6,
                ..Default::default()
            }),
        ),
        (
            "rf-all-features-entropy",
            ModelSpec::RandomForest(RfParams {
                num_trees: 4,
                max_depth: 4,
                impurity: Impurity::Entropy,
                feature_subset_strategy: FeatureSubsetStrategy::All,
                subsampling_rate: 0.7,
                ..Default::default()
            }),
        ),
    ]
}

/// Same trees (see the module doc) and predictions within 1e-9.
fn assert_same_model(a: &TrainedModel, b: &TrainedModel, x: &FeatureMatrix, what: &str) {
    assert_eq!(a.kind(), b.kind(), "{what}: kind");
    assert_eq!(a.trees().len(), b.trees().len(), "{what}: tree count");
    assert_eq!(
        a.best_iteration(),
        b.best_iteration(),
        "{what}: best iteration"
    );
    assert!(
        (a.init_score() - b.init_score()).abs() < 1e-12,
        "{what}: init score"
    );
    assert_eq!(a.bin_edges(), b.bin_edges(), "{what}: bin edges");
    let close = |p: f64, q: f64| (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1e-3);
    for (ti, (ta, tb)) in a.trees().iter().zip(b.trees()).enumerate() {
        assert_eq!(ta.nodes.len(), tb.nodes.len(), "{what}: tree {ti} size");
        for (ni, (p, q)) in ta.nodes.iter().zip(&tb.nodes).enumerate() {
            let at = format!("{what}: tree {ti} node {ni}: {p:?} vs {q:?}");
            assert_eq!(
                (p.feature, p.threshold_bin, p.missing_left, p.left, p.right),
                (q.feature, q.threshold_bin, q.missing_left, q.left, q.right),
                "{at}"
            );
            assert!(p.is_leaf() || p.threshold == q.threshold, "{at}");
            assert_eq!(p.count, q.count, "{at}");
            assert!(close(p.value, q.value) && close(p.gain, q.gain), "{at}");
        }
    }
    let pa = a.predict_proba(x).unwrap();
    let pb = b.predict_proba(x).unwrap();
    let worst = pa
        .iter()
        .zip(&pb)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-9, "{what}: predictions differ by {worst}");
}

fn print_passes(what: &str, fit: &DistributedFit) {
    let total: f64 = fit.passes.iter().map(|p| p.seconds).sum();
    println!(
        "{what}: {} rows, prepare {:.3} s, {} passes, {:.3} s total, {:.3} s/pass",
        fit.rows,
        fit.prepare_seconds,
        fit.passes.len(),
        total,
        total / fit.passes.len().max(1) as f64
    );
    for p in &fit.passes {
        println!(
            "  pass {:3} {:45} {:8} values {} queries {:7.3} s{}{}",
            p.pass,
            p.label,
            p.state_values,
            p.queries,
            p.seconds,
            if p.resident { " resident" } else { "" },
            if p.missed_rows > 0 {
                format!(" ({} rows missed)", p.missed_rows)
            } else {
                String::new()
            }
        );
    }
}

/// Every pass after the first scanned the executors' copy of the bins, not
/// the binned table (`min_share` of them: a task placed on another executor
/// than before misses and runs its pass in full).
fn assert_resident(fit: &DistributedFit, min_share: f64, what: &str) {
    assert!(
        !fit.passes[0].resident,
        "{what}: the first pass scans the bins"
    );
    let later = &fit.passes[1..];
    let resident = later.iter().filter(|p| p.resident).count();
    assert!(
        resident as f64 >= min_share * later.len() as f64,
        "{what}: {resident} of {} later passes resident",
        later.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_distributed_training_equals_local() {
    let batch = table();
    let (x, y) = local_data(&batch);
    let settings = EngineSettings {
        target_partitions: Some(4),
        ..EngineSettings::default()
    };
    let ctx = connect(&settings, None).await.unwrap();
    // Four partitions of interleaved rows: every pass merges partial states.
    let parts: Vec<Vec<RecordBatch>> = (0..4)
        .map(|p| {
            let idx: Vec<u32> = (p..N as u32).step_by(4).collect();
            let idx = arrow::array::UInt32Array::from(idx);
            vec![arrow::compute::take_record_batch(&batch, &idx).unwrap()]
        })
        .collect();
    ctx.register_table(
        "train",
        Arc::new(MemTable::try_new(batch.schema(), parts).unwrap()),
    )
    .unwrap();
    for (name, spec) in specs() {
        let local = sluice_ml::train(&spec, &x, &y).unwrap();
        let df = ctx.table("train").await.unwrap();
        let fit = train_distributed(
            &ctx,
            df,
            &names(),
            "y",
            "row_id",
            &spec,
            &DistributedOptions::default(),
        )
        .await
        .unwrap();
        print_passes(&format!("embedded {name}"), &fit);
        assert_eq!(fit.rows, N as u64);
        assert_same_model(&fit.model, &local, &x, name);
        // In one process every batch is found again.
        assert_resident(&fit, 1.0, name);
    }
}

/// Fold scores of two searches of the same grid: equal up to the order of
/// the histogram sums' additions.
fn assert_same_search(a: &[sluice_ml::GridPoint], b: &[sluice_ml::GridPoint], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: points");
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        assert_eq!(p.params, q.params, "{what}: point {i}");
        assert_eq!(
            p.fold_scores.len(),
            q.fold_scores.len(),
            "{what}: point {i}"
        );
        for (f, (s, t)) in p.fold_scores.iter().zip(&q.fold_scores).enumerate() {
            assert!(
                (s - t).abs() <= 1e-9,
                "{what}: point {i} ({:?}) fold {f}: {s} vs {t}",
                p.params
            );
        }
    }
}

/// Small grids that exercise every kind of fit the search shares or not.
fn grids() -> Vec<(&'static str, ModelSpec, sluice_ml::GridSearchConfig)> {
    let cfg = |folds: usize, grid: serde_json::Value| sluice_ml::GridSearchConfig {
        folds,
        metric: sluice_ml::Metric::Auc,
        seed: 5,
        grid: serde_json::from_value(grid).unwrap(),
        parallelism: None,
    };
    vec![
        (
            "gbt 3-fold",
            ModelSpec::Gbt(GbtParams {
                max_iter: 4,
                subsampling_rate: 0.8,
                ..Default::default()
            }),
            cfg(
                3,
                serde_json::json!({"maxDepth": [2, 3], "stepSize": [0.1, 0.3], "minInstancesPerNode": [1, 400]}),
            ),
        ),
        (
            "gbt early stopping, holdout",
            ModelSpec::Gbt(GbtParams {
                max_iter: 6,
                max_depth: 3,
                validation_fraction: Some(0.2),
                ..Default::default()
            }),
            cfg(0, serde_json::json!({"stepSize": [0.2, 0.5]})),
        ),
        (
            "forest 4-fold",
            ModelSpec::RandomForest(RfParams {
                num_trees: 3,
                ..Default::default()
            }),
            cfg(
                4,
                serde_json::json!({"numTrees": [2, 5], "maxDepth": [2, 4], "bootstrap": [true, false]}),
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_grid_search_equals_local() {
    let batch = table();
    let (x, y) = local_data(&batch);
    let ctx = connect(
        &EngineSettings {
            target_partitions: Some(3),
            ..EngineSettings::default()
        },
        None,
    )
    .await
    .unwrap();
    ctx.register_batch("train", batch).unwrap();
    for (name, spec, cfg) in grids() {
        let local = sluice_ml::grid_search(&spec, &cfg, &x, &y).unwrap();
        let df = ctx.table("train").await.unwrap();
        let fit = sluice_engine::dsearch::grid_search_distributed(
            &ctx,
            df,
            &names(),
            "y",
            "row_id",
            &spec,
            &cfg,
            &DistributedOptions::default(),
            name,
        )
        .await
        .unwrap();
        let search = fit.search.as_ref().unwrap();
        println!(
            "{name}: {} fits, {} rounds, {} queries, {:.3} s in passes, {:.3} s scoring",
            search.fits, search.passes, search.queries, search.pass_seconds, search.scoring_seconds
        );
        assert_same_search(&search.points, &local.points, name);
        assert_eq!(search.best_index, local.best_index, "{name}: best point");
        // The fits of the search grow in the same rounds: a round per level
        // of the deepest fit, not one per level of each fit.
        let deepest = fit.passes.len().max(1);
        assert!(search.fits > 1 && search.passes >= deepest, "{name}");
        assert!(
            search.passes < search.fits * deepest,
            "{name}: fits not in lockstep"
        );
        assert!(search.queries >= search.passes, "{name}");
        assert_same_model(&fit.model, &local.best_model, &x, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_training_data_is_a_clear_error() {
    let ctx = SessionContext::new();
    let df = ctx
        .sql("SELECT 0 AS row_id, CAST(NULL AS BIGINT) AS y, 1.0 AS f0")
        .await
        .unwrap();
    let spec = ModelSpec::Gbt(GbtParams::default());
    let e = train_distributed(
        &ctx,
        df.clone(),
        &["f0".into()],
        "y",
        "row_id",
        &spec,
        &Default::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("null labels") && e.contains("`y`"), "{e}");
    let e = train_distributed(
        &ctx,
        df,
        &["nope".into()],
        "y",
        "row_id",
        &spec,
        &Default::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("no column `nope`"), "{e}");
}

fn cluster_opts(base_port: u16, dir: &std::path::Path) -> ClusterOptions {
    ClusterOptions {
        base_port,
        dir: dir.join("cluster"),
        concurrent_tasks: 1,
        heartbeat_interval_seconds: 1,
        executor_timeout_seconds: 10,
        ..ClusterOptions::default()
    }
}

fn ballista(url: &str) -> EngineSettings {
    EngineSettings {
        mode: EngineMode::Ballista,
        scheduler: Some(url.to_string()),
        target_partitions: Some(4),
        ..EngineSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_distributed_training_equals_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let batch = table();
    let (x, y) = local_data(&batch);
    let emb_settings = EngineSettings {
        target_partitions: Some(4),
        ..EngineSettings::default()
    };
    let emb = connect(&emb_settings, Some(&lake)).await.unwrap();
    emb.read_batch(batch)
        .unwrap()
        .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(4))
        .unwrap()
        .write_parquet(
            &lake.table_url("train/"),
            DataFrameWriteOptions::new(),
            None,
        )
        .await
        .unwrap();

    // Each executor keeps 32 KiB of training data in memory, less than
    // its share of a job's batches (10,000 rows of bins and margins): the
    // rest spills to its work dir and is read back by the next pass.
    let opts = ClusterOptions {
        train_cache: Some("32KiB".into()),
        ..cluster_opts(21550, dir.path())
    };
    let cluster = LocalCluster::start(2, opts).await.unwrap();
    let dist = connect(&ballista(&cluster.scheduler_url()), Some(&lake))
        .await
        .unwrap();

    for (name, spec) in specs()
        .into_iter()
        .filter(|(n, _)| *n != "rf-all-features-entropy")
    {
        let read = |ctx: &SessionContext| {
            let ctx = ctx.clone();
            let url = lake.table_url("train/");
            async move {
                ctx.read_parquet(url, ParquetReadOptions::default())
                    .await
                    .unwrap()
            }
        };
        // The forest also runs with a small state budget on the cluster:
        // its deeper levels are split into several scans and joined.
        let budget = (name == "rf").then_some(60_000);
        // Both ways of binning run on both engines: the cluster bins in
        // the passes (no binned table; the executors bin the Parquet rows
        // they scan) for all but one spec, the embedded engine the other
        // way round.
        let in_pass_on_cluster = name != "gbt-subsample-early-stopping";
        let opts = |tag: &str| DistributedOptions {
            binned_url: Some(lake.table_url(&format!("binned/{name}/{tag}/"))),
            max_state_values: if tag == "cluster" { budget } else { None },
            bin_in_pass: (tag == "cluster") == in_pass_on_cluster,
            ..DistributedOptions::default()
        };
        let embedded = train_distributed(
            &emb,
            read(&emb).await,
            &names(),
            "y",
            "row_id",
            &spec,
            &opts("embedded"),
        )
        .await
        .unwrap();
        let on_cluster = train_distributed(
            &dist,
            read(&dist).await,
            &names(),
            "y",
            "row_id",
            &spec,
            &opts("cluster"),
        )
        .await
        .unwrap();
        print_passes(&format!("embedded (4 partitions) {name}"), &embedded);
        print_passes(&format!("cluster (2 executors) {name}"), &on_cluster);
        if budget.is_some() {
            assert!(
                on_cluster.passes.iter().any(|p| p.queries > 1),
                "{name}: no level was split"
            );
        }
        assert_same_model(&on_cluster.model, &embedded.model, &x, name);
        assert_resident(&embedded, 1.0, name);
        // Binned in the passes, no binned table was written.
        let (tag, fit) = if in_pass_on_cluster {
            ("cluster", &on_cluster)
        } else {
            ("embedded", &embedded)
        };
        assert!(
            !dir.path()
                .join(format!("lake/binned/{name}/{tag}"))
                .exists(),
            "{name}: a binned table was written for a fit that bins in its passes"
        );
        assert!(fit.prepare.binned_table < fit.prepare_seconds);
        // The scheduler sends each partition's pass to the executor that
        // holds its batches (training affinity): every later pass is
        // resident on the cluster too.
        assert_resident(&on_cluster, 1.0, name);
        let local = sluice_ml::train(&spec, &x, &y).unwrap();
        assert_same_model(&on_cluster.model, &local, &x, name);
    }
    // The passes were resident because the executors read their spilled
    // batches back (an executor without a spill dir would have missed them).
    for p in &cluster.state().executors {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(
            log.contains("training cache full: spilling batches to disk"),
            "{}: no spill in {}",
            p.name,
            p.log.display()
        );
    }
}

/// A training pipeline (ingest, features, train) run embedded and with
/// `engine.mode: ballista`: on the cluster both models train on the
/// executors (the manifest records the passes) and equal the embedded ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_trains_on_the_cluster() {
    use sluice_engine::pipeline::{self, RunOptions};
    const PIPELINE: &str = r#"
name: dt
kind: training
lake: LAKE
engine:
  target_partitions: 2
steps:
  - step: ingest
  - step: features
  - step: train
    test_fraction: 0.25
    seed: 7
    parallel: false
    search_min_rows: 0
    models:
      - name: gbt
        type: gbt
        params: {maxIter: 6, maxDepth: 4, stepSize: 0.2}
        grid: {maxDepth: [2, 4]}
        cv: {folds: 3, metric: auc}
      - name: rf
        type: random_forest
        params: {numTrees: 6, maxDepth: 6}
"#;
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = Lake::open(lake_dir.to_str().unwrap()).unwrap();
    common::generate(&lake, 20_000).await;
    let cfg = common::cfg(PIPELINE, lake_dir.to_str().unwrap());

    let embedded = pipeline::run(&cfg, &RunOptions::default()).await.unwrap();
    let cluster = LocalCluster::start(2, cluster_opts(21650, dir.path()))
        .await
        .unwrap();
    let opts = RunOptions {
        engine: Some(EngineSettings {
            target_partitions: Some(2),
            ..ballista(&cluster.scheduler_url())
        }),
        ..RunOptions::default()
    };
    let distributed = pipeline::run(&cfg, &opts).await.unwrap();

    let models = |o: &pipeline::RunOutcome| {
        o.steps
            .iter()
            .find(|s| s.step == sluice_engine::config::StepName::Train)
            .unwrap()
            .manifests
            .clone()
    };
    let (a, b) = (models(&embedded), models(&distributed));
    assert_eq!(a.len(), 2);
    for (ma, mb) in a.iter().zip(&b) {
        let (oa, ob) = (
            ma.output::<TrainOutput>().unwrap(),
            mb.output::<TrainOutput>().unwrap(),
        );
        let name = oa.model.clone();
        assert!(
            oa.distributed.is_none(),
            "{name}: embedded run trained on the driver"
        );
        let passes = ob.distributed.as_ref().map_or(0, |d| d.passes);
        assert!(
            passes > 0,
            "{name}: cluster run trained on the executors: {:?}",
            ob.distributed
        );
        println!("pipeline {name}: {:?}", ob.distributed);
        assert_eq!(oa.train_rows, ob.train_rows, "{name}");
        // The grid search ran on the executors and found the driver's fold scores.
        assert_eq!(oa.cv.is_some(), name == "gbt", "{name}");
        assert_eq!(ob.cv.is_some(), name == "gbt", "{name}");
        if let (Some(ca), Some(cb)) = (&oa.cv, &ob.cv) {
            let search = ob.distributed.as_ref().and_then(|d| d.search).unwrap();
            assert_eq!(search.fits, 6, "{name}: 2 points × 3 folds");
            assert_eq!((ca.folds, ca.best_index), (cb.folds, cb.best_index));
            assert_eq!(ca.points.len(), cb.points.len());
            for (pa, pb) in ca.points.iter().zip(&cb.points) {
                assert_eq!(pa.params, pb.params);
                for (s, t) in pa.fold_scores.iter().zip(&pb.fold_scores) {
                    assert!((s - t).abs() <= 1e-9, "{name}: {:?}: {s} vs {t}", pa.params);
                }
            }
            assert_eq!(oa.params, ob.params, "{name}: the chosen parameters");
        }
        let load = |m: &sluice_engine::commit::Manifest| {
            let f = m
                .files
                .iter()
                .find(|f| f.path.ends_with(sluice_engine::registry::ARTEFACT_FILE))
                .unwrap();
            sluice_ml::ModelArtefact::from_bytes(&std::fs::read(lake_dir.join(&f.path)).unwrap())
                .unwrap()
        };
        let (aa, ab) = (load(ma), load(mb));
        // Score both on a matrix of the right width (raw values do not matter
        // for the tree comparison; predictions are compared on it too).
        let probe = FeatureMatrix::new(
            aa.model.feature_names().to_vec(),
            aa.model
                .bin_edges()
                .features
                .iter()
                .map(|fb| {
                    let mut v = fb.upper_bounds.clone();
                    v.push(f64::NAN);
                    v.resize(64, 0.0);
                    v
                })
                .collect(),
        )
        .unwrap();
        assert_same_model(&ab.model, &aa.model, &probe, &name);
    }
}
