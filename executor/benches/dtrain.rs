//! Per-level time of distributed histogram training
//! (`bench/distributed/run.sh`): `sluice_engine::dtrain::train_distributed`
//! on the embedded engine and on local Ballista clusters of 1 and 2
//! executors (one task slot each), against the local trainer
//! (`sluice_ml::train` on the driver) on the same rows, in the same run.
//!
//! * `dtrain-<rows>-<F>f-gbt<iters>x<depth>`: boosting, one pass per level;
//! * `dtrain-<rows>-<F>f-rf<trees>x<depth>`: a forest, all trees' level in
//!   one pass.
//!
//! Env: `SLUICE_BENCH_ROWS` (544,500: the training set of the thesis),
//! `SLUICE_BENCH_FEATURES` (40), `SLUICE_BENCH_EXECUTORS` (`1,2`),
//! `SLUICE_BENCH_BASE_PORT` (22550), `SLUICE_BENCH_PARTITIONS` (2: the
//! query partitions per executor on a cluster), `SLUICE_BENCH_LOCAL` (1: also time the
//! local trainer), `SLUICE_BENCH_EMBEDDED` (1: also time the embedded
//! engine), `SLUICE_BENCH_TREES` (20: GBT rounds and forest trees, depth 5,
//! the targets of issue 18), `SLUICE_BENCH_BINNING` (`pass`; `table,pass`
//! measures both ways of binning, see `binnings`). Prints a Markdown table: seconds to prepare
//! (stats, bin edges, binned table), passes, mean and median seconds per
//! pass, total; then each setup's total against the local trainer and the
//! 1 → 2 executor speedup of the level passes. The driver's peak RSS
//! during each fit (Linux: reset through `/proc/self/clear_refs`, read as
//! `VmHWM`) is the last column: on a cluster the driver holds the model
//! and one level's histograms, not the rows. `SLUICE_TRAIN_CACHE_MB=0`
//! (inherited by the executors) turns the executor-resident bins and
//! margins off (every pass then scans the binned table);
//! `SLUICE_BENCH_TRAIN_CACHE` (e.g. `32MiB`) sets the executors'
//! `--train-cache`: batches past it spill to their work dirs
//! (`SLUICE_EXECUTOR_TRAIN_SPILL=0`, inherited, drops them instead).
//!
//! `SLUICE_BENCH_GRID_FOLDS=k` (k ≥ 2) times a grid search with k-fold
//! cross-validation instead: the driver's `sluice_ml::grid_search` against
//! `sluice_engine::dsearch::grid_search_distributed` on the same setups,
//! over the GBT (`SLUICE_BENCH_TREES` rounds) and the grid
//! `SLUICE_BENCH_GRID` (JSON, default `{"maxDepth":[3,5],"stepSize":[0.1,0.2]}`);
//! prints each total against the driver's, and checks both chose the same point.

use std::time::Instant;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use sluice_cluster::local::{ClusterOptions, LocalCluster};
use sluice_core::session::{connect, EngineMode, EngineSettings};
use sluice_engine::dtrain::{train_distributed, DistributedOptions};
use sluice_lake::lake::Lake;
use sluice_ml::{GbtParams, ModelSpec, RfParams};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// `row_id`, `y`, `f0..f{F-1}` (deterministic, some nulls), as 8 Parquet files.
async fn write_table(lake: &Lake, rows: usize, features: usize) {
    let ctx = connect(&EngineSettings::default(), Some(lake))
        .await
        .unwrap();
    let mut cols = String::new();
    for j in 0..features {
        let a = 0.37 + j as f64 * 0.113;
        let expr = match j % 4 {
            0 => format!("sin(CAST(value AS DOUBLE) * {a})"),
            1 => format!("CAST((value * {}) % 97 AS DOUBLE)", 7 + 2 * j),
            2 => format!(
                "CASE WHEN value % {} = 0 THEN NULL ELSE cos(CAST(value AS DOUBLE) * {a}) END",
                11 + j
            ),
            _ => format!("CAST((value * {}) % 7 AS DOUBLE)", 31 + j),
        };
        cols.push_str(&format!(", {expr} AS f{j}"));
    }
    let df = ctx
        .sql(&format!(
            "SELECT value - 1 AS row_id, \
                    CAST(sin(CAST(value AS DOUBLE) * 0.37) + ((value * 7) % 97) / 97.0 \
                         + cos(CAST(value AS DOUBLE) * 1.3) * 0.5 > 0.5 AS BIGINT) AS y {cols} \
             FROM generate_series(1, {rows})"
        ))
        .await
        .unwrap()
        .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(8))
        .unwrap();
    df.write_parquet(
        &lake.table_url("train/"),
        DataFrameWriteOptions::new(),
        None,
    )
    .await
    .unwrap();
}

struct Row {
    setup: String,
    executors: Option<usize>,
    bin_in_pass: bool,
    model: String,
    prepare: f64,
    passes: usize,
    /// Passes that scanned the executors' copy of the bins.
    resident: usize,
    pass_total: f64,
    mean: f64,
    median: f64,
    total: f64,
    driver_rss_mb: Option<(f64, f64)>,
}

/// Resets this process's peak RSS (Linux: `5` into `/proc/self/clear_refs`).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// This process's `VmHWM` (peak RSS since the last reset) or `VmRSS`, MiB.
fn rss_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn measure(
    ctx: &SessionContext,
    lake: &Lake,
    tag: &str,
    executors: Option<usize>,
    features: usize,
    models: &[(String, ModelSpec)],
) -> Vec<Row> {
    let names: Vec<String> = (0..features).map(|j| format!("f{j}")).collect();
    let mut out = Vec::new();
    for (mname, spec, bin_in_pass) in models
        .iter()
        .flat_map(|(m, s)| binnings().into_iter().map(move |b| (m, s, b)))
    {
        let tag = &format!("{tag}, {}", binning_name(bin_in_pass));
        let df = ctx
            .read_parquet(lake.table_url("train/"), ParquetReadOptions::default())
            .await
            .unwrap();
        let opts = DistributedOptions {
            binned_url: Some(lake.table_url(&format!("binned/{tag}/{mname}/"))),
            bin_in_pass,
            ..DistributedOptions::default()
        };
        let rss = reset_peak_rss();
        let rss_start = rss_mb("VmRSS:");
        let t = Instant::now();
        let fit = train_distributed(ctx, df, &names, "y", "row_id", spec, &opts)
            .await
            .unwrap();
        let total = t.elapsed().as_secs_f64();
        let driver_rss_mb = match (rss, rss_start, rss_mb("VmHWM:")) {
            (true, Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        let mut secs: Vec<f64> = fit.passes.iter().map(|p| p.seconds).collect();
        secs.sort_by(f64::total_cmp);
        eprintln!("{tag} {mname}: {total:.2} s");
        let pt = fit.prepare;
        eprintln!(
            "  prepare {:.2} s: stats {:.2}, bin edges {:.2}, binned table {:.2}, holdout {:.2}",
            fit.prepare_seconds, pt.stats, pt.bin_edges, pt.binned_table, pt.holdout
        );
        for p in &fit.passes {
            eprintln!(
                "  pass {:3} {:45} {:9} values {} queries {:7.3} s{}",
                p.pass,
                p.label,
                p.state_values,
                p.queries,
                p.seconds,
                if p.resident { " resident" } else { "" }
            );
        }
        let pass_total = secs.iter().sum::<f64>();
        out.push(Row {
            setup: tag.to_string(),
            executors,
            bin_in_pass,
            model: mname.clone(),
            prepare: fit.prepare_seconds,
            passes: secs.len(),
            resident: fit.passes.iter().filter(|p| p.resident).count(),
            pass_total,
            mean: pass_total / secs.len().max(1) as f64,
            median: secs.get(secs.len() / 2).copied().unwrap_or(0.0),
            total,
            driver_rss_mb,
        });
    }
    out
}

/// The ways of binning measured (`SLUICE_BENCH_BINNING`, comma-separated:
/// `pass`, the default: bins computed in the passes that scan them, no
/// binned table; `table`: a binned Parquet table written first).
fn binnings() -> Vec<bool> {
    std::env::var("SLUICE_BENCH_BINNING")
        .unwrap_or_else(|_| "pass".into())
        .split(',')
        .filter_map(|s| match s.trim() {
            "pass" => Some(true),
            "table" => Some(false),
            _ => None,
        })
        .collect()
}

fn binning_name(bin_in_pass: bool) -> &'static str {
    if bin_in_pass {
        "bins in pass"
    } else {
        "binned table"
    }
}

/// The training table as the local trainer's matrix, in row-id order.
async fn local_matrix(lake: &Lake, features: usize) -> (sluice_ml::FeatureMatrix, Vec<u8>) {
    let ctx = connect(&EngineSettings::default(), Some(lake))
        .await
        .unwrap();
    let batches = ctx
        .read_parquet(lake.table_url("train/"), ParquetReadOptions::default())
        .await
        .unwrap()
        .sort(vec![datafusion::prelude::col("row_id").sort(true, false)])
        .unwrap()
        .collect()
        .await
        .unwrap();
    let names: Vec<String> = (0..features).map(|j| format!("f{j}")).collect();
    let x = sluice_ml::FeatureMatrix::from_batches(&batches, &names).unwrap();
    let y: Vec<u8> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("y")
                .unwrap()
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap()
                .values()
                .iter()
                .map(|&v| v as u8)
                .collect::<Vec<_>>()
        })
        .collect();
    (x, y)
}

/// A local cluster of `n` executors, one task slot each.
fn cluster_options(base: u16, n: usize, dir: &std::path::Path) -> ClusterOptions {
    ClusterOptions {
        base_port: base + 100 * n as u16,
        dir: dir.join(format!("cluster{n}")),
        concurrent_tasks: 1,
        train_cache: std::env::var("SLUICE_BENCH_TRAIN_CACHE").ok(),
        ..ClusterOptions::default()
    }
}

/// The grid search benchmark (`SLUICE_BENCH_GRID_FOLDS`): the driver's
/// search on `x`/`y` against the distributed search on each setup.
async fn bench_grid(
    lake: &Lake,
    (x, y): (&sluice_ml::FeatureMatrix, &[u8]),
    setups: &[(String, EngineSettings)],
    folds: usize,
) {
    let trees = env_usize("SLUICE_BENCH_TREES", 20);
    let grid = std::env::var("SLUICE_BENCH_GRID")
        .unwrap_or_else(|_| r#"{"maxDepth":[3,5],"stepSize":[0.1,0.2]}"#.into());
    let cfg = sluice_ml::GridSearchConfig {
        folds,
        metric: sluice_ml::Metric::Auc,
        seed: 42,
        grid: serde_json::from_str(&grid).expect("SLUICE_BENCH_GRID: a JSON object of lists"),
        parallelism: None,
    };
    let base = ModelSpec::Gbt(GbtParams {
        max_iter: trees,
        max_depth: 5,
        ..Default::default()
    });
    let t = Instant::now();
    let local = sluice_ml::grid_search(&base, &cfg, x, y).unwrap();
    let local_secs = t.elapsed().as_secs_f64();
    let points = local.points.len();
    println!("\n| grid search ({points} points × {folds} folds, gbt{trees}, {} rows) | total (s) | vs driver | fits | rounds (queries) | scoring (s) |", y.len());
    println!("|---|---|---|---|---|---|");
    println!(
        "| driver (`sluice_ml::grid_search`, all cores) | {local_secs:.2} | 1.00× | – | – | – |"
    );
    let names: Vec<String> = (0..x.names().len()).map(|j| format!("f{j}")).collect();
    for (tag, s) in setups {
        let ctx = connect(s, Some(lake)).await.unwrap();
        let df = ctx
            .read_parquet(lake.table_url("train/"), ParquetReadOptions::default())
            .await
            .unwrap();
        let opts = DistributedOptions {
            bin_in_pass: true,
            ..DistributedOptions::default()
        };
        let t = Instant::now();
        let fit = sluice_engine::dsearch::grid_search_distributed(
            &ctx, df, &names, "y", "row_id", &base, &cfg, &opts, "bench",
        )
        .await
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let r = fit.search.unwrap();
        assert_eq!(r.best_index, local.best_index, "{tag}: another best point");
        println!(
            "| {tag} | {secs:.2} | {:.2}× | {} | {} ({}) | {:.2} |",
            secs / local_secs,
            r.fits,
            r.passes,
            r.queries,
            r.scoring_seconds
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rows = env_usize("SLUICE_BENCH_ROWS", 544_500);
        let features = env_usize("SLUICE_BENCH_FEATURES", 40);
        let base = env_usize("SLUICE_BENCH_BASE_PORT", 22550) as u16;
        let executors: Vec<usize> = std::env::var("SLUICE_BENCH_EXECUTORS")
            .unwrap_or_else(|_| "1,2".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let trees = env_usize("SLUICE_BENCH_TREES", 20);
        let per_executor = env_usize("SLUICE_BENCH_PARTITIONS", 2).max(1);
        let models = vec![
            (
                format!("dtrain-{rows}-{features}f-gbt{trees}x5"),
                ModelSpec::Gbt(GbtParams {
                    max_iter: trees,
                    max_depth: 5,
                    ..Default::default()
                }),
            ),
            (
                format!("dtrain-{rows}-{features}f-rf{trees}x5"),
                ModelSpec::RandomForest(RfParams {
                    num_trees: trees,
                    max_depth: 5,
                    ..Default::default()
                }),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
        eprintln!("writing {rows} rows x {features} features ...");
        write_table(&lake, rows, features).await;

        let folds = env_usize("SLUICE_BENCH_GRID_FOLDS", 0);
        if folds >= 2 {
            let (x, y) = local_matrix(&lake, features).await;
            let mut setups = vec![(
                "embedded, 2 partitions".to_string(),
                EngineSettings {
                    target_partitions: Some(2),
                    ..EngineSettings::default()
                },
            )];
            let mut clusters = Vec::new();
            for n in &executors {
                let cluster = LocalCluster::start(*n, cluster_options(base, *n, dir.path()))
                    .await
                    .unwrap();
                setups.push((
                    format!("ballista, {n} executor(s) x 1 slot"),
                    EngineSettings {
                        mode: EngineMode::Ballista,
                        scheduler: Some(cluster.scheduler_url()),
                        target_partitions: Some(per_executor * n),
                        ..EngineSettings::default()
                    },
                ));
                clusters.push(cluster);
            }
            bench_grid(&lake, (&x, &y), &setups, folds).await;
            return;
        }
        let mut results = Vec::new();
        let mut local = Vec::new();
        if env_usize("SLUICE_BENCH_LOCAL", 1) == 1 {
            let (x, y) = local_matrix(&lake, features).await;
            for (mname, spec) in &models {
                let t = Instant::now();
                sluice_ml::train(spec, &x, &y).unwrap();
                local.push((mname.clone(), t.elapsed().as_secs_f64()));
            }
        }
        let s = EngineSettings {
            target_partitions: Some(2),
            ..EngineSettings::default()
        };
        if env_usize("SLUICE_BENCH_EMBEDDED", 1) == 1 {
            let ctx = connect(&s, Some(&lake)).await.unwrap();
            eprintln!("embedded, 2 partitions ...");
            let tag = "embedded, 2 partitions";
            results.extend(measure(&ctx, &lake, tag, None, features, &models).await);
        }
        for n in executors {
            let cluster = LocalCluster::start(n, cluster_options(base, n, dir.path()))
                .await
                .unwrap();
            let s = EngineSettings {
                mode: EngineMode::Ballista,
                scheduler: Some(cluster.scheduler_url()),
                target_partitions: Some(per_executor * n),
                ..EngineSettings::default()
            };
            let ctx = connect(&s, Some(&lake)).await.unwrap();
            let tag = format!("ballista, {n} executor(s) x 1 slot");
            eprintln!("{tag} ...");
            results.extend(measure(&ctx, &lake, &tag, Some(n), features, &models).await);
        }
        println!(
            "\n| bench | setup | prepare (s) | passes (resident) | mean s/pass | median s/pass | total (s) | driver RSS at start → peak (MiB) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (m, secs) in &local {
            println!("| {m} | local trainer (driver, all cores) | – | – | – | – | {secs:.2} | – |");
        }
        for r in &results {
            let rss = r
                .driver_rss_mb
                .map_or("–".to_string(), |(a, b)| format!("{a:.0} → {b:.0}"));
            println!(
                "| {} | {} | {:.2} | {} ({}) | {:.3} | {:.3} | {:.2} | {rss} |",
                r.model,
                r.setup,
                r.prepare,
                r.passes,
                r.resident,
                r.mean,
                r.median,
                r.total
            );
        }
        println!();
        for r in &results {
            if let Some((_, l)) = local.iter().find(|(m, _)| *m == r.model) {
                println!(
                    "{} {}: total {:.2} s = {:.2}x the local trainer ({l:.2} s)",
                    r.model,
                    r.setup,
                    r.total,
                    r.total / l
                );
            }
        }
        for (m, b) in models
            .iter()
            .flat_map(|(m, _)| binnings().into_iter().map(move |b| (m, b)))
        {
            let passes = |n: usize| {
                results
                    .iter()
                    .find(|r| r.model == *m && r.executors == Some(n) && r.bin_in_pass == b)
                    .map(|r| r.pass_total)
            };
            if let (Some(one), Some(two)) = (passes(1), passes(2)) {
                println!(
                    "{m} ({}): level passes {one:.2} s on 1 executor, {two:.2} s on 2: {:.2}x",
                    binning_name(b),
                    one / two
                );
            }
        }
    });
}
